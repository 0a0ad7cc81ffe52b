use pubsub_amqp::{Channel, Connection, HeaderValue, QueueConfig};
use pubsub_testkit::raw::{
    hostile, ContentHeader, FieldArray, FieldTable, RawProperties, RawPublisher,
    ShortStringProperty,
};

/// A queue of its own bound to the default exchange (its name is the routing key), deleted
/// at the end.
struct Queue {
    name: String,
    channel: Channel,
    _connection: Connection,
}

impl Queue {
    fn new(prefix: &str) -> Option<Queue> {
        let config = pubsub_testkit::broker()?;
        let mut connection = Connection::open(&config).unwrap();
        let channel = connection.open_channel().unwrap();
        let name = pubsub_testkit::unique(prefix);
        channel
            .declare_queue(&name, &QueueConfig::default())
            .unwrap();
        Some(Queue {
            name,
            channel,
            _connection: connection,
        })
    }

    fn ready(&self) -> u32 {
        self.channel.queue_info(&self.name).unwrap().message_count
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = self.channel.delete_queue(&self.name);
    }
}

#[test]
fn a_valid_message_published_raw_reads_back_intact() {
    let Some(queue) = Queue::new("raw") else {
        return;
    };
    let config = pubsub_testkit::broker().unwrap();
    let mut publisher = RawPublisher::connect(&config).unwrap();
    let headers = FieldTable::new()
        .long_string("text", "héllo")
        .int("count", -7)
        .boolean("flag", true)
        .table("nested", &FieldTable::new().long_string("inner", "x"))
        .array("list", &FieldArray::new().long_string("a").long_string("b"));
    let properties = RawProperties::new()
        .content_type("application/json")
        .delivery_mode(2)
        .message_id("m-1")
        .correlation_id("c-1")
        .app_id("raw-app")
        .kind("order.created")
        .timestamp(1_700_000_000)
        .headers(headers);
    // Large enough for several body frames.
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(300_000)).into_bytes();
    for _ in 0..2 {
        publisher
            .publish("", queue.name.as_bytes(), &properties.clone().into(), &body)
            .unwrap();
    }
    publisher.close().unwrap();

    assert_eq!(queue.ready(), 2);
    let (delivery, _) = queue.channel.get(&queue.name).unwrap().unwrap();
    assert_eq!(delivery.body(), body);
    assert_eq!(delivery.routing_key(), queue.name);
    assert_eq!(delivery.content_type(), Some("application/json"));
    assert_eq!(delivery.message_id(), Some("m-1"));
    assert_eq!(delivery.correlation_id(), Some("c-1"));
    assert_eq!(delivery.app_id(), Some("raw-app"));
    let props = delivery.properties();
    assert!(props.persistent);
    assert_eq!(props.kind.as_deref(), Some("order.created"));
    assert_eq!(props.timestamp, Some(1_700_000_000));
    assert_eq!(props.headers["text"], HeaderValue::from("héllo"));
    assert_eq!(props.headers["count"], HeaderValue::Int(-7));
    assert_eq!(props.headers["flag"], HeaderValue::Bool(true));
    match &props.headers["nested"] {
        HeaderValue::Table(t) => assert_eq!(t["inner"], HeaderValue::from("x")),
        other => panic!("{other:?}"),
    }
    assert_eq!(props.headers["list"].string_items(), ["a", "b"]);
    assert_eq!(delivery.alteration(), None);
    queue.channel.ack(delivery).unwrap();
}

#[test]
fn the_broker_takes_every_hostile_class() {
    let Some(queue) = Queue::new("raw-hostile") else {
        return;
    };
    let config = pubsub_testkit::broker().unwrap();
    // Through a topic exchange, so that a routing key that is not UTF-8 reaches the queue.
    queue
        .channel
        .bind_queue(&queue.name, "amq.topic", &format!("{}.#", queue.name))
        .unwrap();
    let mut publisher = RawPublisher::connect(&config).unwrap();
    let all = hostile::every_class(&format!("{}.created", queue.name));
    for message in &all {
        publisher
            .publish("amq.topic", &message.routing_key, &message.header, b"{}")
            .unwrap_or_else(|e| panic!("{}: {e}", message.class));
    }
    publisher.close().unwrap();
    assert_eq!(queue.ready() as usize, all.len());
}

/// What RabbitMQ itself refuses, so that the hostile tests need not try.
#[test]
fn the_broker_refuses_what_it_checks() {
    let Some(queue) = Queue::new("raw-refused") else {
        return;
    };
    let config = pubsub_testkit::broker().unwrap();
    let cases: Vec<(&str, ContentHeader)> = vec![
        (
            "user_id",
            RawProperties::new()
                .short_string(ShortStringProperty::UserId, hostile::NOT_UTF8)
                .into(),
        ),
        (
            "expiration",
            RawProperties::new()
                .short_string(ShortStringProperty::Expiration, hostile::NOT_UTF8)
                .into(),
        ),
        (
            "unknown field type",
            RawProperties::new()
                .headers(hostile::unknown_field_type())
                .into(),
        ),
        (
            "overrunning table length",
            RawProperties::new()
                .headers(hostile::overrunning_length())
                .into(),
        ),
        // Flags announce a content type that is not there.
        ("truncated header", ContentHeader::Raw(vec![0x80, 0x00])),
        // Bytes after the property list.
        (
            "trailing bytes",
            ContentHeader::Raw(b"\x80\x00\x01a!".to_vec()),
        ),
    ];
    for (name, header) in cases {
        let mut publisher = RawPublisher::connect(&config).unwrap();
        let outcome = publisher.publish("", queue.name.as_bytes(), &header, b"{}");
        assert!(
            matches!(outcome, Err(pubsub_testkit::Error::Closed { .. })),
            "{name}: {outcome:?}"
        );
    }
    assert_eq!(queue.ready(), 0);
}
