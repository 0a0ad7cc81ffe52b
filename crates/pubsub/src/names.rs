//! Names: which service names make valid queue names, and the exchange from the environment.

use pubsub_core::text::truncate_chars;

use crate::error::{Error, Result};

/// The longest service name, in bytes: the queue's derived names (`<name>.retry.<delay>`)
/// must stay within AMQP's 255.
pub const MAX_SERVICE_NAME: usize = 200;

/// Checks that `name` can name the service's queue (and, with suffixes, its retry and
/// dead-letter queues) and be its `app_id`.
///
/// Valid: 1 to 200 bytes of ASCII letters, digits, `-`, `_`, `.` and `:`, not starting with
/// `amq.` (reserved by the broker) nor with `.`, and not ending with `.` or `.dlq`, nor
/// containing `.retry.` (those would collide with another service's dead-letter and retry
/// queues).
///
/// # Errors
///
/// [`Error::InvalidServiceName`] saying which rule the name breaks.
pub fn validate_service_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it must not be empty")
    } else if name.len() > MAX_SERVICE_NAME {
        Some("it is longer than 200 bytes (its retry queues need room)")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        Some("use ASCII letters, digits, `-`, `_`, `.` and `:` only")
    } else if name.starts_with("amq.") {
        Some("names starting with `amq.` are reserved by the broker")
    } else if name.starts_with('.') || name.ends_with('.') {
        Some("it must not start or end with `.`")
    } else if name.ends_with(".dlq") || name.contains(".retry.") {
        Some("`.dlq` at the end and `.retry.` are the names of a service's own dead-letter and retry queues")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidServiceName {
            name: truncate_chars(name, 80),
            reason,
        }),
        None => Ok(()),
    }
}

/// Checks an exchange name: 1 to 255 bytes.
///
/// # Errors
///
/// [`Error::InvalidExchange`].
pub(crate) fn validate_exchange(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(Error::InvalidExchange {
            name: truncate_chars(name, 80),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        let check = |name: &str, valid: bool| {
            assert_eq!(validate_service_name(name).is_ok(), valid, "{name:?}");
        };
        check("billing", true);
        check("order-service", true);
        check("team_a.billing:v2", true);
        check("B1", true);
        check(&"a".repeat(200), true);
        check("", false);
        check(&"a".repeat(201), false);
        check("my service", false);
        check("billing\n", false);
        check("façade", false);
        check("a/b", false);
        check("amq.billing", false);
        check(".billing", false);
        check("billing.", false);
        check("billing.dlq", false);
        check("billing.retry.1s", false);
    }

    #[test]
    fn service_name_errors_say_what_is_valid() {
        let error = validate_service_name("my service").unwrap_err().to_string();
        assert!(error.contains("ASCII letters"), "{error}");
        assert!(error.contains("\"my service\""), "{error}");
    }

    #[test]
    fn exchanges() {
        let check = |name: &str, valid: bool| {
            assert_eq!(validate_exchange(name).is_ok(), valid, "{name:?}");
        };
        check("events", true);
        check(&"x".repeat(255), true);
        check("", false);
        check(&"x".repeat(256), false);
    }
}
