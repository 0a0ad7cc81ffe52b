//! [`EventBusBuilder`]: a bus's settings from code and the environment, checked by `build`.

use std::net::SocketAddr;
use std::sync::Arc;

use crossbeam_channel::Sender;
use pubsub_amqp::{AmqpConfig, ReconnectPolicy};
use pubsub_core::envelope::Envelope;
use pubsub_core::EventType;
use pubsub_publisher::Unroutable;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{DeliveryReport, RetryPolicy, SubscriberBuilder};

#[cfg(feature = "store")]
use super::beside;
use super::beside::{Beside, Prepared, Shared};
use super::{EventBus, State};
use crate::error::{Error, Result};
use crate::names::{validate_exchange, validate_service_name};
use crate::publishing::Publisher;

/// Starts configuring an [`EventBus`]; see [`EventBus::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EventBusBuilder {
    pub(super) service: String,
    pub(super) amqp: Option<AmqpConfig>,
    pub(super) exchange: Option<String>,
    pub(crate) in_process: bool,
    pub(super) workers: usize,
    pub(crate) prefetch: u16,
    pub(super) retry: RetryPolicy,
    pub(super) event_type: Option<EventType>,
    pub(super) unroutable: Unroutable,
    pub(super) supported_major_versions: Option<Vec<u64>>,
    pub(super) observer: Option<Sender<DeliveryReport>>,
    pub(super) publish_queue: usize,
    pub(super) metrics: bool,
    pub(super) metrics_endpoint: Option<SocketAddr>,
    pub(super) consumer: ConsumerOptions,
    pub(super) beside: Beside,
    /// The async bus's concurrency, when set.
    #[cfg(feature = "tokio")]
    pub(crate) concurrency: Option<usize>,
}

/// The subscriber settings the bus passes on to each worker as they are (the subscriber's
/// defaults unless set).
#[derive(Debug, Clone, Default)]
pub(super) struct ConsumerOptions {
    pub(super) queue: Option<String>,
    pub(super) envelope: Option<Envelope>,
    pub(super) envelope_patterns: Vec<(String, Envelope)>,
    pub(super) existing_queue: bool,
    pub(super) quorum: bool,
    pub(super) max_redeliveries: Option<u32>,
    pub(super) dead_letter: Option<bool>,
    pub(super) reconnect: Option<ReconnectPolicy>,
    pub(super) max_body_size: Option<usize>,
}

impl ConsumerOptions {
    /// `builder` with these settings.
    pub(super) fn apply(&self, mut builder: SubscriberBuilder) -> SubscriberBuilder {
        if let Some(envelope) = self.envelope {
            builder = builder.envelope(envelope);
        }
        for (pattern, envelope) in &self.envelope_patterns {
            builder = builder.envelope_for(pattern, *envelope);
        }
        builder = builder
            .existing_queue(self.existing_queue)
            .quorum(self.quorum);
        if let Some(max) = self.max_redeliveries {
            builder = builder.max_redeliveries(max);
        }
        if let Some(enabled) = self.dead_letter {
            builder = builder.dead_letter(enabled);
        }
        if let Some(policy) = &self.reconnect {
            builder = builder.reconnect(policy.clone());
        }
        if let Some(bytes) = self.max_body_size {
            builder = builder.max_body_size(bytes);
        }
        builder
    }
}

impl EventBusBuilder {
    /// A builder for the service `service`, with the defaults [`EventBus::builder`] names.
    pub(super) fn new(service: &str) -> EventBusBuilder {
        EventBusBuilder {
            service: service.to_owned(),
            amqp: None,
            exchange: None,
            in_process: false,
            workers: 1,
            prefetch: pubsub_subscriber::DEFAULT_PREFETCH,
            retry: RetryPolicy::default(),
            event_type: Some(EventType::Domain),
            unroutable: Unroutable::default(),
            supported_major_versions: None,
            observer: None,
            publish_queue: 8192,
            metrics: false,
            metrics_endpoint: None,
            consumer: ConsumerOptions::default(),
            beside: Beside::default(),
            #[cfg(feature = "tokio")]
            concurrency: None,
        }
    }

    /// The queue the workers consume (by default the service's name; see [`EventBus`]'s
    /// names). Its retry and dead-letter queues are named after it.
    pub fn queue(mut self, queue: &str) -> Self {
        self.consumer.queue = Some(queue.to_owned());
        self
    }

    /// Consumes a queue another service declared (a Python service of the seeds, with its
    /// own arguments) as it is, instead of declaring it (off by default); see
    /// [`SubscriberBuilder::existing_queue`]. [`EventBus::teardown`] then leaves that queue
    /// alone (it deletes only the retry and dead-letter queues the bus declared).
    pub fn existing_queue(mut self, existing: bool) -> Self {
        self.consumer.existing_queue = existing;
        self
    }

    /// The envelope the queue's messages come in ([`Envelope::Standard`], the six fields, by
    /// default): seed 002's bare body, seed 004's event-bus envelope; see
    /// [`SubscriberBuilder::envelope`].
    pub fn envelope(mut self, envelope: Envelope) -> Self {
        self.consumer.envelope = Some(envelope);
        self
    }

    /// The envelope of the messages whose routing key matches `pattern`, for a queue that
    /// receives several kinds (the first matching pattern wins); see
    /// [`SubscriberBuilder::envelope_for`]. An invalid pattern fails [`EventBus::start`].
    pub fn envelope_for(mut self, pattern: &str, envelope: Envelope) -> Self {
        self.consumer
            .envelope_patterns
            .push((pattern.to_owned(), envelope));
        self
    }

    /// Makes the queue, its delay queues and its dead-letter queue quorum queues, replicated
    /// over a cluster (off by default); see [`SubscriberBuilder::quorum`].
    pub fn quorum(mut self, quorum: bool) -> Self {
        self.consumer.quorum = quorum;
        self
    }

    /// How many times a quorum queue may deliver a message without an ack before it is
    /// dead-lettered (10 by default); see [`SubscriberBuilder::max_redeliveries`].
    pub fn max_redeliveries(mut self, max: u32) -> Self {
        self.consumer.max_redeliveries = Some(max);
        self
    }

    /// Whether to declare the dead-letter queue and dead-letter to it (on by default); see
    /// [`SubscriberBuilder::dead_letter`].
    pub fn dead_letter(mut self, enabled: bool) -> Self {
        self.consumer.dead_letter = Some(enabled);
        self
    }

    /// How the workers reconnect after their connection dies (forever by default); see
    /// [`SubscriberBuilder::reconnect`].
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.consumer.reconnect = Some(policy);
        self
    }

    /// The largest body accepted (16 MiB by default); larger ones are dead-lettered as
    /// poison. See [`SubscriberBuilder::max_body_size`].
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.consumer.max_body_size = Some(bytes);
        self
    }

    /// The broker (by default [`AmqpConfig::from_env`]: `AMQP_URL`, or a broker on
    /// localhost).
    pub fn amqp(mut self, config: AmqpConfig) -> Self {
        self.amqp = Some(config);
        self
    }

    /// The exchange to publish to and bind the queue to (by default the `RABBITMQ_EXCHANGE`
    /// environment variable, else `events`).
    pub fn exchange(mut self, exchange: &str) -> Self {
        self.exchange = Some(exchange.to_owned());
        self
    }

    /// No broker: `publish` runs the handlers in the calling thread (MediatR style), with the
    /// same metadata and correlation as over the broker, and without retries.
    pub fn in_process(mut self) -> Self {
        self.in_process = true;
        self
    }

    /// Consumes on `n` threads (at least 1; 1 by default), each an `EventSubscriber` with its
    /// own connection on the service's queue, all sharing the handlers. Every delivery is
    /// still settled exactly once, by the worker that took it. There is no ordering across
    /// workers: two events can be handled at the same time and finish in any order.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Deliveries each worker may hold unacknowledged (100 by default; at least 1).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// How failed events are retried (the subscriber's [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The [`EventType`] of the events published without one in their options
    /// ([`EventType::Domain`] by default, as seed 004's `Event.create`).
    pub fn event_type(mut self, event_type: EventType) -> Self {
        self.event_type = Some(event_type);
        self
    }

    /// What to do with a published event that no queue receives ([`Unroutable::Warn`] by
    /// default).
    pub fn unroutable(mut self, unroutable: Unroutable) -> Self {
        self.unroutable = unroutable;
        self
    }

    /// Dead-letters as poison the events whose major version is not in `versions` (by
    /// default every version is accepted).
    pub fn supported_major_versions(mut self, versions: &[u64]) -> Self {
        self.supported_major_versions = Some(versions.to_vec());
        self
    }

    /// Sends a [`DeliveryReport`] for every delivery once it is settled (over the broker).
    pub fn observer(mut self, reports: Sender<DeliveryReport>) -> Self {
        self.observer = Some(reports);
        self
    }

    /// How many publish requests may wait for the publishing thread (8,192 by default; at
    /// least 1). A publisher that finds the queue full waits for room.
    pub fn publish_queue(mut self, capacity: usize) -> Self {
        self.publish_queue = capacity.max(1);
        self
    }

    /// Keeps metrics ([`EventBus::metrics`]): the publisher's and the workers' counters, and
    /// how long each handler runs (timed only with metrics on). Off by default.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Keeps metrics and serves them in the Prometheus text format at
    /// `http://<address>/metrics` while the bus runs (port 0: any free port, see
    /// [`EventBus::metrics_address`]). Off by default.
    pub fn metrics_endpoint(mut self, address: SocketAddr) -> Self {
        self.metrics = true;
        self.metrics_endpoint = Some(address);
        self
    }

    /// Runs the relay of `outbox` beside the handlers (feature `outbox`): the events the
    /// service stages in its own transactions ([`Outbox::stage`](pubsub_outbox::Outbox::stage))
    /// are published to the bus's exchange, with confirms, once each transaction commits. The
    /// relay has its own connections (to the database and the broker), starts after the
    /// handlers' workers and stops after them (with one last batch), and its counters are in
    /// [`BusStats::relay`](super::BusStats::relay).
    #[cfg(feature = "outbox")]
    pub fn outbox(mut self, outbox: pubsub_outbox::Outbox) -> Self {
        self.beside.outbox = Some(outbox);
        self
    }

    /// Runs the event store beside the handlers (feature `store`): every message of the
    /// bus's exchange kept in `database`, as seed 003's service keeps what reaches its
    /// `event.store` queue. It consumes the queue `<service>.store`, bound with `#`, with
    /// [`Envelope::Any`] (six-field events as they are, any other JSON message under its
    /// routing key), on one recorder of its own, acking each message once its row is
    /// committed. It starts before the handlers and stops after them, and its counters are
    /// in [`BusStats::store`](super::BusStats::store). Tasks use the same database unless
    /// [`task_database`](Self::task_database) names another.
    #[cfg(feature = "store")]
    pub fn store(self, database: pubsub_store::Database) -> Self {
        let options = pubsub_recorder::RecordOptions {
            queue: beside::store_queue(&self.service),
            envelope: Envelope::Any,
            ..pubsub_recorder::RecordOptions::default()
        };
        self.store_with(database, options)
    }

    /// [`store`](Self::store) with options of one's own: another queue (seed 003's
    /// `event.store`), pattern, envelope or prefetch. The options' exchange is replaced by
    /// the bus's: the store keeps what the service's exchange carries.
    #[cfg(feature = "store")]
    pub fn store_with(
        mut self,
        database: pubsub_store::Database,
        options: pubsub_recorder::RecordOptions,
    ) -> Self {
        self.beside.store = Some((database, options));
        self
    }

    /// Runs the task function `function` as the task `name` beside the handlers (feature
    /// `tasks`), as seed 003's one service runs its tasks: a [`TaskWorker`] on the queue
    /// `<service>.tasks` (see [`task_queue`](Self::task_queue)), bound on `task.exchange`
    /// with the task's key, on as many workers as the handlers
    /// ([`workers`](Self::workers)), with the bus's retry policy, quorum setting and
    /// observer. Each task is recorded in the database given to [`store`](Self::store) or
    /// [`task_database`](Self::task_database) (one is needed). The task workers start with
    /// the bus and stop with it, and their counters are in
    /// [`BusStats::tasks`](super::BusStats::tasks). Submit tasks with
    /// [`EventBus::task_queue`](super::EventBus::task_queue).
    ///
    /// [`TaskWorker`]: pubsub_tasks::TaskWorker
    #[cfg(feature = "tasks")]
    pub fn task<F>(self, name: &str, function: F) -> Self
    where
        F: Fn(&pubsub_tasks::Task<'_>) -> pubsub_tasks::TaskResult + Send + Sync + 'static,
    {
        self.task_fn(name, function)
    }

    /// [`task`](Self::task) with a [`TaskFn`](pubsub_tasks::TaskFn) value (a struct with
    /// state of its own).
    #[cfg(feature = "tasks")]
    pub fn task_fn<T: pubsub_tasks::TaskFn>(mut self, name: &str, function: T) -> Self {
        self.beside
            .tasks
            .push((name.to_owned(), Arc::new(function)));
        self
    }

    /// The database tasks are recorded in, when it is not the event store's (or the bus
    /// runs no event store).
    #[cfg(feature = "tasks")]
    pub fn task_database(mut self, database: pubsub_store::Database) -> Self {
        self.beside.task_database = Some(database);
        self
    }

    /// The queue the task workers consume (`<service>.tasks` by default): seed 003's
    /// `tasks` to share the Python service's queue. Every worker on one queue must run the
    /// same tasks.
    #[cfg(feature = "tasks")]
    pub fn task_queue(mut self, queue: &str) -> Self {
        self.beside.task_queue = Some(queue.to_owned());
        self
    }

    /// The exchange tasks come from (seed 003's `task.exchange` by default).
    #[cfg(feature = "tasks")]
    pub fn task_exchange(mut self, exchange: &str) -> Self {
        self.beside.task_exchange = Some(exchange.to_owned());
        self
    }

    /// Checks the names and reads the environment; connects to nothing yet (see
    /// [`EventBus::start`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidServiceName`] (see [`validate_service_name`] for what is valid),
    /// [`Error::InvalidExchange`], or [`Error::Amqp`] for an `AMQP_URL` that cannot be read;
    /// [`Error::InvalidConfig`] for tasks without a database, or the store or tasks on an
    /// in-process bus; an invalid or duplicate task name (`Error::Tasks`).
    pub fn build(self) -> Result<EventBus> {
        validate_service_name(&self.service)?;
        let exchange = match &self.exchange {
            Some(exchange) => exchange.clone(),
            None => pubsub_amqp::exchange_from_env()?,
        };
        validate_exchange(&exchange)?;
        let amqp = match (&self.amqp, self.in_process) {
            (Some(config), _) => Some(config.clone()),
            (None, false) => Some(AmqpConfig::from_env()?),
            (None, true) => None,
        };
        let publisher = Publisher::new(&self.service, &exchange, self.event_type);
        let beside = Prepared::new(
            &self.beside,
            amqp.as_ref(),
            &Shared {
                service: &self.service,
                exchange: &exchange,
                workers: self.workers,
                retry: &self.retry,
                quorum: self.consumer.quorum,
                observer: self.observer.as_ref(),
                unroutable: self.unroutable,
            },
        )?;
        Ok(EventBus {
            beside,
            metrics: self.metrics.then(Arc::default),
            amqp,
            exchange,
            publisher,
            registry: Some(HandlerRegistry::new()),
            state: State::Built,
            #[cfg(feature = "tokio")]
            dispatch: None,
            settings: self,
        })
    }
}

/// The environment variable that names the service for [`EventBus::from_env`] (seed 003's).
pub const SERVICE_NAME_ENV: &str = "SERVICE_NAME";

/// The service name from the value of `SERVICE_NAME`, if it has one.
pub(super) fn service_from_env(value: Option<std::ffi::OsString>) -> Result<String> {
    match value.map(std::ffi::OsString::into_string) {
        Some(Ok(name)) if !name.trim().is_empty() => Ok(name.trim().to_owned()),
        Some(Ok(_)) | None => Err(Error::InvalidServiceName {
            name: String::new(),
            reason:
                "SERVICE_NAME is not set: name the service there, or use EventBus::builder(name)",
        }),
        Some(Err(raw)) => Err(Error::InvalidServiceName {
            name: pubsub_core::text::truncate_chars(&raw.to_string_lossy(), 80),
            reason: "SERVICE_NAME is not valid Unicode",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_name_from_the_environment() {
        let check = |value: Option<&str>, expected: Option<&str>| {
            let got = service_from_env(value.map(std::ffi::OsString::from));
            assert_eq!(got.ok().as_deref(), expected, "{value:?}");
        };
        check(Some("billing"), Some("billing"));
        check(Some(" billing\n"), Some("billing"));
        check(Some(""), None);
        check(Some("  "), None);
        check(None, None);
        let unset = service_from_env(None).unwrap_err().to_string();
        assert!(unset.contains("SERVICE_NAME is not set"), "{unset}");
    }
}
