use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pubsub_core::{handler_fn, Event};
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::Disposition;

use crate::support::{counting, event, reports, test_bus, BusExt, WAIT};

#[test]
fn events_flow_from_publisher_to_handlers_with_metadata() {
    let Some(mut bus) = test_bus() else { return };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut registry = HandlerRegistry::new();
    {
        let seen = seen.clone();
        registry
            .subscribe(
                "order.*",
                handler_fn("record", move |event: &Event, meta| {
                    seen.lock().unwrap().push((
                        event.clone(),
                        meta.correlation_id().map(str::to_owned),
                        meta.app_id().map(str::to_owned),
                        meta.attempt(),
                        meta.redelivered(),
                    ));
                    Ok(())
                }),
            )
            .unwrap();
    }
    let (builder, _queue) = bus.service("flow", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder.observer(tx).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();

    let mut publisher = bus.publisher();
    let sent = event("order", "created", 1);
    publisher
        .publish_with(&sent, &pubsub_publisher::PublishOptions::correlated("c-42"))
        .unwrap();
    let report = &reports(&rx, 1)[0];
    assert_eq!(report.disposition, Disposition::Acked);
    assert_eq!(report.event_id, Some(sent.event_id().to_string()));
    assert_eq!(report.handlers.len(), 1);

    let seen = seen.lock().unwrap();
    let (event, correlation, app, attempt, redelivered) = &seen[0];
    assert_eq!(event, &sent);
    assert_eq!(correlation.as_deref(), Some("c-42"));
    assert_eq!(app.as_deref(), Some("test-publisher"));
    assert_eq!(*attempt, 1);
    assert!(!redelivered);
    drop(seen);

    let stats = running.stop().unwrap();
    assert_eq!((stats.received, stats.acked), (1, 1));
}

#[test]
fn the_queue_is_bound_to_exactly_what_the_handlers_need() {
    let Some(mut bus) = test_bus() else { return };
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.created", handler_fn("a", |_, _| Ok(())))
        .unwrap();
    registry
        .subscribe("pay*.done", handler_fn("b", |_, _| Ok(())))
        .unwrap();
    let (builder, queue) = bus.service("bindings", registry);
    let mut subscriber = builder.build().unwrap();
    assert_eq!(subscriber.bindings(), ["order.created", "*.done"]);
    subscriber.setup().unwrap();

    let mut publisher = bus.publisher();
    for (domain, action) in [
        ("order", "created"),   // bound
        ("order", "paid"),      // not bound
        ("payment", "done"),    // bound through *.done
        ("shipping", "done"),   // bound through *.done (the glob is the registry's business)
        ("user", "registered"), // not bound
    ] {
        publisher.publish(&event(domain, action, 0)).unwrap();
    }
    assert_eq!(bus.ready(&queue), Some(3));

    // The registry filters what the broker's wider binding lets through.
    let (tx, rx) = crossbeam_channel::unbounded();
    drop(subscriber);
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.created", handler_fn("a", |_, _| Ok(())))
        .unwrap();
    registry
        .subscribe("pay*.done", handler_fn("b", |_, _| Ok(())))
        .unwrap();
    let connection = pubsub_amqp::Connection::open(bus.config()).unwrap();
    let running =
        pubsub_subscriber::EventSubscriber::builder(connection, &queue, Arc::new(registry))
            .exchange(bus.exchange())
            .observer(tx)
            .build()
            .unwrap()
            .spawn()
            .unwrap();
    let mut dispositions: Vec<(String, Disposition)> = reports(&rx, 3)
        .into_iter()
        .map(|r| (r.routing_key, r.disposition))
        .collect();
    dispositions.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        dispositions,
        [
            ("order.created".to_owned(), Disposition::Acked),
            ("payment.done".to_owned(), Disposition::Acked),
            ("shipping.done".to_owned(), Disposition::Unhandled),
        ]
    );
    let stats = running.stop().unwrap();
    assert_eq!(stats.unhandled, 1);
}

fn counting_registry(pattern: &str, count: &Arc<AtomicUsize>) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe(pattern, counting("count", count))
        .unwrap();
    registry
}

#[test]
fn each_service_queue_gets_a_copy() {
    let Some(mut bus) = test_bus() else { return };
    let (billing_count, audit_count) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (billing, _) = bus.service("billing", counting_registry("order.*", &billing_count));
    let (audit, _) = bus.service("audit", counting_registry("#", &audit_count));
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut billing = billing.observer(tx.clone()).build().unwrap();
    let mut audit = audit.observer(tx).build().unwrap();
    billing.setup().unwrap();
    audit.setup().unwrap();
    let (billing, audit) = (billing.spawn().unwrap(), audit.spawn().unwrap());

    let mut publisher = bus.publisher();
    let events: Vec<Event> = (0..20).map(|i| event("order", "created", i)).collect();
    assert!(publisher.publish_all(&events).iter().all(Result::is_ok));
    reports(&rx, 40);
    assert_eq!(billing_count.load(Ordering::SeqCst), 20);
    assert_eq!(audit_count.load(Ordering::SeqCst), 20);
    billing.stop().unwrap();
    audit.stop().unwrap();
}

#[test]
fn two_consumers_on_one_queue_share_the_work() {
    let Some(mut bus) = test_bus() else { return };
    let (first_count, second_count) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (first, queue) = bus.service("shared", counting_registry("#", &first_count));
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut first = first.prefetch(1).observer(tx.clone()).build().unwrap();
    first.setup().unwrap();
    let connection = pubsub_amqp::Connection::open(bus.config()).unwrap();
    let second = pubsub_subscriber::EventSubscriber::builder(
        connection,
        &queue,
        Arc::new(counting_registry("#", &second_count)),
    )
    .exchange(bus.exchange())
    .prefetch(1)
    .observer(tx)
    .build()
    .unwrap();
    let (first, second) = (first.spawn().unwrap(), second.spawn().unwrap());

    let mut publisher = bus.publisher();
    let events: Vec<Event> = (0..200).map(|i| event("job", "queued", i)).collect();
    assert!(publisher.publish_all(&events).iter().all(Result::is_ok));
    reports(&rx, 200);
    let (a, b) = (
        first_count.load(Ordering::SeqCst),
        second_count.load(Ordering::SeqCst),
    );
    assert_eq!(a + b, 200);
    assert!(a > 0 && b > 0, "one consumer did all the work: {a} / {b}");
    first.stop().unwrap();
    second.stop().unwrap();
}

#[test]
fn prefetch_limits_the_deliveries_in_flight() {
    let Some(mut bus) = test_bus() else { return };
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let (entered_tx, entered_rx) = crossbeam_channel::unbounded::<()>();
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe(
            "#",
            handler_fn("gated", move |_, _| {
                entered_tx.send(()).unwrap();
                gate_rx
                    .recv_timeout(WAIT)
                    .map_err(|_| "gate never opened")?;
                Ok(())
            }),
        )
        .unwrap();
    let (builder, queue) = bus.service("prefetch", registry);
    let mut subscriber = builder.prefetch(3).build().unwrap();
    subscriber.setup().unwrap();
    let mut publisher = bus.publisher();
    let events: Vec<Event> = (0..10).map(|i| event("a", "b", i)).collect();
    assert!(publisher.publish_all(&events).iter().all(Result::is_ok));
    let running = subscriber.spawn().unwrap();

    entered_rx.recv_timeout(WAIT).unwrap();
    // The handler holds the first delivery; the broker sent at most 3 unacked.
    let mut ready = bus.ready(&queue);
    for _ in 0..50 {
        if ready == Some(7) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        ready = bus.ready(&queue);
    }
    assert_eq!(ready, Some(7));
    for _ in 0..10 {
        gate_tx.send(()).unwrap();
    }
    let stop = running.stop_handle();
    for _ in 1..10 {
        entered_rx.recv_timeout(WAIT).unwrap();
    }
    stop.stop();
    let stats = running.stop().unwrap();
    assert_eq!(stats.acked, 10);
}

#[test]
fn stop_finishes_the_delivery_in_progress_and_joins() {
    let Some(mut bus) = test_bus() else { return };
    let (entered_tx, entered_rx) = crossbeam_channel::unbounded::<()>();
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    {
        let finished = finished.clone();
        registry
            .subscribe(
                "#",
                handler_fn("slow", move |_, _| {
                    entered_tx.send(()).unwrap();
                    gate_rx
                        .recv_timeout(WAIT)
                        .map_err(|_| "gate never opened")?;
                    finished.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
            )
            .unwrap();
    }
    let (builder, queue) = bus.service("stop", registry);
    let mut subscriber = builder.prefetch(5).build().unwrap();
    subscriber.setup().unwrap();
    let mut publisher = bus.publisher();
    let events: Vec<Event> = (0..5).map(|i| event("a", "b", i)).collect();
    assert!(publisher.publish_all(&events).iter().all(Result::is_ok));
    let running = subscriber.spawn().unwrap();
    entered_rx.recv_timeout(WAIT).unwrap();

    // Ask to stop while the first delivery is in its handler, then let the handler finish.
    let stop = running.stop_handle();
    stop.stop();
    gate_tx.send(()).unwrap();
    let stats = running.stop().unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    assert_eq!(stats.acked, 1);
    // The four prefetched but unprocessed deliveries went back to the queue.
    assert_eq!(bus.ready(&queue), Some(4));
}

#[test]
fn a_queue_with_other_arguments_is_an_error_not_a_reconnect_loop() {
    let Some(mut bus) = test_bus() else { return };
    let (builder, queue) = bus.service("inequivalent", HandlerRegistry::new());
    // Someone else declared the queue as a quorum queue.
    let mut other = pubsub_amqp::Connection::open(bus.config()).unwrap();
    other
        .open_channel()
        .unwrap()
        .declare_queue(&queue, &pubsub_amqp::QueueConfig::default().quorum())
        .unwrap();
    let mut subscriber = builder.build().unwrap();
    let err = subscriber.setup().unwrap_err();
    assert!(
        err.to_string().contains(&format!("queue `{queue}`")),
        "{err}"
    );
    assert!(
        err.to_string().contains("x-queue-type") || err.to_string().contains("x-dead-letter"),
        "{err}"
    );
    // The failed setup removed the dead-letter and delay queues it had declared; the queue
    // someone else declared stays.
    let mut probe = pubsub_amqp::Connection::open(bus.config()).unwrap();
    for made in [
        pubsub_subscriber::dead_letter_queue_name(&queue),
        pubsub_subscriber::retry_queue_name(&queue, std::time::Duration::from_millis(100)),
    ] {
        let channel = probe.open_channel().unwrap();
        assert!(channel.queue_info(&made).is_err(), "{made} was left behind");
    }
    assert!(probe.open_channel().unwrap().queue_info(&queue).is_ok());

    let mut running = subscriber.spawn().unwrap();
    let ended = running
        .wait_timeout(WAIT)
        .expect("the subscriber kept retrying");
    let err = ended.unwrap_err();
    assert!(
        matches!(
            &err,
            pubsub_subscriber::Error::Amqp(pubsub_amqp::Error::Inequivalent { .. })
        ),
        "{err:?}"
    );
}
