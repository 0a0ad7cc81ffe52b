//! The task runner: a worker's tasks run on a thread of their own, by batch, each task's row
//! written once and the batch committed once (group commit).
//!
//! The worker's subscriber hands each decoded task over as a [`Job`] ([`TaskDispatcher`]) and
//! keeps consuming up to its prefetch; the runner takes every job waiting (a batch), opens a
//! transaction and reads what the store holds of them (`TaskStore::begin_claim`: one round
//! trip, the stored ones locked), runs their functions one after the other, writes each task's row
//! once with its outcome (`TaskStore::record_all`: received, started and finished, one
//! statement), commits, and only then answers them: the subscriber acks a task once its
//! final status is committed. Nobody outside sees a task of the batch `RUNNING`: the batch
//! is one transaction, and the row keeps when the task started and finished.
//!
//! A function expected to be long ([`LONG`](crate::run::LONG)) is recorded `RUNNING` and
//! committed with what the batch holds so far, which is answered, and it runs outside any
//! transaction: it holds back no other task, and it is seen running.
//!
//! When the store fails inside a batch, the batch is rolled back and each of its tasks is
//! recorded on its own, as without batches ([`run_alone`], [`record_alone`]): a function that
//! ran is never run again for it, data the store refuses is recorded and dead-lettered as
//! before, and an outage is retried.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use pubsub_core::envelope::TASK_DOMAIN;
use pubsub_core::text::error_chain;
use pubsub_core::{HandlerResult, Permanent};
use pubsub_registry::{HandlerFailure, HandlerOutcome, InvocationResult};
use pubsub_store::{Database, TaskChange, TaskRun, TaskStore};
use pubsub_subscriber::{Dispatcher, Done, Job, RetryPolicy};
use time::OffsetDateTime;

use crate::run::{
    admit, answer, commit_first, expect, fail_unknown, record_alone, run_alone, settle, Admit,
    Delivered, Ran, HANDLER_NAME,
};
use crate::task::Tasks;

/// Hands a worker's decoded tasks to its runner thread.
pub(crate) struct TaskDispatcher {
    jobs: Sender<Job>,
}

impl Dispatcher for TaskDispatcher {
    fn dispatch(&self, job: Job) {
        // A runner that is gone drops the job, which answers it as failed: retried.
        let _ = self.jobs.send(job);
    }
}

/// What a runner needs: the functions, its store, the retry policy the subscriber follows.
pub(crate) struct Runner {
    pub(crate) tasks: Arc<Tasks>,
    pub(crate) database: Database,
    pub(crate) store: TaskStore,
    pub(crate) retry: RetryPolicy,
    /// The store's commits, counted for the worker's stats.
    pub(crate) commits: Arc<AtomicU64>,
    /// Threads of timed-out functions still running.
    pub(crate) abandoned: Arc<AtomicU64>,
}

impl Runner {
    /// Starts the runner's thread; its dispatcher, for the worker's subscriber. The thread
    /// ends when the dispatcher is dropped (the subscriber is gone), after the batch it runs.
    pub(crate) fn start(self, name: String) -> std::io::Result<Arc<TaskDispatcher>> {
        let (jobs, taken) = crossbeam_channel::unbounded();
        let mut running = Running {
            runner: self,
            durations: HashMap::new(),
            subscription: format!("{HANDLER_NAME}@{TASK_DOMAIN}.*"),
        };
        thread::Builder::new()
            .name(name)
            .spawn(move || running.run(&taken))?;
        Ok(Arc::new(TaskDispatcher { jobs }))
    }
}

/// A runner on its thread.
struct Running {
    runner: Runner,
    /// How long each function is expected to run, by task name.
    durations: HashMap<String, Duration>,
    /// The handler's subscription id in the answers (the retry state keeps it).
    subscription: String,
}

/// A task of a batch and where it is.
struct Item {
    task: Delivered,
    done: Done,
    state: State,
}

enum State {
    /// Not read yet.
    New,
    /// Read, and to run: this run's attempt number. Its row is not written yet.
    Claimed(u32),
    /// COMPLETED or CANCELLED before: answered without running, nothing to record.
    Skipped,
    /// No function for it: FAILED with this reason.
    Unknown(String),
    /// Its function ran, started then (its row to write whole), or with its row `RUNNING`
    /// already (`None`: a long one, recorded before it ran).
    Ran(Ran, Option<OffsetDateTime>),
}

/// The longest run of tasks in one batch before it is split at a duplicate: the ids of one
/// statement must be distinct.
fn split_at_duplicate(ids: &[uuid::Uuid]) -> usize {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter()
        .position(|id| !seen.insert(*id))
        .unwrap_or(ids.len())
}

impl Running {
    fn run(&mut self, jobs: &Receiver<Job>) {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        loop {
            let first = match waiting.pop_front() {
                Some(job) => job,
                None => match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            batch.extend(waiting.drain(..));
            batch.extend(jobs.try_iter());
            let ids: Vec<uuid::Uuid> = batch.iter().map(|j| j.event().event_id()).collect();
            let rest = batch.split_off(split_at_duplicate(&ids));
            waiting.extend(rest);
            let items: Vec<Item> = batch
                .into_iter()
                .map(|job| {
                    let (event, meta, _, done) = job.into_parts();
                    Item {
                        task: Delivered::new(event, meta, &self.runner.tasks),
                        done,
                        state: State::New,
                    }
                })
                .collect();
            // A bug here must not stop the worker: the batch's jobs are dropped unanswered
            // (retried by the policy), and the store starts afresh.
            if panic::catch_unwind(AssertUnwindSafe(|| self.batch(items))).is_err() {
                log::error!("the task runner panicked on a batch: its tasks are retried");
                self.reopen();
            }
        }
        log::debug!("task runner stopped");
    }

    /// Runs a batch: reads, runs, records, commits, answers.
    fn batch(&mut self, mut items: Vec<Item>) {
        if let Err(e) = self.claim_all(&mut items) {
            return self.fail_batch(items, "reading", &e);
        }
        let mut segment = Vec::with_capacity(items.len());
        let mut items = items.into_iter();
        while let Some(mut item) = items.next() {
            if let State::Claimed(attempts) = item.state {
                let Some(function) = item.task.function.clone() else {
                    // Not reached (only tasks with a function are claimed): answered as not run.
                    segment.push(item);
                    continue;
                };
                let name = item.task.name().to_owned();
                let mut since = Some(OffsetDateTime::now_utc());
                let mut attempts = attempts;
                if commit_first(self.durations.get(&name).copied()) {
                    // What the batch holds does not wait for a function that may be long,
                    // nor holds the database's locks while it runs: it is recorded RUNNING
                    // and committed with them, and it runs outside any transaction.
                    let record = match self.runner.store.admit(&item.task.new_task()) {
                        Ok(record) => record,
                        Err(e) => {
                            segment.push(item);
                            segment.extend(items);
                            return self.fail_batch(segment, "recording as started", &e);
                        }
                    };
                    if matches!(
                        admit(record.status, true),
                        Admit::AlreadyCompleted | Admit::Cancelled
                    ) {
                        // Done meanwhile (its claim's lock went with an earlier commit).
                        item.state = State::Skipped;
                        segment.push(item);
                        continue;
                    }
                    attempts = record.attempts;
                    self.commit(std::mem::take(&mut segment));
                    since = None;
                }
                let (ran, took) = item.task.run(&function, attempts, &self.runner.abandoned);
                let before = self.durations.get(&name).copied();
                self.durations.insert(name, expect(before, took));
                item.state = State::Ran(ran, since);
            }
            segment.push(item);
        }
        self.commit(segment);
    }

    /// The store failed inside a batch: rolled back, each task recorded on its own.
    fn fail_batch(&mut self, items: Vec<Item>, doing: &str, e: &pubsub_store::Error) {
        log::warn!(
            "{doing} {} task(s) failed, each is recorded alone: {}",
            items.len(),
            error_chain(e)
        );
        self.rollback();
        self.alone(items);
    }

    /// Opens the batch's transaction and reads what the store holds of its tasks (those
    /// with a function: one round trip on PostgreSQL, its `BEGIN` included, the rows locked
    /// until the commit); records the others as received, to be FAILED.
    fn claim_all(&mut self, items: &mut [Item]) -> pubsub_store::Result<()> {
        let store = &mut self.runner.store;
        let known: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].task.function.is_some())
            .collect();
        let ids: Vec<uuid::Uuid> = known.iter().map(|&i| items[i].task.id()).collect();
        for (i, stored) in known.into_iter().zip(store.begin_claim(&ids)?) {
            items[i].state = match stored {
                None => State::Claimed(1),
                Some(state) => match admit(state.status, true) {
                    Admit::AlreadyCompleted | Admit::Cancelled => State::Skipped,
                    Admit::Run | Admit::Unknown => State::Claimed(state.attempts + 1),
                },
            };
        }
        for item in items.iter_mut().filter(|i| i.task.function.is_none()) {
            let record = store.receive(&item.task.new_task())?;
            item.state = match admit(record.status, false) {
                Admit::AlreadyCompleted | Admit::Cancelled => State::Skipped,
                Admit::Run | Admit::Unknown => {
                    State::Unknown(item.task.unknown(&self.runner.tasks))
                }
            };
        }
        Ok(())
    }

    /// Records the outcomes of `segment` (in a transaction of their own when none is open):
    /// the rows of the tasks that ran inside it written whole, those recorded `RUNNING`
    /// before changed; commits what the transaction holds, then answers each. On a store
    /// failure, rolls back and records each alone.
    fn commit(&mut self, mut segment: Vec<Item>) {
        let retry = &self.runner.retry;
        let settled: Vec<_> = segment
            .iter()
            .filter_map(|item| match &item.state {
                State::Ran(ran, since) => {
                    Some((item, *since, settle(ran, retry, item.task.meta.attempt())))
                }
                State::Unknown(reason) => {
                    Some((item, None, crate::run::Settle::Fail(reason.clone())))
                }
                _ => None,
            })
            .collect();
        let runs: Vec<TaskRun<'_>> = settled
            .iter()
            .filter_map(|(item, since, s)| {
                since.map(|started_at| TaskRun {
                    task: item.task.new_task(),
                    started_at,
                    outcome: s.change(),
                })
            })
            .collect();
        let changes: Vec<(uuid::Uuid, TaskChange<'_>)> = settled
            .iter()
            .filter(|(_, since, _)| since.is_none())
            .map(|(item, _, s)| (item.task.id(), s.change()))
            .collect();
        let store = &mut self.runner.store;
        let writes = store.in_transaction() || !changes.is_empty() || !runs.is_empty();
        let committed = (|| {
            if writes && !store.in_transaction() {
                store.begin()?;
            }
            let left = store.record_all(&runs)?;
            store.change_all(&changes)?;
            store.commit()?;
            Ok::<_, pubsub_store::Error>(left)
        })();
        drop(runs);
        drop(changes);
        drop(settled);
        match committed {
            Ok(left) => {
                if writes {
                    self.runner.commits.fetch_add(1, Ordering::Relaxed);
                }
                crate::results::committed();
                for item in segment.iter_mut().filter(|i| left.contains(&i.task.id())) {
                    log::warn!(
                        "task `{}` {} ran here while another worker completed it (it was \
                         delivered twice at once), or it was cancelled meanwhile: its record \
                         is left as that says",
                        item.task.name(),
                        item.task.id()
                    );
                    item.state = State::Skipped;
                }
                for item in segment {
                    let result = match item.state {
                        State::Ran(ran, _) => answer(ran),
                        State::Unknown(reason) => Err(Permanent::new(reason).into()),
                        State::Skipped => {
                            log::info!(
                                "task `{}` {} has completed already, or was cancelled: not run",
                                item.task.name(),
                                item.task.id()
                            );
                            Ok(())
                        }
                        // Not reached: every item of a segment was read and ran.
                        State::New | State::Claimed(_) => Err("the task did not run".into()),
                    };
                    self.finish(item.done, result);
                }
            }
            Err(e) => self.fail_batch(segment, "recording", &e),
        }
    }

    /// Each task on its own, each status committed by itself: those that ran recorded, the
    /// others recorded and run.
    fn alone(&mut self, items: Vec<Item>) {
        for item in items {
            let runner = &mut self.runner;
            let result = match item.state {
                State::Ran(ran, _) => {
                    record_alone(&mut runner.store, &item.task, ran, &runner.retry)
                }
                State::Unknown(_) => fail_unknown(&mut runner.store, &item.task, &runner.tasks),
                State::New | State::Claimed(_) | State::Skipped => run_alone(
                    &mut runner.store,
                    &item.task,
                    &runner.tasks,
                    &runner.retry,
                    &runner.abandoned,
                ),
            };
            self.finish(item.done, result);
        }
        crate::results::committed();
    }

    fn finish(&self, done: Done, result: HandlerResult) {
        let outcome = HandlerOutcome::new(
            HANDLER_NAME,
            &self.subscription,
            result.map_err(HandlerFailure::returned),
        );
        done.finish(InvocationResult::from_outcomes(vec![outcome]));
    }

    /// Rolls back what the store's transaction holds; a store that cannot is opened again.
    fn rollback(&mut self) {
        if let Err(e) = self.runner.store.rollback() {
            log::warn!("rolling back the task store: {}", error_chain(&e));
            self.reopen();
        }
    }

    /// A new connection to the store (the old one failed), if it can be had now; else the
    /// old one stays, and its next statement says why.
    fn reopen(&mut self) {
        match TaskStore::open(&self.runner.database) {
            Ok(store) => self.runner.store = store,
            Err(e) => log::warn!("reopening the task store failed: {}", error_chain(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::before_run;

    #[test]
    fn a_batch_is_split_at_its_first_duplicate() {
        let [a, b, c] = [1u128, 2, 3].map(uuid::Uuid::from_u128);
        assert_eq!(split_at_duplicate(&[]), 0);
        assert_eq!(split_at_duplicate(&[a, b, c]), 3);
        assert_eq!(split_at_duplicate(&[a, b, a, c]), 2);
        assert_eq!(split_at_duplicate(&[a, a]), 1);
    }

    #[test]
    fn an_unknown_reason_and_a_before_run_error_say_what_happened() {
        let e = before_run(
            "recording the task as started",
            &pubsub_store::Error::Connect {
                database: "sqlite:x".into(),
                source: "gone".into(),
            },
        );
        assert!(e.to_string().contains("did not run"));
    }
}
