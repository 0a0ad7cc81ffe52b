//! The error type of this crate.

use std::fmt;

use uuid::Uuid;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with an outbox, its relay or an inbox.
///
/// The `Display` of a variant says what was being done; the cause (the database's, the
/// broker's) is its [`source`](std::error::Error::source), so an error chain prints each once.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid (a database the relay cannot share, a zero batch).
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// The database could not be opened, or its outbox tables created or migrated (down,
    /// refused credentials, a schema newer than this program knows).
    Store(pubsub_store::Error),
    /// An event could not be staged in the caller's transaction: roll it back.
    Stage {
        /// The event's id.
        event_id: Uuid,
        /// The database's error.
        source: pubsub_store::DriverError,
    },
    /// The transaction's database has no outbox tables: the outbox was opened on another
    /// database, or not at all.
    NoOutbox {
        /// The database's error.
        source: pubsub_store::DriverError,
    },
    /// Committing the caller's transaction failed: nothing of it is kept.
    Commit {
        /// The database's error.
        source: pubsub_store::DriverError,
    },
    /// An inbox batch held a copy of an event handled before, not marked as delivered again
    /// (a publisher's duplicate): its transaction is rolled back, and nothing of the batch
    /// is acked. The broker delivers the batch again, marked, and each delivery is then
    /// checked before its handler runs.
    Duplicate {
        /// The database's unique violation.
        source: pubsub_store::DriverError,
    },
    /// An inbox handler succeeded on an event, then failed on it when its batch ran again
    /// (after another delivery's failure): the batch's transaction is rolled back, and
    /// nothing of the batch is acked.
    Rerun {
        /// The handler's name.
        consumer: String,
        /// The event's id.
        event_id: Uuid,
        /// The handler's error the second time.
        source: pubsub_core::HandlerError,
    },
    /// The relay could not connect to the broker.
    Amqp(pubsub_amqp::Error),
    /// The relay could not set up its publisher (the exchange refused).
    Publisher(pubsub_publisher::Error),
    /// The relay's thread could not be spawned.
    Spawn(std::io::Error),
    /// The relay's thread panicked.
    Panicked,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { message } => write!(f, "invalid outbox settings: {message}"),
            Error::Store(_) => f.write_str("the outbox's database failed"),
            Error::Stage { event_id, .. } => {
                write!(f, "event {event_id} could not be staged in the outbox")
            }
            Error::NoOutbox { .. } => f.write_str(
                "the transaction's database has no outbox tables: open the outbox \
                 (`Outbox::open`) on the database the transaction writes to",
            ),
            Error::Commit { .. } => f.write_str("the transaction could not be committed"),
            Error::Duplicate { .. } => f.write_str(
                "an event of the inbox's batch was handled before, and its copy was not marked \
                 as delivered again: the batch is rolled back, and comes back from the broker",
            ),
            Error::Rerun {
                consumer, event_id, ..
            } => write!(
                f,
                "`{consumer}` handled event {event_id}, then failed on it when its batch ran \
                 again: the batch is rolled back, and comes back from the broker"
            ),
            Error::Amqp(_) | Error::Publisher(_) => f.write_str("the outbox relay cannot publish"),
            Error::Spawn(_) => f.write_str("the outbox relay's thread could not be spawned"),
            Error::Panicked => f.write_str("the outbox relay's thread panicked"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            Error::Stage { source, .. }
            | Error::NoOutbox { source }
            | Error::Commit { source }
            | Error::Duplicate { source }
            | Error::Rerun { source, .. } => Some(source.as_ref()),
            Error::Amqp(e) => Some(e),
            Error::Publisher(e) => Some(e),
            Error::Spawn(e) => Some(e),
            Error::InvalidConfig { .. } | Error::Panicked => None,
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
        Error::Publisher(e)
    }
}

impl From<pubsub_amqp::Error> for Error {
    fn from(e: pubsub_amqp::Error) -> Self {
        Error::Amqp(e)
    }
}

/// Refuses a database that each connection sees as another (SQLite in memory).
pub(crate) fn shareable(database: &pubsub_store::Database) -> Result<()> {
    if database.is_in_memory() {
        return Err(Error::InvalidConfig {
            message: format!(
                "{database} is a new database for each connection: the outbox and the inbox \
                 need one every connection shares (a SQLite file, or PostgreSQL)"
            ),
        });
    }
    Ok(())
}

pub(crate) fn query_error(doing: &str, e: impl Into<pubsub_store::DriverError>) -> Error {
    Error::Store(pubsub_store::Error::Query {
        doing: doing.to_owned(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use pubsub_core::text::error_chain;

    use super::*;

    #[test]
    fn no_cause_is_printed_twice() {
        let e = Error::Stage {
            event_id: Uuid::nil(),
            source: "disk I/O error".into(),
        };
        assert_eq!(
            error_chain(&e),
            "event 00000000-0000-0000-0000-000000000000 could not be staged in the outbox: disk I/O error"
        );
        let e = Error::Store(pubsub_store::Error::InvalidConfig {
            message: "x".into(),
        });
        assert_eq!(
            error_chain(&e),
            "the outbox's database failed: invalid store settings: x"
        );
    }
}
