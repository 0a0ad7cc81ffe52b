//! The frame guard against frames another client put on the broker: every hostile class the
//! broker passes through arrives intact in body, marked as altered with its reason, on plain
//! and on TLS connections, with the connection still usable.

use pubsub_amqp::{AmqpConfig, Channel, Connection, QueueConfig};
use pubsub_testkit::raw::{hostile, RawPublisher};

/// The words each class's reason must hold.
fn expected(class: &str) -> &'static str {
    match class {
        "routing-key" => "routing key is not UTF-8",
        "header-key" => "a header name is not UTF-8",
        "header-long-string" => "a header value is not UTF-8",
        "nested-tables" | "nested-arrays" => "headers nested deeper than 32 levels",
        "content_type" => "content_type is not UTF-8",
        "content_encoding" => "content_encoding is not UTF-8",
        "correlation_id" => "correlation_id is not UTF-8",
        "reply_to" => "reply_to is not UTF-8",
        "message_id" => "message_id is not UTF-8",
        "type" => "type is not UTF-8",
        "app_id" => "app_id is not UTF-8",
        other => panic!("no expectation for class {other}"),
    }
}

fn get(channel: &Channel, queue: &str) -> pubsub_amqp::Delivery {
    for _ in 0..500 {
        if let Some((delivery, _)) = channel.get(queue).unwrap() {
            return delivery;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("nothing arrived in {queue}");
}

/// Publishes every class (each between two good messages) straight to a queue, then reads
/// them through `reader`.
fn every_class_through(base: &AmqpConfig, reader: &AmqpConfig) {
    let queue = pubsub_testkit::unique("guard");
    let mut connection = Connection::open(reader).unwrap();
    let channel = connection.open_channel().unwrap();
    channel
        .declare_queue(&queue, &QueueConfig::default())
        .unwrap();

    let mut raw = RawPublisher::connect(base).unwrap();
    let good = hostile::event_properties().into();
    let classes = hostile::every_class(&queue);
    for message in &classes {
        raw.publish("", queue.as_bytes(), &good, b"before").unwrap();
        let body = format!("hostile {}", message.class);
        raw.publish("", &message.routing_key, &message.header, body.as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", message.class));
        raw.publish("", queue.as_bytes(), &good, b"after").unwrap();
    }
    raw.close().unwrap();

    for message in &classes {
        let before = get(&channel, &queue);
        assert_eq!((before.body(), before.alteration()), (&b"before"[..], None));
        channel.ack(before).unwrap();
        // A non-UTF-8 routing key is not the queue's name: it was published to no queue.
        if message.class == "routing-key" {
            let after = get(&channel, &queue);
            assert_eq!(after.body(), b"after");
            channel.ack(after).unwrap();
            continue;
        }
        let bad = get(&channel, &queue);
        assert_eq!(bad.body(), format!("hostile {}", message.class).as_bytes());
        assert_eq!(
            bad.alteration(),
            Some(expected(message.class)),
            "{}",
            message.class
        );
        channel.ack(bad).unwrap();
        let after = get(&channel, &queue);
        assert_eq!((after.body(), after.alteration()), (&b"after"[..], None));
        channel.ack(after).unwrap();
    }
    channel.delete_queue(&queue).unwrap();
    connection.close().unwrap();
}

#[test]
fn every_hostile_class_arrives_marked_with_its_body_intact() {
    let Some(base) = pubsub_testkit::broker() else {
        return;
    };
    every_class_through(&base, &base);
}

#[test]
fn the_guard_sees_plaintext_frames_on_amqps() {
    let Some((reader, _front, _ca)) = crate::tls::front() else {
        return;
    };
    let base = pubsub_testkit::broker().unwrap();
    every_class_through(&base, &reader);
}

#[test]
fn a_routing_key_that_is_not_utf8_is_marked() {
    let Some(base) = pubsub_testkit::broker() else {
        return;
    };
    let exchange = pubsub_testkit::unique("guard-x");
    let queue = pubsub_testkit::unique("guard-q");
    let mut connection = Connection::open(&base).unwrap();
    let channel = connection.open_channel().unwrap();
    channel
        .declare_exchange(&exchange, &pubsub_amqp::ExchangeConfig::default())
        .unwrap();
    channel
        .declare_queue(&queue, &QueueConfig::default())
        .unwrap();
    channel.bind_queue(&queue, &exchange, "order.#").unwrap();
    let mut raw = RawPublisher::connect(&base).unwrap();
    let header = hostile::event_properties().into();
    raw.publish(
        &exchange,
        &hostile::non_utf8_routing_key("order.created"),
        &header,
        b"{}",
    )
    .unwrap();
    raw.close().unwrap();
    let delivery = get(&channel, &queue);
    assert_eq!(delivery.alteration(), Some("routing key is not UTF-8"));
    assert!(delivery.routing_key().starts_with("order.created"));
    assert_eq!(delivery.body(), b"{}");
    channel.ack(delivery).unwrap();
    channel.delete_queue(&queue).unwrap();
    channel.delete_exchange(&exchange).unwrap();
    connection.close().unwrap();
}
