//! The bus over the real broker: each test on its own exchange and service queue.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Receiver;
use pubsub::{
    handler_fn, DeliveryReport, Disposition, Error, Event, EventBus, EventBusBuilder, EventType,
    Metadata, PublishOptions, RetryPolicy,
};
use pubsub_testkit::{unique, Bus};

use crate::{event, shipped, ItemShipped, WAIT};

/// A test's exchange (deleted at the end) and a bus builder for a new service on it.
fn fixture(prefix: &str) -> Option<(Bus, EventBusBuilder, String)> {
    let bus = Bus::new(prefix)?;
    let service = unique(prefix);
    let builder = EventBus::builder(&service)
        .amqp(bus.config().clone())
        .exchange(bus.exchange())
        .retry(RetryPolicy::new(2, vec![Duration::from_millis(200)]));
    Some((bus, builder, service))
}

fn recv<T>(rx: &Receiver<T>, n: usize) -> Vec<T> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("only {i} of {n} arrived"))
        })
        .collect()
}

#[test]
fn a_service_publishes_and_subscribes_and_tears_down() {
    let Some((fixture, builder, service)) = fixture("bus") else {
        return;
    };
    let mut bus = builder.build().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<(String, Metadata)>();
    let typed = tx.clone();
    bus.subscribe_typed::<ItemShipped, _>(move |shipped, meta| {
        typed.send((shipped.item, meta.clone())).unwrap();
        Ok(())
    })
    .unwrap();
    bus.subscribe(
        "order.*",
        handler_fn("orders", move |event, meta| {
            tx.send((event.routing_key().to_owned(), meta.clone()))
                .unwrap();
            Ok(())
        }),
    )
    .unwrap();
    bus.start().unwrap();
    assert_eq!(fixture.ready(&service), Some(0));

    bus.publish(shipped("book", 1)).unwrap();
    bus.publisher()
        .publish_with(
            event("order", "paid", 1),
            PublishOptions {
                event_type: Some(EventType::Integration),
                ..PublishOptions::correlated("flow-9")
            },
        )
        .unwrap();
    let mut got = recv(&rx, 2);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let (book, meta) = &got[0];
    assert_eq!(book, "book");
    assert_eq!(meta.source(), Some(service.as_str()));
    assert_eq!(meta.event_type(), Some(EventType::Domain));
    assert_eq!(meta.correlation_id(), None);
    assert_eq!(
        meta.header("x-event-type").and_then(|v| v.as_str()),
        Some("domain")
    );
    let (paid, meta) = &got[1];
    assert_eq!(paid, "order.paid");
    assert_eq!(meta.event_type(), Some(EventType::Integration));
    assert_eq!(meta.correlation_id(), Some("flow-9"));

    let queues = bus.queues();
    assert_eq!(queues.len(), 3, "{queues:?}"); // queue, one retry queue, dead letters
    let teardown = bus.teardown().unwrap();
    assert_eq!(teardown.stats.subscriber.acked, 2);
    assert_eq!(teardown.deleted, queues);
    for queue in &queues {
        assert_eq!(fixture.ready(queue), None, "{queue} still exists");
    }
}

#[test]
fn an_event_published_from_a_handler_carries_the_flow() {
    let Some((_fixture, builder, _service)) = fixture("flow") else {
        return;
    };
    let mut bus = builder.build().unwrap();
    let publisher = bus.publisher();
    bus.subscribe(
        "order.created",
        handler_fn("ship", move |_, _| {
            publisher.publish(shipped("lamp", 1))?;
            Ok(())
        }),
    )
    .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<Metadata>();
    bus.subscribe_typed::<ItemShipped, _>(move |_, meta| {
        tx.send(meta.clone()).unwrap();
        Ok(())
    })
    .unwrap();
    bus.start().unwrap();

    // With a correlation id: it flows on; the cause is the incoming event.
    let created = event("order", "created", 1);
    let id = created.event_id().to_string();
    bus.publisher()
        .publish_with(created, PublishOptions::correlated("c-1"))
        .unwrap();
    let meta = &recv(&rx, 1)[0];
    assert_eq!(meta.correlation_id(), Some("c-1"));
    assert_eq!(meta.causation_id(), Some(id.as_str()));

    // Without one: the incoming event starts the flow, its id is the correlation id.
    let created = event("order", "created", 2);
    let id = created.event_id().to_string();
    bus.publish(created).unwrap();
    let meta = &recv(&rx, 1)[0];
    assert_eq!(meta.correlation_id(), Some(id.as_str()));
    assert_eq!(meta.causation_id(), Some(id.as_str()));
    bus.teardown().unwrap();
}

#[test]
fn workers_handle_events_at_the_same_time_and_each_once() {
    let Some((_fixture, builder, _service)) = fixture("workers") else {
        return;
    };
    let mut bus = builder.workers(4).prefetch(1).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let (tx, rx) = crossbeam_channel::unbounded::<()>();
    {
        let (running, most, seen) = (running.clone(), most.clone(), seen.clone());
        bus.subscribe(
            "job.*",
            handler_fn("slow", move |event, _| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(50));
                running.fetch_sub(1, Ordering::SeqCst);
                assert!(seen.lock().unwrap().insert(event.event_id()), "twice");
                tx.send(()).unwrap();
                Ok(())
            }),
        )
        .unwrap();
    }
    bus.start().unwrap();
    let events: Vec<Event> = (0..40).map(|i| event("job", "run", i)).collect();
    for outcome in bus.publisher().publish_all(events) {
        outcome.unwrap();
    }
    recv(&rx, 40);
    let stats = bus.teardown().unwrap().stats;
    assert_eq!(stats.workers, 4);
    assert_eq!(
        (stats.subscriber.received, stats.subscriber.acked),
        (40, 40)
    );
    assert!(
        most.load(Ordering::SeqCst) > 1,
        "never more than one at a time"
    );
}

#[test]
fn one_handle_serves_many_threads_and_receipts() {
    let Some((_fixture, builder, _service)) = fixture("shared") else {
        return;
    };
    let mut bus = builder.build().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    bus.subscribe(
        "load.*",
        handler_fn("count", move |event, _| {
            tx.send(event.data()["n"].as_u64().unwrap_or(u64::MAX))
                .unwrap();
            Ok(())
        }),
    )
    .unwrap();
    bus.start().unwrap();
    let publisher = bus.publisher();
    thread::scope(|s| {
        for t in 0..8u64 {
            let publisher = publisher.clone();
            s.spawn(move || {
                for i in 0..50 {
                    publisher
                        .publish(event("load", "test", t * 1000 + i))
                        .unwrap();
                }
            });
        }
    });
    let receipts: Vec<_> = (0..100)
        .map(|i| publisher.send(event("load", "async", 9000 + i)).unwrap())
        .collect();
    for receipt in receipts {
        receipt.wait().unwrap();
    }
    let mut got = recv(&rx, 500);
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 500);
    bus.stop().unwrap();
    let late = publisher.publish(event("load", "test", 1)).unwrap_err();
    assert!(matches!(late.error(), Error::Stopped), "{late}");
    assert_eq!(late.into_event().routing_key(), "load.test");
    bus.teardown().unwrap();
}

#[test]
fn a_typed_event_that_does_not_decode_is_dead_lettered_as_poison() {
    let Some((fixture, builder, service)) = fixture("poison") else {
        return;
    };
    let (reports_tx, reports) = crossbeam_channel::unbounded::<DeliveryReport>();
    let mut bus = builder.observer(reports_tx).build().unwrap();
    bus.subscribe_typed::<ItemShipped, _>(|_, _| Ok(()))
        .unwrap();
    bus.start().unwrap();
    let bad = Event::new("item", "shipped", serde_json::json!({ "item": 7 })).unwrap();
    bus.publish(bad).unwrap();
    let report = &recv(&reports, 1)[0];
    assert!(
        matches!(
            &report.disposition,
            Disposition::DeadLettered {
                kind: pubsub::subscriber::DeadLetterKind::Poison,
                ..
            }
        ),
        "{report:?}"
    );
    let dlq = pubsub::subscriber::dead_letter_queue_name(&service);
    let kept = bus.teardown_keeping_dead_letters().unwrap();
    assert_eq!(kept.dead_letters_kept, Some((dlq.clone(), 1)));
    assert_eq!(fixture.ready(&dlq), Some(1));
    assert_eq!(fixture.admin().delete_queue(&dlq).unwrap(), 1);
}

#[test]
fn a_broker_that_refuses_leaves_nothing_running() {
    let Some((_fixture, builder, _service)) = fixture("refused") else {
        return;
    };
    let config = pubsub::AmqpConfig::from_url("amqp://guest:wrong@127.0.0.1:5672/%2f")
        .unwrap()
        .with_connection_attempts(1);
    let mut bus = builder.amqp(config).build().unwrap();
    bus.subscribe("a.b", handler_fn("h", |_, _| Ok(())))
        .unwrap();
    let error = bus.start().unwrap_err();
    assert!(matches!(error, Error::Amqp(_)), "{error:?}");
    let refused = bus.publish(event("a", "b", 1)).unwrap_err();
    assert!(matches!(refused.error(), Error::Stopped), "{refused}");
}

#[test]
fn a_bus_consumes_an_existing_queue_in_another_envelope_and_leaves_it_at_teardown() {
    let Some((mut fixture, builder, _service)) = fixture("bus-estate") else {
        return;
    };
    // Another service's queue, declared with arguments the bus would not give it.
    let mut arguments = pubsub::amqp::Headers::new();
    arguments.insert("x-max-length".into(), pubsub::amqp::HeaderValue::Int(1_000));
    let config = pubsub::amqp::QueueConfig {
        arguments,
        ..pubsub::amqp::QueueConfig::default()
    };
    let queue = fixture.bound_queue("estate", "inventory.*", &config);
    let mut bus = builder
        .queue(&queue)
        .existing_queue(true)
        .envelope(pubsub::Envelope::Bare)
        .max_body_size(1_024)
        .build()
        .unwrap();
    assert_eq!(bus.queue(), queue);
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    bus.subscribe(
        "inventory.*",
        handler_fn("stock", move |event, _| {
            tx.send(event.clone()).unwrap();
            Ok(())
        }),
    )
    .unwrap();
    bus.start().unwrap();
    let properties = pubsub::amqp::Properties {
        content_type: Some("application/json".into()),
        ..pubsub::amqp::Properties::default()
    };
    fixture.publish_raw(
        fixture.exchange(),
        "inventory.reserved",
        br#"{"sku":"A1"}"#,
        &properties,
    );
    let event = rx.recv_timeout(WAIT).expect("the bare event");
    assert_eq!(event.routing_key(), "inventory.reserved");
    assert_eq!(event.data()["sku"], "A1");
    let report = bus.teardown().unwrap();
    assert!(!report.deleted.contains(&queue), "{:?}", report.deleted);
    assert!(report.deleted.iter().any(|q| q.ends_with(".dlq")));
    assert_eq!(
        fixture.ready(&queue),
        Some(0),
        "the other service's queue stays"
    );
}
