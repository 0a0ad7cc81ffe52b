//! [`TaskQueue`]: submitting tasks with publisher confirms, from any thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use pubsub_amqp::{Connection, ExchangeConfig, ExchangeKind};
use pubsub_core::envelope::{Envelope, TASK_DOMAIN};
use pubsub_core::serde_json::Value;
use pubsub_core::text::json_type;
use pubsub_core::Event;
use pubsub_publisher::{
    EventPublisher, PublishOptions, PublishingThread, SharedPublisher, Unroutable,
};
use uuid::Uuid;

use crate::error::{check_task_name, Error, Result};
use crate::names::{routing_key, CORRELATION_ID_HEADER, PRODUCER_APP_HEADER};
use crate::results::TaskHandle;
use crate::schedule::{check_delay, delay_bucket, Scheduler};

/// The exchange tasks go to unless told otherwise: seed 003's `task.exchange` (its queue is
/// `tasks`, [`DEFAULT_QUEUE`](crate::DEFAULT_QUEUE)). Before, the default was `tasks`: a
/// queue declared then stays bound to that exchange (see `docs/task-queue.md`).
pub const DEFAULT_EXCHANGE: &str = "task.exchange";

/// The producer named in `producer_app` and `app_id` unless told otherwise.
pub const DEFAULT_PRODUCER: &str = "pubsub";

/// How many submits wait in the publishing thread's queue at most (a submitting thread that
/// finds it full waits for room).
const QUEUE: usize = 1024;

/// The exchange tasks travel through: a durable direct exchange.
pub fn exchange_config() -> ExchangeConfig {
    ExchangeConfig {
        kind: ExchangeKind::Direct,
        ..ExchangeConfig::default()
    }
}

/// Submits tasks to a direct exchange in seed 003's wire format and waits for the broker's
/// confirm.
///
/// A task travels as the body `{"task_name": ..., "payload": {...}}`, persistent, with the
/// routing key [`routing_key`](crate::routing_key)`(task_name)`
/// (`routing.task.<action>.<entity>`), the headers `producer_app` and `correlation_id`, the
/// AMQP properties `app_id` (the producer), `correlation_id`, and `message_id`, the task id:
/// a new UUID v4, which [`submit`](Self::submit) returns and workers record the task under.
///
/// A task no worker's queue is bound for is an error ([`Error::Publish`] with
/// [`pubsub_publisher::Error::Unroutable`]), not a silent loss: start a worker (or declare
/// its queue, [`TaskWorker::setup`](crate::TaskWorker::setup)) first.
///
/// A queue is a cheap handle (`Clone + Send + Sync`): any thread can submit, and the submits
/// of threads submitting at once share the broker's round trips. One publishing thread
/// behind every clone owns the connection and reconnects it
/// ([`SharedPublisher`]); it is joined, and the connection closed, when the last clone is
/// dropped or [`close`](TaskQueue::close)d.
#[derive(Debug, Clone)]
pub struct TaskQueue {
    // Declared before `owner`, so dropped first: the last clone lets go of its handle to the
    // publishing thread before it joins the thread.
    publisher: SharedPublisher,
    owner: Arc<Owner>,
}

/// What every clone of one queue shares; the last one dropped joins the publishing thread.
#[derive(Debug)]
struct Owner {
    exchange: String,
    producer: String,
    /// Where scheduled tasks wait (see `schedule.rs`).
    scheduler: Scheduler,
    /// The task store the queue's handles wait on, if any.
    results: Option<pubsub_store::Database>,
    /// `None` only once joined.
    thread: Option<PublishingThread>,
}

impl Owner {
    /// Joins the publishing thread (every handle to it must be gone): how closing the
    /// connection went.
    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(thread) => Ok(thread.join()?),
            None => Ok(()),
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Err(e) = self.scheduler.close() {
            log::debug!("closing the task scheduler of `{}`: {e}", self.exchange);
        }
        if let Err(e) = self.join() {
            log::debug!("closing the task queue of `{}`: {e}", self.exchange);
        }
    }
}

/// Per-submit options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// The flow the task belongs to (the `correlation_id` header and property); the task id
    /// when unset, as seed 003's consumers expect one.
    pub correlation_id: Option<String>,
    /// The routing key instead of [`routing_key`](crate::routing_key)`(task_name)`: a key a
    /// worker binds with [`TaskWorkerBuilder::bind`](crate::TaskWorkerBuilder::bind).
    pub routing_key: Option<String>,
    /// Run it no earlier than this from now (see [`TaskQueue::submit_after`]); `None` or
    /// zero: at once.
    pub delay: Option<std::time::Duration>,
    /// Its priority (the AMQP `priority` property): in a queue with priorities
    /// ([`TaskWorkerBuilder::max_priority`](crate::TaskWorkerBuilder::max_priority)), a higher
    /// one is delivered first among those waiting; other queues ignore it.
    pub priority: Option<u8>,
}

/// Builds a [`TaskQueue`]; see [`TaskQueue::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TaskQueueBuilder {
    connection: Connection,
    exchange: String,
    producer: String,
    declare: bool,
    results: Option<pubsub_store::Database>,
    queue: String,
}

impl TaskQueueBuilder {
    /// The exchange to submit to ([`DEFAULT_EXCHANGE`], `task.exchange`, by default).
    pub fn exchange(mut self, exchange: &str) -> Self {
        exchange.clone_into(&mut self.exchange);
        self
    }

    /// The submitting service's name: the `producer_app` header and the `app_id` property
    /// ([`DEFAULT_PRODUCER`] by default).
    pub fn producer(mut self, producer: &str) -> Self {
        producer.clone_into(&mut self.producer);
        self
    }

    /// The workers' queue, where scheduled tasks go once their delay has passed
    /// ([`DEFAULT_QUEUE`](crate::DEFAULT_QUEUE), `tasks`, by default; see
    /// [`TaskQueue::submit_after`]).
    pub fn queue(mut self, queue: &str) -> Self {
        queue.clone_into(&mut self.queue);
        self
    }

    /// The task store the workers record the tasks in: the handles [`TaskQueue::submit`]
    /// returns can then [`wait`](crate::TaskHandle::wait) for their outcome.
    pub fn results(mut self, database: pubsub_store::Database) -> Self {
        self.results = Some(database);
        self
    }

    /// Whether to declare the exchange (a durable direct exchange) before submitting (on by
    /// default); off, it must exist.
    pub fn declare_exchange(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// Opens the publishing channel, declares the exchange and starts the publishing thread.
    ///
    /// # Errors
    ///
    /// [`Error::Publish`]: the connection is gone, the exchange exists with another kind, or
    /// the thread cannot be started.
    pub fn build(self) -> Result<TaskQueue> {
        if self.queue.is_empty() {
            return Err(Error::InvalidConfig {
                message: "the workers' queue needs a name".to_owned(),
            });
        }
        let scheduler = Scheduler::new(self.connection.config().clone(), self.queue);
        let publisher = EventPublisher::builder(self.connection, &self.exchange)
            .app_id(&self.producer)
            .envelope(Envelope::Task)
            .unroutable(Unroutable::Error)
            .declare_exchange(self.declare.then(exchange_config))
            .build()?;
        let exchange = publisher.exchange().to_owned();
        let (publisher, thread) = SharedPublisher::spawn(publisher, QUEUE)?;
        Ok(TaskQueue {
            publisher,
            owner: Arc::new(Owner {
                exchange,
                producer: self.producer,
                scheduler,
                results: self.results,
                thread: Some(thread),
            }),
        })
    }
}

impl TaskQueue {
    /// Starts configuring a queue that owns `connection`.
    pub fn builder(connection: Connection) -> TaskQueueBuilder {
        TaskQueueBuilder {
            connection,
            exchange: DEFAULT_EXCHANGE.to_owned(),
            producer: DEFAULT_PRODUCER.to_owned(),
            declare: true,
            results: None,
            queue: crate::names::DEFAULT_QUEUE.to_owned(),
        }
    }

    /// The exchange tasks are submitted to.
    pub fn exchange(&self) -> &str {
        &self.owner.exchange
    }

    /// Submits the task `task_name` with `payload` (a JSON object) and returns its handle
    /// (its id, and a way to wait for its outcome: see [`TaskQueueBuilder::results`]) once
    /// the broker has confirmed it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTaskName`], [`Error::InvalidPayload`]; [`Error::Publish`] when the
    /// broker did not confirm it, or no queue is bound for its routing key.
    pub fn submit(&self, task_name: &str, payload: Value) -> Result<TaskHandle> {
        self.submit_with(task_name, payload, &SubmitOptions::default())
    }

    /// [`submit`](Self::submit) with options: a correlation id, another routing key.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub fn submit_with(
        &self,
        task_name: &str,
        payload: Value,
        options: &SubmitOptions,
    ) -> Result<TaskHandle> {
        let task = task_event(task_name, payload)?;
        let id = task.event_id();
        let mut publish = publish_options(&task, &self.owner.producer, options);
        let delay = options.delay.filter(|d| !d.is_zero());
        let publisher = match delay {
            None => self.publisher.clone(),
            Some(delay) => {
                check_delay(delay)?;
                let (publisher, delay_queue) = self.owner.scheduler.route(delay_bucket(delay))?;
                publish.routing_key = Some(delay_queue);
                publisher
            }
        };
        publisher
            .publish(task, publish)
            .map_err(|e| Error::Publish(e.error().clone()))?;
        match delay {
            None => log::debug!("submitted task `{task_name}` {id}"),
            Some(delay) => log::debug!(
                "submitted task `{task_name}` {id} to run in {delay:?} (queue `{}`)",
                self.owner.scheduler.queue()
            ),
        }
        Ok(self.handle(id))
    }

    /// Submits a task to run no earlier than `delay` from now: it waits in a delay queue of
    /// the broker (see the crate's documentation on scheduled tasks: the delay is rounded up
    /// to at most 1/16 more, 100 ms steps below a second), then goes to the workers' queue
    /// ([`TaskQueueBuilder::queue`]), whatever its routing key. It survives a restart of the
    /// broker and of the workers.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit); [`Error::InvalidConfig`] for a delay longer than
    /// [`MAX_DELAY`](crate::MAX_DELAY).
    pub fn submit_after(
        &self,
        delay: std::time::Duration,
        task_name: &str,
        payload: Value,
    ) -> Result<TaskHandle> {
        let options = SubmitOptions {
            delay: Some(delay),
            ..SubmitOptions::default()
        };
        self.submit_with(task_name, payload, &options)
    }

    /// Submits a task to run no earlier than `at` (see [`submit_after`](Self::submit_after));
    /// a time past runs it at once.
    ///
    /// # Errors
    ///
    /// As [`submit_after`](Self::submit_after).
    pub fn submit_at(
        &self,
        at: std::time::SystemTime,
        task_name: &str,
        payload: Value,
    ) -> Result<TaskHandle> {
        let delay = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        self.submit_after(delay, task_name, payload)
    }

    fn handle(&self, id: Uuid) -> TaskHandle {
        TaskHandle::new(id, self.owner.results.clone())
    }

    /// Submits several tasks as one pipelined batch (the confirms are collected after the
    /// whole batch is sent: about one round trip instead of one per task) and returns one
    /// outcome per task, in order: its handle, or why it was not submitted.
    pub fn submit_all<'a, I>(&self, tasks: I) -> Vec<Result<TaskHandle>>
    where
        I: IntoIterator<Item = (&'a str, Value)>,
    {
        let mut outcomes: Vec<Option<Result<TaskHandle>>> = Vec::new();
        let mut events = Vec::new();
        let mut options = Vec::new();
        let mut ids = Vec::new();
        for (name, payload) in tasks {
            match task_event(name, payload) {
                Ok(task) => {
                    options.push(publish_options(
                        &task,
                        &self.owner.producer,
                        &SubmitOptions::default(),
                    ));
                    ids.push(task.event_id());
                    events.push(task);
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        let mut published = self
            .publisher
            .publish_each(events, options)
            .into_iter()
            .zip(ids);
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Some(invalid) => invalid,
                None => match published.next() {
                    Some((Ok(()), id)) => Ok(self.handle(id)),
                    Some((Err(e), _)) => Err(Error::Publish(e.error().clone())),
                    None => Err(Error::InvalidConfig {
                        message: "a task without an outcome".to_owned(),
                    }),
                },
            })
            .collect()
    }

    /// Lets go of this clone; the last one also stops the publishing thread, joins it and
    /// closes the connection (dropping it does the same, without the error).
    ///
    /// # Errors
    ///
    /// [`Error::Publish`] if the connection was already broken (only from the last clone).
    pub fn close(self) -> Result<()> {
        let TaskQueue { publisher, owner } = self;
        // The thread ends once every handle is gone: this one first.
        drop(publisher);
        match Arc::try_unwrap(owner) {
            Ok(mut owner) => owner.join(),
            // Another clone is still in use; the last one joins.
            Err(_) => Ok(()),
        }
    }
}

/// The event a task travels as: `task.<task_name>`, its payload as data, a new id.
fn task_event(task_name: &str, payload: Value) -> Result<Event> {
    check_task_name(task_name)?;
    if !payload.is_object() {
        return Err(Error::InvalidPayload {
            found: json_type(&payload),
        });
    }
    Event::builder(TASK_DOMAIN, task_name)
        .data(payload)
        .build()
        .map_err(|e| Error::InvalidConfig {
            // Unreachable: the name is a word and the payload an object.
            message: e.to_string(),
        })
}

/// The routing key, headers and properties a task is published with.
fn publish_options(task: &Event, producer: &str, options: &SubmitOptions) -> PublishOptions {
    let correlation_id = options
        .correlation_id
        .clone()
        .unwrap_or_else(|| task.event_id().to_string());
    PublishOptions {
        routing_key: Some(
            options
                .routing_key
                .clone()
                .unwrap_or_else(|| routing_key(task.action())),
        ),
        headers: BTreeMap::from([
            (PRODUCER_APP_HEADER.to_owned(), producer.to_owned()),
            (CORRELATION_ID_HEADER.to_owned(), correlation_id.clone()),
        ]),
        correlation_id: Some(correlation_id),
        priority: options.priority,
        ..PublishOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::serde_json::json;

    use super::*;

    #[test]
    fn a_task_is_an_event_of_the_task_domain() {
        let task = task_event("send-report", json!({"to": "ops"})).unwrap();
        assert_eq!(task.routing_key(), "task.send-report");
        assert_eq!(task.data()["to"], "ops");
        assert_eq!(task.event_id().get_version_num(), 4);
        assert!(matches!(
            task_event("send-report", json!([1])),
            Err(Error::InvalidPayload { found: "an array" })
        ));
        assert!(matches!(
            task_event("a.b", json!({})),
            Err(Error::InvalidTaskName { .. })
        ));
    }

    #[test]
    fn a_queue_is_shared_by_threads() {
        fn shared<T: Clone + Send + Sync + 'static>() {}
        shared::<TaskQueue>();
    }

    #[test]
    fn options_carry_the_seed_headers() {
        let task = task_event("send-report", json!({})).unwrap();
        let id = task.event_id().to_string();
        let plain = publish_options(&task, "reports", &SubmitOptions::default());
        assert_eq!(
            plain.routing_key.as_deref(),
            Some("routing.task.send.report")
        );
        assert_eq!(plain.correlation_id.as_deref(), Some(id.as_str()));
        assert_eq!(plain.headers[PRODUCER_APP_HEADER], "reports");
        assert_eq!(plain.headers[CORRELATION_ID_HEADER], id);
        let chosen = publish_options(
            &task,
            "reports",
            &SubmitOptions {
                correlation_id: Some("flow-1".into()),
                routing_key: Some("jobs.reports".into()),
                ..SubmitOptions::default()
            },
        );
        assert_eq!(chosen.routing_key.as_deref(), Some("jobs.reports"));
        assert_eq!(chosen.correlation_id.as_deref(), Some("flow-1"));
        assert_eq!(chosen.headers[CORRELATION_ID_HEADER], "flow-1");
    }
}
