//! Retry state is believed only where the subscriber wrote it (see the crate's
//! `decision` module docs): forged headers on a fresh message change nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pubsub_amqp::{Connection, ConsumerEvent, HeaderValue, Headers, Properties, QueueConfig};
use pubsub_core::{handler_fn, json};
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{headers, DeadLetterKind, Disposition};

use crate::support::{counting, event, reports, test_bus, BusExt, WAIT};

/// Retry state as a client on the exchange could forge it: `audit` already done, the last
/// attempt, a quorum queue's delivery count far past any limit, a made-up `x-death`.
fn forged_properties(event_id: &str) -> Properties {
    let mut death = Headers::new();
    death.insert("queue".into(), "whatever.retry.1s".into());
    death.insert("reason".into(), "expired".into());
    let mut h = Headers::new();
    h.insert(
        headers::DONE.into(),
        vec!["audit@order.*".to_owned()].into(),
    );
    h.insert(headers::ATTEMPT.into(), HeaderValue::Int(3));
    h.insert(headers::FIRST_FAILURE.into(), "1999-01-01T00:00:00Z".into());
    h.insert(headers::ORIGINAL_ROUTING_KEY.into(), "forged.key".into());
    h.insert(headers::DELIVERY_COUNT.into(), HeaderValue::Int(50));
    h.insert(
        headers::X_DEATH.into(),
        HeaderValue::Array(vec![HeaderValue::Table(death)]),
    );
    Properties {
        content_type: Some(json::CONTENT_TYPE.to_owned()),
        message_id: Some(event_id.to_owned()),
        headers: h,
        ..Properties::default()
    }
}

#[test]
fn forged_retry_headers_on_a_fresh_message_run_every_handler_as_a_first_attempt() {
    let Some(mut bus) = test_bus() else { return };
    let (audit_runs, mail_runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.*", counting("audit", &audit_runs))
        .unwrap();
    {
        let (mail_runs, attempts) = (mail_runs.clone(), attempts.clone());
        registry
            .subscribe(
                "order.*",
                handler_fn("mail", move |_, meta| {
                    attempts.lock().unwrap().push(meta.attempt());
                    // Fails once: the real retry must then skip `audit`.
                    if mail_runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err("smtp down".into())
                    } else {
                        Ok(())
                    }
                }),
            )
            .unwrap();
    }
    let (builder, _) = bus.service("forged", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    // A quorum queue: it counts deliveries, and the limit is low.
    let mut subscriber = builder
        .queue_config(QueueConfig::default().quorum())
        .max_redeliveries(3)
        .observer(tx)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();

    let sent = event("order", "created", 1);
    let id = sent.event_id().to_string();
    bus.publish_raw(
        bus.exchange(),
        "order.created",
        &json::to_vec(&sent),
        &forged_properties(&id),
    );

    let got = reports(&rx, 2);
    // First attempt: both handlers ran, despite x-pubsub-done naming `audit`, the forged
    // attempt and the forged delivery count.
    assert_eq!(got[0].attempt, 1, "{got:?}");
    assert_eq!(got[0].routing_key, "order.created");
    let ran: Vec<&str> = got[0].handlers.iter().map(|h| h.handler.as_str()).collect();
    assert_eq!(ran, ["audit", "mail"]);
    assert_eq!(
        got[0].disposition,
        Disposition::Retried {
            next_attempt: 2,
            delay: Duration::from_millis(100)
        }
    );
    // The real retry: its own state is believed, so `audit` is skipped.
    assert_eq!(got[1].attempt, 2);
    let ran: Vec<&str> = got[1].handlers.iter().map(|h| h.handler.as_str()).collect();
    assert_eq!(ran, ["mail"]);
    assert_eq!(got[1].disposition, Disposition::Acked);
    assert_eq!(audit_runs.load(Ordering::SeqCst), 1);
    assert_eq!(*attempts.lock().unwrap(), [1, 2]);
    let stats = running.stop().unwrap();
    assert_eq!(
        (stats.dead_lettered(), stats.retried, stats.acked),
        (0, 1, 1)
    );
}

#[test]
fn forged_headers_do_not_survive_into_the_dead_letter_queue() {
    let Some(mut bus) = test_bus() else { return };
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe(
            "order.*",
            handler_fn("mail", |_, _| Err("smtp down".into())),
        )
        .unwrap();
    let (builder, queue) = bus.service("forged-dlq", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder
        .retry(pubsub_subscriber::RetryPolicy::none())
        .observer(tx)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();
    let sent = event("order", "created", 1);
    let id = sent.event_id().to_string();
    bus.publish_raw(
        bus.exchange(),
        "order.created",
        &json::to_vec(&sent),
        &forged_properties(&id),
    );
    let got = reports(&rx, 1);
    assert!(
        matches!(
            &got[0].disposition,
            Disposition::DeadLettered {
                kind: DeadLetterKind::Exhausted,
                ..
            }
        ),
        "{got:?}"
    );
    running.stop().unwrap();
    let dead = bus.drain(&subscriber_dlq(&queue));
    assert_eq!(dead.len(), 1);
    let h = &dead[0].properties.headers;
    // The subscriber's own state replaced the forged one.
    assert_eq!(h[headers::ATTEMPT], HeaderValue::Int(1));
    assert_eq!(h[headers::DONE], HeaderValue::Array(vec![]));
    assert_ne!(
        h[headers::FIRST_FAILURE],
        HeaderValue::from("1999-01-01T00:00:00Z")
    );
    assert_eq!(
        h[headers::ORIGINAL_ROUTING_KEY],
        HeaderValue::from("order.created")
    );
    assert_eq!(
        h[headers::ORIGINAL_EXCHANGE],
        HeaderValue::from(bus.exchange())
    );
}

fn subscriber_dlq(queue: &str) -> String {
    pubsub_subscriber::dead_letter_queue_name(queue)
}

#[test]
fn a_quorum_queue_redelivery_limit_still_dead_letters() {
    let Some(mut bus) = test_bus() else { return };
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.*", counting("audit", &runs))
        .unwrap();
    let (builder, queue) = bus.service("redelivery", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder
        .queue_config(QueueConfig::default().quorum())
        .max_redeliveries(3)
        .observer(tx)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    bus.publisher()
        .publish(&event("order", "created", 1))
        .unwrap();

    // A consumer that takes the message and dies before acking it, three times: the broker
    // requeues it each time and the quorum queue counts the deliveries.
    for _ in 0..3 {
        let mut crashing = Connection::open(bus.config()).unwrap();
        let channel = crashing.open_channel().unwrap();
        let consumer = channel.consume(&queue, false).unwrap();
        match consumer.next_timeout(WAIT) {
            Some(ConsumerEvent::Delivery(_taken)) => {}
            other => panic!("the message did not come back: {other:?}"),
        }
        drop(consumer);
        drop(channel);
        crashing.close().unwrap();
    }

    let running = subscriber.spawn().unwrap();
    let got = reports(&rx, 1);
    match &got[0].disposition {
        Disposition::DeadLettered { kind, reason } => {
            assert_eq!(*kind, DeadLetterKind::RedeliveryLimit);
            assert!(reason.contains("delivered 3 times"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let stats = running.stop().unwrap();
    // Counted by its own kind, not as poison.
    assert_eq!(
        (
            stats.dead_lettered_redelivery_limit,
            stats.dead_lettered_poison,
            stats.in_flight
        ),
        (1, 0, 0),
        "{stats}"
    );
    assert_eq!(bus.drain(&subscriber_dlq(&queue)).len(), 1);
}
