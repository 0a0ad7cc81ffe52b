//! Connections to a [`Database`], configured as the stores' own: for the crates above that
//! keep tables of their own beside the store's (the outbox, the inbox), and for a service's
//! own tables in the same database.

use std::time::Duration;

use rusqlite::Connection;

use crate::database::{Database, Kind, SqliteTarget};
use crate::error::{Error, Result};

/// How long a SQLite statement on a connection of [`Database::open_sqlite`] waits for another
/// connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Database {
    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        !matches!(self.kind, Kind::Sqlite(_))
    }

    /// Whether this is a SQLite database in memory: each connection to it is a database of
    /// its own, gone when the connection closes.
    pub fn is_in_memory(&self) -> bool {
        matches!(self.kind, Kind::Sqlite(SqliteTarget::Memory))
    }

    /// Opens a SQLite connection configured as the store's: the file and its directory created
    /// if missing, the WAL journal (readers do not block the writer), `synchronous = FULL` (a
    /// commit is on disk when it returns), and a 10 s wait for another connection's write
    /// lock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when this is not SQLite; [`Error::Connect`] when the file
    /// cannot be opened or created.
    pub fn open_sqlite(&self) -> Result<Connection> {
        #[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
        let Kind::Sqlite(target) = &self.kind
        else {
            return Err(Error::InvalidConfig {
                message: format!("{self} is not a SQLite database"),
            });
        };
        let connect = |e: Box<dyn std::error::Error + Send + Sync>| Error::Connect {
            database: self.to_string(),
            source: e,
        };
        let connection = match target {
            SqliteTarget::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| connect(Box::new(e)))?;
                }
                Connection::open(path)
            }
            SqliteTarget::Memory => Connection::open_in_memory(),
        }
        .map_err(|e| connect(Box::new(e)))?;
        configure_sqlite(&connection, matches!(target, SqliteTarget::File(_)))
            .map_err(|e| connect(Box::new(e)))?;
        Ok(connection)
    }

    /// Connects to PostgreSQL, with the URL's `schema` (created if missing) first in the
    /// search path.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when this is not PostgreSQL; [`Error::Connect`] when it cannot
    /// be reached; [`Error::Query`] when the schema cannot be created or selected.
    #[cfg(feature = "postgres")]
    pub fn connect_postgres(&self) -> Result<postgres::Client> {
        let Kind::Postgres { config, schema } = &self.kind else {
            return Err(Error::InvalidConfig {
                message: format!("{self} is not a PostgreSQL database"),
            });
        };
        let mut client = config
            .connect(postgres::NoTls)
            .map_err(|e| Error::Connect {
                database: self.to_string(),
                source: Box::new(e),
            })?;
        select_schema(&mut client, schema.as_deref(), true)?;
        Ok(client)
    }
}

/// The store's settings of a SQLite connection (see [`Database::open_sqlite`]).
pub(crate) fn configure_sqlite(connection: &Connection, file: bool) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    if file {
        connection.pragma_update(None, "journal_mode", "WAL")?;
    }
    connection.pragma_update(None, "synchronous", "FULL")
}

/// Puts `schema` (a checked plain name) first in the search path, creating it if `create`.
#[cfg(feature = "postgres")]
pub(crate) fn select_schema(
    client: &mut postgres::Client,
    schema: Option<&str>,
    create: bool,
) -> Result<()> {
    let Some(schema) = schema else {
        return Ok(());
    };
    let create = if create {
        format!("CREATE SCHEMA IF NOT EXISTS {schema}; ")
    } else {
        String::new()
    };
    client
        .batch_execute(&format!("{create}SET search_path TO {schema}"))
        .map_err(|e| Error::query(format!("selecting schema {schema}"), e))
}
