//! [`Tail`]: watch the events flowing through an exchange.
//!
//! A tail declares a temporary queue of its own (`pubsub-tail.<random>`: exclusive,
//! auto-deleted, not durable, so that the broker deletes it when the tail's connection
//! closes, however it closes), binds it with the broker binding keys of the patterns (as a
//! subscriber does: [`pubsub_registry::binding_keys`]) and filters what arrives with
//! [`Pattern::matches`], so that glob words mean what they mean in handler subscriptions.
//! Bodies are decoded in the envelope asked for ([`TailOptions::envelope`]: seed 000's six
//! fields by default, or another seed's), as a subscriber would decode them.
//!
//! The command's arguments and output are in [`command`].

use std::ops::ControlFlow;
use std::time::Duration;

use crossbeam_channel::Receiver;
use pubsub_amqp::{Channel, Connection, ConsumerEvent, Delivery, Next, QueueConfig};
use pubsub_core::envelope::{Envelope, EnvelopeMeta, Received};
use pubsub_core::text::clip;
use pubsub_core::{json, Event};
use pubsub_registry::{binding_keys, Pattern};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::{Error, Result, UsageError};
use crate::format::{body_json, time_millis};

pub mod command;

/// The tail queue holds at most this many messages; past that the oldest are dropped, so a
/// tail that cannot keep up never grows a queue on the broker without bound.
pub const MAX_BACKLOG: i64 = 100_000;

/// How many deliveries the broker sends ahead of the acks.
const PREFETCH: u16 = 200;

/// What to watch.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// The exchange.
    pub exchange: String,
    /// The patterns; `#` for everything.
    pub patterns: Vec<Pattern>,
    /// The envelope bodies are decoded in ([`Envelope::Standard`]: seed 000's six fields).
    pub envelope: Envelope,
}

/// A temporary queue bound to an exchange, and the connection that owns it.
#[derive(Debug)]
pub struct Tail {
    connection: Connection,
    channel: Channel,
    queue: String,
    patterns: Vec<Pattern>,
    bindings: Vec<String>,
    envelope: Envelope,
}

/// One message seen by a [`Tail`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tailed {
    /// When it arrived.
    pub received_at: OffsetDateTime,
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Its `correlation_id` property.
    pub correlation_id: Option<String>,
    /// Its `app_id` property.
    pub app_id: Option<String>,
    /// The event, or why the body is not one.
    pub event: Result<Event, String>,
    /// What the envelope carried besides the event (seed 004's `source`, `event_type` and
    /// other fields); empty for the other envelopes and for a body that is not an event.
    pub meta: EnvelopeMeta,
    /// The body, unchanged.
    pub body: Vec<u8>,
}

impl Tailed {
    fn from_delivery(delivery: &mut Delivery, envelope: Envelope) -> Tailed {
        let body = delivery.take_body();
        let received_at = OffsetDateTime::now_utc();
        let received = Received {
            // Through the default exchange the key is a queue's name: no event's.
            routing_key: (!delivery.exchange().is_empty()).then(|| delivery.routing_key()),
            message_id: delivery.message_id(),
            timestamp: delivery.timestamp(),
            received_at,
        };
        let (event, meta) = match envelope.decode_with_meta(&body, &received) {
            Ok((event, meta)) => (Ok(event), meta),
            Err(e) if envelope == Envelope::Standard => {
                (Err(e.to_string()), EnvelopeMeta::default())
            }
            Err(e) => (
                Err(format!("{e} (envelope {envelope})")),
                EnvelopeMeta::default(),
            ),
        };
        Tailed {
            received_at,
            exchange: delivery.exchange().to_owned(),
            routing_key: delivery.routing_key().to_owned(),
            correlation_id: delivery.correlation_id().map(str::to_owned),
            app_id: delivery.app_id().map(str::to_owned),
            event,
            meta,
            body,
        }
    }

    /// One readable line: time, routing key, event id, compact data.
    ///
    /// ```text
    /// 2024-05-01T12:30:00.123Z  order.created  7c9e6679-7425-40de-944b-e07fc1f90ae7  {"order_id":"ORD-1"}
    /// ```
    ///
    /// A body that is not an event shows as `<not an event: reason> body...`.
    pub fn line(&self) -> String {
        match &self.event {
            Ok(event) => format!(
                "{}  {}  {}  {}",
                time_millis(event.timestamp()),
                self.routing_key,
                event.event_id(),
                Value::Object(event.data().clone())
            ),
            Err(reason) => format!(
                "{}  {}  -  <not an event: {}> {}",
                time_millis(self.received_at),
                self.routing_key,
                clip(reason, 120),
                clip(&String::from_utf8_lossy(&self.body), 200)
            ),
        }
    }

    /// One JSON object: `received_at`, `exchange`, `routing_key`, `correlation_id`,
    /// `app_id`, and `event` (the event in seed 000's six fields, whatever its envelope), or
    /// `event: null` with `error` and `body` when the body is not an event. When the
    /// envelope carried more (seed 004's), `source`, `event_type` and `extra` (its other
    /// fields) too.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "received_at": time_millis(self.received_at),
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "correlation_id": self.correlation_id,
            "app_id": self.app_id,
        });
        if !self.meta.is_empty() {
            value["source"] = self.meta.source().into();
            value["event_type"] = self.meta.event_type_name().into();
            value["extra"] = Value::Object(self.meta.extra().clone());
        }
        match &self.event {
            Ok(event) => value["event"] = body_json(&json::to_vec(event)),
            Err(reason) => {
                value["event"] = Value::Null;
                value["error"] = Value::from(reason.as_str());
                value["body"] = body_json(&self.body);
            }
        }
        value
    }
}

impl Tail {
    /// Declares the temporary queue and binds it: from the moment this returns, every
    /// matching event published to the exchange reaches the tail.
    ///
    /// # Errors
    ///
    /// [`Error::Amqp`] when the exchange does not exist or the broker refuses the queue.
    pub fn start(mut connection: Connection, options: &TailOptions) -> Result<Tail> {
        let channel = connection.open_channel()?;
        let queue = format!(
            "pubsub-tail.{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let config = QueueConfig::temporary().max_length(MAX_BACKLOG);
        channel.declare_queue(&queue, &config)?;
        let patterns = if options.patterns.is_empty() {
            vec![Pattern::parse("#").map_err(|e| UsageError::new(e.to_string()))?]
        } else {
            options.patterns.clone()
        };
        let bindings = binding_keys(&patterns);
        for key in &bindings {
            channel.bind_queue(&queue, &options.exchange, key)?;
        }
        channel.set_prefetch(PREFETCH)?;
        Ok(Tail {
            connection,
            channel,
            queue,
            patterns,
            bindings,
            envelope: options.envelope,
        })
    }

    /// The temporary queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The binding keys the queue is bound with.
    pub fn bindings(&self) -> &[String] {
        &self.bindings
    }

    /// Calls `on_message` with every matching message, in order, until it returns
    /// [`ControlFlow::Break`], a message arrives on `stop` (Ctrl-C), or the connection
    /// fails. Each message is acknowledged after `on_message` returns.
    ///
    /// # Errors
    ///
    /// The error of `on_message`, a lost connection ([`Error::Amqp`]), or the broker
    /// cancelling the consumer ([`Error::TailCancelled`]: the queue was deleted).
    pub fn run(
        &mut self,
        stop: &Receiver<()>,
        mut on_message: impl FnMut(&Tailed) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        let consumer = self.channel.consume(&self.queue, true)?;
        loop {
            match consumer.next_or(stop, Duration::from_secs(1)) {
                Next::Event(ConsumerEvent::Delivery(mut delivery)) => {
                    let wanted = self
                        .patterns
                        .iter()
                        .any(|p| p.matches(delivery.routing_key()));
                    let flow = if wanted {
                        on_message(&Tailed::from_delivery(&mut delivery, self.envelope))?
                    } else {
                        ControlFlow::Continue(())
                    };
                    self.channel.ack(delivery)?;
                    if flow.is_break() {
                        break;
                    }
                }
                Next::Event(ConsumerEvent::Cancelled { by_server: true }) => {
                    return Err(Error::TailCancelled {
                        queue: self.queue.clone(),
                    })
                }
                Next::Event(ConsumerEvent::Cancelled { by_server: false }) => break,
                Next::Event(ConsumerEvent::Closed(e)) => return Err(e.into()),
                Next::Other(_) => break,
                Next::Timeout => {}
            }
        }
        consumer.cancel()?;
        Ok(())
    }

    /// Deletes the temporary queue and closes the connection. (Dropping the tail instead
    /// deletes the queue too: it is exclusive to the connection.)
    ///
    /// # Errors
    ///
    /// [`Error::Amqp`] when the connection was already lost.
    pub fn close(self) -> Result<()> {
        let Tail {
            connection,
            channel,
            queue,
            ..
        } = self;
        if let Err(e) = channel.delete_queue(&queue) {
            log::debug!("deleting the tail queue `{queue}`: {e}");
        }
        drop(channel);
        connection.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tailed(body: &[u8]) -> Tailed {
        Tailed {
            received_at: OffsetDateTime::from_unix_timestamp(1_714_566_600).unwrap(),
            exchange: "events".into(),
            routing_key: "order.created".into(),
            correlation_id: Some("c-1".into()),
            app_id: None,
            event: json::from_slice(body).map_err(|e| e.to_string()),
            meta: EnvelopeMeta::default(),
            body: body.to_vec(),
        }
    }

    const EVENT: &[u8] = br#"{"domain":"order","action":"created","data":{"order_id":"ORD-1"},"event_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","timestamp":"2024-05-01T12:30:00.123456+00:00","version":"1.0"}"#;

    #[test]
    fn an_event_is_one_readable_line() {
        assert_eq!(
            tailed(EVENT).line(),
            r#"2024-05-01T12:30:00.123Z  order.created  7c9e6679-7425-40de-944b-e07fc1f90ae7  {"order_id":"ORD-1"}"#
        );
    }

    #[test]
    fn a_non_event_says_so() {
        let line = tailed(b"hello\nworld").line();
        assert!(
            line.starts_with("2024-05-01T12:30:00.000Z  order.created  -  <not an event: "),
            "{line}"
        );
        assert!(line.ends_with("> hello world"), "{line}");
    }

    #[test]
    fn json_lines() {
        let value = tailed(EVENT).to_json();
        assert_eq!(value["routing_key"], "order.created");
        assert_eq!(value["correlation_id"], "c-1");
        assert_eq!(value["event"]["data"]["order_id"], "ORD-1");
        assert_eq!(
            value["event"]["event_id"],
            "7c9e6679-7425-40de-944b-e07fc1f90ae7"
        );

        assert!(value.get("source").is_none());
        let mut with_meta = tailed(EVENT);
        with_meta.meta = EnvelopeMeta::default()
            .with_source(Some("accounts".into()))
            .with_event_type_name(Some("integration".into()));
        let value = with_meta.to_json();
        assert_eq!(value["source"], "accounts");
        assert_eq!(value["event_type"], "integration");
        assert_eq!(value["extra"], json!({}));

        let value = tailed(b"[1,2]").to_json();
        assert_eq!(value["event"], Value::Null);
        assert_eq!(value["body"], json!([1, 2]));
        assert!(value["error"].as_str().is_some());
    }
}
