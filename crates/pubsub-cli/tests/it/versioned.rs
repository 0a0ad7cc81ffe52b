//! `pubsub publish` for the seeds' services (issue 14): versioned routing keys, the
//! environment they configure (`RABBITMQ_URL`, `RABBITMQ_EXCHANGE`), and envelopes.

use std::process::{Command, Output, Stdio};

use pubsub_amqp::QueueConfig;
use pubsub_core::json;
use pubsub_testkit::Bus;
use serde_json::Value;

/// `pubsub` with `args` and only the given broker variables in its environment.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pubsub"));
    command
        .args(args)
        .env_remove("AMQP_URL")
        .env_remove("RABBITMQ_URL")
        .env_remove("RABBITMQ_EXCHANGE")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the pubsub binary runs")
}

fn check_success(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn url_of(bus: &Bus) -> String {
    let c = bus.config();
    format!(
        "amqp://{}:{}@{}/%2F",
        c.username(),
        c.password(),
        c.address()
    )
}

#[test]
fn versioned_publish_sends_order_created_v2() {
    let Some(mut bus) = Bus::new("cli-v2") else {
        return;
    };
    let v2 = bus.bound_queue("cli-v2", "order.created.v2", &QueueConfig::default());
    let v1 = bus.bound_queue("cli-v1", "order.created", &QueueConfig::default());
    let output = run(
        &[
            "publish",
            "order.created.v2",
            "--data",
            r#"{"order_id":"ORD-2"}"#,
            "--exchange",
            bus.exchange(),
        ],
        &[("AMQP_URL", &url_of(&bus))],
    );
    check_success(&output);
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();

    let taken = bus.drain(&v2);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].routing_key, "order.created.v2");
    let event = json::from_slice(&taken[0].body).unwrap();
    assert_eq!(event.event_id().to_string(), id);
    // The six-field body keeps the seed's domain and action; the version follows the key.
    assert_eq!((event.domain(), event.action()), ("order", "created"));
    assert_eq!(event.version(), "2.0");
    assert_eq!(bus.drain(&v1).len(), 0, "v1 consumers do not see v2");
}

#[test]
fn versioned_publish_reads_the_seeds_environment_and_envelopes() {
    let Some(mut bus) = Bus::new("cli-env") else {
        return;
    };
    let queue = bus.bound_queue("cli-env", "user.#", &QueueConfig::default());
    let url = url_of(&bus);
    let exchange = bus.exchange().to_owned();
    let env = [
        ("RABBITMQ_URL", url.as_str()),
        ("RABBITMQ_EXCHANGE", exchange.as_str()),
    ];
    let bare = run(
        &[
            "publish",
            "user.registered",
            "--data",
            r#"{"user_id":"U-1"}"#,
            "--envelope",
            "bare",
        ],
        &env,
    );
    check_success(&bare);
    let bus_envelope = run(
        &[
            "publish",
            "user.registered.v2",
            "--data",
            r#"{"user_id":"U-2"}"#,
            "--envelope",
            "event-bus",
            "--app-id",
            "accounts",
        ],
        &env,
    );
    check_success(&bus_envelope);

    let taken = bus.drain(&queue);
    assert_eq!(taken.len(), 2);
    let body: Value = serde_json::from_slice(&taken[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"user_id": "U-1"}));
    let body: Value = serde_json::from_slice(&taken[1].body).unwrap();
    assert_eq!(body["name"], "user.registered.v2");
    assert_eq!(body["source"], "accounts");
    assert_eq!(body["version"], "2.0");
    assert_eq!(body["data"]["user_id"], "U-2");

    let unknown = run(&["publish", "user.registered", "--envelope", "xml"], &env);
    assert_eq!(unknown.status.code(), Some(2));
}
