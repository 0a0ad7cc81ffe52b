//! [`Schema`]: a set of tables that creates and migrates itself, in both backends' SQL.
//!
//! The store's tables are one schema; a crate above keeps its own tables the same way (the
//! outbox and the inbox of `pubsub-outbox`), each with its own version table, so that each
//! set migrates on its own and a newer one is refused with a message that names it.

#[cfg(feature = "postgres")]
use postgres::Client;
use rusqlite::Connection;

use crate::error::{Error, Result};

/// A set of tables, by version: the SQL that takes version `n - 1` to `n` is the `n`-th entry
/// of [`sqlite`](Self::sqlite) and of [`postgres`](Self::postgres) (as many of each).
///
/// Migrating runs in one transaction: on SQLite an `IMMEDIATE` one, on PostgreSQL one that
/// first takes the advisory lock [`lock`](Self::lock), so that two processes opening a new
/// database do not create the tables twice.
///
/// ```
/// use pubsub_store::{Database, Schema};
///
/// const NOTES: Schema = Schema {
///     name: "notes",
///     version_table: "notes_schema",
///     sqlite: &["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"],
///     postgres: &["CREATE TABLE notes (id BIGSERIAL PRIMARY KEY, text TEXT NOT NULL);"],
///     lock: 0x6e6f_7465_7300_0001,
/// };
/// let mut connection = Database::sqlite_in_memory().open_sqlite()?;
/// NOTES.migrate_sqlite(&mut connection, "sqlite::memory:")?;
/// assert_eq!(NOTES.version(), 1);
/// # Ok::<(), pubsub_store::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// What the tables are, for messages (`store`, `outbox`).
    pub name: &'static str,
    /// The table that records the versions applied (a plain name).
    pub version_table: &'static str,
    /// SQLite's migrations, in order.
    pub sqlite: &'static [&'static str],
    /// PostgreSQL's migrations, in order.
    pub postgres: &'static [&'static str],
    /// The key of the PostgreSQL advisory lock migrations take.
    pub lock: i64,
}

impl Schema {
    /// The version this build creates and reads.
    pub fn version(&self) -> i64 {
        i64::try_from(self.sqlite.len()).unwrap_or(i64::MAX)
    }

    /// The versions to apply to a database at `found`: none when it is current.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaTooNew`] when `found` is newer than this build knows.
    pub fn migrations_from(&self, found: i64) -> Result<std::ops::RangeInclusive<i64>> {
        if found > self.version() {
            return Err(Error::SchemaTooNew {
                schema: self.name,
                found,
                known: self.version(),
            });
        }
        Ok(found + 1..=self.version())
    }

    fn doing(&self) -> String {
        format!("creating the {} schema", self.name)
    }

    /// Creates the tables on a SQLite connection, or migrates them to [`version`](Self::version).
    /// `database` names the database in the log line of each migration.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaTooNew`], or [`Error::Query`] when a statement fails (nothing of the
    /// migration is kept then).
    pub fn migrate_sqlite(&self, connection: &mut Connection, database: &str) -> Result<()> {
        let doing = self.doing();
        let fail = |e: rusqlite::Error| Error::query(doing.clone(), e);
        let tx = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let table = self.version_table;
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)"
        ))
        .map_err(fail)?;
        let found: i64 = tx
            .query_row(
                &format!("SELECT COALESCE(MAX(version), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )
            .map_err(fail)?;
        for version in self.migrations_from(found)? {
            let Some(sql) = self.step(self.sqlite, version) else {
                continue;
            };
            tx.execute_batch(sql).map_err(fail)?;
            tx.execute(
                &format!("INSERT INTO {table} (version) VALUES (?1)"),
                [version],
            )
            .map_err(fail)?;
            log::info!(
                "{} schema of {database} migrated to version {version}",
                self.name
            );
        }
        tx.commit().map_err(fail)
    }

    /// Creates the tables on a PostgreSQL connection (in its search path's first schema), or
    /// migrates them to [`version`](Self::version).
    ///
    /// # Errors
    ///
    /// As [`migrate_sqlite`](Self::migrate_sqlite).
    #[cfg(feature = "postgres")]
    pub fn migrate_postgres(&self, client: &mut Client, database: &str) -> Result<()> {
        let doing = self.doing();
        let fail = |e: postgres::Error| Error::query(doing.clone(), e);
        let mut tx = client.transaction().map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock])
            .map_err(fail)?;
        let table = self.version_table;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)"
        ))
        .map_err(fail)?;
        let found: i32 = tx
            .query_one(
                &format!("SELECT COALESCE(MAX(version), 0) FROM {table}"),
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(fail)?;
        for version in self.migrations_from(i64::from(found))? {
            let Some(sql) = self.step(self.postgres, version) else {
                continue;
            };
            tx.batch_execute(sql).map_err(fail)?;
            let v = i32::try_from(version).unwrap_or(i32::MAX);
            tx.execute(&format!("INSERT INTO {table} (version) VALUES ($1)"), &[&v])
                .map_err(fail)?;
            log::info!(
                "{} schema of {database} migrated to version {version}",
                self.name
            );
        }
        tx.commit().map_err(fail)
    }

    fn step(&self, steps: &'static [&'static str], version: i64) -> Option<&'static str> {
        usize::try_from(version - 1)
            .ok()
            .and_then(|i| steps.get(i))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: Schema = Schema {
        name: "test",
        version_table: "test_schema",
        sqlite: &[
            "CREATE TABLE t (id INTEGER PRIMARY KEY);",
            "ALTER TABLE t ADD COLUMN x TEXT;",
        ],
        postgres: &["", ""],
        lock: 1,
    };

    #[test]
    fn which_migrations_run() {
        assert_eq!(TWO.migrations_from(0).unwrap(), 1..=2);
        assert!(TWO.migrations_from(2).unwrap().is_empty());
        let e = TWO.migrations_from(3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the database's test schema is version 3, newer than this program knows (2): upgrade it"
        );
    }

    #[test]
    fn migrating_twice_changes_nothing_and_a_newer_schema_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        TWO.migrate_sqlite(&mut c, "mem").unwrap();
        TWO.migrate_sqlite(&mut c, "mem").unwrap();
        c.execute("INSERT INTO t (id, x) VALUES (1, 'a')", [])
            .unwrap();
        c.execute("INSERT INTO test_schema (version) VALUES (3)", [])
            .unwrap();
        assert!(matches!(
            TWO.migrate_sqlite(&mut c, "mem"),
            Err(Error::SchemaTooNew { found: 3, .. })
        ));
    }
}
