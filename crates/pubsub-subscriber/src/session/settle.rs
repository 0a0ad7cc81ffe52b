//! Settling a session's batch: deliveries ready to ack, waiting for the confirm of their
//! republished copy, or held for the sink's commit; the group commit of the handlers' open
//! work before any ack or reject; one `multiple` ack for the lot.

use pubsub_amqp::{Channel, Delivery};

use super::{original_routing_key, republish_properties, Handled, Session, SessionResult};
use crate::batch::Outcome;
use crate::decision::Trust;
use crate::headers::{clip, now_rfc3339, DeadLetterKind, DeadLetterRecord};
use crate::report::{DeliveryReport, Disposition};
use crate::settings::dead_letter_queue_name;
use crate::sink::{self, Failure, Held, Staged};
use crate::stats::Counters;

impl Session<'_> {
    /// Whether the batch is full: ready and awaiting deliveries, and those held for the sink
    /// (with a sink, every acked delivery is held until the commit, so ready ones are few).
    pub(super) fn is_full(&self) -> bool {
        self.batch.is_full() || self.held.len() + self.batch.awaiting.len() >= self.batch_max
    }

    /// Adds a delivery whose handlers are done with it to the batch: held with its event
    /// staged in the sink, if there is one, else ready to ack; flushes a full batch.
    pub(super) fn accept(
        &mut self,
        channel: &Channel,
        delivery: Delivery,
        body: &[u8],
        handled: Handled<'_>,
        outcome: Outcome,
        report: Option<DeliveryReport>,
    ) -> SessionResult<()> {
        let (Some(sink), Some(event), Some(meta)) =
            (self.sink.as_mut(), handled.event, handled.meta)
        else {
            return self.ready(channel, delivery, outcome, report);
        };
        sink.stage(Staged::new(event, meta, body).with_routing_key(handled.published))
            .map_err(Failure::Sink)?;
        self.held.push(Held {
            delivery,
            body: body.to_vec(),
            trust: handled.trust,
            outcome,
            report,
        });
        if self.is_full() {
            self.flush(channel)?;
        }
        Ok(())
    }

    /// Adds a delivery whose handling is finished to the batch; flushes a full batch.
    fn ready(
        &mut self,
        channel: &Channel,
        delivery: Delivery,
        outcome: Outcome,
        report: Option<DeliveryReport>,
    ) -> SessionResult<()> {
        self.batch.ready(delivery, outcome, report);
        if self.is_full() {
            self.flush(channel)?;
        }
        Ok(())
    }

    /// Settles the batch: waits for the confirms of the republished copies, rejects the
    /// deliveries whose copy the broker refused, commits the sink (dead-lettering what it
    /// refused), then acks everything else with one `multiple` ack. Counters and reports
    /// follow the ack.
    pub(super) fn flush(&mut self, channel: &Channel) -> SessionResult<()> {
        self.commit_open_work()?;
        self.settle_awaiting(channel)?;
        if !self.held.is_empty() {
            // The events of the batch are durable before their deliveries are acked; the
            // ones the sink refused are dead-lettered, and settled with the batch.
            self.commit_held(channel)?;
            self.settle_awaiting(channel)?;
        }
        if self.batch.has_ready() {
            let in_flight = self.lowest_in_flight();
            let acked = self.batch.ack(channel, &self.cx, in_flight)?;
            self.count_settled(acked);
        }
        Ok(())
    }

    /// Commits the database work the handlers left open (group commit), before anything it
    /// covers is acked or rejected. A failure ends the session: nothing of the batch is acked.
    fn commit_open_work(&mut self) -> SessionResult<()> {
        if let Some(scope) = &self.scope {
            if !scope.is_empty() {
                scope.commit().map_err(Failure::Commit)?;
            }
        }
        Ok(())
    }

    /// Waits for the confirms of the republished copies: a delivery whose copy was confirmed
    /// is ready to ack, one whose copy the broker refused is rejected.
    fn settle_awaiting(&mut self, channel: &Channel) -> SessionResult<()> {
        if !self.batch.awaiting.is_empty() {
            let refused = match self.republisher.as_mut() {
                Some(republisher) => republisher.confirm_all(),
                None => Err(pubsub_amqp::Error::ConnectionLost {
                    reason: "the republishing connection is gone".to_owned(),
                }),
            };
            let refused = match refused {
                Ok(refused) => refused,
                Err(e) => {
                    // Nothing of the batch is acked: the broker delivers it all again.
                    self.republisher = None;
                    return Err(e.into());
                }
            };
            for awaiting in std::mem::take(&mut self.batch.awaiting) {
                if refused.contains(&awaiting.tag) {
                    let reason = "the broker refused the republished copy (is the retry or dead-letter queue full?)";
                    let report = awaiting.report.map(|mut r| {
                        r.disposition = Disposition::Dropped {
                            reason: reason.to_owned(),
                        };
                        r
                    });
                    self.reject(channel, awaiting.delivery, awaiting.trust, reason, report)?;
                } else {
                    self.batch
                        .ready(awaiting.delivery, awaiting.outcome, awaiting.report);
                }
            }
        }
        Ok(())
    }

    /// Commits the sink: the held deliveries whose events it kept are ready to ack, those it
    /// refused are dead-lettered (each once: the sink forgets them, and they leave `held`).
    fn commit_held(&mut self, channel: &Channel) -> SessionResult<()> {
        let held = std::mem::take(&mut self.held);
        let Some(sink) = self.sink.as_mut() else {
            for h in held {
                self.batch.ready(h.delivery, h.outcome, h.report);
            }
            return Ok(());
        };
        let committed = sink.commit().map_err(Failure::Sink)?;
        let reasons: Vec<Option<String>> = sink::refusals(&committed, held.len())
            .into_iter()
            .map(|r| r.map(str::to_owned))
            .collect();
        for (h, reason) in held.into_iter().zip(reasons) {
            match reason {
                None => self.batch.ready(h.delivery, h.outcome, h.report),
                Some(reason) => self.dead_letter_refused(channel, h, &reason)?,
            }
        }
        Ok(())
    }

    /// Dead-letters, as poison, a delivery whose event the sink refused for `reason`. The copy
    /// joins the batch's awaiting ones; the caller settles them.
    fn dead_letter_refused(
        &mut self,
        channel: &Channel,
        held: Held,
        reason: &str,
    ) -> SessionResult<()> {
        let queue = self.cx.queue();
        let reason = format!("the sink refused the event: {reason}");
        log::warn!(
            "dead-lettering a poison message from `{queue}` ({}, {} bytes): {reason}",
            original_routing_key(&held.delivery, held.trust),
            held.body.len(),
        );
        if !self.cx.settings().dead_letter {
            let why = "dead-lettering is turned off";
            let report = held.report.map(|mut r| {
                r.disposition = Disposition::Dropped {
                    reason: why.to_owned(),
                };
                r
            });
            return self.reject(channel, held.delivery, held.trust, why, report);
        }
        let report = held.report.map(|mut r| {
            r.disposition = Disposition::DeadLettered {
                kind: DeadLetterKind::Poison,
                reason: clip(&reason),
            };
            r
        });
        let record = DeadLetterRecord {
            kind: DeadLetterKind::Poison,
            reason,
            dead_lettered_at: now_rfc3339(),
            source_queue: queue.to_owned(),
        };
        let properties = republish_properties(&held.delivery, held.trust, |h| {
            record.write_to(h);
        });
        self.send_copy(
            &dead_letter_queue_name(queue),
            &held.body,
            &properties,
            held.delivery,
            held.trust,
            Outcome::DeadPoison,
            report,
        )
    }

    /// Rejects a delivery without requeue, counts it as dropped, logs and reports it.
    pub(super) fn reject(
        &mut self,
        channel: &Channel,
        delivery: Delivery,
        trust: Trust,
        reason: &str,
        report: Option<DeliveryReport>,
    ) -> SessionResult<()> {
        self.commit_open_work()?;
        log::error!(
            "rejecting a message from `{}` ({}) without requeue: {reason}",
            self.cx.queue(),
            original_routing_key(&delivery, trust)
        );
        channel.reject(delivery, false)?;
        self.count_settled(1);
        Counters::add(&self.cx.counters.dropped, 1);
        self.cx.send_report(report);
        Ok(())
    }

    fn count_settled(&mut self, n: u64) {
        self.settled += n;
        Counters::sub(&self.cx.counters.in_flight, n);
    }
}
