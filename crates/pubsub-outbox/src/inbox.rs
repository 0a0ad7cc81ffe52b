//! The inbox: a handler form that gets a database transaction. The handler's writes and the
//! record "consumer C handled event E" commit together, and only then does the handler
//! return (and the delivery get acked): a redelivery of an event whose transaction committed
//! is acked without running the handler again.
//!
//! ```no_run
//! use pubsub_core::{Event, Metadata};
//! use pubsub_outbox::SqliteInbox;
//! use pubsub_registry::HandlerRegistry;
//! use pubsub_store::Database;
//!
//! let database = Database::parse("sqlite:app.db")?;
//! let reserve = SqliteInbox::new(&database, "reserve-stock", |event: &Event, _: &Metadata, tx: &mut rusqlite::Transaction<'_>| {
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
use std::sync::Mutex;
use std::time::Duration;

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
fn verdict(inserted: usize) -> Verdict {
    if inserted == 1 {
        Verdict::Run
    } else {
        Verdict::Handled
    }
}

/// Connections a handler reuses across deliveries (one per worker at most in use at once).
struct Connections<C> {
    consumer: String,
    database: Database,
    idle: Mutex<Vec<C>>,
}

impl<C> Connections<C> {
    fn new(database: &Database, consumer: &str) -> Result<Connections<C>> {
        shareable(database)?;
        crate::schema::prepare(database)?;
        Ok(Connections {
            consumer: consumer.to_owned(),
            database: database.clone(),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take(&self, open: impl FnOnce(&Database) -> pubsub_store::Result<C>) -> Result<C> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(c) => Ok(c),
            None => Ok(open(&self.database)?),
        }
    }

    fn give_back(&self, c: C) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(c);
        }
    }
}

/// A failure inside the inbox's transaction: the handler's (the connection is fine) or the
/// database's (the connection is dropped, a new one is opened next time).
enum Failure {
    Handler(HandlerError),
    Database(crate::Error),
}

impl From<Failure> for HandlerError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Handler(e) => e,
            Failure::Database(e) => Box::new(e),
        }
    }
}

/// Runs one delivery on a connection taken from `connections`: `attempt` does the
/// transaction, and the connection goes back unless the database failed.
fn deliver<C>(
    connections: &Connections<C>,
    event: &Event,
    open: impl FnOnce(&Database) -> pubsub_store::Result<C>,
    attempt: impl FnOnce(&mut C) -> std::result::Result<Verdict, Failure>,
) -> HandlerResult {
    let mut connection = connections.take(open)?;
    match attempt(&mut connection) {
        Ok(verdict) => {
            connections.give_back(connection);
            if verdict == Verdict::Handled {
                log::debug!(
                    "`{}` handled event {} before: acked without running",
                    connections.consumer,
                    event.event_id()
                );
            }
            Ok(())
        }
        Err(Failure::Handler(e)) => {
            connections.give_back(connection);
            Err(e)
        }
        Err(failure @ Failure::Database(_)) => Err(failure.into()),
    }
}

/// An inbox handler on SQLite: `f` gets the delivery's transaction (`IMMEDIATE`: it holds the
/// write lock from the start, so that concurrent workers wait instead of failing).
pub struct SqliteInbox<F> {
    connections: Connections<rusqlite::Connection>,
    f: F,
}

impl<F> SqliteInbox<F>
where
    F: Fn(&Event, &Metadata, &mut rusqlite::Transaction<'_>) -> HandlerResult + Send + Sync,
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
    F: Fn(&Event, &Metadata, &mut rusqlite::Transaction<'_>) -> HandlerResult + Send + Sync,
{
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        let consumer = &self.connections.consumer;
        let doing = "recording the event in the inbox";
        let db = |e: rusqlite::Error| Failure::Database(query_error(doing, e));
        deliver(&self.connections, event, Database::open_sqlite, |c| {
            let mut tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db)?;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO pubsub_inbox (consumer, event_id) VALUES (?1, ?2) \
                     ON CONFLICT DO NOTHING",
                )
                .and_then(|mut s| s.execute([consumer.as_str(), &event.event_id().to_string()]))
                .map_err(db)?;
            if verdict(inserted) == Verdict::Handled {
                return Ok(Verdict::Handled);
            }
            (self.f)(event, meta, &mut tx).map_err(Failure::Handler)?;
            tx.commit().map_err(db)?;
            crate::fault::pause_at("inbox-after-commit");
            Ok(Verdict::Run)
        })
    }

    fn name(&self) -> &str {
        &self.connections.consumer
    }
}

/// An inbox handler on PostgreSQL: `f` gets the delivery's transaction.
#[cfg(feature = "postgres")]
pub struct PostgresInbox<F> {
    connections: Connections<postgres::Client>,
    f: F,
}

#[cfg(feature = "postgres")]
impl<F> PostgresInbox<F>
where
    F: Fn(&Event, &Metadata, &mut postgres::Transaction<'_>) -> HandlerResult + Send + Sync,
{
    /// The handler `consumer` on `database` (its inbox table created or migrated).
    ///
    /// # Errors
    ///
    /// As [`SqliteInbox::new`].
    pub fn new(database: &Database, consumer: &str, f: F) -> Result<PostgresInbox<F>> {
        Ok(PostgresInbox {
            connections: Connections::new(database, consumer)?,
            f,
        })
    }
}

#[cfg(feature = "postgres")]
impl<F> EventHandler for PostgresInbox<F>
where
    F: Fn(&Event, &Metadata, &mut postgres::Transaction<'_>) -> HandlerResult + Send + Sync,
{
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        use postgres::types::Type;
        let consumer = &self.connections.consumer;
        let doing = "recording the event in the inbox";
        let db = |e: postgres::Error| Failure::Database(query_error(doing, e));
        deliver(&self.connections, event, Database::connect_postgres, |c| {
            let mut tx = c.transaction().map_err(db)?;
            let event_id = event.event_id();
            let inserted = tx
                .execute_typed(
                    "INSERT INTO pubsub_inbox (consumer, event_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[(consumer, Type::TEXT), (&event_id, Type::UUID)],
                )
                .map_err(db)?;
            if verdict(usize::try_from(inserted).unwrap_or(0)) == Verdict::Handled {
                return Ok(Verdict::Handled);
            }
            (self.f)(event, meta, &mut tx).map_err(Failure::Handler)?;
            tx.commit().map_err(db)?;
            crate::fault::pause_at("inbox-after-commit");
            Ok(Verdict::Run)
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
debug_inbox!(PostgresInbox);

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
