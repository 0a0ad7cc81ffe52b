//! One delivered task: what its stored status and its outcome decide (pure functions with
//! table tests), running its function, and recording it on its own when a batch cannot (see
//! `runner.rs` for the batches).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_core::serde_json::Value;
use pubsub_core::text::{error_chain, truncate_chars};
use pubsub_core::{Event, HandlerError, HandlerResult, Metadata, Permanent};
use pubsub_store::{Fault, NewTask, TaskChange, TaskStatus, TaskStore};
use pubsub_subscriber::RetryPolicy;

use crate::names::{routing_key, Origin};
use crate::task::{Task, TaskFn, Tasks};

/// The handler's name in the subscriber's retry state and reports; keep it stable.
pub(crate) const HANDLER_NAME: &str = "run-task";

/// The longest error text stored with a task.
const MAX_ERROR_CHARS: usize = 2_000;

/// A function expected to run this long or longer runs after what its batch holds is
/// committed and answered: the other tasks must not wait for it.
pub(crate) const LONG: Duration = Duration::from_millis(2);

/// What to do with a delivered task, by its stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// It completed before (a duplicate delivery): ack without running it again.
    AlreadyCompleted,
    /// It was cancelled before it started: ack without running it.
    Cancelled,
    /// No function is registered under its name: FAILED, dead-lettered as poison.
    Unknown,
    /// Run it: new, waiting for a retry, failed before (replayed from the dead-letter queue),
    /// or RUNNING (a worker that died while running it, or a duplicate running elsewhere).
    Run,
}

/// What becomes of a delivered task whose stored status is `status`.
pub(crate) fn admit(status: TaskStatus, known: bool) -> Admit {
    match status {
        TaskStatus::Completed => Admit::AlreadyCompleted,
        TaskStatus::Cancelled => Admit::Cancelled,
        _ if !known => Admit::Unknown,
        _ => Admit::Run,
    }
}

/// Whether to commit what the batch holds before running a function expected to take
/// `expected` (`None`: it never ran on this worker, so it may be long).
pub(crate) fn commit_first(expected: Option<Duration>) -> bool {
    expected.is_none_or(|d| d >= LONG)
}

/// What to expect of a function's next run after one that took `ran`: a decaying maximum,
/// so that one long run is remembered at once and forgotten slowly.
pub(crate) fn expect(before: Option<Duration>, ran: Duration) -> Duration {
    before.map_or(ran, |b| (b * 7 / 8).max(ran))
}

/// How a function's run ended.
#[derive(Debug)]
pub(crate) enum Ran {
    /// It returned this result.
    Returned(Value),
    /// It returned an error, or panicked (the panic's message as the error).
    Failed(HandlerError),
}

/// The status a run leaves its task in, as the store records it (pure): COMPLETED with the
/// result, or the error's text, PENDING when the retry policy retries this delivery (its
/// `attempt`), else FAILED. The subscriber decides the same way, with the same function.
pub(crate) fn settle<'r>(ran: &'r Ran, retry: &RetryPolicy, attempt: u32) -> Settle<'r> {
    match ran {
        Ran::Returned(result) => Settle::Complete(result),
        Ran::Failed(error) => {
            let text = truncate_chars(&error_chain(&**error), MAX_ERROR_CHARS);
            let permanent = Permanent::is_permanent(&**error);
            match retry.retry_after_failure(attempt, permanent) {
                Some(_) => Settle::RetryLater(text),
                None => Settle::Fail(text),
            }
        }
    }
}

/// What a run's task becomes (see [`settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settle<'r> {
    Complete(&'r Value),
    RetryLater(String),
    Fail(String),
}

impl Settle<'_> {
    pub(crate) fn change(&self) -> TaskChange<'_> {
        match self {
            Settle::Complete(result) => TaskChange::Complete(result),
            Settle::RetryLater(text) => TaskChange::RetryLater(text),
            Settle::Fail(text) => TaskChange::Fail(text),
        }
    }
}

/// One delivered task, as the runner holds it: what it needs to record and run it.
pub(crate) struct Delivered {
    id: uuid::Uuid,
    name: String,
    pub(crate) meta: Metadata,
    pub(crate) payload: Value,
    pub(crate) origin: Origin,
    pub(crate) routing_key: String,
    pub(crate) function: Option<Arc<dyn TaskFn>>,
    /// The longest its function may run, if limited.
    pub(crate) time_limit: Option<Duration>,
}

impl Delivered {
    /// The task the event names, looked up in `tasks`.
    pub(crate) fn new(event: Event, meta: Metadata, tasks: &Tasks) -> Delivered {
        let registered = tasks.get(event.action());
        Delivered {
            id: event.event_id(),
            name: event.action().to_owned(),
            origin: Origin::of(&meta),
            routing_key: registered
                .map_or_else(|| routing_key(event.action()), |r| r.routing_key.clone()),
            function: registered.map(|r| r.function.clone()),
            time_limit: registered.and_then(|r| r.time_limit),
            payload: Value::Object(event.into_data()),
            meta,
        }
    }

    pub(crate) fn id(&self) -> uuid::Uuid {
        self.id
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its record as the store takes it.
    pub(crate) fn new_task(&self) -> NewTask<'_> {
        NewTask {
            task_id: self.id(),
            task_name: self.name(),
            payload: &self.payload,
            routing_key: &self.routing_key,
            correlation_id: self.origin.correlation_id.as_deref(),
            producer: self.origin.producer.as_deref(),
            time_limit: self.time_limit,
        }
    }

    /// Runs its function for the record's `attempts` (all its runs, this one included): here,
    /// or on a thread of its own when it has a time limit (see [`Delivered::run_limited`]);
    /// returns how it ended and how long it took.
    pub(crate) fn run(
        &self,
        function: &Arc<dyn TaskFn>,
        attempts: u32,
        abandoned: &Arc<AtomicU64>,
    ) -> (Ran, Duration) {
        if let Some(limit) = self.time_limit {
            let began = Instant::now();
            let ran = self.run_limited(function.clone(), attempts, limit, abandoned);
            return (ran, began.elapsed());
        }
        let task = Task {
            id: self.id(),
            name: self.name(),
            payload: &self.payload,
            // Every run counts, replays from the dead-letter queue included, as the record's
            // `attempts` does (the retry policy counts this delivery's attempts).
            attempt: attempts.max(1),
            correlation_id: self.origin.correlation_id.as_deref(),
            producer: self.origin.producer.as_deref(),
        };
        let began = Instant::now();
        let ran = match panic::catch_unwind(AssertUnwindSafe(|| function.run(&task))) {
            Ok(Ok(result)) => Ran::Returned(result),
            Ok(Err(error)) => Ran::Failed(error),
            Err(panic) => {
                Ran::Failed(format!("the task panicked: {}", panic_message(&*panic)).into())
            }
        };
        (ran, began.elapsed())
    }

    /// Runs its function on a thread of its own, waiting up to `limit`. Past it, the run is a
    /// failure ("timed out"), the thread is left to end on its own (Rust cannot kill it) and
    /// counted in `abandoned` until it does, and its result is discarded.
    fn run_limited(
        &self,
        function: Arc<dyn TaskFn>,
        attempts: u32,
        limit: Duration,
        abandoned: &Arc<AtomicU64>,
    ) -> Ran {
        /// The run's state: running, finished, or abandoned by the runner.
        const RUNNING: u8 = 0;
        const FINISHED: u8 = 1;
        const ABANDONED: u8 = 2;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (thread_state, counter) = (state.clone(), abandoned.clone());
        let (id, name, payload) = (self.id, self.name.clone(), self.payload.clone());
        let correlation_id = self.origin.correlation_id.clone();
        let producer = self.origin.producer.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("task {name}"))
            .spawn(move || {
                let task = Task {
                    id,
                    name: &name,
                    payload: &payload,
                    attempt: attempts.max(1),
                    correlation_id: correlation_id.as_deref(),
                    producer: producer.as_deref(),
                };
                let ran = panic::catch_unwind(AssertUnwindSafe(|| function.run(&task)))
                    .map_err(|panic| panic_message(&*panic).to_owned());
                let _ = tx.send(ran);
                if thread_state.swap(FINISHED, Ordering::AcqRel) == ABANDONED {
                    counter.fetch_sub(1, Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            return Ran::Failed(format!("the task's thread could not be started: {e}").into());
        }
        let received = match rx.recv_timeout(limit) {
            Ok(ran) => Some(ran),
            Err(_) if state.swap(ABANDONED, Ordering::AcqRel) == RUNNING => {
                abandoned.fetch_add(1, Ordering::Relaxed);
                None
            }
            // It finished as the limit passed: its result is there.
            Err(_) => rx.try_recv().ok(),
        };
        match received {
            Some(Ok(Ok(result))) => Ran::Returned(result),
            Some(Ok(Err(error))) => Ran::Failed(error),
            Some(Err(panic)) => Ran::Failed(format!("the task panicked: {panic}").into()),
            None => {
                log::warn!(
                    "task `{}` {} ran past its time limit of {limit:?}: FAILED, its thread left to end on its own",
                    self.name,
                    self.id
                );
                Ran::Failed(timed_out(limit).into())
            }
        }
    }

    /// Why it is FAILED when no function is registered under its name.
    pub(crate) fn unknown(&self, tasks: &Tasks) -> String {
        format!(
            "unknown task `{}`: this worker runs {}",
            self.name(),
            tasks.names().join(", ")
        )
    }
}

/// The error of a run past its time limit.
pub(crate) fn timed_out(limit: Duration) -> String {
    format!("timed out: the task ran longer than its time limit of {limit:?} (its result, if it comes, is discarded)")
}

/// The handler's answer for a run (pure): a success, or its error as the function gave it
/// (a `Permanent` one stays permanent: the subscriber dead-letters it).
pub(crate) fn answer(ran: Ran) -> HandlerResult {
    match ran {
        Ran::Returned(_) => Ok(()),
        Ran::Failed(error) => Err(error),
    }
}

/// One task on its own, each status committed by itself (no batch): recorded, its function
/// run at most once, its outcome recorded. What a batch falls back to when the store failed
/// inside it.
///
/// A store error before the function runs is the handler's error (an outage is retried; data
/// the store refuses is permanent), with the database's message in it. After the function
/// ran, see [`record_alone`].
pub(crate) fn run_alone(
    store: &mut TaskStore,
    task: &Delivered,
    tasks: &Tasks,
    retry: &RetryPolicy,
    abandoned: &Arc<AtomicU64>,
) -> HandlerResult {
    let id = task.id();
    let name = task.name();
    let record = match &task.function {
        Some(_) => store
            .admit(&task.new_task())
            .map_err(|e| before_run("recording the task as started", &e))?,
        None => store
            .receive(&task.new_task())
            .map_err(|e| before_run("recording the task", &e))?,
    };
    let function = match (
        admit(record.status, task.function.is_some()),
        &task.function,
    ) {
        (Admit::AlreadyCompleted, _) => {
            log::info!("task `{name}` {id} has completed already: not run again");
            return Ok(());
        }
        (Admit::Cancelled, _) => {
            log::info!("task `{name}` {id} was cancelled: not run");
            return Ok(());
        }
        (Admit::Run, Some(function)) => function,
        (Admit::Unknown | Admit::Run, _) => return fail_unknown(store, task, tasks),
    };
    let (ran, _) = task.run(function, record.attempts, abandoned);
    record_alone(store, task, ran, retry)
}

/// Records a task no function is registered for as FAILED; the permanent error to answer.
pub(crate) fn fail_unknown(
    store: &mut TaskStore,
    task: &Delivered,
    tasks: &Tasks,
) -> HandlerResult {
    let reason = task.unknown(tasks);
    Err(match store.fail(task.id(), &reason) {
        Ok(()) => Permanent::new(reason),
        Err(e) => Permanent::new(format!(
            "{reason}; recording it as FAILED failed: {}",
            error_chain(&e)
        )),
    }
    .into())
}

/// Records the outcome of a run on its own (its batch could not): its record taken again
/// (the batch's was rolled back) and settled.
///
/// The function ran: no store error may make the subscriber run it again. The outcome
/// decides (a success that cannot be recorded is dead-lettered, permanently, with the
/// store's cause, never run again; a failure is retried or dead-lettered as it would be), and
/// what can still be recorded is.
pub(crate) fn record_alone(
    store: &mut TaskStore,
    task: &Delivered,
    ran: Ran,
    retry: &RetryPolicy,
) -> HandlerResult {
    let (id, name) = (task.id(), task.name());
    let recorded = store
        .admit(&task.new_task())
        .and_then(|_| store.change(id, settle(&ran, retry, task.meta.attempt()).change()));
    match (ran, recorded) {
        (Ran::Returned(_), Ok(_)) => {
            log::debug!("task `{name}` {id} completed");
            Ok(())
        }
        (Ran::Returned(_), Err(e)) => {
            let cause = error_chain(&e);
            if e.fault() == Fault::Refused {
                // The record shows what happened, as far as the store takes it.
                let note = format!("the task ran, but the store refuses its result: {cause}");
                if let Err(again) = store.fail(id, &truncate_chars(&note, MAX_ERROR_CHARS)) {
                    log::error!(
                        "task `{name}` {id}: recording it failed too: {}",
                        error_chain(&again)
                    );
                }
            }
            log::error!("task `{name}` {id} ran to completion, but recording it failed: {cause}");
            Err(Permanent::new(format!(
                "the task ran to completion (not run again), but recording its result failed: {cause}"
            ))
            .into())
        }
        (Ran::Failed(error), Ok(_)) => Err(error),
        // The attempt failed as it did, and is retried or dead-lettered as it would be; the
        // reason says the store failed too.
        (Ran::Failed(error), Err(e)) => {
            let text = truncate_chars(&error_chain(&*error), MAX_ERROR_CHARS);
            let message = format!("{text}; recording the failure failed: {}", error_chain(&e));
            Err(if Permanent::is_permanent(&*error) {
                Permanent::new(message).into()
            } else {
                message.into()
            })
        }
    }
}

/// A store error before the task's function ran, as the handler's error: the database's
/// message in it (the dead-letter reason shows it), permanent when the store refuses the data
/// (retrying cannot help), else retried (an outage).
pub(crate) fn before_run(doing: &str, e: &pubsub_store::Error) -> HandlerError {
    let message = format!("{doing} failed (the task did not run): {}", error_chain(e));
    match e.fault() {
        Fault::Refused => Permanent::new(message).into(),
        Fault::Outage => message.into(),
    }
}

/// A panic's message, when it is text.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a text message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_by_stored_status() {
        use Admit::*;
        use TaskStatus::*;
        let check = |status, known, expected| {
            assert_eq!(admit(status, known), expected, "{status:?} known={known}");
        };
        check(Pending, true, Run);
        check(Running, true, Run);
        check(Failed, true, Run);
        check(Completed, true, AlreadyCompleted);
        check(Completed, false, AlreadyCompleted);
        check(Pending, false, Unknown);
        check(Failed, false, Unknown);
        check(TaskStatus::Cancelled, true, Admit::Cancelled);
        check(TaskStatus::Cancelled, false, Admit::Cancelled);
    }

    #[test]
    fn a_run_settles_its_task_as_the_retry_policy_says() {
        let retry = RetryPolicy::default(); // 3 attempts
        let result = serde_json::json!({ "ok": true });
        let returned = Ran::Returned(result.clone());
        assert_eq!(settle(&returned, &retry, 1), Settle::Complete(&result));
        let failed = Ran::Failed("smtp down".into());
        assert_eq!(
            settle(&failed, &retry, 1),
            Settle::RetryLater("smtp down".into())
        );
        assert_eq!(settle(&failed, &retry, 3), Settle::Fail("smtp down".into()));
        let permanent = Ran::Failed(Permanent::new("bad payload").into());
        assert_eq!(
            settle(&permanent, &retry, 1),
            Settle::Fail("bad payload".into())
        );
        let long = Ran::Failed("x".repeat(5_000).into());
        let Settle::RetryLater(text) = settle(&long, &retry, 1) else {
            panic!("retried");
        };
        assert!(
            text.chars().count() <= MAX_ERROR_CHARS + 3,
            "cut: {}",
            text.len()
        );
        assert!(answer(returned).is_ok());
        assert!(Permanent::is_permanent(&*answer(permanent).unwrap_err()));
    }

    #[test]
    fn a_function_expected_to_be_long_runs_after_a_commit() {
        let ms = Duration::from_millis;
        assert!(commit_first(None), "never ran here: may be long");
        assert!(!commit_first(Some(Duration::from_micros(30))));
        assert!(commit_first(Some(LONG)));
        assert!(commit_first(Some(ms(500))));
        // One long run is remembered at once, and forgotten slowly.
        assert_eq!(expect(None, ms(1)), ms(1));
        assert_eq!(expect(Some(ms(1)), ms(80)), ms(80));
        assert_eq!(expect(Some(ms(80)), ms(1)), ms(70));
        let mut d = ms(80);
        let mut runs = 0;
        while commit_first(Some(d)) {
            d = expect(Some(d), Duration::from_micros(20));
            runs += 1;
        }
        assert_eq!(runs, 28, "fast again after {runs} short runs");
    }

    #[test]
    fn store_errors_before_the_run_carry_their_cause() {
        let outage = pubsub_store::Error::Connect {
            database: "postgres://db".into(),
            source: "connection refused".into(),
        };
        let e = before_run("recording the task", &outage);
        assert!(!Permanent::is_permanent(&*e));
        assert_eq!(
            e.to_string(),
            "recording the task failed (the task did not run): cannot open the database postgres://db: connection refused"
        );
    }

    #[test]
    fn panic_messages() {
        let text: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_message(&*text), "boom");
        let owned: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(&*owned), "bang");
        let other: Box<dyn std::any::Any + Send> = Box::new(7);
        assert_eq!(panic_message(&*other), "(not a text message)");
    }
}
