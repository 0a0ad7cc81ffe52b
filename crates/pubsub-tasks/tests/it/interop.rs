//! Interop with seed 003's Python service, through pika against the real broker: a pika
//! producer submits a task in the seed's format to the seed's `task.exchange` (the default
//! here too) and a Rust worker runs it; a pika consumer reads what `TaskQueue::submit` sends. Under `CI=true` these fail when pika is missing
//! (`pip install pika`).

use pubsub_core::envelope::BARE_ID_NAMESPACE;
use pubsub_store::TaskStatus;
use pubsub_subscriber::Disposition;
use pubsub_testkit::python::pika;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{Setup, TestDb};

/// Seed 003's producer: the body `{"task_name", "payload"}` on the task exchange, routing key
/// `routing.task.<action>.<entity>`, the headers `producer_app` and `correlation_id`, no
/// `message_id`. Arguments: the exchange, the routing key, the task name. Prints the body it
/// sent.
const PY_PRODUCER: &str = r#"
import json, os, sys
import pika

exchange, key, name = sys.argv[1], sys.argv[2], sys.argv[3]
connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
channel = connection.channel()
channel.confirm_delivery()
body = json.dumps({"task_name": name, "payload": {"to": "ops", "pages": 3}})
channel.basic_publish(
    exchange=exchange, routing_key=key, body=body,
    properties=pika.BasicProperties(
        delivery_mode=2, content_type="application/json",
        headers={"producer_app": "py-reports", "correlation_id": "corr-17"}),
    mandatory=True)
connection.close()
print(body)
"#;

/// Seed 003's consumer side: takes one message from a queue and prints its body, headers,
/// routing key and properties as JSON.
const PY_CONSUMER: &str = r#"
import json, os, sys, time
import pika

queue = sys.argv[1]
connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
channel = connection.channel()
deadline = time.time() + 15
while time.time() < deadline:
    method, props, body = channel.basic_get(queue, auto_ack=True)
    if method is not None:
        print(json.dumps({"body": json.loads(body), "headers": props.headers,
                          "routing_key": method.routing_key, "message_id": props.message_id,
                          "app_id": props.app_id, "correlation_id": props.correlation_id,
                          "delivery_mode": props.delivery_mode}))
        break
    time.sleep(0.05)
connection.close()
"#;

/// The seed's producer publishes to `task.exchange`, the default of both sides: the worker
/// is given no exchange. The exchange is the well-known one other services may use, so the
/// test leaves it in place (its queue is its own, deleted at the end) and submits a task of
/// a name of its own, so that no other queue bound there takes it.
#[test]
fn a_pika_producer_submits_a_task_to_task_exchange_a_rust_worker_runs() {
    assert_eq!(pubsub_tasks::DEFAULT_EXCHANGE, "task.exchange");
    let Some(setup) = Setup::new("pika-task", TestDb::sqlite()) else {
        return;
    };
    let name = format!("report-{}", Uuid::new_v4().simple());
    let worker = setup
        .worker_on_the_default_exchange()
        .task(&name, |task| {
            Ok(json!({ "pages": task.payload()["pages"], "by": task.producer() }))
        })
        .build()
        .unwrap()
        .start()
        .unwrap();
    let key = pubsub_tasks::routing_key(&name);
    assert!(key.starts_with("routing.task.report."), "{key}");
    let Some(out) = pika(
        setup.bus.config(),
        PY_PRODUCER,
        &["task.exchange", &key, &name],
    ) else {
        return;
    };
    let body = out.trim();
    // No message_id: the id is derived from the routing key and the body.
    let mut name = key.as_bytes().to_vec();
    name.push(0);
    name.extend_from_slice(body.as_bytes());
    let id = Uuid::new_v5(&BARE_ID_NAMESPACE, &name).to_string();

    let reports = setup.settled(&id);
    assert_eq!(reports[0].disposition, Disposition::Acked);
    let task = setup.record(&id);
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.result, Some(json!({ "pages": 3, "by": "py-reports" })));
    assert_eq!(task.producer.as_deref(), Some("py-reports"));
    assert_eq!(task.correlation_id.as_deref(), Some("corr-17"));
    assert_eq!(task.payload, json!({ "to": "ops", "pages": 3 }));
    worker.stop().unwrap();
}

#[test]
fn a_pika_consumer_reads_a_submitted_task_in_the_seed_format() {
    let Some(mut setup) = Setup::new("pika-read", TestDb::sqlite()) else {
        return;
    };
    let queue = setup.task_queue(); // declares the direct exchange
    let python_queue = setup.bus.queue_name("py-tasks");
    let admin = setup.bus.admin();
    admin
        .declare_queue(&python_queue, &pubsub_amqp::QueueConfig::default())
        .unwrap();
    admin
        .bind_queue(
            &python_queue,
            &setup.exchange,
            "routing.task.process.upload",
        )
        .unwrap();
    let options = pubsub_tasks::SubmitOptions {
        correlation_id: Some("flow-9".into()),
        ..Default::default()
    };
    let id = queue
        .submit_with("process_upload", json!({ "upload": 9 }), &options)
        .unwrap();

    let Some(out) = pika(setup.bus.config(), PY_CONSUMER, &[&python_queue]) else {
        return;
    };
    let seen: Value = serde_json::from_str(out.trim()).expect("the consumer printed a message");
    assert_eq!(
        seen["body"],
        json!({ "task_name": "process_upload", "payload": { "upload": 9 } })
    );
    assert_eq!(seen["routing_key"], "routing.task.process.upload");
    assert_eq!(
        seen["headers"],
        json!({ "producer_app": "tests", "correlation_id": "flow-9" })
    );
    assert_eq!(seen["message_id"], id.to_string());
    assert_eq!(seen["app_id"], "tests");
    assert_eq!(seen["correlation_id"], "flow-9");
    assert_eq!(seen["delivery_mode"], 2);
    setup.bus.delete_queue_at_end(&python_queue);
}
