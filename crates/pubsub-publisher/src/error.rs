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
    /// The publishing thread of a [`SharedPublisher`](crate::SharedPublisher) could not be
    /// started.
    Spawn {
        /// The operating system's reason.
        message: String,
    },
    /// The publishing thread of a [`SharedPublisher`](crate::SharedPublisher) ended, or
    /// publishes nothing more (its publisher panicked).
    PublisherGone,
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
            Error::Spawn { message } => {
                write!(f, "cannot start the publishing thread: {message}")
            }
            Error::PublisherGone => f.write_str("the publishing thread ended without answering"),
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
///
/// `E` is the reason's type: this crate's [`Error`], or the error of a layer built on this
/// crate that gives events back the same way (the `pubsub` facade does).
#[derive(Debug)]
pub struct PublishError<E = Error> {
    event: Box<Event>,
    error: E,
}

impl<E> PublishError<E> {
    /// The event `event`, not published because of `error`.
    pub fn new(event: Event, error: E) -> Self {
        PublishError {
            event: Box::new(event),
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
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The same event with the reason turned into another error type.
    pub fn map_error<F>(self, f: impl FnOnce(E) -> F) -> PublishError<F> {
        PublishError {
            event: self.event,
            error: f(self.error),
        }
    }
}

impl<E: fmt::Display> fmt::Display for PublishError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot publish {}: {}", self.event, self.error)
    }
}

/// The message includes the reason's, so the source is the reason's own source (the chain
/// does not print it twice); [`PublishError::error`] gives the reason itself.
impl<E: std::error::Error + 'static> std::error::Error for PublishError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
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
            let failed = PublishError::new(event.clone(), error);
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
        check(
            Error::Spawn {
                message: "out of threads".to_owned(),
            },
            "cannot start the publishing thread: out of threads",
        );
        check(
            Error::PublisherGone,
            "the publishing thread ended without answering",
        );
    }
}
