//! The error type of this crate.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when registering handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The pattern is not a valid routing-key pattern.
    InvalidPattern {
        /// The pattern as given (at most 80 characters of it, `...` after a cut).
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A handler of the same name is already subscribed with the same pattern.
    ///
    /// A retried event remembers which handlers already succeeded by name and pattern, so the
    /// pair must be unique.
    DuplicateSubscription {
        /// The pattern.
        pattern: String,
        /// The handler's name.
        handler: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidPattern { pattern, reason } => {
                write!(f, "invalid pattern {pattern:?}: {reason}")
            }
            Error::DuplicateSubscription { pattern, handler } => write!(
                f,
                "handler `{handler}` is already subscribed to {pattern:?}; give the second one another name"
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_message_repeats_its_source() {
        let every_variant = [
            Error::InvalidPattern {
                pattern: "order..created".to_owned(),
                reason: "empty word",
            },
            Error::DuplicateSubscription {
                pattern: "order.*".to_owned(),
                handler: "send-email".to_owned(),
            },
        ];
        for error in every_variant {
            let source = std::error::Error::source(&error).map(ToString::to_string);
            let repeated = source.filter(|source| error.to_string().contains(source.as_str()));
            assert_eq!(repeated, None, "`{error}` repeats its source");
        }
    }
}
