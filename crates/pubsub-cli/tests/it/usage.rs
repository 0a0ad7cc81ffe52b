//! Exit codes, help and errors that need no broker.

use crate::support::{assert_exit, pubsub, stderr, stdout};

#[test]
fn help_everywhere_has_examples() {
    for args in [
        &["--help"][..],
        &["publish", "--help"],
        &["tail", "--help"],
        &["dlq", "--help"],
        &["dlq", "list", "--help"],
        &["dlq", "show", "--help"],
        &["dlq", "replay", "--help"],
        &["dlq", "purge", "--help"],
        &["store", "--help"],
    ] {
        let output = pubsub(args);
        assert_exit(&output, 0);
        assert!(stdout(&output).contains("Examples:"), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_with_2() {
    let check = |args: &[&str], needle: &str| {
        let output = pubsub(args);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
    };
    check(&[], "Usage: pubsub");
    check(&["dlq"], "Usage: pubsub dlq");
    check(&["dlq", "replay", "orders"], "--id <EVENT_ID>|--all");
    check(&["publish"], "DOMAIN.ACTION");
    check(
        &["publish", "ordercreated", "--data", "{}"],
        "must be <domain>.<action>",
    );
    check(
        &["publish", "order.created", "--data", "[1]"],
        "must be a JSON object",
    );
    check(
        &["publish", "order.created", "--data", "{oops"],
        "is not valid JSON",
    );
    check(
        &["publish", "order.created", "--data", "@/nonexistent/x.json"],
        "cannot read --data file",
    );
    check(&["tail", "order..created"], "empty word");
    check(
        &["dlq", "list", "orders", "--url", "http://h"],
        "--url / AMQP_URL",
    );
}

#[test]
fn errors_never_show_the_password() {
    // Nothing listens on port 1: unreachable.
    let output = pubsub(&[
        "dlq",
        "list",
        "orders",
        "--url",
        "amqp://ops:s3cr3t@127.0.0.1:1/%2f",
    ]);
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(
        err.contains("cannot reach RabbitMQ at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");

    // Not even in a URL that does not parse.
    let output = pubsub(&["dlq", "list", "orders", "--url", "amqp://ops:s3cr3t@[::1/"]);
    assert_exit(&output, 2);
    assert!(!stderr(&output).contains("s3cr3t"), "{}", stderr(&output));

    // Nor in the help, when AMQP_URL holds one.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pubsub"))
        .arg("--help")
        .env("AMQP_URL", "amqp://ops:s3cr3t@rabbit/%2f")
        .output()
        .unwrap();
    assert!(!stdout(&output).contains("s3cr3t"));
}

#[test]
fn the_password_stays_out_of_debug_logs_and_refused_credentials() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    // A wrong password: the handshake runs (and is logged at debug level), then fails.
    let url = format!("amqp://guest:s3cr3t-pw@{}/%2f", config.address());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pubsub"))
        .args(["dlq", "list", "orders", "--url", &url])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_exit(&output, 1);
    let err = stderr(&output);
    assert!(
        err.contains("refused the credentials of user \"guest\""),
        "{err}"
    );
    assert!(err.contains("StartOk"), "the handshake was logged: {err}");
    assert!(!err.contains("s3cr3t-pw"), "{err}");
}
