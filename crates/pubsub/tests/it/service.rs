//! A whole service on the one bus (features `store` and `tasks`), as seed 003's service is
//! one: handlers, the event store and task functions, started, stopped and counted together.

use std::time::{Duration, Instant};

use pubsub::store::{Database, EventQuery, EventStore, TaskStatus, TaskStore};
use pubsub::tasks::TaskQueue;
use pubsub::{handler_fn, Error, EventBus, RetryPolicy};
use pubsub_testkit::{unique, Bus, TestDatabase};
use serde_json::json;

use crate::{event, WAIT};

/// Waits until `check` says yes, failing the test after [`WAIT`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_bus_runs_handlers_the_event_store_and_tasks() {
    let Some(mut fixture) = Bus::new("svc") else {
        return;
    };
    for db in TestDatabase::all("svc") {
        let database = Database::parse(db.url()).unwrap();
        let service = unique("svc");
        let task_exchange = fixture.exchange_name("svc-tasks");
        let (reports, received) = crossbeam_channel::unbounded();
        let mut bus = EventBus::builder(&service)
            .amqp(fixture.config().clone())
            .exchange(fixture.exchange())
            .retry(RetryPolicy::new(2, vec![Duration::from_millis(100)]))
            .store(database.clone())
            .task("send-invoice", |task| {
                Ok(json!({ "invoiced": task.payload()["order"] }))
            })
            .task_exchange(&task_exchange)
            .observer(reports)
            .build()
            .unwrap();
        let queues = bus.queues();
        for queue in &queues {
            fixture.delete_queue_at_end(queue);
        }
        assert!(queues.contains(&format!("{service}.store")), "{queues:?}");
        assert!(queues.contains(&format!("{service}.tasks")), "{queues:?}");

        // A handler that turns an event into a task, as seed 003's service does.
        let tasks: TaskQueue = bus.task_queue().unwrap();
        let (submitted, ids) = crossbeam_channel::unbounded();
        bus.subscribe(
            "order.created",
            handler_fn("invoice", move |event, _| {
                let id = tasks.submit("send-invoice", json!({ "order": event.data()["n"] }))?;
                submitted.send(id).unwrap();
                Ok(())
            }),
        )
        .unwrap();
        bus.start().unwrap();
        assert!(bus.is_running());
        bus.publish(event("order", "created", 7)).unwrap();

        let id = ids
            .recv_timeout(WAIT)
            .expect("the handler submitted the task")
            .id();
        let mut task_store = TaskStore::open(&database).unwrap();
        eventually("the task to complete", || {
            task_store
                .get(id)
                .unwrap()
                .is_some_and(|t| t.status == TaskStatus::Completed)
        });
        let task = task_store.get(id).unwrap().unwrap();
        assert_eq!(task.result, Some(json!({ "invoiced": 7 })));
        assert_eq!(task.producer.as_deref(), Some(service.as_str()));
        // The handler's delivery and the task's each reported once.
        let mut keys: Vec<String> = (0..2)
            .map(|_| received.recv_timeout(WAIT).unwrap().routing_key)
            .collect();
        keys.sort();
        assert_eq!(keys, ["order.created", "task.send-invoice"]);

        let mut events = EventStore::open(&database).unwrap();
        eventually("the event to be stored", || events.count().unwrap() == 1);
        let stored = events.query(&EventQuery::default()).unwrap();
        assert_eq!(stored[0].routing_key, "order.created");
        assert_eq!(stored[0].producer.as_deref(), Some(service.as_str()));

        let stats = bus.stop().unwrap();
        assert_eq!((stats.workers, stats.subscriber.acked), (1, 1), "{stats}");
        let store = stats.store.expect("the store ran");
        assert_eq!((store.stored, store.pool.workers), (1, 1), "{stats}");
        let tasks = stats.tasks.expect("the tasks ran");
        assert_eq!((tasks.workers, tasks.subscriber.acked), (1, 1), "{stats}");
        assert!(stats.to_string().contains("store, 1 new row(s)"), "{stats}");
    }
}

#[test]
fn teardown_deletes_the_store_and_task_queues_too() {
    let Some(fixture) = Bus::new("svc-down") else {
        return;
    };
    let db = TestDatabase::sqlite("svc-down");
    let service = unique("svc-down");
    let mut bus = EventBus::builder(&service)
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .store(Database::parse(db.url()).unwrap())
        .task("noop", |_| Ok(json!(null)))
        .task_queue(&format!("{service}.jobs"))
        .build()
        .unwrap();
    bus.subscribe("order.*", handler_fn("h", |_, _| Ok(())))
        .unwrap();
    bus.start().unwrap();
    let expected = bus.queues();
    let teardown = bus.teardown().unwrap();
    for queue in [
        service.clone(),
        format!("{service}.store"),
        format!("{service}.store.dlq"),
        format!("{service}.jobs"),
        format!("{service}.jobs.dlq"),
    ] {
        assert!(teardown.deleted.contains(&queue), "{queue} in {teardown:?}");
    }
    assert_eq!(teardown.deleted, expected);
    // Nothing is left behind: declaring any of them passively fails.
    let mut connection = fixture.connection();
    for queue in &expected {
        let channel = connection.open_channel().unwrap();
        assert!(channel.queue_info(queue).is_err(), "{queue} is still there");
    }
}

#[test]
fn settings_that_do_not_fit_together_are_refused_at_build() {
    let Some(fixture) = Bus::new("svc-bad") else {
        return;
    };
    let builder = || {
        EventBus::builder("svc-bad")
            .amqp(fixture.config().clone())
            .exchange(fixture.exchange())
    };
    let check = |result: pubsub::Result<EventBus>, words: &str| {
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(words), "{message:?} should say {words:?}");
    };
    // Tasks are recorded: they need a database.
    check(
        builder().task("noop", |_| Ok(json!(null))).build(),
        "tasks are recorded in a database",
    );
    // An invalid or duplicate task name is named.
    let db = Database::sqlite_in_memory();
    check(
        builder()
            .task_database(db.clone())
            .task("not a name!", |_| Ok(json!(null)))
            .build(),
        "not a name!",
    );
    check(
        builder()
            .task_database(db.clone())
            .task("twice", |_| Ok(json!(null)))
            .task("twice", |_| Ok(json!(null)))
            .build(),
        "twice",
    );
    // In process there is no broker to run them on.
    let in_process = EventBus::builder("svc-bad").in_process().store(db).build();
    assert!(matches!(in_process, Err(Error::InvalidConfig { .. })));
    check(
        EventBus::builder("svc-bad")
            .in_process()
            .store(Database::sqlite_in_memory())
            .build(),
        "in-process bus cannot run them",
    );
}

/// Seed 003's sibling service, in pika: an event of its own (`routing.event.create.user`, a
/// model's JSON as the body, `app_id` and `correlation_id` set) on the event exchange, and a
/// task in the seed's format on the task exchange.
const PY_SEED_003: &str = r#"
import json, os, sys
import pika

events, tasks = sys.argv[1], sys.argv[2]
connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
channel = connection.channel()
channel.confirm_delivery()
channel.basic_publish(
    exchange=events, routing_key="routing.event.create.user",
    body=json.dumps({"id": 42, "name": "Ada", "email": "ada@example.com"}),
    properties=pika.BasicProperties(
        delivery_mode=2, content_type="application/json",
        app_id="py-users", correlation_id="corr-003"),
    mandatory=True)
channel.basic_publish(
    exchange=tasks, routing_key="routing.task.send.invoice",
    body=json.dumps({"task_name": "send-invoice", "payload": {"order": 9}}),
    properties=pika.BasicProperties(
        delivery_mode=2, content_type="application/json",
        headers={"producer_app": "py-users", "correlation_id": "corr-003"}),
    mandatory=True)
connection.close()
print("sent")
"#;

/// The Rust service as seed 003's one service: what its Python sibling sends is stored (the
/// seed's own event, not a six-field body) and run (the task), by one bus.
#[test]
fn interop_seed_003_events_and_tasks_from_pika_reach_one_bus() {
    let Some(mut fixture) = Bus::new("svc-003") else {
        return;
    };
    let db = TestDatabase::sqlite("svc-003");
    let database = Database::parse(db.url()).unwrap();
    let service = unique("svc-003");
    let task_exchange = fixture.exchange_name("svc-003-tasks");
    let mut bus = EventBus::builder(&service)
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .store(database.clone())
        .task("send-invoice", |task| {
            Ok(json!({ "order": task.payload()["order"], "for": task.producer() }))
        })
        .task_exchange(&task_exchange)
        .build()
        .unwrap();
    for queue in bus.queues() {
        fixture.delete_queue_at_end(&queue);
    }
    bus.start().unwrap();
    let Some(out) = pubsub_testkit::python::pika(
        fixture.config(),
        PY_SEED_003,
        &[fixture.exchange(), &task_exchange],
    ) else {
        return;
    };
    assert_eq!(out.trim(), "sent");

    let mut tasks = TaskStore::open(&database).unwrap();
    let completed = || pubsub::store::TaskFilter {
        status: Some(TaskStatus::Completed),
        ..Default::default()
    };
    eventually("the task to complete", || {
        tasks.list(&completed()).unwrap().len() == 1
    });
    let task = tasks.list(&completed()).unwrap().remove(0);
    assert_eq!(task.task_name, "send-invoice");
    assert_eq!(task.result, Some(json!({ "order": 9, "for": "py-users" })));
    assert_eq!(task.correlation_id.as_deref(), Some("corr-003"));

    let mut events = EventStore::open(&database).unwrap();
    let query = EventQuery::new().pattern("routing.event.*.user").unwrap();
    eventually("the seed's event to be stored", || {
        events.query(&query).unwrap().len() == 1
    });
    let stored = events.query(&query).unwrap().remove(0);
    assert_eq!(stored.routing_key, "routing.event.create.user");
    assert_eq!(stored.producer.as_deref(), Some("py-users"));
    assert_eq!(stored.correlation_id.as_deref(), Some("corr-003"));
    assert_eq!(stored.event.data()["name"], "Ada");

    let stats = bus.stop().unwrap();
    assert_eq!(stats.store.map(|s| s.stored), Some(1), "{stats}");
    assert_eq!(stats.tasks.map(|t| t.subscriber.acked), Some(1), "{stats}");
}
