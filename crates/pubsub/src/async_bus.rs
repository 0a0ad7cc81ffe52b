//! [`AsyncEventBus`] (feature `tokio`): the bus of a tokio service. Its handlers are async and
//! run as tasks of the caller's runtime, at most [`concurrency`](EventBusBuilder::concurrency)
//! at once; its publishes are awaited. Underneath it is the blocking bus, unchanged: the
//! consumer and the publisher keep their own threads and connections (amiquip), bridged to
//! the runtime by the subscriber's [`Dispatcher`] and the publisher's awaitable receipts.

use std::fmt;
use std::future::Future as _;
use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{Event, Metadata, TypedEvent};
use pubsub_subscriber::{Dispatcher, Job};

use crate::bus::{BusStats, DispatchPlan, EventBus, EventBusBuilder, Teardown};
use crate::error::{Error, PublishError, Result};
use crate::publishing::{Publisher, RunInProcess, Target};

mod handler;

use self::handler::Handlers;
pub use self::handler::{async_handler_fn, AsyncEventHandler, AsyncFnHandler, HandlerFuture};

/// How many handlers run at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: u16 = 64;

/// How long [`AsyncEventBus::stop`] waits for the handlers in flight before it leaves their
/// deliveries to the broker, unless told otherwise ([`AsyncEventBus::drain_timeout`]).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The event bus of an async (tokio) service: async handlers run as tasks of the caller's
/// runtime, publishes are awaited, and nothing blocks a runtime thread.
///
/// Built from the same builder as [`EventBus`], with the same settings, names, environment
/// and topology: `EventBus::builder(service)` ... [`build_async`](EventBusBuilder::build_async).
///
/// - **Handlers** ([`subscribe`](Self::subscribe), [`subscribe_fn`](Self::subscribe_fn),
///   [`subscribe_typed`](Self::subscribe_typed)) run as tasks (polled first on the consumer's
///   thread, in the runtime's context, so that a handler that never waits costs no hop;
///   spawned at their first wait), at most
///   [`concurrency`](EventBusBuilder::concurrency) deliveries at once (64 by default); the
///   prefetch follows the concurrency, so deliveries never pile up in memory. Each delivery
///   is settled as the blocking bus settles it: acked, retried through the delay queues
///   (only the handlers that failed run again), or dead-lettered. A handler that panics, or
///   whose task is cancelled or whose runtime shuts down mid-way, has its delivery retried
///   (the attempt counts): nothing is lost, nothing loops.
/// - **Publishing** ([`publish`](Self::publish), [`publish_all`](Self::publish_all), or the
///   [`Publisher`] handle's receipts, which are futures) resolves on the broker's confirms.
///   Published from inside a handler, also after an `.await`, an event carries the incoming
///   event's correlation id and its id as causation id (a task-local, not a thread-local).
/// - **Lifecycle:** [`start`](Self::start) and [`stop`](Self::stop) are awaited (their
///   blocking parts run on tokio's blocking pool). `stop` drains: it waits up to 30 s
///   ([`drain_timeout`](Self::drain_timeout)) for the handlers in flight. A bus dropped while running stops on a thread of its own; what
///   it has not acked goes back to the broker.
///
/// ```no_run
/// use pubsub::{Event, EventBus};
/// use serde_json::json;
///
/// # async fn service() -> Result<(), Box<dyn std::error::Error>> {
/// let mut bus = EventBus::builder("billing").concurrency(256).build_async()?;
/// bus.subscribe_fn("order.created", "invoice", |event, _meta| async move {
///     // await a database, an HTTP call...
///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
///     log::info!("invoicing {}", event.data()["order_id"]);
///     Ok(())
/// })?;
/// bus.start().await?;
/// bus.publish(Event::new("order", "created", json!({ "order_id": "ORD-1" }))?).await?;
/// bus.stop().await?;
/// # Ok(())
/// # }
/// ```
///
/// With the features `store` and `tasks`, the event store and task functions run beside it as
/// beside the blocking bus. In process (`in_process()`, for tests), a publish runs the
/// matching handlers as its receipt is awaited, and fails with
/// [`Error::Handlers`](crate::Error::Handlers) when one of them fails, as the blocking bus's.
pub struct AsyncEventBus {
    /// The blocking bus underneath; away while a blocking call (start, stop) has it, and
    /// gone if that call's future was dropped (the bus then stops on its own).
    bus: Option<EventBus>,
    service: String,
    queue: String,
    publisher: Publisher,
    /// The handlers, until `start` hands them to the dispatcher.
    handlers: Handlers,
    /// Whether `start` was called (no subscribing after it).
    started: bool,
    drain: Duration,
}

impl EventBusBuilder {
    /// For an [`AsyncEventBus`] (feature `tokio`): how many deliveries its handlers work on at
    /// once (64 by default; at least 1, at most 65,535). The prefetch follows it.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Builds an [`AsyncEventBus`] (feature `tokio`) with these settings.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build); [`Error::InvalidConfig`] for a concurrency of 0 or over
    /// 65,535, or the store or tasks on an in-process bus. In process (no broker), a
    /// publish runs the async handlers as its receipt is awaited. With the features `store`
    /// and `tasks`, the event store and task functions (`store`, `task`) run beside the
    /// async handlers as they run beside the blocking bus's: on their own threads.
    pub fn build_async(mut self) -> Result<AsyncEventBus> {
        let concurrency =
            match self.concurrency {
                None => DEFAULT_CONCURRENCY,
                Some(n) => u16::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                    Error::InvalidConfig {
                        message: format!("the concurrency must be 1 to 65535, not {n}"),
                    }
                })?,
            };
        self.prefetch = concurrency;
        let bus = self.build()?;
        Ok(AsyncEventBus {
            service: bus.service().to_owned(),
            queue: bus.queue().to_owned(),
            publisher: bus.publisher(),
            bus: Some(bus),
            handlers: Handlers::default(),
            started: false,
            drain: DEFAULT_DRAIN,
        })
    }
}

impl AsyncEventBus {
    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The queue its handlers consume.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// How long [`stop`](Self::stop) waits for the handlers in flight (30 s by default);
    /// takes effect at [`start`](Self::start).
    pub fn drain_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.drain = timeout;
        self
    }

    /// Subscribes an async handler to the routing keys that match `pattern`.
    ///
    /// # Errors
    ///
    /// [`Error::Subscribe`] for an invalid pattern or a handler name already subscribed to
    /// it; [`Error::AlreadyStarted`] after [`start`](Self::start).
    pub fn subscribe<H: AsyncEventHandler>(
        &mut self,
        pattern: &str,
        handler: H,
    ) -> Result<&mut Self> {
        self.subscribe_arc(pattern, Arc::new(handler))
    }

    /// Subscribes a shared async handler (one value under several patterns, say).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_arc(
        &mut self,
        pattern: &str,
        handler: Arc<dyn AsyncEventHandler>,
    ) -> Result<&mut Self> {
        if self.started {
            return Err(Error::AlreadyStarted);
        }
        let durations = self
            .bus
            .as_ref()
            .and_then(|bus| bus.handler_durations(handler.name()));
        self.handlers.subscribe(pattern, handler, durations)?;
        Ok(self)
    }

    /// Subscribes an async closure named `name` to `pattern`:
    /// `bus.subscribe_fn("order.*", "audit", |event, meta| async move { Ok(()) })`.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_fn<F, Fut>(&mut self, pattern: &str, name: &str, f: F) -> Result<&mut Self>
    where
        F: Fn(Event, Metadata) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = pubsub_core::HandlerResult> + Send + 'static,
    {
        self.subscribe(pattern, async_handler_fn(name, f))
    }

    /// Subscribes an async closure to one typed event: the routing key
    /// `T::DOMAIN.T::ACTION`, the data decoded into `T`, the handler named after the type. An
    /// event whose data does not decode into `T` fails permanently: it is dead-lettered as
    /// poison at once.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_typed<T, F, Fut>(&mut self, f: F) -> Result<&mut Self>
    where
        T: TypedEvent + Send + 'static,
        F: Fn(T, Metadata) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = pubsub_core::HandlerResult> + Send + 'static,
    {
        let name = crate::bus::short_type_name(std::any::type_name::<T>());
        let pattern = format!("{}.{}", T::DOMAIN, T::ACTION);
        let f = Arc::new(f);
        self.subscribe(
            &pattern,
            async_handler_fn(name, move |event: Event, meta: Metadata| {
                let f = f.clone();
                async move {
                    let data: T = event.decode()?; // a decode error is permanent: poison
                    f(data, meta).await
                }
            }),
        )
    }

    /// A publishing handle, `Clone + Send + Sync`; its receipts are futures.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Publishes `event` and resolves once the broker has confirmed it. From inside a
    /// handler of this bus, the event is correlated with the one being handled.
    ///
    /// # Errors
    ///
    /// A [`PublishError`] that gives the event back, as [`EventBus::publish`].
    pub async fn publish(&self, event: Event) -> std::result::Result<(), PublishError> {
        self.publisher.send(event)?.await
    }

    /// Publishes `events` as one pipelined batch; resolves once the broker has answered for
    /// every one, with one outcome per event, in order.
    pub async fn publish_all(
        &self,
        events: Vec<Event>,
    ) -> Vec<std::result::Result<(), PublishError>> {
        self.publisher.send_all(events).await
    }

    /// Declares the topology, starts the consumer and the publishing thread, and runs the
    /// handlers on this runtime from now on. Call it from inside the tokio runtime that is
    /// to run the handlers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] outside a tokio runtime; otherwise as [`EventBus::start`].
    pub async fn start(&mut self) -> Result<()> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::InvalidConfig {
            message: "AsyncEventBus::start must be awaited inside a tokio runtime, which runs its handlers".to_owned(),
        })?;
        let mut bus = self.take()?;
        self.started = true;
        let handlers = Arc::new(std::mem::take(&mut self.handlers));
        if bus.is_in_process() {
            // No broker: a publish runs the handlers as its receipt is awaited.
            let started = bus.start();
            self.publisher
                .retarget(Target::InProcessAsync(Arc::new(InProcess {
                    handlers,
                    runtime,
                })));
            self.bus = Some(bus);
            return started;
        }
        if !handlers.is_empty() {
            bus.dispatch = Some(DispatchPlan {
                bindings: handlers.bindings(),
                dispatcher: Arc::new(Tasks { runtime, handlers }),
                drain: self.drain,
            });
        }
        let (bus, started) = blocking(move || {
            let started = bus.start();
            (bus, started)
        })
        .await?;
        self.bus = Some(bus);
        started
    }

    /// Stops: publishes what is queued, stops taking deliveries, waits up to 30 s for the
    /// handlers in flight (their deliveries are then settled; the ones still running after
    /// that go back to the broker), closes and joins everything. Stopping twice is harmless.
    ///
    /// # Errors
    ///
    /// As [`EventBus::stop`].
    pub async fn stop(&mut self) -> Result<BusStats> {
        let mut bus = self.take()?;
        let (bus, stopped) = blocking(move || {
            let stopped = bus.stop();
            (bus, stopped)
        })
        .await?;
        self.bus = Some(bus);
        stopped
    }

    /// Stops the bus and deletes its queue, retry queues and dead-letter queue, as
    /// [`EventBus::teardown`].
    ///
    /// # Errors
    ///
    /// As [`EventBus::teardown`].
    pub async fn teardown(mut self) -> Result<Teardown> {
        let bus = self.take()?;
        blocking(move || bus.teardown()).await?
    }

    /// The metrics now, in the Prometheus text format, handler durations included; `None`
    /// unless metrics are on ([`EventBusBuilder::metrics`]), or while `start` or `stop` runs.
    pub fn metrics(&self) -> Option<String> {
        self.bus.as_ref().and_then(EventBus::metrics)
    }

    /// A task queue on the bus's broker (feature `tasks`), as [`EventBus::task_queue`]; its
    /// submissions block until confirmed (call them from `spawn_blocking` in async code).
    ///
    /// # Errors
    ///
    /// As [`EventBus::task_queue`]; [`Error::Stopped`] while `start` or `stop` runs.
    #[cfg(feature = "tasks")]
    pub fn task_queue(&self) -> Result<pubsub_tasks::TaskQueue> {
        self.bus.as_ref().ok_or(Error::Stopped)?.task_queue()
    }

    /// The queues the bus declares: its own, its retry and dead-letter queues, and the store's
    /// and the task workers' (as [`EventBus::queues`]).
    pub fn queues(&self) -> Vec<String> {
        self.bus.as_ref().map(EventBus::queues).unwrap_or_default()
    }

    /// Whether the bus is started and not stopped.
    pub fn is_running(&self) -> bool {
        self.bus.as_ref().is_some_and(EventBus::is_running)
    }

    /// The bus, for a blocking call: gone only if an earlier call's future was dropped
    /// before it finished (that bus stopped on its own).
    fn take(&mut self) -> Result<EventBus> {
        self.bus.take().ok_or(Error::Stopped)
    }
}

/// Runs `f` on tokio's blocking pool (connections, joins), so that no runtime thread waits.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::InvalidConfig {
            message: format!("the bus's blocking work did not finish: {e}"),
        })
}

impl Drop for AsyncEventBus {
    fn drop(&mut self) {
        let Some(bus) = self.bus.take() else {
            return;
        };
        if bus.is_running() {
            // Stopping blocks (it joins threads and waits for the handlers in flight, which
            // need this runtime): on a thread of its own, so that no runtime thread waits.
            let stopping = std::thread::Builder::new()
                .name(format!("{}-stop", bus.service()))
                .spawn(move || drop(bus));
            if let Err(e) = stopping {
                log::error!("cannot stop a dropped async bus on a thread of its own: {e}");
            }
        }
    }
}

impl fmt::Debug for AsyncEventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncEventBus")
            .field("bus", &self.bus)
            .field("handlers", &self.handlers)
            .finish()
    }
}

/// In process: the handlers, run as a publish's receipt is awaited.
struct InProcess {
    handlers: Arc<Handlers>,
    runtime: tokio::runtime::Handle,
}

impl RunInProcess for InProcess {
    fn run(
        &self,
        event: Event,
        meta: Metadata,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = pubsub_registry::InvocationResult> + Send>,
    > {
        let handlers = self.handlers.clone();
        Box::pin(async move {
            #[cfg(feature = "otel")]
            let result = handlers.invoke(&event, &meta, &[], None).await;
            #[cfg(not(feature = "otel"))]
            let result = handlers.invoke(&event, &meta, &[]).await;
            result
        })
    }

    fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.clone()
    }
}

/// The dispatcher: each delivery's handlers as one task of the runtime, polled first on the
/// consumer's thread (inside the runtime's context): handlers that finish without waiting
/// for anything cost no hop between threads; the others are spawned as a task at their first
/// `.await` that waits, and the runtime runs them from there.
struct Tasks {
    runtime: tokio::runtime::Handle,
    handlers: Arc<Handlers>,
}

impl Dispatcher for Tasks {
    fn dispatch(&self, job: Job) {
        let handlers = self.handlers.clone();
        let mut task = Box::pin(async move { handlers.run(job).await });
        {
            let _context = self.runtime.enter();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if task.as_mut().poll(&mut cx).is_ready() {
                return;
            }
        }
        // Spawning polls the task again at once, and it registers the task's own waker then.
        // On a runtime that has shut down the task is dropped at once, and with it the job,
        // which answers that its handlers did not finish: the delivery is retried.
        drop(self.runtime.spawn(task));
    }
}
