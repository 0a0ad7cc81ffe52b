//! One batch of a replay: publish every candidate, wait for the broker's confirms (through
//! `pubsub-amqp`'s [`ConfirmTracker`]), then acknowledge in the dead-letter queue each message
//! whose copy the broker confirmed. Whatever was not confirmed stays unacknowledged.

use std::time::{Duration, Instant};

use pubsub_amqp::{
    Channel, ConfirmOutcome, ConfirmStreams, ConfirmTracker, Confirms, Connection, Delivery,
    Returned, Returns, Settled,
};

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

/// The publishing channel of a replay, with confirms on.
pub(super) struct Publisher {
    channel: Channel,
    confirms: Confirms,
    returns: Returns,
    /// The candidates published and not confirmed yet.
    tracker: ConfirmTracker<Candidate>,
}

impl Publisher {
    fn open(connection: &mut Connection) -> pubsub_amqp::Result<Publisher> {
        let channel = connection.open_channel()?;
        let returns = channel.listen_for_returns()?;
        let confirms = channel.enable_confirms()?;
        Ok(Publisher {
            channel,
            confirms,
            returns,
            tracker: ConfirmTracker::new(),
        })
    }

    pub(super) fn close(self) {
        let _ = self.channel.close();
    }

    /// Publishes every candidate (mandatory, with the replay's properties); returns those
    /// that could not be published, with the reason, and whether the channel broke.
    fn publish(&mut self, batch: Vec<Candidate>) -> (Vec<(Candidate, String)>, bool) {
        let mut unpublished = Vec::new();
        let mut broken = false;
        for c in batch {
            if broken {
                unpublished.push((c, "not published: the publishing channel closed".to_owned()));
                continue;
            }
            let properties = replay_properties(&c.letter.properties);
            let published = self.channel.publish(
                &c.destination.exchange,
                &c.destination.routing_key,
                &c.letter.body,
                &properties,
                true,
            );
            match published {
                Ok(()) => {
                    self.tracker.published(c);
                }
                Err(e @ pubsub_amqp::Error::InvalidMessage { .. }) => {
                    unpublished.push((c, e.to_string()));
                }
                Err(e) => {
                    broken = true;
                    unpublished.push((c, format!("not published: {e}")));
                }
            }
        }
        (unpublished, broken)
    }

    /// Waits up to `timeout` for the confirms of everything in flight.
    fn confirm(&mut self, connection: &Connection, timeout: Duration) -> Confirmed {
        let deadline = Instant::now() + timeout;
        let mut confirmed = Confirmed::default();
        let mut settled: Vec<Settled<Candidate>> = Vec::new();
        let streams = ConfirmStreams {
            connection,
            channel: &self.channel,
            confirms: &self.confirms,
            returns: &self.returns,
        };
        while !self.tracker.is_empty() {
            let waited = self
                .tracker
                .wait(streams, deadline, Candidate::is, &mut settled);
            confirmed.settled.extend(settled.drain(..).map(|s| {
                let outcome = s.token.outcome(&s.outcome);
                (s.token, outcome)
            }));
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
            let abandoned = self.tracker.abandon().into_iter();
            confirmed
                .settled
                .extend(abandoned.map(|(_, c)| (c, Err(reason.clone()))));
        }
        confirmed
    }
}

/// What waiting for a batch's confirms found.
#[derive(Default)]
struct Confirmed {
    /// Each candidate published, with its outcome.
    settled: Vec<(Candidate, Result<(), String>)>,
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
        let (unpublished, broken) = publisher.publish(batch);
        let confirmed = publisher.confirm(self.connection, self.options.confirm_timeout);
        if let Some(why) = &confirmed.failure {
            self.note_failure(why);
        }
        if broken || confirmed.broken {
            publisher.close();
        } else {
            self.publisher = Some(publisher);
        }
        for (c, outcome) in confirmed.settled {
            match outcome {
                Ok(()) => self.remove(c),
                Err(reason) => self.stay_candidate(c, reason),
            }
        }
        for (c, reason) in unpublished {
            self.stay_candidate(c, reason);
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
