//! [`Outbox`]: events staged in the service's own database transaction, for the relay to
//! publish once the transaction commits.

use std::fmt;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use pubsub_core::{json, Event};
use pubsub_publisher::PublishOptions;
use pubsub_store::{Database, DriverError};

use crate::error::{query_error, shareable, Error, Result};

/// The table events are staged in, and what staging writes to it.
const INSERT_SQLITE: &str = "INSERT INTO pubsub_outbox \
    (event_id, routing_key, body, correlation_id, causation_id) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The insert, and a notification the relay gets when (and only if) the transaction commits.
#[cfg(feature = "postgres")]
const INSERT_POSTGRES: &str = "WITH staged AS (INSERT INTO pubsub_outbox \
    (event_id, routing_key, body, correlation_id, causation_id) VALUES ($1, $2, $3, $4, $5) \
    RETURNING 1) SELECT pg_notify('pubsub_outbox', '') FROM staged";

/// A transactional outbox: events staged in the service's own transaction, published by a
/// relay ([`Outbox::relay`], or the bus's `.outbox(...)`) once that transaction commits.
///
/// The order row and the `order.created` event commit together or not at all: a crash after
/// the commit loses nothing (the relay publishes the event when the service is back), and a
/// rollback publishes nothing.
///
/// ```no_run
/// use pubsub_core::Event;
/// use pubsub_outbox::Outbox;
/// use pubsub_store::Database;
///
/// let database = Database::parse("sqlite:app.db")?;
/// let outbox = Outbox::open(&database)?; // creates or migrates its tables
/// let mut connection = database.open_sqlite()?;
///
/// let mut tx = connection.transaction()?;
/// tx.execute("INSERT INTO orders (id, total) VALUES (?1, ?2)", ("ORD-1", 99.5))?;
/// let event = Event::new("order", "created", serde_json::json!({ "order_id": "ORD-1" }))?;
/// outbox.stage(&mut tx, &event)?;
/// outbox.commit(tx)?; // commits, and wakes this process's relay
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// What is guaranteed, and what is not:
/// - a committed event is published at least once, in the order of its outbox row (the
///   order of the commits for the events of one aggregate, when the transactions that stage
///   them write the aggregate's row, as any update of it does);
/// - one relay publishes at a time (a lease), so several instances sharing an outbox do not
///   publish an event twice in the normal case; after a crash between the broker's confirm
///   and the row's deletion, the event is published again (duplicates on the wire: an
///   [inbox](crate::inbox) absorbs them);
/// - a rolled-back transaction stages nothing.
///
/// Cloning is cheap: clones share the relay's wake-up.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    /// One pending wake-up at most: a relay that wakes reads everything committed by then.
    wake: (Sender<()>, Receiver<()>),
}

impl Outbox {
    /// Opens the outbox of `database`: its tables created or migrated (with the inbox's), as
    /// the store's are.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a SQLite database in memory (the relay opens its own
    /// connection, and would see another database); [`Error::Store`] when the database is
    /// down, or its outbox tables are of a newer schema than this program knows.
    pub fn open(database: &Database) -> Result<Outbox> {
        shareable(database)?;
        crate::schema::prepare(database)?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                database: database.clone(),
                wake: crossbeam_channel::bounded(1),
            }),
        })
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// Stages `event` in `tx`: it is published once `tx` commits, and never if it rolls
    /// back.
    ///
    /// # Errors
    ///
    /// [`Error::NoOutbox`] when `tx`'s database has no outbox tables; [`Error::Stage`] when
    /// the insert fails (roll the transaction back).
    pub fn stage<T: Transaction>(&self, tx: &mut T, event: &Event) -> Result<()> {
        self.stage_with(tx, event, &PublishOptions::default())
    }

    /// [`stage`](Self::stage) with options: the relay publishes the event with its
    /// correlation id and causation id.
    ///
    /// # Errors
    ///
    /// As [`stage`](Self::stage), and [`Error::InvalidConfig`] when `options` hold more
    /// than the outbox keeps (see [`Staged::new`]).
    pub fn stage_with<T: Transaction>(
        &self,
        tx: &mut T,
        event: &Event,
        options: &PublishOptions,
    ) -> Result<()> {
        let staged = Staged::new(event, options)?;
        tx.insert(&staged)
            .map_err(|source| staging_error(event, source))?;
        self.wake_after_group_commit();
        Ok(())
    }

    /// Staged in a transaction a worker commits later (an inbox handler's, see
    /// [`pubsub_core::group_commit`]): wakes this process's relay once it has committed.
    fn wake_after_group_commit(&self) {
        if pubsub_core::group_commit::in_scope() {
            let wake = self.inner.wake.0.clone();
            let key = format!("pubsub-outbox wake {}", self.inner.database);
            let _ = pubsub_core::group_commit::after_commit(&key, move || {
                let _ = wake.try_send(());
            });
        }
    }

    /// Stages every event of `events` in `tx`, as [`stage`](Self::stage) each: on PostgreSQL
    /// in one statement (one round trip for the lot).
    ///
    /// # Errors
    ///
    /// As [`stage`](Self::stage).
    pub fn stage_all<T: Transaction>(&self, tx: &mut T, events: &[Event]) -> Result<()> {
        let staged = events
            .iter()
            .map(|e| Staged::new(e, &PublishOptions::default()))
            .collect::<Result<Vec<_>>>()?;
        if let Some(first) = events.first() {
            tx.insert_all(&staged)
                .map_err(|source| staging_error(first, source))?;
            self.wake_after_group_commit();
        }
        Ok(())
    }

    /// Commits `tx`, then wakes this process's relay: the events it staged are published
    /// at once. (A transaction committed otherwise is published too: on PostgreSQL the
    /// commit notifies the relays, on SQLite a relay looks every
    /// [`poll`](crate::RelayBuilder::poll) interval.)
    ///
    /// # Errors
    ///
    /// [`Error::Commit`]: nothing of the transaction is kept.
    pub fn commit<T: Transaction>(&self, tx: T) -> Result<()> {
        tx.finish().map_err(|source| Error::Commit { source })?;
        self.wake();
        Ok(())
    }

    /// Wakes this process's relay (after a commit the outbox did not make itself).
    pub fn wake(&self) {
        match self.inner.wake.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// Stages `event` in an async PostgreSQL transaction (feature `tokio`): as
    /// [`stage_with`](Self::stage_with). The commit notifies the relay.
    ///
    /// # Errors
    ///
    /// As [`stage_with`](Self::stage_with).
    #[cfg(feature = "tokio")]
    pub async fn stage_async(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        event: &Event,
        options: &PublishOptions,
    ) -> Result<()> {
        let staged = Staged::new(event, options)?;
        let params = staged.postgres_params();
        tx.execute_typed(INSERT_POSTGRES, &params)
            .await
            .map(drop)
            .map_err(|e| staging_error(event, postgres_error(e)))
    }

    /// How many committed events wait to be published (not counting those the relay set
    /// aside as unreadable: see [`set_aside`](Self::set_aside)).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the database cannot be read.
    pub fn pending(&self) -> Result<u64> {
        self.count("failed IS NULL")
    }

    /// How many rows the relay set aside: bodies that no longer decode as events (edited by
    /// hand, or written by another program). They stay in the table, with the reason in
    /// their `failed` column, until removed by hand.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the database cannot be read.
    pub fn set_aside(&self) -> Result<u64> {
        self.count("failed IS NOT NULL")
    }

    fn count(&self, filter: &str) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM pubsub_outbox WHERE {filter}");
        let doing = "counting the outbox's rows";
        let n: i64 = match crate::relay::store::Store::open(&self.inner.database)? {
            crate::relay::store::Store::Sqlite(c) => c
                .query_row(&sql, [], |r| r.get(0))
                .map_err(|e| query_error(doing, e))?,
            #[cfg(feature = "postgres")]
            crate::relay::store::Store::Postgres(mut c) => c
                .query_one(&sql, &[])
                .and_then(|r| r.try_get(0))
                .map_err(|e| query_error(doing, e))?,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The relay's end of the wake-up.
    pub(crate) fn wakes(&self) -> Receiver<()> {
        self.inner.wake.1.clone()
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("database", &self.inner.database)
            .finish()
    }
}

#[cfg(feature = "tokio")]
fn postgres_error(e: postgres::Error) -> DriverError {
    Box::new(e)
}

/// A staging failure: the outbox's table missing is told apart.
fn staging_error(event: &Event, source: DriverError) -> Error {
    if missing_table(source.as_ref()) {
        Error::NoOutbox { source }
    } else {
        Error::Stage {
            event_id: event.event_id(),
            source,
        }
    }
}

/// Whether a database error says the outbox's table does not exist.
fn missing_table(e: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "postgres")]
    if let Some(pg) = e.downcast_ref::<postgres::Error>() {
        return pg.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE);
    }
    e.to_string().contains("no such table: pubsub_outbox")
}

/// What the outbox keeps of one event: its wire body, and the options the relay publishes it
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    event_id: uuid::Uuid,
    routing_key: String,
    body: String,
    correlation_id: Option<String>,
    causation_id: Option<String>,
}

impl Staged {
    /// What the outbox keeps of `event` published with `options`: the event's six wire
    /// fields, the correlation id and the causation id.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when `options` ask for more (a routing key, headers, an event
    /// type, a source, a trace context): the relay publishes with the bus's own settings, and
    /// dropping them silently would publish another message than the one asked for.
    pub fn new(event: &Event, options: &PublishOptions) -> Result<Staged> {
        let unkept = [
            ("a routing key", options.routing_key.is_some()),
            ("headers", !options.headers.is_empty()),
            ("an event type", options.event_type.is_some()),
            ("a source", options.source.is_some()),
            ("a trace context", options.trace.is_some()),
        ];
        if let Some((what, _)) = unkept.iter().find(|(_, set)| *set) {
            return Err(Error::InvalidConfig {
                message: format!(
                    "the outbox keeps an event's correlation id and causation id, not {what}"
                ),
            });
        }
        let body = String::from_utf8(json::to_vec(event)).unwrap_or_default();
        Ok(Staged {
            event_id: event.event_id(),
            routing_key: event.routing_key().to_owned(),
            body,
            correlation_id: options.correlation_id.clone(),
            causation_id: options.causation_id.clone(),
        })
    }

    #[cfg(feature = "postgres")]
    fn postgres_params(
        &self,
    ) -> [(&(dyn postgres::types::ToSql + Sync), postgres::types::Type); 5] {
        use postgres::types::Type;
        [
            (&self.event_id, Type::UUID),
            (&self.routing_key, Type::TEXT),
            (&self.body, Type::TEXT),
            (&self.correlation_id, Type::TEXT),
            (&self.causation_id, Type::TEXT),
        ]
    }
}

/// A database transaction events can be staged in: rusqlite's and the `postgres` crate's
/// (feature `postgres`), and an inbox handler's (a `rusqlite::Savepoint`, a
/// [`PgTransaction`](crate::PgTransaction)). Sealed: the outbox knows the SQL of each.
pub trait Transaction: sealed::Sealed {
    #[doc(hidden)]
    fn insert(&mut self, staged: &Staged) -> std::result::Result<(), DriverError>;
    #[doc(hidden)]
    fn insert_all(&mut self, staged: &[Staged]) -> std::result::Result<(), DriverError> {
        staged.iter().try_for_each(|s| self.insert(s))
    }
    #[doc(hidden)]
    fn finish(self) -> std::result::Result<(), DriverError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for rusqlite::Transaction<'_> {}
    impl Sealed for rusqlite::Savepoint<'_> {}
    #[cfg(feature = "postgres")]
    impl Sealed for postgres::Transaction<'_> {}
    #[cfg(feature = "postgres")]
    impl Sealed for crate::inbox::PgTransaction<'_> {}
}

/// Inserts `s` into the outbox table through a SQLite connection in a transaction.
fn insert_sqlite(c: &rusqlite::Connection, s: &Staged) -> std::result::Result<(), DriverError> {
    let mut statement = c.prepare_cached(INSERT_SQLITE)?;
    statement.execute(rusqlite::params![
        s.event_id.to_string(),
        s.routing_key,
        s.body,
        s.correlation_id,
        s.causation_id
    ])?;
    Ok(())
}

impl Transaction for rusqlite::Transaction<'_> {
    fn insert(&mut self, s: &Staged) -> std::result::Result<(), DriverError> {
        insert_sqlite(self, s)
    }

    fn finish(self) -> std::result::Result<(), DriverError> {
        Ok(self.commit()?)
    }
}

/// An inbox handler's savepoint ([`SqliteInbox`](crate::SqliteInbox)): the events commit with
/// the handler's writes.
impl Transaction for rusqlite::Savepoint<'_> {
    fn insert(&mut self, s: &Staged) -> std::result::Result<(), DriverError> {
        insert_sqlite(self, s)
    }

    fn finish(self) -> std::result::Result<(), DriverError> {
        Ok(self.commit()?)
    }
}

/// An inbox handler's transaction ([`PostgresInbox`](crate::PostgresInbox)): the events
/// commit with the handler's writes, and the inbox commits it.
#[cfg(feature = "postgres")]
impl Transaction for crate::inbox::PgTransaction<'_> {
    fn insert(&mut self, s: &Staged) -> std::result::Result<(), DriverError> {
        self.client()
            .execute_typed(INSERT_POSTGRES, &s.postgres_params())?;
        Ok(())
    }

    fn finish(self) -> std::result::Result<(), DriverError> {
        // The inbox commits it, with the batch.
        Ok(())
    }
}

#[cfg(feature = "postgres")]
impl Transaction for postgres::Transaction<'_> {
    fn insert(&mut self, s: &Staged) -> std::result::Result<(), DriverError> {
        self.execute_typed(INSERT_POSTGRES, &s.postgres_params())?;
        Ok(())
    }

    fn insert_all(&mut self, staged: &[Staged]) -> std::result::Result<(), DriverError> {
        let ids: Vec<uuid::Uuid> = staged.iter().map(|s| s.event_id).collect();
        let keys: Vec<&str> = staged.iter().map(|s| s.routing_key.as_str()).collect();
        let bodies: Vec<&str> = staged.iter().map(|s| s.body.as_str()).collect();
        let correlations: Vec<Option<&str>> =
            staged.iter().map(|s| s.correlation_id.as_deref()).collect();
        let causations: Vec<Option<&str>> =
            staged.iter().map(|s| s.causation_id.as_deref()).collect();
        // UNNEST keeps the slice's order: the ids are assigned in it.
        self.execute(
            "WITH staged AS (INSERT INTO pubsub_outbox \
             (event_id, routing_key, body, correlation_id, causation_id) \
             SELECT a, b, c, d, e FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) \
             WITH ORDINALITY AS t(a, b, c, d, e, o) ORDER BY o RETURNING 1) \
             SELECT pg_notify('pubsub_outbox', '') FROM staged LIMIT 1",
            &[&ids, &keys, &bodies, &correlations, &causations],
        )?;
        Ok(())
    }

    fn finish(self) -> std::result::Result<(), DriverError> {
        Ok(self.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_keeps_what_the_relay_can_publish() {
        let event = Event::new("order", "created", serde_json::json!({ "n": 1 })).unwrap();
        let staged = Staged::new(&event, &PublishOptions::correlated("flow-1")).unwrap();
        assert_eq!(staged.routing_key, "order.created");
        assert_eq!(staged.correlation_id.as_deref(), Some("flow-1"));
        assert_eq!(json::from_str(&staged.body).unwrap(), event);
        let refused = |options: PublishOptions| Staged::new(&event, &options).unwrap_err();
        let e = refused(PublishOptions {
            routing_key: Some("x".into()),
            ..PublishOptions::default()
        });
        assert!(e.to_string().contains("not a routing key"), "{e}");
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("k".to_owned(), "v".to_owned());
        let e = refused(PublishOptions {
            headers,
            ..PublishOptions::default()
        });
        assert!(e.to_string().contains("not headers"), "{e}");
    }

    #[test]
    fn a_database_in_memory_is_refused() {
        let e = Outbox::open(&Database::sqlite_in_memory()).unwrap_err();
        assert!(e.to_string().contains("every connection shares"), "{e}");
    }

    #[test]
    fn staging_without_the_tables_says_so() {
        let dir = std::env::temp_dir().join(format!("outbox-{}", uuid::Uuid::new_v4()));
        let database = Database::sqlite(dir.join("a.db"));
        let outbox = Outbox::open(&database).unwrap();
        let mut other = Database::sqlite(dir.join("b.db")).open_sqlite().unwrap();
        let mut tx = other.transaction().unwrap();
        let event = Event::new("order", "created", serde_json::json!({})).unwrap();
        let e = outbox.stage(&mut tx, &event).unwrap_err();
        assert!(matches!(e, Error::NoOutbox { .. }), "{e:?}");
        drop(tx);
        let _ = std::fs::remove_dir_all(dir);
    }
}
