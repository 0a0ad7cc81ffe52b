//! Integration tests against the real broker.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use pubsub_amqp::{Connection, ConsumerEvent, QueueConfig};
use pubsub_core::{json, Event, EventType, CAUSATION_ID_HEADER, EVENT_TYPE_HEADER};
use pubsub_publisher::{Error, EventPublisher, PublishOptions, Unroutable};
use pubsub_testkit::Bus;
use serde_json::json;

/// The test's bus and a queue bound to its exchange with `#`; both deleted on drop.
fn bus_with_queue(queue_config: &QueueConfig) -> Option<(Bus, String)> {
    let mut bus = Bus::new("pub")?;
    let queue = bus.bound_queue("pubq", "#", queue_config);
    Some((bus, queue))
}

/// A publisher to the bus's exchange, on a connection of its own.
fn publisher(bus: &Bus) -> pubsub_publisher::PublisherBuilder {
    EventPublisher::builder(bus.connection(), bus.exchange())
}

fn event(i: usize) -> Event {
    Event::new(
        "order",
        "created",
        json!({ "order_id": format!("ORD-{i}") }),
    )
    .unwrap()
}

#[test]
fn publish_sets_the_message_properties_and_body() {
    let Some((bus, queue)) = bus_with_queue(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = publisher(&bus).app_id("orders-service").build().unwrap();
    let event = event(1);
    publisher
        .publish_with(&event, &PublishOptions::correlated("flow-7"))
        .unwrap();

    let consumer = bus.admin().consume(&queue, false).unwrap();
    let Some(ConsumerEvent::Delivery(delivery)) = consumer.next_timeout(Duration::from_secs(5))
    else {
        panic!("no delivery");
    };
    let props = delivery.properties();
    assert_eq!(delivery.routing_key(), "order.created");
    assert!(props.persistent);
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.message_id, Some(event.event_id().to_string()));
    assert_eq!(props.kind.as_deref(), Some("order.created"));
    assert_eq!(props.app_id.as_deref(), Some("orders-service"));
    assert_eq!(props.correlation_id.as_deref(), Some("flow-7"));
    assert_eq!(
        props.timestamp,
        Some(event.timestamp().unix_timestamp() as u64)
    );
    assert_eq!(json::from_slice(delivery.body()).unwrap(), event);
    bus.admin().ack(delivery).unwrap();
    publisher.close().unwrap();
}

#[test]
fn publish_each_sends_each_event_with_its_own_causation_and_type() {
    let Some((bus, queue)) = bus_with_queue(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = publisher(&bus).build().unwrap();
    let events = [event(1), event(2)];
    let options = [
        PublishOptions {
            causation_id: Some("cause-1".to_owned()),
            event_type: Some(EventType::Integration),
            ..PublishOptions::correlated("flow-1")
        },
        PublishOptions::default(),
    ];
    for outcome in publisher.publish_each(&events, &options) {
        outcome.unwrap();
    }

    let consumer = bus.admin().consume(&queue, false).unwrap();
    for expected in [Some(("cause-1", "integration", "flow-1")), None] {
        let Some(ConsumerEvent::Delivery(delivery)) = consumer.next_timeout(Duration::from_secs(5))
        else {
            panic!("no delivery");
        };
        let props = delivery.properties();
        let text = |name: &str| props.headers.get(name).and_then(|v| v.as_str());
        let got = text(CAUSATION_ID_HEADER)
            .zip(text(EVENT_TYPE_HEADER))
            .zip(props.correlation_id.as_deref())
            .map(|((c, t), f)| (c, t, f));
        assert_eq!(got, expected);
        if expected.is_none() {
            assert!(props.headers.is_empty(), "{:?}", props.headers);
        }
        bus.admin().ack(delivery).unwrap();
    }
    publisher.close().unwrap();
}

#[test]
fn publish_all_confirms_every_event() {
    let Some((bus, queue)) = bus_with_queue(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = publisher(&bus).build().unwrap();
    let events: Vec<Event> = (0..500).map(event).collect();
    let outcomes = publisher.publish_all(&events);
    assert_eq!(outcomes.len(), 500);
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(bus.ready(&queue), Some(500));
}

#[test]
fn publish_all_with_a_small_window_confirms_every_event() {
    let Some((bus, queue)) = bus_with_queue(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = publisher(&bus).confirm_window(7).build().unwrap();
    let events: Vec<Event> = (0..3_000).map(event).collect();
    let outcomes = publisher.publish_all(&events);
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(bus.ready(&queue), Some(3_000));
}

#[test]
fn publishing_to_a_missing_exchange_gives_the_event_back() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let connection = Connection::open(&config).unwrap();
    let missing = pubsub_testkit::unique("missing");
    let mut publisher = EventPublisher::builder(connection, &missing)
        .declare_exchange(None)
        .build()
        .unwrap();
    let event = event(1);
    let err = publisher.publish(&event).unwrap_err();
    assert_eq!(err.event(), &event);
    assert!(
        matches!(
            err.error(),
            Error::Amqp(pubsub_amqp::Error::NotFound {
                kind: "exchange",
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&missing), "{err}");
    // The publisher stays usable: a second try fails the same way, not with a dead channel.
    let err = publisher.publish(&event).unwrap_err();
    assert!(
        matches!(
            err.error(),
            Error::Amqp(pubsub_amqp::Error::NotFound { .. })
        ),
        "{err}"
    );
    let batch = publisher.publish_all(&[event.clone(), event.clone()]);
    assert!(batch.iter().all(Result::is_err));
    assert_eq!(batch[1].as_ref().unwrap_err().event(), &event);
}

#[test]
fn unroutable_events_are_reported_as_configured() {
    let Some(mut bus) = Bus::new("pub") else {
        return;
    };
    let exchange = bus.exchange_name("empty");
    let connection = bus.connection();
    let mut strict = EventPublisher::builder(connection, &exchange)
        .unroutable(Unroutable::Error)
        .build()
        .unwrap();
    let err = strict.publish(&event(1)).unwrap_err();
    assert!(matches!(err.error(), Error::Unroutable { .. }), "{err}");
    assert!(err.to_string().contains("order.created"), "{err}");
    let outcomes = strict.publish_all(&[event(2), event(3)]);
    assert!(outcomes
        .iter()
        .all(|o| matches!(o.as_ref().unwrap_err().error(), Error::Unroutable { .. })));

    let mut lenient = EventPublisher::new(bus.connection(), &exchange).unwrap();
    lenient.publish(&event(4)).unwrap();
    strict.close().unwrap();
}

#[test]
fn a_negative_confirm_is_an_error() {
    let full = QueueConfig::default()
        .max_length(1)
        .argument("x-overflow", "reject-publish");
    let Some((bus, queue)) = bus_with_queue(&full) else {
        return;
    };
    let mut publisher = publisher(&bus).build().unwrap();
    publisher.publish(&event(1)).unwrap();
    let err = publisher.publish(&event(2)).unwrap_err();
    assert!(matches!(err.error(), Error::Nacked), "{err}");
    assert_eq!(bus.ready(&queue), Some(1));
}

#[test]
fn without_confirms_publish_returns_at_once() {
    let Some((bus, queue)) = bus_with_queue(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = publisher(&bus).confirms(false).build().unwrap();
    let events: Vec<Event> = (0..50).map(event).collect();
    assert!(publisher.publish_all(&events).iter().all(Result::is_ok));
    publisher.close().unwrap();
    // Unconfirmed publishes are still on their way into the queue when the connection has
    // closed: the count catches up within a moment, and must reach all 50.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while bus.ready(&queue) != Some(50) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(bus.ready(&queue), Some(50));
}

#[test]
fn a_shared_publisher_publishes_from_several_threads() {
    let Some((bus, queue)) = bus_with_queue(&QueueConfig::default()) else {
        return;
    };
    let publisher = publisher(&bus).app_id("orders-service").build().unwrap();
    let (shared, thread) =
        pubsub_publisher::SharedPublisher::spawn(publisher, pubsub_publisher::DEFAULT_QUEUE)
            .unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let shared = shared.clone();
            s.spawn(move || {
                shared
                    .publish(event(i), PublishOptions::correlated("threads"))
                    .unwrap();
            });
        }
    });
    let outcomes = shared.publish_each((4..10).map(event).collect(), Vec::new());
    assert!(outcomes.iter().all(Result::is_ok));
    let receipt = shared.send(event(10), PublishOptions::default()).unwrap();
    receipt.wait().unwrap();
    drop(shared);
    thread.join().unwrap();
    assert_eq!(bus.drain(&queue).len(), 11);
}
