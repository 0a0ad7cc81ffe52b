//! [`Backend`]: what a database must do for the stores; SQLite and PostgreSQL implement it.

use uuid::Uuid;

use crate::error::Result;
use crate::model::{
    EventQuery, EventRow, NewTask, StoredEvent, TaskChange, TaskFilter, TaskRecord, TaskRun,
    TaskState,
};

/// The version of the store's schema this build creates and reads. Opening a database
/// migrates an older schema up to it, and refuses a newer one.
pub const SCHEMA_VERSION: i64 = 3;

/// One connection to a store's database: the statements the [`EventStore`](crate::EventStore)
/// and the [`TaskStore`](crate::TaskStore) need, in one backend's SQL.
///
/// A backend creates and migrates its schema when it is opened. It is `Send` but holds one
/// connection: use it from one thread at a time.
pub trait Backend: Send {
    /// The database, for messages (without a password).
    fn describe(&self) -> String;

    /// Stores `rows` in one transaction; an event id already stored is skipped. Returns how
    /// many rows were new.
    ///
    /// # Errors
    ///
    /// The transaction failed: nothing of it is stored.
    fn append_events(&mut self, rows: &[EventRow]) -> Result<usize>;

    /// Calls `each` with the events the database selects for `query` (every criterion but
    /// the routing pattern, which the caller checks), in the query's order, until `each`
    /// returns `false`.
    ///
    /// # Errors
    ///
    /// The query failed, or a row cannot be read back.
    fn query_events(
        &mut self,
        query: &EventQuery,
        each: &mut dyn FnMut(StoredEvent) -> bool,
    ) -> Result<()>;

    /// How many events are stored.
    ///
    /// # Errors
    ///
    /// The query failed.
    fn count_events(&mut self) -> Result<u64>;

    /// Inserts a received task as `PENDING` unless its id is stored; returns its record.
    ///
    /// # Errors
    ///
    /// The statement failed.
    fn receive_task(&mut self, task: &NewTask<'_>) -> Result<TaskRecord>;

    /// Records a task a worker is about to run: inserted `RUNNING` with one attempt if its id
    /// is new, else `RUNNING` with one more attempt unless it is `COMPLETED`; returns its
    /// record (a `COMPLETED` one unchanged).
    ///
    /// # Errors
    ///
    /// The statement failed.
    fn admit_task(&mut self, task: &NewTask<'_>) -> Result<TaskRecord> {
        let record = self.receive_task(task)?;
        if record.status == crate::model::TaskStatus::Completed {
            return Ok(record);
        }
        self.change_task(task.task_id, TaskChange::Start)?
            .ok_or(crate::error::Error::UnknownTask {
                task_id: task.task_id,
            })
    }

    /// The status and attempts of each of `ids` (distinct), `None` for one never stored,
    /// each stored one kept from other connections until the transaction ends; in as few
    /// statements as the backend can.
    ///
    /// # Errors
    ///
    /// A statement failed.
    fn claim_tasks(&mut self, ids: &[Uuid]) -> Result<Vec<Option<TaskState>>>;

    /// Opens a transaction (`BEGIN`, as [`transaction_control`](Self::transaction_control))
    /// and claims `ids` in it, as [`claim_tasks`](Self::claim_tasks); in one round trip
    /// where the backend can (PostgreSQL). The transaction may be open when it fails: the
    /// caller rolls it back.
    ///
    /// # Errors
    ///
    /// A statement failed.
    fn begin_claim(&mut self, ids: &[Uuid]) -> Result<Vec<Option<TaskState>>> {
        self.transaction_control("BEGIN")?;
        self.claim_tasks(ids)
    }

    /// Writes each run's row once (distinct ids; no [`TaskChange::Start`]): inserted with
    /// its outcome, or one attempt more and its outcome, unless `COMPLETED` or `CANCELLED`;
    /// returns the ids left as they were.
    ///
    /// # Errors
    ///
    /// A statement failed.
    fn record_runs(&mut self, runs: &[TaskRun<'_>]) -> Result<Vec<Uuid>>;

    /// Applies each change (distinct ids) in as few statements as the backend can; returns
    /// how many tasks were stored and changed.
    ///
    /// # Errors
    ///
    /// A statement failed.
    fn change_tasks(&mut self, changes: &[(Uuid, TaskChange<'_>)]) -> Result<usize> {
        let mut changed = 0;
        for (task_id, change) in changes {
            changed += usize::from(self.change_task(*task_id, *change)?.is_some());
        }
        Ok(changed)
    }

    /// Cancels a task that has not started: `CANCELLED`, recorded even before any worker
    /// received it (with an empty name and payload until one does). Returns the record when
    /// it is cancelled now, `None` when it is not PENDING (nor absent).
    ///
    /// # Errors
    ///
    /// The statement failed.
    fn cancel_task(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>> {
        let _ = task_id;
        Err(crate::error::Error::InvalidConfig {
            message: format!("{} cannot cancel tasks", self.describe()),
        })
    }

    /// Applies `change` to a task's record; returns the new record, or `None` if the task is
    /// not stored.
    ///
    /// # Errors
    ///
    /// The statement failed.
    fn change_task(&mut self, task_id: Uuid, change: TaskChange<'_>) -> Result<Option<TaskRecord>>;

    /// A task's record.
    ///
    /// # Errors
    ///
    /// The query failed.
    fn task(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>>;

    /// The records `filter` selects, newest first.
    ///
    /// # Errors
    ///
    /// The query failed.
    fn tasks(&mut self, filter: &TaskFilter) -> Result<Vec<TaskRecord>>;

    /// Runs `sql` (`BEGIN`, `COMMIT`, `ROLLBACK`) on the connection, for a transaction the
    /// caller spans over several statements (a worker's group commit).
    ///
    /// # Errors
    ///
    /// The statement failed.
    fn transaction_control(&mut self, sql: &str) -> Result<()> {
        Err(crate::error::Error::InvalidConfig {
            message: format!("{} cannot run `{sql}`", self.describe()),
        })
    }

    /// Commits a task store's transaction, and tells the connections that
    /// [`watch_tasks`](Self::watch_tasks) that tasks changed, where the database can
    /// (PostgreSQL: a `NOTIFY` in the same round trip).
    ///
    /// # Errors
    ///
    /// The commit failed.
    fn commit_tasks(&mut self) -> Result<()> {
        self.transaction_control("COMMIT")
    }

    /// Asks to be told of other connections' task commits ([`commit_tasks`]); whether the
    /// database can tell (PostgreSQL's `LISTEN`; not SQLite).
    ///
    /// [`commit_tasks`]: Self::commit_tasks
    ///
    /// # Errors
    ///
    /// The statement failed.
    fn watch_tasks(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// Waits up to `timeout` for a task commit told after [`watch_tasks`](Self::watch_tasks);
    /// whether one came (at once `false` where the database cannot tell).
    ///
    /// # Errors
    ///
    /// The connection failed.
    fn wait_for_tasks(&mut self, timeout: std::time::Duration) -> Result<bool> {
        let _ = timeout;
        Ok(false)
    }
}

/// How a store opens its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Creates what is missing (the SQLite file, the PostgreSQL schema, the tables), then
    /// migrates: for a store that writes.
    Create,
    /// Only a database that holds a store (then migrated); else [`Error::NoStore`], with
    /// nothing created: for a reader pointed at the wrong place.
    ///
    /// [`Error::NoStore`]: crate::Error::NoStore
    Existing,
}
