//! [`Sink`]: something that keeps the events a subscriber takes and must make them durable
//! before their deliveries are acked (an event store, an inbox table).

use std::fmt;

use pubsub_core::{Event, Metadata};

/// The error of a [`Sink`], boxed: a database driver's, an I/O error.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Keeps the events a subscriber takes, committed together with the ack batch.
///
/// The subscriber [`stage`](Sink::stage)s every decoded event it is about to ack (its
/// handlers succeeded, or none matched); events it retries or dead-letters are not staged.
/// Before each `multiple` ack it calls [`commit`](Sink::commit), and acks only when the
/// commit succeeded: a delivery is never acked before what the sink made of it is durable.
/// When staging or committing fails, nothing of the batch is acked: the session ends, the
/// broker delivers the batch again, the subscriber reconnects with backoff and the sink
/// gets the events again (so a sink must take an event it already committed without harm,
/// for instance by its event id). When a session ends, [`discard`](Sink::discard) drops
/// what was staged and not committed.
///
/// Batches are as large as the subscriber's ack batch (half its prefetch), or smaller when
/// the queue goes quiet.
///
/// ```
/// use pubsub_core::{Event, Metadata};
/// use pubsub_subscriber::{Sink, SinkError};
///
/// /// Counts events, durably (pretend).
/// #[derive(Default)]
/// struct Counter { staged: u64, committed: u64 }
///
/// impl Sink for Counter {
///     fn stage(&mut self, _: &Event, _: &Metadata) -> Result<(), SinkError> {
///         self.staged += 1;
///         Ok(())
///     }
///     fn commit(&mut self) -> Result<(), SinkError> {
///         self.committed += std::mem::take(&mut self.staged);
///         Ok(())
///     }
///     fn discard(&mut self) {
///         self.staged = 0;
///     }
/// }
/// ```
pub trait Sink: Send + 'static {
    /// Takes one event about to be acked.
    ///
    /// # Errors
    ///
    /// The event cannot be taken: the session ends without acking the batch.
    fn stage(&mut self, event: &Event, meta: &Metadata) -> Result<(), SinkError>;

    /// Makes everything staged since the last commit durable.
    ///
    /// # Errors
    ///
    /// The commit failed: nothing of the batch is acked, and it is delivered again.
    fn commit(&mut self) -> Result<(), SinkError>;

    /// Forgets what was staged and not committed.
    fn discard(&mut self);
}

/// A boxed sink in a `Debug` type.
pub(crate) struct BoxedSink(pub(crate) Box<dyn Sink>);

impl fmt::Debug for BoxedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// Why a session ended: the transport, or the sink.
#[derive(Debug)]
pub(crate) enum Failure {
    Amqp(pubsub_amqp::Error),
    Sink(SinkError),
}

impl Failure {
    /// Whether reconnecting cannot fix it (a sink failure is worth another try).
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Failure::Amqp(e) => e.is_permanent(),
            Failure::Sink(_) => false,
        }
    }
}

impl From<pubsub_amqp::Error> for Failure {
    fn from(e: pubsub_amqp::Error) -> Self {
        Failure::Amqp(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Amqp(e) => fmt::Display::fmt(e, f),
            Failure::Sink(_) => f.write_str("the sink failed, nothing of the batch was acked"),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Amqp(e) => std::error::Error::source(e),
            Failure::Sink(e) => Some(e.as_ref()),
        }
    }
}
