//! [`TaskWorker`]: task functions by name, run on worker threads that each own an
//! `EventSubscriber` on the task queue and a task store connection.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use pubsub_amqp::{AmqpConfig, Connection};
use pubsub_core::envelope::Envelope;
use pubsub_registry::HandlerRegistry;
use pubsub_store::{Database, TaskStore};
use pubsub_subscriber::{
    queue_names, DeliveryReport, EventSubscriber, PoolStats, RetryPolicy, RunningPool,
    SubscriberBuilder, SubscriberStats, WorkerPool,
};

use crate::error::{check_task_name, Error, Result};
use crate::names::{routing_key, DEFAULT_QUEUE};
use crate::queue::{exchange_config, DEFAULT_EXCHANGE};
use crate::runner::Runner;
use crate::task::{Registered, Task, TaskFn, TaskResult, Tasks};

/// How long a stop waits for the tasks a worker's runner holds (running, or waiting for its
/// batch) before it leaves them to the broker, which delivers them again.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs task functions registered by name, on worker threads, and records each task in a
/// task store.
///
/// Each worker is an [`EventSubscriber`] on the task queue, on its own thread with its own
/// AMQP connection and its own [`TaskStore`] connection, decoding seed 003's task message
/// ([`Envelope::Task`]). Retries, dead letters, ack batching and reconnection are the
/// subscriber's. For each delivered task a worker:
///
/// 1. records it as PENDING if its id is new ([`TaskStore::receive`]);
/// 2. acks it without running it if it has COMPLETED before (a duplicate delivery);
/// 3. FAILS it and dead-letters it as poison if no function is registered under its name;
/// 4. marks it RUNNING (one attempt more) and runs the function, panics caught;
/// 5. records COMPLETED with the function's JSON result, or the error: back to PENDING when
///    the subscriber will retry it through its delay queues, FAILED on the last attempt (or on
///    a [`Permanent`](pubsub_core::Permanent) error), when the subscriber dead-letters it.
///
/// The queue (`tasks` by default) is bound to the direct exchange (`task.exchange`) with one key per
/// task, [`routing_key`](crate::routing_key)`(name)` or the key given to
/// [`TaskWorkerBuilder::task_routed`], plus [`TaskWorkerBuilder::bind`]'s keys. Workers that
/// share a queue must register the same tasks: a task a worker does not know is FAILED, not
/// passed on. Tasks of different sets of workers go to different queues.
pub struct TaskWorker {
    config: AmqpConfig,
    database: Database,
    exchange: String,
    queue: String,
    workers: usize,
    prefetch: u16,
    retry: RetryPolicy,
    declare_exchange: bool,
    existing_queue: bool,
    quorum: bool,
    /// `x-max-priority` of the queue, if tasks have priorities.
    max_priority: Option<u8>,
    tasks: Arc<Tasks>,
    bindings: Vec<String>,
    observer: Option<Sender<DeliveryReport>>,
    /// The store's commits of every worker, added up.
    commits: Arc<AtomicU64>,
    /// Threads of timed-out functions still running, of every worker.
    abandoned: Arc<AtomicU64>,
}

/// Builds a [`TaskWorker`]; see [`TaskWorker::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct TaskWorkerBuilder {
    worker: TaskWorker,
    registered: Vec<(String, Option<String>, Arc<dyn TaskFn>)>,
    /// The time limit of every task without one of its own.
    time_limit: Option<Duration>,
    /// Each task's own time limit, by name.
    limits: Vec<(String, Duration)>,
}

impl TaskWorkerBuilder {
    /// Registers `function` as the task `name`, served under the routing key
    /// [`routing_key`](crate::routing_key)`(name)`.
    pub fn task<F>(mut self, name: &str, function: F) -> Self
    where
        F: Fn(&Task<'_>) -> TaskResult + Send + Sync + 'static,
    {
        self.registered
            .push((name.to_owned(), None, Arc::new(function)));
        self
    }

    /// Registers `function` as the task `name`, served under `routing_key` (a producer's own
    /// convention) instead of the default one.
    pub fn task_routed<F>(mut self, name: &str, routing_key: &str, function: F) -> Self
    where
        F: Fn(&Task<'_>) -> TaskResult + Send + Sync + 'static,
    {
        self.registered.push((
            name.to_owned(),
            Some(routing_key.to_owned()),
            Arc::new(function),
        ));
        self
    }

    /// Registers a [`TaskFn`] value (a struct with state of its own) as the task `name`,
    /// served under [`routing_key`](crate::routing_key)`(name)`.
    pub fn task_fn<T: TaskFn>(mut self, name: &str, function: T) -> Self {
        self.registered
            .push((name.to_owned(), None, Arc::new(function)));
        self
    }

    /// The longest any task's function may run (none by default), unless the task has a limit
    /// of its own ([`limit`](Self::limit)). A run past it is FAILED with a "timed out" error and
    /// retried by the retry policy. A limited function runs on a thread of its own, which
    /// Rust cannot kill: when it times out, its result is discarded whenever it comes, and
    /// the thread is counted ([`RunningWorker::abandoned_threads`]) until it ends. The limit
    /// is kept in the task's record, so that `pubsub task list --stuck` shows a task RUNNING
    /// past it.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// The longest the task `name`'s function may run (see [`time_limit`](Self::time_limit)).
    pub fn limit(mut self, name: &str, limit: Duration) -> Self {
        self.limits.push((name.to_owned(), limit));
        self
    }

    /// Also binds the queue with `key`: tasks published with it are run by the name in their
    /// body.
    pub fn bind(mut self, key: &str) -> Self {
        self.worker.bindings.push(key.to_owned());
        self
    }

    /// The exchange tasks come from ([`DEFAULT_EXCHANGE`], `task.exchange`, by default), declared as
    /// a durable direct exchange unless [`declare_exchange`](Self::declare_exchange) is off.
    pub fn exchange(mut self, exchange: &str) -> Self {
        exchange.clone_into(&mut self.worker.exchange);
        self
    }

    /// Whether to declare the exchange (on by default); off, it must exist.
    pub fn declare_exchange(mut self, declare: bool) -> Self {
        self.worker.declare_exchange = declare;
        self
    }

    /// The queue the workers consume ([`DEFAULT_QUEUE`], `tasks`, by default); beside it
    /// live `<queue>.dlq` and `<queue>.retry.<delay>`.
    pub fn queue(mut self, queue: &str) -> Self {
        queue.clone_into(&mut self.worker.queue);
        self
    }

    /// Consumes a task queue another service declared (seed 003's Python service, with its
    /// own arguments) as it is, instead of declaring it (off by default); see
    /// [`SubscriberBuilder::existing_queue`](pubsub_subscriber::SubscriberBuilder::existing_queue).
    /// The bindings are still added.
    pub fn existing_queue(mut self, existing: bool) -> Self {
        self.worker.existing_queue = existing;
        self
    }

    /// Gives the queue priorities from 0 to `max` (RabbitMQ's `x-max-priority`; it advises at
    /// most 10): a task submitted with a higher [`SubmitOptions::priority`](crate::SubmitOptions)
    /// is delivered first among those waiting. A queue gets priorities when it is declared:
    /// one that exists without them is a clear error (delete it, or use a new queue), and a
    /// quorum queue takes none here.
    pub fn max_priority(mut self, max: u8) -> Self {
        self.worker.max_priority = Some(max);
        self
    }

    /// Makes the queue, its delay queues and its dead-letter queue quorum queues (off by
    /// default); see [`SubscriberBuilder::quorum`](pubsub_subscriber::SubscriberBuilder::quorum).
    pub fn quorum(mut self, quorum: bool) -> Self {
        self.worker.quorum = quorum;
        self
    }

    /// How many worker threads run tasks (1 by default): each with its own AMQP connection
    /// and its own task store connection. Tasks run in no particular order across workers.
    pub fn workers(mut self, workers: usize) -> Self {
        self.worker.workers = workers.max(1);
        self
    }

    /// How many tasks the broker may send each worker ahead (10 by default). Higher is
    /// faster for short tasks; lower spreads long tasks more evenly over workers. A task is
    /// acked once its batch commits, so a worker runs at most about `prefetch` tasks per
    /// commit cycle: for tasks of a millisecond or less, 100 (measured: 0.52x to 0.63x the
    /// rate of plain events with one worker, against 0.30x to 0.58x at 10; see
    /// BENCHMARKS.md).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.worker.prefetch = prefetch.max(1);
        self
    }

    /// How failed tasks are retried (the subscriber's default: 3 attempts, 1 s and 5 s
    /// apart).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.worker.retry = policy;
        self
    }

    /// Sends a [`DeliveryReport`] for every delivery once it is settled (see
    /// [`SubscriberBuilder::observer`](pubsub_subscriber::SubscriberBuilder::observer)).
    pub fn observer(mut self, reports: Sender<DeliveryReport>) -> Self {
        self.worker.observer = Some(reports);
        self
    }

    /// Checks the settings and the task names. Nothing is connected yet.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTaskName`], [`Error::DuplicateTask`]; [`Error::InvalidConfig`] when no
    /// task is registered, or for an empty queue or exchange name or binding key.
    pub fn build(mut self) -> Result<TaskWorker> {
        let invalid = |message: &str| {
            Err(Error::InvalidConfig {
                message: message.to_owned(),
            })
        };
        if self.registered.is_empty() {
            return invalid("no task is registered");
        }
        if self.worker.queue.is_empty() || self.worker.exchange.is_empty() {
            return invalid("the queue and the exchange need names");
        }
        let mut tasks = Tasks::default();
        for (name, key, function) in self.registered {
            check_task_name(&name)?;
            let routing_key = key.unwrap_or_else(|| routing_key(&name));
            if routing_key.is_empty() || routing_key.len() > 255 {
                return invalid("a routing key is 1 to 255 bytes long");
            }
            if tasks.by_name.contains_key(&name) {
                return Err(Error::DuplicateTask { name });
            }
            let time_limit = self
                .limits
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, limit)| *limit)
                .or(self.time_limit);
            tasks.by_name.insert(
                name,
                Registered {
                    function,
                    routing_key,
                    time_limit,
                },
            );
        }
        if let Some((name, _)) = self
            .limits
            .iter()
            .find(|(n, _)| !tasks.by_name.contains_key(n))
        {
            return invalid(&format!(
                "a time limit for `{name}`, which is not registered"
            ));
        }
        if tasks
            .by_name
            .values()
            .any(|r| r.time_limit.is_some_and(|l| l.is_zero()))
        {
            return invalid("a time limit must not be zero");
        }
        match self.worker.max_priority {
            Some(0) => return invalid("a queue's highest priority is 1 to 255"),
            Some(_) if self.worker.quorum => {
                return invalid(
                    "priorities (x-max-priority) need a classic queue: a quorum queue takes none",
                )
            }
            _ => {}
        }
        if self
            .worker
            .bindings
            .iter()
            .any(|k| k.is_empty() || k.len() > 255)
        {
            return invalid("a binding key is 1 to 255 bytes long");
        }
        self.worker.tasks = Arc::new(tasks);
        Ok(self.worker)
    }
}

impl TaskWorker {
    /// Starts configuring a worker that connects with `config` and records tasks in
    /// `database`.
    ///
    /// Each worker thread opens its own connection to `database`: an in-memory SQLite
    /// database (`sqlite::memory:`) is then a database of its own per worker, which no one
    /// else can read. Use a file (`sqlite:tasks.db`) or PostgreSQL.
    pub fn builder(config: AmqpConfig, database: Database) -> TaskWorkerBuilder {
        TaskWorkerBuilder {
            worker: TaskWorker {
                config,
                database,
                exchange: DEFAULT_EXCHANGE.to_owned(),
                queue: DEFAULT_QUEUE.to_owned(),
                workers: 1,
                prefetch: 10,
                retry: RetryPolicy::default(),
                declare_exchange: true,
                existing_queue: false,
                quorum: false,
                max_priority: None,
                tasks: Arc::default(),
                bindings: Vec::new(),
                observer: None,
                commits: Arc::default(),
                abandoned: Arc::default(),
            },
            registered: Vec::new(),
            time_limit: None,
            limits: Vec::new(),
        }
    }

    /// The queue the workers consume.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Every queue the workers declare: the queue, its delay queues, its dead-letter queue
    /// (what to delete when the service goes away).
    pub fn queues(&self) -> Vec<String> {
        queue_names(&self.queue, &self.retry)
    }

    /// The keys the queue is bound with: each task's, then [`TaskWorkerBuilder::bind`]'s.
    pub fn bindings(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let tasks = self
            .tasks
            .names()
            .into_iter()
            .filter_map(|n| self.tasks.get(n));
        for key in tasks.map(|r| &r.routing_key).chain(&self.bindings) {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        keys
    }

    /// The names of the registered tasks, sorted.
    pub fn task_names(&self) -> Vec<&str> {
        self.tasks.names()
    }

    /// Declares the exchange, the queue, its retry and dead-letter queues and its bindings,
    /// without consuming: tasks submitted from now on wait in the queue.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the task store cannot be opened; [`Error::Amqp`] and
    /// [`Error::Subscribe`] when the broker cannot be reached or the topology declared.
    pub fn setup(&self) -> Result<()> {
        self.pool()
            .setup(|_, connection| self.subscriber(connection, false))
            .map_err(|e| self.priority_error(e))
    }

    /// A queue that exists without the priorities asked for, as a clear error.
    fn priority_error(&self, e: Error) -> Error {
        let Some(max) = self.max_priority else {
            return e;
        };
        match &e {
            Error::Subscribe(pubsub_subscriber::Error::Amqp(
                pubsub_amqp::Error::Inequivalent { name, argument, .. },
            )) if argument.contains("x-max-priority") => Error::InvalidConfig {
                message: format!(
                    "queue `{name}` exists without priorities 0 to {max} (x-max-priority): \
                     RabbitMQ gives a queue priorities only when it is declared; delete it \
                     (its tasks with it) or use another queue"
                ),
            },
            _ => e,
        }
    }

    /// Declares the topology, then starts the workers, each on its own thread.
    ///
    /// # Errors
    ///
    /// As [`setup`](Self::setup); the workers started so far are stopped.
    pub fn start(self) -> Result<RunningWorker> {
        let pool = self
            .pool()
            .start(|_, connection| self.subscriber(connection, true))
            .map_err(|e| self.priority_error(e))?;
        log::info!(
            "{} task worker(s) on `{}` run {}",
            self.workers,
            self.queue,
            self.tasks.names().join(", ")
        );
        Ok(RunningWorker {
            pool,
            queue: self.queue.clone(),
            queues: self.queues(),
            commits: self.commits.clone(),
            abandoned: self.abandoned.clone(),
        })
    }

    /// The runtime the workers run on.
    fn pool(&self) -> WorkerPool {
        WorkerPool::new(&self.config, &format!("tasks {}", self.queue)).workers(self.workers)
    }

    /// One worker's consumer: its runner (a thread with its own store connection, which
    /// runs the tasks the subscriber hands it, by batch: see `runner.rs`) and its
    /// subscriber's settings. Without `run` (the topology only), the store is opened, to
    /// say early when it cannot be, and no runner is started.
    fn subscriber(&self, connection: Connection, run: bool) -> Result<SubscriberBuilder> {
        let store = TaskStore::open(&self.database)?;
        if !run {
            return Ok(self.consumer(connection));
        }
        let dispatcher = Runner {
            tasks: self.tasks.clone(),
            database: self.database.clone(),
            store,
            retry: self.retry.clone(),
            commits: self.commits.clone(),
            abandoned: self.abandoned.clone(),
        }
        .start(format!("tasks {}", self.queue))
        .map_err(|e| {
            Error::Subscribe(pubsub_subscriber::Error::Spawn {
                message: format!("the task runner's thread: {e}"),
            })
        })?;
        Ok(self.consumer(connection).dispatcher(dispatcher, DRAIN))
    }

    /// The subscriber's settings: the queue, its topology, the envelope, the retries.
    fn consumer(&self, connection: Connection) -> SubscriberBuilder {
        // The runner answers for the one handler; the registry has none to run.
        let registry = HandlerRegistry::new();
        let mut builder = EventSubscriber::builder(connection, &self.queue, Arc::new(registry))
            .exchange(&self.exchange)
            .declare_exchange(self.declare_exchange.then(exchange_config))
            .envelope(Envelope::Task)
            .bindings(self.bindings())
            .prefetch(self.prefetch)
            .retry(self.retry.clone())
            .existing_queue(self.existing_queue)
            .quorum(self.quorum);
        if let Some(max) = self.max_priority {
            builder = builder.queue_config(
                pubsub_amqp::QueueConfig {
                    durable: true,
                    ..pubsub_amqp::QueueConfig::default()
                }
                .argument("x-max-priority", i64::from(max)),
            );
        }
        if let Some(observer) = &self.observer {
            builder = builder.observer(observer.clone());
        }
        builder
    }
}

impl fmt::Debug for TaskWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskWorker")
            .field("broker", &self.config.redacted_url())
            .field("database", &self.database)
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("workers", &self.workers)
            .field("tasks", &self.tasks)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TaskWorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.registered.iter().map(|(n, _, _)| n.as_str()).collect();
        f.debug_struct("TaskWorkerBuilder")
            .field("worker", &self.worker)
            .field("registered", &names)
            .finish()
    }
}

/// Task workers running on their threads; see [`TaskWorker::start`]. Dropping it stops and
/// joins them.
#[derive(Debug)]
pub struct RunningWorker {
    pool: RunningPool,
    queue: String,
    queues: Vec<String>,
    commits: Arc<AtomicU64>,
    abandoned: Arc<AtomicU64>,
}

impl RunningWorker {
    /// The queue the workers consume.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Every queue the workers declared (see [`TaskWorker::queues`]).
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// Whether every worker still consumes (see
    /// [`RunningPool::is_running`](pubsub_subscriber::RunningPool::is_running)).
    pub fn is_running(&self) -> bool {
        self.pool.is_running()
    }

    /// The workers' counters now, added up.
    pub fn stats(&self) -> SubscriberStats {
        self.pool.stats()
    }

    /// How many transactions the workers committed to the task store so far (a batch's
    /// statuses are one: see the crate's documentation on group commit).
    pub fn store_commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How many threads of functions that ran past their time limit still run (their results
    /// are discarded; Rust cannot kill a thread). A number that only grows says a function
    /// never ends.
    pub fn abandoned_threads(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// Stops every worker (each finishes and acks the task it is running) and joins its
    /// thread; returns the counters added up, and how many workers ran.
    ///
    /// # Errors
    ///
    /// [`Error::Subscribe`]: the first error a worker had stopped on (all are stopped).
    pub fn stop(self) -> Result<PoolStats> {
        Ok(self.pool.stop()?)
    }
}
