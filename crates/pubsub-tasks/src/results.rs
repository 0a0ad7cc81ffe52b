//! Waiting for a task's result: [`TaskHandle::wait`] reads the task store when a worker
//! commits: on PostgreSQL, told by the database of every worker's commits in any process
//! (`LISTEN`/`NOTIFY`); on SQLite, woken by this process's runners, and otherwise at a
//! backing-off interval (a worker in another process). Never in a hot loop.

use std::fmt;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pubsub_core::serde_json::Value;
use pubsub_store::{Database, TaskStatus, TaskStore};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The first and the longest pause between two reads of a task's record while waiting for a
/// worker of another process (one of this process wakes the waiters at its commit).
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// Commits of this process's runners, counted; waiters sleep on the condition variable.
static COMMITS: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

/// Called by a runner after each commit: wakes this process's waiters.
pub(crate) fn committed() {
    let (count, changed) = &COMMITS;
    *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    changed.notify_all();
}

/// The commits counted so far.
fn commits() -> u64 {
    *COMMITS.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps until a runner of this process commits after `seen`, or `pause` passes.
fn wait_for_commit(seen: u64, pause: Duration) {
    let (count, changed) = &COMMITS;
    let guard = count.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = changed
        .wait_timeout_while(guard, pause, |now| *now == seen)
        .unwrap_or_else(PoisonError::into_inner);
}

/// The next pause of a wait (pure): doubled, at most [`LONGEST_PAUSE`] and what is `left`.
fn next_pause(pause: Duration, left: Duration) -> Duration {
    (pause * 2).min(LONGEST_PAUSE).min(left)
}

/// How a task ended, as [`TaskHandle::wait`] finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// It completed with this result.
    Completed(Value),
    /// It failed for good (its retries spent, or a permanent error) with this error.
    Failed(String),
    /// It was cancelled before it started.
    Cancelled,
}

/// What the record says of a task: its outcome when it is done for good (pure).
fn outcome(
    status: TaskStatus,
    result: Option<Value>,
    error: Option<String>,
) -> Option<TaskOutcome> {
    match status {
        TaskStatus::Completed => Some(TaskOutcome::Completed(result.unwrap_or(Value::Null))),
        TaskStatus::Failed => Some(TaskOutcome::Failed(error.unwrap_or_default())),
        TaskStatus::Cancelled => Some(TaskOutcome::Cancelled),
        TaskStatus::Pending | TaskStatus::Running => None,
    }
}

/// A submitted task: its id, and, when its queue knows the task store
/// ([`TaskQueueBuilder::results`](crate::TaskQueueBuilder::results)), a way to wait for its
/// outcome.
#[derive(Clone)]
pub struct TaskHandle {
    id: Uuid,
    results: Option<Database>,
}

impl TaskHandle {
    pub(crate) fn new(id: Uuid, results: Option<Database>) -> TaskHandle {
        TaskHandle { id, results }
    }

    /// The task's id (the message's `message_id`, its record's key in the task store).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Waits up to `timeout` for the task to be done for good, and returns how it ended. A
    /// task that fails and will be retried is not done yet.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it is not done in time; [`Error::InvalidConfig`] when the
    /// queue has no task store to read; [`Error::Store`] when the store cannot be read.
    pub fn wait(&self, timeout: Duration) -> Result<TaskOutcome> {
        let Some(database) = &self.results else {
            return Err(Error::InvalidConfig {
                message: "waiting for a task needs its queue to know the task store \
                          (TaskQueueBuilder::results)"
                    .to_owned(),
            });
        };
        wait(database, self.id, timeout)
    }
}

/// Waits for task `id` in `database`'s task store (see [`TaskHandle::wait`]).
///
/// # Errors
///
/// As [`TaskHandle::wait`].
pub fn wait(database: &Database, id: Uuid, timeout: Duration) -> Result<TaskOutcome> {
    let started = Instant::now();
    let mut store: Option<TaskStore> = None;
    // Told of every worker's commits, in any process (PostgreSQL), before the first read.
    let mut listening = false;
    let mut pause = FIRST_PAUSE;
    loop {
        let seen = commits();
        // A store no worker created yet holds no task: wait on.
        if store.is_none() {
            match TaskStore::open_existing(database) {
                Ok(mut opened) => {
                    listening = opened.watch()?;
                    store = Some(opened);
                }
                Err(pubsub_store::Error::NoStore { .. }) => {}
                Err(e) => return Err(Error::Store(e)),
            }
        }
        if let Some(store) = store.as_mut() {
            if let Some(record) = store.get(id)? {
                if let Some(done) = outcome(record.status, record.result, record.error) {
                    return Ok(done);
                }
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Error::Timeout {
                task_id: id,
                waited: timeout,
            });
        }
        match store.as_mut() {
            // Woken by a worker's commit, or at the pause (a record written outside a
            // worker's transaction tells no one).
            Some(store) if listening => {
                store.wait_for_commit(pause.min(left))?;
            }
            _ => wait_for_commit(seen, pause.min(left)),
        }
        pause = next_pause(pause, left);
    }
}

impl From<TaskHandle> for Uuid {
    fn from(handle: TaskHandle) -> Uuid {
        handle.id
    }
}

impl fmt::Display for TaskHandle {
    /// The task id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id)
            .field("results", &self.results)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::serde_json::json;

    use super::*;

    #[test]
    fn a_task_is_done_when_completed_failed_or_cancelled() {
        use TaskStatus::*;
        assert_eq!(
            outcome(Completed, Some(json!(7)), None),
            Some(TaskOutcome::Completed(json!(7)))
        );
        assert_eq!(
            outcome(Failed, None, Some("smtp down".into())),
            Some(TaskOutcome::Failed("smtp down".into()))
        );
        assert_eq!(outcome(Cancelled, None, None), Some(TaskOutcome::Cancelled));
        assert_eq!(outcome(Pending, None, Some("retrying".into())), None);
        assert_eq!(outcome(Running, None, None), None);
    }

    #[test]
    fn the_pause_doubles_up_to_a_cap_and_the_time_left() {
        let ms = Duration::from_millis;
        assert_eq!(next_pause(ms(5), ms(10_000)), ms(10));
        assert_eq!(next_pause(ms(400), ms(10_000)), LONGEST_PAUSE);
        assert_eq!(next_pause(ms(400), ms(30)), ms(30));
    }

    #[test]
    fn a_commit_wakes_a_waiter_at_once() {
        let seen = commits();
        let waiter = std::thread::spawn(move || {
            let began = Instant::now();
            wait_for_commit(seen, Duration::from_secs(10));
            began.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        committed();
        assert!(waiter.join().unwrap() < Duration::from_secs(5));
    }
}
