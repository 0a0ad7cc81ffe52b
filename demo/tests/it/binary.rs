//! The `demo` binary as a user runs it; none of these needs a broker.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn demo(args: &[&str], amqp_url: Option<&str>) -> (Output, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_demo"));
    command.args(args).env_remove("RUST_LOG");
    match amqp_url {
        Some(url) => command.env("AMQP_URL", url),
        None => command.env_remove("AMQP_URL"),
    };
    let started = Instant::now();
    let output = command.output().unwrap();
    (output, started.elapsed())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn without_a_broker_it_says_what_it_tried_and_how_to_start_one() {
    // A port nothing listens on any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("amqp://guest:s3cret-pw@127.0.0.1:{port}/%2f");
    let (output, elapsed) = demo(&[], Some(&url));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(stdout.is_empty(), "{stdout}");
    for expected in [
        &format!("cannot reach RabbitMQ at 127.0.0.1:{port}"),
        &format!("amqp://guest:***@127.0.0.1:{port}/"),
        "just broker",
        "docker compose up -d",
        "--in-process",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn in_process_it_needs_no_broker() {
    let (output, _) = demo(
        &["--in-process"],
        Some("amqp://guest:guest@127.0.0.1:1/%2f"),
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    for expected in [
        "order.created    ORD-123 (2 items)      send-email ok, update-inventory ok, log-analytics ok -> handled",
        "order.paid       PAY-456 for ORD-123    send-email ok, log-analytics ok -> handled",
        "user.registered  U-789 (ada)            send-email ok, log-analytics ok -> handled",
        "3 of 3 events handled",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
}

#[test]
fn help_documents_every_flag_and_the_environment() {
    let (output, _) = demo(&["--help"], None);
    let help = text(&output.stdout);
    assert!(output.status.success());
    for expected in [
        "--in-process",
        "--count <N>",
        "--exchange <NAME>",
        "--queue <NAME>",
        "--prefetch <N>",
        "--batch <N>",
        "--timeout <SECONDS>",
        "--keep-queue",
        "AMQP_URL",
        "RUST_LOG",
        "just broker",
        "Exit status",
    ] {
        assert!(
            help.contains(expected),
            "{expected:?} missing from:\n{help}"
        );
    }
}

#[test]
fn a_bad_amqp_url_is_explained_without_its_password() {
    let (output, _) = demo(
        &[],
        // An unknown parameter is only a warning now (issue 14); an invalid value is an error.
        Some("amqp://guest:s3cret-pw@localhost:5672/%2f?heartbeat=soon"),
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("heartbeat=\"soon\" is not a whole number of seconds"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

#[test]
fn refused_credentials_are_explained_and_the_password_never_logged() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let vhost = match config.virtual_host() {
        "/" => "%2f",
        other => other,
    };
    let url = format!(
        "amqp://{}:wrong-s3cret@{}/{vhost}",
        config.username(),
        config.address()
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_demo"));
    command
        .args(["--queue", &pubsub_testkit::unique("demo-auth")])
        .env("AMQP_URL", &url)
        .env("RUST_LOG", "trace");
    let output = command.output().unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(
        stderr.contains("Check the user, password and vhost in AMQP_URL"),
        "{stderr}"
    );
    assert!(!stdout.contains("wrong-s3cret") && !stderr.contains("wrong-s3cret"));
}

#[test]
fn the_exchange_and_the_broker_come_from_the_seeds_variables() {
    // No --exchange: RABBITMQ_EXCHANGE names it.
    let output = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--asyncapi", "--queue", "orders"])
        .env("RABBITMQ_EXCHANGE", "shop-from-env")
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        doc["channels"]["order.created"]["bindings"]["amqp"]["exchange"]["name"],
        "shop-from-env"
    );
    // An invalid one is refused before anything runs.
    let output = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--asyncapi"])
        .env("RABBITMQ_EXCHANGE", "no spaces")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("RABBITMQ_EXCHANGE"));

    // Without AMQP_URL, RABBITMQ_URL names the broker: here one nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--no-store", "--timeout", "5"])
        .env_remove("AMQP_URL")
        .env_remove("RUST_LOG")
        .env(
            "RABBITMQ_URL",
            format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        )
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("from RABBITMQ_URL"), "{stderr}");
}

#[test]
fn asyncapi_prints_the_document_without_a_broker() {
    let (output, _) = demo(
        &["--asyncapi", "--exchange", "shop", "--queue", "orders"],
        Some("amqp://guest:guest@127.0.0.1:1/%2f"),
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "orders");
    assert_eq!(
        doc["channels"]["order.created"]["bindings"]["amqp"]["exchange"]["name"],
        "shop"
    );
    assert_eq!(doc["operations"]["sendOrderPaid"]["action"], "send");
}
