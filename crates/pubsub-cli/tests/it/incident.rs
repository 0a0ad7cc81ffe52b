//! The incident walk-through of `docs/cli.md`, end to end: a handler bug sends events to the
//! dead-letter queue, the fix is deployed, `pubsub dlq replay` brings them back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pubsub_subscriber::{dead_letter_queue_name, Disposition};

use crate::support::{assert_exit, pubsub, stdout, test_bus, BusExt, WAIT};

#[test]
fn a_fixed_handler_gets_its_dead_lettered_events_back() {
    let Some(mut bus) = test_bus() else { return };
    let broken = Arc::new(AtomicBool::new(true));
    let (running, reports, queue) = bus.service("orders", "order.*", broken.clone());
    let dlq = dead_letter_queue_name(&queue);
    let exchange = bus.exchange().to_owned();

    // The bug: every order.created fails and is dead-lettered.
    let mut published = BTreeSet::new();
    for n in 0..3 {
        let data = format!(r#"{{"order_id":"ORD-{n}"}}"#);
        let output = pubsub(&[
            "publish",
            "order.created",
            "--data",
            &data,
            "--exchange",
            &exchange,
        ]);
        assert_exit(&output, 0);
        published.insert(stdout(&output).trim().to_owned());
    }
    for _ in 0..3 {
        let report = reports.recv_timeout(WAIT).unwrap();
        assert!(
            matches!(report.disposition, Disposition::DeadLettered { .. }),
            "{report:?}"
        );
    }
    bus.wait_ready(&dlq, 3);

    // The operator looks.
    let output = pubsub(&["dlq", "list", &queue]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("by kind:        exhausted 3"), "{text}");
    assert!(text.contains("smtp server unavailable"), "{text}");

    // The fix is deployed; the events are replayed and handled.
    broken.store(false, Ordering::SeqCst);
    let output = pubsub(&["dlq", "replay", &queue, "--all"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains(&format!("moved 3 messages out of `{dlq}`")));
    let mut handled = BTreeSet::new();
    for _ in 0..3 {
        let report = reports.recv_timeout(WAIT).unwrap();
        assert_eq!(report.disposition, Disposition::Acked, "{report:?}");
        assert_eq!(report.attempt, 1, "a replayed event starts over");
        handled.insert(report.event_id.unwrap());
    }
    assert_eq!(handled, published);
    assert_eq!(bus.ready(&dlq), Some(0));
    running.stop().unwrap();
}
