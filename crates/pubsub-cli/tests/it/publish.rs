//! `pubsub publish`.

use pubsub_amqp::QueueConfig;
use pubsub_cli::publish::{build_event, publish, PublishRequest, Published};
use pubsub_core::json;

use crate::support::{assert_exit, pubsub, pubsub_with_stdin, stderr, stdout, test_bus, BusExt};

#[test]
fn publish_prints_the_event_id_and_the_event_arrives() {
    let Some(mut bus) = test_bus() else { return };
    let queue = bus.bound_queue("orders", "order.*", &QueueConfig::default());
    let exchange = bus.exchange().to_owned();
    let output = pubsub(&[
        "publish",
        "order.created",
        "--data",
        r#"{"order_id":"ORD-1","total":42.5}"#,
        "--correlation-id",
        "checkout-17",
        "--exchange",
        &exchange,
    ]);
    assert_exit(&output, 0);
    let id = stdout(&output).trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    bus.wait_ready(&queue, 1);
    let taken = bus.drain(&queue);
    let event = json::from_slice(&taken[0].body).unwrap();
    assert_eq!(event.event_id().to_string(), id);
    assert_eq!(event.routing_key(), "order.created");
    assert_eq!(event.data()["order_id"], "ORD-1");
    assert_eq!(event.data()["total"], 42.5);
    let properties = &taken[0].properties;
    assert_eq!(properties.correlation_id.as_deref(), Some("checkout-17"));
    assert_eq!(properties.app_id.as_deref(), Some("pubsub-cli"));
    assert_eq!(properties.message_id.as_deref(), Some(id.as_str()));
    assert!(properties.persistent);
}

#[test]
fn publish_reads_the_data_from_a_file_or_stdin() {
    let Some(mut bus) = test_bus() else { return };
    let queue = bus.bound_queue("orders", "order.#", &QueueConfig::default());
    let exchange = bus.exchange().to_owned();
    let path = std::env::temp_dir().join(format!("{}.json", pubsub_testkit::unique("data")));
    std::fs::write(&path, r#"{"from":"file"}"#).unwrap();
    let file_arg = format!("@{}", path.display());

    let from_file = pubsub(&[
        "publish",
        "order.paid",
        "--data",
        &file_arg,
        "--exchange",
        &exchange,
    ]);
    let _ = std::fs::remove_file(&path);
    assert_exit(&from_file, 0);
    let from_stdin = pubsub_with_stdin(
        &["publish", "order.paid", "--exchange", &exchange],
        Some(r#"{"from":"stdin"}"#),
    );
    assert_exit(&from_stdin, 0);
    let from_dash = pubsub_with_stdin(
        &[
            "publish",
            "order.paid",
            "--data",
            "-",
            "--exchange",
            &exchange,
        ],
        Some(r#"{"from":"dash"}"#),
    );
    assert_exit(&from_dash, 0);

    bus.wait_ready(&queue, 3);
    let froms: Vec<String> = bus
        .drain(&queue)
        .iter()
        .map(|t| json::from_slice(&t.body).unwrap().data()["from"].to_string())
        .collect();
    assert_eq!(froms, [r#""file""#, r#""stdin""#, r#""dash""#]);
}

#[test]
fn publish_to_a_missing_exchange_fails_without_declaring_it() {
    let Some(mut bus) = test_bus() else { return };
    let missing = bus.exchange_name("missing");
    let output = pubsub(&[
        "publish",
        "order.created",
        "--data",
        "{}",
        "--exchange",
        &missing,
        "--no-declare",
    ]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains(&format!("exchange `{missing}` does not exist")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unroutable_event_is_a_warning_or_with_mandatory_a_failure() {
    let Some(bus) = test_bus() else { return };
    let exchange = bus.exchange().to_owned();
    let output = pubsub(&[
        "publish",
        "nobody.listens",
        "--data",
        "{}",
        "--exchange",
        &exchange,
    ]);
    assert_exit(&output, 0);
    assert!(
        stderr(&output).contains("warning: no queue is bound"),
        "{}",
        stderr(&output)
    );
    assert!(uuid::Uuid::parse_str(stdout(&output).trim()).is_ok());

    let output = pubsub(&[
        "publish",
        "nobody.listens",
        "--data",
        "{}",
        "--exchange",
        &exchange,
        "--mandatory",
    ]);
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("the broker dropped the event"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_library_publishes_with_confirms() {
    let Some(mut bus) = test_bus() else { return };
    let queue = bus.bound_queue("users", "user.registered", &QueueConfig::default());
    let data = serde_json::json!({ "user_id": 7 })
        .as_object()
        .unwrap()
        .clone();
    let event = build_event("user.registered", data, "2.0").unwrap();
    let request = PublishRequest {
        exchange: bus.exchange().to_owned(),
        app_id: "ops".into(),
        correlation_id: None,
        causation_id: None,
        event_type: None,
        headers: Default::default(),
        declare: false,
    };
    assert_eq!(
        publish(bus.connection(), &event, &request).unwrap(),
        Published::Routed
    );
    bus.wait_ready(&queue, 1);
    let got = json::from_slice(&bus.drain(&queue)[0].body).unwrap();
    assert_eq!(got, event);
    assert_eq!(got.version(), "2.0");
}
