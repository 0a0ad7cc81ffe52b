//! Deliveries decided but not settled yet, acked together with one `multiple` ack.

use pubsub_amqp::{Channel, Delivery};

use crate::context::Context;
use crate::decision::Trust;
use crate::report::DeliveryReport;
use crate::stats::Counters;

/// What a settled delivery counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acked,
    Unhandled,
    Retried,
    DeadPoison,
    DeadExhausted,
    DeadRedeliveryLimit,
}

/// A delivery whose copy was republished, waiting for the broker's confirm of the copy.
#[derive(Debug)]
pub(crate) struct Awaiting {
    /// The copy's publish sequence number on the republishing channel.
    pub(crate) tag: u64,
    pub(crate) delivery: Delivery,
    /// What was trusted of its headers (for the log if the copy is refused).
    pub(crate) trust: Trust,
    pub(crate) outcome: Outcome,
    pub(crate) report: Option<DeliveryReport>,
}

/// Deliveries decided but not settled yet.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Ready to ack: the delivery with the highest tag (acking it with `multiple` acks them
    /// all).
    last: Option<Delivery>,
    /// Delivery tag, what it counts as, its report.
    ready: Vec<(u64, Outcome, Option<DeliveryReport>)>,
    /// Waiting for the confirm of their republished copy.
    pub(crate) awaiting: Vec<Awaiting>,
    max: usize,
}

impl Batch {
    /// A batch flushed at `max` deliveries.
    pub(crate) fn new(max: usize) -> Self {
        Batch {
            last: None,
            ready: Vec::with_capacity(max),
            awaiting: Vec::new(),
            max,
        }
    }

    /// Whether some delivery is ready to ack.
    pub(crate) fn has_ready(&self) -> bool {
        self.last.is_some()
    }

    /// Whether it should be flushed now.
    pub(crate) fn is_full(&self) -> bool {
        self.ready.len() + self.awaiting.len() >= self.max
    }

    /// Adds a delivery whose handling is finished.
    pub(crate) fn ready(
        &mut self,
        delivery: Delivery,
        outcome: Outcome,
        report: Option<DeliveryReport>,
    ) {
        // Every earlier delivery on the channel is settled, ready or awaiting a confirm (and
        // acks wait for those), so a `multiple` ack of the highest tag acks exactly the
        // ready ones.
        let tag = delivery.delivery_tag();
        if self
            .last
            .as_ref()
            .is_none_or(|last| last.delivery_tag() < tag)
        {
            self.last = Some(delivery);
        }
        self.ready.push((tag, outcome, report));
    }

    /// Acks the ready deliveries (call only with nothing awaiting a confirm); returns how
    /// many were acked. Counters and reports follow the ack.
    pub(crate) fn ack(&mut self, channel: &Channel, cx: &Context<'_>) -> pubsub_amqp::Result<u64> {
        let Some(last) = self.last.take() else {
            return Ok(0);
        };
        if self.ready.len() == 1 {
            channel.ack(last)?;
        } else {
            channel.ack_multiple(last)?;
        }
        let c = cx.counters;
        // Deliveries whose copy was confirmed join the batch late: report in delivery order.
        self.ready.sort_unstable_by_key(|(tag, _, _)| *tag);
        let acked = self.ready.len() as u64;
        for (_, outcome, report) in self.ready.drain(..) {
            match outcome {
                Outcome::Acked => Counters::add(&c.acked, 1),
                Outcome::Unhandled => {
                    Counters::add(&c.acked, 1);
                    Counters::add(&c.unhandled, 1);
                }
                Outcome::Retried => Counters::add(&c.retried, 1),
                Outcome::DeadPoison => Counters::add(&c.dead_lettered_poison, 1),
                Outcome::DeadExhausted => Counters::add(&c.dead_lettered_exhausted, 1),
                Outcome::DeadRedeliveryLimit => Counters::add(&c.dead_lettered_redelivery_limit, 1),
            }
            cx.send_report(report);
        }
        Ok(acked)
    }
}
