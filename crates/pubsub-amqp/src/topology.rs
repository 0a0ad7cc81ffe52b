//! Exchange and queue settings.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::properties::{HeaderValue, Headers};

/// The kind of an exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routes by routing-key pattern (`order.*`, `#`): the kind events use.
    #[default]
    Topic,
    /// Routes by exact routing key.
    Direct,
    /// Routes to every bound queue.
    Fanout,
    /// Routes by header values.
    Headers,
}

impl ExchangeKind {
    pub(crate) fn to_amqp(self) -> amiquip::ExchangeType {
        match self {
            ExchangeKind::Topic => amiquip::ExchangeType::Topic,
            ExchangeKind::Direct => amiquip::ExchangeType::Direct,
            ExchangeKind::Fanout => amiquip::ExchangeType::Fanout,
            ExchangeKind::Headers => amiquip::ExchangeType::Headers,
        }
    }
}

/// Settings of an exchange; by default a durable topic exchange, as every service of the
/// original design declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeConfig {
    /// The exchange's kind.
    pub kind: ExchangeKind,
    /// Whether the exchange survives a broker restart.
    pub durable: bool,
    /// Whether the broker deletes the exchange when its last queue is unbound.
    pub auto_delete: bool,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            kind: ExchangeKind::Topic,
            durable: true,
            auto_delete: false,
        }
    }
}

/// Settings of a queue: durable, not exclusive, not auto-deleted by default (the original
/// design's `QueueConfig`), plus arguments.
///
/// ```
/// use std::time::Duration;
///
/// use pubsub_amqp::QueueConfig;
///
/// let config = QueueConfig::default()
///     .quorum()
///     .max_length(100_000)
///     .message_ttl(Duration::from_secs(3600));
/// assert!(config.validate("orders").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Whether the queue survives a broker restart.
    pub durable: bool,
    /// Whether only this connection may use the queue; the broker deletes it when the
    /// connection closes.
    pub exclusive: bool,
    /// Whether the broker deletes the queue when its last consumer goes away.
    pub auto_delete: bool,
    /// Queue arguments (`x-queue-type`, `x-max-length`, `x-message-ttl`, ...).
    pub arguments: Headers,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: Headers::new(),
        }
    }
}

impl QueueConfig {
    /// A server-named-style temporary queue: not durable, exclusive, auto-deleted.
    pub fn temporary() -> Self {
        QueueConfig {
            durable: false,
            exclusive: true,
            auto_delete: true,
            arguments: Headers::new(),
        }
    }

    /// Sets an argument.
    #[must_use]
    pub fn argument(mut self, name: &str, value: impl Into<HeaderValue>) -> Self {
        self.arguments.insert(name.to_owned(), value.into());
        self
    }

    /// Makes it a quorum queue (`x-queue-type=quorum`): replicated, and counting deliveries.
    #[must_use]
    pub fn quorum(self) -> Self {
        self.argument("x-queue-type", "quorum")
    }

    /// Caps the number of messages (`x-max-length`); the oldest are dropped or dead-lettered.
    #[must_use]
    pub fn max_length(self, max: i64) -> Self {
        self.argument("x-max-length", max)
    }

    /// Expires messages older than `ttl` (`x-message-ttl`).
    #[must_use]
    pub fn message_ttl(self, ttl: Duration) -> Self {
        self.argument("x-message-ttl", duration_ms(ttl))
    }

    /// Dead-letters rejected and expired messages to `exchange` with `routing_key`.
    #[must_use]
    pub fn dead_letter_to(self, exchange: &str, routing_key: &str) -> Self {
        self.argument("x-dead-letter-exchange", exchange)
            .argument("x-dead-letter-routing-key", routing_key)
    }

    /// Checks the combination of settings the broker would refuse.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a quorum queue that is not durable, exclusive, or
    /// auto-deleted.
    pub fn validate(&self, name: &str) -> Result<()> {
        let quorum = self
            .arguments
            .get("x-queue-type")
            .and_then(HeaderValue::as_str)
            == Some("quorum");
        if quorum && (!self.durable || self.exclusive || self.auto_delete) {
            return Err(Error::InvalidConfig {
                field: "queue_config",
                message: format!(
                    "quorum queue `{name}` must be durable, not exclusive and not auto-delete"
                ),
            });
        }
        Ok(())
    }
}

/// What the broker reports about a declared queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// Messages ready for delivery.
    pub message_count: u32,
    /// Consumers attached.
    pub consumer_count: u32,
}

/// Milliseconds as an AMQP integer argument, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_original_design() {
        let q = QueueConfig::default();
        assert!(q.durable && !q.exclusive && !q.auto_delete && q.arguments.is_empty());
        let e = ExchangeConfig::default();
        assert_eq!(e.kind, ExchangeKind::Topic);
        assert!(e.durable);
    }

    #[test]
    fn arguments_are_set() {
        let q = QueueConfig::default()
            .quorum()
            .max_length(10)
            .message_ttl(Duration::from_secs(2))
            .dead_letter_to("", "q.dlq");
        assert_eq!(q.arguments["x-queue-type"], HeaderValue::from("quorum"));
        assert_eq!(q.arguments["x-max-length"], HeaderValue::Int(10));
        assert_eq!(q.arguments["x-message-ttl"], HeaderValue::Int(2000));
        assert_eq!(
            q.arguments["x-dead-letter-routing-key"],
            HeaderValue::from("q.dlq")
        );
    }

    #[test]
    fn quorum_queues_must_be_durable() {
        let mut q = QueueConfig::default().quorum();
        assert!(q.validate("q").is_ok());
        q.durable = false;
        assert!(q.validate("q").is_err());
        assert!(QueueConfig::temporary().quorum().validate("q").is_err());
    }
}
