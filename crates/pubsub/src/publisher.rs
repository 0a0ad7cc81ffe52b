//! [`Publisher`]: the bus's publishing handle, `Clone + Send + Sync`, over the publisher
//! crate's [`SharedPublisher`] (the one thread that owns the connection, its queue, batching
//! and linger). What is the bus's own is here: where publishes go (not started, the broker,
//! in process, stopped), the correlation of what a handler publishes, the service's name and
//! event type, the trace context of the caller.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use pubsub_core::{Event, EventType, Metadata};
use pubsub_publisher::{EventPublisher, PublishOptions, PublishingThread, SharedPublisher};
use pubsub_registry::{HandlerRegistry, InvocationResult};

use crate::context;
use crate::error::{Error, PublishError, Result};
use crate::receipt::{from_shared, Receipt, Receipts};
use crate::trace;

/// Publishes events for a service, from any thread: a cheap handle (`Clone + Send + Sync`) to
/// the bus's one publishing thread, which owns the connection.
///
/// Callers queue their events; the thread takes everything queued, publishes it as one
/// pipelined batch ([`SharedPublisher`], [`EventPublisher::publish_each`]) and answers each
/// caller once the broker has confirmed (or refused) its events. Many threads publishing at
/// once therefore share round trips instead of paying one each.
///
/// Every event carries the service's name as its `app_id` (its source), its
/// [`EventType`] in the `x-event-type` header (the bus's default unless the options set one),
/// and, published from inside a handler of this bus, the incoming event's correlation id and
/// its id as causation id (see [`EventBus`](crate::EventBus)).
///
/// In process (no broker), a publish runs the bus's handlers in the calling thread.
///
/// The queue in front of the thread is bounded ([`EventBusBuilder::publish_queue`](crate::EventBusBuilder::publish_queue)):
/// a caller that finds it full waits for room.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

/// What every handle of one bus shares.
pub(crate) struct Shared {
    service: String,
    exchange: String,
    event_type: Option<EventType>,
    target: RwLock<Target>,
}

/// An async bus's handlers in process: what runs them for one event.
#[cfg(feature = "tokio")]
pub(crate) trait RunInProcess: Send + Sync {
    /// The handlers matching `event`, run with `meta`; how each fared.
    fn run(
        &self,
        event: Event,
        meta: Metadata,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = InvocationResult> + Send>>;

    /// The runtime that runs them for a blocking `wait`.
    fn runtime(&self) -> tokio::runtime::Handle;
}

/// Where publishes go now.
pub(crate) enum Target {
    /// Before `start`.
    NotStarted,
    /// To the publishing thread (the bus's only handle to it: dropping it lets the thread
    /// finish).
    Broker(SharedPublisher),
    /// Straight to the handlers, in the calling thread.
    InProcess(Arc<HandlerRegistry>),
    /// Straight to an async bus's handlers, run as the receipt is awaited.
    #[cfg(feature = "tokio")]
    InProcessAsync(Arc<dyn RunInProcess>),
    /// After `stop`.
    Stopped,
}

impl Publisher {
    pub(crate) fn new(service: &str, exchange: &str, event_type: Option<EventType>) -> Self {
        Publisher {
            shared: Arc::new(Shared {
                service: service.to_owned(),
                exchange: exchange.to_owned(),
                event_type,
                target: RwLock::new(Target::NotStarted),
            }),
        }
    }

    /// The service this handle publishes for (the `app_id` of its events).
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// Publishes `event` and waits for the broker's confirm (in process: runs the handlers).
    ///
    /// # Errors
    ///
    /// A [`PublishError`] that gives the event back: [`Error::NotStarted`],
    /// [`Error::Stopped`], [`Error::Publish`] (not confirmed), or in process
    /// [`Error::Handlers`].
    pub fn publish(&self, event: Event) -> Result<(), PublishError> {
        self.publish_with(event, PublishOptions::default())
    }

    /// [`publish`](Self::publish) with options: correlation id, causation id, event type.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_with(&self, event: Event, options: PublishOptions) -> Result<(), PublishError> {
        // The producer span lasts until the broker answered.
        self.send_with(event, options)?.wait()
    }

    /// Publishes many events as one pipelined batch and waits for all of them; one outcome
    /// per event, in order.
    pub fn publish_all(&self, events: Vec<Event>) -> Vec<Result<(), PublishError>> {
        self.send_all(events).wait()
    }

    /// Queues many events as one pipelined batch without waiting for the confirms; the
    /// [`Receipts`] give one outcome per event, in order, waited on or awaited. (In process
    /// the handlers run now, and the receipts are ready.)
    pub fn send_all(&self, events: Vec<Event>) -> Receipts {
        let mut producing = Vec::new();
        let options: Vec<PublishOptions> = events
            .iter()
            .map(|event| {
                let mut options = self.prepare(PublishOptions::default());
                producing.push(trace::produce(&self.shared.exchange, event, &mut options));
                options
            })
            .collect();
        let target = self
            .shared
            .target
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match &*target {
            Target::Broker(shared) => {
                Receipts::pending(shared.send_each(events, options), producing)
            }
            Target::InProcess(registry) => {
                let registry = registry.clone();
                drop(target);
                let outcomes = events
                    .into_iter()
                    .zip(options)
                    .map(|(event, options)| {
                        dispatch(&registry, &self.shared.service, event, &options)
                    })
                    .collect();
                Receipts::ready(outcomes, producing)
            }
            #[cfg(feature = "tokio")]
            Target::InProcessAsync(run) => {
                let run = run.clone();
                drop(target);
                let service = self.shared.service.clone();
                let runtime = run.runtime();
                let future = Box::pin(async move {
                    let mut outcomes = Vec::with_capacity(events.len());
                    for (event, options) in events.into_iter().zip(options) {
                        let result = run.run(event.clone(), metadata(&service, &options)).await;
                        outcomes.push(result_of(event, &result));
                    }
                    outcomes
                });
                Receipts::running(crate::receipt::Running { future, runtime }, producing)
            }
            Target::NotStarted => {
                Receipts::ready(fail_all(events, || Error::NotStarted), producing)
            }
            Target::Stopped => Receipts::ready(fail_all(events, || Error::Stopped), producing),
        }
    }

    /// Queues `event` for publishing without waiting for the confirm; the [`Receipt`] says
    /// later whether it was confirmed, waited on or awaited (an async service awaits it:
    /// `publisher.send(event)?.await`). (In process the handlers run now, and the receipt is
    /// ready.)
    ///
    /// # Errors
    ///
    /// A [`PublishError`] at once when the bus is not started or stopped.
    pub fn send(&self, event: Event) -> Result<Receipt, PublishError> {
        self.send_with(event, PublishOptions::default())
    }

    /// [`send`](Self::send) with options.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with(
        &self,
        event: Event,
        options: PublishOptions,
    ) -> Result<Receipt, PublishError> {
        let mut options = self.prepare(options);
        // The receipt keeps the producer span until the broker answered.
        let producing = trace::produce(&self.shared.exchange, &event, &mut options);
        self.queue(event, options, producing)
    }

    /// Queues `event` with its finished `options` for the publishing thread (in process:
    /// runs the handlers now).
    fn queue(
        &self,
        event: Event,
        options: PublishOptions,
        producing: trace::Producing,
    ) -> Result<Receipt, PublishError> {
        let target = self
            .shared
            .target
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match &*target {
            Target::Broker(shared) => match shared.send(event, options) {
                Ok(receipt) => Ok(Receipt::pending(receipt, producing)),
                Err(e) => Err(from_shared(e)),
            },
            Target::InProcess(registry) => {
                let registry = registry.clone();
                drop(target);
                let result = dispatch(&registry, &self.shared.service, event, &options);
                Ok(Receipt::ready(result, producing))
            }
            #[cfg(feature = "tokio")]
            Target::InProcessAsync(run) => {
                let run = run.clone();
                drop(target);
                let meta = metadata(&self.shared.service, &options);
                let runtime = run.runtime();
                let future = Box::pin(async move {
                    let result = run.run(event.clone(), meta).await;
                    result_of(event, &result)
                });
                Ok(Receipt::running(
                    crate::receipt::Running { future, runtime },
                    producing,
                ))
            }
            Target::NotStarted => Err(PublishError::new(event, Error::NotStarted)),
            Target::Stopped => Err(PublishError::new(event, Error::Stopped)),
        }
    }

    /// The options an event goes out with: the bus's default event type, and the current
    /// handler's correlation (on this thread).
    fn prepare(&self, mut options: PublishOptions) -> PublishOptions {
        if options.event_type.is_none() {
            options.event_type = self.shared.event_type;
        }
        let current = context::current();
        let (correlation, causation) = context::correlate(
            options.correlation_id.take(),
            options.causation_id.take(),
            current.as_ref(),
        );
        options.correlation_id = correlation;
        options.causation_id = causation;
        options
    }

    /// Points the handles at `target`; returns the previous one.
    pub(crate) fn retarget(&self, target: Target) -> Target {
        let mut current = self
            .shared
            .target
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *current, target)
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self
            .shared
            .target
            .read()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Target::NotStarted => "not started",
            Target::Broker(_) => "broker",
            Target::InProcess(_) => "in process",
            #[cfg(feature = "tokio")]
            Target::InProcessAsync(_) => "in process (async)",
            Target::Stopped => "stopped",
        };
        f.debug_struct("Publisher")
            .field("service", &self.shared.service)
            .field("state", &state)
            .finish()
    }
}

fn fail_all(events: Vec<Event>, error: impl Fn() -> Error) -> Vec<Result<(), PublishError>> {
    events
        .into_iter()
        .map(|event| Err(PublishError::new(event, error())))
        .collect()
}

/// In process: runs the handlers on `event` with the metadata a delivery would carry.
pub(crate) fn dispatch(
    registry: &HandlerRegistry,
    service: &str,
    event: Event,
    options: &PublishOptions,
) -> Result<(), PublishError> {
    let result = invoke(registry, service, &event, options);
    result_of(event, &result)
}

/// In process: the publish's outcome from how the handlers fared (the event back, with the
/// first failure, when any failed).
fn result_of(event: Event, result: &InvocationResult) -> Result<(), PublishError> {
    let first = result.failures().next().map(|first| {
        let message = first
            .failure()
            .map_or_else(String::new, ToString::to_string);
        format!("{}: {message}", first.handler())
    });
    match first {
        None => Ok(()),
        Some(first) => {
            let failed = result.failed();
            Err(PublishError::new(event, Error::Handlers { failed, first }))
        }
    }
}

/// In process: runs the handlers on `event`, and says how each fared.
pub(crate) fn invoke(
    registry: &HandlerRegistry,
    service: &str,
    event: &Event,
    options: &PublishOptions,
) -> InvocationResult {
    registry.invoke(event, &metadata(service, options))
}

/// In process: the metadata a delivery of an event published with `options` would carry.
fn metadata(service: &str, options: &PublishOptions) -> Metadata {
    Metadata::default()
        .with_app_id(Some(service.to_owned()))
        .with_correlation_id(options.correlation_id.clone())
        .with_causation_id(options.causation_id.clone())
        .with_event_type(options.event_type)
}

/// Starts the publishing thread, which owns `publisher`, behind a queue of `capacity`
/// requests; returns the handle to put in [`Target::Broker`] and the thread. The thread ends
/// once that handle is dropped (by retargeting) and everything queued is answered.
pub(crate) fn spawn(
    publisher: EventPublisher,
    capacity: usize,
) -> Result<(SharedPublisher, Thread)> {
    match SharedPublisher::spawn(publisher, capacity) {
        Ok((shared, thread)) => Ok((shared, Thread(thread))),
        Err(pubsub_publisher::Error::Spawn { message }) => Err(Error::Spawn { message }),
        Err(e) => Err(Error::Publish(e)),
    }
}

/// The bus's publishing thread.
#[derive(Debug)]
pub(crate) struct Thread(PublishingThread);

/// The publishing thread panicked.
#[derive(Debug)]
pub(crate) struct Panicked;

impl Thread {
    /// Joins the thread (once the bus's handle is dropped); an error closing the connection
    /// is only logged.
    pub(crate) fn join(self) -> std::result::Result<(), Panicked> {
        match self.0.join() {
            Ok(()) => Ok(()),
            Err(pubsub_publisher::Error::PublisherGone) => Err(Panicked),
            Err(e) => {
                log::debug!("closing the bus's publisher: {e}");
                Ok(())
            }
        }
    }
}
