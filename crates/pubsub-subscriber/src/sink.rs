//! [`Sink`]: something that keeps the events a subscriber takes and must make them durable
//! before their deliveries are acked (an event store, an inbox table).

use std::fmt;

use pubsub_amqp::Delivery;
use pubsub_core::{Event, Metadata};

use crate::batch::Outcome;
use crate::decision::Trust;
use crate::report::DeliveryReport;

/// The error of a [`Sink`], boxed: a database driver's, an I/O error.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Keeps the events a subscriber takes, committed together with the ack batch.
///
/// The subscriber [`stage`](Sink::stage)s every decoded event it is about to ack (its
/// handlers succeeded, or none matched), with the body it was decoded from; events it retries
/// or dead-letters are not staged. Before each `multiple` ack it calls
/// [`commit`](Sink::commit), and acks only when the commit succeeded: a delivery is never
/// acked before what the sink made of it is durable.
///
/// A commit tells two failures apart:
///
/// - **An outage** (the database is down, the disk is full): `commit` returns `Err`. Nothing
///   of the batch is acked: the session ends, the broker delivers the batch again, the
///   subscriber reconnects with backoff and the sink gets the events again (so a sink must
///   take an event it already committed without harm, for instance by its event id).
/// - **Events the sink can never keep** (data its database refuses): `commit` makes the
///   others durable and returns them in [`Committed::refusing`], each with the reason. The
///   subscriber dead-letters each refused delivery, once, as poison with that reason, and
///   acks the rest. The sink forgets the refused events: it must not keep them staged.
///
/// When staging fails, nothing of the batch is acked, as for an outage. When a session ends,
/// [`discard`](Sink::discard) drops what was staged and not committed.
///
/// Batches are as large as the subscriber's ack batch (half its prefetch), or smaller when
/// the queue goes quiet.
///
/// ```
/// use pubsub_subscriber::{Committed, Refused, Sink, SinkError, Staged};
///
/// /// Counts events, durably (pretend), and refuses empty bodies.
/// #[derive(Default)]
/// struct Counter { staged: Vec<usize>, committed: u64 }
///
/// impl Sink for Counter {
///     fn stage(&mut self, staged: Staged<'_>) -> Result<(), SinkError> {
///         self.staged.push(staged.body().len());
///         Ok(())
///     }
///     fn commit(&mut self) -> Result<Committed, SinkError> {
///         let mut refused = Vec::new();
///         for (index, len) in std::mem::take(&mut self.staged).into_iter().enumerate() {
///             if len == 0 {
///                 refused.push(Refused::new(index, "an empty body"));
///             } else {
///                 self.committed += 1;
///             }
///         }
///         Ok(Committed::refusing(refused))
///     }
///     fn discard(&mut self) {
///         self.staged.clear();
///     }
/// }
/// ```
pub trait Sink: Send + 'static {
    /// Takes one event about to be acked.
    ///
    /// # Errors
    ///
    /// The event cannot be taken: the session ends without acking the batch.
    fn stage(&mut self, staged: Staged<'_>) -> Result<(), SinkError>;

    /// Makes everything staged since the last commit durable, but the events it can never
    /// keep, which it names (see the trait's documentation).
    ///
    /// # Errors
    ///
    /// An outage: nothing of the batch is acked, and it is delivered again.
    fn commit(&mut self) -> Result<Committed, SinkError>;

    /// Forgets what was staged and not committed.
    fn discard(&mut self);
}

/// One event a [`Sink`] is given: the event, its delivery's metadata, the body it was
/// decoded from, as received, and the routing key it was published with.
#[derive(Debug, Clone, Copy)]
pub struct Staged<'a> {
    event: &'a Event,
    meta: &'a Metadata,
    body: &'a [u8],
    routing_key: Option<&'a str>,
}

impl<'a> Staged<'a> {
    /// The event with its delivery's metadata and body (the routing key unknown).
    pub fn new(event: &'a Event, meta: &'a Metadata, body: &'a [u8]) -> Staged<'a> {
        Staged {
            event,
            meta,
            body,
            routing_key: None,
        }
    }

    /// The same, published with `routing_key` (`None`: unknown).
    pub fn with_routing_key(mut self, routing_key: Option<&'a str>) -> Staged<'a> {
        self.routing_key = routing_key;
        self
    }

    /// The routing key the message was published with, when known: the key it arrived
    /// with, or for a retry the key it was first published with. It is the event's own
    /// routing key for an event of the standard envelope; with
    /// [`Envelope::Any`](pubsub_core::envelope::Envelope::Any) it may be a key of another
    /// convention (seed 003's `routing.event.create.user`) the event was derived from.
    pub fn routing_key(&self) -> Option<&'a str> {
        self.routing_key
    }

    /// The decoded event.
    pub fn event(&self) -> &'a Event {
        self.event
    }

    /// What the delivery said of it (correlation id, headers, ...).
    pub fn meta(&self) -> &'a Metadata {
        self.meta
    }

    /// The body it was decoded from, byte for byte as received.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }
}

/// What a [`Sink::commit`] made durable: every staged event, but the [`Refused`] ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    refused: Vec<Refused>,
}

impl Committed {
    /// Every staged event is durable.
    pub fn all() -> Committed {
        Committed::default()
    }

    /// Every staged event is durable but `refused`, which the sink can never keep.
    pub fn refusing(refused: Vec<Refused>) -> Committed {
        Committed { refused }
    }

    /// The events the sink refused.
    pub fn refused(&self) -> &[Refused] {
        &self.refused
    }
}

/// A staged event a sink can never keep, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    index: usize,
    reason: String,
}

impl Refused {
    /// The event staged `index`th (0-based) since the last commit is refused for `reason`
    /// (the dead-letter reason: say what refused it, e.g. the database's message).
    pub fn new(index: usize, reason: impl Into<String>) -> Refused {
        Refused {
            index,
            reason: reason.into(),
        }
    }

    /// Its position among the events staged since the last commit, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The reason each of `count` staged events is refused for, by position (`None`: kept). An
/// index out of range is ignored; of two refusals of one event, the first counts.
pub(crate) fn refusals(committed: &Committed, count: usize) -> Vec<Option<&str>> {
    let mut reasons = vec![None; count];
    for refused in committed.refused() {
        if let Some(slot) = reasons.get_mut(refused.index) {
            slot.get_or_insert(refused.reason.as_str());
        }
    }
    reasons
}

/// A delivery whose event is staged in the sink, held until the commit says whether it was
/// kept (then acked) or refused (then dead-lettered).
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) delivery: Delivery,
    pub(crate) body: Vec<u8>,
    pub(crate) trust: Trust,
    pub(crate) outcome: Outcome,
    pub(crate) report: Option<DeliveryReport>,
}

/// A boxed sink in a `Debug` type.
pub(crate) struct BoxedSink(pub(crate) Box<dyn Sink>);

impl fmt::Debug for BoxedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// Why a session ended: the transport, the sink, or the handlers' open work (group commit).
#[derive(Debug)]
pub(crate) enum Failure {
    Amqp(pubsub_amqp::Error),
    Sink(SinkError),
    Commit(pubsub_core::group_commit::WorkError),
}

impl Failure {
    /// Whether reconnecting cannot fix it (a sink failure is worth another try).
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Failure::Amqp(e) => e.is_permanent(),
            Failure::Sink(_) | Failure::Commit(_) => false,
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
            Failure::Commit(_) => f.write_str(
                "the handlers' open transactions failed to commit, nothing of the batch was acked",
            ),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Amqp(e) => std::error::Error::source(e),
            Failure::Sink(e) | Failure::Commit(e) => Some(e.as_ref()),
        }
    }
}

/// What ended a session, as the subscriber's error (here, beside [`Failure`], so that
/// `error.rs` needs nothing of this file).
impl From<Failure> for crate::error::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Amqp(e) => crate::error::Error::Amqp(e),
            Failure::Sink(e) => crate::error::Error::Sink {
                message: crate::error::chain(e.as_ref()),
            },
            Failure::Commit(e) => crate::error::Error::Commit {
                message: crate::error::chain(e.as_ref()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_position() {
        let check = |refused: Vec<Refused>, count: usize, expected: Vec<Option<&str>>| {
            let committed = Committed::refusing(refused.clone());
            assert_eq!(refusals(&committed, count), expected, "{refused:?}");
        };
        check(vec![], 3, vec![None, None, None]);
        check(
            vec![Refused::new(1, "NUL")],
            3,
            vec![None, Some("NUL"), None],
        );
        // Out of range: ignored; twice: the first reason.
        check(
            vec![
                Refused::new(7, "x"),
                Refused::new(0, "a"),
                Refused::new(0, "b"),
            ],
            2,
            vec![Some("a"), None],
        );
        assert!(Committed::all().refused().is_empty());
        assert_eq!(refusals(&Committed::all(), 0), Vec::<Option<&str>>::new());
    }
}
