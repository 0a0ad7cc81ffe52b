//! The error type of this crate, and the translation of amiquip's errors into it.
//!
//! amiquip's own errors can embed the whole connection URL, password included. They never
//! leave this crate: every one is translated here into an [`Error`] whose text is ours.

use std::fmt;
use std::time::Duration;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to RabbitMQ.
///
/// [`Error::is_connection_lost`] tells the errors a reconnect can fix from those it cannot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (or AMQP URL) is invalid.
    InvalidConfig {
        /// The setting at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A message could not be published as given (e.g. a property too long for AMQP).
    InvalidMessage {
        /// The property at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No TCP connection could be made: refused, unreachable, timed out, or the name does not
    /// resolve.
    Unreachable {
        /// `host:port`.
        address: String,
        /// The virtual host that was asked for.
        vhost: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last cause.
        cause: String,
    },
    /// The broker refused the username or password.
    AuthenticationFailed {
        /// `host:port`.
        address: String,
        /// The virtual host that was asked for.
        vhost: String,
        /// The username that was refused.
        username: String,
    },
    /// The virtual host does not exist, or the user may not access it.
    VhostNotAllowed {
        /// `host:port`.
        address: String,
        /// The virtual host.
        vhost: String,
        /// The user.
        username: String,
        /// What the broker said.
        message: String,
    },
    /// The TLS handshake or setup failed.
    Tls {
        /// `host:port`.
        address: String,
        /// What failed.
        message: String,
    },
    /// The connection is gone: closed by the broker, the network, missed heartbeats, or us.
    ConnectionLost {
        /// Why, as far as is known.
        reason: String,
    },
    /// The broker closed the channel because of an operation on it (an AMQP channel
    /// exception: 404 not found, 403 access refused, 405 resource locked, ...).
    ChannelClosed {
        /// The AMQP reply code.
        code: u16,
        /// The broker's message.
        message: String,
    },
    /// A queue or exchange already exists with other settings (PRECONDITION_FAILED).
    Inequivalent {
        /// `queue` or `exchange`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The argument or property that differs (e.g. `x-queue-type`, `durable`).
        argument: String,
        /// What the broker said.
        message: String,
    },
    /// A queue or exchange does not exist.
    NotFound {
        /// `queue` or `exchange`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The broker blocked the connection (a resource alarm) for longer than allowed.
    Blocked {
        /// The broker's reason, e.g. `low on memory`.
        reason: String,
        /// How long we waited.
        waited: Duration,
    },
    /// An operation did not complete in time.
    Timeout {
        /// What timed out.
        what: &'static str,
        /// After how long.
        after: Duration,
    },
    /// Another failure of the AMQP client.
    Client {
        /// What happened.
        message: String,
    },
}

impl Error {
    /// Whether the connection (or the channel) is gone for reasons a reconnect can fix: the
    /// broker restarted or closed the connection, the network failed, heartbeats were missed.
    ///
    /// False for errors that a new connection would meet again: bad configuration, wrong
    /// credentials, unknown vhost, inequivalent queue arguments, a missing exchange.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Error::ConnectionLost { .. } | Error::Unreachable { .. } | Error::Timeout { .. }
        )
    }

    /// Of an error an operation met and the error closing its connection returned, the one
    /// that says more: when amiquip's I/O thread dies, operations only learn that it is gone,
    /// while closing the connection returns why it died (socket closed, missed heartbeats).
    pub fn more_precise(error: Error, close_error: Option<Error>) -> Error {
        match (&error, close_error) {
            (Error::ConnectionLost { reason }, Some(close @ Error::ConnectionLost { .. }))
                if reason.starts_with(IO_THREAD_STOPPED) =>
            {
                close
            }
            _ => error,
        }
    }

    /// Whether retrying the same operation, even on a new connection, cannot succeed: the
    /// configuration, credentials, vhost or topology is wrong.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidConfig { .. }
                | Error::AuthenticationFailed { .. }
                | Error::VhostNotAllowed { .. }
                | Error::Tls { .. }
                | Error::Inequivalent { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { field, message } => {
                write!(f, "invalid AMQP configuration ({field}): {message}")
            }
            Error::InvalidMessage { field, message } => {
                write!(f, "invalid message ({field}): {message}")
            }
            Error::Unreachable {
                address,
                vhost,
                attempts,
                cause,
            } => write!(
                f,
                "cannot reach RabbitMQ at {address} (vhost {vhost:?}) after {attempts} attempt{}: {cause}",
                if *attempts == 1 { "" } else { "s" }
            ),
            Error::AuthenticationFailed {
                address,
                vhost,
                username,
            } => write!(
                f,
                "RabbitMQ at {address} (vhost {vhost:?}) refused the credentials of user {username:?}: check the username and password"
            ),
            Error::VhostNotAllowed {
                address,
                vhost,
                username,
                message,
            } => write!(
                f,
                "RabbitMQ at {address} refused access to vhost {vhost:?} for user {username:?}: the vhost does not exist or the user has no permission on it ({message})"
            ),
            Error::Tls { address, message } => {
                write!(f, "TLS with RabbitMQ at {address} failed: {message}")
            }
            Error::ConnectionLost { reason } => write!(f, "connection to RabbitMQ lost: {reason}"),
            Error::ChannelClosed { code, message } => {
                write!(f, "RabbitMQ closed the channel ({code}): {message}")
            }
            Error::Inequivalent {
                kind,
                name,
                argument,
                message,
            } => write!(
                f,
                "{kind} `{name}` exists with different arguments: {argument} ({message}); delete it or declare it with the same settings"
            ),
            Error::NotFound { kind, name } => write!(f, "{kind} `{name}` does not exist"),
            Error::Blocked { reason, waited } => write!(
                f,
                "RabbitMQ has blocked the connection ({reason}) for {:.1}s: a resource alarm is raised on the broker",
                waited.as_secs_f64()
            ),
            Error::Timeout { what, after } => {
                write!(f, "{what} timed out after {:.1}s", after.as_secs_f64())
            }
            Error::Client { message } => write!(f, "AMQP client error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The reason given when amiquip's I/O thread is gone and the cause is not known here.
pub(crate) const IO_THREAD_STOPPED: &str = "the connection's I/O thread has stopped";

/// What an operation was doing when amiquip failed, to word the error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    /// Declaring, binding, deleting or consuming from a queue.
    Queue(&'a str),
    /// Declaring, deleting or publishing to an exchange.
    Exchange(&'a str),
    /// Anything else.
    Other,
}

/// Translates an amiquip error. Never includes amiquip's text for the variants that embed a
/// URL.
pub(crate) fn from_amiquip(err: amiquip::Error, op: Op<'_>) -> Error {
    use amiquip::Error as A;
    match err {
        A::ServerClosedChannel { code, message, .. } => channel_error(code, message, op),
        A::ServerClosedConnection { code, message } => {
            // A channel-level fault escalated by the broker to the connection (e.g. 504) is
            // still a lost connection for the caller.
            Error::ConnectionLost {
                reason: format!("the broker closed the connection ({code}): {message}"),
            }
        }
        A::MissedServerHeartbeats => Error::ConnectionLost {
            reason: "missed heartbeats from the broker".to_owned(),
        },
        A::UnexpectedSocketClose => Error::ConnectionLost {
            reason: "the socket closed unexpectedly".to_owned(),
        },
        A::MalformedFrame => Error::ConnectionLost {
            reason: "the broker sent a frame the AMQP client cannot parse".to_owned(),
        },
        A::IoErrorReadingSocket { source } => Error::ConnectionLost {
            reason: format!("reading the socket failed: {source}"),
        },
        A::IoErrorWritingSocket { source } => Error::ConnectionLost {
            reason: format!("writing the socket failed: {source}"),
        },
        A::ClientClosedConnection => Error::ConnectionLost {
            reason: "the connection was closed by this client".to_owned(),
        },
        A::EventLoopDropped => Error::ConnectionLost {
            reason: IO_THREAD_STOPPED.to_owned(),
        },
        A::EventLoopClientDropped => Error::ConnectionLost {
            reason: format!(
                "{IO_THREAD_STOPPED}: it had a message for a channel or consumer already dropped"
            ),
        },
        A::IoThreadPanic => Error::ConnectionLost {
            reason: "the connection's I/O thread panicked".to_owned(),
        },
        A::ClientClosedChannel => Error::ChannelClosed {
            code: 0,
            message: "the channel was closed by this client".to_owned(),
        },
        A::ConnectionTimeout => Error::Timeout {
            what: "the AMQP handshake",
            after: Duration::ZERO,
        },
        // Variants that carry a URL: our own words only.
        A::UrlParseError { .. }
        | A::InsecureUrl { .. }
        | A::UrlNoSocketAddrs { .. }
        | A::ResolveUrlToSocketAddr { .. }
        | A::FailedToConnect { .. }
        | A::SpecifyUrlPort { .. }
        | A::InvalidUrlScheme { .. }
        | A::UrlMissingDomain { .. }
        | A::ExtraUrlPathSegments { .. }
        | A::UrlParseHeartbeat { .. }
        | A::UrlParseChannelMax { .. }
        | A::UrlParseConnectionTimeout { .. }
        | A::UrlInvalidAuthMechanism { .. }
        | A::UrlUnsupportedParameter { .. } => Error::Client {
            message: "URL handling failed inside the AMQP client".to_owned(),
        },
        other => Error::Client {
            message: other.to_string(),
        },
    }
}

/// Words a channel exception (a `ServerClosedChannel`) for the operation that caused it.
fn channel_error(code: u16, message: String, op: Op<'_>) -> Error {
    if code == 404 {
        // `NOT_FOUND - no exchange 'x' in vhost '/'`, `NOT_FOUND - no queue 'q' in vhost '/'`:
        // the broker names what is missing, whatever the operation was.
        for kind in ["exchange", "queue"] {
            if let Some(name) = quoted_after(&message, &format!("no {kind} '")) {
                return Error::NotFound { kind, name };
            }
        }
    }
    let (kind, name) = match op {
        Op::Queue(name) => ("queue", name),
        Op::Exchange(name) => ("exchange", name),
        Op::Other => return Error::ChannelClosed { code, message },
    };
    if code == 406 && message.contains("inequivalent arg") {
        return Error::Inequivalent {
            kind,
            name: name.to_owned(),
            argument: inequivalent_argument(&message),
            message,
        };
    }
    Error::ChannelClosed { code, message }
}

/// The text between `prefix` and the next `'` in `message`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split(prefix).nth(1)?;
    rest.split('\'').next().map(str::to_owned)
}

/// `PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' ...` -> `x-queue-type`.
fn inequivalent_argument(message: &str) -> String {
    quoted_after(message, "inequivalent arg '").unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precondition_failed_names_queue_and_argument() {
        let err = channel_error(
            406,
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'orders' in vhost '/': received none but current is the value 'quorum' of type 'longstr'".into(),
            Op::Queue("orders"),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("queue `orders` exists with different arguments: x-queue-type"),
            "{text}"
        );
        assert!(err.is_permanent());
    }

    #[test]
    fn not_found_names_the_exchange() {
        let err = channel_error(
            404,
            "NOT_FOUND - no exchange 'nope' in vhost '/'".into(),
            Op::Exchange("nope"),
        );
        assert_eq!(err.to_string(), "exchange `nope` does not exist");
    }

    #[test]
    fn not_found_names_what_the_broker_says_is_missing() {
        let err = channel_error(
            404,
            "NOT_FOUND - no exchange 'events' in vhost '/'".into(),
            Op::Queue("tail"),
        );
        assert!(matches!(&err, Error::NotFound { kind: "exchange", name } if name == "events"));
        let err = channel_error(
            404,
            "NOT_FOUND - no queue 'q' in vhost '/'".into(),
            Op::Other,
        );
        assert!(matches!(&err, Error::NotFound { kind: "queue", name } if name == "q"));
    }

    #[test]
    fn url_bearing_amiquip_errors_are_not_repeated() {
        let url = url::Url::parse("amqp://u:hunter2@h/").unwrap();
        let err = from_amiquip(amiquip::Error::InsecureUrl { url }, Op::Other);
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn no_message_repeats_its_source() {
        let (address, vhost, username) = ("h:5672".to_owned(), "/".to_owned(), "u".to_owned());
        let every_variant = [
            Error::InvalidConfig {
                field: "port",
                message: "not a number".to_owned(),
            },
            Error::InvalidMessage {
                field: "message_id",
                message: "longer than 255 bytes".to_owned(),
            },
            Error::Unreachable {
                address: address.clone(),
                vhost: vhost.clone(),
                attempts: 3,
                cause: "connection refused".to_owned(),
            },
            Error::AuthenticationFailed {
                address: address.clone(),
                vhost: vhost.clone(),
                username: username.clone(),
            },
            Error::VhostNotAllowed {
                address: address.clone(),
                vhost,
                username,
                message: "NOT_ALLOWED".to_owned(),
            },
            Error::Tls {
                address,
                message: "bad certificate".to_owned(),
            },
            Error::ConnectionLost {
                reason: IO_THREAD_STOPPED.to_owned(),
            },
            Error::ChannelClosed {
                code: 404,
                message: "NOT_FOUND".to_owned(),
            },
            Error::Inequivalent {
                kind: "queue",
                name: "orders".to_owned(),
                argument: "x-queue-type".to_owned(),
                message: "PRECONDITION_FAILED".to_owned(),
            },
            Error::NotFound {
                kind: "exchange",
                name: "events".to_owned(),
            },
            Error::Blocked {
                reason: "low on memory".to_owned(),
                waited: Duration::from_secs(1),
            },
            Error::Timeout {
                what: "closing the connection",
                after: Duration::from_secs(5),
            },
            Error::Client {
                message: "frame too large".to_owned(),
            },
        ];
        for error in every_variant {
            let source = std::error::Error::source(&error).map(ToString::to_string);
            let repeated = source.filter(|source| error.to_string().contains(source.as_str()));
            assert_eq!(repeated, None, "`{error}` repeats its source");
        }
    }

    #[test]
    fn lost_connection_is_recoverable_and_config_errors_are_not() {
        let lost = from_amiquip(amiquip::Error::MissedServerHeartbeats, Op::Other);
        assert!(lost.is_connection_lost());
        assert!(!lost.is_permanent());
        let auth = Error::AuthenticationFailed {
            address: "h:1".into(),
            vhost: "/".into(),
            username: "u".into(),
        };
        assert!(auth.is_permanent());
        assert!(!auth.is_connection_lost());
    }
}
