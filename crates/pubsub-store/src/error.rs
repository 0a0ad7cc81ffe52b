//! The error type of this crate.

use std::fmt;

use crate::fault::Fault;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The boxed error of a database driver, kept as the source of an [`Error`].
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with a store.
///
/// The `Display` of a variant says what the store was doing and where; the driver's own
/// error (SQLite's, PostgreSQL's) is its [`source`](std::error::Error::source), so an error
/// chain prints each cause once.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The database URL or a store setting is invalid.
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// The database could not be reached or opened (down, wrong host, no such file or
    /// directory, refused credentials).
    Connect {
        /// The database, without its password.
        database: String,
        /// The driver's error.
        source: DriverError,
    },
    /// A statement failed, or the connection broke while it ran.
    Query {
        /// What the store was doing (`storing 50 events`, `reading task ...`).
        doing: String,
        /// The driver's error.
        source: DriverError,
    },
    /// A set of tables in the database (the store's, the outbox's) is of a newer schema than
    /// this program knows.
    SchemaTooNew {
        /// Which tables (`store`, `outbox`).
        schema: &'static str,
        /// The schema version found.
        found: i64,
        /// The newest this version knows.
        known: i64,
    },
    /// A stored row cannot be read back (written by another program, or edited by hand).
    CorruptRow {
        /// The row's key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The database holds no store, and it was opened to be read
    /// ([`EventStore::open_existing`](crate::EventStore::open_existing)): nothing was
    /// created.
    NoStore {
        /// The database, without its password.
        database: String,
        /// What is missing (the file, the tables).
        missing: String,
    },
    /// A task that is not in the store.
    UnknownTask {
        /// Its id.
        task_id: uuid::Uuid,
    },
    /// A task that cannot be cancelled any more: it runs, or ran.
    NotCancellable {
        /// Its id.
        task_id: uuid::Uuid,
        /// Where it is: its stored status (`RUNNING`, `COMPLETED`, `FAILED`).
        status: &'static str,
    },
}

impl Error {
    /// Whether the database itself is unreachable or the connection broke: reopening it later
    /// may succeed.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            #[cfg(feature = "postgres")]
            Error::Query { source, .. } => source
                .downcast_ref::<postgres::Error>()
                .is_some_and(|pg| pg.is_closed() || pg.code().is_none()),
            _ => false,
        }
    }

    /// Whether trying again later may succeed ([`Fault::Outage`]: the database is down,
    /// busy, full) or never will ([`Fault::Refused`]: it refuses the data), from the
    /// database's error code; see [`Fault`] for which codes count as what. Errors that are not
    /// a statement's (a URL, a schema too new, a corrupt row) count as outages.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Query { source, .. } => {
                #[cfg(feature = "postgres")]
                if let Some(pg) = source.downcast_ref::<postgres::Error>() {
                    return Fault::of_postgres(pg);
                }
                match source.downcast_ref::<rusqlite::Error>() {
                    Some(sqlite) => Fault::of_rusqlite(sqlite),
                    None => Fault::Outage,
                }
            }
            _ => Fault::Outage,
        }
    }

    pub(crate) fn query(doing: impl Into<String>, source: impl Into<DriverError>) -> Error {
        Error::Query {
            doing: doing.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { message } => write!(f, "invalid store settings: {message}"),
            Error::Connect { database, .. } => write!(f, "cannot open the database {database}"),
            Error::Query { doing, .. } => write!(f, "database error while {doing}"),
            Error::SchemaTooNew {
                schema,
                found,
                known,
            } => write!(
                f,
                "the database's {schema} schema is version {found}, newer than this program knows ({known}): upgrade it"
            ),
            Error::CorruptRow { key, message } => write!(f, "stored row {key} is unreadable: {message}"),
            Error::NoStore { database, missing } => write!(
                f,
                "{database} holds no store ({missing}): check --database / DATABASE_URL, or start a store there first"
            ),
            Error::UnknownTask { task_id } => write!(f, "no task {task_id} in the store"),
            Error::NotCancellable { task_id, status } => write!(
                f,
                "task {task_id} is {status}: only a task that has not started can be cancelled"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Query { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::text::error_chain;

    use super::*;

    #[test]
    fn no_cause_is_printed_twice() {
        let e = Error::query("storing 2 events", "disk I/O error");
        assert_eq!(
            error_chain(&e),
            "database error while storing 2 events: disk I/O error"
        );
        let e = Error::Connect {
            database: "postgres://app@db:5432/events".into(),
            source: "connection refused".into(),
        };
        assert_eq!(
            error_chain(&e),
            "cannot open the database postgres://app@db:5432/events: connection refused"
        );
        assert!(e.is_connection());
        let e = Error::UnknownTask {
            task_id: uuid::Uuid::nil(),
        };
        assert_eq!(error_chain(&e), e.to_string());
    }
}
