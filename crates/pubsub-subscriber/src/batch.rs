//! Deliveries decided but not settled yet, acked together with one `multiple` ack; with
//! handlers dispatched elsewhere, deliveries finish out of order, and a `multiple` ack covers
//! only those below the lowest one still in flight ([`plan`]).

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
    /// With handlers dispatched elsewhere: every ready delivery, since some may have to be
    /// acked one by one (`last` is then unused).
    unordered: Option<Vec<Delivery>>,
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
            unordered: None,
            awaiting: Vec::new(),
            max,
        }
    }

    /// A batch whose deliveries may finish out of order (handlers dispatched elsewhere).
    pub(crate) fn unordered(max: usize) -> Self {
        Batch {
            unordered: Some(Vec::with_capacity(max)),
            ..Batch::new(max)
        }
    }

    /// Whether some delivery is ready to ack.
    pub(crate) fn has_ready(&self) -> bool {
        match &self.unordered {
            Some(kept) => !kept.is_empty(),
            None => self.last.is_some(),
        }
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
        let tag = delivery.delivery_tag();
        if let Some(kept) = &mut self.unordered {
            kept.push(delivery);
            self.ready.push((tag, outcome, report));
            return;
        }
        // Every earlier delivery on the channel is settled, ready or awaiting a confirm (and
        // acks wait for those), so a `multiple` ack of the highest tag acks exactly the
        // ready ones.
        if self
            .last
            .as_ref()
            .is_none_or(|last| last.delivery_tag() < tag)
        {
            self.last = Some(delivery);
        }
        self.ready.push((tag, outcome, report));
    }

    /// Acks the ready deliveries (call only with nothing awaiting a confirm or held for a
    /// sink); `in_flight` is the lowest tag whose handlers run elsewhere still, if any.
    /// Returns how many were acked. Counters and reports follow the ack.
    pub(crate) fn ack(
        &mut self,
        channel: &Channel,
        cx: &Context<'_>,
        in_flight: Option<u64>,
    ) -> pubsub_amqp::Result<u64> {
        if let Some(kept) = self.unordered.as_mut() {
            if kept.is_empty() {
                return Ok(0);
            }
            let mut all = std::mem::take(kept);
            all.sort_unstable_by_key(Delivery::delivery_tag);
            let tags: Vec<u64> = all.iter().map(Delivery::delivery_tag).collect();
            let plan = plan(&tags, in_flight, self.max);
            let mut rest = all.into_iter();
            let mut acked = 0;
            if let Some(upto) = plan.multiple_upto {
                // The last of the covered ones, with `multiple` (alone: a plain ack).
                if let Some(last) = rest.by_ref().nth(upto) {
                    if upto == 0 {
                        channel.ack(last)?;
                    } else {
                        channel.ack_multiple(last)?;
                    }
                    acked = upto + 1;
                }
            }
            if plan.one_by_one {
                for delivery in rest {
                    channel.ack(delivery)?;
                }
            } else {
                // Kept for a later `multiple` ack, once what is in flight below them is done.
                kept.extend(rest);
                let (now, later) = self.ready_split(&tags[..acked]);
                self.ready = later;
                return Ok(self.count(cx, now));
            }
        } else {
            let Some(last) = self.last.take() else {
                return Ok(0);
            };
            if self.ready.len() == 1 {
                channel.ack(last)?;
            } else {
                channel.ack_multiple(last)?;
            }
        }
        let ready = std::mem::take(&mut self.ready);
        Ok(self.count(cx, ready))
    }

    /// Splits the ready entries into those whose tag is in `acked` (sorted) and the others.
    #[allow(clippy::type_complexity)]
    fn ready_split(
        &mut self,
        acked: &[u64],
    ) -> (
        Vec<(u64, Outcome, Option<DeliveryReport>)>,
        Vec<(u64, Outcome, Option<DeliveryReport>)>,
    ) {
        std::mem::take(&mut self.ready)
            .into_iter()
            .partition(|(tag, _, _)| acked.binary_search(tag).is_ok())
    }

    /// Counts and reports `ready` entries that were just acked, in delivery order; returns
    /// how many.
    fn count(
        &self,
        cx: &Context<'_>,
        mut ready: Vec<(u64, Outcome, Option<DeliveryReport>)>,
    ) -> u64 {
        let c = cx.counters;
        // Deliveries whose copy was confirmed join the batch late: report in delivery order.
        ready.sort_unstable_by_key(|(tag, _, _)| *tag);
        let acked = ready.len() as u64;
        for (_, outcome, report) in ready {
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
        acked
    }
}

/// How a batch's ready deliveries are acked: the ones up to `multiple_upto` (an index into
/// the sorted tags) with one `multiple` ack of that one; the ones after it one by one if
/// `one_by_one`, else kept for a later `multiple` ack.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AckPlan {
    pub(crate) multiple_upto: Option<usize>,
    pub(crate) one_by_one: bool,
}

/// Plans the acks of the ready deliveries `tags` (sorted) when the lowest delivery whose
/// handlers still run elsewhere is `in_flight`. A `multiple` ack covers every unsettled
/// delivery up to its tag, so it may reach only as far as the last ready tag below
/// `in_flight`. The ready ones above wait for a later `multiple` ack (one frame for many),
/// unless `limit` or more of them wait: unacked, they hold prefetch slots, and a slow
/// handler below them would starve the consumer; then they are acked one by one.
pub(crate) fn plan(tags: &[u64], in_flight: Option<u64>, limit: usize) -> AckPlan {
    let covered = match in_flight {
        None => tags.len(),
        Some(low) => tags.partition_point(|&t| t < low),
    };
    AckPlan {
        multiple_upto: covered.checked_sub(1),
        one_by_one: tags.len() - covered >= limit.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multiple_ack_stops_below_the_lowest_delivery_in_flight() {
        /// Ready tags, the lowest in flight, the limit; then the index a `multiple` ack goes up
        /// to, and whether the rest go one by one.
        type Case<'a> = (&'a [u64], Option<u64>, usize, Option<usize>, bool);
        let cases: &[Case<'_>] = &[
            // Nothing in flight: one multiple ack of the highest.
            (&[1, 2, 3], None, 4, Some(2), false),
            (&[7], None, 4, Some(0), false),
            // 4 in flight: 1..3 together; 5 and 6 wait for 4.
            (&[1, 2, 3, 5, 6], Some(4), 4, Some(2), false),
            // ... unless as many as the limit wait: then one by one.
            (&[1, 2, 3, 5, 6], Some(4), 2, Some(2), true),
            // The lowest in flight below every ready one: they wait, or go one by one.
            (&[5, 6], Some(2), 4, None, false),
            (&[5, 6, 7, 8], Some(2), 4, None, true),
            // In flight above every ready one: all together.
            (&[1, 2], Some(9), 1, Some(1), false),
            (&[], None, 4, None, false),
            (&[], Some(3), 4, None, false),
        ];
        for (tags, in_flight, limit, upto, one_by_one) in cases {
            assert_eq!(
                plan(tags, *in_flight, *limit),
                AckPlan {
                    multiple_upto: *upto,
                    one_by_one: *one_by_one,
                },
                "tags {tags:?}, in flight {in_flight:?}, limit {limit}"
            );
        }
    }
}
