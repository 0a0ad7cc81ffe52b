//! One connection's worth of consuming: the delivery loop, dispatch, retries, dead letters,
//! batched acks.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use pubsub_amqp::{
    Channel, Confirms, Connection, Consumer, ConsumerEvent, Delivery, HeaderValue, Properties,
    Returns,
};
use pubsub_core::{json, Event, Metadata};
use pubsub_registry::InvocationResult;

use crate::headers::DeadLetterKind;
use crate::headers::{self, clip, now_rfc3339};
use crate::report::{DeliveryReport, Disposition, HandlerRun};
use crate::settings::{dead_letter_queue_name, retry_queue_name};
use crate::stats::Counters;
use crate::subscriber::EventSubscriber;

type AmqpResult<T> = pubsub_amqp::Result<T>;

/// How long the loop waits for a delivery before it checks for a stop request.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long to wait for the broker to confirm a retry or dead-letter publish.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// How a session ended.
pub(crate) enum SessionEnd {
    /// Stopped on request.
    Stopped,
    /// Failed; `consumed` says whether it got as far as consuming (so the next failure is a
    /// new outage).
    Failed {
        error: pubsub_amqp::Error,
        consumed: bool,
    },
}

/// The delivery loop of one connection.
pub(crate) struct Session<'s> {
    sub: &'s EventSubscriber,
    /// Deliveries decided and ready to ack, and those waiting for the confirm of their
    /// republished copy: settled together when the queue goes quiet or the batch is full.
    batch: Batch,
    /// A second connection for retry and dead-letter publishes, opened when first needed: a
    /// connection that publishes is blocked during a resource alarm, and the consuming one
    /// must not be.
    republisher: Option<Republisher>,
}

impl<'s> Session<'s> {
    pub(crate) fn run(sub: &'s EventSubscriber, mut connection: Connection) -> SessionEnd {
        let mut session = Session {
            sub,
            batch: Batch::new(usize::from(sub.settings.prefetch / 2).max(1)),
            republisher: None,
        };
        let mut consumed = false;
        let result = session.consume(&mut connection, &mut consumed);
        drop(session.republisher.take());
        let closed = connection.close();
        match result {
            Ok(()) => {
                if let Err(e) = closed {
                    log::debug!("closing the consumer connection of `{}`: {e}", sub.queue);
                }
                SessionEnd::Stopped
            }
            Err(error) => SessionEnd::Failed {
                // When amiquip's I/O thread died, the session saw only that; closing the
                // connection tells why (socket closed, missed heartbeats, ...).
                error: pubsub_amqp::Error::more_precise(error, closed.err()),
                consumed,
            },
        }
    }

    fn consume(&mut self, connection: &mut Connection, consumed: &mut bool) -> AmqpResult<()> {
        let sub = self.sub;
        let channel = connection.open_channel()?;
        sub.declare(&channel)?;
        channel.set_prefetch(sub.settings.prefetch)?;
        let consumer = channel.consume(&sub.queue, false)?;
        *consumed = true;
        log::info!(
            "consuming `{}` (prefetch {}, up to {} attempt(s) per event)",
            sub.queue,
            sub.settings.prefetch,
            sub.settings.retry.max_attempts()
        );
        let result = self.deliveries(&channel, &consumer);
        // Settle what was decided before leaving, whatever ended the loop.
        let flushed = self.flush(&channel);
        // A failure ends the session; what is unacknowledged comes back from the broker.
        result?;
        // Stopped: the rest is best effort. An error here must not turn a stop into a
        // reconnect; the broker requeues whatever stays unacknowledged.
        let cancelled = flushed.and_then(|()| consumer.cancel());
        drop(consumer);
        if let Err(e) = cancelled.and_then(|()| channel.close()) {
            log::warn!("closing the consumer of `{}` after stop: {e}", sub.queue);
        }
        Ok(())
    }

    /// Takes deliveries until stopped or until the channel or connection fails.
    fn deliveries(&mut self, channel: &Channel, consumer: &Consumer<'_>) -> AmqpResult<()> {
        loop {
            if self.sub.stop_rx.try_recv().is_ok() {
                return Ok(());
            }
            let event = match consumer.try_next() {
                Some(event) => event,
                None => {
                    // The queue is momentarily empty: settle what is pending, then wait. The
                    // wait is on the deliveries alone (cheaper than a select with the stop
                    // channel, which matters at prefetch 1); stop is checked between waits.
                    self.flush(channel)?;
                    match consumer.next_timeout(STOP_POLL) {
                        Some(event) => event,
                        None => continue,
                    }
                }
            };
            match event {
                ConsumerEvent::Delivery(delivery) => self.handle(channel, delivery)?,
                ConsumerEvent::Cancelled { by_server: true } => {
                    return Err(pubsub_amqp::Error::ConnectionLost {
                        reason: format!(
                            "the broker cancelled the consumer of `{}` (queue deleted, or a node failed over)",
                            self.sub.queue
                        ),
                    })
                }
                ConsumerEvent::Cancelled { by_server: false } => return Ok(()),
                ConsumerEvent::Closed(e) => return Err(e),
            }
        }
    }

    fn handle(&mut self, channel: &Channel, mut delivery: Delivery) -> AmqpResult<()> {
        let sub = self.sub;
        let counters = &sub.counters;
        Counters::add(&counters.received, 1);
        if delivery.redelivered() {
            Counters::add(&counters.redelivered, 1);
        }
        let body = delivery.take_body();
        let attempt = header_int(&delivery, headers::ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(1)
            .max(1);

        if let Some(count) = header_int(&delivery, headers::DELIVERY_COUNT) {
            if count >= i64::from(sub.settings.max_redeliveries) {
                let reason = format!(
                    "delivered {count} times without being acknowledged (the consumer crashed or lost its connection while handling it)"
                );
                return self.dead_letter(
                    channel,
                    delivery,
                    &body,
                    DeadLetter::new(DeadLetterKind::RedeliveryLimit, reason, attempt),
                );
            }
        }

        let event = match self.decode(&delivery, &body) {
            Ok(event) => event,
            Err(reason) => {
                return self.dead_letter(
                    channel,
                    delivery,
                    &body,
                    DeadLetter::new(DeadLetterKind::Poison, reason, attempt),
                )
            }
        };

        let done: Vec<String> = delivery
            .header(headers::DONE)
            .map(|h| h.string_items().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let meta = Metadata::default()
            .with_correlation_id(delivery.correlation_id().map(str::to_owned))
            .with_app_id(delivery.app_id().map(str::to_owned))
            .with_attempt(attempt)
            .with_redelivered(delivery.redelivered());
        let result = sub
            .registry
            .invoke_where(&event, &meta, |s| !done.iter().any(|d| d == s.id()));
        let failed = result.failed();
        Counters::add(&counters.handler_failures, failed as u64);

        if failed == 0 {
            let (outcome, disposition) = if result.is_unhandled() && done.is_empty() {
                log::debug!("no handler for {event} in `{}`", sub.queue);
                (Outcome::Unhandled, Disposition::Unhandled)
            } else {
                (Outcome::Acked, Disposition::Acked)
            };
            let report = self.report(&delivery, Some(&event), attempt, Some(&result), disposition);
            return self.ready(channel, delivery, outcome, report);
        }

        let last_error = result
            .failures()
            .map(|o| {
                let f = o.failure().map(ToString::to_string).unwrap_or_default();
                format!("{}: {f}", o.handler())
            })
            .collect::<Vec<_>>()
            .join("; ");
        let failed_handlers: Vec<String> =
            result.failures().map(|o| o.handler().to_owned()).collect();
        let mut done_now = done;
        done_now.extend(
            result
                .outcomes()
                .iter()
                .filter(|o| o.is_ok())
                .map(|o| o.subscription().to_owned()),
        );
        let first_failure = delivery
            .header(headers::FIRST_FAILURE)
            .and_then(|h| h.as_str().map(str::to_owned))
            .unwrap_or_else(now_rfc3339);
        let mut retry_headers = vec![
            (headers::DONE, HeaderValue::from(done_now)),
            (headers::FAILED_HANDLERS, HeaderValue::from(failed_handlers)),
            (headers::LAST_ERROR, HeaderValue::from(clip(&last_error))),
            (headers::FIRST_FAILURE, HeaderValue::from(first_failure)),
        ];

        let permanent = result
            .failures()
            .all(|o| o.failure().is_some_and(|f| f.is_permanent()));
        let delay = if permanent {
            None
        } else {
            sub.settings.retry.delay_after(attempt)
        };
        match delay {
            Some(delay) => {
                let next_attempt = attempt + 1;
                retry_headers.push((headers::ATTEMPT, HeaderValue::Int(i64::from(next_attempt))));
                let target = retry_queue_name(&sub.queue, delay);
                log::warn!(
                    "{event}: {failed} handler(s) failed on attempt {attempt} ({last_error}); retrying in {:.1}s",
                    delay.as_secs_f64()
                );
                let properties = republish_properties(&delivery, retry_headers);
                let report = self.report(
                    &delivery,
                    Some(&event),
                    attempt,
                    Some(&result),
                    Disposition::Retried {
                        next_attempt,
                        delay,
                    },
                );
                self.republish(
                    channel,
                    &target,
                    &body,
                    &properties,
                    delivery,
                    Outcome::Retried,
                    report,
                )
            }
            None => {
                retry_headers.push((headers::ATTEMPT, HeaderValue::Int(i64::from(attempt))));
                let (kind, reason) = if permanent {
                    (
                        DeadLetterKind::Poison,
                        format!("permanent failure: {last_error}"),
                    )
                } else {
                    (
                        DeadLetterKind::Exhausted,
                        format!("failed {attempt} attempt(s): {last_error}"),
                    )
                };
                let mut dead = DeadLetter::new(kind, reason, attempt);
                dead.event = Some(&event);
                dead.result = Some(&result);
                dead.headers = retry_headers;
                self.dead_letter(channel, delivery, &body, dead)
            }
        }
    }

    /// Decodes and checks the body; the error is the dead-letter reason.
    fn decode(&self, delivery: &Delivery, body: &[u8]) -> Result<Event, String> {
        let settings = &self.sub.settings;
        if body.len() > settings.max_body_size {
            return Err(format!(
                "body of {} bytes exceeds the maximum of {} bytes",
                body.len(),
                settings.max_body_size
            ));
        }
        if let Some(content_type) = delivery.content_type() {
            if !is_json(content_type) {
                return Err(format!(
                    "content type {:?} is not application/json",
                    clip(content_type)
                ));
            }
        }
        let event = json::from_slice(body).map_err(|e| e.to_string())?;
        if let Some(supported) = &settings.supported_major_versions {
            let major = event
                .version()
                .split('.')
                .next()
                .and_then(|m| m.parse::<u64>().ok());
            if !major.is_some_and(|m| supported.contains(&m)) {
                return Err(format!(
                    "version {:?} is not supported (supported major versions: {supported:?})",
                    clip(event.version())
                ));
            }
        }
        Ok(event)
    }

    fn dead_letter(
        &mut self,
        channel: &Channel,
        delivery: Delivery,
        body: &[u8],
        dead: DeadLetter<'_>,
    ) -> AmqpResult<()> {
        let sub = self.sub;
        match dead.kind {
            DeadLetterKind::Exhausted => log::error!(
                "dead-lettering a message from `{}` ({}): {}",
                sub.queue,
                original_routing_key(&delivery),
                dead.reason
            ),
            _ => log::warn!(
                "dead-lettering a {} message from `{}` ({}, {} bytes): {}",
                dead.kind,
                sub.queue,
                original_routing_key(&delivery),
                body.len(),
                dead.reason
            ),
        }
        if !sub.settings.dead_letter {
            return self.drop_delivery(channel, delivery, "dead-lettering is turned off");
        }
        let mut headers = dead.headers;
        headers.push((
            headers::DEAD_LETTER_KIND,
            HeaderValue::from(dead.kind.as_str()),
        ));
        headers.push((
            headers::DEAD_LETTER_REASON,
            HeaderValue::from(clip(&dead.reason)),
        ));
        headers.push((headers::DEAD_LETTERED_AT, HeaderValue::from(now_rfc3339())));
        headers.push((headers::SOURCE_QUEUE, HeaderValue::from(sub.queue.as_str())));
        let properties = republish_properties(&delivery, headers);
        let outcome = match dead.kind {
            DeadLetterKind::Exhausted => Outcome::DeadExhausted,
            _ => Outcome::DeadPoison,
        };
        let disposition = Disposition::DeadLettered {
            kind: dead.kind,
            reason: clip(&dead.reason),
        };
        let report = self.report(
            &delivery,
            dead.event,
            dead.attempt,
            dead.result,
            disposition,
        );
        let queue = dead_letter_queue_name(&sub.queue);
        self.republish(
            channel,
            &queue,
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
        reason: &str,
    ) -> AmqpResult<()> {
        let report = self.report(
            &delivery,
            None,
            0,
            None,
            Disposition::Dropped {
                reason: reason.to_owned(),
            },
        );
        reject(self.sub, channel, delivery, reason, report)
    }

    /// Publishes a copy of `delivery` to one of the subscriber's own queues through the
    /// default exchange. The delivery is settled once the copy is confirmed (see
    /// [`flush`](Self::flush)): acked, or rejected if the broker refused the copy.
    #[allow(clippy::too_many_arguments)]
    fn republish(
        &mut self,
        channel: &Channel,
        queue: &str,
        body: &[u8],
        properties: &Properties,
        delivery: Delivery,
        outcome: Outcome,
        report: Option<DeliveryReport>,
    ) -> AmqpResult<()> {
        if self.republisher.is_none() {
            self.republisher = Some(Republisher::open(self.sub)?);
        }
        let Some(republisher) = self.republisher.as_mut() else {
            return Ok(());
        };
        let tag = match republisher.send(queue, body, properties) {
            Ok(tag) => tag,
            Err(e) => {
                self.republisher = None;
                return Err(e);
            }
        };
        self.batch.awaiting.push(Awaiting {
            tag,
            delivery,
            outcome,
            report,
        });
        if self.batch.len() >= self.batch.max {
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
    ) -> AmqpResult<()> {
        self.batch.ready(delivery, outcome, report);
        if self.batch.len() >= self.batch.max {
            self.flush(channel)?;
        }
        Ok(())
    }

    /// Settles the batch: waits for the confirms of the republished copies, rejects the
    /// deliveries whose copy the broker refused, then acks everything else with one
    /// `multiple` ack. Counters and reports follow the ack.
    fn flush(&mut self, channel: &Channel) -> AmqpResult<()> {
        let sub = self.sub;
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
                    return Err(e);
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
                    reject(sub, channel, awaiting.delivery, reason, report)?;
                } else {
                    self.batch
                        .ready(awaiting.delivery, awaiting.outcome, awaiting.report);
                }
            }
        }
        self.batch.ack(channel, sub)
    }
}

/// Rejects a delivery without requeue, counts it as dropped, logs and reports it.
fn reject(
    sub: &EventSubscriber,
    channel: &Channel,
    delivery: Delivery,
    reason: &str,
    report: Option<DeliveryReport>,
) -> AmqpResult<()> {
    log::error!(
        "rejecting a message from `{}` ({}) without requeue: {reason}",
        sub.queue,
        original_routing_key(&delivery)
    );
    channel.reject(delivery, false)?;
    Counters::add(&sub.counters.dropped, 1);
    send_report(sub, report);
    Ok(())
}

impl Session<'_> {
    fn report(
        &self,
        delivery: &Delivery,
        event: Option<&Event>,
        attempt: u32,
        result: Option<&InvocationResult>,
        disposition: Disposition,
    ) -> Option<DeliveryReport> {
        self.sub.settings.observer.as_ref()?;
        let handlers = result
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
            routing_key: event
                .map(|e| e.routing_key().to_owned())
                .unwrap_or_else(|| original_routing_key(delivery)),
            event_id: event.map(|e| e.event_id().to_string()),
            attempt,
            handlers,
            disposition,
        })
    }
}

/// A dead-letter decision.
struct DeadLetter<'a> {
    kind: DeadLetterKind,
    reason: String,
    attempt: u32,
    event: Option<&'a Event>,
    result: Option<&'a InvocationResult>,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl DeadLetter<'_> {
    fn new(kind: DeadLetterKind, reason: String, attempt: u32) -> Self {
        DeadLetter {
            kind,
            reason,
            attempt,
            event: None,
            result: None,
            headers: Vec::new(),
        }
    }
}

/// The connection retries and dead letters are published on.
struct Republisher {
    connection: Connection,
    channel: Channel,
    confirms: Confirms,
    returns: Returns,
    next_tag: u64,
    /// Tags published and not confirmed yet.
    outstanding: BTreeSet<u64>,
    /// Tags the broker nacked since the last `confirm_all`.
    nacked: HashSet<u64>,
}

impl Republisher {
    fn open(sub: &EventSubscriber) -> AmqpResult<Republisher> {
        let mut connection =
            Connection::open(&sub.connection_config().clone().with_connection_attempts(1))?;
        let channel = connection.open_channel()?;
        let returns = channel.listen_for_returns()?;
        let confirms = channel.enable_confirms()?;
        Ok(Republisher {
            connection,
            channel,
            confirms,
            returns,
            next_tag: 1,
            outstanding: BTreeSet::new(),
            nacked: HashSet::new(),
        })
    }

    /// Publishes to `queue` through the default exchange; returns the delivery tag whose
    /// confirm [`confirm_all`](Self::confirm_all) waits for.
    fn send(&mut self, queue: &str, body: &[u8], properties: &Properties) -> AmqpResult<u64> {
        self.channel.publish("", queue, body, properties, true)?;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.outstanding.insert(tag);
        Ok(tag)
    }

    /// Waits until every publish is confirmed; returns the tags the broker refused (nacked).
    ///
    /// # Errors
    ///
    /// A lost channel or connection, a blocked connection past its timeout, no confirm
    /// within [`CONFIRM_TIMEOUT`], or a message returned as unroutable (one of the
    /// subscriber's queues is gone: the session fails, and declares its topology again on
    /// reconnect).
    fn confirm_all(&mut self) -> AmqpResult<HashSet<u64>> {
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        while !self.outstanding.is_empty() {
            if let Some(blocked) = self.connection.blocked() {
                let waited = blocked.since.elapsed();
                if waited >= self.connection.config().blocked_connection_timeout() {
                    return Err(pubsub_amqp::Error::Blocked {
                        reason: blocked.reason,
                        waited,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(pubsub_amqp::Error::Timeout {
                    what: "waiting for the broker to confirm retries and dead letters",
                    after: CONFIRM_TIMEOUT,
                });
            }
            let confirm = match self
                .confirms
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(_) => return Err(self.channel.why_closed()),
            };
            let settled: Vec<u64> = if confirm.multiple {
                self.outstanding
                    .range(..=confirm.delivery_tag)
                    .copied()
                    .collect()
            } else {
                vec![confirm.delivery_tag]
            };
            for tag in settled {
                if self.outstanding.remove(&tag) && !confirm.ack {
                    self.nacked.insert(tag);
                }
            }
        }
        // The broker returns an unroutable message before it confirms it.
        if let Some(returned) = self.returns.try_recv() {
            return Err(pubsub_amqp::Error::NotFound {
                kind: "queue",
                name: returned.routing_key,
            });
        }
        Ok(std::mem::take(&mut self.nacked))
    }
}

/// What a settled delivery counts as.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Acked,
    Unhandled,
    Retried,
    DeadPoison,
    DeadExhausted,
}

/// A delivery whose copy was republished, waiting for the broker's confirm of the copy.
struct Awaiting {
    tag: u64,
    delivery: Delivery,
    outcome: Outcome,
    report: Option<DeliveryReport>,
}

/// Deliveries decided but not settled yet.
struct Batch {
    /// Ready to ack: the delivery with the highest tag (acking it with `multiple` acks them
    /// all), and what each counts as.
    last: Option<Delivery>,
    /// Delivery tag, what it counts as, its report.
    ready: Vec<(u64, Outcome, Option<DeliveryReport>)>,
    /// Waiting for the confirm of their republished copy.
    awaiting: Vec<Awaiting>,
    max: usize,
}

impl Batch {
    fn new(max: usize) -> Self {
        Batch {
            last: None,
            ready: Vec::with_capacity(max),
            awaiting: Vec::new(),
            max,
        }
    }

    fn len(&self) -> usize {
        self.ready.len() + self.awaiting.len()
    }

    fn ready(&mut self, delivery: Delivery, outcome: Outcome, report: Option<DeliveryReport>) {
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

    /// Acks the ready deliveries (call only with nothing awaiting a confirm).
    fn ack(&mut self, channel: &Channel, sub: &EventSubscriber) -> AmqpResult<()> {
        let Some(last) = self.last.take() else {
            return Ok(());
        };
        if self.ready.len() == 1 {
            channel.ack(last)?;
        } else {
            channel.ack_multiple(last)?;
        }
        let c = &sub.counters;
        // Deliveries whose copy was confirmed join the batch late: report in delivery order.
        self.ready.sort_unstable_by_key(|(tag, _, _)| *tag);
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
            }
            send_report(sub, report);
        }
        Ok(())
    }
}

fn send_report(sub: &EventSubscriber, report: Option<DeliveryReport>) {
    if let (Some(observer), Some(report)) = (&sub.settings.observer, report) {
        if let Err(crossbeam_channel::TrySendError::Full(_)) = observer.try_send(report) {
            log::warn!(
                "the observer of `{}` is full: a delivery report was dropped",
                sub.queue
            );
        }
    }
}

/// The delivery's properties, persistent, with `extra` headers set and the original exchange
/// and routing key recorded on first republish.
fn republish_properties(
    delivery: &Delivery,
    extra: Vec<(&'static str, HeaderValue)>,
) -> Properties {
    let mut properties = delivery.properties();
    properties.persistent = true;
    let headers = &mut properties.headers;
    if !headers.contains_key(headers::ORIGINAL_EXCHANGE) {
        headers.insert(
            headers::ORIGINAL_EXCHANGE.to_owned(),
            HeaderValue::from(delivery.exchange()),
        );
        headers.insert(
            headers::ORIGINAL_ROUTING_KEY.to_owned(),
            HeaderValue::from(delivery.routing_key()),
        );
    }
    for (name, value) in extra {
        headers.insert(name.to_owned(), value);
    }
    properties
}

/// The routing key the message was first published with: a retried message comes back
/// from its delay queue with the queue's name as routing key.
fn original_routing_key(delivery: &Delivery) -> String {
    delivery
        .header(headers::ORIGINAL_ROUTING_KEY)
        .and_then(|h| h.as_str().map(str::to_owned))
        .unwrap_or_else(|| delivery.routing_key().to_owned())
}

fn header_int(delivery: &Delivery, name: &str) -> Option<i64> {
    delivery.header(name).and_then(|h| h.as_i64())
}

/// `application/json`, with parameters (`; charset=utf-8`) or as a `+json` suffix.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(json::CONTENT_TYPE)
        || essence.to_ascii_lowercase().ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/cloudevents+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in ["text/plain", "application/xml", "", "application/jsonx"] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
