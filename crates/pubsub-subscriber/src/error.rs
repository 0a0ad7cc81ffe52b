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
    Amqp(pubsub_amqp::Error),
    /// The subscriber's settings are invalid.
    InvalidConfig {
        /// What is wrong.
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Amqp(e) => fmt::Display::fmt(e, f),
            Error::InvalidConfig { message } => write!(f, "invalid subscriber settings: {message}"),
            Error::InvalidHeader { name, message } => write!(f, "header `{name}`: {message}"),
            Error::Panicked => f.write_str("the subscriber thread panicked"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Amqp(e) => Some(e),
            _ => None,
        }
    }
}

impl From<pubsub_amqp::Error> for Error {
    fn from(e: pubsub_amqp::Error) -> Self {
        Error::Amqp(e)
    }
}
