//! The inbox: a handler form that gets a database transaction. The handler's writes and the
//! record "consumer C handled event E" commit together, and only then is the delivery acked:
//! a redelivery of an event whose transaction committed is acked without running the handler
//! again.
//!
//! **Group commit.** Each delivery runs in a savepoint of a transaction its worker keeps open
//! ([`pubsub_core::group_commit`]): a handler's error rolls back its own writes and record
//! only, and the worker commits the batch's transaction once, before its `multiple` ack. A
//! failed commit acks nothing: the batch comes back and runs again, and the records absorb
//! what had committed. Where no worker keeps a transaction open (the handler called directly,
//! or on an async bus's executor), each delivery commits its own before the handler returns.
//! Every inbox handler on one database shares the worker's transaction. On PostgreSQL a first
//! delivery in a worker's batch runs without its savepoint, and the batch's records are written
//! together at its commit (see [`PostgresInbox`]).
//!
//! ```no_run
//! use pubsub_core::{Event, Metadata};
//! use pubsub_outbox::SqliteInbox;
//! use pubsub_registry::HandlerRegistry;
//! use pubsub_store::Database;
//!
//! let database = Database::parse("sqlite:app.db")?;
//! let reserve = SqliteInbox::new(&database, "reserve-stock", |event: &Event, _: &Metadata, tx: &mut rusqlite::Savepoint<'_>| {
//!     let order_id = event.data().get("order_id").and_then(|v| v.as_str()).unwrap_or_default();
//!     tx.execute("INSERT INTO reservations (order_id) VALUES (?1)", [order_id])?;
//!     Ok(())
//! })?;
//! let mut registry = HandlerRegistry::new();
//! registry.subscribe("order.created", reserve)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The consumer name is the handler's name: keep it stable across deployments, as the
//! records are kept under it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pubsub_core::group_commit::{self, OpenWork, WorkError};
use pubsub_core::{Event, EventHandler, HandlerError, HandlerResult, Metadata};
use pubsub_store::Database;
use uuid::Uuid;

use crate::error::Result;
use crate::error::{query_error, shareable};

/// What the inbox found for a delivery (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// First time: run the handler in the transaction.
    Run,
    /// The event's transaction committed before: ack without running.
    Handled,
}

/// The verdict of the inbox's insert: one row inserted means the event is new to this
/// consumer.
fn verdict(inserted: u64) -> Verdict {
    if inserted == 1 {
        Verdict::Run
    } else {
        Verdict::Handled
    }
}

/// A connection the inbox can open a transaction on, commit and roll back.
trait Conn: Send + 'static {
    fn begin(&mut self) -> std::result::Result<(), crate::Error>;
    fn commit(&mut self) -> std::result::Result<(), crate::Error>;
    fn rollback(&mut self) -> std::result::Result<(), crate::Error>;
}

impl Conn for rusqlite::Connection {
    fn begin(&mut self) -> std::result::Result<(), crate::Error> {
        // IMMEDIATE: the write lock from the start, so that concurrent workers wait for it
        // instead of failing.
        self.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| query_error("opening the inbox's transaction", e))
    }
    fn commit(&mut self) -> std::result::Result<(), crate::Error> {
        self.execute_batch("COMMIT")
            .map_err(|e| query_error("committing the inbox's transaction", e))
    }
    fn rollback(&mut self) -> std::result::Result<(), crate::Error> {
        self.execute_batch("ROLLBACK")
            .map_err(|e| query_error("rolling back the inbox's transaction", e))
    }
}

/// Connections a handler reuses across deliveries (one per worker at most in use at once).
struct Connections<C> {
    consumer: Arc<str>,
    database: Database,
    /// The group commit's key of the database: one transaction per database and thread,
    /// shared by every inbox handler on it (on SQLite, a second one would wait for the
    /// first's write lock on the same thread, for ever).
    key: String,
    idle: Mutex<Vec<C>>,
}

impl<C: Conn> Connections<C> {
    fn new(database: &Database, consumer: &str) -> Result<Arc<Connections<C>>> {
        shareable(database)?;
        crate::schema::prepare(database)?;
        Ok(Arc::new(Connections {
            consumer: Arc::from(consumer),
            database: database.clone(),
            key: format!("pubsub-inbox {database}"),
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// A connection, in a new transaction.
    fn begin(
        self: &Arc<Self>,
        open: impl FnOnce(&Database) -> pubsub_store::Result<C>,
    ) -> Result<Open<C>> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut connection = match idle {
            Some(c) => c,
            None => open(&self.database)?,
        };
        connection.begin()?;
        Ok(Open {
            connection: Some(connection),
            home: Arc::clone(self),
        })
    }

    fn give_back(&self, c: C) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(c);
        }
    }
}

/// A connection in a transaction: left open on the consumer's thread for the group commit
/// (see [`pubsub_core::group_commit`]), or committed at once where there is none. Dropped
/// without a commit, it rolls back.
struct Open<C: Conn> {
    connection: Option<C>,
    home: Arc<Connections<C>>,
}

impl<C: Conn> Open<C> {
    fn connection(&mut self) -> Option<&mut C> {
        self.connection.as_mut()
    }

    /// Drops the connection (the database failed it): the transaction dies with it.
    fn abandon(mut self) {
        self.connection = None;
    }

    fn commit_now(mut self) -> std::result::Result<(), crate::Error> {
        let Some(mut connection) = self.connection.take() else {
            return Ok(());
        };
        connection.commit()?;
        crate::fault::pause_at("inbox-after-commit");
        self.home.give_back(connection);
        Ok(())
    }
}

impl<C: Conn> OpenWork for Open<C> {
    fn commit(self: Box<Self>) -> std::result::Result<(), WorkError> {
        Ok((*self).commit_now()?)
    }
}

impl<C: Conn> Drop for Open<C> {
    fn drop(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            match connection.rollback() {
                Ok(()) => self.home.give_back(connection),
                Err(e) => log::debug!("{e}: the connection is dropped"),
            }
        }
    }
}

/// Work that stands for a transaction the database failed: its commit fails, so that the
/// deliveries whose writes it held are not acked (they come back, and run again).
struct Failed(String);

impl OpenWork for Failed {
    fn commit(self: Box<Self>) -> std::result::Result<(), WorkError> {
        Err(format!("an earlier write of the batch failed: {}", self.0).into())
    }
}

/// A failure inside the inbox's transaction: the handler's (the transaction is fine) or the
/// database's (the connection is dropped, and the transaction with it).
enum Failure {
    Handler(HandlerError),
    Database(crate::Error),
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        Failure::Database(e)
    }
}

/// Runs one delivery in the transaction open on this thread for `connections`' database, or a
/// new one: `attempt` does its part, told whether a worker's group commit holds the
/// transaction (a batch). The transaction is left open for the consumer to commit before its
/// ack, or committed now where no group commit is open.
fn deliver<C: Conn>(
    connections: &Arc<Connections<C>>,
    event: &Event,
    open: impl FnOnce(&Database) -> pubsub_store::Result<C>,
    attempt: impl FnOnce(&mut C, bool) -> std::result::Result<Verdict, Failure>,
) -> HandlerResult {
    // No worker keeps a transaction open on this thread: this delivery's own, committed
    // before the handler returns (and what waits for it, such as the relay's wake-up, run).
    let own = group_commit::Scope::enter();
    let in_batch = own.is_none();
    let verdict = attempt_in_scope(connections, open, |c| attempt(c, in_batch));
    if let Some(own) = own {
        own.commit()?;
    }
    if verdict.as_ref().is_ok_and(|v| *v == Verdict::Handled) {
        log::debug!(
            "`{}` handled event {} before: acked without running",
            connections.consumer,
            event.event_id()
        );
    }
    verdict.map(|_| ())
}

/// [`deliver`]'s part in the scope: the work open for the database taken, or begun,
/// `attempt` run on it, the work left open again.
fn attempt_in_scope<C: Conn>(
    connections: &Arc<Connections<C>>,
    open: impl FnOnce(&Database) -> pubsub_store::Result<C>,
    attempt: impl FnOnce(&mut C) -> std::result::Result<Verdict, Failure>,
) -> std::result::Result<Verdict, HandlerError> {
    let key = connections.key.as_str();
    let (mut work, carried) = match group_commit::take::<Open<C>>(key) {
        Some(work) => (work, true),
        None => (Box::new(connections.begin(open)?), false),
    };
    let result = match work.connection() {
        Some(connection) => attempt(connection),
        None => Err(Failure::Database(crate::Error::Commit {
            source: "the inbox's connection is gone".into(),
        })),
    };
    let verdict = match result {
        Ok(verdict) => Ok(verdict),
        Err(Failure::Handler(e)) => Err(e),
        Err(Failure::Database(e)) => {
            work.abandon();
            if carried {
                // The writes of the deliveries before this one died with the transaction:
                // the consumer must not ack them.
                let failed = Failed(pubsub_core::text::error_chain(&e));
                let _ = group_commit::leave(key, Box::new(failed));
            }
            return Err(Box::new(e));
        }
    };
    if let Err(work) = group_commit::leave(key, work) {
        // Unreachable (`deliver` opened a scope): commit it here all the same.
        (*work).commit_now()?;
    }
    verdict
}

/// An inbox handler on SQLite: `f` gets the delivery's savepoint in the worker's transaction.
///
/// Under the bus's workers, the transaction is the batch's (group commit): it holds SQLite's
/// write lock from the batch's first inbox write until the worker commits it, before its
/// `multiple` ack. Other writers of the file wait for it (up to the store's busy timeout):
/// keep handlers that share the batch short.
pub struct SqliteInbox<F> {
    connections: Arc<Connections<rusqlite::Connection>>,
    f: F,
}

impl<F> SqliteInbox<F>
where
    F: Fn(&Event, &Metadata, &mut rusqlite::Savepoint<'_>) -> HandlerResult + Send + Sync,
{
    /// The handler `consumer` on `database` (its inbox table created or migrated).
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidConfig`] for a database in memory; [`crate::Error::Store`]
    /// when the database cannot be opened or its tables are of a newer schema.
    pub fn new(database: &Database, consumer: &str, f: F) -> Result<SqliteInbox<F>> {
        Ok(SqliteInbox {
            connections: Connections::new(database, consumer)?,
            f,
        })
    }
}

impl<F> EventHandler for SqliteInbox<F>
where
    F: Fn(&Event, &Metadata, &mut rusqlite::Savepoint<'_>) -> HandlerResult + Send + Sync,
{
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        let consumer = &self.connections.consumer;
        let doing = "recording the event in the inbox";
        let db = |e: rusqlite::Error| Failure::Database(query_error(doing, e));
        deliver(&self.connections, event, Database::open_sqlite, |c, _| {
            let mut sp = c.savepoint().map_err(db)?;
            let inserted = sp
                .prepare_cached(
                    "INSERT INTO pubsub_inbox (consumer, event_id) VALUES (?1, ?2) \
                     ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| s.execute([&**consumer, &event.event_id().to_string()]))
                .map_err(db)?;
            if verdict(inserted as u64) == Verdict::Handled {
                sp.finish().map_err(db)?;
                return Ok(Verdict::Handled);
            }
            match (self.f)(event, meta, &mut sp) {
                Ok(()) => {
                    sp.commit().map_err(db)?;
                    Ok(Verdict::Run)
                }
                Err(e) => {
                    // Its writes and the inbox's record go; the batch's others stay.
                    sp.finish().map_err(db)?;
                    Err(Failure::Handler(e))
                }
            }
        })
    }

    fn name(&self) -> &str {
        &self.connections.consumer
    }
}

macro_rules! debug_inbox {
    ($ty:ident) => {
        impl<F> fmt::Debug for $ty<F> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("consumer", &self.connections.consumer)
                    .field("database", &self.connections.database)
                    .finish_non_exhaustive()
            }
        }
    };
}
debug_inbox!(SqliteInbox);

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use self::postgres::{PgTransaction, PostgresInbox};

/// Whether `consumer` handled `event_id` (its transaction committed).
///
/// # Errors
///
/// [`crate::Error::Store`] when the database cannot be read.
pub fn handled(database: &Database, consumer: &str, event_id: Uuid) -> Result<bool> {
    let doing = "reading the inbox";
    let sql = "SELECT COUNT(*) FROM pubsub_inbox WHERE consumer = ";
    let n: i64 = match crate::relay::store::Store::open(database)? {
        crate::relay::store::Store::Sqlite(c) => c
            .query_row(
                &format!("{sql}?1 AND event_id = ?2"),
                [consumer, &event_id.to_string()],
                |r| r.get(0),
            )
            .map_err(|e| query_error(doing, e))?,
        #[cfg(feature = "postgres")]
        crate::relay::store::Store::Postgres(mut c) => c
            .query_one(
                &format!("{sql}$1 AND event_id = $2"),
                &[&consumer, &event_id],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| query_error(doing, e))?,
    };
    Ok(n > 0)
}

/// Deletes the inbox's records older than `age` (of every consumer); returns how many.
///
/// A record is what makes a redelivery harmless: keep them longer than a message can wait
/// in a queue, its retries included (a day is plenty for most services).
///
/// # Errors
///
/// [`crate::Error::Store`] when the database cannot be written.
pub fn prune(database: &Database, age: Duration) -> Result<u64> {
    let doing = "pruning the inbox";
    let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    let n = match crate::relay::store::Store::open(database)? {
        crate::relay::store::Store::Sqlite(c) => c
            .execute(
                "DELETE FROM pubsub_inbox WHERE handled_at < \
                 strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' seconds')",
                [secs],
            )
            .map(|n| n as u64)
            .map_err(|e| query_error(doing, e))?,
        #[cfg(feature = "postgres")]
        crate::relay::store::Store::Postgres(mut c) => c
            .execute(
                "DELETE FROM pubsub_inbox WHERE handled_at < now() - $1::bigint * interval '1 second'",
                &[&secs],
            )
            .map_err(|e| query_error(doing, e))?,
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_recorded_before_is_not_run_again() {
        assert_eq!(verdict(1), Verdict::Run);
        assert_eq!(verdict(0), Verdict::Handled);
    }
}
