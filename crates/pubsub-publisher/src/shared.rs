//! [`SharedPublisher`]: a publishing handle every thread can use (`Clone + Send + Sync`), and
//! the one thread behind it that owns the [`EventPublisher`] and its connection.
//!
//! Callers queue requests on a bounded channel; the thread gathers what is queued into one
//! pipelined batch (`gather.rs` decides how, without I/O), publishes it with
//! [`EventPublisher::publish_each`] and answers every caller. The thread ends once every
//! handle is gone and everything queued is answered; [`PublishingThread::join`] then joins it.

use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use pubsub_core::Event;

use crate::answer::{self, Answer, Answerer};
use crate::error::{Error, PublishError, Result};
use crate::message::PublishOptions;
use crate::publisher::EventPublisher;

use self::gather::{Gather, Next, LINGER, MAX_BATCH};

mod gather;
#[cfg(test)]
mod tests;

/// How many requests a [`SharedPublisher`]'s queue holds unless told otherwise.
pub const DEFAULT_QUEUE: usize = 8192;

/// Publishes events from any thread: a cheap handle (`Clone + Send + Sync`) to the one
/// thread that owns an [`EventPublisher`] and its connection
/// ([`spawn`](SharedPublisher::spawn)).
///
/// Callers queue their events; the thread takes everything queued, publishes it as one
/// pipelined batch ([`EventPublisher::publish_each`]) and answers each caller once the broker
/// has confirmed (or refused) its events. Many threads publishing at once therefore share
/// round trips instead of paying one each. Each event goes out as the publisher would send
/// it alone, with its own [`PublishOptions`].
///
/// The queue in front of the thread is bounded: a caller that finds it full waits for room.
/// The thread stops once every handle is dropped and it has answered everything queued;
/// [`PublishingThread::join`] waits for that and closes the connection.
///
/// ```no_run
/// use pubsub_amqp::{AmqpConfig, Connection};
/// use pubsub_core::Event;
/// use pubsub_publisher::{EventPublisher, PublishOptions, SharedPublisher, DEFAULT_QUEUE};
/// use serde_json::json;
///
/// let connection = Connection::open(&AmqpConfig::from_env()?)?;
/// let publisher = EventPublisher::builder(connection, "events").app_id("orders").build()?;
/// let (shared, thread) = SharedPublisher::spawn(publisher, DEFAULT_QUEUE)?;
/// std::thread::scope(|s| {
///     for i in 0..4 {
///         let shared = shared.clone();
///         let event = Event::new("order", "created", json!({ "n": i }))?;
///         // Blocks until confirmed; a failure gives the event back.
///         s.spawn(move || shared.publish(event, PublishOptions::default()));
///     }
///     Ok::<(), pubsub_core::Error>(())
/// })?;
/// drop(shared); // the last handle: the thread finishes
/// thread.join()?; // and closes the connection
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SharedPublisher {
    tx: Sender<Command>,
}

/// The thread behind [`SharedPublisher`] handles; join it once they are all dropped.
#[must_use = "the publishing thread is joined by `join`"]
pub struct PublishingThread {
    handle: JoinHandle<Result<()>>,
}

/// A request to the publishing thread.
// `One` is nearly every request: boxing it would allocate on each publish to spare the rare
// `Many` some bytes of its channel slot.
#[allow(clippy::large_enum_variant)]
enum Command {
    One {
        event: Event,
        options: PublishOptions,
        reply: Answerer<Result<(), PublishError>>,
    },
    Many {
        events: Vec<Event>,
        options: Vec<PublishOptions>,
        reply: Answerer<Vec<Result<(), PublishError>>>,
    },
}

/// The answer to a [`SharedPublisher::send`]: [`wait`](Self::wait) on it for the broker's
/// confirm, or `.await` it.
///
/// A receipt is a [`Future`] on any executor (tokio, async-std, a hand-made one): awaiting
/// it never blocks the executor's thread, so an async service publishes without
/// `spawn_blocking`:
///
/// ```no_run
/// # async fn handler(shared: pubsub_publisher::SharedPublisher) -> Result<(), Box<dyn std::error::Error>> {
/// use pubsub_core::Event;
/// use pubsub_publisher::PublishOptions;
///
/// let event = Event::new("order", "created", serde_json::json!({ "order_id": "ORD-1" }))?;
/// shared.send(event, PublishOptions::default())?.await?; // resolves on the broker's confirm
/// # Ok(())
/// # }
/// ```
///
/// (Only queueing the request can wait, briefly, when the thread's queue is full; see
/// [`SharedPublisher::send`].)
#[derive(Debug)]
#[must_use = "a receipt says whether the event was published: wait on it, or await it"]
pub struct Receipt {
    answer: Answer<Result<(), PublishError>>,
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
        self.answer.wait().unwrap_or_else(|| unanswered())
    }

    /// Whether the answer is there (then [`wait`](Self::wait) returns at once).
    pub fn is_ready(&self) -> bool {
        self.answer.is_ready()
    }
}

impl Future for Receipt {
    type Output = Result<(), PublishError>;

    /// Resolves once the broker has confirmed the event, or it failed (as
    /// [`wait`](Self::wait)).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|| unanswered()))
    }
}

/// The answer to a [`SharedPublisher::send_each`]: one outcome per event, in order;
/// [`wait`](Self::wait) on it, or `.await` it (as [`Receipt`]).
#[derive(Debug)]
#[must_use = "a receipt says whether the events were published: wait on it, or await it"]
pub struct BatchReceipt {
    answer: BatchAnswer,
}

#[derive(Debug)]
enum BatchAnswer {
    /// The thread was gone: every event given back (taken when it resolves).
    Ready(Option<Vec<Result<(), PublishError>>>),
    Pending(Answer<Vec<Result<(), PublishError>>>),
}

impl BatchReceipt {
    /// Waits until the broker has confirmed or refused every event; one outcome per event,
    /// in order.
    ///
    /// # Panics
    ///
    /// As [`Receipt::wait`].
    pub fn wait(self) -> Vec<Result<(), PublishError>> {
        match self.answer {
            BatchAnswer::Ready(outcomes) => outcomes.unwrap_or_default(),
            BatchAnswer::Pending(answer) => answer.wait().unwrap_or_else(|| unanswered()),
        }
    }
}

impl Future for BatchReceipt {
    type Output = Vec<Result<(), PublishError>>;

    /// Resolves once the broker has confirmed or refused every event (as
    /// [`wait`](Self::wait)).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.answer {
            BatchAnswer::Ready(outcomes) => Poll::Ready(outcomes.take().unwrap_or_default()),
            BatchAnswer::Pending(answer) => Pin::new(answer)
                .poll(cx)
                .map(|answer| answer.unwrap_or_else(|| unanswered())),
        }
    }
}

fn unanswered() -> ! {
    panic!("the publishing thread dropped a request unanswered")
}

impl SharedPublisher {
    /// Starts the publishing thread, which owns `publisher`, behind a queue of `capacity`
    /// requests (at least 1; [`DEFAULT_QUEUE`] is a good start). Returns the first handle
    /// and the thread. The thread is named after the publisher's `app_id`.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the thread cannot be started.
    pub fn spawn(
        publisher: EventPublisher,
        capacity: usize,
    ) -> Result<(SharedPublisher, PublishingThread)> {
        let name = match publisher.app_id() {
            Some(app) => format!("pubsub-pub-{}", app.chars().take(20).collect::<String>()),
            None => "pubsub-pub".to_owned(),
        };
        spawn_serving(publisher, capacity, name)
    }

    /// Publishes `event` with `options` and waits for the broker's confirm.
    ///
    /// # Errors
    ///
    /// A [`PublishError`] that gives the event back: as [`EventPublisher::publish`], or
    /// [`Error::PublisherGone`].
    pub fn publish(&self, event: Event, options: PublishOptions) -> Result<(), PublishError> {
        self.send(event, options)?.wait()
    }

    /// Queues `event` for publishing without waiting for the confirm (only for room in the
    /// queue: a full queue makes the caller wait until the thread takes a batch); the
    /// [`Receipt`] says later whether it was confirmed, waited on or awaited.
    ///
    /// # Errors
    ///
    /// [`Error::PublisherGone`] at once, with the event, when the thread has ended.
    pub fn send(&self, event: Event, options: PublishOptions) -> Result<Receipt, PublishError> {
        let (reply, answer) = answer::pair();
        match self.tx.send(Command::One {
            event,
            options,
            reply,
        }) {
            Ok(()) => Ok(Receipt { answer }),
            Err(crossbeam_channel::SendError(Command::One { event, .. })) => {
                Err(PublishError::new(event, Error::PublisherGone))
            }
            Err(crossbeam_channel::SendError(Command::Many { .. })) => {
                panic!("a send gave back another request than the one sent")
            }
        }
    }

    /// Publishes `events`, each with its own options (`options[i]` goes with `events[i]`; an
    /// event without gets the defaults), as one pipelined batch, and waits for all of them;
    /// one outcome per event, in order.
    pub fn publish_each(
        &self,
        events: Vec<Event>,
        options: Vec<PublishOptions>,
    ) -> Vec<Result<(), PublishError>> {
        self.send_each(events, options).wait()
    }

    /// [`publish_each`](Self::publish_each) without waiting for the confirms (only for room
    /// in the queue): the [`BatchReceipt`] gives the outcomes later.
    pub fn send_each(&self, events: Vec<Event>, options: Vec<PublishOptions>) -> BatchReceipt {
        let (reply, answer) = answer::pair();
        let answer = match self.tx.send(Command::Many {
            events,
            options,
            reply,
        }) {
            Ok(()) => BatchAnswer::Pending(answer),
            Err(crossbeam_channel::SendError(command)) => BatchAnswer::Ready(Some(gone(command))),
        };
        BatchReceipt { answer }
    }
}

impl fmt::Debug for SharedPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPublisher")
            .field("queued", &self.tx.len())
            .finish()
    }
}

impl PublishingThread {
    /// Waits for the thread to end, and returns how closing the connection went. The thread
    /// ends once every [`SharedPublisher`] handle is dropped and everything queued is
    /// published and answered: drop them first (a handle kept elsewhere keeps this waiting).
    ///
    /// # Errors
    ///
    /// [`Error::Amqp`] if the connection was already broken; [`Error::PublisherGone`] if
    /// the thread panicked.
    pub fn join(self) -> Result<()> {
        match self.handle.join() {
            Ok(closed) => closed,
            Err(_) => Err(Error::PublisherGone),
        }
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl fmt::Debug for PublishingThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishingThread")
            .field("name", &self.handle.thread().name())
            .field("finished", &self.handle.is_finished())
            .finish()
    }
}

/// Every event of a request the thread can no longer take, given back.
fn gone(command: Command) -> Vec<Result<(), PublishError>> {
    match command {
        Command::One { event, .. } => fail_all(std::iter::once(event)),
        Command::Many { events, .. } => fail_all(events.into_iter()),
    }
}

fn fail_all(events: impl Iterator<Item = Event>) -> Vec<Result<(), PublishError>> {
    events
        .map(|event| Err(PublishError::new(event, Error::PublisherGone)))
        .collect()
}

/// What the publishing thread publishes through: the [`EventPublisher`], or a test's fake.
trait Sink {
    /// Publishes a batch; one outcome per event, in order.
    fn publish_each(
        &mut self,
        events: &[Event],
        options: &[PublishOptions],
    ) -> Vec<Result<(), PublishError>>;

    /// Closes the connection.
    fn close(self) -> Result<()>;
}

impl Sink for EventPublisher {
    fn publish_each(
        &mut self,
        events: &[Event],
        options: &[PublishOptions],
    ) -> Vec<Result<(), PublishError>> {
        EventPublisher::publish_each(self, events, options)
    }

    fn close(self) -> Result<()> {
        EventPublisher::close(self)
    }
}

/// Starts a thread named `name` that serves `sink` behind a queue of `capacity` requests.
fn spawn_serving<S: Sink + Send + 'static>(
    sink: S,
    capacity: usize,
    name: String,
) -> Result<(SharedPublisher, PublishingThread)> {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let handle = thread::Builder::new()
        .name(name)
        .spawn(move || serve(sink, &rx))
        .map_err(|e| Error::Spawn {
            message: e.to_string(),
        })?;
    Ok((SharedPublisher { tx }, PublishingThread { handle }))
}

/// Who waits for which outcomes of a batch.
enum Reply {
    One(Answerer<Result<(), PublishError>>),
    Many(Answerer<Vec<Result<(), PublishError>>>, usize),
}

/// The requests taken for one pipelined batch.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    options: Vec<PublishOptions>,
    replies: Vec<Reply>,
}

impl Batch {
    /// Adds a request; returns how many events it brought.
    fn take(&mut self, command: Command) -> usize {
        match command {
            Command::One {
                event,
                options,
                reply,
            } => {
                self.events.push(event);
                self.options.push(options);
                self.replies.push(Reply::One(reply));
                1
            }
            Command::Many {
                mut events,
                mut options,
                reply,
            } => {
                let n = events.len();
                self.replies.push(Reply::Many(reply, n));
                options.resize_with(n, PublishOptions::default);
                self.events.append(&mut events);
                self.options.append(&mut options);
                n
            }
        }
    }

    /// Answers every caller, in order, from `outcomes` (one per event).
    fn answer(&mut self, outcomes: Vec<Result<(), PublishError>>) {
        let mut outcomes = outcomes.into_iter();
        for reply in self.replies.drain(..) {
            // A caller that stopped waiting (dropped its receipt) is not an error.
            match reply {
                Reply::One(tx) => tx.send(outcomes.next().unwrap_or(Ok(()))),
                Reply::Many(tx, n) => tx.send(outcomes.by_ref().take(n).collect()),
            }
        }
        self.events.clear();
        self.options.clear();
    }
}

/// The publishing thread: gathers requests into batches, publishes and answers them, until
/// every handle is gone and nothing is queued; then closes `sink`.
fn serve<S: Sink>(mut sink: S, commands: &Receiver<Command>) -> Result<()> {
    let mut gather = Gather::new(MAX_BATCH, LINGER);
    let mut batch = Batch::default();
    // After a panic in the publisher, every request is answered with an error.
    let mut broken = false;
    loop {
        let command = match gather.next() {
            Next::Wait => match commands.recv() {
                Ok(command) => Some(command),
                // Every handle is gone and nothing is queued.
                Err(_) => break,
            },
            // Empty, or every handle gone: publish what is taken.
            Next::Poll => commands.try_recv().ok(),
            Next::Linger(until) => commands.recv_deadline(until).ok(),
            Next::Publish => {
                let outcomes = if broken {
                    None
                } else {
                    let outcomes = panic::catch_unwind(AssertUnwindSafe(|| {
                        sink.publish_each(&batch.events, &batch.options)
                    }));
                    if outcomes.is_err() {
                        log::error!("the publisher panicked; its thread publishes nothing more");
                        broken = true;
                    }
                    outcomes.ok()
                };
                let outcomes = match outcomes {
                    Some(outcomes) => outcomes,
                    None => fail_all(batch.events.drain(..)),
                };
                batch.answer(outcomes);
                gather.published();
                continue;
            }
        };
        match command {
            Some(command) => {
                let events = batch.take(command);
                gather.took(events, Instant::now);
            }
            None => gather.ran_dry(),
        }
    }
    sink.close()
}
