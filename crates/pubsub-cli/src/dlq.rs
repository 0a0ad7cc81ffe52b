//! Dead-letter queues: read the messages without consuming them ([`Dlq::peek`]), replay them
//! to where they were first published ([`Dlq::replay`]), purge them ([`Dlq::purge`]).
//!
//! AMQP has no way to browse a queue. Peeking takes every message with `basic.get`, without
//! acknowledging it, up to the count the broker reported, then closes the channel: the
//! broker puts every message back. Nothing is lost, even if the tool dies half-way (the
//! broker requeues the unacknowledged messages of a closed connection); the messages come back
//! marked redelivered. A classic queue (what `pubsub-subscriber` declares) keeps their order;
//! a quorum queue may not, and counts each look as a delivery toward its `x-delivery-limit`,
//! if it has one.
//!
//! Replaying takes the messages the same way, republishes each selected one on a second
//! channel with publisher confirms, and acknowledges (removes) a dead-lettered message only
//! once the broker confirmed its copy. Whatever was not confirmed stays unacknowledged and
//! goes back to the queue when the channel closes.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use crossbeam_channel::Receiver;
use pubsub_amqp::{
    Channel, Confirms, Connection, Delivery, HeaderValue, Headers, Properties, Returned, Returns,
};
use pubsub_subscriber::{dead_letter_queue_name, headers};
use serde_json::{json, Value};

use crate::format::{body_json, epoch_rfc3339, headers_json};

/// The header a replay sets on the republished message: how many times it was replayed.
pub const REPLAYED: &str = headers::REPLAYED;

/// Headers RabbitMQ writes when it dead-letters a message itself.
const X_DEATH: &str = "x-death";
/// Quorum queues count deliveries in this header.
const X_DELIVERY_COUNT: &str = "x-delivery-count";

/// The headers a replay drops: the subscriber's retry state and the dead-letter records, so
/// that the event starts over with a fresh set of attempts.
const STRIPPED: [&str; 11] = [
    headers::ATTEMPT,
    headers::DONE,
    headers::FAILED_HANDLERS,
    headers::LAST_ERROR,
    headers::FIRST_FAILURE,
    headers::DEAD_LETTER_KIND,
    headers::DEAD_LETTER_REASON,
    headers::DEAD_LETTERED_AT,
    headers::SOURCE_QUEUE,
    X_DEATH,
    X_DELIVERY_COUNT,
];

/// Header prefixes a replay drops too (RabbitMQ's `x-first-death-*` and `x-last-death-*`,
/// and any later `x-pubsub-dead-letter-*` header).
const STRIPPED_PREFIXES: [&str; 3] = ["x-first-death-", "x-last-death-", "x-pubsub-dead-letter-"];

/// The dead-letter queue named on the command line: `orders` means `orders.dlq` (see
/// [`dead_letter_queue_name`]); a name that already ends in `.dlq` is taken as it is.
///
/// ```
/// assert_eq!(pubsub_cli::dlq::dlq_name("orders"), "orders.dlq");
/// assert_eq!(pubsub_cli::dlq::dlq_name("orders.dlq"), "orders.dlq");
/// ```
pub fn dlq_name(queue: &str) -> String {
    if queue.ends_with(".dlq") {
        queue.to_owned()
    } else {
        dead_letter_queue_name(queue)
    }
}

/// Where a replay publishes a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The exchange (empty: the default exchange, which routes to the queue named by the
    /// routing key).
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exchange.is_empty() {
            write!(f, "queue `{}`", self.routing_key)
        } else {
            write!(f, "`{}` / `{}`", self.exchange, self.routing_key)
        }
    }
}

/// A dead-lettered message and what its headers say about it.
///
/// Messages dead-lettered by `pubsub-subscriber` carry its `x-pubsub-*` headers (see
/// [`pubsub_subscriber::headers`]); messages dead-lettered by RabbitMQ itself (a queue's
/// `x-dead-letter-exchange`) carry `x-death`, which is read instead.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The exchange the message reached the dead-letter queue through (usually the default
    /// exchange).
    pub exchange: String,
    /// The routing key it reached the dead-letter queue with.
    pub routing_key: String,
    /// Whether the broker had delivered it before (peeking marks every message so).
    pub redelivered: bool,
    /// Its properties and headers.
    pub properties: Properties,
    /// Its body, unchanged.
    pub body: Vec<u8>,
}

impl DeadLetter {
    /// Takes the body and properties of a delivery (which is still to be settled).
    pub fn from_delivery(delivery: &mut Delivery) -> DeadLetter {
        DeadLetter {
            exchange: delivery.exchange().to_owned(),
            routing_key: delivery.routing_key().to_owned(),
            redelivered: delivery.redelivered(),
            properties: delivery.properties(),
            body: delivery.take_body(),
        }
    }

    fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.properties.headers.get(name)
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }

    /// RabbitMQ's `x-death` records, most recent first.
    fn deaths(&self) -> Vec<&Headers> {
        match self.header(X_DEATH) {
            Some(HeaderValue::Array(items)) => items
                .iter()
                .filter_map(|item| match item {
                    HeaderValue::Table(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The event id: the `message_id` property, else the body's `event_id`.
    pub fn event_id(&self) -> Option<String> {
        if let Some(id) = &self.properties.message_id {
            return Some(id.clone());
        }
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body.get("event_id")?.as_str().map(str::to_owned)
    }

    /// Where the message was first published: the subscriber's `x-pubsub-original-exchange`
    /// and `x-pubsub-original-routing-key` headers; else the exchange and first routing key
    /// of the oldest `x-death` record; else the exchange and routing key it was delivered
    /// with, unless that is the dead-letter queue itself.
    ///
    /// # Errors
    ///
    /// A reason, when nothing says where the message came from.
    pub fn destination(&self, dlq: &str) -> Result<Destination, String> {
        if let (Some(exchange), Some(routing_key)) = (
            self.header_str(headers::ORIGINAL_EXCHANGE),
            self.header_str(headers::ORIGINAL_ROUTING_KEY),
        ) {
            return Ok(Destination {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            });
        }
        if let Some(first) = self.deaths().last() {
            let exchange = first.get("exchange").and_then(HeaderValue::as_str);
            let routing_key = first
                .get("routing-keys")
                .and_then(|keys| keys.string_items().first().map(|k| (*k).to_owned()));
            if let (Some(exchange), Some(routing_key)) = (exchange, routing_key) {
                return Ok(Destination {
                    exchange: exchange.to_owned(),
                    routing_key,
                });
            }
        }
        if self.exchange.is_empty() && self.routing_key == dlq {
            return Err(format!(
                "nothing records where it was first published (no {} nor x-death header)",
                headers::ORIGINAL_EXCHANGE
            ));
        }
        Ok(Destination {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
        })
    }

    /// The routing key to show: the original one if known, else the `type` property (events
    /// carry their routing key there), else the delivery's.
    pub fn original_routing_key(&self, dlq: &str) -> String {
        match self.destination(dlq) {
            Ok(d) if !d.exchange.is_empty() => d.routing_key,
            _ => self
                .properties
                .kind
                .clone()
                .unwrap_or_else(|| self.routing_key.clone()),
        }
    }

    /// Why it is dead-lettered: the subscriber's kind (`poison`, `exhausted`,
    /// `redelivery-limit`), or RabbitMQ's reason (`rejected`, `expired`, `maxlen`,
    /// `delivery_limit`) suffixed `(broker)`, or `unknown`.
    pub fn kind(&self) -> String {
        if let Some(kind) = self.header_str(headers::DEAD_LETTER_KIND) {
            return kind.to_owned();
        }
        match self
            .deaths()
            .first()
            .and_then(|d| d.get("reason"))
            .and_then(HeaderValue::as_str)
        {
            Some(reason) => format!("{reason} (broker)"),
            None => "unknown".to_owned(),
        }
    }

    /// The reason in words.
    pub fn reason(&self) -> Option<String> {
        if let Some(reason) = self.header_str(headers::DEAD_LETTER_REASON) {
            return Some(reason.to_owned());
        }
        let death = self.deaths().first().copied()?;
        let queue = death.get("queue").and_then(HeaderValue::as_str)?;
        let reason = death
            .get("reason")
            .and_then(HeaderValue::as_str)
            .unwrap_or("dead-lettered");
        Some(format!("{reason} by RabbitMQ in queue `{queue}`"))
    }

    /// The handlers that failed on the last attempt.
    pub fn failed_handlers(&self) -> Vec<String> {
        self.header(headers::FAILED_HANDLERS)
            .map(|h| h.string_items().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// How many attempts were made: the subscriber's count, else the quorum queue's delivery
    /// count.
    pub fn attempts(&self) -> Option<i64> {
        self.header(headers::ATTEMPT)
            .or_else(|| self.header(X_DELIVERY_COUNT))
            .and_then(HeaderValue::as_i64)
    }

    /// When the event first failed (RFC 3339): the subscriber's header, else the time of the
    /// oldest `x-death` record.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(t) = self.header_str(headers::FIRST_FAILURE) {
            return Some(t.to_owned());
        }
        match self.deaths().last()?.get("time")? {
            HeaderValue::Timestamp(t) => epoch_rfc3339(*t),
            _ => None,
        }
    }

    /// When it was dead-lettered (RFC 3339), if recorded.
    pub fn dead_lettered_at(&self) -> Option<String> {
        self.header_str(headers::DEAD_LETTERED_AT)
            .map(str::to_owned)
    }

    /// The last handler error, if recorded.
    pub fn last_error(&self) -> Option<String> {
        self.header_str(headers::LAST_ERROR).map(str::to_owned)
    }

    /// The queue the subscriber consumed it from (or where RabbitMQ dead-lettered it).
    pub fn source_queue(&self) -> Option<String> {
        if let Some(q) = self.header_str(headers::SOURCE_QUEUE) {
            return Some(q.to_owned());
        }
        self.deaths()
            .first()
            .and_then(|d| d.get("queue"))
            .and_then(HeaderValue::as_str)
            .map(str::to_owned)
    }

    /// One JSON object with the fields of the `list` table; with `full`, also the
    /// properties, every header and the body.
    pub fn to_json(&self, dlq: &str, full: bool) -> Value {
        let destination = self.destination(dlq);
        let mut value = json!({
            "queue": dlq,
            "event_id": self.event_id(),
            "routing_key": self.original_routing_key(dlq),
            "exchange": destination.as_ref().ok().map(|d| d.exchange.clone()),
            "kind": self.kind(),
            "reason": self.reason(),
            "failed_handlers": self.failed_handlers(),
            "attempts": self.attempts(),
            "first_failure": self.first_failure(),
            "dead_lettered_at": self.dead_lettered_at(),
            "source_queue": self.source_queue(),
        });
        if full {
            let p = &self.properties;
            value["last_error"] = json!(self.last_error());
            value["replay_to"] = match &destination {
                Ok(d) => json!({ "exchange": d.exchange, "routing_key": d.routing_key }),
                Err(reason) => json!({ "error": reason }),
            };
            value["properties"] = json!({
                "message_id": p.message_id,
                "correlation_id": p.correlation_id,
                "app_id": p.app_id,
                "type": p.kind,
                "content_type": p.content_type,
                "timestamp": p.timestamp.and_then(epoch_rfc3339),
                "persistent": p.persistent,
            });
            value["headers"] = headers_json(&p.headers);
            value["body"] = body_json(&self.body);
        }
        value
    }
}

/// The properties a replayed message is published with: the original ones (message id,
/// correlation id, app id, content type, timestamp, type, user headers), persistent, without
/// the retry and dead-letter headers, and with [`REPLAYED`] counting the replays.
pub fn replay_properties(original: &Properties) -> Properties {
    let mut properties = original.clone();
    properties.persistent = true;
    let replays = properties
        .headers
        .get(REPLAYED)
        .and_then(HeaderValue::as_i64)
        .unwrap_or(0);
    properties.headers.retain(|name, _| {
        !STRIPPED.contains(&name.as_str()) && !STRIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
    });
    properties
        .headers
        .insert(REPLAYED.to_owned(), HeaderValue::Int(replays + 1));
    properties
}

/// Which messages a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every message.
    All,
    /// The messages with these event ids.
    Ids(Vec<String>),
}

/// How to replay; see [`Dlq::replay`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Which messages.
    pub selection: Selection,
    /// At most this many.
    pub limit: Option<usize>,
    /// Only say what would happen.
    pub dry_run: bool,
    /// Publish to this queue through the default exchange instead of the original
    /// destination.
    pub to_queue: Option<String>,
    /// How many messages are published before their confirms are awaited.
    pub batch_size: usize,
    /// How long to wait for a batch's confirms.
    pub confirm_timeout: Duration,
}

impl Default for ReplayOptions {
    /// Every message, batches of 100, 30 s for the confirms.
    fn default() -> Self {
        ReplayOptions {
            selection: Selection::All,
            limit: None,
            dry_run: false,
            to_queue: None,
            batch_size: 100,
            confirm_timeout: Duration::from_secs(30),
        }
    }
}

/// One message a replay moved (or, in a dry run, would move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Its event id, if known.
    pub event_id: Option<String>,
    /// Where it went.
    pub destination: Destination,
}

/// One selected message a replay left in the dead-letter queue, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stayed {
    /// Its event id, if known.
    pub event_id: Option<String>,
    /// Its routing key.
    pub routing_key: String,
    /// Why it was not moved.
    pub reason: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The dead-letter queue.
    pub dlq: String,
    /// How many messages were in it when the replay started.
    pub total: u32,
    /// How many were taken and looked at.
    pub examined: u32,
    /// The messages republished, confirmed and removed (in a dry run: that would be).
    pub moved: Vec<Moved>,
    /// The selected messages that stayed, with the reason.
    pub stayed: Vec<Stayed>,
    /// How many were not selected (left as they were).
    pub unselected: u32,
    /// Event ids asked for with [`Selection::Ids`] that no message had.
    pub missing_ids: Vec<String>,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Whether it was stopped (Ctrl-C) before the end.
    pub interrupted: bool,
    /// The error that ended it early (a lost connection), if any.
    pub aborted: Option<String>,
}

impl ReplayReport {
    /// Whether everything selected was moved and nothing went wrong.
    pub fn is_complete(&self) -> bool {
        self.stayed.is_empty()
            && self.missing_ids.is_empty()
            && !self.interrupted
            && self.aborted.is_none()
    }
}

/// Progress of a long operation, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Messages looked at so far.
    pub examined: u32,
    /// Messages in the queue at the start.
    pub total: u32,
    /// Messages moved so far (replay only).
    pub moved: usize,
    /// Selected messages left in the queue so far (replay only).
    pub stayed: usize,
}

/// A dead-letter queue on a connection.
#[derive(Debug)]
pub struct Dlq<'c> {
    connection: &'c mut Connection,
    name: String,
    message_count: u32,
}

impl<'c> Dlq<'c> {
    /// Finds the dead-letter queue of `queue` (see [`dlq_name`]).
    ///
    /// # Errors
    ///
    /// When it does not exist (`queue `orders.dlq` does not exist`) or the connection fails.
    pub fn open(connection: &'c mut Connection, queue: &str) -> anyhow::Result<Dlq<'c>> {
        let name = dlq_name(queue);
        let message_count = queue_info(connection, &name)?;
        Ok(Dlq {
            connection,
            name,
            message_count,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many messages were ready in it when it was opened.
    pub fn message_count(&self) -> u32 {
        self.message_count
    }

    /// Calls `visit` with every message (up to the count the broker reports now), then puts
    /// them all back, and returns how many were seen. See the module docs.
    ///
    /// # Errors
    ///
    /// When the queue is gone or the connection fails (the messages go back either way).
    pub fn peek(&mut self, mut visit: impl FnMut(DeadLetter, Progress)) -> anyhow::Result<u32> {
        let channel = self.connection.open_channel()?;
        let total = channel_queue_info(&channel, &self.name)?;
        let mut held = Vec::with_capacity(usize::try_from(total).unwrap_or(0).min(100_000));
        let mut seen = 0;
        while seen < total {
            let Some((mut delivery, _)) = channel.get(&self.name)? else {
                break;
            };
            seen += 1;
            let letter = DeadLetter::from_delivery(&mut delivery);
            held.push(delivery);
            visit(
                letter,
                Progress {
                    examined: seen,
                    total,
                    moved: 0,
                    stayed: 0,
                },
            );
        }
        drop(held);
        // Closing the channel hands every message taken back to the queue.
        channel
            .close()
            .context("putting the messages back (the broker requeues them anyway)")?;
        Ok(seen)
    }

    /// Republishes the selected messages to their [`DeadLetter::destination`] (or to
    /// `options.to_queue`) with publisher confirms and removes each from the dead-letter
    /// queue once the broker confirmed it; see the module docs.
    ///
    /// A message stays when it has no known destination, its exchange does not exist, no
    /// queue is bound for it (it is published `mandatory`), the broker refuses it (negative
    /// confirm) or does not confirm it in time. A lost connection ends the replay early
    /// ([`ReplayReport::aborted`]); a message on `stop` ends it after the current batch.
    /// `progress` is called after every message looked at.
    ///
    /// # Errors
    ///
    /// When the replay cannot start (the queue is gone, the connection fails). Failures after
    /// the start are in the report.
    pub fn replay(
        &mut self,
        options: &ReplayOptions,
        stop: &Receiver<()>,
        mut progress: impl FnMut(Progress),
    ) -> anyhow::Result<ReplayReport> {
        let get = self.connection.open_channel()?;
        let total = channel_queue_info(&get, &self.name)?;
        let mut run = Replay {
            connection: &mut *self.connection,
            get: &get,
            dlq: &self.name,
            options,
            publisher: None,
            exchanges: HashMap::new(),
            held: Vec::new(),
            report: ReplayReport {
                dlq: self.name.clone(),
                total,
                dry_run: options.dry_run,
                ..ReplayReport::default()
            },
        };
        let mut found_ids: Vec<bool> = match &options.selection {
            Selection::All => Vec::new(),
            Selection::Ids(ids) => vec![false; ids.len()],
        };
        let mut batch: Vec<Candidate> = Vec::new();
        let mut selected = 0usize;

        while run.report.examined < total && run.report.aborted.is_none() {
            if stop.try_recv().is_ok() {
                run.report.interrupted = true;
                break;
            }
            let Some((mut delivery, _)) = (match get.get(&self.name) {
                Ok(got) => got,
                Err(e) => {
                    run.report.aborted = Some(e.to_string());
                    break;
                }
            }) else {
                break;
            };
            run.report.examined += 1;
            let letter = DeadLetter::from_delivery(&mut delivery);
            let event_id = letter.event_id();
            let wanted = match &options.selection {
                Selection::All => true,
                Selection::Ids(ids) => {
                    let mut hit = false;
                    for (i, id) in ids.iter().enumerate() {
                        if event_id.as_deref() == Some(id.as_str()) {
                            found_ids[i] = true;
                            hit = true;
                        }
                    }
                    hit
                }
            };
            if !wanted || options.limit.is_some_and(|limit| selected >= limit) {
                run.report.unselected += 1;
                run.held.push(delivery);
            } else {
                selected += 1;
                if let Some(c) = run.consider(delivery, letter, event_id) {
                    batch.push(c);
                }
                if batch.len() >= options.batch_size.max(1) {
                    run.flush(std::mem::take(&mut batch));
                }
            }
            progress(run.progress());
        }
        if !batch.is_empty() {
            run.flush(batch);
        }
        progress(run.progress());

        if let Selection::Ids(ids) = &options.selection {
            run.report.missing_ids = ids
                .iter()
                .zip(&found_ids)
                .filter(|(_, found)| !**found)
                .map(|(id, _)| id.clone())
                .collect();
        }
        let Replay {
            report,
            held,
            publisher,
            ..
        } = run;
        drop(held);
        if let Some(publisher) = publisher {
            let _ = publisher.channel.close();
        }
        // Closing the channel hands back every message that was not moved.
        if let Err(e) = get.close() {
            log::debug!("closing the dead-letter channel: {e}");
        }
        Ok(report)
    }

    /// Deletes every ready message and returns how many there were.
    ///
    /// # Errors
    ///
    /// When the queue is gone or the connection fails.
    pub fn purge(&mut self) -> anyhow::Result<u32> {
        let channel = self.connection.open_channel()?;
        let purged = channel
            .purge_queue(&self.name)
            .map_err(|e| not_found(e, &self.name))?;
        let _ = channel.close();
        Ok(purged)
    }
}

/// The ready-message count of a queue, on a channel of its own (a missing queue closes it).
fn queue_info(connection: &mut Connection, name: &str) -> anyhow::Result<u32> {
    let channel = connection.open_channel()?;
    let count = channel_queue_info(&channel, name)?;
    let _ = channel.close();
    Ok(count)
}

fn channel_queue_info(channel: &Channel, name: &str) -> anyhow::Result<u32> {
    channel
        .queue_info(name)
        .map(|info| info.message_count)
        .map_err(|e| not_found(e, name))
}

fn not_found(e: pubsub_amqp::Error, name: &str) -> anyhow::Error {
    match e {
        pubsub_amqp::Error::NotFound { .. } => anyhow!("queue `{name}` does not exist"),
        other => other.into(),
    }
}

/// A selected message on its way.
struct Candidate {
    delivery: Delivery,
    letter: DeadLetter,
    event_id: Option<String>,
    destination: Destination,
}

/// The publishing channel of a replay.
struct Publisher {
    channel: Channel,
    confirms: Confirms,
    returns: Returns,
    next_tag: u64,
}

/// The state of one replay.
struct Replay<'a> {
    connection: &'a mut Connection,
    get: &'a Channel,
    dlq: &'a str,
    options: &'a ReplayOptions,
    publisher: Option<Publisher>,
    /// Exchanges checked so far: `None` if it exists, else why it cannot be used.
    exchanges: HashMap<String, Option<String>>,
    /// Deliveries left unacknowledged: they go back to the queue when `get` closes.
    held: Vec<Delivery>,
    report: ReplayReport,
}

impl Replay<'_> {
    fn progress(&self) -> Progress {
        Progress {
            examined: self.report.examined,
            total: self.report.total,
            moved: self.report.moved.len(),
            stayed: self.report.stayed.len(),
        }
    }

    /// Works out the destination and checks its exchange; returns the candidate if it is to
    /// be published now.
    fn consider(
        &mut self,
        delivery: Delivery,
        letter: DeadLetter,
        event_id: Option<String>,
    ) -> Option<Candidate> {
        let destination = match &self.options.to_queue {
            Some(queue) => Ok(Destination {
                exchange: String::new(),
                routing_key: queue.clone(),
            }),
            None => letter.destination(self.dlq),
        };
        let destination = match destination {
            Ok(d) => match self.check_exchange(&d.exchange) {
                None => d,
                Some(reason) => {
                    let routing_key = letter.original_routing_key(self.dlq);
                    self.stay(delivery, event_id, routing_key, reason);
                    return None;
                }
            },
            Err(reason) => {
                let routing_key = letter.original_routing_key(self.dlq);
                self.stay(delivery, event_id, routing_key, reason);
                return None;
            }
        };
        if self.options.dry_run {
            self.report.moved.push(Moved {
                event_id,
                destination,
            });
            self.held.push(delivery);
            return None;
        }
        Some(Candidate {
            delivery,
            letter,
            event_id,
            destination,
        })
    }

    /// `None` if the exchange exists (checked once per replay, on a throwaway channel), else
    /// why it cannot be used.
    fn check_exchange(&mut self, exchange: &str) -> Option<String> {
        if exchange.is_empty() {
            return None; // the default exchange always exists
        }
        if let Some(known) = self.exchanges.get(exchange) {
            return known.clone();
        }
        let verdict = match self.connection.open_channel() {
            Ok(channel) => match channel.exchange_exists(exchange) {
                Ok(()) => {
                    let _ = channel.close();
                    None
                }
                Err(e @ pubsub_amqp::Error::NotFound { .. }) => Some(e.to_string()),
                Err(e) => Some(format!("cannot check exchange `{exchange}`: {e}")),
            },
            Err(e) => Some(format!("cannot check exchange `{exchange}`: {e}")),
        };
        self.exchanges.insert(exchange.to_owned(), verdict.clone());
        verdict
    }

    /// Leaves a selected message in the dead-letter queue (unacknowledged, so that closing
    /// the channel hands it back), with the reason.
    fn stay(
        &mut self,
        delivery: Delivery,
        event_id: Option<String>,
        routing_key: String,
        reason: String,
    ) {
        self.report.stayed.push(Stayed {
            event_id,
            routing_key,
            reason,
        });
        self.held.push(delivery);
    }

    fn stay_candidate(&mut self, c: Candidate, reason: String) {
        let routing_key = c.letter.original_routing_key(self.dlq);
        self.stay(c.delivery, c.event_id, routing_key, reason);
    }

    /// Publishes a batch, waits for its confirms, and acknowledges in the dead-letter queue
    /// each message whose copy the broker confirmed.
    fn flush(&mut self, batch: Vec<Candidate>) {
        if batch.is_empty() {
            return;
        }
        if self.publisher.is_none() {
            match open_publisher(self.connection) {
                Ok(p) => self.publisher = Some(p),
                Err(e) => {
                    let reason = format!("cannot open a publishing channel: {e}");
                    if e.is_connection_lost() {
                        self.report.aborted = Some(reason.clone());
                    }
                    for c in batch {
                        self.stay_candidate(c, reason.clone());
                    }
                    return;
                }
            }
        }
        let Some(publisher) = self.publisher.as_mut() else {
            return;
        };

        // Publish the whole batch, then collect the confirms.
        let mut inflight: Vec<(u64, Candidate, bool)> = Vec::with_capacity(batch.len());
        let mut unpublished: Vec<(Candidate, String)> = Vec::new();
        let mut channel_broken = false;
        for c in batch {
            if channel_broken {
                unpublished.push((c, "not published: the publishing channel closed".to_owned()));
                continue;
            }
            let destination = &c.destination;
            let properties = replay_properties(&c.letter.properties);
            match publisher.channel.publish(
                &destination.exchange,
                &destination.routing_key,
                &c.letter.body,
                &properties,
                true,
            ) {
                Ok(()) => {
                    inflight.push((publisher.next_tag, c, false));
                    publisher.next_tag += 1;
                }
                Err(e @ pubsub_amqp::Error::InvalidMessage { .. }) => {
                    unpublished.push((c, e.to_string()));
                }
                Err(e) => {
                    channel_broken = true;
                    unpublished.push((c, format!("not published: {e}")));
                }
            }
        }

        let deadline = Instant::now() + self.options.confirm_timeout;
        let mut settled: Vec<(Candidate, Result<(), String>)> = Vec::new();
        let mut failure: Option<pubsub_amqp::Error> = None;
        while !inflight.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let reason = format!(
                    "the broker did not confirm it within {:.0}s",
                    self.options.confirm_timeout.as_secs_f64()
                );
                settled.extend(inflight.drain(..).map(|(_, c, _)| (c, Err(reason.clone()))));
                // The channel's state is unknown: use a new one for the next batch.
                channel_broken = true;
                break;
            }
            let confirm = match publisher
                .confirms
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(Some(confirm)) => confirm,
                Ok(None) => continue,
                Err(_) => {
                    let why = publisher.channel.why_closed();
                    let reason = format!("not confirmed: {why}");
                    settled.extend(inflight.drain(..).map(|(_, c, _)| (c, Err(reason.clone()))));
                    failure = Some(why);
                    channel_broken = true;
                    break;
                }
            };
            // The broker returns an unroutable message before it confirms it, in publishing
            // order: mark the earliest in-flight message that looks like each return.
            while let Some(returned) = publisher.returns.try_recv() {
                mark_returned(&mut inflight, &returned);
            }
            let (done, rest): (Vec<_>, Vec<_>) = inflight.into_iter().partition(|(tag, _, _)| {
                if confirm.multiple {
                    *tag <= confirm.delivery_tag
                } else {
                    *tag == confirm.delivery_tag
                }
            });
            inflight = rest;
            for (_, c, returned) in done {
                let outcome = if !confirm.ack {
                    Err("the broker refused it (negative confirm)".to_owned())
                } else if returned {
                    let d = &c.destination;
                    Err(if d.exchange.is_empty() {
                        format!("queue `{}` does not exist", d.routing_key)
                    } else {
                        format!(
                            "no queue is bound to exchange `{}` for routing key `{}`",
                            d.exchange, d.routing_key
                        )
                    })
                } else {
                    Ok(())
                };
                settled.push((c, outcome));
            }
        }

        if let Some(why) = &failure {
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
        if channel_broken {
            if let Some(p) = self.publisher.take() {
                let _ = p.channel.close();
            }
        }
        for (c, outcome) in settled {
            match outcome {
                Ok(()) if self.report.aborted.is_none() => {
                    let moved = Moved {
                        event_id: c.event_id.clone(),
                        destination: c.destination.clone(),
                    };
                    match self.get.ack(c.delivery) {
                        Ok(()) => self.report.moved.push(moved),
                        Err(e) => {
                            // Published and confirmed, but still in the dead-letter queue:
                            // a duplicate, not a loss.
                            self.report.stayed.push(Stayed {
                                event_id: c.event_id,
                                routing_key: c.letter.original_routing_key(self.dlq),
                                reason: format!("republished, but removing it failed: {e}"),
                            });
                            self.report.aborted.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                Ok(()) => self.stay_candidate(
                    c,
                    "republished, but the connection was lost before it could be removed"
                        .to_owned(),
                ),
                Err(reason) => self.stay_candidate(c, reason),
            }
        }
        for (c, reason) in unpublished {
            self.stay_candidate(c, reason);
        }
    }
}

fn mark_returned(inflight: &mut [(u64, Candidate, bool)], returned: &Returned) {
    let hit = inflight.iter_mut().find(|(_, c, already)| {
        !*already
            && c.destination.exchange == returned.exchange
            && c.destination.routing_key == returned.routing_key
            && c.letter.properties.message_id == returned.message_id
    });
    if let Some((_, _, flag)) = hit {
        *flag = true;
    }
}

fn open_publisher(connection: &mut Connection) -> pubsub_amqp::Result<Publisher> {
    let channel = connection.open_channel()?;
    let returns = channel.listen_for_returns()?;
    let confirms = channel.enable_confirms()?;
    Ok(Publisher {
        channel,
        confirms,
        returns,
        next_tag: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(headers: &[(&str, HeaderValue)]) -> DeadLetter {
        DeadLetter {
            exchange: String::new(),
            routing_key: "orders.dlq".to_owned(),
            redelivered: false,
            properties: Properties {
                message_id: Some("id-1".to_owned()),
                kind: Some("order.created".to_owned()),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                ..Properties::default()
            },
            body: br#"{"event_id":"body-id"}"#.to_vec(),
        }
    }

    fn table(entries: &[(&str, HeaderValue)]) -> HeaderValue {
        HeaderValue::Table(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn x_death(entries: Vec<HeaderValue>) -> (&'static str, HeaderValue) {
        ("x-death", HeaderValue::Array(entries))
    }

    fn death(queue: &str, reason: &str, exchange: &str, key: &str, time: u64) -> HeaderValue {
        table(&[
            ("queue", HeaderValue::from(queue)),
            ("reason", HeaderValue::from(reason)),
            ("exchange", HeaderValue::from(exchange)),
            ("routing-keys", HeaderValue::from(vec![key.to_owned()])),
            ("time", HeaderValue::Timestamp(time)),
            ("count", HeaderValue::Int(1)),
        ])
    }

    #[test]
    fn dlq_names() {
        let check = |given: &str, expected: &str| assert_eq!(dlq_name(given), expected);
        check("orders", "orders.dlq");
        check("orders.dlq", "orders.dlq");
        check("billing.v2", "billing.v2.dlq");
    }

    #[test]
    fn destinations() {
        let check = |l: DeadLetter, expected: Result<(&str, &str), ()>| {
            let got = l.destination("orders.dlq");
            match expected {
                Ok((e, k)) => assert_eq!(
                    got,
                    Ok(Destination {
                        exchange: e.into(),
                        routing_key: k.into()
                    })
                ),
                Err(()) => assert!(got.is_err(), "{got:?}"),
            }
        };
        // The subscriber's headers win.
        check(
            letter(&[
                (headers::ORIGINAL_EXCHANGE, "events".into()),
                (headers::ORIGINAL_ROUTING_KEY, "order.created".into()),
                x_death(vec![death(
                    "orders.retry.1s",
                    "expired",
                    "",
                    "orders.retry.1s",
                    1,
                )]),
            ]),
            Ok(("events", "order.created")),
        );
        // RabbitMQ's oldest x-death record: the original publish.
        check(
            letter(&[x_death(vec![
                death("orders.retry", "expired", "dlx", "orders", 2),
                death("orders", "rejected", "events", "order.paid", 1),
            ])]),
            Ok(("events", "order.paid")),
        );
        // Published straight into the dead-letter queue: no way back.
        check(letter(&[]), Err(()));
        // Published into it through an exchange: back there.
        let mut through = letter(&[]);
        through.exchange = "dlx".into();
        through.routing_key = "order.created".into();
        check(through, Ok(("dlx", "order.created")));
    }

    #[test]
    fn subscriber_headers_are_read() {
        let l = letter(&[
            (headers::DEAD_LETTER_KIND, "exhausted".into()),
            (
                headers::DEAD_LETTER_REASON,
                "failed 3 attempt(s): mail: down".into(),
            ),
            (headers::FAILED_HANDLERS, vec!["mail".to_owned()].into()),
            (headers::ATTEMPT, HeaderValue::Int(3)),
            (headers::FIRST_FAILURE, "2024-05-01T12:30:00Z".into()),
            (headers::SOURCE_QUEUE, "orders".into()),
        ]);
        assert_eq!(l.kind(), "exhausted");
        assert_eq!(
            l.reason().as_deref(),
            Some("failed 3 attempt(s): mail: down")
        );
        assert_eq!(l.failed_handlers(), ["mail"]);
        assert_eq!(l.attempts(), Some(3));
        assert_eq!(l.first_failure().as_deref(), Some("2024-05-01T12:30:00Z"));
        assert_eq!(l.source_queue().as_deref(), Some("orders"));
        assert_eq!(l.event_id().as_deref(), Some("id-1"));
    }

    #[test]
    fn broker_dead_letters_are_read() {
        let mut l = letter(&[x_death(vec![death(
            "orders",
            "rejected",
            "events",
            "order.paid",
            1_714_566_600,
        )])]);
        l.properties.message_id = None;
        assert_eq!(l.kind(), "rejected (broker)");
        assert_eq!(
            l.reason().as_deref(),
            Some("rejected by RabbitMQ in queue `orders`")
        );
        assert_eq!(l.first_failure().as_deref(), Some("2024-05-01T12:30:00Z"));
        assert_eq!(l.source_queue().as_deref(), Some("orders"));
        assert_eq!(l.original_routing_key("orders.dlq"), "order.paid");
        // Without a message id, the body's event id.
        assert_eq!(l.event_id().as_deref(), Some("body-id"));
        assert!(l.failed_handlers().is_empty());
        assert_eq!(l.attempts(), None);
    }

    #[test]
    fn replay_strips_the_retry_state_and_counts_replays() {
        let original = letter(&[
            (headers::ATTEMPT, HeaderValue::Int(3)),
            (headers::DONE, vec!["a@#".to_owned()].into()),
            (headers::FAILED_HANDLERS, vec!["b".to_owned()].into()),
            (headers::LAST_ERROR, "b: boom".into()),
            (headers::FIRST_FAILURE, "t".into()),
            (headers::DEAD_LETTER_KIND, "exhausted".into()),
            (headers::DEAD_LETTER_REASON, "r".into()),
            (headers::DEAD_LETTERED_AT, "t".into()),
            (headers::SOURCE_QUEUE, "orders".into()),
            (headers::ORIGINAL_EXCHANGE, "events".into()),
            (headers::ORIGINAL_ROUTING_KEY, "order.created".into()),
            x_death(vec![]),
            ("x-first-death-queue", "orders".into()),
            ("x-last-death-reason", "rejected".into()),
            ("x-delivery-count", HeaderValue::Int(2)),
            ("tenant", "acme".into()),
        ])
        .properties;
        let replayed = replay_properties(&original);
        let names: Vec<&str> = replayed.headers.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "tenant",
                headers::ORIGINAL_EXCHANGE,
                headers::ORIGINAL_ROUTING_KEY,
                REPLAYED,
            ]
        );
        assert_eq!(replayed.headers[REPLAYED], HeaderValue::Int(1));
        assert!(replayed.persistent);
        assert_eq!(replayed.message_id, original.message_id);
        assert_eq!(replayed.kind, original.kind);
        // A second replay counts on.
        assert_eq!(
            replay_properties(&replayed).headers[REPLAYED],
            HeaderValue::Int(2)
        );
    }
}
