//! A subscriber's sink: events committed before their deliveries are acked; a failed commit
//! acks nothing, and the batch comes back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pubsub_amqp::ReconnectPolicy;
use pubsub_core::Event;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{Committed, Sink, SinkError, Staged};

use crate::support::{counting, event, test_bus, BusExt};

/// Keeps ids; fails its first `failures` commits.
struct Ids {
    staged: Vec<u128>,
    committed: Arc<Mutex<Vec<u128>>>,
    failures: usize,
    commits: Arc<AtomicUsize>,
}

impl Sink for Ids {
    fn stage(&mut self, staged: Staged<'_>) -> Result<(), SinkError> {
        self.staged.push(staged.event().event_id().as_u128());
        Ok(())
    }

    fn commit(&mut self) -> Result<Committed, SinkError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.failures > 0 {
            self.failures -= 1;
            self.staged.clear();
            return Err("the database is down".into());
        }
        self.committed.lock().unwrap().append(&mut self.staged);
        Ok(Committed::all())
    }

    fn discard(&mut self) {
        self.staged.clear();
    }
}

#[test]
fn a_failed_commit_acks_nothing_and_the_batch_comes_back() {
    let Some(mut bus) = test_bus() else {
        return;
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.*", counting("count", &handled))
        .unwrap();
    let (builder, queue) = bus.service("sink", registry);
    let committed = Arc::new(Mutex::new(Vec::new()));
    let commits = Arc::new(AtomicUsize::new(0));
    let sink = Ids {
        staged: Vec::new(),
        committed: committed.clone(),
        failures: 2,
        commits: commits.clone(),
    };
    let mut subscriber = builder
        .sink(sink)
        .reconnect(
            ReconnectPolicy::default()
                .with_delays(Duration::from_millis(20), Duration::from_millis(100))
                .forever(),
        )
        .build()
        .unwrap();
    // `#` too: an event nothing handles is acked, and so staged.
    subscriber.setup_queue("#").unwrap();
    let running = subscriber.spawn().unwrap();

    let sent: Vec<Event> = (0..40).map(|n| event("order", "created", n)).collect();
    let mut publisher = bus.publisher();
    for r in publisher.publish_all(&sent) {
        r.unwrap();
    }
    publisher.publish(&event("user", "left", 0)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids: HashSet<u128> = committed.lock().unwrap().iter().copied().collect();
        if ids.len() == 41 {
            break;
        }
        assert!(Instant::now() < deadline, "committed {} of 41", ids.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = running.stop().unwrap();
    // The failed commits ended a session (the one settling on the way out may fail too):
    // nothing of its batch was acked, the broker delivered it again.
    assert!(commits.load(Ordering::SeqCst) >= 3);
    assert!(stats.reconnects >= 1, "{stats}");
    assert!(stats.received > 41, "{stats}");
    assert_eq!(stats.acked, 41, "{stats}");
    assert!(handled.load(Ordering::SeqCst) >= 40);
    let ids: Vec<u128> = committed.lock().unwrap().clone();
    for e in &sent {
        assert!(ids.contains(&e.event_id().as_u128()));
    }
    assert_eq!(bus.ready(&queue), Some(0));
}
