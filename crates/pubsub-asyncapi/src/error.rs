//! The error type of this crate.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can keep a document from being made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A subscription pattern is not a valid routing-key pattern.
    Pattern(pubsub_registry::Error),
    /// A typed event is declared received, but no subscription of the service matches its
    /// routing key: the document would promise what the service never consumes.
    NotSubscribed {
        /// The name of the event's schema.
        name: String,
        /// Its routing key.
        key: String,
    },
    /// A routing key declared published is not one an event has.
    InvalidRoutingKey {
        /// The key as given (at most 80 characters of it, `...` after a cut).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A server's name or host will not do.
    InvalidServer {
        /// The server's name (at most 80 characters of it, `...` after a cut).
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The service name or the exchange name is empty.
    EmptyName {
        /// `service` or `exchange`.
        field: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Pattern(_) => f.write_str("invalid subscription pattern"),
            Error::NotSubscribed { name, key } => write!(
                f,
                "`{name}` (`{key}`) is declared received, but no subscription of the service matches `{key}`"
            ),
            Error::InvalidRoutingKey { key, reason } => {
                write!(f, "invalid routing key `{key}`: {reason}")
            }
            Error::InvalidServer { name, reason } => write!(f, "invalid server `{name}`: {reason}"),
            Error::EmptyName { field } => write!(f, "the {field} name must not be empty"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Pattern(e) => Some(e),
            _ => None,
        }
    }
}

impl From<pubsub_registry::Error> for Error {
    fn from(e: pubsub_registry::Error) -> Self {
        Error::Pattern(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_offending_thing() {
        let check = |error: Error, expected: &str| {
            assert_eq!(pubsub_core::text::error_chain(&error), expected);
        };
        check(
            pubsub_registry::Pattern::parse("a..b").unwrap_err().into(),
            "invalid subscription pattern: invalid pattern \"a..b\": empty word: a pattern must not start or end with '.' nor contain '..'",
        );
        check(
            Error::NotSubscribed { name: "Placed".into(), key: "shop.placed".into() },
            "`Placed` (`shop.placed`) is declared received, but no subscription of the service matches `shop.placed`",
        );
        check(
            Error::EmptyName { field: "exchange" },
            "the exchange name must not be empty",
        );
    }

    #[test]
    fn errors_cross_threads() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
