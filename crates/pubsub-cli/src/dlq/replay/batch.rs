//! One batch of a replay: publish every candidate, wait for the broker's confirms (through
//! `pubsub-amqp`'s [`ConfirmedChannel`]), then acknowledge in the dead-letter queue each
//! message whose copy the broker confirmed. Whatever was not confirmed stays unacknowledged.
//!
//! The replay publishes on a [`ConfirmedChannel`] of its own rather than through the
//! publisher: it republishes messages as they were (body and properties byte for byte, to
//! the exchange and key each came from), which are not events the publisher would write; and
//! it shares its connection with the channel it takes the messages on, so that a lost
//! connection ends both and every message not confirmed goes back to the dead-letter queue.

use std::time::{Duration, Instant};

use pubsub_amqp::{ConfirmOutcome, ConfirmedChannel, Connection, Delivery, Outgoing, Returned};

use crate::dlq::letter::{replay_properties, DeadLetter, Destination};
use crate::dlq::replay::{Moved, Replay, Stayed};

/// A selected message on its way.
pub(super) struct Candidate {
    pub(super) delivery: Delivery,
    pub(super) letter: DeadLetter,
    pub(super) event_id: Option<String>,
    pub(super) destination: Destination,
}

impl Candidate {
    /// Whether `returned` is this message come back: same destination, same message id.
    fn is(&self, returned: &Returned) -> bool {
        self.destination.exchange == returned.exchange
            && self.destination.routing_key == returned.routing_key
            && self.letter.properties.message_id == returned.message_id
    }

    /// Why the broker did not take it, or `Ok` if it confirmed it.
    fn outcome(&self, outcome: &ConfirmOutcome) -> Result<(), String> {
        match outcome {
            ConfirmOutcome::Confirmed => Ok(()),
            ConfirmOutcome::Nacked => Err("the broker refused it (negative confirm)".to_owned()),
            ConfirmOutcome::Returned { .. } => {
                let d = &self.destination;
                Err(if d.exchange.is_empty() {
                    format!("queue `{}` does not exist", d.routing_key)
                } else {
                    format!(
                        "no queue is bound to exchange `{}` for routing key `{}`",
                        d.exchange, d.routing_key
                    )
                })
            }
        }
    }
}

/// The publishing channel of a replay, with confirms on: the candidates of the batch being
/// published are in flight on it, each by its index in the batch.
pub(super) struct Publisher {
    channel: ConfirmedChannel<usize>,
}

impl Publisher {
    fn open(connection: &mut Connection) -> pubsub_amqp::Result<Publisher> {
        Ok(Publisher {
            channel: ConfirmedChannel::open(connection)?,
        })
    }

    pub(super) fn close(self) {
        let _ = self.channel.close();
    }

    /// Publishes every candidate (mandatory, with the replay's properties); returns those
    /// that could not be published (by index), with the reason, and whether the channel
    /// broke.
    fn publish(
        &mut self,
        connection: &Connection,
        batch: &[Candidate],
    ) -> (Vec<(usize, String)>, bool) {
        let mut unpublished = Vec::new();
        let mut broken = false;
        for (i, c) in batch.iter().enumerate() {
            if broken {
                unpublished.push((i, "not published: the publishing channel closed".to_owned()));
                continue;
            }
            let properties = replay_properties(&c.letter.properties);
            let message = Outgoing {
                exchange: &c.destination.exchange,
                routing_key: &c.destination.routing_key,
                body: &c.letter.body,
                properties: &properties,
                mandatory: true,
            };
            match self.channel.publish(connection, message, i) {
                Ok(_) => {}
                Err(e @ pubsub_amqp::Error::InvalidMessage { .. }) => {
                    unpublished.push((i, e.to_string()));
                }
                Err(e) => {
                    broken = true;
                    unpublished.push((i, format!("not published: {e}")));
                }
            }
        }
        (unpublished, broken)
    }

    /// Waits up to `timeout` for the confirms of everything in flight of `batch`.
    fn confirm(
        &mut self,
        connection: &Connection,
        batch: &[Candidate],
        timeout: Duration,
    ) -> Confirmed {
        let deadline = Instant::now() + timeout;
        let mut confirmed = Confirmed::default();
        let mut settled = Vec::new();
        let is_it = |&i: &usize, returned: &Returned| batch.get(i).is_some_and(|c| c.is(returned));
        while !self.channel.is_empty() {
            let waited = self
                .channel
                .wait_all(connection, deadline, is_it, &mut settled);
            confirmed.settled.extend(
                settled
                    .drain(..)
                    .filter_map(|s| Some((s.token, batch.get(s.token)?.outcome(&s.outcome)))),
            );
            let reason = match waited {
                Ok(true) => continue,
                Ok(false) => format!(
                    "the broker did not confirm it within {:.0}s",
                    timeout.as_secs_f64()
                ),
                Err(why) => {
                    let reason = format!("not confirmed: {why}");
                    confirmed.failure = Some(why);
                    reason
                }
            };
            // The channel's state is unknown: the next batch uses a new one.
            confirmed.broken = true;
            let abandoned = self.channel.abandon().into_iter();
            confirmed
                .settled
                .extend(abandoned.map(|(_, i)| (i, Err(reason.clone()))));
        }
        confirmed
    }
}

/// What waiting for a batch's confirms found.
#[derive(Default)]
struct Confirmed {
    /// Each candidate published (by index in the batch), with its outcome.
    settled: Vec<(usize, Result<(), String>)>,
    /// The channel or connection error that ended the wait, if any.
    failure: Option<pubsub_amqp::Error>,
    /// Whether the channel is not to be used again.
    broken: bool,
}

impl Replay<'_> {
    /// Publishes a batch, waits for its confirms, and acknowledges in the dead-letter queue
    /// each message whose copy the broker confirmed.
    pub(super) fn flush(&mut self, batch: Vec<Candidate>) {
        if batch.is_empty() {
            return;
        }
        let mut publisher = match self.publisher() {
            Ok(p) => p,
            Err(reason) => {
                for c in batch {
                    self.stay_candidate(c, reason.clone());
                }
                return;
            }
        };
        let (unpublished, broken) = publisher.publish(self.connection, &batch);
        let confirmed = publisher.confirm(self.connection, &batch, self.options.confirm_timeout);
        if let Some(why) = &confirmed.failure {
            self.note_failure(why);
        }
        if broken || confirmed.broken {
            publisher.close();
        } else {
            self.publisher = Some(publisher);
        }
        let mut batch: Vec<Option<Candidate>> = batch.into_iter().map(Some).collect();
        for (i, outcome) in confirmed.settled {
            match (batch[i].take(), outcome) {
                (Some(c), Ok(())) => self.remove(c),
                (Some(c), Err(reason)) => self.stay_candidate(c, reason),
                (None, _) => {}
            }
        }
        for (i, reason) in unpublished {
            if let Some(c) = batch[i].take() {
                self.stay_candidate(c, reason);
            }
        }
    }

    /// The publishing channel, opened if needed; else why not (a lost connection also
    /// ends the replay: [`ReplayReport::aborted`](super::ReplayReport::aborted)).
    fn publisher(&mut self) -> Result<Publisher, String> {
        if let Some(p) = self.publisher.take() {
            return Ok(p);
        }
        Publisher::open(self.connection).map_err(|e| {
            let reason = format!("cannot open a publishing channel: {e}");
            if e.is_connection_lost() {
                self.report.aborted = Some(reason.clone());
            }
            reason
        })
    }

    /// Remembers what a channel or connection error means for the rest of the replay: a
    /// missing exchange is not tried again, a lost connection ends the replay.
    fn note_failure(&mut self, why: &pubsub_amqp::Error) {
        if let pubsub_amqp::Error::NotFound {
            kind: "exchange",
            name,
        } = why
        {
            self.exchanges.insert(name.clone(), Some(why.to_string()));
        }
        if why.is_connection_lost() {
            self.report.aborted = Some(why.to_string());
        }
    }

    /// Acknowledges a message whose copy the broker confirmed (unless the replay was aborted,
    /// when the connection may be gone: then it stays, a duplicate rather than a loss).
    fn remove(&mut self, c: Candidate) {
        if self.report.aborted.is_some() {
            self.stay_candidate(
                c,
                "republished, but the connection was lost before it could be removed".to_owned(),
            );
            return;
        }
        let moved = Moved {
            event_id: c.event_id.clone(),
            destination: c.destination.clone(),
        };
        match self.get.ack(c.delivery) {
            Ok(()) => self.report.moved.push(moved),
            Err(e) => {
                // Published and confirmed, but still in the dead-letter queue: a duplicate,
                // not a loss.
                self.report.stayed.push(Stayed {
                    event_id: c.event_id,
                    routing_key: c.letter.original_routing_key(self.dlq),
                    reason: format!("republished, but removing it failed: {e}"),
                });
                self.report.aborted.get_or_insert_with(|| e.to_string());
            }
        }
    }
}
