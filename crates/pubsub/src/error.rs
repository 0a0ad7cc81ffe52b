//! The error types of this crate.

use std::fmt;
use std::net::SocketAddr;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with an [`EventBus`](crate::EventBus).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The service name cannot name the service's queue.
    InvalidServiceName {
        /// The name as given (cut to 80 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The exchange name is not usable (empty, or longer than 255 bytes).
    InvalidExchange {
        /// The name as given (cut to 80 characters).
        name: String,
    },
    /// A subscription was refused: an invalid pattern, or the same handler name twice on one
    /// pattern.
    Subscribe(pubsub_registry::Error),
    /// `subscribe` was called after `start`: the queue's bindings are declared at start, so a
    /// later handler would silently receive nothing.
    AlreadyStarted,
    /// The bus is not started yet: publishing waits for `start`, which declares the service's
    /// queue first (so that nothing published is lost for lack of a binding).
    NotStarted,
    /// The bus was stopped: nothing is published any more.
    Stopped,
    /// The transport failed: unreachable broker, refused credentials, a queue that exists
    /// with other arguments.
    Amqp(pubsub_amqp::Error),
    /// The broker did not confirm an event (negative confirm, lost connection not restored
    /// in time, unroutable under [`Unroutable::Error`](pubsub_publisher::Unroutable::Error)).
    Publish(pubsub_publisher::Error),
    /// A subscriber (worker) could not be set up, or stopped on an error.
    Subscriber(pubsub_subscriber::Error),
    /// In process: handlers failed on the event (there is no retry without a broker).
    Handlers {
        /// How many handlers failed.
        failed: usize,
        /// The first failure, `handler: message`.
        first: String,
    },
    /// A thread of the bus could not be started.
    Spawn {
        /// The operating system's reason.
        message: String,
    },
    /// The bus's publishing thread ended without answering (it panicked).
    PublisherGone,
    /// The settings do not fit together (tasks without a database, the store or tasks on an
    /// in-process bus).
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// The event store beside the handlers failed: its database cannot be opened, or its
    /// recorder stopped on an error (feature `store`).
    #[cfg(feature = "store")]
    Store(pubsub_recorder::Error),
    /// The task functions beside the handlers failed: an invalid task name, the task store,
    /// or a task worker stopped on an error (feature `tasks`).
    #[cfg(feature = "tasks")]
    Tasks(pubsub_tasks::Error),
    /// The outbox's relay beside the handlers failed: its database or the broker cannot be
    /// reached, or its thread panicked (feature `outbox`).
    #[cfg(feature = "outbox")]
    Outbox(pubsub_outbox::Error),
    /// The metrics endpoint cannot listen on its address (in use, or not this host's).
    MetricsEndpoint {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidServiceName { name, reason } => {
                write!(f, "invalid service name {name:?}: {reason}")
            }
            Error::InvalidExchange { name } => write!(
                f,
                "invalid exchange name {name:?}: it must be 1 to 255 bytes long"
            ),
            Error::Subscribe(e) => fmt::Display::fmt(e, f),
            Error::AlreadyStarted => {
                f.write_str("the bus is already started: subscribe every handler before `start`")
            }
            Error::NotStarted => {
                f.write_str("the bus is not started: call `start` before publishing")
            }
            Error::Stopped => f.write_str("the bus is stopped"),
            Error::Amqp(e) => fmt::Display::fmt(e, f),
            Error::Publish(e) => fmt::Display::fmt(e, f),
            Error::Subscriber(e) => fmt::Display::fmt(e, f),
            Error::Handlers { failed, first } => {
                write!(f, "{failed} handler(s) failed, first {first}")
            }
            Error::Spawn { message } => write!(f, "cannot start a thread: {message}"),
            Error::PublisherGone => {
                f.write_str("the bus's publishing thread ended without answering")
            }
            Error::MetricsEndpoint { address, .. } => {
                write!(f, "cannot serve metrics on {address}")
            }
            Error::InvalidConfig { message } => f.write_str(message),
            #[cfg(feature = "store")]
            Error::Store(e) => write!(f, "the event store: {e}"),
            #[cfg(feature = "tasks")]
            Error::Tasks(e) => write!(f, "the tasks: {e}"),
            #[cfg(feature = "outbox")]
            Error::Outbox(e) => write!(f, "the outbox: {e}"),
        }
    }
}

/// The wrapped errors are transparent: their message is this error's, so the source is
/// theirs (a chain does not print a message twice).
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Subscribe(e) => std::error::Error::source(e),
            Error::Amqp(e) => std::error::Error::source(e),
            Error::Publish(e) => std::error::Error::source(e),
            Error::Subscriber(e) => std::error::Error::source(e),
            Error::MetricsEndpoint { source, .. } => Some(source),
            #[cfg(feature = "store")]
            Error::Store(e) => std::error::Error::source(e),
            #[cfg(feature = "tasks")]
            Error::Tasks(e) => std::error::Error::source(e),
            #[cfg(feature = "outbox")]
            Error::Outbox(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<pubsub_amqp::Error> for Error {
    fn from(e: pubsub_amqp::Error) -> Self {
        Error::Amqp(e)
    }
}

impl From<pubsub_registry::Error> for Error {
    fn from(e: pubsub_registry::Error) -> Self {
        Error::Subscribe(e)
    }
}

impl From<pubsub_publisher::Error> for Error {
    fn from(e: pubsub_publisher::Error) -> Self {
        Error::Publish(e)
    }
}

#[cfg(feature = "store")]
impl From<pubsub_recorder::Error> for Error {
    fn from(e: pubsub_recorder::Error) -> Self {
        Error::Store(e)
    }
}

#[cfg(feature = "tasks")]
impl From<pubsub_tasks::Error> for Error {
    fn from(e: pubsub_tasks::Error) -> Self {
        Error::Tasks(e)
    }
}

#[cfg(feature = "outbox")]
impl From<pubsub_outbox::Error> for Error {
    /// The broker unreachable is the bus's [`Error::Amqp`], whichever part found out.
    fn from(e: pubsub_outbox::Error) -> Self {
        match e {
            pubsub_outbox::Error::Amqp(e) => Error::Amqp(e),
            e => Error::Outbox(e),
        }
    }
}

impl From<pubsub_subscriber::Error> for Error {
    fn from(e: pubsub_subscriber::Error) -> Self {
        Error::Subscriber(e)
    }
}

/// An event the bus did not publish, given back with the reason: nothing is lost silently.
///
/// Over the broker the event may still have reached a queue when the reason is a lost
/// confirm; publishing it again is safe for idempotent handlers. (The publisher crate's
/// `PublishError`, with this crate's [`Error`] as the reason.)
pub type PublishError = pubsub_publisher::PublishError<Error>;

/// The publisher's failure as the bus's.
pub(crate) fn from_publisher(e: pubsub_publisher::PublishError) -> PublishError {
    e.map_error(Error::Publish)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(e) = source {
            text = format!("{text}: {e}");
            source = e.source();
        }
        text
    }

    #[test]
    fn chains_print_each_message_once() {
        let lost = pubsub_amqp::Error::ConnectionLost {
            reason: "socket closed".to_owned(),
        };
        let cases = [
            (Error::Amqp(lost.clone()), lost.to_string()),
            (
                Error::Publish(pubsub_publisher::Error::Amqp(lost.clone())),
                lost.to_string(),
            ),
            (
                Error::InvalidServiceName {
                    name: "amq.x".to_owned(),
                    reason: "names starting with `amq.` are reserved by the broker",
                },
                "invalid service name \"amq.x\": names starting with `amq.` are reserved by the broker"
                    .to_owned(),
            ),
            (Error::Stopped, "the bus is stopped".to_owned()),
            (
                Error::MetricsEndpoint {
                    address: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
                    source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use"),
                },
                "cannot serve metrics on 127.0.0.1:9464: address in use".to_owned(),
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(chain(&error), expected);
            let event =
                pubsub_core::Event::new("sample", "created", pubsub_core::serde_json::json!({}))
                    .unwrap_or_else(|e| panic!("a valid event: {e}"));
            let failed = PublishError::new(event.clone(), error);
            assert_eq!(
                chain(&failed),
                format!("cannot publish {event}: {expected}")
            );
            assert_eq!(failed.into_event(), event);
        }
    }
}
