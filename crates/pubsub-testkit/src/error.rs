//! The error type of this crate.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong administering the broker under test.
///
/// The fixtures ([`Bus`](crate::Bus)) panic instead: in a test, a broker that refuses a
/// declaration is a failed test.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CannotRun { program, reason } => write!(f, "cannot run {program}: {reason}"),
            Error::CommandFailed { command, stderr } => write!(f, "{command} failed: {stderr}"),
        }
    }
}

impl std::error::Error for Error {}

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
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
