//! Group commit: the work handlers leave open commits before the ack; a failed commit acks
//! nothing, not even on the session's way out, and the batch comes back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pubsub_core::group_commit::{self, OpenWork, WorkError};
use pubsub_core::{handler_fn, Event};
use pubsub_registry::HandlerRegistry;

use crate::support::{event, quick_reconnect, test_bus, BusExt};

/// A pretend transaction: the ids of the events whose handlers wrote in it.
struct Writes {
    ids: Vec<u128>,
    committed: Arc<Mutex<Vec<u128>>>,
    /// Commits left to fail, shared by every transaction.
    failures: Arc<AtomicUsize>,
}

impl OpenWork for Writes {
    fn commit(self: Box<Self>) -> Result<(), WorkError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("the database is down".into());
        }
        self.committed.lock().unwrap().extend(&self.ids);
        Ok(())
    }
}

#[test]
fn a_failed_group_commit_acks_nothing_and_the_batch_comes_back() {
    let Some(mut bus) = test_bus() else {
        return;
    };
    let committed = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicUsize::new(1));
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    let (c, f, r) = (committed.clone(), failures.clone(), runs.clone());
    registry
        .subscribe(
            "order.*",
            handler_fn("writes", move |event: &Event, _| {
                r.fetch_add(1, Ordering::SeqCst);
                let mut work = group_commit::take::<Writes>("db").unwrap_or_else(|| {
                    Box::new(Writes {
                        ids: Vec::new(),
                        committed: c.clone(),
                        failures: f.clone(),
                    })
                });
                work.ids.push(event.event_id().as_u128());
                match group_commit::leave("db", work) {
                    Ok(()) => Ok(()),
                    Err(work) => Ok(work.commit()?),
                }
            }),
        )
        .unwrap();
    let (builder, queue) = bus.service("group", registry);
    let mut subscriber = builder.reconnect(quick_reconnect()).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();
    let sent: Vec<Event> = (0..40).map(|n| event("order", "created", n)).collect();
    let mut publisher = bus.publisher();
    for r in publisher.publish_all(&sent) {
        r.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids: HashSet<u128> = committed.lock().unwrap().iter().copied().collect();
        if ids.len() == sent.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {} of {}: a batch was acked without its commit",
            ids.len(),
            sent.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = running.stop().unwrap();
    assert_eq!(failures.load(Ordering::SeqCst), 0, "the commit failed once");
    assert!(stats.reconnects >= 1, "{stats}");
    assert!(
        runs.load(Ordering::SeqCst) > sent.len(),
        "the batch ran again"
    );
    assert_eq!(stats.acked, sent.len() as u64, "{stats}");
    assert_eq!(bus.ready(&queue), Some(0));
}
