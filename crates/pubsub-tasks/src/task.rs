//! Task functions and what they are given: [`Task`], [`TaskFn`], the table of functions by
//! name.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use pubsub_core::serde_json::Value;
use pubsub_core::HandlerError;
use uuid::Uuid;

/// What a task function returns: its result (stored with the COMPLETED task), or an error.
///
/// An error is retried through the worker's delay queues, unless it is a
/// [`Permanent`](pubsub_core::Permanent) (the payload can never work): the task is then FAILED
/// and dead-lettered at once. A panic counts as an error.
pub type TaskResult = Result<Value, HandlerError>;

/// One run of a task, as its function sees it.
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    pub(crate) id: Uuid,
    pub(crate) name: &'a str,
    pub(crate) payload: &'a Value,
    pub(crate) attempt: u32,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) producer: Option<&'a str>,
}

impl<'a> Task<'a> {
    /// The task id: the submitter's `message_id` (see the [crate docs](crate#task-ids)).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The task's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The payload, a JSON object.
    pub fn payload(&self) -> &'a Value {
        self.payload
    }

    /// Which run of the task this is: 1 the first time, 2 on the first retry, and so on
    /// across replays from the dead-letter queue (after three failed attempts and a replay,
    /// 4): the task store's `attempts` once it runs. The retry policy counts only the
    /// attempts since the last replay.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The flow the task belongs to, if the submitter said.
    pub fn correlation_id(&self) -> Option<&'a str> {
        self.correlation_id
    }

    /// The service that submitted it, if it said.
    pub fn producer(&self) -> Option<&'a str> {
        self.producer
    }
}

/// A task function: any `Fn(&Task<'_>) -> TaskResult` that may run on several worker threads
/// at once.
pub trait TaskFn: Send + Sync + 'static {
    /// Runs the task.
    ///
    /// # Errors
    ///
    /// Why the task failed; see [`TaskResult`].
    fn run(&self, task: &Task<'_>) -> TaskResult;
}

impl<F> TaskFn for F
where
    F: Fn(&Task<'_>) -> TaskResult + Send + Sync + 'static,
{
    fn run(&self, task: &Task<'_>) -> TaskResult {
        self(task)
    }
}

/// A registered task: its function and the routing key its queue is bound with.
pub(crate) struct Registered {
    pub(crate) function: Arc<dyn TaskFn>,
    pub(crate) routing_key: String,
    /// The longest its function may run, if limited.
    pub(crate) time_limit: Option<std::time::Duration>,
}

/// The task functions of a worker, by name; shared by its threads.
#[derive(Default)]
pub(crate) struct Tasks {
    pub(crate) by_name: HashMap<String, Registered>,
}

impl Tasks {
    /// The task registered as `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Registered> {
        self.by_name.get(name)
    }

    /// The registered names, sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.names()
                    .into_iter()
                    .filter_map(|n| self.get(n).map(|r| (n, &r.routing_key))),
            )
            .finish()
    }
}
