//! The store as a service on the worker pool: several recorders share the queue, each event
//! is stored once, and the counters add up over the workers.

use std::time::{Duration, Instant};

use pubsub_core::Event;
use pubsub_publisher::EventPublisher;
use pubsub_recorder::RecordOptions;
use pubsub_store::EventStore;
use pubsub_subscriber::{queue_names, RetryPolicy};
use pubsub_testkit::Bus;
use serde_json::json as j;

use crate::support::TestDb;

#[test]
fn recorders_on_the_pool_store_every_event_once() {
    let db = TestDb::sqlite();
    let Some(mut bus) = Bus::new("store-pool") else {
        return;
    };
    let queue = bus.queue_name("store-pool");
    for name in queue_names(&queue, &RetryPolicy::default()) {
        bus.delete_queue_at_end(&name);
    }
    let options = RecordOptions {
        queue: queue.clone(),
        exchange: bus.exchange().to_owned(),
        prefetch: 20,
        ..RecordOptions::default()
    };
    let running = pubsub_recorder::start(bus.config(), &db.database, &options, 2).unwrap();
    assert!(running.is_running());

    let mut publisher = EventPublisher::new(bus.connection(), bus.exchange()).unwrap();
    let events: Vec<Event> = (0..200)
        .map(|i| Event::new("order", "created", j!({ "i": i })).unwrap())
        .collect();
    for r in publisher.publish_all(&events) {
        r.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.stored() < 200 {
        assert!(Instant::now() < deadline, "stored {}", running.stored());
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = running.stop().unwrap();
    assert_eq!(done.stored, 200);
    assert_eq!(done.pool.workers, 2);
    assert_eq!(done.pool.subscriber.acked, 200, "{}", done.pool.subscriber);
    assert_eq!(done.pool.subscriber.in_flight, 0);
    assert_eq!(
        EventStore::open(&db.database).unwrap().count().unwrap(),
        200
    );
    assert_eq!(bus.ready(&queue), Some(0));
}

#[test]
fn a_database_that_cannot_be_opened_fails_the_start_and_leaves_nothing_running() {
    let Some(mut bus) = Bus::new("store-pool") else {
        return;
    };
    let queue = bus.queue_name("store-down");
    let options = RecordOptions {
        queue,
        exchange: bus.exchange().to_owned(),
        ..RecordOptions::default()
    };
    let down = pubsub_store::Database::parse("postgres://nobody@127.0.0.1:1/none").unwrap();
    let error = pubsub_recorder::start(bus.config(), &down, &options, 2).unwrap_err();
    assert!(matches!(error, pubsub_recorder::Error::Store(_)), "{error}");
}
