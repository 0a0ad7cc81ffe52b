//! The error type of this crate.

use std::fmt;
use std::io;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong administering the broker under test (`rabbitmqctl`) or talking raw AMQP
/// to it ([`RawPublisher`](crate::raw::RawPublisher)).
///
/// The fixtures ([`Bus`](crate::Bus)) panic instead: in a test, a broker that refuses a
/// declaration is a failed test.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A program could not be started (not installed, or not on `PATH`).
    CannotRun {
        /// The program.
        program: &'static str,
        /// What the operating system said.
        reason: String,
    },
    /// A `rabbitmqctl` command ran and failed.
    CommandFailed {
        /// The command and its arguments (passwords replaced by `***`).
        command: String,
        /// What the command wrote to its standard error.
        stderr: String,
    },
    /// The raw publisher's socket failed (or timed out) reading or writing.
    Io {
        /// What the publisher was doing.
        doing: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The broker sent something the raw publisher does not expect, or a frame it cannot
    /// read.
    Protocol(String),
    /// The broker closed the raw publisher's connection or channel (e.g. 403 access refused,
    /// 406 precondition failed, 505 unexpected frame).
    Closed {
        /// `connection` or `channel`.
        scope: &'static str,
        /// The AMQP reply code.
        code: u16,
        /// The broker's reply text (lossily decoded).
        text: String,
    },
    /// The broker refused a raw message (`basic.nack`).
    Nacked {
        /// The publish sequence number that was refused.
        delivery_tag: u64,
    },
    /// A value does not fit where the raw publisher puts it (a short string over 255 bytes).
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The configuration asks for something the raw publisher cannot do (TLS).
    Unsupported(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CannotRun { program, reason } => write!(f, "cannot run {program}: {reason}"),
            Error::CommandFailed { command, stderr } => write!(f, "{command} failed: {stderr}"),
            Error::Io { doing, .. } => write!(f, "i/o error while {doing}"),
            Error::Protocol(what) => write!(f, "protocol error: {what}"),
            Error::Closed { scope, code, text } => {
                write!(f, "the broker closed the {scope}: {code} {text}")
            }
            Error::Nacked { delivery_tag } => {
                write!(f, "the broker refused message {delivery_tag} (basic.nack)")
            }
            Error::TooLong { field, len } => {
                write!(f, "{field} is {len} bytes long; a short string holds 255")
            }
            Error::Unsupported(what) => write!(f, "the raw publisher does not support {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let check = |error: Error, expected: &str| assert_eq!(error.to_string(), expected);
        check(
            Error::CannotRun {
                program: "rabbitmqctl",
                reason: "No such file or directory (os error 2)".to_owned(),
            },
            "cannot run rabbitmqctl: No such file or directory (os error 2)",
        );
        check(
            Error::CommandFailed {
                command: "rabbitmqctl -q stop_app".to_owned(),
                stderr: "Error: unable to perform an operation".to_owned(),
            },
            "rabbitmqctl -q stop_app failed: Error: unable to perform an operation",
        );
        check(
            Error::Closed {
                scope: "channel",
                code: 406,
                text: "PRECONDITION_FAILED".to_owned(),
            },
            "the broker closed the channel: 406 PRECONDITION_FAILED",
        );
        check(
            Error::Nacked { delivery_tag: 3 },
            "the broker refused message 3 (basic.nack)",
        );
        check(
            Error::TooLong {
                field: "message_id",
                len: 300,
            },
            "message_id is 300 bytes long; a short string holds 255",
        );
        check(
            Error::Unsupported("TLS (amqps)"),
            "the raw publisher does not support TLS (amqps)",
        );
    }

    #[test]
    fn an_io_error_is_the_source_not_part_of_the_message() {
        let error = Error::Io {
            doing: "reading a frame",
            source: io::Error::new(io::ErrorKind::TimedOut, "timed out"),
        };
        assert_eq!(error.to_string(), "i/o error while reading a frame");
        let source = std::error::Error::source(&error).expect("the i/o error is the source");
        assert_eq!(source.to_string(), "timed out");
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
