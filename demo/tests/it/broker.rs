//! The demo's flow through RabbitMQ, each test on its own exchange and queue.

use demo::{Outcome, Settings, Transport, Workload, RETRY_DELAYS};
use demo_domain::Handlers;
use pubsub::subscriber::{dead_letter_queue_name, retry_queue_name, DeadLetterKind, Disposition};
use pubsub_testkit::Bus;

/// The demo's settings on a test bus of its own: the bus's exchange, a unique queue, and
/// the deletion at the end of both and of the queues the subscriber derives from the queue.
struct Names {
    bus: Bus,
    settings: Settings,
}

impl Names {
    fn new() -> Option<Names> {
        let mut bus = Bus::new("demo-bus")?;
        let queue = bus.queue_name("demo");
        bus.delete_queue_at_end(&dead_letter_queue_name(&queue));
        for delay in RETRY_DELAYS {
            bus.delete_queue_at_end(&retry_queue_name(&queue, delay));
        }
        let settings = Settings {
            exchange: bus.exchange().to_owned(),
            queue,
            ..Settings::default()
        };
        Some(Names { bus, settings })
    }

    fn run(&self, workload: Workload, handlers: &Handlers) -> demo::RunReport {
        let mut last = None;
        let report = demo::run(
            workload,
            &Transport::Broker(Box::new(self.bus.config().clone())),
            &self.settings,
            handlers,
            &mut |p| {
                if let Some(before) = last.replace(p) {
                    assert!(p.published >= before.published && p.handled >= before.handled);
                }
            },
        )
        .unwrap();
        let last = last.unwrap();
        assert_eq!(
            (last.published, last.total),
            (workload.len(), workload.len())
        );
        report
    }

    /// Ready messages in `queue`, or `None` if it does not exist.
    fn ready(&self, queue: &str) -> Option<u32> {
        self.bus.ready(queue)
    }
}

#[test]
fn the_order_flow_reaches_the_expected_handlers_through_the_broker() {
    let Some(names) = Names::new() else {
        return;
    };
    let workload = Workload::OrderFlow;
    let handlers = workload.handlers().unwrap();
    let report = names.run(workload, &handlers);
    assert!(report.is_success(), "{report}");

    // (routing key, handlers that ran, in order), each acked at the first attempt.
    let ran: Vec<(&str, Vec<&str>)> = report
        .events
        .iter()
        .map(|e| (e.routing_key.as_str(), e.handler_names()))
        .collect();
    assert_eq!(
        ran,
        [
            (
                "order.created",
                vec!["send-email", "update-inventory", "log-analytics"]
            ),
            ("order.paid", vec!["send-email", "log-analytics"]),
            ("user.registered", vec!["send-email", "log-analytics"]),
        ]
    );
    for event in &report.events {
        assert_eq!(event.attempts.len(), 1, "{report}");
        assert_eq!(
            event.outcome(),
            Some(&Outcome::Delivery(Disposition::Acked))
        );
    }

    // The handlers' effects.
    let to: Vec<String> = handlers
        .email()
        .outbox()
        .into_iter()
        .map(|e| e.to)
        .collect();
    assert_eq!(
        to,
        [
            "customer@example.com",
            "customer@example.com",
            "ada@example.com"
        ]
    );
    assert_eq!(handlers.shop().stock("PROD-001").unwrap(), Some(8));
    assert_eq!(handlers.shop().stock("PROD-002").unwrap(), Some(4));
    assert_eq!(handlers.analytics().total(), 3);

    let stats = report.stats.unwrap();
    assert_eq!((stats.received, stats.acked, stats.retried), (3, 3, 0));
    assert_eq!(report.leftovers, 0);

    // The demo cleaned up after itself.
    let queue = names.settings.queue.clone();
    assert_eq!(
        names.ready(&queue),
        None,
        "queue `{queue}` should be deleted"
    );
    assert_eq!(names.ready(&dead_letter_queue_name(&queue)), None);
    let summary = report.to_string();
    assert!(summary.contains("3 of 3 events handled"), "{summary}");
}

#[test]
fn many_orders_are_each_handled_once() {
    let Some(mut names) = Names::new() else {
        return;
    };
    names.settings.batch = 64;
    let workload = Workload::Orders(300);
    let handlers = workload.handlers().unwrap();
    let report = names.run(workload, &handlers);
    assert!(report.is_success(), "{report}");
    assert!(report.events.is_empty());
    assert_eq!(report.succeeded, 300);
    assert_eq!(handlers.shop().stock("PROD-001").unwrap(), Some(0));
    assert_eq!(handlers.email().sent(), 300);
    assert_eq!(report.stats.unwrap().acked, 300);
    let summary = report.to_string();
    assert!(summary.contains("events/s"), "{summary}");
}

#[test]
fn a_refused_order_is_dead_lettered_and_the_dead_letter_queue_kept() {
    let Some(names) = Names::new() else {
        return;
    };
    let handlers =
        Handlers::new(&demo_domain::Shop::scratch([("PROD-001", 1), ("PROD-002", 1)]).unwrap())
            .unwrap();
    let report = names.run(Workload::OrderFlow, &handlers);
    assert!(!report.is_success());
    assert_eq!((report.succeeded, report.failed), (2, 1));

    // Out of stock is permanent: dead-lettered at once, without retry; the other handlers
    // of the event still ran.
    let order = &report.events[0];
    assert_eq!(order.attempts.len(), 1, "{report}");
    match order.outcome() {
        Some(Outcome::Delivery(Disposition::DeadLettered { kind, reason })) => {
            assert_eq!(*kind, DeadLetterKind::Poison);
            assert!(reason.contains("out of stock"), "{reason}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    assert_eq!(handlers.email().sent(), 3);
    assert_eq!(handlers.shop().stock("PROD-001").unwrap(), Some(1));

    let dlq = dead_letter_queue_name(&names.settings.queue);
    assert_eq!(names.ready(&dlq), Some(1));
    let summary = report.to_string();
    assert!(
        summary.contains(&format!("kept in dead-letter queue `{dlq}`")),
        "{summary}"
    );
    assert!(
        summary.contains("update-inventory FAILED (out of stock"),
        "{summary}"
    );
}

#[test]
fn a_kept_queue_is_reused_and_what_was_left_in_it_drained() {
    let Some(mut names) = Names::new() else {
        return;
    };
    names.settings.keep_queue = true;
    let first = names.run(
        Workload::OrderFlow,
        &Workload::OrderFlow.handlers().unwrap(),
    );
    assert!(first.is_success(), "{first}");
    assert!(
        first.to_string().contains("kept, bound to exchange"),
        "{first}"
    );

    // An event arrives while no demo runs: it waits in the kept queue.
    let connection = names.bus.connection();
    let mut publisher =
        pubsub::publisher::EventPublisher::new(connection, &names.settings.exchange).unwrap();
    let stray = pubsub::Event::new("user", "registered", serde_json::json!({})).unwrap();
    publisher.publish(&stray).unwrap();
    publisher.close().unwrap();
    let queue = names.settings.queue.clone();
    assert_eq!(names.ready(&queue), Some(1));

    // The next run drains it (a poison event: its data is not a UserRegistered) and then
    // deletes the queue.
    names.settings.keep_queue = false;
    let second = names.run(
        Workload::OrderFlow,
        &Workload::OrderFlow.handlers().unwrap(),
    );
    assert!(second.is_success(), "{second}");
    assert_eq!(second.leftovers, 1);
    assert_eq!(second.stats.unwrap().received, 4);
    assert_eq!(names.ready(&queue), None);
    assert_eq!(names.ready(&dead_letter_queue_name(&queue)), Some(1));
}

#[test]
fn the_order_flow_is_kept_in_the_event_store() {
    let Some(mut names) = Names::new() else {
        return;
    };
    let path = std::env::temp_dir().join(format!("{}.db", pubsub_testkit::unique("demo-store")));
    names.settings.store = Some(pubsub_store::Database::sqlite(&path));
    let workload = Workload::OrderFlow;
    let report = names.run(workload, &workload.handlers().unwrap());
    assert!(report.is_success(), "{report}");
    let stored = report.stored.as_ref().expect("the store ran");
    assert_eq!(stored.stored, 3, "{report}");
    let keys: Vec<&str> = stored.rows.iter().map(|r| r.routing_key.as_str()).collect();
    assert_eq!(keys, ["order.created", "order.paid", "user.registered"]);
    let shown = report.to_string();
    assert!(shown.contains("event store:  3 new row(s)"), "{shown}");
    // The flow's task: submitted, run by the worker, COMPLETED in the same database.
    let task = report.task.as_ref().expect("the task ran");
    assert_eq!(task.record.task_name, "send-invoice");
    assert_eq!(
        task.record.status,
        pubsub_store::TaskStatus::Completed,
        "{shown}"
    );
    assert_eq!(task.record.attempts, 1);
    assert_eq!(
        task.record.result.as_ref().map(|r| r["invoice_id"].clone()),
        Some("INV-ORD-123".into())
    );
    assert!(shown.contains("-> COMPLETED after 1 attempt(s)"), "{shown}");
    assert_eq!(names.ready(&task.queue), None);
    // The store's queues are deleted with the demo's.
    assert_eq!(names.ready(&stored.queue), None);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}
