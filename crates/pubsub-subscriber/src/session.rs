//! One connection's worth of consuming: the delivery loop, carrying out what
//! [`decision`](crate::decision) decides for each delivery; settling the batch is in
//! `settle.rs`, handlers that run elsewhere in `dispatched.rs`.

use std::time::{Duration, Instant};

use pubsub_amqp::{
    Channel, Connection, Consumer, ConsumerEvent, Delivery, HeaderValue, Headers, Next, Properties,
};
use pubsub_core::envelope::Received;
use pubsub_core::{Event, Metadata};
use pubsub_registry::InvocationResult;
use time::OffsetDateTime;

use crate::batch::{Awaiting, Batch, Outcome};
use crate::context::Context;
use crate::decision::{self, Arrival, Decision, RunSummary, Trust};
use crate::decode;
use crate::headers::{
    self, clip, now_rfc3339, DeadLetterKind, DeadLetterRecord, Origin, RetryState,
};
use crate::report::{DeliveryReport, Disposition, HandlerRun};
use crate::republisher::Republisher;
use crate::settings::{dead_letter_queue_name, retry_queue_name};
use crate::sink::{Failure, Held, Sink};
use crate::stats::Counters;
use pubsub_core::group_commit::Scope as GroupCommit;

use self::dispatched::{Dispatch, InFlight};

mod dispatched;
mod settle;

type SessionResult<T> = Result<T, Failure>;

/// How long the loop waits for a delivery before it checks for a stop request.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How a session ended.
pub(crate) enum SessionEnd {
    /// Stopped on request.
    Stopped,
    /// Failed.
    Failed {
        error: Failure,
        /// How far it got: see [`SessionRun`](crate::recovery::SessionRun).
        run: crate::recovery::SessionRun,
    },
}

/// The delivery loop of one connection.
pub(crate) struct Session<'a> {
    cx: Context<'a>,
    /// Deliveries decided and ready to ack, and those waiting for the confirm of their
    /// republished copy: settled together when the queue goes quiet or the batch is full.
    batch: Batch,
    /// The connection retries and dead letters are published on, opened when first needed.
    republisher: Option<Republisher>,
    /// When consuming started, once it did.
    consuming_since: Option<Instant>,
    /// Deliveries settled (acked or rejected) so far.
    settled: u64,
    /// Keeps the events acked, committed before each ack.
    sink: Option<&'a mut dyn Sink>,
    /// The deliveries whose events are staged in the sink, until its commit.
    held: Vec<Held>,
    /// How many deliveries a batch holds before it is flushed.
    batch_max: usize,
    /// Random samples for the retries' jitter.
    jitter: Samples,
    /// Handlers run elsewhere: the deliveries handed over, and where their answers come.
    dispatch: Option<Dispatch>,
    /// The group commit's scope on this thread, when handlers run here: the database work
    /// they leave open is committed before each ack, and rolled back when the session ends.
    scope: Option<GroupCommit>,
}

/// A stream of random `u64`s (SplitMix64), seeded from the process's random hasher keys:
/// enough to spread retries, no cryptography.
struct Samples(u64);

impl Samples {
    fn new() -> Samples {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(u64::from(std::process::id()));
        Samples(hasher.finish())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What the handling of a delivery had found when its decision was carried out.
#[derive(Clone, Copy)]
struct Handled<'e> {
    trust: Trust,
    attempt: u32,
    /// The routing key the message was published with, for the sink.
    published: Option<&'e str>,
    event: Option<&'e Event>,
    meta: Option<&'e Metadata>,
    result: Option<&'e InvocationResult>,
}

impl<'a> Session<'a> {
    pub(crate) fn run(
        cx: Context<'a>,
        mut connection: Connection,
        sink: Option<&'a mut dyn Sink>,
    ) -> SessionEnd {
        let batch_max = usize::from(cx.settings().prefetch / 2).max(1);
        // Handlers run elsewhere: see `dispatched.rs`.
        let dispatch = cx
            .settings()
            .dispatcher
            .as_ref()
            .map(|d| Dispatch::new(d.dispatcher.clone(), d.drain));
        let mut session = Session {
            cx,
            batch: if dispatch.is_some() {
                Batch::unordered(batch_max)
            } else {
                Batch::new(batch_max)
            },
            republisher: None,
            consuming_since: None,
            settled: 0,
            sink,
            held: Vec::new(),
            batch_max,
            jitter: Samples::new(),
            // Handlers that run elsewhere commit their own work.
            scope: if dispatch.is_none() {
                GroupCommit::enter()
            } else {
                None
            },
            dispatch,
        };
        let result = session.consume(&mut connection);
        // What this session did not settle goes back to the broker with the connection.
        cx.counters
            .in_flight
            .store(0, std::sync::atomic::Ordering::Relaxed);
        drop(session.republisher.take());
        // What handlers left open was not acked either: rolled back, delivered again.
        drop(session.scope.take());
        if let Some(sink) = session.sink.as_mut() {
            // What is not committed was not acked either: the broker delivers it again.
            sink.discard();
        }
        let closed = connection.close();
        match result {
            Ok(()) => {
                if let Err(e) = closed {
                    log::debug!("closing the consumer connection of `{}`: {e}", cx.queue());
                }
                SessionEnd::Stopped
            }
            Err(error) => SessionEnd::Failed {
                // When amiquip's I/O thread died, the session saw only that; closing the
                // connection tells why (socket closed, missed heartbeats, ...).
                error: match error {
                    Failure::Amqp(error) => {
                        Failure::Amqp(pubsub_amqp::Error::more_precise(error, closed.err()))
                    }
                    sink => sink,
                },
                run: crate::recovery::SessionRun {
                    consumed_for: session.consuming_since.map(|t| t.elapsed()),
                    settled: session.settled,
                },
            },
        }
    }

    fn consume(&mut self, connection: &mut Connection) -> SessionResult<()> {
        let cx = self.cx;
        let channel = cx.topology.declare_on(connection)?;
        channel.set_prefetch(cx.settings().prefetch)?;
        let consumer = channel.consume(cx.queue(), false)?;
        self.consuming_since = Some(Instant::now());
        log::info!(
            "consuming `{}` (prefetch {}, up to {} attempt(s) per event)",
            cx.queue(),
            cx.settings().prefetch,
            cx.settings().retry.max_attempts()
        );
        let result = self
            .deliveries(&channel, &consumer)
            .and_then(|()| self.drain(&channel));
        // Settle what was decided before leaving, whatever ended the loop.
        let flushed = self.flush(&channel);
        // A failure ends the session; what is unacknowledged comes back from the broker.
        result?;
        // Stopped: the rest is best effort. An error here must not turn a stop into a
        // reconnect; the broker requeues whatever stays unacknowledged.
        let cancelled = flushed.and_then(|()| consumer.cancel().map_err(Failure::from));
        drop(consumer);
        if let Err(e) = cancelled.and_then(|()| channel.close().map_err(Failure::from)) {
            log::warn!("closing the consumer of `{}` after stop: {e}", cx.queue());
        }
        Ok(())
    }

    /// Takes deliveries until stopped or until the channel or connection fails.
    fn deliveries(&mut self, channel: &Channel, consumer: &Consumer<'_>) -> SessionResult<()> {
        let answers = self.dispatch.as_ref().map(Dispatch::answers);
        loop {
            if self.cx.stop.try_recv().is_ok() {
                return Ok(());
            }
            if let Some(answers) = &answers {
                while let Ok(answer) = answers.try_recv() {
                    self.finish(channel, answer)?;
                }
            }
            let event = match consumer.try_next() {
                Some(event) => event,
                None => {
                    // The queue is momentarily empty: settle what is pending, then wait. The
                    // wait is on the deliveries alone (cheaper than a select with the stop
                    // channel, which matters at prefetch 1); stop is checked between waits.
                    // With handlers elsewhere, it is on their answers too.
                    self.flush(channel)?;
                    match &answers {
                        None => match consumer.next_timeout(STOP_POLL) {
                            Some(event) => event,
                            None => continue,
                        },
                        Some(answers) => match consumer.next_or(answers, STOP_POLL) {
                            Next::Event(event) => event,
                            Next::Other(Some(answer)) => {
                                self.finish(channel, answer)?;
                                continue;
                            }
                            Next::Other(None) | Next::Timeout => continue,
                        },
                    }
                }
            };
            match event {
                ConsumerEvent::Delivery(delivery) => self.handle(channel, delivery)?,
                ConsumerEvent::Cancelled { by_server: true } => {
                    return Err(Failure::Amqp(pubsub_amqp::Error::ConnectionLost {
                        reason: format!(
                            "the broker cancelled the consumer of `{}` (queue deleted, or a node failed over)",
                            self.cx.queue()
                        ),
                    }))
                }
                ConsumerEvent::Cancelled { by_server: false } => return Ok(()),
                ConsumerEvent::Closed(e) => return Err(e.into()),
            }
        }
    }

    /// Decides what becomes of one delivery (see [`decision`]) and carries it out.
    fn handle(&mut self, channel: &Channel, mut delivery: Delivery) -> SessionResult<()> {
        let cx = self.cx;
        Counters::add(&cx.counters.received, 1);
        Counters::add(&cx.counters.in_flight, 1);
        if delivery.redelivered() {
            Counters::add(&cx.counters.redelivered, 1);
        }
        let body = delivery.take_body();
        let arrival = Arrival {
            queue: cx.queue(),
            quorum: cx.quorum,
            exchange: delivery.exchange(),
            routing_key: delivery.routing_key(),
            redelivered: delivery.redelivered(),
        };
        let (facts, trust) = decision::facts(&arrival, delivery.alteration(), |name| {
            delivery.header(name)
        });
        let mut handled = Handled {
            trust,
            attempt: facts.retry.attempt,
            published: None,
            event: None,
            meta: None,
            result: None,
        };
        if let Some(decision) = decision::admit(&facts, cx.settings().max_redeliveries) {
            return self.carry_out(channel, delivery, &body, handled, decision);
        }
        let retry = facts.retry;
        // The key recorded in the headers is believed only where the retry state is: on a
        // delivery that came back through this subscriber's own delay queue.
        let recorded = trust
            .retry_state
            .then(|| delivery.header(headers::ORIGINAL_ROUTING_KEY))
            .flatten();
        let received = Received {
            routing_key: decode::published_key(
                delivery.exchange(),
                delivery.routing_key(),
                recorded.as_ref().and_then(HeaderValue::as_str),
            ),
            message_id: delivery.message_id(),
            timestamp: delivery.timestamp(),
            received_at: OffsetDateTime::now_utc(),
        };
        let decoded =
            cx.settings()
                .decoder
                .decode_with_meta(delivery.content_type(), &body, &received);
        // The sink keeps the key (a copy: the delivery moves on before it is staged).
        let published = self
            .sink
            .is_some()
            .then(|| received.routing_key.map(str::to_owned))
            .flatten();
        let (event, fields) = match decoded {
            Ok(decoded) => decoded,
            Err(reason) => {
                return self.carry_out(channel, delivery, &body, handled, Decision::poison(reason))
            }
        };
        let meta = crate::meta::metadata(&delivery, retry.attempt, fields);
        if self.dispatch.is_some() {
            self.hand_over(InFlight {
                delivery,
                body,
                trust,
                retry,
                published,
                event,
                meta,
            });
            return Ok(());
        }
        let result = crate::trace::process(cx.queue(), &delivery, &event, || {
            cx.registry
                .invoke_where(&event, &meta, |s| !retry.done.iter().any(|d| d == s.id()))
        });
        Counters::add(&cx.counters.handler_failures, result.failed() as u64);
        let decision = decision::after_run(
            &retry,
            &RunSummary::of(&result),
            &cx.settings().retry,
            now_rfc3339,
        );
        handled.event = Some(&event);
        handled.meta = Some(&meta);
        handled.published = published.as_deref();
        handled.result = Some(&result);
        self.carry_out(channel, delivery, &body, handled, decision)
    }

    fn carry_out(
        &mut self,
        channel: &Channel,
        delivery: Delivery,
        body: &[u8],
        handled: Handled<'_>,
        decision: Decision,
    ) -> SessionResult<()> {
        match decision {
            Decision::Ack => {
                let report = self.report(&delivery, handled, Disposition::Acked);
                self.accept(channel, delivery, body, handled, Outcome::Acked, report)
            }
            Decision::Unhandled => {
                if let Some(event) = handled.event {
                    log::debug!("no handler for {event} in `{}`", self.cx.queue());
                }
                let report = self.report(&delivery, handled, Disposition::Unhandled);
                self.accept(channel, delivery, body, handled, Outcome::Unhandled, report)
            }
            Decision::Retry { delay, state } => {
                // The delay queue holds `delay`; the copy expires sooner by its jitter.
                let wait = self.cx.settings().retry.wait(delay, self.jitter.next());
                log::warn!(
                    "{}: {} handler(s) failed on attempt {} ({}); retrying in {:.1}s",
                    describe(&delivery, handled),
                    state.failed_handlers.len(),
                    handled.attempt,
                    state.last_error.as_deref().unwrap_or_default(),
                    wait.as_secs_f64()
                );
                let target = retry_queue_name(self.cx.queue(), delay);
                let mut properties = republish_properties(&delivery, handled.trust, |h| {
                    state.write_to(h);
                });
                properties.expiration = (wait < delay).then_some(wait);
                let disposition = Disposition::Retried {
                    next_attempt: state.attempt,
                    delay: wait,
                };
                let report = self.report(&delivery, handled, disposition);
                self.republish(
                    channel,
                    handled,
                    &target,
                    body,
                    &properties,
                    delivery,
                    Outcome::Retried,
                    report,
                )
            }
            Decision::DeadLetter {
                kind,
                reason,
                state,
            } => self.dead_letter(channel, delivery, body, handled, kind, reason, state),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        &mut self,
        channel: &Channel,
        delivery: Delivery,
        body: &[u8],
        handled: Handled<'_>,
        kind: DeadLetterKind,
        reason: String,
        state: Option<RetryState>,
    ) -> SessionResult<()> {
        let queue = self.cx.queue();
        match kind {
            DeadLetterKind::Exhausted => log::error!(
                "dead-lettering a message from `{queue}` ({}): {reason}",
                original_routing_key(&delivery, handled.trust),
            ),
            _ => log::warn!(
                "dead-lettering a {kind} message from `{queue}` ({}, {} bytes): {reason}",
                original_routing_key(&delivery, handled.trust),
                body.len(),
            ),
        }
        if !self.cx.settings().dead_letter {
            return self.drop_delivery(channel, delivery, handled, "dead-lettering is turned off");
        }
        let record = DeadLetterRecord {
            kind,
            reason,
            dead_lettered_at: now_rfc3339(),
            source_queue: queue.to_owned(),
        };
        let properties = republish_properties(&delivery, handled.trust, |h| {
            if let Some(state) = &state {
                state.write_to(h);
            }
            record.write_to(h);
        });
        let outcome = match kind {
            DeadLetterKind::Exhausted => Outcome::DeadExhausted,
            DeadLetterKind::RedeliveryLimit => Outcome::DeadRedeliveryLimit,
            DeadLetterKind::Poison => Outcome::DeadPoison,
        };
        let disposition = Disposition::DeadLettered {
            kind,
            reason: clip(&record.reason),
        };
        let report = self.report(&delivery, handled, disposition);
        let dlq = dead_letter_queue_name(queue);
        self.republish(
            channel,
            handled,
            &dlq,
            body,
            &properties,
            delivery,
            outcome,
            report,
        )
    }

    /// Rejects a delivery without requeue: the broker drops it, or dead-letters it through
    /// the queue's own dead-letter exchange.
    fn drop_delivery(
        &mut self,
        channel: &Channel,
        delivery: Delivery,
        handled: Handled<'_>,
        reason: &str,
    ) -> SessionResult<()> {
        let handled = Handled {
            attempt: 0,
            event: None,
            meta: None,
            result: None,
            ..handled
        };
        let report = self.report(
            &delivery,
            handled,
            Disposition::Dropped {
                reason: reason.to_owned(),
            },
        );
        self.reject(channel, delivery, handled.trust, reason, report)
    }

    /// Publishes a copy of `delivery` to one of the subscriber's own queues through the
    /// default exchange. The delivery is settled once the copy is confirmed (see
    /// [`flush`](Self::flush)): acked, or rejected if the broker refused the copy.
    #[allow(clippy::too_many_arguments)]
    fn republish(
        &mut self,
        channel: &Channel,
        handled: Handled<'_>,
        queue: &str,
        body: &[u8],
        properties: &Properties,
        delivery: Delivery,
        outcome: Outcome,
        report: Option<DeliveryReport>,
    ) -> SessionResult<()> {
        self.send_copy(
            queue,
            body,
            properties,
            delivery,
            handled.trust,
            outcome,
            report,
        )?;
        if self.is_full() {
            self.flush(channel)?;
        }
        Ok(())
    }

    /// Publishes a copy of `delivery` as [`republish`](Self::republish) does, without
    /// flushing a full batch.
    #[allow(clippy::too_many_arguments)]
    fn send_copy(
        &mut self,
        queue: &str,
        body: &[u8],
        properties: &Properties,
        delivery: Delivery,
        trust: Trust,
        outcome: Outcome,
        report: Option<DeliveryReport>,
    ) -> SessionResult<()> {
        if self.republisher.is_none() {
            self.republisher = Some(Republisher::open(self.cx.config)?);
        }
        let Some(republisher) = self.republisher.as_mut() else {
            return Ok(());
        };
        let tag = match republisher.send(queue, body, properties) {
            Ok(tag) => tag,
            Err(e) => {
                self.republisher = None;
                return Err(e.into());
            }
        };
        self.batch.awaiting.push(Awaiting {
            tag,
            delivery,
            trust,
            outcome,
            report,
        });
        Ok(())
    }

    fn report(
        &self,
        delivery: &Delivery,
        handled: Handled<'_>,
        disposition: Disposition,
    ) -> Option<DeliveryReport> {
        if !self.cx.observed() {
            return None;
        }
        let handlers = handled
            .result
            .map(|r| {
                r.outcomes()
                    .iter()
                    .map(|o| HandlerRun {
                        handler: o.handler().to_owned(),
                        error: o.failure().map(ToString::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(DeliveryReport {
            routing_key: handled
                .event
                .map(|e| e.routing_key().to_owned())
                .unwrap_or_else(|| original_routing_key(delivery, handled.trust)),
            event_id: handled.event.map(|e| e.event_id().to_string()),
            attempt: handled.attempt,
            handlers,
            disposition,
        })
    }
}

/// The event, or the message's routing key when it is not one, for logs.
fn describe(delivery: &Delivery, handled: Handled<'_>) -> String {
    match handled.event {
        Some(event) => event.to_string(),
        None => original_routing_key(delivery, handled.trust),
    }
}

/// The delivery's properties, persistent, for a copy on one of the subscriber's queues:
/// retry-state headers it does not trust removed, the original exchange and routing key
/// recorded (kept from a trusted retry), then `write` adds the new headers.
fn republish_properties(
    delivery: &Delivery,
    trust: Trust,
    write: impl FnOnce(&mut Headers),
) -> Properties {
    let mut properties = delivery.properties();
    properties.persistent = true;
    let headers = &mut properties.headers;
    if !trust.retry_state {
        for name in headers::RETRY_STATE {
            headers.remove(name);
        }
    }
    if Origin::from_headers(headers).is_none() {
        Origin {
            exchange: delivery.exchange().to_owned(),
            routing_key: delivery.routing_key().to_owned(),
        }
        .write_to(headers);
    }
    write(headers);
    properties
}

/// The routing key the message was first published with: a retried message comes back
/// from its delay queue with the queue's name as routing key.
fn original_routing_key(delivery: &Delivery, trust: Trust) -> String {
    let recorded = if trust.retry_state {
        delivery
            .header(headers::ORIGINAL_ROUTING_KEY)
            .and_then(|h| h.as_str().map(str::to_owned))
    } else {
        None
    };
    recorded.unwrap_or_else(|| delivery.routing_key().to_owned())
}
