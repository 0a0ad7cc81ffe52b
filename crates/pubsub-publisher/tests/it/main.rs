//! Integration tests against the real broker.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use pubsub_amqp::{Channel, Connection, ConsumerEvent, QueueConfig};
use pubsub_core::{json, Event};
use pubsub_publisher::{Error, EventPublisher, PublishOptions, Unroutable};
use serde_json::json;

/// An exchange and a queue bound to it with `#`, deleted on drop.
struct Fixture {
    admin: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
}

impl Fixture {
    fn new(queue_config: &QueueConfig) -> Option<Fixture> {
        let config = pubsub_testkit::broker()?;
        let mut admin = Connection::open(&config).unwrap();
        let channel = admin.open_channel().unwrap();
        let exchange = pubsub_testkit::unique("pub");
        let queue = pubsub_testkit::unique("pubq");
        channel
            .declare_exchange(&exchange, &Default::default())
            .unwrap();
        channel.declare_queue(&queue, queue_config).unwrap();
        channel.bind_queue(&queue, &exchange, "#").unwrap();
        Some(Fixture {
            admin,
            channel,
            exchange,
            queue,
        })
    }

    fn publisher(&self) -> pubsub_publisher::PublisherBuilder {
        let connection = Connection::open(self.admin.config()).unwrap();
        EventPublisher::builder(connection, &self.exchange)
    }

    fn count(&self) -> u32 {
        self.channel.queue_info(&self.queue).unwrap().message_count
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.channel.delete_queue(&self.queue);
        let _ = self.channel.delete_exchange(&self.exchange);
    }
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
    let Some(fx) = Fixture::new(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = fx.publisher().app_id("orders-service").build().unwrap();
    let event = event(1);
    publisher
        .publish_with(&event, &PublishOptions::correlated("flow-7"))
        .unwrap();

    let consumer = fx.channel.consume(&fx.queue, false).unwrap();
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
    fx.channel.ack(delivery).unwrap();
    publisher.close().unwrap();
}

#[test]
fn publish_all_confirms_every_event() {
    let Some(fx) = Fixture::new(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = fx.publisher().build().unwrap();
    let events: Vec<Event> = (0..500).map(event).collect();
    let outcomes = publisher.publish_all(&events);
    assert_eq!(outcomes.len(), 500);
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(fx.count(), 500);
}

#[test]
fn publish_all_with_a_small_window_confirms_every_event() {
    let Some(fx) = Fixture::new(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = fx.publisher().confirm_window(7).build().unwrap();
    let events: Vec<Event> = (0..3_000).map(event).collect();
    let outcomes = publisher.publish_all(&events);
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(fx.count(), 3_000);
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
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let exchange = pubsub_testkit::unique("empty");
    let connection = Connection::open(&config).unwrap();
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

    let connection = Connection::open(&config).unwrap();
    let mut lenient = EventPublisher::new(connection, &exchange).unwrap();
    lenient.publish(&event(4)).unwrap();
    strict.close().unwrap();
    let mut admin = Connection::open(&config).unwrap();
    admin
        .open_channel()
        .unwrap()
        .delete_exchange(&exchange)
        .unwrap();
}

#[test]
fn a_negative_confirm_is_an_error() {
    let full = QueueConfig::default()
        .max_length(1)
        .argument("x-overflow", "reject-publish");
    let Some(fx) = Fixture::new(&full) else {
        return;
    };
    let mut publisher = fx.publisher().build().unwrap();
    publisher.publish(&event(1)).unwrap();
    let err = publisher.publish(&event(2)).unwrap_err();
    assert!(matches!(err.error(), Error::Nacked), "{err}");
    assert_eq!(fx.count(), 1);
}

#[test]
fn without_confirms_publish_returns_at_once() {
    let Some(fx) = Fixture::new(&QueueConfig::default()) else {
        return;
    };
    let mut publisher = fx.publisher().confirms(false).build().unwrap();
    let events: Vec<Event> = (0..50).map(event).collect();
    assert!(publisher.publish_all(&events).iter().all(Result::is_ok));
    publisher.close().unwrap();
    assert_eq!(fx.count(), 50);
}
