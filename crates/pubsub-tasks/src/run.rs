//! Running one delivered task: what its stored status and the outcome decide (pure), and the
//! handler that records each step in the task store and runs the function.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use pubsub_core::serde_json::Value;
use pubsub_core::text::{error_chain, truncate_chars};
use pubsub_core::{Event, EventHandler, HandlerError, HandlerResult, Metadata, Permanent};
use pubsub_store::{Fault, NewTask, TaskStatus, TaskStore};
use pubsub_subscriber::RetryPolicy;

use crate::names::{routing_key, Origin};
use crate::task::{Task, Tasks};

/// The handler's name in the subscriber's retry state; keep it stable.
pub(crate) const HANDLER_NAME: &str = "run-task";

/// The longest error text stored with a task.
const MAX_ERROR_CHARS: usize = 2_000;

/// What to do with a delivered task, by its stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// It completed before (a duplicate delivery): ack without running it again.
    AlreadyCompleted,
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
        _ if !known => Admit::Unknown,
        _ => Admit::Run,
    }
}

/// The one handler of a worker thread: it decodes nothing (the subscriber's task envelope
/// did), records the task, runs its function and records the outcome. Its store is this
/// thread's own connection.
pub(crate) struct RunTask {
    pub(crate) tasks: Arc<Tasks>,
    pub(crate) store: Mutex<TaskStore>,
    pub(crate) retry: RetryPolicy,
}

impl EventHandler for RunTask {
    /// Records the task, runs its function at most once per delivery, records the outcome.
    ///
    /// A store error before the function runs is the handler's error (an outage is retried;
    /// data the store refuses is permanent), with the database's message in it. After the
    /// function ran, a store error never becomes an error the subscriber retries for it: the
    /// outcome the function had decides (a success is dead-lettered, permanently, with the
    /// store's cause, never run again; a failure is retried or dead-lettered as it would be),
    /// and what can still be recorded is.
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        let name = event.action();
        let id = event.event_id();
        let payload = Value::Object(event.data().clone());
        let origin = Origin::of(meta);
        let registered = self.tasks.get(name);
        let key = registered.map_or_else(|| routing_key(name), |r| r.routing_key.clone());
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let record = store
            .receive(&NewTask {
                task_id: id,
                task_name: name,
                payload: &payload,
                routing_key: &key,
                correlation_id: origin.correlation_id.as_deref(),
                producer: origin.producer.as_deref(),
            })
            .map_err(|e| before_run("recording the task", &e))?;
        let registered = match (admit(record.status, registered.is_some()), registered) {
            (Admit::AlreadyCompleted, _) => {
                log::info!("task `{name}` {id} has completed already: not run again");
                return Ok(());
            }
            (Admit::Run, Some(registered)) => registered,
            (Admit::Unknown | Admit::Run, _) => {
                let reason = format!(
                    "unknown task `{name}`: this worker runs {}",
                    self.tasks.names().join(", ")
                );
                return Err(match store.fail(id, &reason) {
                    Ok(()) => Permanent::new(reason),
                    Err(e) => Permanent::new(format!(
                        "{reason}; recording it as FAILED failed: {}",
                        error_chain(&e)
                    )),
                }
                .into());
            }
        };
        let started = store
            .start(id)
            .map_err(|e| before_run("marking the task RUNNING", &e))?;
        let task = Task {
            id,
            name,
            payload: &payload,
            // Every run counts, replays from the dead-letter queue included, as the record's
            // `attempts` does (the retry policy counts this delivery's attempts).
            attempt: started.attempts.max(1),
            correlation_id: origin.correlation_id.as_deref(),
            producer: origin.producer.as_deref(),
        };
        let ran = panic::catch_unwind(AssertUnwindSafe(|| registered.function.run(&task)));
        // The function ran: from here on, no store error may make the subscriber run it again.
        let error: HandlerError = match ran {
            Ok(Ok(result)) => {
                let Err(e) = store.complete(id, &result) else {
                    log::debug!("task `{name}` {id} completed on attempt {}", task.attempt);
                    return Ok(());
                };
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
                log::error!(
                    "task `{name}` {id} ran to completion, but recording it failed: {cause}"
                );
                return Err(Permanent::new(format!(
                    "the task ran to completion (not run again), but recording its result failed: {cause}"
                ))
                .into());
            }
            Ok(Err(error)) => error,
            Err(panic) => format!("the task panicked: {}", panic_message(&*panic)).into(),
        };
        let text = truncate_chars(&error_chain(&*error), MAX_ERROR_CHARS);
        // The subscriber decides by the same function: the store says what it will do.
        let permanent = Permanent::is_permanent(&*error);
        let recorded = match self.retry.retry_after_failure(meta.attempt(), permanent) {
            Some(_) => store.retry_later(id, &text),
            None => store.fail(id, &text),
        };
        match recorded {
            Ok(()) => Err(error),
            // The attempt failed as it did, and is retried or dead-lettered as it would be;
            // the reason says the store failed too.
            Err(e) => {
                let message = format!("{text}; recording the failure failed: {}", error_chain(&e));
                Err(if permanent {
                    Permanent::new(message).into()
                } else {
                    message.into()
                })
            }
        }
    }

    fn name(&self) -> &str {
        HANDLER_NAME
    }
}

/// A store error before the task's function ran, as the handler's error: the database's
/// message in it (the dead-letter reason shows it), permanent when the store refuses the data
/// (retrying cannot help), else retried (an outage).
fn before_run(doing: &str, e: &pubsub_store::Error) -> HandlerError {
    let message = format!("{doing} failed (the task did not run): {}", error_chain(e));
    match e.fault() {
        Fault::Refused => Permanent::new(message).into(),
        Fault::Outage => message.into(),
    }
}

/// A panic's message, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
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
