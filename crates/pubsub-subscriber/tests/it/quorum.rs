//! `quorum(true)`: the queue, its delay queues and its dead-letter queue are quorum queues, and
//! retries and dead letters go through them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pubsub_core::{handler_fn, Permanent};
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{dead_letter_queue_name, DeadLetterKind, Disposition};

use crate::support::{event, reports, test_bus, BusExt};

/// The type of each queue whose name starts with `prefix`, from `rabbitmqctl`.
fn queue_types(prefix: &str) -> Vec<(String, String)> {
    let listing = pubsub_testkit::rabbitmqctl(&["-q", "list_queues", "name", "type"])
        .expect("rabbitmqctl lists the queues");
    let mut types: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    types.sort();
    types
}

#[test]
fn quorum_queues_carry_retries_and_dead_letters() {
    let Some(mut bus) = test_bus() else { return };
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    {
        let runs = runs.clone();
        registry
            .subscribe(
                "order.*",
                handler_fn("ship", move |event, _| {
                    if event.action() == "cancelled" {
                        return Err(Permanent::new("nothing to ship").into());
                    }
                    // The first run fails: the retry goes through the quorum delay queue.
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err("warehouse busy".into())
                    } else {
                        Ok(())
                    }
                }),
            )
            .unwrap();
    }
    let (builder, queue) = bus.service("quorum", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder.quorum(true).observer(tx).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();

    let types = queue_types(&queue);
    assert_eq!(types.len(), 3, "{types:?}"); // the queue, its DLQ, one delay queue
    assert!(types.iter().all(|(_, t)| t == "quorum"), "{types:?}");

    let mut publisher = bus.publisher();
    publisher.publish(&event("order", "created", 1)).unwrap();
    publisher.publish(&event("order", "cancelled", 2)).unwrap();
    let mut dispositions: Vec<Disposition> =
        reports(&rx, 3).into_iter().map(|r| r.disposition).collect();
    dispositions.sort_by_key(|d| format!("{d:?}"));
    assert!(
        matches!(dispositions[0], Disposition::Acked),
        "{dispositions:?}"
    );
    assert!(
        matches!(
            dispositions[1],
            Disposition::DeadLettered {
                kind: DeadLetterKind::Poison,
                ..
            }
        ),
        "{dispositions:?}"
    );
    assert!(
        matches!(dispositions[2], Disposition::Retried { .. }),
        "{dispositions:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(bus.ready(&dead_letter_queue_name(&queue)), Some(1));
    let stats = running.stop().unwrap();
    assert_eq!(
        (stats.acked, stats.retried, stats.dead_lettered_poison),
        (1, 1, 1)
    );
}
