//! What a bus runs beside its handlers, on the same worker pool and the same lifecycle: the
//! event store (feature `store`) and task functions (feature `tasks`), as seed 003's one
//! service consumes events, keeps them and runs tasks; and the relay of a transactional
//! outbox (feature `outbox`), a publishing thread of its own beside the pool.
//!
//! Without either feature this is empty, and the bus runs its handlers alone.

use std::fmt;
#[cfg(feature = "tasks")]
use std::sync::Arc;

use pubsub_amqp::AmqpConfig;
#[cfg(any(feature = "store", feature = "tasks"))]
use pubsub_store::Database;
use pubsub_subscriber::RetryPolicy;

use crate::error::{Error, Result};

/// The settings of what runs beside the handlers, as the builder collects them.
#[derive(Clone, Default)]
pub(super) struct Beside {
    /// The event store: its database and where it consumes (the exchange is the bus's).
    #[cfg(feature = "store")]
    pub(super) store: Option<(Database, pubsub_recorder::RecordOptions)>,
    /// The task functions, by name, in the order registered.
    #[cfg(feature = "tasks")]
    pub(super) tasks: Vec<(String, Arc<dyn pubsub_tasks::TaskFn>)>,
    /// The task store, when it is not the event store's database.
    #[cfg(feature = "tasks")]
    pub(super) task_database: Option<Database>,
    /// The task queue (`<service>.tasks` by default).
    #[cfg(feature = "tasks")]
    pub(super) task_queue: Option<String>,
    /// The task exchange (seed 003's `task.exchange` by default).
    #[cfg(feature = "tasks")]
    pub(super) task_exchange: Option<String>,
    /// The outbox whose relay runs beside the handlers.
    #[cfg(feature = "outbox")]
    pub(super) outbox: Option<pubsub_outbox::Outbox>,
}

/// What the bus shares with what runs beside its handlers.
#[cfg_attr(not(all(feature = "store", feature = "tasks")), allow(dead_code))]
pub(super) struct Shared<'a> {
    pub(super) service: &'a str,
    pub(super) exchange: &'a str,
    pub(super) workers: usize,
    pub(super) retry: &'a RetryPolicy,
    pub(super) quorum: bool,
    pub(super) observer: Option<&'a crossbeam_channel::Sender<pubsub_subscriber::DeliveryReport>>,
    pub(super) unroutable: pubsub_publisher::Unroutable,
}

#[cfg(feature = "store")]
/// The store's queue unless told otherwise: `<service>.store`, so that two services keeping
/// the same exchange each keep all of it.
pub(super) fn store_queue(service: &str) -> String {
    format!("{service}.store")
}

#[cfg(feature = "tasks")]
/// The task queue unless told otherwise: `<service>.tasks`, so that services running
/// different tasks never take each other's.
pub(super) fn task_queue(service: &str) -> String {
    format!("{service}.tasks")
}

/// What runs beside the handlers, prepared by `build` (names checked, nothing connected).
#[derive(Default)]
pub(super) struct Prepared {
    /// The queues the store and the task workers declare.
    queues: Vec<String>,
    #[cfg(feature = "store")]
    store: Option<(Database, pubsub_recorder::RecordOptions)>,
    #[cfg(feature = "tasks")]
    tasks: Option<pubsub_tasks::TaskWorker>,
    /// The relay of the outbox, ready to start.
    #[cfg(feature = "outbox")]
    relay: Option<pubsub_outbox::RelayBuilder>,
}

impl Prepared {
    /// Checks `beside` against the bus: task names, and that tasks have a database and a
    /// broker. `amqp` is `None` for an in-process bus.
    pub(super) fn new(
        beside: &Beside,
        amqp: Option<&AmqpConfig>,
        shared: &Shared<'_>,
    ) -> Result<Prepared> {
        let _ = (beside, shared);
        #[cfg_attr(not(any(feature = "store", feature = "tasks")), allow(unused_mut))]
        let mut prepared = Prepared::default();
        if amqp.is_none() && !beside.is_empty() {
            return Err(Error::InvalidConfig {
                message: "the event store, tasks and the outbox's relay run over the broker: \
                          an in-process bus cannot run them"
                    .to_owned(),
            });
        }
        #[cfg(feature = "store")]
        if let Some((database, options)) = &beside.store {
            let mut options = options.clone();
            shared.exchange.clone_into(&mut options.exchange);
            // The recorder is a subscriber with the default retry policy: its queue, its
            // delay queues, its dead-letter queue.
            let queues = pubsub_subscriber::queue_names(&options.queue, &RetryPolicy::default());
            prepared.queues.extend(queues);
            prepared.store = Some((database.clone(), options));
        }
        #[cfg(feature = "outbox")]
        if let (Some(amqp), Some(outbox)) = (amqp, &beside.outbox) {
            prepared.relay = Some(
                outbox
                    .relay(amqp, shared.exchange)
                    .app_id(shared.service)
                    .unroutable(shared.unroutable),
            );
        }
        #[cfg(feature = "tasks")]
        if let (Some(amqp), false) = (amqp, beside.tasks.is_empty()) {
            let worker = task_worker(beside, amqp, shared)?;
            prepared.queues.extend(worker.queues());
            prepared.tasks = Some(worker);
        }
        Ok(prepared)
    }

    /// Starts the outbox's relay, once the handlers' queue and bindings are declared (so that
    /// nothing it publishes is unroutable for want of them).
    pub(super) fn start_relay(&mut self, running: &mut Running) -> Result<()> {
        let _ = running;
        #[cfg(feature = "outbox")]
        if let Some(relay) = self.relay.take() {
            running.relay = Some(relay.start()?);
        }
        Ok(())
    }

    /// The queues it declares, to delete at teardown.
    pub(super) fn queues(&self) -> &[String] {
        &self.queues
    }

    /// Starts what is prepared: the store first (so that it keeps what the handlers publish
    /// from their first event on), then the task workers. On an error, what started is
    /// stopped.
    pub(super) fn start(&mut self, amqp: &AmqpConfig) -> Result<Running> {
        let _ = amqp;
        #[cfg_attr(not(any(feature = "store", feature = "tasks")), allow(unused_mut))]
        let mut running = Running::default();
        #[cfg(feature = "store")]
        if let Some((database, options)) = &self.store {
            running.store = Some(pubsub_recorder::start(amqp, database, options, 1)?);
        }
        #[cfg(feature = "tasks")]
        if let Some(worker) = self.tasks.take() {
            // On an error, dropping `running` stops the store.
            running.tasks = Some(worker.start()?);
        }
        Ok(running)
    }
}

#[cfg(feature = "tasks")]
fn task_worker(
    beside: &Beside,
    amqp: &AmqpConfig,
    shared: &Shared<'_>,
) -> Result<pubsub_tasks::TaskWorker> {
    #[cfg(feature = "store")]
    let store_database = beside.store.as_ref().map(|(database, _)| database);
    #[cfg(not(feature = "store"))]
    let store_database: Option<&Database> = None;
    let Some(database) = beside.task_database.as_ref().or(store_database) else {
        return Err(Error::InvalidConfig {
            message: "tasks are recorded in a database: give one with `store(database)` or \
                      `task_database(database)`"
                .to_owned(),
        });
    };
    let queue = beside
        .task_queue
        .clone()
        .unwrap_or_else(|| task_queue(shared.service));
    let mut builder = pubsub_tasks::TaskWorker::builder(amqp.clone(), database.clone())
        .queue(&queue)
        .exchange(
            beside
                .task_exchange
                .as_deref()
                .unwrap_or(pubsub_tasks::DEFAULT_EXCHANGE),
        )
        .workers(shared.workers)
        .retry(shared.retry.clone())
        .quorum(shared.quorum);
    if let Some(observer) = shared.observer {
        builder = builder.observer(observer.clone());
    }
    for (name, function) in &beside.tasks {
        let function = function.clone();
        builder = builder.task(name, move |task: &pubsub_tasks::Task<'_>| {
            function.run(task)
        });
    }
    Ok(builder.build()?)
}

impl Beside {
    /// Whether nothing runs beside the handlers.
    pub(super) fn is_empty(&self) -> bool {
        #[cfg(feature = "store")]
        if self.store.is_some() {
            return false;
        }
        #[cfg(feature = "tasks")]
        if !self.tasks.is_empty() {
            return false;
        }
        #[cfg(feature = "outbox")]
        if self.outbox.is_some() {
            return false;
        }
        true
    }
}

impl fmt::Debug for Beside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Beside");
        #[cfg(feature = "store")]
        s.field("store", &self.store);
        #[cfg(feature = "tasks")]
        s.field(
            "tasks",
            &self
                .tasks
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
        )
        .field("task_database", &self.task_database)
        .field("task_queue", &self.task_queue)
        .field("task_exchange", &self.task_exchange);
        #[cfg(feature = "outbox")]
        s.field("outbox", &self.outbox);
        s.finish()
    }
}

/// What runs beside the handlers of a started bus.
#[derive(Default)]
pub(super) struct Running {
    #[cfg(feature = "store")]
    store: Option<pubsub_recorder::RunningRecorder>,
    #[cfg(feature = "tasks")]
    tasks: Option<pubsub_tasks::RunningWorker>,
    #[cfg(feature = "outbox")]
    relay: Option<pubsub_outbox::RunningRelay>,
}

impl Running {
    /// Whether every worker of the store and of the tasks still consumes.
    pub(super) fn is_running(&self) -> bool {
        #[cfg(feature = "store")]
        if self.store.as_ref().is_some_and(|s| !s.is_running()) {
            return false;
        }
        #[cfg(feature = "tasks")]
        if self.tasks.as_ref().is_some_and(|t| !t.is_running()) {
            return false;
        }
        #[cfg(feature = "outbox")]
        if self.relay.as_ref().is_some_and(|r| !r.is_running()) {
            return false;
        }
        true
    }

    /// Stops the outbox's relay (after one last batch: what the handlers committed while
    /// they finished), the task workers, then the store (last, so that it keeps what the
    /// others published while they finished); writes their counters into `stats`. Every part
    /// is stopped; the first error is returned.
    pub(super) fn stop(self, stats: &mut super::BusStats) -> Result<()> {
        let _ = &stats;
        let first_error: Option<Error> = None;
        #[cfg(feature = "outbox")]
        let first_error = match self.relay.map(pubsub_outbox::RunningRelay::stop) {
            Some(Ok(relay)) => {
                stats.relay = Some(relay);
                first_error
            }
            Some(Err(e)) => first_error.or(Some(e.into())),
            None => first_error,
        };
        #[cfg(feature = "tasks")]
        let first_error = match self.tasks.map(pubsub_tasks::RunningWorker::stop) {
            Some(Ok(pool)) => {
                stats.tasks = Some(pool);
                first_error
            }
            Some(Err(e)) => first_error.or(Some(e.into())),
            None => first_error,
        };
        #[cfg(feature = "store")]
        let first_error = match self.store.map(pubsub_recorder::RunningRecorder::stop) {
            Some(Ok(store)) => {
                stats.store = Some(store);
                first_error
            }
            Some(Err(e)) => first_error.or(Some(e.into())),
            None => first_error,
        };
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
