//! The store as a service against the real broker: every event kept once, poison
//! dead-lettered, and a replay into one queue.

use std::time::{Duration, Instant};

use pubsub_amqp::{Properties, QueueConfig};
use pubsub_core::{json, Event};
use pubsub_publisher::{EventPublisher, PublishOptions};
use pubsub_recorder::{record, replay, RecordOptions, Recorder, ReplayOptions, ReplayTarget};
use pubsub_store::{EventQuery, EventStore};
use pubsub_subscriber::{queue_names, RetryPolicy};
use pubsub_testkit::Bus;
use serde_json::json as j;

use crate::support::TestDb;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_event_is_stored_once_and_poison_is_dead_lettered() {
    for db in TestDb::all() {
        let Some(mut bus) = Bus::new("store") else {
            return;
        };
        let queue = bus.queue_name("store");
        for name in queue_names(&queue, &RetryPolicy::default()) {
            bus.delete_queue_at_end(&name);
        }
        let recorder = Recorder::new(&db.database).unwrap();
        let stored = recorder.stored();
        let options = RecordOptions {
            queue: queue.clone(),
            exchange: bus.exchange().to_owned(),
            prefetch: 20,
            ..RecordOptions::default()
        };
        let subscriber = record(bus.connection(), recorder, &options).unwrap();
        let dlq = subscriber.dead_letter_queue();
        let running = subscriber.spawn().unwrap();

        let mut publisher = EventPublisher::new(bus.connection(), bus.exchange()).unwrap();
        let events: Vec<Event> = (0..50)
            .map(|i| {
                Event::new(
                    if i % 2 == 0 { "order" } else { "user" },
                    "created",
                    j!({ "i": i }),
                )
                .unwrap()
            })
            .collect();
        let flow = PublishOptions::correlated("flow-7");
        for r in publisher.publish_all_with(&events, &flow) {
            r.unwrap();
        }
        // The same event again (a producer's retry): stored once.
        publisher.publish(&events[0]).unwrap();
        bus.publish_raw(
            bus.exchange(),
            "order.created",
            b"not json",
            &Properties::default(),
        );

        let mut store = EventStore::open(&db.database).unwrap();
        wait_for("50 rows and 1 dead letter", || {
            store.count().unwrap() == 50 && bus.ready(&dlq) == Some(1)
        });
        let stats = running.stop().unwrap();
        assert_eq!(stats.acked, 51, "{}: {stats}", db.database);
        assert_eq!(stats.dead_lettered(), 1);
        assert_eq!(stored.load(std::sync::atomic::Ordering::Relaxed), 50);
        assert_eq!(store.count().unwrap(), 50);
        let chain = store
            .query(&EventQuery::new().correlation_id("flow-7"))
            .unwrap();
        assert_eq!(chain.len(), 50);
        let first = store.get(events[0].event_id()).unwrap().unwrap();
        assert_eq!(first.event, events[0]);
        assert_eq!(first.correlation_id.as_deref(), Some("flow-7"));
        assert_eq!(bus.ready(&queue), Some(0));
    }
}

#[test]
fn a_selection_is_replayed_into_one_queue_with_confirms_and_a_rate() {
    let Some(mut bus) = Bus::new("store-replay") else {
        return;
    };
    let db = TestDb::sqlite();
    let mut store = EventStore::open(&db.database).unwrap();
    let events: Vec<Event> = (0..30)
        .map(|i| {
            Event::new(
                if i < 20 { "order" } else { "user" },
                "paid",
                j!({ "i": i }),
            )
            .unwrap()
        })
        .collect();
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            pubsub_store::EventRow::new(
                e,
                &pubsub_core::Metadata::default(),
                time::OffsetDateTime::now_utc(),
            )
        })
        .collect();
    store.append(&rows).unwrap();
    let target = bus.bound_queue("target", "nothing.binds.this", &QueueConfig::default());

    let mut seen = Vec::new();
    let options = ReplayOptions {
        target: ReplayTarget::Queue(target.clone()),
        rate: Some(100.0),
        batch: 100,
    };
    let started = Instant::now();
    let done = replay(
        &mut store,
        &EventQuery::new().pattern("order.*").unwrap(),
        bus.connection(),
        &options,
        |p| seen.push(p.published),
        || false,
    )
    .unwrap();
    assert_eq!((done.published, done.failed), (20, 0));
    // 20 events at 100/s: about 0.2 s, in batches of 10.
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen, [10, 20]);
    let taken = bus.drain(&target);
    assert_eq!(taken.len(), 20);
    for (t, e) in taken.iter().zip(&events) {
        assert_eq!(json::from_slice(&t.body).unwrap(), *e);
    }

    // A queue that does not exist: every event fails, nothing is lost silently.
    let missing = ReplayOptions {
        target: ReplayTarget::Queue(pubsub_testkit::unique("missing")),
        rate: None,
        batch: 100,
    };
    let done = replay(
        &mut store,
        &EventQuery::new().limit(5),
        bus.connection(),
        &missing,
        |_| {},
        || false,
    )
    .unwrap();
    assert_eq!((done.published, done.failed), (0, 5));
}

#[test]
fn a_replay_publishes_the_bodies_as_they_were_received() {
    for db in TestDb::all() {
        let name = db.database.to_string();
        let Some(mut bus) = Bus::new("store-bytes") else {
            return;
        };
        let queue = bus.queue_name("store-bytes");
        for q in queue_names(&queue, &RetryPolicy::default()) {
            bus.delete_queue_at_end(&q);
        }
        let options = RecordOptions {
            queue: queue.clone(),
            exchange: bus.exchange().to_owned(),
            prefetch: 20,
            ..RecordOptions::default()
        };
        let recorder = Recorder::new(&db.database).unwrap();
        let running = record(bus.connection(), recorder, &options)
            .unwrap()
            .spawn()
            .unwrap();
        let ids = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
        // A NUL in a string and in a key (PostgreSQL refuses both in JSONB); and odd
        // whitespace, the fields out of order, an escaped slash and a float's exponent.
        let bodies = [
            format!(
                r#"{{"domain":"order","action":"created","data":{{"a":"x\u0000y","k\u0000":1}},"event_id":"{}","timestamp":"2024-05-01T12:30:00.123456+00:00","version":"1.0"}}"#,
                ids[0]
            ),
            format!(
                "{{ \"version\" : \"1.0\",\n\t\"event_id\":\"{}\" , \"data\":{{\"z\":1,\"a\":\"\\/\",\"n\":1.0e2}},\r\n\"timestamp\":\"2024-05-01T12:30:00Z\",\"action\":\"created\",\"domain\":\"order\"   }}  ",
                ids[1]
            ),
        ];
        for (id, body) in ids.iter().zip(&bodies) {
            let properties = Properties {
                content_type: Some("application/json".into()),
                message_id: Some(id.to_string()),
                correlation_id: Some("flow-bytes".into()),
                ..Properties::default()
            };
            bus.publish_raw(
                bus.exchange(),
                "order.created",
                body.as_bytes(),
                &properties,
            );
        }
        let mut store = EventStore::open(&db.database).unwrap();
        wait_for("2 rows", || store.count().unwrap() == 2);
        running.stop().unwrap();

        let target = bus.bound_queue(
            "bytes-target",
            "nothing.binds.this",
            &QueueConfig::default(),
        );
        let replayed = ReplayOptions {
            target: ReplayTarget::Queue(target.clone()),
            rate: None,
            batch: 10,
        };
        let query = EventQuery::new().correlation_id("flow-bytes");
        let done = replay(
            &mut store,
            &query,
            bus.connection(),
            &replayed,
            |_| {},
            || false,
        )
        .unwrap();
        assert_eq!((done.published, done.failed), (2, 0), "{name}");
        let taken = bus.drain(&target);
        assert_eq!(taken.len(), 2, "{name}");
        for (id, body) in ids.iter().zip(&bodies) {
            let copy = taken
                .iter()
                .find(|t| t.properties.message_id.as_deref() == Some(&id.to_string()[..]));
            let copy = copy.unwrap_or_else(|| panic!("{name}: {id} not replayed"));
            assert_eq!(copy.body, body.as_bytes(), "{name}: {id}");
            assert_eq!(
                copy.properties.correlation_id.as_deref(),
                Some("flow-bytes")
            );
        }
    }
}

#[test]
fn an_event_stored_without_its_body_is_replayed_encoded_again() {
    let Some(mut bus) = Bus::new("store-nobody") else {
        return;
    };
    let db = TestDb::sqlite();
    let mut store = EventStore::open(&db.database).unwrap();
    let event = Event::new("order", "paid", j!({ "i": 1 })).unwrap();
    let row = pubsub_store::EventRow::new(
        &event,
        &pubsub_core::Metadata::default(),
        time::OffsetDateTime::now_utc(),
    );
    store.append(&[row]).unwrap();
    let target = bus.bound_queue(
        "nobody-target",
        "nothing.binds.this",
        &QueueConfig::default(),
    );
    let options = ReplayOptions {
        target: ReplayTarget::Queue(target.clone()),
        rate: None,
        batch: 10,
    };
    let done = replay(
        &mut store,
        &EventQuery::new(),
        bus.connection(),
        &options,
        |_| {},
        || false,
    )
    .unwrap();
    assert_eq!(done.published, 1);
    let taken = bus.drain(&target);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].body, json::to_vec(&event));
}
