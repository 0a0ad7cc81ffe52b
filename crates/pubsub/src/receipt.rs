//! The answers to a [`Publisher`](crate::Publisher)'s requests: [`Receipt`] for one event,
//! [`Receipts`] for a pipelined batch. Each is waited on (blocking the thread) or awaited (a
//! [`Future`] on any executor, which never blocks the executor's thread), and keeps the
//! request's producer span (feature `otel`) until the broker has answered.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, PublishError};
use crate::trace::Producing;

/// The answer to a [`Publisher::send`](crate::Publisher::send): [`wait`](Self::wait) on it
/// for the broker's confirm, or `.await` it.
///
/// Awaiting never blocks the executor's thread, on tokio or any other runtime, so an async
/// service (an HTTP handler, say) publishes through the bus without `spawn_blocking`:
///
/// ```no_run
/// # async fn handler(publisher: pubsub::Publisher) -> Result<(), Box<dyn std::error::Error>> {
/// use pubsub::Event;
///
/// let event = Event::new("order", "created", serde_json::json!({ "order_id": "ORD-1" }))?;
/// publisher.send(event)?.await?; // resolves on the broker's confirm
/// # Ok(())
/// # }
/// ```
///
/// (Only queueing the request can wait, briefly, while the publishing thread's queue is full;
/// see [`EventBusBuilder::publish_queue`](crate::EventBusBuilder::publish_queue).)
#[derive(Debug)]
#[must_use = "a receipt says whether the event was published: wait on it, or await it"]
pub struct Receipt {
    answer: Answer,
    _producing: Producing,
}

enum Answer {
    /// Answered already (in process); taken when it resolves.
    Ready(Option<Box<Result<(), PublishError>>>),
    Pending(pubsub_publisher::Receipt),
    /// In process on an async bus: its handlers, run as the receipt is awaited.
    #[cfg(feature = "tokio")]
    Running(Running<Result<(), PublishError>>),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Ready(result) => f.debug_tuple("Ready").field(result).finish(),
            Answer::Pending(receipt) => f.debug_tuple("Pending").field(receipt).finish(),
            #[cfg(feature = "tokio")]
            Answer::Running(_) => f.write_str("Running"),
        }
    }
}

/// An async bus's in-process handlers for one request, and the runtime that can drive them
/// for a blocking `wait`.
#[cfg(feature = "tokio")]
pub(crate) struct Running<T> {
    pub(crate) future: Pin<Box<dyn Future<Output = T> + Send>>,
    pub(crate) runtime: tokio::runtime::Handle,
}

#[cfg(feature = "tokio")]
impl<T: Send + 'static> Running<T> {
    /// Drives the handlers to their end from this thread: on a thread of its own, outside any
    /// runtime's context, through the runtime's handle (awaiting is the way in async code).
    fn wait(self) -> T {
        let Running { future, runtime } = self;
        std::thread::scope(|s| {
            s.spawn(move || runtime.block_on(future))
                .join()
                .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
        })
    }
}

impl Receipt {
    /// A receipt answered already.
    pub(crate) fn ready(result: Result<(), PublishError>, producing: Producing) -> Self {
        Receipt {
            answer: Answer::Ready(Some(Box::new(result))),
            _producing: producing,
        }
    }

    /// A receipt the publishing thread answers.
    pub(crate) fn pending(receipt: pubsub_publisher::Receipt, producing: Producing) -> Self {
        Receipt {
            answer: Answer::Pending(receipt),
            _producing: producing,
        }
    }

    /// A receipt whose in-process async handlers run as it is awaited.
    #[cfg(feature = "tokio")]
    pub(crate) fn running(
        running: Running<Result<(), PublishError>>,
        producing: Producing,
    ) -> Self {
        Receipt {
            answer: Answer::Running(running),
            _producing: producing,
        }
    }

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
    ///
    /// An async bus in process runs its handlers as the receipt is awaited: await it. Waited
    /// on, the handlers run on a thread of their own through the runtime; on a
    /// current-thread runtime whose thread is the one waiting, timers in them never fire.
    pub fn wait(self) -> Result<(), PublishError> {
        match self.answer {
            Answer::Ready(result) => *result.unwrap_or_else(|| resolved()),
            Answer::Pending(receipt) => receipt.wait().map_err(from_shared),
            #[cfg(feature = "tokio")]
            Answer::Running(running) => running.wait(),
        }
    }

    /// Whether the answer is there (then [`wait`](Self::wait) returns at once).
    pub fn is_ready(&self) -> bool {
        match &self.answer {
            Answer::Ready(_) => true,
            Answer::Pending(receipt) => receipt.is_ready(),
            #[cfg(feature = "tokio")]
            Answer::Running(_) => false,
        }
    }
}

impl Future for Receipt {
    type Output = Result<(), PublishError>;

    /// Resolves once the broker has confirmed the event, or it failed (as
    /// [`wait`](Self::wait)).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.answer {
            Answer::Ready(result) => Poll::Ready(*result.take().unwrap_or_else(|| resolved())),
            Answer::Pending(receipt) => Pin::new(receipt).poll(cx).map(|r| r.map_err(from_shared)),
            #[cfg(feature = "tokio")]
            Answer::Running(running) => running.future.as_mut().poll(cx),
        }
    }
}

/// The answer to a [`Publisher::send_all`](crate::Publisher::send_all): one outcome per
/// event, in order, once the broker has answered for all of them. [`wait`](Self::wait) on
/// it, or `.await` it (as [`Receipt`]).
#[derive(Debug)]
#[must_use = "receipts say whether the events were published: wait on them, or await them"]
pub struct Receipts {
    answer: Answers,
    _producing: Vec<Producing>,
}

enum Answers {
    /// Answered already (in process, or the bus not running); taken when it resolves.
    Ready(Option<Vec<Result<(), PublishError>>>),
    Pending(pubsub_publisher::BatchReceipt),
    /// In process on an async bus: its handlers, run as the receipts are awaited.
    #[cfg(feature = "tokio")]
    Running(Running<Vec<Result<(), PublishError>>>),
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answers::Ready(outcomes) => f.debug_tuple("Ready").field(outcomes).finish(),
            Answers::Pending(receipt) => f.debug_tuple("Pending").field(receipt).finish(),
            #[cfg(feature = "tokio")]
            Answers::Running(_) => f.write_str("Running"),
        }
    }
}

impl Receipts {
    /// Receipts answered already.
    pub(crate) fn ready(
        outcomes: Vec<Result<(), PublishError>>,
        producing: Vec<Producing>,
    ) -> Self {
        Receipts {
            answer: Answers::Ready(Some(outcomes)),
            _producing: producing,
        }
    }

    /// Receipts whose in-process async handlers run as they are awaited.
    #[cfg(feature = "tokio")]
    pub(crate) fn running(
        running: Running<Vec<Result<(), PublishError>>>,
        producing: Vec<Producing>,
    ) -> Self {
        Receipts {
            answer: Answers::Running(running),
            _producing: producing,
        }
    }

    /// Receipts the publishing thread answers.
    pub(crate) fn pending(
        receipt: pubsub_publisher::BatchReceipt,
        producing: Vec<Producing>,
    ) -> Self {
        Receipts {
            answer: Answers::Pending(receipt),
            _producing: producing,
        }
    }

    /// Waits until the broker has confirmed or refused every event; one outcome per event,
    /// in order.
    ///
    /// # Panics
    ///
    /// As [`Receipt::wait`].
    pub fn wait(self) -> Vec<Result<(), PublishError>> {
        match self.answer {
            Answers::Ready(outcomes) => outcomes.unwrap_or_else(|| resolved()),
            Answers::Pending(receipt) => convert(receipt.wait()),
            #[cfg(feature = "tokio")]
            Answers::Running(running) => running.wait(),
        }
    }
}

impl Future for Receipts {
    type Output = Vec<Result<(), PublishError>>;

    /// Resolves once the broker has confirmed or refused every event (as
    /// [`wait`](Self::wait)).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.answer {
            Answers::Ready(outcomes) => Poll::Ready(outcomes.take().unwrap_or_else(|| resolved())),
            Answers::Pending(receipt) => Pin::new(receipt).poll(cx).map(convert),
            #[cfg(feature = "tokio")]
            Answers::Running(running) => running.future.as_mut().poll(cx),
        }
    }
}

/// A future polled again after it resolved: a bug of the caller, as with any future.
fn resolved() -> ! {
    panic!("a receipt was polled again after it resolved")
}

fn convert(
    outcomes: Vec<Result<(), pubsub_publisher::PublishError>>,
) -> Vec<Result<(), PublishError>> {
    outcomes
        .into_iter()
        .map(|outcome| outcome.map_err(from_shared))
        .collect()
}

/// The publishing thread's failure as the bus's: its end is [`Error::PublisherGone`], as
/// before the thread moved into the publisher crate.
pub(crate) fn from_shared(e: pubsub_publisher::PublishError) -> PublishError {
    match e.error() {
        pubsub_publisher::Error::PublisherGone => e.map_error(|_| Error::PublisherGone),
        _ => crate::error::from_publisher(e),
    }
}
