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

/// A PostgreSQL connection of the inbox: its prepared statements, whether the last
/// delivery's savepoint is still to be released (with the next delivery's first statement:
/// one round trip fewer per delivery), and the deliveries of the open transaction that ran
/// without a record of their own ([`Path::Batched`]).
#[cfg(feature = "postgres")]
struct PgConnection {
    client: postgres::Client,
    statements: std::collections::HashMap<String, postgres::Statement>,
    savepoint: bool,
    unrecorded: Vec<Unrecorded>,
    /// A batched delivery failed in the open transaction: the rest of it runs checked.
    checked: bool,
}

/// A delivery that ran in the open transaction without a savepoint or a record: its record
/// is written with the batch's others before the commit, and it runs again, checked, if a
/// later batched delivery fails (their writes are rolled back together).
#[cfg(feature = "postgres")]
struct Unrecorded {
    consumer: String,
    event_id: Uuid,
    again: RunAgain,
}

/// A batched delivery, run again checked (its handler, its event and metadata captured).
#[cfg(feature = "postgres")]
type RunAgain = Box<dyn FnOnce(&mut PgConnection) -> std::result::Result<Verdict, Failure> + Send>;

/// How a delivery runs in the PostgreSQL inbox's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// In a savepoint of its own, its record written before its handler runs: a copy of an
    /// event handled before is acked without running, and a failure rolls back its writes
    /// alone. Two statements of the delivery's own, and PostgreSQL's subtransaction.
    Checked,
    /// The handler alone, in the batch's transaction; the records of the batch are written
    /// in one statement before its commit. A copy handled before fails that statement (a
    /// unique violation), and the batch comes back from the broker, marked as delivered
    /// again, to run checked. A failure rolls the transaction back and runs the batch's
    /// earlier deliveries again, checked.
    Batched,
}

/// The path of a delivery (pure): batched only under a worker's group commit, for a first
/// delivery of a first attempt (a copy marked as delivered again, or a retry, is the likely
/// duplicate, and is checked), in a transaction no batched delivery failed in.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn path(in_batch: bool, redelivered: bool, attempt: u32, failed_before: bool) -> Path {
    if in_batch && !redelivered && attempt <= 1 && !failed_before {
        Path::Batched
    } else {
        Path::Checked
    }
}

/// The records of a batch's deliveries, in one statement.
#[cfg(feature = "postgres")]
const RECORD_BATCH: &str = "INSERT INTO pubsub_inbox (consumer, event_id) \
     SELECT * FROM unnest($1::text[], $2::uuid[])";

/// The most statements a connection keeps prepared (a handler builds its SQL at run time:
/// the cache starts again when full).
#[cfg(feature = "postgres")]
const STATEMENTS: usize = 64;

#[cfg(feature = "postgres")]
impl PgConnection {
    fn connect(database: &Database) -> pubsub_store::Result<PgConnection> {
        Ok(PgConnection {
            client: database.connect_postgres()?,
            statements: std::collections::HashMap::new(),
            savepoint: false,
            unrecorded: Vec::new(),
            checked: false,
        })
    }

    /// Ends the transaction (or a savepoint) with `sql`: no savepoint is left to release.
    fn end(&mut self, sql: &str, doing: &str) -> std::result::Result<(), crate::Error> {
        self.savepoint = false;
        self.client
            .batch_execute(sql)
            .map_err(|e| query_error(doing, e))
    }

    /// Ends the transaction with `sql`, forgetting its batched deliveries.
    fn end_transaction(&mut self, sql: &str, doing: &str) -> std::result::Result<(), crate::Error> {
        self.unrecorded.clear();
        self.checked = false;
        self.end(sql, doing)
    }

    /// The statement of `sql`, prepared once per connection.
    fn statement(
        &mut self,
        sql: &str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        if self.statements.len() >= STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Writes the records of the batched deliveries, in one statement, sorted (concurrent
    /// batches lock their rows in one order, and cannot deadlock).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Duplicate`] when one of them was recorded before: committed by an
    /// earlier transaction, or twice in this one.
    fn record_batch(&mut self) -> std::result::Result<(), crate::Error> {
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<(String, Uuid)> = self
            .unrecorded
            .drain(..)
            .map(|u| (u.consumer, u.event_id))
            .collect();
        rows.sort();
        let (consumers, ids): (Vec<String>, Vec<Uuid>) = rows.into_iter().unzip();
        let doing = "recording the batch in the inbox";
        let statement = self
            .statement(RECORD_BATCH)
            .map_err(|e| query_error(doing, e))?;
        match self.client.execute(&statement, &[&consumers, &ids]) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Err(crate::Error::Duplicate { source: e.into() })
            }
            Err(e) => Err(query_error(doing, e)),
        }
    }

    /// After a batched delivery failed: rolls back the transaction (its writes, and those of
    /// the batched deliveries before it), begins another, and runs those deliveries again,
    /// each checked. The rest of the transaction runs checked.
    ///
    /// # Errors
    ///
    /// The database's; or [`crate::Error::Rerun`] when a handler fails the second time on
    /// an event it succeeded on: its success was reported, so the batch must not be acked.
    fn run_again_checked(&mut self) -> std::result::Result<(), Failure> {
        let again = std::mem::take(&mut self.unrecorded);
        self.end(
            "ROLLBACK; BEGIN",
            "rolling back the inbox's batch after a handler's failure",
        )?;
        self.checked = true;
        log::debug!(
            "an inbox handler failed: its batch's transaction was rolled back, and its {} \
             earlier deliveries run again, checked",
            again.len()
        );
        for u in again {
            let (consumer, event_id) = (u.consumer, u.event_id);
            match (u.again)(self) {
                Ok(_) => {}
                Err(Failure::Handler(source)) => {
                    return Err(Failure::Database(crate::Error::Rerun {
                        consumer,
                        event_id,
                        source,
                    }))
                }
                Err(e @ Failure::Database(_)) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(feature = "postgres")]
impl Conn for PgConnection {
    fn begin(&mut self) -> std::result::Result<(), crate::Error> {
        self.end_transaction("BEGIN", "opening the inbox's transaction")
    }
    fn commit(&mut self) -> std::result::Result<(), crate::Error> {
        self.record_batch()?;
        self.end_transaction("COMMIT", "committing the inbox's transaction")
    }
    fn rollback(&mut self) -> std::result::Result<(), crate::Error> {
        self.end_transaction("ROLLBACK", "rolling back the inbox's transaction")
    }
}

/// The SQL that opens a delivery's savepoint and records it in the inbox, in one round trip:
/// the previous delivery's savepoint released first if still open. Literals, as the simple
/// query protocol has no parameters: the consumer's name in an escape string (`E'...'`,
/// read the same whatever `standard_conforming_strings` says), the id as a UUID's text.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn record_postgres(consumer: &str, event_id: Uuid, release: bool) -> String {
    let name = consumer.replace('\\', "\\\\").replace('\'', "''");
    format!(
        "{}SAVEPOINT pubsub_inbox; INSERT INTO pubsub_inbox (consumer, event_id) \
         VALUES (E'{name}', '{event_id}') ON CONFLICT DO NOTHING",
        if release {
            "RELEASE SAVEPOINT pubsub_inbox; "
        } else {
            ""
        }
    )
}

/// Connections a handler reuses across deliveries (one per worker at most in use at once).
struct Connections<C> {
    consumer: String,
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
            consumer: consumer.to_owned(),
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
                .and_then(|mut s| s.execute([consumer.as_str(), &event.event_id().to_string()]))
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

/// The transaction a `PostgresInbox` handler writes in: a savepoint of the worker's
/// transaction, which commits with the batch (group commit). It runs statements as the
/// `postgres` crate's `Transaction` does; it cannot commit or roll back (the inbox does).
#[cfg(feature = "postgres")]
pub struct PgTransaction<'a> {
    connection: &'a mut PgConnection,
}

#[cfg(feature = "postgres")]
impl PgTransaction<'_> {
    /// The statement of `sql`, prepared once per connection.
    fn statement(
        &mut self,
        sql: &str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        self.connection.statement(sql)
    }

    /// Runs a statement (prepared once per connection, then reused: one round trip); returns
    /// the number of rows it changed.
    ///
    /// # Errors
    ///
    /// The database's error; returned from the handler, it fails this delivery only (its
    /// writes are rolled back to the savepoint).
    pub fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.connection.client.execute(&statement, params)
    }

    /// Runs a query (prepared once per connection); returns its rows.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<Vec<postgres::Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.connection.client.query(&statement, params)
    }

    /// Runs a query (prepared once per connection) that returns exactly one row.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute), and when it returns no row or more than one.
    pub fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<postgres::Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.connection.client.query_one(&statement, params)
    }

    /// Runs a query (prepared once per connection) that returns at most one row.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute), and when it returns more than one row.
    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<Option<postgres::Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.connection.client.query_opt(&statement, params)
    }

    /// The connection itself, for what the methods above do not cover. Do not commit, roll
    /// back or end the transaction through it: the inbox owns it.
    pub fn client(&mut self) -> &mut postgres::Client {
        &mut self.connection.client
    }
}

#[cfg(feature = "postgres")]
impl fmt::Debug for PgTransaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgTransaction")
    }
}

/// An inbox handler on PostgreSQL: `f` gets the delivery's savepoint in the worker's
/// transaction, a [`PgTransaction`].
///
/// Under the bus's workers, a first delivery runs without a savepoint or a record of its own:
/// the batch's records are written in one statement before its commit,
/// one round trip per delivery fewer. A copy of an event handled before, not marked as
/// delivered again, then fails the commit: nothing of its batch is acked, and the broker
/// delivers the batch again, marked, to run checked ([`crate::Error::Duplicate`]). A handler's
/// failure rolls the batch's transaction back, and the batch's earlier deliveries run again,
/// each in a savepoint: their handlers run twice, their writes commit once. Deliveries marked
/// as delivered again, retries, and calls outside a worker run in a savepoint each, recorded
/// before the handler runs.
#[cfg(feature = "postgres")]
pub struct PostgresInbox<F> {
    connections: Arc<Connections<PgConnection>>,
    f: Arc<F>,
}

#[cfg(feature = "postgres")]
impl<F> PostgresInbox<F>
where
    F: Fn(&Event, &Metadata, &mut PgTransaction<'_>) -> HandlerResult + Send + Sync + 'static,
{
    /// The handler `consumer` on `database` (its inbox table created or migrated).
    ///
    /// # Errors
    ///
    /// As [`SqliteInbox::new`].
    pub fn new(database: &Database, consumer: &str, f: F) -> Result<PostgresInbox<F>> {
        Ok(PostgresInbox {
            connections: Connections::new(database, consumer)?,
            f: Arc::new(f),
        })
    }
}

#[cfg(feature = "postgres")]
impl<F> EventHandler for PostgresInbox<F>
where
    F: Fn(&Event, &Metadata, &mut PgTransaction<'_>) -> HandlerResult + Send + Sync + 'static,
{
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        let consumer = &self.connections.consumer;
        deliver(
            &self.connections,
            event,
            PgConnection::connect,
            |c, in_batch| match path(in_batch, meta.redelivered(), meta.attempt(), c.checked) {
                Path::Checked => run_checked(c, consumer, event, meta, &*self.f),
                Path::Batched => run_batched(c, consumer, event, meta, &self.f),
            },
        )
    }

    fn name(&self) -> &str {
        &self.connections.consumer
    }
}

/// Runs a delivery [`Path::Checked`]: its savepoint and record in one round trip, then its
/// handler unless the record was there.
#[cfg(feature = "postgres")]
fn run_checked<F>(
    c: &mut PgConnection,
    consumer: &str,
    event: &Event,
    meta: &Metadata,
    f: &F,
) -> std::result::Result<Verdict, Failure>
where
    F: Fn(&Event, &Metadata, &mut PgTransaction<'_>) -> HandlerResult,
{
    let doing = "recording the event in the inbox";
    let record = record_postgres(consumer, event.event_id(), c.savepoint);
    let messages = c
        .client
        .simple_query(&record)
        .map_err(|e| Failure::Database(query_error(doing, e)))?;
    c.savepoint = true;
    let inserted = messages
        .iter()
        .rev()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0);
    if verdict(inserted) == Verdict::Handled {
        return Ok(Verdict::Handled);
    }
    match f(event, meta, &mut PgTransaction { connection: c }) {
        // Its savepoint is released with the next delivery's record, or the commit.
        Ok(()) => Ok(Verdict::Run),
        Err(e) => {
            // Its writes and the inbox's record go; the batch's others stay.
            c.end(
                "ROLLBACK TO SAVEPOINT pubsub_inbox; RELEASE SAVEPOINT pubsub_inbox",
                doing,
            )?;
            Err(Failure::Handler(e))
        }
    }
}

/// Runs a delivery [`Path::Batched`]: its handler alone; its record waits for the commit.
#[cfg(feature = "postgres")]
fn run_batched<F>(
    c: &mut PgConnection,
    consumer: &str,
    event: &Event,
    meta: &Metadata,
    f: &Arc<F>,
) -> std::result::Result<Verdict, Failure>
where
    F: Fn(&Event, &Metadata, &mut PgTransaction<'_>) -> HandlerResult + Send + Sync + 'static,
{
    match f(event, meta, &mut PgTransaction { connection: c }) {
        Ok(()) => {
            let (name, event, meta, f) = (
                consumer.to_owned(),
                event.clone(),
                meta.clone(),
                Arc::clone(f),
            );
            c.unrecorded.push(Unrecorded {
                consumer: consumer.to_owned(),
                event_id: event.event_id(),
                again: Box::new(move |c| run_checked(c, &name, &event, &meta, &*f)),
            });
            Ok(Verdict::Run)
        }
        Err(e) => {
            // Its writes cannot be told from the batch's: all go, and the others run again.
            c.run_again_checked()?;
            Err(Failure::Handler(e))
        }
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
    fn the_record_of_a_delivery_quotes_the_consumer() {
        let id = Uuid::nil();
        let sql = record_postgres("it's a \\ name", id, false);
        assert!(sql.starts_with("SAVEPOINT pubsub_inbox; INSERT"), "{sql}");
        assert!(
            sql.contains("VALUES (E'it''s a \\\\ name', '00000000-0000-0000-0000-000000000000')"),
            "{sql}"
        );
        let sql = record_postgres("c", id, true);
        assert!(
            sql.starts_with("RELEASE SAVEPOINT pubsub_inbox; SAVEPOINT"),
            "{sql}"
        );
    }

    #[test]
    fn only_a_first_delivery_in_a_batch_runs_without_its_own_check() {
        use Path::{Batched, Checked};
        // (in a batch, redelivered, attempt, a batched delivery failed before) → path
        let table = [
            ((true, false, 1, false), Batched),
            ((false, false, 1, false), Checked), // called directly: its own transaction
            ((true, true, 1, false), Checked),   // the broker delivered it before
            ((true, false, 2, false), Checked),  // a retry
            ((true, false, 1, true), Checked),   // the batch ran again after a failure
            ((true, true, 3, true), Checked),
        ];
        for ((in_batch, redelivered, attempt, failed), expected) in table {
            assert_eq!(
                path(in_batch, redelivered, attempt, failed),
                expected,
                "{in_batch} {redelivered} {attempt} {failed}"
            );
        }
    }

    #[test]
    fn an_event_recorded_before_is_not_run_again() {
        assert_eq!(verdict(1), Verdict::Run);
        assert_eq!(verdict(0), Verdict::Handled);
    }
}
