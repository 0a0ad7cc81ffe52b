//! `pubsub asyncapi`, which needs no broker.

use serde_json::Value;

use crate::support::{assert_exit, pubsub, stderr, stdout};

#[test]
fn prints_the_document_of_the_flags() {
    let output = pubsub(&[
        "asyncapi",
        "billing",
        "--exchange",
        "shop",
        "--subscribe",
        "order.*",
        "--subscribe",
        "pay*.#",
        "--publish",
        "invoice.sent",
        "--server",
        "production=amqps://rabbit.internal:5671",
    ]);
    assert_exit(&output, 0);
    let doc: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let check = |pointer: &str, expected: &str| {
        assert_eq!(
            doc.pointer(pointer),
            Some(&expected.into()),
            "{pointer}\n{doc:#}"
        );
    };
    check("/asyncapi", "3.0.0");
    check("/info/title", "billing");
    check("/servers/production/host", "rabbit.internal:5671");
    check("/channels/order.any/address", "order.*");
    check("/channels/any.all/address", "*.#");
    check("/channels/invoice.sent/bindings/amqp/exchange/name", "shop");
    check("/operations/receiveOrderAny/action", "receive");
    check("/operations/sendInvoiceSent/action", "send");
    check(
        "/components/messages/invoice.sent/payload/properties/action/const",
        "sent",
    );
}

#[test]
fn refuses_what_is_not_a_pattern_or_a_key() {
    let check = |args: &[&str], needle: &str| {
        let output = pubsub(args);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty());
    };
    check(
        &["asyncapi", "x", "--subscribe", "a..b"],
        "invalid pattern \"a..b\"",
    );
    check(
        &["asyncapi", "x", "--publish", "order.*"],
        "invalid routing key `order.*`",
    );
    check(&["asyncapi"], "<SERVICE>");
    check(
        &["asyncapi", "x", "--server", "rabbit:5672"],
        "expected NAME=HOST",
    );
    check(
        &["asyncapi", "x", "--server", "p=amqp://guest:pw@rabbit"],
        "must not carry credentials",
    );
}

#[test]
fn help_has_examples() {
    let output = pubsub(&["asyncapi", "--help"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("Examples:"));
}
