//! The error type of this crate.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a subscriber could not start, or stopped; or a header of the contract that could not
/// be read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed in a way reconnecting cannot fix (wrong credentials, unknown
    /// vhost, a queue declared with other arguments), or reconnecting took longer than the
    /// reconnect policy allows.
    ///
    /// Transparent: its `Display` is the transport error's, and `source()` is the transport
    /// error's own source, so an error chain prints each cause once.
    Amqp(pubsub_amqp::Error),
    /// The subscriber's settings are invalid.
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// The operating system refused to start the subscriber's thread.
    Spawn {
        /// The operating system's error, as text (`std::io::Error` is not `Clone`).
        message: String,
    },
    /// A header of the retry and dead-letter contract (see [`headers`](crate::headers)) holds
    /// a value this version cannot read.
    InvalidHeader {
        /// The header.
        name: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// The consumer thread panicked (a bug in this crate: handler panics are caught).
    Panicked,
    /// The subscriber's [`Sink`](crate::Sink) failed, and reconnecting took longer than the
    /// reconnect policy allows.
    Sink {
        /// The sink's error and its causes, as text (a boxed error is not `Clone`).
        message: String,
    },
    /// The database work handlers left open for the group commit (see
    /// [`pubsub_core::group_commit`]) failed to commit, and reconnecting took longer than the
    /// reconnect policy allows.
    Commit {
        /// The database's error and its causes, as text.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Amqp(e) => fmt::Display::fmt(e, f),
            Error::InvalidConfig { message } => write!(f, "invalid subscriber settings: {message}"),
            Error::Spawn { message } => {
                write!(f, "cannot start the subscriber thread: {message}")
            }
            Error::InvalidHeader { name, message } => write!(f, "header `{name}`: {message}"),
            Error::Panicked => f.write_str("the subscriber thread panicked"),
            Error::Sink { message } => write!(f, "the subscriber's sink failed: {message}"),
            Error::Commit { message } => {
                write!(
                    f,
                    "the handlers' open transactions failed to commit: {message}"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the transport error is shown by Display, so the chain goes on
            // from its own source.
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

/// `error` and its sources, joined with `: `, for logs.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    pubsub_core::text::error_chain(error)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn no_cause_is_printed_twice() {
        let amqp = Error::Amqp(pubsub_amqp::Error::ConnectionLost {
            reason: "socket closed".to_owned(),
        });
        // Display is the transport's; the chain does not repeat it.
        assert_eq!(chain(&amqp), amqp.to_string());
        assert!(amqp.to_string().contains("socket closed"), "{amqp}");
        for e in [
            Error::InvalidConfig {
                message: "m".into(),
            },
            Error::Spawn {
                message: "Resource temporarily unavailable".into(),
            },
            Error::InvalidHeader {
                name: "x",
                message: "m".into(),
            },
            Error::Panicked,
            Error::Sink {
                message: "the database is down".into(),
            },
            Error::Commit {
                message: "the database is down".into(),
            },
        ] {
            assert!(e.source().is_none(), "{e}");
            assert_eq!(chain(&e), e.to_string());
        }
    }
}
