//! Hostile clients on the exchange (issue 10): messages another service could publish that
//! amiquip cannot read (written frame by frame with `pubsub_testkit::raw`), and forged retry
//! state. None of them may take the subscriber down: the good events around each one are
//! handled, the hostile one is dead-lettered as poison with a reason that names what was
//! wrong (or, for forged retry state, handled like any fresh event), and the subscriber
//! never reconnects.
//!
//! Until the frame guard is in `pubsub-amqp`, these fail, and the nested-header ones abort
//! the test binary (stack overflow in amiquip's I/O thread): run the others by name.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pubsub_amqp::{HeaderValue, Properties};
use pubsub_core::{handler_fn, json, Event};
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{headers, DeadLetterKind, Disposition};
use pubsub_testkit::raw::{hostile, ContentHeader, FieldTable, RawPublisher, ShortStringProperty};

use crate::support::{counting, event, reports, test_bus, BusExt};

/// Good events published before the hostile one, and as many after it.
const GOOD_AROUND: usize = 3;

/// What the hostile message should become.
enum Expect<'a> {
    /// Dead-lettered as poison, with a reason holding each of these words. Words are
    /// compared on letters and digits only, lowercased: `"not utf-8"` matches
    /// "message_id is not UTF-8", `"message_id"` matches "message id".
    DeadLettered(&'a [&'a str]),
    /// As [`Expect::DeadLettered`], unless the broker itself refuses the message (it closes
    /// the raw publisher's connection): then nothing reaches the queue.
    DeadLetteredUnlessRefused(&'a [&'a str]),
}

/// Letters and digits only, lowercased.
fn squash(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn assert_names(reason: &str, words: &[&str]) {
    let squashed = squash(reason);
    for word in words {
        assert!(
            squashed.contains(&squash(word)),
            "the reason {reason:?} does not say {word:?}"
        );
    }
}

/// Publishes good `order.created` events, then one with `routing_key` (bytes) and `header`
/// through the raw publisher (its body a valid event), then good events again; checks that
/// the subscriber handled every good event, dead-lettered the hostile one as `expect` says,
/// and never reconnected.
fn check(routing_key: &[u8], header: ContentHeader, expect: Expect<'_>) {
    let Some(mut bus) = test_bus() else { return };
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut registry = HandlerRegistry::new();
    {
        let seen = seen.clone();
        registry
            .subscribe(
                "order.*",
                handler_fn("record", move |event: &Event, _| {
                    seen.lock().unwrap().push(event.event_id().to_string());
                    Ok(())
                }),
            )
            .unwrap();
    }
    let (builder, _) = bus.service("hostile", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder.observer(tx).build().unwrap();
    subscriber.setup().unwrap();
    let dlq = subscriber.dead_letter_queue();
    let running = subscriber.spawn().unwrap();

    let mut publisher = bus.publisher();
    let good: Vec<Event> = (0..2 * GOOD_AROUND)
        .map(|i| event("order", "created", i))
        .collect();
    for e in &good[..GOOD_AROUND] {
        publisher.publish(e).unwrap();
    }
    let bad = event("order", "created", 999);
    let bad_body = json::to_vec(&bad);
    let mut raw = RawPublisher::connect(bus.config()).unwrap();
    let refused = match raw.publish(bus.exchange(), routing_key, &header, &bad_body) {
        Ok(()) => {
            raw.close().unwrap();
            false
        }
        Err(e @ pubsub_testkit::Error::Closed { .. }) => match expect {
            Expect::DeadLetteredUnlessRefused(_) => {
                eprintln!("the broker refused the hostile message: {e}");
                true
            }
            Expect::DeadLettered(_) => panic!("the broker refused the hostile message: {e}"),
        },
        Err(e) => panic!("publishing the hostile message: {e}"),
    };
    for e in &good[GOOD_AROUND..] {
        publisher.publish(e).unwrap();
    }
    let words = match expect {
        Expect::DeadLettered(w) | Expect::DeadLetteredUnlessRefused(w) => w,
    };

    let expected_bad = usize::from(!refused);
    let got = reports(&rx, good.len() + expected_bad);
    let acked = got
        .iter()
        .filter(|r| r.disposition == Disposition::Acked)
        .count();
    assert_eq!(acked, good.len(), "{got:#?}");
    let dead: Vec<&String> = got
        .iter()
        .filter_map(|r| match &r.disposition {
            Disposition::DeadLettered {
                kind: DeadLetterKind::Poison,
                reason,
            } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), expected_bad, "{got:#?}");
    for reason in &dead {
        assert_names(reason, words);
    }
    let handled: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    let expected: HashSet<String> = good.iter().map(|e| e.event_id().to_string()).collect();
    assert_eq!(
        handled, expected,
        "the hostile event must not reach a handler"
    );
    assert_eq!(seen.lock().unwrap().len(), good.len(), "an event ran twice");

    assert!(!running.is_finished(), "the subscriber stopped");
    assert_eq!(running.stats().reconnects, 0);
    let stats = running.stop().unwrap();
    assert_eq!(stats.reconnects, 0, "{stats}");
    assert_eq!(stats.acked, good.len() as u64, "{stats}");
    assert_eq!(stats.dead_lettered_poison, expected_bad as u64, "{stats}");
    assert_eq!(stats.redelivered, 0, "{stats}");

    let dead = bus.drain(&dlq);
    assert_eq!(dead.len(), expected_bad);
    if let Some(message) = dead.first() {
        assert_eq!(
            message.body, bad_body,
            "the dead letter keeps the original body"
        );
        assert_eq!(
            message.properties.headers.get(headers::DEAD_LETTER_KIND),
            Some(&HeaderValue::from("poison"))
        );
        let reason = message
            .properties
            .headers
            .get(headers::DEAD_LETTER_REASON)
            .expect("no dead-letter reason");
        assert_names(reason.as_str().expect("the reason is a string"), words);
    }
}

#[test]
fn a_routing_key_that_is_not_utf8_is_dead_lettered() {
    check(
        &hostile::non_utf8_routing_key("order.created"),
        hostile::event_properties().into(),
        Expect::DeadLettered(&["routing key", "not utf-8"]),
    );
}

/// A short-string property that is not UTF-8 (the other properties valid).
fn check_property(property: ShortStringProperty) {
    let mut value = b"x-".to_vec();
    value.extend_from_slice(hostile::NOT_UTF8);
    let properties = hostile::event_properties()
        .message_id("m-1")
        .app_id("hostile-app")
        .short_string(property, value);
    check(
        b"order.created",
        properties.into(),
        Expect::DeadLettered(&[property.name(), "not utf-8"]),
    );
}

#[test]
fn a_content_type_that_is_not_utf8_is_dead_lettered() {
    check_property(ShortStringProperty::ContentType);
}

#[test]
fn a_content_encoding_that_is_not_utf8_is_dead_lettered() {
    check_property(ShortStringProperty::ContentEncoding);
}

#[test]
fn a_correlation_id_that_is_not_utf8_is_dead_lettered() {
    check_property(ShortStringProperty::CorrelationId);
}

#[test]
fn a_reply_to_that_is_not_utf8_is_dead_lettered() {
    check_property(ShortStringProperty::ReplyTo);
}

#[test]
fn a_message_id_that_is_not_utf8_is_dead_lettered() {
    check_property(ShortStringProperty::MessageId);
}

#[test]
fn a_type_that_is_not_utf8_is_dead_lettered() {
    check_property(ShortStringProperty::Type);
}

#[test]
fn an_app_id_that_is_not_utf8_is_dead_lettered() {
    check_property(ShortStringProperty::AppId);
}

fn check_headers(table: FieldTable, words: &[&str]) {
    check(
        b"order.created",
        hostile::event_properties().headers(table).into(),
        Expect::DeadLettered(words),
    );
}

#[test]
fn a_header_key_that_is_not_utf8_is_dead_lettered() {
    check_headers(hostile::non_utf8_key(), &["header", "not utf-8"]);
}

#[test]
fn a_long_string_header_that_is_not_utf8_is_dead_lettered() {
    check_headers(hostile::non_utf8_long_string(), &["header", "not utf-8"]);
}

/// Aborts the whole test binary until the frame guard lands.
#[test]
fn headers_nested_thousands_of_tables_deep_are_dead_lettered() {
    check_headers(
        hostile::nested_tables(hostile::DEEP),
        &["nested deeper than"],
    );
}

/// Aborts the whole test binary until the frame guard lands.
#[test]
fn headers_nested_thousands_of_arrays_deep_are_dead_lettered() {
    check_headers(
        hostile::nested_arrays(hostile::DEEP),
        &["nested deeper than"],
    );
}

/// RabbitMQ 3.10 refuses this one itself (541, the publisher's connection closed), so it
/// never reaches the queue; a broker that let it through must see it dead-lettered.
#[test]
fn a_header_of_unknown_field_type_is_dead_lettered_or_refused() {
    check(
        b"order.created",
        hostile::event_properties()
            .headers(hostile::unknown_field_type())
            .into(),
        Expect::DeadLetteredUnlessRefused(&["content header"]),
    );
}

/// The properties of a fresh event message carrying retry state it did not get from the
/// subscriber.
fn forged(state: &[(&str, HeaderValue)]) -> Properties {
    Properties {
        content_type: Some(json::CONTENT_TYPE.to_owned()),
        persistent: true,
        headers: state
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..Properties::default()
    }
}

#[test]
fn forged_retry_state_on_a_fresh_message_is_not_trusted() {
    let Some(mut bus) = test_bus() else { return };
    let (first, second) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("order.*", counting("first", &first))
        .unwrap();
    registry
        .subscribe("order.*", counting("second", &second))
        .unwrap();
    let (builder, _) = bus.service("forged", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder.observer(tx).build().unwrap();
    subscriber.setup().unwrap();
    let dlq = subscriber.dead_letter_queue();
    let running = subscriber.spawn().unwrap();

    let mut publisher = bus.publisher();
    publisher.publish(&event("order", "created", 1)).unwrap();
    let sent = event("order", "created", 2);
    let body = json::to_vec(&sent);
    bus.publish_raw(
        bus.exchange(),
        "order.created",
        &body,
        &forged(&[
            (
                headers::DONE,
                HeaderValue::from(vec!["first@order.*".to_owned()]),
            ),
            (headers::ATTEMPT, HeaderValue::Int(5)),
            ("x-delivery-count", HeaderValue::Int(100)),
        ]),
    );
    publisher.publish(&event("order", "created", 3)).unwrap();

    let got = reports(&rx, 3);
    assert!(
        got.iter().all(|r| r.disposition == Disposition::Acked),
        "{got:#?}"
    );
    let forged_report = got
        .iter()
        .find(|r| r.event_id == Some(sent.event_id().to_string()))
        .expect("no report for the forged event");
    assert_eq!(
        forged_report.attempt, 1,
        "a forged attempt counts as the first"
    );
    let ran: Vec<&str> = forged_report
        .handlers
        .iter()
        .map(|h| h.handler.as_str())
        .collect();
    assert_eq!(
        ran,
        ["first", "second"],
        "a forged x-pubsub-done skipped a handler"
    );
    assert_eq!(first.load(Ordering::SeqCst), 3);
    assert_eq!(second.load(Ordering::SeqCst), 3);
    let stats = running.stop().unwrap();
    assert_eq!(
        (stats.acked, stats.dead_lettered(), stats.reconnects),
        (3, 0, 0),
        "{stats}"
    );
    assert_eq!(bus.ready(&dlq), Some(0));
}

#[test]
fn a_forged_attempt_does_not_use_up_the_retries() {
    let Some(mut bus) = test_bus() else { return };
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    {
        let runs = runs.clone();
        registry
            .subscribe(
                "order.*",
                handler_fn("fails-once", move |_, _| {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err("transient failure".into())
                    } else {
                        Ok(())
                    }
                }),
            )
            .unwrap();
    }
    // The bus's retry policy allows 3 attempts; the forged header claims the 5th.
    let (builder, _) = bus.service("forged-attempt", registry);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut subscriber = builder.observer(tx).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();
    let body = json::to_vec(&event("order", "created", 1));
    bus.publish_raw(
        bus.exchange(),
        "order.created",
        &body,
        &forged(&[(headers::ATTEMPT, HeaderValue::Int(5))]),
    );

    let got = reports(&rx, 2);
    assert!(
        matches!(
            got[0].disposition,
            Disposition::Retried {
                next_attempt: 2,
                ..
            }
        ),
        "{:?}",
        got[0]
    );
    assert_eq!(
        (got[1].attempt, &got[1].disposition),
        (2, &Disposition::Acked)
    );
    let stats = running.stop().unwrap();
    assert_eq!(
        (
            stats.retried,
            stats.acked,
            stats.dead_lettered(),
            stats.reconnects
        ),
        (1, 1, 0, 0),
        "{stats}"
    );
}
