//! A subscriber's sink: events committed before their deliveries are acked; a failed commit
//! acks nothing, and the batch comes back; an event the sink refuses is dead-lettered once,
//! with the sink's reason.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pubsub_amqp::HeaderValue;
use pubsub_core::Event;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::headers::{DEAD_LETTER_KIND, DEAD_LETTER_REASON};
use pubsub_subscriber::{Committed, Refused, Sink, SinkError, Staged};

use crate::support::{counting, event, quick_reconnect, test_bus, BusExt};

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
        .reconnect(quick_reconnect())
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

/// Keeps ids, and refuses the events whose data has `"refuse": true`, as a database refuses
/// data it can never hold.
struct Picky {
    staged: Vec<(u128, bool)>,
    committed: Arc<Mutex<Vec<u128>>>,
    refusals: Arc<AtomicUsize>,
}

/// The reason the picky sink gives.
const REFUSAL: &str = "the test sink refuses this event: invalid byte sequence";

impl Sink for Picky {
    fn stage(&mut self, staged: Staged<'_>) -> Result<(), SinkError> {
        let refuse = staged.event().data().get("refuse") == Some(&true.into());
        self.staged
            .push((staged.event().event_id().as_u128(), refuse));
        Ok(())
    }

    fn commit(&mut self) -> Result<Committed, SinkError> {
        let mut refused = Vec::new();
        let mut committed = self.committed.lock().unwrap();
        for (index, (id, refuse)) in std::mem::take(&mut self.staged).into_iter().enumerate() {
            if refuse {
                self.refusals.fetch_add(1, Ordering::SeqCst);
                refused.push(Refused::new(index, REFUSAL));
            } else {
                committed.push(id);
            }
        }
        Ok(Committed::refusing(refused))
    }

    fn discard(&mut self) {
        self.staged.clear();
    }
}

#[test]
fn an_event_the_sink_refuses_is_dead_lettered_once_with_its_reason() {
    let Some(mut bus) = test_bus() else {
        return;
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.*", counting("count", &handled))
        .unwrap();
    let (builder, queue) = bus.service("sink-refuses", registry);
    let committed = Arc::new(Mutex::new(Vec::new()));
    let refusals = Arc::new(AtomicUsize::new(0));
    let sink = Picky {
        staged: Vec::new(),
        committed: committed.clone(),
        refusals: refusals.clone(),
    };
    let mut subscriber = builder.sink(sink).prefetch(10).build().unwrap();
    subscriber.setup_queue("order.*").unwrap();
    let dlq = subscriber.dead_letter_queue();
    let running = subscriber.spawn().unwrap();

    let mut sent: Vec<Event> = (0..20).map(|n| event("order", "created", n)).collect();
    let bad = Event::new(
        "order",
        "created",
        pubsub_core::serde_json::json!({ "refuse": true }),
    )
    .unwrap();
    sent.insert(7, bad.clone());
    let mut publisher = bus.publisher();
    for r in publisher.publish_all(&sent) {
        r.unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    while committed.lock().unwrap().len() < 20 || bus.ready(&dlq) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "committed {} of 20, {:?} dead-lettered",
            committed.lock().unwrap().len(),
            bus.ready(&dlq)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = running.stop().unwrap();
    // Each delivery taken once: the refused one dead-lettered, the others acked.
    assert_eq!(stats.received, 21, "{stats}");
    assert_eq!(stats.redelivered, 0, "{stats}");
    assert_eq!(stats.reconnects, 0, "{stats}");
    assert_eq!(stats.acked, 20, "{stats}");
    assert_eq!(stats.dead_lettered_poison, 1, "{stats}");
    assert_eq!(stats.retried, 0, "{stats}");
    assert_eq!(refusals.load(Ordering::SeqCst), 1);
    assert_eq!(handled.load(Ordering::SeqCst), 21);
    let ids: HashSet<u128> = committed.lock().unwrap().iter().copied().collect();
    assert_eq!(ids.len(), 20);
    assert!(!ids.contains(&bad.event_id().as_u128()));

    let dead = bus.drain(&dlq);
    assert_eq!(dead.len(), 1);
    let copy = &dead[0];
    assert_eq!(pubsub_core::json::from_slice(&copy.body).unwrap(), bad);
    let header = |name: &str| {
        copy.properties
            .headers
            .get(name)
            .and_then(HeaderValue::as_str)
            .map(str::to_owned)
    };
    assert_eq!(header(DEAD_LETTER_KIND).as_deref(), Some("poison"));
    let reason = header(DEAD_LETTER_REASON).unwrap_or_default();
    assert!(reason.contains(REFUSAL), "{reason}");
    assert_eq!(bus.ready(&queue), Some(0));
    assert_eq!(bus.ready(&dlq), Some(0));
}
