use std::time::Duration;

use pubsub_amqp::{
    Connection, ConsumerEvent, Error, ExchangeConfig, ExchangeKind, HeaderValue, Properties,
    QueueConfig,
};

#[test]
fn declares_binds_publishes_and_consumes() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let exchange = pubsub_testkit::unique("ex");
    let queue = pubsub_testkit::unique("q");
    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    channel
        .declare_exchange(&exchange, &ExchangeConfig::default())
        .unwrap();
    channel
        .declare_queue(&queue, &QueueConfig::default())
        .unwrap();
    channel.bind_queue(&queue, &exchange, "order.*").unwrap();

    let confirms = channel.enable_confirms().unwrap();
    let mut properties = Properties {
        content_type: Some("application/json".into()),
        persistent: true,
        message_id: Some("m-1".into()),
        correlation_id: Some("c-1".into()),
        ..Properties::default()
    };
    properties
        .headers
        .insert("x-attempt".into(), HeaderValue::Int(2));
    channel
        .publish(&exchange, "order.created", b"{\"a\":1}", &properties, false)
        .unwrap();
    channel
        .publish(&exchange, "user.created", b"unrouted", &properties, false)
        .unwrap();
    // Confirms can arrive out of order (an unroutable message is confirmed at once, a
    // persistent routed one after it is written): wait for both tags.
    let mut confirmed = [false; 2];
    while confirmed != [true, true] {
        let confirm = confirms
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(confirm.ack);
        for tag in 1..=2u64 {
            if tag == confirm.delivery_tag || (confirm.multiple && tag < confirm.delivery_tag) {
                confirmed[tag as usize - 1] = true;
            }
        }
    }
    assert_eq!(channel.queue_info(&queue).unwrap().message_count, 1);

    channel.set_prefetch(10).unwrap();
    let consumer = channel.consume(&queue, false).unwrap();
    let Some(ConsumerEvent::Delivery(delivery)) = consumer.next_timeout(Duration::from_secs(5))
    else {
        panic!("no delivery");
    };
    assert_eq!(delivery.body(), b"{\"a\":1}");
    assert_eq!(delivery.routing_key(), "order.created");
    assert_eq!(delivery.correlation_id(), Some("c-1"));
    assert_eq!(delivery.header("x-attempt"), Some(HeaderValue::Int(2)));
    assert_eq!(delivery.properties(), properties);
    assert!(!delivery.redelivered());
    channel.ack(delivery).unwrap();
    drop(consumer);
    assert_eq!(channel.delete_queue(&queue).unwrap(), 0);
    channel.delete_exchange(&exchange).unwrap();
    connection.close().unwrap();
}

#[test]
fn queue_with_different_arguments_names_queue_and_argument() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let queue = pubsub_testkit::unique("q");
    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    channel
        .declare_queue(&queue, &QueueConfig::default().max_length(10))
        .unwrap();
    let other = connection.open_channel().unwrap();
    let err = other
        .declare_queue(&queue, &QueueConfig::default().max_length(20))
        .unwrap_err();
    assert!(matches!(err, Error::Inequivalent { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("queue `{queue}`")), "{text}");
    assert!(text.contains("x-max-length"), "{text}");
    assert!(err.is_permanent());
    channel.delete_queue(&queue).unwrap();
}

#[test]
fn exchange_of_another_kind_is_inequivalent() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let exchange = pubsub_testkit::unique("ex");
    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    channel
        .declare_exchange(&exchange, &ExchangeConfig::default())
        .unwrap();
    let other = connection.open_channel().unwrap();
    let fanout = ExchangeConfig {
        kind: ExchangeKind::Fanout,
        ..ExchangeConfig::default()
    };
    let err = other.declare_exchange(&exchange, &fanout).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Inequivalent {
                kind: "exchange",
                ..
            }
        ),
        "{err:?}"
    );
    channel.delete_exchange(&exchange).unwrap();
}

#[test]
fn missing_queue_is_not_found() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    let err = channel.queue_info("test.no-such-queue-xyz").unwrap_err();
    assert!(
        matches!(err, Error::NotFound { kind: "queue", .. }),
        "{err:?}"
    );
}

#[test]
fn publishing_to_a_missing_exchange_fails_the_confirm() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    let confirms = channel.enable_confirms().unwrap();
    // The publish itself is asynchronous and succeeds; the broker then closes the channel.
    channel
        .publish(
            "test.no-such-exchange",
            "a.b",
            b"x",
            &Properties::default(),
            false,
        )
        .unwrap();
    let confirm = confirms.recv_timeout(Duration::from_secs(5));
    assert!(confirm.is_err(), "{confirm:?}");
    let reason = channel.why_closed();
    assert!(
        matches!(&reason, Error::NotFound { kind: "exchange", name } if name == "test.no-such-exchange"),
        "{reason:?}"
    );
    // The connection itself is fine.
    let fresh = connection.open_channel().unwrap();
    fresh.set_prefetch(1).unwrap();
}
