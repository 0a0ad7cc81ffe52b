//! [`TaskStore`]: each task's status, result or error, and attempts.

use std::fmt;

use serde_json::Value;
use uuid::Uuid;

use crate::backend::{Backend, Opening};
use crate::database::Database;
use crate::error::{Error, Result};
use crate::model::{NewTask, TaskChange, TaskFilter, TaskRecord, TaskRun, TaskState};
use crate::open;

/// Where each task is: `PENDING` when received, `RUNNING` while a worker runs it, then
/// `COMPLETED` with its result or `FAILED` with its error; with the number of attempts.
///
/// It holds one connection: `Send`, not `Sync`; give each worker thread its own.
///
/// ```
/// use pubsub_store::{Database, NewTask, TaskStatus, TaskStore};
/// use uuid::Uuid;
///
/// let mut tasks = TaskStore::open(&Database::sqlite_in_memory())?;
/// let payload = serde_json::json!({ "to": "a@example.com" });
/// let task = NewTask {
///     task_id: Uuid::new_v4(),
///     task_name: "send-welcome",
///     payload: &payload,
///     routing_key: "routing.task.send.welcome",
///     correlation_id: None,
///     producer: Some("signup"),
///     time_limit: None,
/// };
/// assert_eq!(tasks.receive(&task)?.status, TaskStatus::Pending);
/// assert_eq!(tasks.start(task.task_id)?.attempts, 1);
/// tasks.complete(task.task_id, &serde_json::json!({ "sent": true }))?;
/// assert_eq!(tasks.get(task.task_id)?.unwrap().status, TaskStatus::Completed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TaskStore {
    backend: Box<dyn Backend>,
    database: Database,
    /// Whether a transaction [`begin`](Self::begin) opened is open.
    open: bool,
}

impl TaskStore {
    /// Opens the task store in `database`, creating or migrating its tables.
    ///
    /// # Errors
    ///
    /// As [`EventStore::open`](crate::EventStore::open).
    pub fn open(database: &Database) -> Result<TaskStore> {
        Ok(TaskStore {
            backend: open::open(database, Opening::Create)?,
            database: database.clone(),
            open: false,
        })
    }

    /// Opens the store `database` already holds, for reading: unlike
    /// [`open`](Self::open), it creates nothing (no SQLite file, no PostgreSQL schema, no
    /// table) where there is no store, so that a reader given the wrong database says so
    /// instead of reading an empty new one. A store of an older schema is migrated.
    ///
    /// # Errors
    ///
    /// [`Error::NoStore`](crate::Error::NoStore) when the file does not exist or holds no
    /// store's tables; otherwise as [`open`](Self::open).
    pub fn open_existing(database: &Database) -> Result<TaskStore> {
        Ok(TaskStore {
            backend: open::open(database, Opening::Existing)?,
            database: database.clone(),
            open: false,
        })
    }

    /// The database it uses.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Records a delivered task as `PENDING` if its id is new; returns its record either way
    /// (a task delivered again keeps its status, attempts and result).
    ///
    /// # Errors
    ///
    /// The statement failed.
    pub fn receive(&mut self, task: &NewTask<'_>) -> Result<TaskRecord> {
        self.backend.receive_task(task)
    }

    /// Records a task a worker is about to run, as [`receive`](Self::receive) then
    /// [`start`](Self::start) would, in one statement: `RUNNING` with one more attempt, unless
    /// it is `COMPLETED` (returned unchanged: a duplicate, not to run again).
    ///
    /// # Errors
    ///
    /// The statement failed.
    pub fn admit(&mut self, task: &NewTask<'_>) -> Result<TaskRecord> {
        self.backend.admit_task(task)
    }

    /// Reads the status and attempts of a batch of tasks a worker is about to run, in the
    /// order of `ids` (`None`: never stored), and keeps the stored ones from any other worker
    /// until the transaction ends (`FOR UPDATE` on PostgreSQL; SQLite's write lock, taken by
    /// [`begin`](Self::begin)). One statement on PostgreSQL.
    ///
    /// The tasks then run inside the transaction, and [`record_all`](Self::record_all)
    /// writes each one's row once: received, started and ended.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when an id is there twice, or no transaction is open; the
    /// database's error.
    pub fn claim_all(&mut self, ids: &[Uuid]) -> Result<Vec<Option<TaskState>>> {
        distinct(ids.iter().copied())?;
        if !self.open {
            return Err(Error::InvalidConfig {
                message: "claiming tasks needs an open transaction (`begin`)".into(),
            });
        }
        self.backend.claim_tasks(ids)
    }

    /// Opens a transaction ([`begin`](Self::begin)) and claims `ids` in it
    /// ([`claim_all`](Self::claim_all)): on PostgreSQL in one round trip, where the two take
    /// three (the claim's statement is sent with its ids, planned for them).
    ///
    /// On an error the transaction may be open: [`rollback`](Self::rollback) ends it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when an id is there twice, or a transaction is open already;
    /// the database's error.
    pub fn begin_claim(&mut self, ids: &[Uuid]) -> Result<Vec<Option<TaskState>>> {
        distinct(ids.iter().copied())?;
        self.none_open()?;
        // Open from here on, whatever fails: a rollback ends what the failure left.
        self.open = true;
        self.backend.begin_claim(ids)
    }

    /// Records tasks that ran inside the open transaction, each in one write: a new one
    /// inserted with its outcome (one attempt), a stored one given one attempt more and its
    /// outcome, with when it started and, once `COMPLETED` or `FAILED`, when it finished. One
    /// statement on PostgreSQL.
    ///
    /// Returns the ids left as they were: a task that another worker completed, or that was
    /// cancelled, while this one ran it (a task claimed by [`claim_all`](Self::claim_all)
    /// was stored then and is kept from others; a new one was not).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when an id is there twice, an outcome is
    /// [`TaskChange::Start`], or no transaction is open; the database's error.
    pub fn record_all(&mut self, runs: &[TaskRun<'_>]) -> Result<Vec<Uuid>> {
        distinct(runs.iter().map(|run| run.task.task_id))?;
        if let Some(run) = runs.iter().find(|r| matches!(r.outcome, TaskChange::Start)) {
            return Err(Error::InvalidConfig {
                message: format!(
                    "task {}: a run is recorded with how it ended, not as started",
                    run.task.task_id
                ),
            });
        }
        if !self.open {
            return Err(Error::InvalidConfig {
                message: "recording task runs needs an open transaction (`begin`)".into(),
            });
        }
        self.backend.record_runs(runs)
    }

    /// Applies each change of a batch (distinct ids), in one statement per kind on
    /// PostgreSQL.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when an id is there twice; [`Error::UnknownTask`] when a
    /// task was never received; the database's error.
    pub fn change_all(&mut self, changes: &[(Uuid, TaskChange<'_>)]) -> Result<()> {
        distinct(changes.iter().map(|(id, _)| *id))?;
        let changed = self.backend.change_tasks(changes)?;
        if changed < changes.len() {
            // Which one: the first not stored.
            for (task_id, _) in changes {
                if self.backend.task(*task_id)?.is_none() {
                    return Err(Error::UnknownTask { task_id: *task_id });
                }
            }
        }
        Ok(())
    }

    /// Cancels a task that has not started (PENDING, or not received by any worker yet: it
    /// is recorded CANCELLED, with an empty name and payload); a worker that receives it
    /// skips it. Cancelling a CANCELLED task again is fine.
    ///
    /// # Errors
    ///
    /// [`Error::NotCancellable`] when it runs, or ran (RUNNING, COMPLETED, FAILED); the
    /// database's error.
    pub fn cancel(&mut self, task_id: Uuid) -> Result<TaskRecord> {
        if let Some(record) = self.backend.cancel_task(task_id)? {
            return Ok(record);
        }
        let record = self
            .backend
            .task(task_id)?
            .ok_or(Error::UnknownTask { task_id })?;
        match record.status {
            crate::model::TaskStatus::Cancelled => Ok(record),
            status => Err(Error::NotCancellable {
                task_id,
                status: status.as_str(),
            }),
        }
    }

    /// A worker starts the task: `RUNNING`, one more attempt; returns the record.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTask`] if it was never received, or the statement failed.
    pub fn start(&mut self, task_id: Uuid) -> Result<TaskRecord> {
        self.change(task_id, TaskChange::Start)
    }

    /// The task returned `result`: `COMPLETED`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn complete(&mut self, task_id: Uuid, result: &Value) -> Result<()> {
        self.change(task_id, TaskChange::Complete(result)).map(drop)
    }

    /// An attempt failed with `error` and the task will be retried: back to `PENDING`, the
    /// error kept.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn retry_later(&mut self, task_id: Uuid, error: &str) -> Result<()> {
        self.change(task_id, TaskChange::RetryLater(error))
            .map(drop)
    }

    /// The task failed for good with `error`: `FAILED`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn fail(&mut self, task_id: Uuid, error: &str) -> Result<()> {
        self.change(task_id, TaskChange::Fail(error)).map(drop)
    }

    /// Applies `change` to the task's record; returns the new record.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn change(&mut self, task_id: Uuid, change: TaskChange<'_>) -> Result<TaskRecord> {
        self.backend
            .change_task(task_id, change)?
            .ok_or(Error::UnknownTask { task_id })
    }

    /// Opens a transaction that the next changes join, until [`commit`](Self::commit) or
    /// [`rollback`](Self::rollback): a worker's group commit, the statuses of a batch of
    /// tasks made durable together (on SQLite it holds the write lock until then). Without
    /// one, each change commits on its own.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when one is open already; the database's error.
    pub fn begin(&mut self) -> Result<()> {
        self.none_open()?;
        self.backend.transaction_control("BEGIN")?;
        self.open = true;
        Ok(())
    }

    /// Commits the transaction [`begin`](Self::begin) opened (nothing when none is open).
    ///
    /// # Errors
    ///
    /// The commit failed: nothing of the transaction is kept.
    pub fn commit(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.open) {
            return Ok(());
        }
        self.backend.commit_tasks()
    }

    /// Rolls back the transaction [`begin`](Self::begin) opened (nothing when none is open).
    ///
    /// # Errors
    ///
    /// The database's error (the connection is then best dropped).
    pub fn rollback(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.open) {
            return Ok(());
        }
        self.backend.transaction_control("ROLLBACK")
    }

    /// Asks to be told when another connection commits a transaction of this store
    /// ([`begin`](Self::begin) .. [`commit`](Self::commit): what a worker's batch is);
    /// whether the database can tell: PostgreSQL can (`LISTEN`), SQLite cannot. Then
    /// [`wait_for_commit`](Self::wait_for_commit) sleeps until one.
    ///
    /// # Errors
    ///
    /// The database's error.
    pub fn watch(&mut self) -> Result<bool> {
        self.backend.watch_tasks()
    }

    /// Waits up to `timeout` for a commit told after [`watch`](Self::watch); whether one
    /// came. Returns `false` at once where the database cannot tell.
    ///
    /// # Errors
    ///
    /// The connection failed.
    pub fn wait_for_commit(&mut self, timeout: std::time::Duration) -> Result<bool> {
        self.backend.wait_for_tasks(timeout)
    }

    /// Refuses a second transaction while one is open.
    fn none_open(&self) -> Result<()> {
        if self.open {
            return Err(Error::InvalidConfig {
                message: "a transaction of this task store is open already".into(),
            });
        }
        Ok(())
    }

    /// Whether a transaction [`begin`](Self::begin) opened is open.
    pub fn in_transaction(&self) -> bool {
        self.open
    }

    /// The task's record, if it was received.
    ///
    /// # Errors
    ///
    /// The query failed.
    pub fn get(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>> {
        self.backend.task(task_id)
    }

    /// The records `filter` selects, newest first.
    ///
    /// # Errors
    ///
    /// The query failed.
    pub fn list(&mut self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        self.backend.tasks(filter)
    }
}

/// A batch's ids must be distinct: one statement writes each row once.
fn distinct(ids: impl Iterator<Item = Uuid>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(Error::InvalidConfig {
                message: format!("task {id} is twice in one batch"),
            });
        }
    }
    Ok(())
}

impl fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}
