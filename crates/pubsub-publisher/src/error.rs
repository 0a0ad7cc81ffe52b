//! The error types of this crate.

use std::fmt;

use pubsub_core::Event;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an event was not published, or a publisher could not be set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed: unreachable broker, refused credentials, lost connection that
    /// could not be restored in time, missing exchange, blocked connection, timeout.
    Amqp(pubsub_amqp::Error),
    /// The broker refused to take responsibility for the message (a negative confirm), e.g.
    /// because a queue is full and rejects publishes.
    Nacked,
    /// The broker could route the message to no queue, and the publisher is set to treat
    /// that as an error ([`Unroutable::Error`](crate::Unroutable::Error)).
    Unroutable {
        /// The exchange.
        exchange: String,
        /// The routing key no binding matched.
        routing_key: String,
    },
}

impl Error {
    /// The transport error, if this is one.
    pub fn as_amqp(&self) -> Option<&pubsub_amqp::Error> {
        match self {
            Error::Amqp(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Amqp(e) => fmt::Display::fmt(e, f),
            Error::Nacked => f.write_str("the broker refused the message (negative confirm)"),
            Error::Unroutable {
                exchange,
                routing_key,
            } => write!(
                f,
                "no queue is bound to exchange `{exchange}` for routing key `{routing_key}`"
            ),
        }
    }
}

/// [`Error::Amqp`] is transparent: its message is the transport error's, so its source is
/// the transport error's source (the chain does not print the message twice).
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Amqp(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<pubsub_amqp::Error> for Error {
    fn from(e: pubsub_amqp::Error) -> Self {
        Error::Amqp(e)
    }
}

/// An event that was not published, given back with the reason.
///
/// The broker did not confirm the event, so the publisher does not report it as sent. It may
/// still have reached a queue (the confirm could have been lost with the connection):
/// publishing it again is safe for idempotent consumers, which is what at-least-once
/// delivery asks of them.
#[derive(Debug)]
pub struct PublishError {
    event: Box<Event>,
    error: Error,
}

impl PublishError {
    pub(crate) fn new(event: &Event, error: Error) -> Self {
        PublishError {
            event: Box::new(event.clone()),
            error,
        }
    }

    /// The event that was not published.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// Takes the event back, e.g. to publish it again later.
    pub fn into_event(self) -> Event {
        *self.event
    }

    /// Why it was not published.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot publish {}: {}", self.event, self.error)
    }
}

/// The message includes the [`Error`]'s, so the source is the error's own source (the chain
/// does not print it twice); [`PublishError::error`] gives the error itself.
impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use pubsub_core::text::error_chain as chain;

    #[test]
    fn chains_print_each_message_once() {
        let lost = pubsub_amqp::Error::ConnectionLost {
            reason: "socket closed".to_owned(),
        };
        let check = |error: Error, expected: &str| {
            assert_eq!(chain(&error), expected);
            let event = Event::new("sample", "created", serde_json::json!({}))
                .unwrap_or_else(|e| panic!("a valid event: {e}"));
            let failed = PublishError::new(&event, error);
            assert_eq!(
                chain(&failed),
                format!("cannot publish {event}: {expected}")
            );
        };
        check(Error::Amqp(lost.clone()), &lost.to_string());
        check(
            Error::Nacked,
            "the broker refused the message (negative confirm)",
        );
        check(
            Error::Unroutable {
                exchange: "events".to_owned(),
                routing_key: "sample.created".to_owned(),
            },
            "no queue is bound to exchange `events` for routing key `sample.created`",
        );
    }
}
