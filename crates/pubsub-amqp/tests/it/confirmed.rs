use std::time::{Duration, Instant};

use pubsub_amqp::{
    ConfirmOutcome, ConfirmedChannel, Connection, Error, ExchangeConfig, Outgoing, Properties,
    QueueConfig, Returned,
};

/// The message id a return carries, matched against the token.
fn is_it(token: &&str, returned: &Returned) -> bool {
    returned.message_id.as_deref() == Some(*token)
}

fn message<'a>(exchange: &'a str, key: &'a str, properties: &'a Properties) -> Outgoing<'a> {
    Outgoing {
        exchange,
        routing_key: key,
        body: b"{}",
        properties,
        mandatory: true,
    }
}

#[test]
fn confirms_and_returns_settle_each_message() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let exchange = pubsub_testkit::unique("ex");
    let queue = pubsub_testkit::unique("q");
    let mut connection = Connection::open(&config).unwrap();
    let mut channel = ConfirmedChannel::open(&mut connection).unwrap();
    let admin = channel.channel();
    admin
        .declare_exchange(&exchange, &ExchangeConfig::default())
        .unwrap();
    admin
        .declare_queue(&queue, &QueueConfig::default())
        .unwrap();
    admin.bind_queue(&queue, &exchange, "order.*").unwrap();

    let with_id = |id: &str| Properties {
        message_id: Some(id.to_owned()),
        ..Properties::default()
    };
    let (routed, unrouted) = (with_id("routed"), with_id("unrouted"));
    let first = channel
        .publish(
            &connection,
            message(&exchange, "order.created", &routed),
            "routed",
        )
        .unwrap();
    let second = channel
        .publish(
            &connection,
            message(&exchange, "user.created", &unrouted),
            "unrouted",
        )
        .unwrap();
    assert_eq!((first, second), (1, 2));
    assert_eq!(channel.in_flight(), 2);

    let mut settled = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(channel
        .wait_all(&connection, deadline, is_it, &mut settled)
        .unwrap());
    assert!(channel.is_empty());
    settled.sort_by_key(|s| s.tag);
    let outcomes: Vec<(&str, bool)> = settled
        .iter()
        .map(|s| {
            let returned = matches!(
                s.outcome,
                ConfirmOutcome::Returned {
                    reply_code: 312,
                    ..
                }
            );
            (s.token, returned)
        })
        .collect();
    assert_eq!(outcomes, [("routed", false), ("unrouted", true)]);
    assert_eq!(settled[0].outcome, ConfirmOutcome::Confirmed);

    // Nothing in flight: waiting returns at once, polling settles nothing.
    assert!(channel
        .wait_all(&connection, Instant::now(), is_it, &mut settled)
        .unwrap());
    assert_eq!(channel.poll(&connection, is_it, &mut settled).unwrap(), 0);

    let admin = connection.open_channel().unwrap();
    assert_eq!(admin.delete_queue(&queue).unwrap(), 1);
    admin.delete_exchange(&exchange).unwrap();
    channel.close().unwrap();
    connection.close().unwrap();
}

#[test]
fn a_missing_exchange_closes_the_channel() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let missing = pubsub_testkit::unique("no-such-ex");
    let mut connection = Connection::open(&config).unwrap();
    let mut channel = ConfirmedChannel::open(&mut connection).unwrap();
    let properties = Properties::default();
    // The publish itself is not answered; the channel's close is what comes back.
    channel
        .publish(&connection, message(&missing, "a.b", &properties), "lost")
        .unwrap();
    let mut settled = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = channel
        .wait_all(&connection, deadline, is_it, &mut settled)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                kind: "exchange",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(settled.is_empty());
    assert_eq!(channel.abandon(), [(1, "lost")]);
    // The connection is fine: another confirmed channel works.
    let mut other: ConfirmedChannel<&str> = ConfirmedChannel::open(&mut connection).unwrap();
    other
        .publish(
            &connection,
            message("", "no-such-queue-either", &properties),
            "x",
        )
        .unwrap();
    assert!(other
        .wait_all(&connection, deadline, |_, _| true, &mut Vec::new())
        .unwrap());
    connection.close().unwrap();
}
