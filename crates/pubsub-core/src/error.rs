//! The error type of this crate.

use std::fmt;

use crate::text::quote;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when an [`Event`](crate::Event) is built, encoded or decoded.
///
/// Messages are lowercase, name the field or the problem, and quote offending values
/// truncated to a short prefix ([`text::quote`](crate::text::quote)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A field of an event was given a value it cannot hold.
    InvalidField {
        /// The field: `domain`, `action`, `data`, `version`, `event_id` or `timestamp`.
        field: &'static str,
        /// The offending value (truncated).
        value: String,
        /// Why the value was refused.
        reason: &'static str,
    },
    /// The body is not UTF-8.
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        valid_up_to: usize,
    },
    /// The body is not JSON: a syntax error, an early end, or nesting past serde_json's limit.
    InvalidJson {
        /// What the JSON parser reported, with line and column.
        message: String,
    },
    /// The body is JSON but not a JSON object.
    NotAnObject {
        /// The JSON type that was found instead (`array`, `string`, ...).
        found: &'static str,
    },
    /// A required field of the event body is absent (or `null`).
    MissingField {
        /// The missing field.
        field: &'static str,
    },
    /// A field of the event body, or of a typed event's data, has the wrong type or shape.
    WrongType {
        /// Path of the field, e.g. `domain` or `data.items[0].quantity`.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
    /// [`Event::decode`](crate::Event::decode) was asked for a type of another domain or action.
    SchemaMismatch {
        /// Routing key the typed event declares.
        expected: String,
        /// Routing key of the event.
        found: String,
    },
    /// [`Event::decode`](crate::Event::decode) met an event whose major version differs from
    /// the typed event's.
    VersionMismatch {
        /// Version the typed event declares.
        expected: String,
        /// Version of the event.
        found: String,
    },
    /// The routing key a message arrived with names another event than its body's `domain`
    /// and `action` (only `domain.action` and `domain.action.vN` agree).
    KeyMismatch {
        /// The routing key the message arrived with (quoted, truncated).
        routing_key: String,
        /// The body's `domain.action` (quoted, truncated).
        body: String,
    },
    /// A typed event's data could not be turned into JSON (e.g. a map with non-string keys).
    Encode {
        /// What serde_json reported.
        message: String,
    },
}

impl Error {
    pub(crate) fn invalid(field: &'static str, value: &str, reason: &'static str) -> Self {
        Error::InvalidField {
            field,
            value: quote(value),
            reason,
        }
    }

    /// Whether this error means the bytes received are not a valid event (as opposed to a
    /// programming error on the sending side, such as an invalid domain given to a builder).
    ///
    /// Every decode error is a malformed message: a subscriber dead-letters it at once.
    pub fn is_malformed_message(&self) -> bool {
        !matches!(self, Error::Encode { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidField {
                field,
                value,
                reason,
            } => write!(f, "invalid {field} {value:?}: {reason}"),
            Error::NotUtf8 { valid_up_to } => {
                write!(f, "event body is not UTF-8 (invalid byte at offset {valid_up_to})")
            }
            Error::InvalidJson { message } => write!(f, "event body is not valid JSON: {message}"),
            Error::NotAnObject { found } => {
                write!(f, "event body must be a JSON object, found {found}")
            }
            Error::MissingField { field } => write!(f, "missing field `{field}` in event body"),
            Error::WrongType { field, message } => write!(f, "invalid field `{field}`: {message}"),
            Error::SchemaMismatch { expected, found } => {
                write!(f, "event `{found}` cannot be decoded as `{expected}`")
            }
            Error::VersionMismatch { expected, found } => write!(
                f,
                "event version {found:?} is not compatible with version {expected:?} (major versions differ)"
            ),
            Error::KeyMismatch { routing_key, body } => write!(
                f,
                "routing key {routing_key:?} disagrees with the body's domain and action {body:?}"
            ),
            Error::Encode { message } => write!(f, "event data cannot be encoded as JSON: {message}"),
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
            Error::invalid("domain", "Order", "must be lowercase"),
            Error::NotUtf8 { valid_up_to: 3 },
            Error::InvalidJson {
                message: "EOF while parsing".to_owned(),
            },
            Error::NotAnObject { found: "an array" },
            Error::MissingField { field: "action" },
            Error::WrongType {
                field: "data.items[0]".to_owned(),
                message: "expected u32".to_owned(),
            },
            Error::SchemaMismatch {
                expected: "order.created".to_owned(),
                found: "order.paid".to_owned(),
            },
            Error::VersionMismatch {
                expected: "1.0".to_owned(),
                found: "2.0".to_owned(),
            },
            Error::KeyMismatch {
                routing_key: "order.paid".to_owned(),
                body: "order.created".to_owned(),
            },
            Error::Encode {
                message: "key must be a string".to_owned(),
            },
        ];
        for error in every_variant {
            let source = std::error::Error::source(&error).map(ToString::to_string);
            let repeated = source.filter(|source| error.to_string().contains(source.as_str()));
            assert_eq!(repeated, None, "`{error}` repeats its source");
        }
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
