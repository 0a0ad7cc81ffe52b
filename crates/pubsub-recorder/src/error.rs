//! The error type of this crate.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with the recorder or a replay.
///
/// The store's, the publisher's and the subscriber's errors are kept whole: the `Display` of
/// each is theirs, and the chain goes on from their own source.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A replay or recorder setting is invalid (a rate that is not a positive number).
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// The event store failed (a database that is down, a query that failed).
    Store(pubsub_store::Error),
    /// Publishing a replay failed.
    Publish(pubsub_publisher::Error),
    /// The recorder's subscriber failed (invalid options, declaring its topology).
    Subscribe(pubsub_subscriber::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { message } => write!(f, "invalid replay settings: {message}"),
            Error::Store(e) => fmt::Display::fmt(e, f),
            Error::Publish(e) => fmt::Display::fmt(e, f),
            Error::Subscribe(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: shown by Display, the chain goes on from their own source.
            Error::Store(e) => std::error::Error::source(e),
            Error::Publish(e) => std::error::Error::source(e),
            Error::Subscribe(e) => std::error::Error::source(e),
            Error::InvalidConfig { .. } => None,
        }
    }
}

impl From<pubsub_store::Error> for Error {
    fn from(e: pubsub_store::Error) -> Self {
        Error::Store(e)
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

/// A connection the recorder's worker pool could not open: the subscriber's error, as a
/// subscriber that cannot connect reports it.
impl From<pubsub_amqp::Error> for Error {
    fn from(e: pubsub_amqp::Error) -> Self {
        Error::Subscribe(pubsub_subscriber::Error::Amqp(e))
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::text::error_chain;

    use super::*;

    #[test]
    fn no_cause_is_printed_twice() {
        let e = Error::from(pubsub_store::Error::InvalidConfig {
            message: "no path".into(),
        });
        assert_eq!(error_chain(&e), "invalid store settings: no path");
        let e = Error::InvalidConfig {
            message: "the replay rate must be positive".into(),
        };
        assert_eq!(
            error_chain(&e),
            "invalid replay settings: the replay rate must be positive"
        );
    }
}
