//! The error type of this crate.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a task was not submitted, or a worker could not be set up or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A task name that cannot name a task (see [`routing_key`](crate::routing_key)).
    InvalidTaskName {
        /// The name, truncated.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A payload that is not a JSON object (seed 003's payload is one).
    InvalidPayload {
        /// The JSON type it is.
        found: &'static str,
    },
    /// Two task functions registered under one name.
    DuplicateTask {
        /// The name.
        name: String,
    },
    /// Invalid worker settings (no task registered, an empty queue or exchange name).
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// The transport failed (unreachable broker, refused credentials, an exchange of another
    /// kind).
    Amqp(pubsub_amqp::Error),
    /// The broker did not confirm a submitted task, or no worker's queue is bound for its
    /// routing key.
    Publish(pubsub_publisher::Error),
    /// A worker could not start, or stopped on an error.
    Subscribe(pubsub_subscriber::Error),
    /// The task store failed.
    Store(pubsub_store::Error),
    /// A task scheduled for later ([`TaskQueue::submit_after`](crate::TaskQueue::submit_after))
    /// while the workers' queue it is to go to does not exist: when its delay ended, the
    /// broker would drop it.
    NoWorkerQueue {
        /// The workers' queue.
        queue: String,
    },
    /// A task waited for ([`TaskHandle::wait`](crate::TaskHandle::wait)) did not finish in
    /// time (it may still).
    Timeout {
        /// The task.
        task_id: uuid::Uuid,
        /// How long it was waited for.
        waited: std::time::Duration,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidTaskName { name, reason } => {
                write!(f, "invalid task name `{name}`: {reason}")
            }
            Error::InvalidPayload { found } => {
                write!(f, "a task's payload must be a JSON object, found {found}")
            }
            Error::DuplicateTask { name } => {
                write!(f, "task `{name}` is registered twice")
            }
            Error::InvalidConfig { message } => {
                write!(f, "invalid task worker settings: {message}")
            }
            Error::Amqp(_) => f.write_str("the broker connection failed"),
            Error::Publish(_) => f.write_str("submitting the task failed"),
            Error::Subscribe(_) => f.write_str("the task worker failed"),
            Error::Store(_) => f.write_str("the task store failed"),
            Error::NoWorkerQueue { queue } => write!(
                f,
                "no queue `{queue}` exists for the scheduled task to go to when its delay ends \
                 (the broker would drop it then): start a worker of that queue first"
            ),
            Error::Timeout { task_id, waited } => {
                write!(f, "task {task_id} did not finish within {waited:?}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Amqp(e) => Some(e),
            Error::Publish(e) => Some(e),
            Error::Subscribe(e) => Some(e),
            Error::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<pubsub_amqp::Error> for Error {
    fn from(e: pubsub_amqp::Error) -> Self {
        Error::Amqp(e)
    }
}

impl From<pubsub_publisher::Error> for Error {
    fn from(e: pubsub_publisher::Error) -> Self {
        Error::Publish(e)
    }
}

impl From<pubsub_subscriber::Error> for Error {
    fn from(e: pubsub_subscriber::Error) -> Self {
        Error::Subscribe(e)
    }
}

impl From<pubsub_store::Error> for Error {
    fn from(e: pubsub_store::Error) -> Self {
        Error::Store(e)
    }
}

/// `name` checked as a task name.
pub(crate) fn check_task_name(name: &str) -> Result<()> {
    match crate::names::invalid_task_name(name) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidTaskName {
            name: pubsub_core::text::truncate_chars(name, 60),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn messages_name_the_thing_and_do_not_repeat_their_source() {
        let amqp = pubsub_amqp::Error::ConnectionLost {
            reason: "socket closed".to_owned(),
        };
        let e = Error::Publish(pubsub_publisher::Error::Amqp(amqp));
        assert!(!e.to_string().contains("socket closed"), "{e}");
        assert!(pubsub_core::text::error_chain(&e).contains("socket closed"));
        let bad = check_task_name("pkg.module").unwrap_err();
        assert!(bad.to_string().contains("`pkg.module`"), "{bad}");
        assert!(bad.source().is_none());
        assert!(check_task_name("send-report").is_ok());
    }
}
