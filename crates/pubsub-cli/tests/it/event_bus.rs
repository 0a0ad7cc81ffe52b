//! Seed 004's envelope and the environment through the binary: `publish --event-type`,
//! `--header`, `--causation-id`, `tail --envelope`, and `RABBITMQ_URL` / `RABBITMQ_EXCHANGE`
//! read when no flag is given.

use std::process::{Command, Output, Stdio};

use pubsub_amqp::{Properties, QueueConfig};
use pubsub_core::{CAUSATION_ID_HEADER, EVENT_TYPE_HEADER};
use pubsub_testkit::Bus;
use serde_json::{json, Value};

use crate::support::{assert_exit, pubsub, stderr, stdout, test_bus, BusExt, WAIT};
use crate::tail::{lines, wait_exit, wait_ready};

/// The binary with `args`, the broker named only by `RABBITMQ_URL` and the exchange only by
/// `RABBITMQ_EXCHANGE` (`AMQP_URL` removed).
fn from_env(bus: &Bus) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pubsub"));
    command
        .env_remove("AMQP_URL")
        .env("RABBITMQ_URL", bus.config().url_with_password())
        .env("RABBITMQ_EXCHANGE", bus.exchange())
        .stdin(Stdio::null());
    command
}

fn run(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().unwrap()
}

#[test]
fn publish_writes_the_chosen_type_headers_and_causation_id() {
    let Some(mut bus) = test_bus() else { return };
    let queue = bus.bound_queue("users", "user.*", &QueueConfig::default());
    let output = pubsub(&[
        "publish",
        "user.registered",
        "--envelope",
        "event-bus",
        "--event-type",
        "Integration",
        "--app-id",
        "accounts",
        "--header",
        "tenant=acme",
        "-H",
        "region=eu=west",
        "--causation-id",
        "cause-1",
        "--data",
        r#"{"user_id":"U-1"}"#,
        "--exchange",
        bus.exchange(),
    ]);
    assert_exit(&output, 0);
    let id = stdout(&output).trim().to_owned();
    bus.wait_ready(&queue, 1);
    let taken = bus.drain(&queue);
    let body: Value = serde_json::from_slice(&taken[0].body).unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(body["name"], "user.registered");
    assert_eq!(body["source"], "accounts");
    assert_eq!(body["event_type"], "integration");
    assert_eq!(body["data"], json!({"user_id": "U-1"}));
    let headers = &taken[0].properties.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.as_str());
    assert_eq!(header(EVENT_TYPE_HEADER), Some("integration"));
    assert_eq!(header(CAUSATION_ID_HEADER), Some("cause-1"));
    assert_eq!(header("tenant"), Some("acme"));
    assert_eq!(header("region"), Some("eu=west"));
}

#[test]
fn without_an_event_type_the_event_bus_body_says_domain() {
    let Some(mut bus) = test_bus() else { return };
    let queue = bus.bound_queue("users", "user.*", &QueueConfig::default());
    let output = pubsub(&[
        "publish",
        "user.registered",
        "--envelope",
        "event-bus",
        "--data",
        "{}",
        "--exchange",
        bus.exchange(),
    ]);
    assert_exit(&output, 0);
    bus.wait_ready(&queue, 1);
    let taken = bus.drain(&queue);
    let body: Value = serde_json::from_slice(&taken[0].body).unwrap();
    assert_eq!(body["event_type"], "domain");
    assert_eq!(body["source"], "pubsub-cli");
    assert!(!taken[0].properties.headers.contains_key(EVENT_TYPE_HEADER));
}

#[test]
fn publish_reads_rabbitmq_url_and_rabbitmq_exchange() {
    let Some(mut bus) = test_bus() else { return };
    let queue = bus.bound_queue("orders", "order.*", &QueueConfig::default());
    let output = run(
        from_env(&bus),
        &["publish", "order.created", "--data", "{}"],
    );
    assert_exit(&output, 0);
    bus.wait_ready(&queue, 1);
    assert_eq!(bus.drain(&queue)[0].routing_key, "order.created");

    // An exchange name RabbitMQ would refuse is a usage error, before any connection.
    let mut bad = from_env(&bus);
    bad.env("RABBITMQ_EXCHANGE", "no spaces");
    let output = run(bad, &["publish", "order.created", "--data", "{}"]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("RABBITMQ_EXCHANGE"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn tail_decodes_seed_004_envelopes_from_the_environment_s_exchange() {
    let Some(bus) = test_bus() else { return };
    let mut command = from_env(&bus);
    let mut child = command
        .args([
            "tail",
            "--envelope",
            "event-bus",
            "--json",
            "-n",
            "2",
            "user.#",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    wait_ready(&err);

    let id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let body = json!({"id": id, "name": "user.registered", "source": "accounts",
                      "event_type": "integration", "timestamp": "2024-05-01T12:30:00+00:00",
                      "data": {"user_id": "U-1"}, "tenant": "acme"});
    let properties = Properties {
        content_type: Some("application/json".into()),
        ..Properties::default()
    };
    bus.publish_raw(
        bus.exchange(),
        "user.registered",
        &serde_json::to_vec(&body).unwrap(),
        &properties,
    );
    // Seed 000's six fields are not this envelope: the reason names it.
    let mut publisher = bus.publisher();
    publisher
        .publish(&crate::support::event("user", "deleted", 1))
        .unwrap();

    let line = out.recv_timeout(WAIT).expect("a line from pubsub tail");
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["routing_key"], "user.registered");
    assert_eq!(value["event"]["event_id"], id);
    assert_eq!(value["event"]["data"]["user_id"], "U-1");
    assert_eq!(value["source"], "accounts");
    assert_eq!(value["event_type"], "integration");
    assert_eq!(value["extra"], json!({"tenant": "acme"}));
    let line = out.recv_timeout(WAIT).expect("a second line");
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["event"], Value::Null);
    let error = value["error"].as_str().unwrap();
    assert!(error.contains("envelope event-bus"), "{error}");
    assert_eq!(wait_exit(&mut child), Some(0));
    publisher.close().unwrap();
}

#[test]
fn usage_of_the_new_flags() {
    let check = |args: &[&str], needle: &str| {
        let output = pubsub(args);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
    };
    check(
        &["publish", "a.b", "--event-type", "audit"],
        "unknown event type `audit`",
    );
    check(&["publish", "a.b", "--header", "novalue"], "NAME=VALUE");
    check(&["tail", "--envelope", "xml"], "known envelopes");

    let help = stdout(&pubsub(&["--help"]));
    for word in [
        "publish",
        "tail",
        "dlq",
        "task",
        "store",
        "asyncapi",
        "AMQP_URL",
        "RABBITMQ_URL",
        "RABBITMQ_EXCHANGE",
    ] {
        assert!(help.contains(word), "{word} in:\n{help}");
    }
    let help = stdout(&pubsub(&["publish", "--help"]));
    for word in [
        "--event-type",
        "--header",
        "--causation-id",
        "RABBITMQ_EXCHANGE",
    ] {
        assert!(help.contains(word), "{word} in:\n{help}");
    }
    let help = stdout(&pubsub(&["tail", "--help"]));
    assert!(help.contains("--envelope"), "{help}");
}
