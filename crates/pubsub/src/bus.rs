//! [`EventBus`]: a service's handlers, its queue, its workers and its publisher, wired and
//! started together.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use pubsub_amqp::{AmqpConfig, Connection};
use pubsub_core::{Event, EventHandler, HandlerResult, Metadata, TypedEvent};
use pubsub_publisher::{EventPublisher, PublishOptions};
use pubsub_registry::{HandlerRegistry, InvocationResult};
use pubsub_subscriber::{
    dead_letter_queue_name, queue_names, EventSubscriber, PoolStats, RunningPool, SubscriberStats,
    WorkerPool,
};

use crate::context::{self, Contextual};
use crate::error::{Error, PublishError, Result};
use crate::metrics::{endpoint::Endpoint, Metrics};
use crate::publishing::{self as publisher, Publisher, Target};

#[cfg(feature = "asyncapi")]
#[path = "asyncapi.rs"]
mod asyncapi;
mod beside;
mod builder;

use self::builder::service_from_env;
pub use self::builder::{EventBusBuilder, SERVICE_NAME_ENV};

/// One service on the bus: its handlers, its queue, its workers and its publisher (seed
/// 004's `EventBus(service_name)`).
///
/// # Names
///
/// The service name names the service's queue: one queue per service, so that every
/// instance of a service shares the work and every service gets its own copy of each event.
/// Beside it live `<service>.dlq` (dead letters) and `<service>.retry.<delay>` (one delay
/// queue per retry delay). The name is also the `app_id`, the source, of everything the
/// service publishes.
///
/// # Lifecycle
///
/// 1. [`builder`](Self::builder)`(service)` ... [`build`](EventBusBuilder::build);
/// 2. [`subscribe`](Self::subscribe) / [`subscribe_typed`](Self::subscribe_typed) every
///    handler;
/// 3. [`start`](Self::start): declares the exchange, the queue and its bindings (exactly what
///    the handlers' patterns need), starts the workers and the publishing thread;
/// 4. [`publisher`](Self::publisher) handles publish from any thread, also from inside
///    handlers;
/// 5. [`stop`](Self::stop): publishes what is queued, finishes the deliveries in progress,
///    closes and joins everything; [`teardown`](Self::teardown) also deletes the queues.
///
/// A bus without handlers only publishes: it declares no queue.
///
/// # Correlation
///
/// While a handler of this bus runs, its event is the thread's current one: an event
/// published from that thread through any handle of the bus gets the incoming event's
/// correlation id (or, when it had none, the incoming event's id: it started the flow) and,
/// as causation id, the incoming event's id, unless the publisher sets them.
pub struct EventBus {
    settings: EventBusBuilder,
    amqp: Option<AmqpConfig>,
    exchange: String,
    publisher: Publisher,
    /// The handlers, until `start` shares them with the workers.
    registry: Option<HandlerRegistry>,
    state: State,
    /// What is measured, when metrics are on.
    metrics: Option<Arc<Metrics>>,
    /// What runs beside the handlers (the event store, task functions), until `start`.
    beside: beside::Prepared,
    /// Handlers run elsewhere (an [`AsyncEventBus`](crate::AsyncEventBus)'s), when set.
    #[cfg(feature = "tokio")]
    pub(crate) dispatch: Option<DispatchPlan>,
}

/// Where an async bus's handlers run, and what its queue is bound to.
#[cfg(feature = "tokio")]
pub(crate) struct DispatchPlan {
    pub(crate) dispatcher: Arc<dyn pubsub_subscriber::Dispatcher>,
    pub(crate) bindings: Vec<String>,
    /// How long a stop waits for the handlers in flight.
    pub(crate) drain: std::time::Duration,
}

enum State {
    Built,
    Running(Box<Running>),
    Stopped,
}

/// What a started bus runs.
struct Running {
    /// The workers, when the bus has handlers and a broker.
    workers: Option<RunningPool>,
    publisher_thread: Option<publisher::Thread>,
    registry: Arc<HandlerRegistry>,
    /// The metrics endpoint, when asked for.
    endpoint: Option<Endpoint>,
    /// The event store and the task workers, when the bus runs them.
    beside: beside::Running,
}

/// What a stopped bus did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// The handlers' workers' counters, summed.
    pub subscriber: SubscriberStats,
    /// How many workers consumed for the handlers (none in process, or without handlers).
    pub workers: usize,
    /// The event store's, when the bus ran it ([`EventBusBuilder::store`]).
    #[cfg(feature = "store")]
    pub store: Option<pubsub_recorder::RecorderStats>,
    /// The task workers', when the bus ran task functions ([`EventBusBuilder::task`]).
    #[cfg(feature = "tasks")]
    pub tasks: Option<PoolStats>,
    /// The outbox relay's, when the bus ran it ([`EventBusBuilder::outbox`]).
    #[cfg(feature = "outbox")]
    pub relay: Option<pubsub_outbox::RelayStats>,
}

impl From<PoolStats> for BusStats {
    fn from(pool: PoolStats) -> Self {
        BusStats {
            subscriber: pool.subscriber,
            workers: pool.workers,
            ..BusStats::default()
        }
    }
}

impl fmt::Display for BusStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handlers, {} worker(s): {}",
            self.workers, self.subscriber
        )?;
        #[cfg(feature = "store")]
        if let Some(store) = &self.store {
            write!(f, "; store, {} new row(s), {}", store.stored, store.pool)?;
        }
        #[cfg(feature = "tasks")]
        if let Some(tasks) = &self.tasks {
            write!(f, "; tasks, {tasks}")?;
        }
        #[cfg(feature = "outbox")]
        if let Some(relay) = &self.relay {
            write!(f, "; outbox relay, {relay}")?;
        }
        Ok(())
    }
}

/// What [`EventBus::teardown`] deleted, and what it kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// The final counters.
    pub stats: BusStats,
    /// The queues deleted.
    pub deleted: Vec<String>,
    /// The dead-letter queue, kept because it holds this many events (only with
    /// [`EventBus::teardown_keeping_dead_letters`]).
    pub dead_letters_kept: Option<(String, u32)>,
}

impl EventBus {
    /// Starts configuring the bus of the service `service`; see [`EventBus`] for what the
    /// name names, and [`validate_service_name`](crate::validate_service_name) for which names are valid.
    pub fn builder(service: &str) -> EventBusBuilder {
        EventBusBuilder::new(service)
    }

    /// Starts configuring the bus of the service named by the `SERVICE_NAME` environment
    /// variable ([`SERVICE_NAME_ENV`], seed 003's), so that a Rust service reads the same
    /// environment as its Python sibling; the broker and the exchange come from the
    /// environment too, as with [`builder`](Self::builder).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidServiceName`] when `SERVICE_NAME` is unset or not valid Unicode (an
    /// invalid name fails [`EventBusBuilder::build`], as any name does).
    pub fn from_env() -> Result<EventBusBuilder> {
        let name = service_from_env(std::env::var_os(SERVICE_NAME_ENV))?;
        Ok(Self::builder(&name))
    }

    /// A bus without a broker, for tests: [`builder`](Self::builder)`(service).in_process()`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidServiceName`].
    pub fn in_process(service: &str) -> Result<EventBus> {
        Self::builder(service).in_process().build()
    }

    /// The service's name: its queue's name and its events' `app_id`.
    pub fn service(&self) -> &str {
        &self.settings.service
    }

    /// The exchange.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Whether the bus runs without a broker.
    pub fn is_in_process(&self) -> bool {
        self.amqp.is_none()
    }

    /// The queue its workers consume: [`EventBusBuilder::queue`], else the service's name.
    pub fn queue(&self) -> &str {
        self.settings
            .consumer
            .queue
            .as_deref()
            .unwrap_or(&self.settings.service)
    }

    /// The names of the service's queues: the queue, its retry queues, its dead-letter queue;
    /// then those of the event store and of the task workers, when the bus runs them.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = queue_names(self.queue(), &self.settings.retry);
        queues.extend_from_slice(self.beside.queues());
        queues
    }

    /// Subscribes `handler` to the events whose routing key matches `pattern` (AMQP topic
    /// semantics: `order.created`, `order.*`, `*.created`, `order.#`, `#`).
    ///
    /// # Errors
    ///
    /// [`Error::Subscribe`] for an invalid pattern or a handler name already subscribed to
    /// it; [`Error::AlreadyStarted`] after [`start`](Self::start).
    pub fn subscribe<H: EventHandler + 'static>(
        &mut self,
        pattern: &str,
        handler: H,
    ) -> Result<&mut Self> {
        self.subscribe_arc(pattern, Arc::new(handler))
    }

    /// Subscribes a shared handler, e.g. one handler value under several patterns, or one
    /// whose effects the caller reads.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_arc(
        &mut self,
        pattern: &str,
        handler: Arc<dyn EventHandler>,
    ) -> Result<&mut Self> {
        let Some(registry) = self.registry.as_mut() else {
            return Err(Error::AlreadyStarted);
        };
        let durations = self.metrics.as_ref().map(|m| m.handler(handler.name()));
        registry.subscribe(pattern, Contextual { handler, durations })?;
        Ok(self)
    }

    /// Subscribes a closure to one typed event: the routing key `T::DOMAIN.T::ACTION`, the
    /// data decoded into `T`. The handler is named after the type (`OrderPaid`); use
    /// [`subscribe_typed_as`](Self::subscribe_typed_as) to subscribe a second one.
    ///
    /// An event whose data does not decode into `T` fails permanently: over the broker it
    /// is dead-lettered as poison at once, without retries.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_typed<T, F>(&mut self, handler: F) -> Result<&mut Self>
    where
        T: TypedEvent + 'static,
        F: Fn(T, &Metadata) -> HandlerResult + Send + Sync + 'static,
    {
        let name = short_type_name(std::any::type_name::<T>());
        self.subscribe_typed_as::<T, F>(name, handler)
    }

    /// [`subscribe_typed`](Self::subscribe_typed) with a handler name of its own.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_typed_as<T, F>(&mut self, name: &str, handler: F) -> Result<&mut Self>
    where
        T: TypedEvent + 'static,
        F: Fn(T, &Metadata) -> HandlerResult + Send + Sync + 'static,
    {
        let pattern = format!("{}.{}", T::DOMAIN, T::ACTION);
        let typed = pubsub_core::handler_fn(name, move |event: &Event, meta: &Metadata| {
            let data: T = event.decode()?; // a decode error is permanent: poison
            handler(data, meta)
        });
        self.subscribe(&pattern, typed)
    }

    /// A publishing handle, `Clone + Send + Sync`: take it before [`start`](Self::start) to
    /// give it to handlers; it publishes once the bus is started.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// A task queue on the bus's broker (feature `tasks`): submits tasks to the task exchange
    /// (`task.exchange`, or [`EventBusBuilder::task_exchange`]) with the service as their
    /// producer. Each call opens a connection and a publishing thread of its own: take one
    /// and clone it (`Clone + Send + Sync`), also into handlers. Works before
    /// [`start`](Self::start), but a task is refused as unroutable until some worker's queue
    /// is bound for it (this bus's task workers bind theirs at start).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] on an in-process bus; [`Error::Amqp`] when the broker cannot
    /// be reached; `Error::Tasks` when the exchange cannot be declared.
    #[cfg(feature = "tasks")]
    pub fn task_queue(&self) -> Result<pubsub_tasks::TaskQueue> {
        let Some(config) = &self.amqp else {
            return Err(Error::InvalidConfig {
                message: "an in-process bus has no broker to submit tasks to".to_owned(),
            });
        };
        let name = format!("{} tasks", self.settings.service);
        let connection = Connection::open(&config.clone().with_connection_name(&name))?;
        let exchange = self
            .settings
            .beside
            .task_exchange
            .as_deref()
            .unwrap_or(pubsub_tasks::DEFAULT_EXCHANGE);
        Ok(pubsub_tasks::TaskQueue::builder(connection)
            .exchange(exchange)
            .producer(&self.settings.service)
            .build()?)
    }

    /// Publishes one event through the bus's handle and waits for the confirm; see
    /// [`Publisher::publish`].
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`].
    pub fn publish(&self, event: Event) -> Result<(), PublishError> {
        self.publisher.publish(event)
    }

    /// Runs this bus's handlers on `event` now, in the calling thread, as an in-process
    /// publish does, and says how each fared (nothing goes through the broker). Works once
    /// the bus is started.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`] before [`start`](Self::start), [`Error::Stopped`] after
    /// [`stop`](Self::stop).
    pub fn dispatch(&self, event: &Event, options: PublishOptions) -> Result<InvocationResult> {
        match &self.state {
            State::Built => Err(Error::NotStarted),
            State::Stopped => Err(Error::Stopped),
            State::Running(running) => {
                let current = context::current();
                let (correlation_id, causation_id) = context::correlate(
                    options.correlation_id,
                    options.causation_id,
                    current.as_ref(),
                );
                let options = PublishOptions {
                    correlation_id,
                    causation_id,
                    event_type: options.event_type.or(self.settings.event_type),
                    ..options
                };
                Ok(publisher::invoke(
                    &running.registry,
                    &self.settings.service,
                    event,
                    &options,
                ))
            }
        }
    }

    /// Starts the bus. Over the broker: declares the exchange, the service's queue with its
    /// dead-letter and retry queues and its bindings (if it has handlers), starts the workers
    /// and the publishing thread, each with its own connection. In process: publishes go to
    /// the handlers from now on.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] (or [`Error::Stopped`]) when called twice; [`Error::Amqp`]
    /// or [`Error::Subscriber`] when the broker cannot be reached or refuses the topology
    /// (nothing is left running then).
    pub fn start(&mut self) -> Result<()> {
        match self.state {
            State::Built => {}
            State::Running(_) => return Err(Error::AlreadyStarted),
            State::Stopped => return Err(Error::Stopped),
        }
        let registry = Arc::new(self.registry.take().unwrap_or_default());
        let running = match self.amqp.clone() {
            None => {
                self.publisher.retarget(Target::InProcess(registry.clone()));
                Running {
                    workers: None,
                    publisher_thread: None,
                    registry,
                    endpoint: None,
                    beside: beside::Running::default(),
                }
            }
            Some(config) => match self.start_broker(&config, registry.clone()) {
                Ok(running) => running,
                Err(e) => {
                    // Nothing runs; subscribing is over, so the bus cannot start again.
                    self.state = State::Stopped;
                    self.publisher.retarget(Target::Stopped);
                    return Err(e);
                }
            },
        };
        let mut running = running;
        if let Err(e) = self.serve_metrics(&mut running) {
            self.state = State::Running(Box::new(running));
            // Nothing is left running on an error.
            let _ = self.stop();
            return Err(e);
        }
        log::info!(
            "bus of `{}` started ({}, {} worker(s), {} subscription(s))",
            self.settings.service,
            if self.amqp.is_some() {
                "broker"
            } else {
                "in process"
            },
            running.workers.as_ref().map_or(0, RunningPool::len),
            running.registry.len()
        );
        self.state = State::Running(Box::new(running));
        Ok(())
    }

    fn start_broker(
        &mut self,
        config: &AmqpConfig,
        registry: Arc<HandlerRegistry>,
    ) -> Result<Running> {
        // The store first, so that it keeps what the handlers publish from the first event
        // on; on an error below, dropping what started stops it.
        let mut beside = self.beside.start(config)?;
        let s = &self.settings;
        #[cfg(feature = "tokio")]
        let dispatch = self.dispatch.as_ref();
        #[cfg(not(feature = "tokio"))]
        let dispatch: Option<&()> = None;
        let workers = if registry.is_empty() && dispatch.is_none() {
            None
        } else {
            let pool = WorkerPool::new(config, &s.service).workers(s.workers);
            let queue = self.queue();
            Some(pool.start(|_, connection| {
                let builder = EventSubscriber::builder(connection, queue, registry.clone());
                let mut builder = s
                    .consumer
                    .apply(builder)
                    .exchange(&self.exchange)
                    .prefetch(s.prefetch)
                    .retry(s.retry.clone());
                if let Some(versions) = &s.supported_major_versions {
                    builder = builder.supported_major_versions(versions);
                }
                if let Some(observer) = &s.observer {
                    builder = builder.observer(observer.clone());
                }
                #[cfg(feature = "tokio")]
                if let Some(plan) = dispatch {
                    builder = builder
                        .bindings(plan.bindings.iter().cloned())
                        .dispatcher(plan.dispatcher.clone(), plan.drain);
                }
                Ok::<_, Error>(builder)
            })?)
        };
        // The outbox's relay after the handlers' workers: everything it publishes to is
        // declared by now.
        self.beside.start_relay(&mut beside)?;
        let s = &self.settings;
        let name = format!("{} publisher", s.service);
        let connection = Connection::open(&config.clone().with_connection_name(&name))?;
        let event_publisher = EventPublisher::builder(connection, &self.exchange)
            .app_id(&s.service)
            .unroutable(s.unroutable)
            .build()?;
        if let Some(metrics) = &self.metrics {
            let workers = workers
                .as_ref()
                .map(RunningPool::stats_handles)
                .unwrap_or_default();
            metrics.attach(Some(event_publisher.stats_handle()), workers);
        }
        let (shared, thread) = publisher::spawn(event_publisher, s.publish_queue)?;
        self.publisher.retarget(Target::Broker(shared));
        Ok(Running {
            workers,
            publisher_thread: Some(thread),
            registry,
            endpoint: None,
            beside,
        })
    }

    /// Starts the metrics endpoint, when asked for.
    fn serve_metrics(&self, running: &mut Running) -> Result<()> {
        let (Some(metrics), Some(address)) = (&self.metrics, self.settings.metrics_endpoint) else {
            return Ok(());
        };
        let metrics = metrics.clone();
        let service = self.settings.service.clone();
        let exchange = self.exchange.clone();
        let endpoint = Endpoint::start(address, &service.clone(), move || {
            metrics.render(&service, &exchange)
        })
        .map_err(|source| Error::MetricsEndpoint { address, source })?;
        running.endpoint = Some(endpoint);
        Ok(())
    }

    /// The duration histogram of handler `name`, when metrics are on.
    #[cfg(feature = "tokio")]
    pub(crate) fn handler_durations(&self, name: &str) -> Option<Arc<crate::metrics::Histogram>> {
        self.metrics.as_ref().map(|m| m.handler(name))
    }

    /// The metrics now, in the Prometheus text format (what the endpoint serves); `None`
    /// unless metrics are on ([`EventBusBuilder::metrics`]).
    pub fn metrics(&self) -> Option<String> {
        let metrics = self.metrics.as_ref()?;
        Some(metrics.render(&self.settings.service, &self.exchange))
    }

    /// The address the metrics endpoint listens on while the bus runs (with the port chosen
    /// when port 0 was asked for).
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        match &self.state {
            State::Running(running) => running.endpoint.as_ref().map(Endpoint::address),
            State::Built | State::Stopped => None,
        }
    }

    /// Whether the bus is started and every worker still consumes. A worker ends by itself
    /// only on an error reconnecting cannot fix (refused credentials, a queue declared with
    /// other arguments) or when its reconnect policy gives up; [`stop`](Self::stop) then
    /// returns that error.
    pub fn is_running(&self) -> bool {
        match &self.state {
            State::Running(running) => {
                running.workers.as_ref().is_none_or(RunningPool::is_running)
                    && running.beside.is_running()
            }
            State::Built | State::Stopped => false,
        }
    }

    /// Stops the bus: no new publish is accepted ([`Error::Stopped`]), what is queued is
    /// published and answered, each worker finishes its delivery in progress and acks, and
    /// every connection is closed and every thread joined. Stopping twice is harmless.
    ///
    /// # Errors
    ///
    /// The first error a worker had stopped on (all are stopped and joined regardless).
    pub fn stop(&mut self) -> Result<BusStats> {
        let State::Running(running) = std::mem::replace(&mut self.state, State::Stopped) else {
            self.publisher.retarget(Target::Stopped);
            return Ok(BusStats::default());
        };
        let Running {
            workers,
            publisher_thread,
            registry: _,
            endpoint,
            beside,
        } = *running;
        if let Some(endpoint) = endpoint {
            endpoint.stop();
        }
        // Publishes first, so that handlers that publish while the workers finish get an
        // answer (their events are published, or refused as stopped).
        // Dropping the bus's handle lets the thread finish what is queued and end.
        drop(self.publisher.retarget(Target::Stopped));
        if let Some(thread) = publisher_thread {
            if thread.join().is_err() {
                log::error!(
                    "the publishing thread of `{}` panicked",
                    self.settings.service
                );
            }
        }
        let handlers = workers.map(RunningPool::stop).transpose();
        // Then the task workers and the store, whatever the handlers' workers ended on.
        let mut stats = BusStats::default();
        let beside = beside.stop(&mut stats);
        if let Some(pool) = handlers? {
            stats.subscriber = pool.subscriber;
            stats.workers = pool.workers;
        }
        beside.map(|()| stats)
    }

    /// Stops the bus (if running) and deletes the service's queue, its retry queues and its
    /// dead-letter queue, dead letters included. The exchange stays: other services use it.
    /// In process there is nothing to delete.
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop), or [`Error::Amqp`] when a queue cannot be deleted.
    pub fn teardown(self) -> Result<Teardown> {
        self.teardown_with(false)
    }

    /// [`teardown`](Self::teardown), except that a dead-letter queue holding events is kept
    /// (and reported), so that nothing is lost.
    ///
    /// # Errors
    ///
    /// As [`teardown`](Self::teardown).
    pub fn teardown_keeping_dead_letters(self) -> Result<Teardown> {
        self.teardown_with(true)
    }

    fn teardown_with(mut self, keep_dead_letters: bool) -> Result<Teardown> {
        let stats = self.stop()?;
        let mut report = Teardown {
            stats,
            deleted: Vec::new(),
            dead_letters_kept: None,
        };
        let Some(config) = &self.amqp else {
            return Ok(report);
        };
        let name = format!("{} teardown", self.settings.service);
        let mut connection = Connection::open(&config.clone().with_connection_name(&name))?;
        let mut channel = connection.open_channel()?;
        let dlq = dead_letter_queue_name(self.queue());
        for queue in self.queues() {
            if self.settings.consumer.existing_queue && queue == self.queue() {
                continue; // another service's queue
            }
            if queue == dlq && keep_dead_letters {
                let dead = match channel.queue_info(&queue) {
                    Ok(info) => info.message_count,
                    Err(_) => {
                        // A missing queue closes the channel.
                        channel = connection.open_channel()?;
                        0
                    }
                };
                if dead > 0 {
                    report.dead_letters_kept = Some((queue, dead));
                    continue;
                }
            }
            channel.delete_queue(&queue)?;
            report.deleted.push(queue);
        }
        drop(channel);
        if let Err(e) = connection.close() {
            log::debug!("closing the teardown connection: {e}");
        }
        Ok(report)
    }
}

impl Drop for EventBus {
    fn drop(&mut self) {
        if matches!(self.state, State::Running(_)) {
            if let Err(e) = self.stop() {
                log::warn!(
                    "dropped bus of `{}` stopped with: {e}",
                    self.settings.service
                );
            }
        }
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Built => "built",
            State::Running(_) => "running",
            State::Stopped => "stopped",
        };
        f.debug_struct("EventBus")
            .field("service", &self.settings.service)
            .field("broker", &self.amqp.as_ref().map(AmqpConfig::redacted_url))
            .field("exchange", &self.exchange)
            .field("workers", &self.settings.workers)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// `my_crate::events::OrderPaid` becomes `OrderPaid`.
pub(crate) fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    match base.rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_errors_cross_threads() {
        fn shared<T: Clone + Send + Sync + 'static>() {}
        fn sent<T: Send + 'static>() {}
        fn error<T: std::error::Error + Send + Sync + 'static>() {}
        shared::<Publisher>();
        sent::<EventBus>();
        sent::<crate::Receipt>();
        sent::<crate::Receipts>();
        error::<Error>();
        error::<PublishError>();
    }

    #[test]
    fn typed_handlers_are_named_after_the_type() {
        assert_eq!(short_type_name("a::b::OrderPaid"), "OrderPaid");
        assert_eq!(short_type_name("OrderPaid"), "OrderPaid");
        assert_eq!(short_type_name("a::W<b::C>"), "W<b::C>");
    }
}
