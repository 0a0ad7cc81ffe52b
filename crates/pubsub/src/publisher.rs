//! [`Publisher`]: the bus's publishing handle, `Clone + Send + Sync`, and the one thread that
//! owns the connection behind it.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pubsub_core::{Event, EventType, Metadata};
use pubsub_publisher::{EventPublisher, PublishOptions};
use pubsub_registry::{HandlerRegistry, InvocationResult};

use crate::context;
use crate::error::{Error, PublishError, Result};
use crate::trace;

/// The most events the publishing thread takes from its queue for one pipelined batch.
const MAX_BATCH: usize = 4096;

/// How long the publishing thread waits for the callers of its last batch to queue their
/// next events before it publishes what it has (only while fewer callers are queued than it
/// last answered).
const LINGER: Duration = Duration::from_micros(200);

/// Publishes events for a service, from any thread: a cheap handle (`Clone + Send + Sync`) to
/// the bus's one publishing thread, which owns the connection.
///
/// Callers queue their events; the thread takes everything queued, publishes it as one
/// pipelined batch ([`EventPublisher::publish_each`]) and answers each caller once the broker
/// has confirmed (or refused) its events. Many threads publishing at once therefore share
/// round trips instead of paying one each.
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

/// Where publishes go now.
pub(crate) enum Target {
    /// Before `start`.
    NotStarted,
    /// To the publishing thread.
    Broker(Sender<Command>),
    /// Straight to the handlers, in the calling thread.
    InProcess(Arc<HandlerRegistry>),
    /// After `stop`.
    Stopped,
}

/// A request to the publishing thread.
// `One` is nearly every request: boxing it would allocate on each publish to spare the rare
// `Many` and `Stop` some bytes of their channel slot.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    One {
        event: Event,
        options: PublishOptions,
        reply: Sender<Result<(), PublishError>>,
    },
    Many {
        events: Vec<Event>,
        options: Vec<PublishOptions>,
        reply: Sender<Vec<Result<(), PublishError>>>,
    },
    Stop,
}

/// The answer to a [`Publisher::send`]: wait on it for the broker's confirm.
#[derive(Debug)]
#[must_use = "a receipt says whether the event was published: wait on it"]
pub struct Receipt {
    answer: Answer,
}

#[derive(Debug)]
enum Answer {
    Ready(Box<Result<(), PublishError>>),
    Pending(Receiver<Result<(), PublishError>>),
}

impl Receipt {
    /// Waits until the broker has confirmed the event, or it failed.
    ///
    /// # Errors
    ///
    /// A [`PublishError`] with the event and the reason.
    ///
    /// # Panics
    ///
    /// Only on a bug of this crate: the publishing thread answers every request, even when
    /// publishing panics.
    pub fn wait(self) -> Result<(), PublishError> {
        match self.answer {
            Answer::Ready(result) => *result,
            Answer::Pending(rx) => match rx.recv() {
                Ok(result) => result,
                Err(_) => panic!("the bus's publishing thread dropped a request unanswered"),
            },
        }
    }

    /// Whether the answer is there (then [`wait`](Self::wait) returns at once).
    pub fn is_ready(&self) -> bool {
        match &self.answer {
            Answer::Ready(_) => true,
            Answer::Pending(rx) => !rx.is_empty(),
        }
    }
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
        let (receipt, _producing) = self.send_traced(event, options);
        receipt?.wait()
    }

    /// Publishes many events as one pipelined batch and waits for all of them; one outcome
    /// per event, in order.
    pub fn publish_all(&self, events: Vec<Event>) -> Vec<Result<(), PublishError>> {
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
            Target::Broker(tx) => {
                let (reply, answer) = crossbeam_channel::bounded(1);
                let sent = tx.send(Command::Many {
                    events,
                    options,
                    reply,
                });
                drop(target);
                match sent {
                    Ok(()) => answer.recv().unwrap_or_else(|_| {
                        panic!("the bus's publishing thread dropped a request unanswered")
                    }),
                    Err(crossbeam_channel::SendError(command)) => gone(command),
                }
            }
            Target::InProcess(registry) => {
                let registry = registry.clone();
                drop(target);
                events
                    .into_iter()
                    .zip(options)
                    .map(|(event, options)| {
                        dispatch(&registry, &self.shared.service, event, &options)
                    })
                    .collect()
            }
            Target::NotStarted => fail_all(events, || Error::NotStarted),
            Target::Stopped => fail_all(events, || Error::Stopped),
        }
    }

    /// Queues `event` for publishing without waiting for the confirm; the [`Receipt`] says
    /// later whether it was confirmed. (In process the handlers run now, and the receipt is
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
        self.send_traced(event, options).0
    }

    /// [`send_with`](Self::send_with), and the producer span of the request.
    fn send_traced(
        &self,
        event: Event,
        options: PublishOptions,
    ) -> (Result<Receipt, PublishError>, trace::Producing) {
        let mut options = self.prepare(options);
        let producing = trace::produce(&self.shared.exchange, &event, &mut options);
        (self.queue(event, options), producing)
    }

    /// Queues `event` with its finished `options` for the publishing thread (in process:
    /// runs the handlers now).
    fn queue(&self, event: Event, options: PublishOptions) -> Result<Receipt, PublishError> {
        let target = self
            .shared
            .target
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match &*target {
            Target::Broker(tx) => {
                let (reply, answer) = crossbeam_channel::bounded(1);
                match tx.send(Command::One {
                    event,
                    options,
                    reply,
                }) {
                    Ok(()) => Ok(Receipt {
                        answer: Answer::Pending(answer),
                    }),
                    Err(crossbeam_channel::SendError(Command::One { event, .. })) => {
                        Err(PublishError::new(event, Error::PublisherGone))
                    }
                    Err(_) => unreachable_command(),
                }
            }
            Target::InProcess(registry) => {
                let registry = registry.clone();
                drop(target);
                let result = dispatch(&registry, &self.shared.service, event, &options);
                Ok(Receipt {
                    answer: Answer::Ready(Box::new(result)),
                })
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
            Target::Stopped => "stopped",
        };
        f.debug_struct("Publisher")
            .field("service", &self.shared.service)
            .field("state", &state)
            .finish()
    }
}

fn unreachable_command() -> Result<Receipt, PublishError> {
    panic!("a send returned another command than the one sent")
}

fn fail_all(events: Vec<Event>, error: impl Fn() -> Error) -> Vec<Result<(), PublishError>> {
    events
        .into_iter()
        .map(|event| Err(PublishError::new(event, error())))
        .collect()
}

fn gone(command: Command) -> Vec<Result<(), PublishError>> {
    match command {
        Command::Many { events, .. } => fail_all(events, || Error::PublisherGone),
        Command::One { event, .. } => vec![Err(PublishError::new(event, Error::PublisherGone))],
        Command::Stop => Vec::new(),
    }
}

/// In process: runs the handlers on `event` with the metadata a delivery would carry.
pub(crate) fn dispatch(
    registry: &HandlerRegistry,
    service: &str,
    event: Event,
    options: &PublishOptions,
) -> Result<(), PublishError> {
    let result = invoke(registry, service, &event, options);
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
    let meta = Metadata::default()
        .with_app_id(Some(service.to_owned()))
        .with_correlation_id(options.correlation_id.clone())
        .with_causation_id(options.causation_id.clone())
        .with_event_type(options.event_type);
    registry.invoke(event, &meta)
}

/// Starts the publishing thread; it owns `publisher` and serves `commands` until
/// [`Command::Stop`].
pub(crate) fn spawn(
    publisher: EventPublisher,
    commands: Receiver<Command>,
    service: &str,
) -> Result<JoinHandle<()>> {
    let name = format!(
        "pubsub-pub-{}",
        service.chars().take(20).collect::<String>()
    );
    thread::Builder::new()
        .name(name)
        .spawn(move || serve(publisher, &commands))
        .map_err(|e| Error::Spawn {
            message: e.to_string(),
        })
}

/// Who waits for which outcomes of a batch.
enum Reply {
    One(Sender<Result<(), PublishError>>),
    Many(Sender<Vec<Result<(), PublishError>>>, usize),
}

/// The requests taken for one pipelined batch.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    options: Vec<PublishOptions>,
    replies: Vec<Reply>,
}

impl Batch {
    /// Adds a request; `true` for [`Command::Stop`].
    fn take(&mut self, command: Command) -> bool {
        match command {
            Command::One {
                event,
                options,
                reply,
            } => {
                self.events.push(event);
                self.options.push(options);
                self.replies.push(Reply::One(reply));
                false
            }
            Command::Many {
                mut events,
                mut options,
                reply,
            } => {
                self.replies.push(Reply::Many(reply, events.len()));
                options.resize_with(events.len(), PublishOptions::default);
                self.events.append(&mut events);
                self.options.append(&mut options);
                false
            }
            Command::Stop => true,
        }
    }

    /// Answers every caller, in order, from `outcomes` (one per event).
    fn answer(&mut self, outcomes: Vec<Result<(), PublishError>>) {
        let mut outcomes = outcomes.into_iter();
        for reply in self.replies.drain(..) {
            // A caller that stopped waiting (dropped its receipt) is not an error.
            match reply {
                Reply::One(tx) => {
                    let _ = tx.send(outcomes.next().unwrap_or(Ok(())));
                }
                Reply::Many(tx, n) => {
                    let _ = tx.send(outcomes.by_ref().take(n).collect());
                }
            }
        }
        self.events.clear();
        self.options.clear();
    }
}

fn serve(mut publisher: EventPublisher, commands: &Receiver<Command>) {
    let mut batch = Batch::default();
    // After a panic in the publisher, every request is answered with an error.
    let mut broken = false;
    let mut stop = false;
    // How many callers the last batch answered: callers that block on `publish` come back
    // at once with their next event, and waiting a moment for them (group commit) makes one
    // round trip serve them all instead of splitting them over several batches.
    let mut answered = 0;
    while !stop {
        match commands.recv() {
            Ok(command) => stop = batch.take(command),
            Err(_) => break,
        }
        let linger_until = Instant::now() + LINGER;
        while !stop && batch.events.len() < MAX_BATCH {
            let next = match commands.try_recv() {
                Ok(command) => Some(command),
                Err(_) if batch.replies.len() < answered => {
                    commands.recv_deadline(linger_until).ok()
                }
                Err(_) => None,
            };
            match next {
                Some(command) => stop = batch.take(command),
                None => break,
            }
        }
        if batch.replies.is_empty() {
            continue;
        }
        answered = batch.replies.len();
        let published = if broken {
            None
        } else {
            let outcomes = panic::catch_unwind(AssertUnwindSafe(|| {
                publisher.publish_each(&batch.events, &batch.options)
            }));
            if outcomes.is_err() {
                log::error!("the publisher panicked; the bus publishes nothing more");
                broken = true;
            }
            outcomes.ok()
        };
        let outcomes = match published {
            Some(outcomes) => outcomes
                .into_iter()
                .map(|r| r.map_err(crate::error::from_publisher))
                .collect(),
            None => batch
                .events
                .iter()
                .map(|e| Err(PublishError::new(e.clone(), Error::PublisherGone)))
                .collect(),
        };
        batch.answer(outcomes);
    }
    if let Err(e) = publisher.close() {
        log::debug!("closing the bus's publisher: {e}");
    }
}
