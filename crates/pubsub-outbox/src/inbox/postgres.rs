//! The inbox on PostgreSQL: [`PostgresInbox`] and the transaction its handlers get,
//! [`PgTransaction`]. A delivery runs checked (its savepoint and record first) or, under a
//! worker's group commit, batched (its record written with the batch's at the commit): see
//! [`Path`].

use std::fmt;
use std::sync::Arc;

use pubsub_core::{Event, EventHandler, HandlerResult, Metadata};
use pubsub_store::Database;
use uuid::Uuid;

use super::{deliver, verdict, Conn, Connections, Failure, Verdict};
use crate::error::{query_error, Result};

/// A PostgreSQL connection of the inbox: its prepared statements, whether the last
/// delivery's savepoint is still to be released (with the next delivery's first statement:
/// one round trip fewer per delivery), and the deliveries of the open transaction that ran
/// without a record of their own ([`Path::Batched`]).
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
struct Unrecorded {
    consumer: Arc<str>,
    event_id: Uuid,
    again: RunAgain,
}

/// A batched delivery, run again checked (its handler, its event and metadata captured).
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
fn path(in_batch: bool, redelivered: bool, attempt: u32, failed_before: bool) -> Path {
    if in_batch && !redelivered && attempt <= 1 && !failed_before {
        Path::Batched
    } else {
        Path::Checked
    }
}

/// The records of a batch's deliveries, in one statement.
const RECORD_BATCH: &str = "INSERT INTO pubsub_inbox (consumer, event_id) \
     SELECT * FROM unnest($1::text[], $2::uuid[])";

/// The most statements a connection keeps prepared (a handler builds its SQL at run time:
/// the cache starts again when full).
const STATEMENTS: usize = 64;

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
        let mut rows: Vec<(Arc<str>, Uuid)> = self
            .unrecorded
            .drain(..)
            .map(|u| (u.consumer, u.event_id))
            .collect();
        rows.sort();
        let consumers: Vec<&str> = rows.iter().map(|(consumer, _)| &**consumer).collect();
        let ids: Vec<Uuid> = rows.iter().map(|&(_, id)| id).collect();
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
                        consumer: consumer.to_string(),
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

/// The transaction a `PostgresInbox` handler writes in: a savepoint of the worker's
/// transaction, which commits with the batch (group commit). It runs statements as the
/// `postgres` crate's `Transaction` does; it cannot commit or roll back (the inbox does).
pub struct PgTransaction<'a> {
    connection: &'a mut PgConnection,
}

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
pub struct PostgresInbox<F> {
    connections: Arc<Connections<PgConnection>>,
    f: Arc<F>,
}

impl<F> PostgresInbox<F>
where
    F: Fn(&Event, &Metadata, &mut PgTransaction<'_>) -> HandlerResult + Send + Sync + 'static,
{
    /// The handler `consumer` on `database` (its inbox table created or migrated).
    ///
    /// # Errors
    ///
    /// As [`SqliteInbox::new`](super::SqliteInbox::new).
    pub fn new(database: &Database, consumer: &str, f: F) -> Result<PostgresInbox<F>> {
        Ok(PostgresInbox {
            connections: Connections::new(database, consumer)?,
            f: Arc::new(f),
        })
    }
}

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
fn run_batched<F>(
    c: &mut PgConnection,
    consumer: &Arc<str>,
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
                Arc::clone(consumer),
                event.clone(),
                meta.clone(),
                Arc::clone(f),
            );
            c.unrecorded.push(Unrecorded {
                consumer: Arc::clone(consumer),
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

debug_inbox!(PostgresInbox);

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
}
