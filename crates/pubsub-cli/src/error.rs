//! The error type of this crate.

use std::fmt;
use std::io;

use pubsub_core::text;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The command line is wrong (a bad argument, URL, routing key, pattern or `--data`): exit
/// code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    /// A usage error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Why a command failed, worded for the operator; [`Error::exit_code`] tells the exit code.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line is wrong (exit code 2).
    Usage(UsageError),
    /// The broker could not be reached, refused something, or the connection failed. Its
    /// message is the transport error's.
    Amqp(pubsub_amqp::Error),
    /// The publisher refused an event (a negative confirm). Its message is the publisher's.
    Publisher(pubsub_publisher::Error),
    /// Publishing the event failed; the source says why.
    CannotPublish {
        /// The event (`order.created 7c9e... v1.0`).
        event: String,
        /// Why.
        source: Box<Error>,
    },
    /// The broker dropped a published event: no queue is bound for its routing key (with
    /// `publish --mandatory`).
    Unroutable {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// A queue does not exist.
    QueueNotFound {
        /// Its name.
        queue: String,
    },
    /// `dlq show`: no message has the event id.
    NoSuchMessage {
        /// The event id asked for.
        event_id: String,
        /// The dead-letter queue.
        dlq: String,
        /// How many messages were looked at.
        looked_at: u32,
    },
    /// `dlq replay` left something undone; each problem in words.
    ReplayIncomplete {
        /// What stayed, was missing or stopped the replay.
        problems: Vec<String>,
    },
    /// `dlq purge` was not confirmed.
    PurgeCancelled {
        /// Whether stdin gave no answer at all (not a terminal, nothing piped).
        no_answer: bool,
    },
    /// The broker cancelled the tail's consumer: its queue was deleted.
    TailCancelled {
        /// The tail's queue.
        queue: String,
    },
    /// Putting peeked messages back failed (the broker requeues them anyway when the
    /// connection closes).
    PutBack(pubsub_amqp::Error),
    /// The answer to a prompt could not be read.
    Answer(io::Error),
    /// A task could not be submitted. Its message is the task queue's.
    Tasks(pubsub_tasks::Error),
    /// `task status`: the task store has no task with this id.
    NoSuchTask {
        /// The id asked for.
        id: uuid::Uuid,
    },
    /// `task wait`: the task ended without completing (FAILED or CANCELLED).
    TaskNotCompleted {
        /// The task.
        id: uuid::Uuid,
        /// How it ended.
        outcome: String,
    },
    /// The event store failed (a database that is down, a URL it cannot use). Its message is
    /// the store's.
    Store(pubsub_store::Error),
    /// The event store's recorder or a replay failed (its subscriber or publisher). Its
    /// message is the recorder's.
    Recorder(pubsub_recorder::Error),
    /// Writing the output failed (e.g. a closed pipe, see [`Error::is_broken_pipe`]). Its
    /// message is the I/O error's.
    Io(io::Error),
}

impl Error {
    /// The exit code: 2 for a [`UsageError`], 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Whether this is a closed standard output (`pubsub tail | head -1`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            let io = match e.downcast_ref::<Error>() {
                Some(Error::Io(io) | Error::Answer(io)) => Some(io),
                _ => e.downcast_ref::<io::Error>(),
            };
            if io.is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) {
                return true;
            }
            cause = e.source();
        }
        false
    }

    /// A missing queue as [`Error::QueueNotFound`], any other transport error as it is.
    pub(crate) fn queue(error: pubsub_amqp::Error, queue: &str) -> Error {
        match error {
            pubsub_amqp::Error::NotFound { .. } => Error::QueueNotFound {
                queue: queue.to_owned(),
            },
            other => Error::Amqp(other),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) => fmt::Display::fmt(e, f),
            Error::Amqp(e) => fmt::Display::fmt(e, f),
            Error::Publisher(e) => fmt::Display::fmt(e, f),
            Error::CannotPublish { event, .. } => write!(f, "cannot publish {event}"),
            Error::Unroutable {
                exchange,
                routing_key,
            } => write!(
                f,
                "no queue is bound to exchange `{exchange}` for routing key `{routing_key}`: the broker dropped the event"
            ),
            Error::QueueNotFound { queue } => write!(f, "queue `{queue}` does not exist"),
            Error::NoSuchMessage {
                event_id,
                dlq,
                looked_at,
            } => write!(
                f,
                "no message with event id `{}` in `{dlq}` ({} looked at)",
                text::clip(event_id, 80),
                crate::format::plural(*looked_at, "message")
            ),
            Error::ReplayIncomplete { problems } => {
                write!(f, "replay incomplete: {}", problems.join("; "))
            }
            Error::PurgeCancelled { no_answer: true } => f.write_str(
                "purge cancelled: no answer on stdin (pass --yes to purge without asking)",
            ),
            Error::PurgeCancelled { no_answer: false } => {
                f.write_str("purge cancelled: nothing was deleted")
            }
            Error::TailCancelled { queue } => write!(
                f,
                "the broker cancelled the tail: queue `{queue}` was deleted"
            ),
            Error::PutBack(_) => {
                f.write_str("putting the messages back (the broker requeues them anyway)")
            }
            Error::Answer(_) => f.write_str("cannot read the answer"),
            Error::Tasks(e) => fmt::Display::fmt(e, f),
            Error::NoSuchTask { id } => write!(f, "no task `{id}` in the task store"),
            Error::TaskNotCompleted { id, outcome } => write!(f, "task {id} {outcome}"),
            Error::Io(e) => fmt::Display::fmt(e, f),
            Error::Store(e) => fmt::Display::fmt(e, f),
            Error::Recorder(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// Variants whose message is their inner error's are transparent: their source is the inner
/// error's own source, so that a chain prints each message once.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Amqp(e) => std::error::Error::source(e),
            Error::Publisher(e) => std::error::Error::source(e),
            Error::Io(e) => std::error::Error::source(e),
            Error::Tasks(e) => std::error::Error::source(e),
            Error::Store(e) => std::error::Error::source(e),
            Error::Recorder(e) => std::error::Error::source(e),
            Error::CannotPublish { source, .. } => Some(&**source),
            Error::PutBack(e) => Some(e),
            Error::Answer(e) => Some(e),
            Error::Usage(_)
            | Error::Unroutable { .. }
            | Error::QueueNotFound { .. }
            | Error::NoSuchMessage { .. }
            | Error::ReplayIncomplete { .. }
            | Error::PurgeCancelled { .. }
            | Error::TailCancelled { .. }
            | Error::NoSuchTask { .. }
            | Error::TaskNotCompleted { .. } => None,
        }
    }
}

impl From<UsageError> for Error {
    fn from(e: UsageError) -> Self {
        Error::Usage(e)
    }
}

impl From<pubsub_amqp::Error> for Error {
    fn from(e: pubsub_amqp::Error) -> Self {
        Error::Amqp(e)
    }
}

impl From<pubsub_publisher::Error> for Error {
    /// A transport error as [`Error::Amqp`], anything else as [`Error::Publisher`].
    fn from(e: pubsub_publisher::Error) -> Self {
        match e.as_amqp() {
            Some(amqp) => Error::Amqp(amqp.clone()),
            None => Error::Publisher(e),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<pubsub_store::Error> for Error {
    fn from(e: pubsub_store::Error) -> Self {
        match e {
            pubsub_store::Error::InvalidConfig { message } => {
                Error::Usage(UsageError::new(message))
            }
            other => Error::Store(other),
        }
    }
}

impl From<pubsub_recorder::Error> for Error {
    fn from(e: pubsub_recorder::Error) -> Self {
        match e {
            pubsub_recorder::Error::Store(e) => Error::from(e),
            pubsub_recorder::Error::InvalidConfig { message } => {
                Error::Usage(UsageError::new(message))
            }
            other => Error::Recorder(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(error: &Error) -> String {
        pubsub_core::text::error_chain(error)
    }

    #[test]
    fn chains_print_each_message_once() {
        let missing = || pubsub_amqp::Error::NotFound {
            kind: "exchange",
            name: "gone".to_owned(),
        };
        let check = |error: Error, expected: &str| assert_eq!(chain(&error), expected);
        check(Error::Amqp(missing()), "exchange `gone` does not exist");
        check(
            Error::CannotPublish {
                event: "a.b".to_owned(),
                source: Box::new(Error::from(pubsub_publisher::Error::Amqp(missing()))),
            },
            "cannot publish a.b: exchange `gone` does not exist",
        );
        check(
            Error::queue(missing(), "orders.dlq"),
            "queue `orders.dlq` does not exist",
        );
        check(
            Error::ReplayIncomplete {
                problems: vec![
                    "1 message stayed in `q`".to_owned(),
                    "interrupted".to_owned(),
                ],
            },
            "replay incomplete: 1 message stayed in `q`; interrupted",
        );
    }

    #[test]
    fn exit_codes_and_broken_pipes() {
        assert_eq!(Error::Usage(UsageError::new("bad")).exit_code(), 2);
        assert_eq!(Error::QueueNotFound { queue: "q".into() }.exit_code(), 1);
        let pipe = || io::Error::new(io::ErrorKind::BrokenPipe, "closed");
        assert!(Error::Io(pipe()).is_broken_pipe());
        assert!(Error::Answer(pipe()).is_broken_pipe());
        assert!(!Error::Io(io::Error::other("disk full")).is_broken_pipe());
        assert!(!Error::Usage(UsageError::new("bad")).is_broken_pipe());
    }
}
