//! Seed 003's event store: every message its binding (`#`) receives is kept with
//! `Envelope::Any`, under the seed's `routing.event.<type>.<entity>` keys and whatever its
//! JSON body; queried by pattern, time, correlation id and id; replayed byte for byte. A
//! pika producer of the seed's publishes some of them.

use std::time::{Duration, Instant};

use pubsub_amqp::{HeaderValue, Headers, Properties, QueueConfig};
use pubsub_core::envelope::{Envelope, BARE_ID_NAMESPACE};
use pubsub_core::Event;
use pubsub_publisher::EventPublisher;
use pubsub_recorder::{record, replay, RecordOptions, Recorder, ReplayOptions, ReplayTarget};
use pubsub_store::{EventQuery, EventStore};
use pubsub_subscriber::headers::DEAD_LETTER_REASON;
use pubsub_subscriber::{queue_names, RetryPolicy};
use pubsub_testkit::python::pika;
use pubsub_testkit::Bus;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::support::TestDb;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id a message without `message_id` is kept under: a UUID v5 of its key and body.
fn derived_id(key: &str, body: &[u8]) -> Uuid {
    let mut name = key.as_bytes().to_vec();
    name.push(0);
    name.extend_from_slice(body);
    Uuid::new_v5(&BARE_ID_NAMESPACE, &name)
}

/// A store on the bus's exchange bound with `#`, keeping any JSON message.
fn any_options(bus: &mut Bus, name: &str) -> RecordOptions {
    let queue = bus.queue_name(name);
    for q in queue_names(&queue, &RetryPolicy::default()) {
        bus.delete_queue_at_end(&q);
    }
    RecordOptions {
        queue,
        exchange: bus.exchange().to_owned(),
        prefetch: 20,
        envelope: Envelope::Any,
        ..RecordOptions::default()
    }
}

#[test]
fn the_any_envelope_keeps_every_json_message_queryable_and_replayable_byte_for_byte() {
    for db in TestDb::all() {
        let name = db.database.to_string();
        let Some(mut bus) = Bus::new("store-any") else {
            return;
        };
        let options = any_options(&mut bus, "store-any");
        let subscriber = record(
            bus.connection(),
            Recorder::new(&db.database).unwrap(),
            &options,
        )
        .unwrap();
        let dlq = subscriber.dead_letter_queue();
        let running = subscriber.spawn().unwrap();
        let before = OffsetDateTime::now_utc() - time::Duration::seconds(5);

        // A six-field event: stored exactly as with the standard envelope.
        let mut publisher = EventPublisher::new(bus.connection(), bus.exchange()).unwrap();
        let standard = Event::new("order", "created", json!({ "n": 1 })).unwrap();
        publisher.publish(&standard).unwrap();
        // Seed 003's events, with its properties and headers; a NUL in one; an array body;
        // a message with a message_id that is not a UUID.
        let mut headers = Headers::new();
        headers.insert("producer_app".into(), HeaderValue::from("py-users"));
        let seed = |correlation: &str, message_id: Option<&str>| Properties {
            content_type: Some("application/json".into()),
            app_id: Some("py-users".into()),
            correlation_id: Some(correlation.into()),
            message_id: message_id.map(str::to_owned),
            headers: headers.clone(),
            ..Properties::default()
        };
        let created = br#"{"id": 1,  "name": "ada",   "email": "ada@example.com"}"#.to_vec();
        let updated = b"{\"id\":1,\"name\":\"a\\u0000da\"}".to_vec();
        let listed = b"[1, 2, 3]".to_vec();
        let deleted = br#"{"id": 1}"#.to_vec();
        let sent: Vec<(&str, Vec<u8>, Properties)> = vec![
            (
                "routing.event.create.user",
                created.clone(),
                seed("flow-u", None),
            ),
            (
                "routing.event.update.user",
                updated.clone(),
                seed("flow-u", None),
            ),
            (
                "routing.event.list.user",
                listed.clone(),
                seed("flow-l", None),
            ),
            (
                "routing.event.delete.user",
                deleted.clone(),
                seed("flow-d", Some("del-1")),
            ),
        ];
        for (key, body, properties) in &sent {
            bus.publish_raw(bus.exchange(), key, body, properties);
        }
        // The same message again (a producer's retry): stored once.
        bus.publish_raw(bus.exchange(), sent[0].0, &sent[0].1, &sent[0].2);
        // Not JSON: dead-lettered as poison with the reason.
        bus.publish_raw(
            bus.exchange(),
            "routing.event.create.user",
            b"not json",
            &Properties::default(),
        );

        let mut store = EventStore::open(&db.database).unwrap();
        wait_for("5 rows and 1 dead letter", || {
            store.count().unwrap() == 5 && bus.ready(&dlq) == Some(1)
        });
        let stats = running.stop().unwrap();
        assert_eq!(stats.acked, 6, "{name}: {stats}");
        assert_eq!(store.count().unwrap(), 5, "{name}");
        let dead = bus.drain(&dlq);
        let reason = dead[0].properties.headers.get(DEAD_LETTER_REASON);
        let reason = reason.and_then(HeaderValue::as_str).unwrap_or_default();
        assert!(reason.contains("JSON"), "{name}: {reason}");

        // The six-field event, as the standard envelope keeps it.
        let kept = store.get(standard.event_id()).unwrap().unwrap();
        assert_eq!(kept.event, standard, "{name}");
        assert_eq!(kept.routing_key, "order.created");

        // By pattern: the seed's keys as they were published.
        let users = store
            .query(&EventQuery::new().pattern("routing.event.*.user").unwrap())
            .unwrap();
        assert_eq!(users.len(), 4, "{name}");
        let created_id = derived_id(sent[0].0, &created);
        let row = users.iter().find(|s| s.event.event_id() == created_id);
        let row = row.unwrap_or_else(|| panic!("{name}: the create event"));
        assert_eq!(row.routing_key, "routing.event.create.user");
        assert_eq!(row.event.domain(), "routing");
        assert_eq!(row.event.action(), "event-create-user");
        assert_eq!(row.event.data()["email"], "ada@example.com");
        assert_eq!(row.body.as_deref(), Some(&created[..]), "{name}");
        assert_eq!(row.producer.as_deref(), Some("py-users"));
        assert_eq!(row.headers.get("producer_app"), Some(&json!("py-users")));
        let creates = EventQuery::new().pattern("routing.event.create.#").unwrap();
        assert_eq!(store.query(&creates).unwrap().len(), 1, "{name}");
        assert_eq!(
            store
                .query(&EventQuery::new().pattern("#.user").unwrap())
                .unwrap()
                .len(),
            4,
            "{name}"
        );
        // By correlation id, time and id.
        let flow = store
            .query(&EventQuery::new().correlation_id("flow-u"))
            .unwrap();
        assert_eq!(flow.len(), 2, "{name}");
        let nul = derived_id(sent[1].0, &updated);
        let nul = store.get(nul).unwrap().unwrap();
        assert_eq!(nul.event.data()["name"], "a\u{0}da", "{name}");
        assert_eq!(nul.body.as_deref(), Some(&updated[..]), "{name}");
        let list = store.get(derived_id(sent[2].0, &listed)).unwrap().unwrap();
        assert_eq!(list.event.data()["body"], json!([1, 2, 3]), "{name}");
        let del = Uuid::new_v5(&BARE_ID_NAMESPACE, b"del-1");
        assert!(store.get(del).unwrap().is_some(), "{name}");
        let since = store.query(&EventQuery::new().since(before)).unwrap();
        assert_eq!(since.len(), 5, "{name}");
        let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert!(store
            .query(&EventQuery::new().since(later))
            .unwrap()
            .is_empty());

        // Replayed to the exchange: each message under its own key, byte for byte.
        let target = bus.bound_queue("any-target", "routing.event.#", &QueueConfig::default());
        let replayed = ReplayOptions {
            target: ReplayTarget::Exchange(bus.exchange().to_owned()),
            rate: None,
            batch: 10,
        };
        let users = EventQuery::new().pattern("routing.event.#").unwrap();
        let done = replay(
            &mut store,
            &users,
            bus.connection(),
            &replayed,
            |_| {},
            || false,
        )
        .unwrap();
        assert_eq!((done.published, done.failed), (4, 0), "{name}");
        let taken = bus.drain(&target);
        assert_eq!(taken.len(), 4, "{name}");
        for (key, body, properties) in &sent {
            let copy = taken.iter().find(|t| t.routing_key == *key);
            let copy = copy.unwrap_or_else(|| panic!("{name}: {key} not replayed"));
            assert_eq!(&copy.body, body, "{name}: {key}");
            assert_eq!(copy.properties.correlation_id, properties.correlation_id);
        }
    }
}

/// Seed 003's producer (its `on_create`): a model's JSON on `event.exchange`'s stand-in under
/// `routing.event.create.user`, with `app_id` and `correlation_id`. Prints the body.
const PY_PRODUCER: &str = r#"
import json, os, sys
import pika

exchange, key = sys.argv[1], sys.argv[2]
connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
channel = connection.channel()
channel.confirm_delivery()
body = json.dumps({"id": 7, "name": "Grace", "email": "grace@example.com", "is_active": True})
channel.basic_publish(
    exchange=exchange, routing_key=key, body=body,
    properties=pika.BasicProperties(
        delivery_mode=2, content_type="application/json", app_id="py-users",
        correlation_id="corr-py-1",
        headers={"producer_app": "py-users", "correlation_id": "corr-py-1"}),
    mandatory=True)
connection.close()
print(body)
"#;

#[test]
fn a_pika_producer_of_seed_003_is_stored_and_queryable() {
    let Some(mut bus) = Bus::new("store-pika") else {
        return;
    };
    let db = TestDb::sqlite();
    let options = any_options(&mut bus, "store-pika");
    let running = record(
        bus.connection(),
        Recorder::new(&db.database).unwrap(),
        &options,
    )
    .unwrap()
    .spawn()
    .unwrap();
    let key = "routing.event.create.user";
    let Some(out) = pika(bus.config(), PY_PRODUCER, &[bus.exchange(), key]) else {
        return;
    };
    let body = out.trim().as_bytes().to_vec();
    let mut store = EventStore::open(&db.database).unwrap();
    wait_for("the pika event", || store.count().unwrap() == 1);
    running.stop().unwrap();

    let found = store
        .query(&EventQuery::new().pattern("routing.event.create.*").unwrap())
        .unwrap();
    assert_eq!(found.len(), 1);
    let stored = &found[0];
    assert_eq!(stored.event.event_id(), derived_id(key, &body));
    assert_eq!(stored.routing_key, key);
    assert_eq!(stored.producer.as_deref(), Some("py-users"));
    assert_eq!(stored.correlation_id.as_deref(), Some("corr-py-1"));
    assert_eq!(stored.headers.get("producer_app"), Some(&json!("py-users")));
    assert_eq!(stored.event.data()["name"], "Grace");
    assert_eq!(stored.event.data()["is_active"], true);
    assert_eq!(stored.body.as_deref(), Some(&body[..]));
    let chain = store
        .query(&EventQuery::new().correlation_id("corr-py-1"))
        .unwrap();
    assert_eq!(chain.len(), 1);
}
