use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pubsub_amqp::{HeaderValue, Properties};
use pubsub_core::{handler_fn, Event, TypedEvent};
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{headers, DeadLetterKind, Disposition, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::support::{counting, event, reports, test_bus, BusExt};

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

#[test]
fn a_flaky_handler_is_retried_and_its_sibling_runs_once() {
    let Some(mut bus) = test_bus() else { return };
    let (flaky_runs, sibling_runs) = (counter(), counter());
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.*", counting("sibling", &sibling_runs))
        .unwrap();
    {
        let flaky_runs = flaky_runs.clone();
        registry
            .subscribe(
                "order.*",
                handler_fn("flaky", move |_, meta| {
                    let run = flaky_runs.fetch_add(1, Ordering::SeqCst) + 1;
                    assert_eq!(meta.attempt() as usize, run);
                    if run <= 2 {
                        Err(format!("transient failure {run}").into())
                    } else {
                        Ok(())
                    }
                }),
            )
            .unwrap();
    }
    let (builder, _) = bus.service("flaky", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder.observer(tx).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();
    bus.publisher().publish(&event("order", "paid", 1)).unwrap();

    let got = reports(&rx, 3);
    assert_eq!(
        got.iter()
            .map(|r| (r.attempt, r.disposition.clone()))
            .collect::<Vec<_>>(),
        [
            (
                1,
                Disposition::Retried {
                    next_attempt: 2,
                    delay: Duration::from_millis(100)
                }
            ),
            (
                2,
                Disposition::Retried {
                    next_attempt: 3,
                    delay: Duration::from_millis(100)
                }
            ),
            (3, Disposition::Acked),
        ]
    );
    // The retries ran only the handler that had failed.
    assert_eq!(got[1].handlers.len(), 1);
    assert_eq!(got[1].handlers[0].handler, "flaky");
    assert_eq!(flaky_runs.load(Ordering::SeqCst), 3);
    assert_eq!(sibling_runs.load(Ordering::SeqCst), 1);
    let stats = running.stop().unwrap();
    assert_eq!(
        (
            stats.received,
            stats.retried,
            stats.acked,
            stats.handler_failures
        ),
        (3, 2, 1, 2)
    );
}

#[test]
fn a_handler_that_always_fails_ends_in_the_dead_letter_queue() {
    let Some(mut bus) = test_bus() else { return };
    let runs = counter();
    let mut registry = HandlerRegistry::new();
    {
        let runs = runs.clone();
        registry
            .subscribe(
                "order.#",
                handler_fn("broken", move |_, _| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Err("database unavailable".into())
                }),
            )
            .unwrap();
    }
    registry
        .subscribe("#", handler_fn("panicky", |_, _| panic!("bug in handler")))
        .unwrap();
    let (builder, queue) = bus.service("broken", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder
        .retry(RetryPolicy::new(
            4,
            vec![Duration::from_millis(100), Duration::from_millis(200)],
        ))
        .observer(tx)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let dlq = subscriber.dead_letter_queue();
    let running = subscriber.spawn().unwrap();
    let sent = event("order", "created", 7);
    bus.publisher().publish(&sent).unwrap();

    let got = reports(&rx, 4);
    let last = got.last().unwrap();
    assert_eq!(last.attempt, 4);
    assert!(
        matches!(
            &last.disposition,
            Disposition::DeadLettered {
                kind: DeadLetterKind::Exhausted,
                ..
            }
        ),
        "{:?}",
        last.disposition
    );
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    let stats = running.stop().unwrap();
    assert_eq!((stats.retried, stats.dead_lettered_exhausted), (3, 1));

    let dead = bus.drain(&dlq);
    assert_eq!(dead.len(), 1);
    let message = &dead[0];
    assert_eq!(pubsub_core::json::from_slice(&message.body).unwrap(), sent);
    let h = |name: &str| {
        message
            .properties
            .headers
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no header {name}"))
    };
    assert_eq!(h(headers::DEAD_LETTER_KIND), HeaderValue::from("exhausted"));
    assert_eq!(h(headers::ATTEMPT), HeaderValue::Int(4));
    assert_eq!(
        h(headers::FAILED_HANDLERS).string_items(),
        ["broken", "panicky"]
    );
    let last_error = h(headers::LAST_ERROR);
    let last_error = last_error.as_str().unwrap();
    assert!(
        last_error.contains("broken: database unavailable"),
        "{last_error}"
    );
    assert!(
        last_error.contains("panicky: handler panicked: bug in handler"),
        "{last_error}"
    );
    assert!(h(headers::FIRST_FAILURE).as_str().unwrap().contains('T'));
    assert_eq!(h(headers::SOURCE_QUEUE), HeaderValue::from(queue.as_str()));
    assert_eq!(
        h(headers::ORIGINAL_EXCHANGE),
        HeaderValue::from(bus.exchange())
    );
    assert_eq!(
        h(headers::ORIGINAL_ROUTING_KEY),
        HeaderValue::from("order.created")
    );
    assert_eq!(
        message.properties.message_id.as_deref(),
        Some(sent.event_id().to_string().as_str())
    );
}

#[test]
fn poison_messages_go_to_the_dead_letter_queue_at_once() {
    let Some(mut bus) = test_bus() else { return };
    let runs = counter();
    let mut registry = HandlerRegistry::new();
    registry.subscribe("#", counting("count", &runs)).unwrap();
    let (builder, _) = bus.service("poison", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder
        .max_body_size(16 * 1024)
        .supported_major_versions(&[1])
        .observer(tx)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let dlq = subscriber.dead_letter_queue();
    let running = subscriber.spawn().unwrap();

    let json = Properties {
        content_type: Some("application/json".into()),
        ..Properties::default()
    };
    let valid = pubsub_core::json::to_vec(&event("order", "created", 1));
    let missing_field = br#"{"domain":"order","action":"created","data":{}}"#.to_vec();
    let v2 = pubsub_core::json::to_vec(
        &Event::builder("order", "created")
            .version("2.0")
            .build()
            .unwrap(),
    );
    let poison: Vec<(&str, Vec<u8>, Properties, &str)> = vec![
        (
            "malformed JSON",
            b"{not json".to_vec(),
            json.clone(),
            "not valid JSON",
        ),
        (
            "non-UTF-8",
            vec![0xff, 0xfe, 0x00],
            json.clone(),
            "not UTF-8",
        ),
        (
            "missing field",
            missing_field,
            json.clone(),
            "missing field `event_id`",
        ),
        ("empty body", Vec::new(), json.clone(), "JSON"),
        (
            "deeply nested",
            format!("{{\"data\":{}{}}}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            Properties::default(),
            "recursion limit",
        ),
        (
            "wrong content type",
            valid.clone(),
            Properties {
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
            "content type",
        ),
        (
            "too large",
            vec![b' '; 20_000],
            json.clone(),
            "exceeds the maximum",
        ),
        ("unsupported version", v2, json.clone(), "not supported"),
    ];
    for (_, body, properties, _) in &poison {
        bus.publish_raw(bus.exchange(), "order.created", body, properties);
    }
    // The consumer keeps going: a valid event after the poison is handled.
    bus.publish_raw(bus.exchange(), "order.created", &valid, &json);

    let got = reports(&rx, poison.len() + 1);
    for (report, (name, _, _, reason)) in got.iter().zip(&poison) {
        match &report.disposition {
            Disposition::DeadLettered {
                kind: DeadLetterKind::Poison,
                reason: r,
            } => {
                assert!(r.contains(reason), "{name}: {r}")
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(report.handlers.is_empty(), "{name}");
    }
    assert_eq!(got.last().unwrap().disposition, Disposition::Acked);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stats = running.stop().unwrap();
    assert_eq!(stats.dead_lettered_poison, poison.len() as u64);
    assert_eq!(stats.retried, 0);

    let dead = bus.drain(&dlq);
    assert_eq!(dead.len(), poison.len());
    for message in &dead {
        assert_eq!(
            message.properties.headers.get(headers::DEAD_LETTER_KIND),
            Some(&HeaderValue::from("poison"))
        );
        assert!(message
            .properties
            .headers
            .contains_key(headers::DEAD_LETTER_REASON));
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Payment {
    payment_id: String,
    amount: f64,
}

impl TypedEvent for Payment {
    const DOMAIN: &'static str = "order";
    const ACTION: &'static str = "paid";
}

#[test]
fn a_typed_handler_that_cannot_decode_dead_letters_without_retrying() {
    let Some(mut bus) = test_bus() else { return };
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe(
            "order.paid",
            handler_fn("charge", |event, _| {
                let payment: Payment = event.decode()?;
                assert!(payment.amount >= 0.0);
                Ok(())
            }),
        )
        .unwrap();
    let (builder, _) = bus.service("typed", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder.observer(tx).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();
    // `amount` is a string: the data does not fit `Payment`, and never will.
    let bad = Event::new(
        "order",
        "paid",
        serde_json::json!({"payment_id": "P", "amount": "ten"}),
    )
    .unwrap();
    bus.publisher().publish(&bad).unwrap();
    let report = &reports(&rx, 1)[0];
    match &report.disposition {
        Disposition::DeadLettered {
            kind: DeadLetterKind::Poison,
            reason,
        } => {
            assert!(reason.contains("data.amount"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let stats = running.stop().unwrap();
    assert_eq!((stats.retried, stats.dead_lettered_poison), (0, 1));
}

/// With jitter, each retried copy carries its own wait as a per-message expiration below the
/// delay queue's TTL, and comes back after that wait, not the queue's whole delay: on a
/// classic delay queue and on a quorum one.
fn jittered_retries_come_back_after_their_own_wait(quorum: bool) {
    let Some(mut bus) = test_bus() else { return };
    let delay = Duration::from_millis(1000);
    let runs = counter();
    let mut registry = HandlerRegistry::new();
    {
        let runs = runs.clone();
        registry
            .subscribe(
                "order.*",
                handler_fn("flaky", move |_, _| {
                    if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err("transient".into())
                    } else {
                        Ok(())
                    }
                }),
            )
            .unwrap();
    }
    let (builder, _) = bus.service(if quorum { "jitter-q" } else { "jitter" }, registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder
        .retry(RetryPolicy::new(3, vec![delay]).with_jitter(1.0))
        .quorum(quorum)
        .observer(tx)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();
    bus.publisher().publish(&event("order", "paid", 1)).unwrap();

    let mut last = None;
    let mut waits = Vec::new();
    for attempt in 1..=3 {
        let report = rx.recv_timeout(crate::support::WAIT).expect("a report");
        let arrived = std::time::Instant::now();
        assert_eq!(report.attempt, attempt);
        if let Some((sent, wait)) = last {
            let took: Duration = arrived - sent;
            // Back after its own wait (plus the time to handle and report it), which is
            // shorter than the queue's delay whenever the sample says so.
            assert!(
                took < wait + Duration::from_millis(600),
                "attempt {attempt} came back after {took:?}, its wait was {wait:?}"
            );
        }
        match report.disposition {
            Disposition::Retried { delay: wait, .. } => {
                assert!(
                    wait <= delay && wait >= Duration::from_millis(1),
                    "{wait:?}"
                );
                waits.push(wait);
                last = Some((arrived, wait));
            }
            other => {
                assert_eq!(other, Disposition::Acked);
                assert_eq!(attempt, 3);
            }
        }
    }
    assert_eq!(waits.len(), 2);
    running.stop().unwrap();
}

#[test]
fn jittered_retries_come_back_after_their_own_wait_classic() {
    jittered_retries_come_back_after_their_own_wait(false);
}

#[test]
fn jittered_retries_come_back_after_their_own_wait_quorum() {
    jittered_retries_come_back_after_their_own_wait(true);
}
