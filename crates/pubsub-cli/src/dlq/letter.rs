//! [`DeadLetter`]: a dead-lettered message and what its headers say, read through the
//! subscriber's header contract ([`pubsub_subscriber::headers`]); where a replay sends it
//! ([`Destination`]) and with which properties ([`replay_properties`]).

use std::fmt;

use pubsub_amqp::{Delivery, Properties};
use pubsub_subscriber::dead_letter_queue_name;
use pubsub_subscriber::headers::{self, DeadLetterCause, DeadLetterHeaders, DeadLetterKind};
use serde_json::{json, Value};

use crate::format::{body_json, epoch_rfc3339, headers_json};

/// The header a replay sets on the republished message: how many times it was replayed.
pub const REPLAYED: &str = headers::REPLAYED;

/// The dead-letter queue named on the command line: `orders` means `orders.dlq` (see
/// [`dead_letter_queue_name`]); a name that already ends in `.dlq` is taken as it is.
///
/// ```
/// assert_eq!(pubsub_cli::dlq::dlq_name("orders"), "orders.dlq");
/// assert_eq!(pubsub_cli::dlq::dlq_name("orders.dlq"), "orders.dlq");
/// ```
pub fn dlq_name(queue: &str) -> String {
    if queue.ends_with(".dlq") {
        queue.to_owned()
    } else {
        dead_letter_queue_name(queue)
    }
}

/// Where a replay publishes a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The exchange (empty: the default exchange, which routes to the queue named by the
    /// routing key).
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exchange.is_empty() {
            write!(f, "queue `{}`", self.routing_key)
        } else {
            write!(f, "`{}` / `{}`", self.exchange, self.routing_key)
        }
    }
}

/// A dead-lettered message and what its headers say about it.
///
/// Messages dead-lettered by `pubsub-subscriber` carry its `x-pubsub-*` headers (see
/// [`pubsub_subscriber::headers`]); messages dead-lettered by RabbitMQ itself (a queue's
/// `x-dead-letter-exchange`) carry `x-death`, which is read instead.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The exchange the message reached the dead-letter queue through (usually the default
    /// exchange).
    pub exchange: String,
    /// The routing key it reached the dead-letter queue with.
    pub routing_key: String,
    /// Whether the broker had delivered it before (peeking marks every message so).
    pub redelivered: bool,
    /// Its properties and headers.
    pub properties: Properties,
    /// Its body, unchanged.
    pub body: Vec<u8>,
}

impl DeadLetter {
    /// Takes the body and properties of a delivery (which is still to be settled).
    pub fn from_delivery(delivery: &mut Delivery) -> DeadLetter {
        DeadLetter {
            exchange: delivery.exchange().to_owned(),
            routing_key: delivery.routing_key().to_owned(),
            redelivered: delivery.redelivered(),
            properties: delivery.properties(),
            body: delivery.take_body(),
        }
    }

    /// What its headers say: the subscriber's header contract
    /// ([`pubsub_subscriber::headers`]), RabbitMQ's `x-death` records as the fallback.
    pub fn headers(&self) -> DeadLetterHeaders<'_> {
        DeadLetterHeaders::new(&self.properties.headers)
    }

    /// The event id: the `message_id` property, else the body's `event_id`.
    pub fn event_id(&self) -> Option<String> {
        if let Some(id) = &self.properties.message_id {
            return Some(id.clone());
        }
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body.get("event_id")?.as_str().map(str::to_owned)
    }

    /// Where the message was first published: the subscriber's `x-pubsub-original-exchange`
    /// and `x-pubsub-original-routing-key` headers; else the exchange and first routing key
    /// of the oldest `x-death` record ([`DeadLetterHeaders::origin`]); else the exchange and
    /// routing key it was delivered with, unless that is the dead-letter queue itself.
    ///
    /// # Errors
    ///
    /// A reason, when nothing says where the message came from.
    pub fn destination(&self, dlq: &str) -> Result<Destination, String> {
        if let Some(origin) = self.headers().origin() {
            return Ok(Destination {
                exchange: origin.exchange,
                routing_key: origin.routing_key,
            });
        }
        if self.exchange.is_empty() && self.routing_key == dlq {
            return Err(format!(
                "nothing records where it was first published (no {} nor x-death header)",
                headers::ORIGINAL_EXCHANGE
            ));
        }
        Ok(Destination {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
        })
    }

    /// The routing key to show: the original one if known, else the `type` property (events
    /// carry their routing key there), else the delivery's.
    pub fn original_routing_key(&self, dlq: &str) -> String {
        match self.destination(dlq) {
            Ok(d) if !d.exchange.is_empty() => d.routing_key,
            _ => self
                .properties
                .kind
                .clone()
                .unwrap_or_else(|| self.routing_key.clone()),
        }
    }

    /// Why it is dead-lettered: the subscriber's [`DeadLetterKind`],
    /// RabbitMQ's reason, or unknown.
    pub fn cause(&self) -> DeadLetterCause {
        self.headers().cause()
    }

    /// The subscriber's [`DeadLetterKind`], parsed; `None` when the subscriber did not
    /// dead-letter it or wrote a kind this version does not know ([`cause`](Self::cause)
    /// tells those apart, and its `Display` is the kind in words, as `list` shows it).
    pub fn kind(&self) -> Option<DeadLetterKind> {
        self.headers().kind()
    }

    /// The reason in words.
    pub fn reason(&self) -> Option<String> {
        self.headers().reason()
    }

    /// The handlers that failed on the last attempt.
    pub fn failed_handlers(&self) -> Vec<String> {
        self.headers().failed_handlers()
    }

    /// How many attempts were made: the subscriber's count, else the quorum queue's delivery
    /// count.
    pub fn attempts(&self) -> Option<i64> {
        self.headers().attempts()
    }

    /// When the event first failed (RFC 3339): the subscriber's header, else the time of the
    /// oldest `x-death` record.
    pub fn first_failure(&self) -> Option<String> {
        self.headers().first_failure()
    }

    /// When it was dead-lettered (RFC 3339), if recorded.
    pub fn dead_lettered_at(&self) -> Option<String> {
        self.headers().dead_lettered_at()
    }

    /// The last handler error, if recorded.
    pub fn last_error(&self) -> Option<String> {
        self.headers().last_error()
    }

    /// The queue the subscriber consumed it from (or where RabbitMQ dead-lettered it).
    pub fn source_queue(&self) -> Option<String> {
        self.headers().source_queue()
    }

    /// One JSON object with the fields of the `list` table; with `full`, also the
    /// properties, every header and the body.
    pub fn to_json(&self, dlq: &str, full: bool) -> Value {
        let destination = self.destination(dlq);
        let mut value = json!({
            "queue": dlq,
            "event_id": self.event_id(),
            "routing_key": self.original_routing_key(dlq),
            "exchange": destination.as_ref().ok().map(|d| d.exchange.clone()),
            "kind": self.cause().to_string(),
            "reason": self.reason(),
            "failed_handlers": self.failed_handlers(),
            "attempts": self.attempts(),
            "first_failure": self.first_failure(),
            "dead_lettered_at": self.dead_lettered_at(),
            "source_queue": self.source_queue(),
        });
        if full {
            let p = &self.properties;
            value["last_error"] = json!(self.last_error());
            value["replay_to"] = match &destination {
                Ok(d) => json!({ "exchange": d.exchange, "routing_key": d.routing_key }),
                Err(reason) => json!({ "error": reason }),
            };
            value["properties"] = json!({
                "message_id": p.message_id,
                "correlation_id": p.correlation_id,
                "app_id": p.app_id,
                "type": p.kind,
                "content_type": p.content_type,
                "timestamp": p.timestamp.and_then(epoch_rfc3339),
                "persistent": p.persistent,
            });
            value["headers"] = headers_json(&p.headers);
            value["body"] = body_json(&self.body);
        }
        value
    }
}

/// The properties a replayed message is published with: the original ones (message id,
/// correlation id, app id, content type, timestamp, type, user headers), persistent, without
/// the retry and dead-letter headers ([`headers::strip_for_replay`]), and with [`REPLAYED`]
/// counting the replays.
pub fn replay_properties(original: &Properties) -> Properties {
    let mut properties = original.clone();
    properties.persistent = true;
    headers::strip_for_replay(&mut properties.headers);
    properties
}

#[cfg(test)]
mod tests {
    use pubsub_amqp::HeaderValue;

    use super::*;

    fn letter(headers: &[(&str, HeaderValue)]) -> DeadLetter {
        DeadLetter {
            exchange: String::new(),
            routing_key: "orders.dlq".to_owned(),
            redelivered: false,
            properties: Properties {
                message_id: Some("id-1".to_owned()),
                kind: Some("order.created".to_owned()),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                ..Properties::default()
            },
            body: br#"{"event_id":"body-id"}"#.to_vec(),
        }
    }

    fn table(entries: &[(&str, HeaderValue)]) -> HeaderValue {
        HeaderValue::Table(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn x_death(entries: Vec<HeaderValue>) -> (&'static str, HeaderValue) {
        ("x-death", HeaderValue::Array(entries))
    }

    fn death(queue: &str, reason: &str, exchange: &str, key: &str, time: u64) -> HeaderValue {
        table(&[
            ("queue", HeaderValue::from(queue)),
            ("reason", HeaderValue::from(reason)),
            ("exchange", HeaderValue::from(exchange)),
            ("routing-keys", HeaderValue::from(vec![key.to_owned()])),
            ("time", HeaderValue::Timestamp(time)),
            ("count", HeaderValue::Int(1)),
        ])
    }

    #[test]
    fn dlq_names() {
        let check = |given: &str, expected: &str| assert_eq!(dlq_name(given), expected);
        check("orders", "orders.dlq");
        check("orders.dlq", "orders.dlq");
        check("billing.v2", "billing.v2.dlq");
    }

    #[test]
    fn destinations() {
        let check = |l: DeadLetter, expected: Result<(&str, &str), ()>| {
            let got = l.destination("orders.dlq");
            match expected {
                Ok((e, k)) => assert_eq!(
                    got,
                    Ok(Destination {
                        exchange: e.into(),
                        routing_key: k.into()
                    })
                ),
                Err(()) => assert!(got.is_err(), "{got:?}"),
            }
        };
        // The subscriber's headers win.
        check(
            letter(&[
                (headers::ORIGINAL_EXCHANGE, "events".into()),
                (headers::ORIGINAL_ROUTING_KEY, "order.created".into()),
                x_death(vec![death(
                    "orders.retry.1s",
                    "expired",
                    "",
                    "orders.retry.1s",
                    1,
                )]),
            ]),
            Ok(("events", "order.created")),
        );
        // RabbitMQ's oldest x-death record: the original publish.
        check(
            letter(&[x_death(vec![
                death("orders.retry", "expired", "dlx", "orders", 2),
                death("orders", "rejected", "events", "order.paid", 1),
            ])]),
            Ok(("events", "order.paid")),
        );
        // Published straight into the dead-letter queue: no way back.
        check(letter(&[]), Err(()));
        // Published into it through an exchange: back there.
        let mut through = letter(&[]);
        through.exchange = "dlx".into();
        through.routing_key = "order.created".into();
        check(through, Ok(("dlx", "order.created")));
    }

    #[test]
    fn subscriber_headers_are_read() {
        let l = letter(&[
            (headers::DEAD_LETTER_KIND, "exhausted".into()),
            (
                headers::DEAD_LETTER_REASON,
                "failed 3 attempt(s): mail: down".into(),
            ),
            (headers::FAILED_HANDLERS, vec!["mail".to_owned()].into()),
            (headers::ATTEMPT, HeaderValue::Int(3)),
            (headers::FIRST_FAILURE, "2024-05-01T12:30:00Z".into()),
            (headers::SOURCE_QUEUE, "orders".into()),
        ]);
        assert_eq!(l.kind(), Some(DeadLetterKind::Exhausted));
        assert_eq!(
            l.reason().as_deref(),
            Some("failed 3 attempt(s): mail: down")
        );
        assert_eq!(l.failed_handlers(), ["mail"]);
        assert_eq!(l.attempts(), Some(3));
        assert_eq!(l.first_failure().as_deref(), Some("2024-05-01T12:30:00Z"));
        assert_eq!(l.source_queue().as_deref(), Some("orders"));
        assert_eq!(l.event_id().as_deref(), Some("id-1"));
    }

    #[test]
    fn broker_dead_letters_are_read() {
        let mut l = letter(&[x_death(vec![death(
            "orders",
            "rejected",
            "events",
            "order.paid",
            1_714_566_600,
        )])]);
        l.properties.message_id = None;
        assert_eq!(l.kind(), None);
        assert_eq!(l.cause().to_string(), "rejected (broker)");
        assert_eq!(
            l.reason().as_deref(),
            Some("rejected by RabbitMQ in queue `orders`")
        );
        assert_eq!(l.first_failure().as_deref(), Some("2024-05-01T12:30:00Z"));
        assert_eq!(l.source_queue().as_deref(), Some("orders"));
        assert_eq!(l.original_routing_key("orders.dlq"), "order.paid");
        // Without a message id, the body's event id.
        assert_eq!(l.event_id().as_deref(), Some("body-id"));
        assert!(l.failed_handlers().is_empty());
        assert_eq!(l.attempts(), None);
    }

    #[test]
    fn replay_strips_the_retry_state_and_counts_replays() {
        let original = letter(&[
            (headers::ATTEMPT, HeaderValue::Int(3)),
            (headers::DONE, vec!["a@#".to_owned()].into()),
            (headers::FAILED_HANDLERS, vec!["b".to_owned()].into()),
            (headers::LAST_ERROR, "b: boom".into()),
            (headers::FIRST_FAILURE, "t".into()),
            (headers::DEAD_LETTER_KIND, "exhausted".into()),
            (headers::DEAD_LETTER_REASON, "r".into()),
            (headers::DEAD_LETTERED_AT, "t".into()),
            (headers::SOURCE_QUEUE, "orders".into()),
            (headers::ORIGINAL_EXCHANGE, "events".into()),
            (headers::ORIGINAL_ROUTING_KEY, "order.created".into()),
            x_death(vec![]),
            ("x-first-death-queue", "orders".into()),
            ("x-last-death-reason", "rejected".into()),
            ("x-delivery-count", HeaderValue::Int(2)),
            ("tenant", "acme".into()),
        ])
        .properties;
        let replayed = replay_properties(&original);
        let names: Vec<&str> = replayed.headers.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "tenant",
                headers::ORIGINAL_EXCHANGE,
                headers::ORIGINAL_ROUTING_KEY,
                REPLAYED,
            ]
        );
        assert_eq!(replayed.headers[REPLAYED], HeaderValue::Int(1));
        assert!(replayed.persistent);
        assert_eq!(replayed.message_id, original.message_id);
        assert_eq!(replayed.kind, original.kind);
        // A second replay counts on.
        assert_eq!(
            replay_properties(&replayed).headers[REPLAYED],
            HeaderValue::Int(2)
        );
    }
}
