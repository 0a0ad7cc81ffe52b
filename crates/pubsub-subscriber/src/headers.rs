//! The header contract: the retry state and the dead-letter record the subscriber writes on
//! the messages it republishes, and how tools read them back.
//!
//! The subscriber is the one writer; operators' tools (`pubsub dlq list|show|replay`) read
//! the same headers through the same types, so the names, the value types and the fallbacks
//! live here once:
//!
//! - [`RetryState`]: `x-pubsub-attempt`, `x-pubsub-done`, `x-pubsub-failed-handlers`,
//!   `x-pubsub-last-error`, `x-pubsub-first-failure`, carried by a retried message.
//! - [`Origin`]: `x-pubsub-original-exchange` and `x-pubsub-original-routing-key`, where the
//!   event was first published.
//! - [`DeadLetterRecord`]: `x-pubsub-dead-letter-kind` (a [`DeadLetterKind`]),
//!   `x-pubsub-dead-letter-reason`, `x-pubsub-dead-lettered-at`, `x-pubsub-source-queue`.
//! - [`DeadLetterHeaders`]: everything a dead-lettered message says about itself, whoever
//!   dead-lettered it: the subscriber's headers, else RabbitMQ's `x-death` records ([`Death`]).
//! - [`strip_for_replay`]: what a replay from a dead-letter queue removes ([`REPLAY_STRIPPED`],
//!   [`REPLAY_STRIPPED_PREFIXES`]) and the [`REPLAYED`] count it keeps.
//!
//! Reading never fails: a header that is missing or of the wrong type reads as absent. Only
//! [`DeadLetterKind`]'s parser reports an error, for a kind this version does not know.

use std::fmt;
use std::str::FromStr;

use pubsub_amqp::{HeaderValue, Headers};
use pubsub_core::text;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::Error;

/// The attempt a retried delivery is (2 for the first retry). Absent on a first delivery.
pub const ATTEMPT: &str = "x-pubsub-attempt";
/// The subscriptions (`handler@pattern`) that already succeeded for this event; a retry runs
/// only the others.
pub const DONE: &str = "x-pubsub-done";
/// The names of the handlers that failed on the last attempt.
pub const FAILED_HANDLERS: &str = "x-pubsub-failed-handlers";
/// The last handler error, `handler: message`.
pub const LAST_ERROR: &str = "x-pubsub-last-error";
/// When the event first failed (RFC 3339, UTC).
pub const FIRST_FAILURE: &str = "x-pubsub-first-failure";
/// The exchange the event was first published to.
pub const ORIGINAL_EXCHANGE: &str = "x-pubsub-original-exchange";
/// The routing key the event was first published with.
pub const ORIGINAL_ROUTING_KEY: &str = "x-pubsub-original-routing-key";
/// Why the message is in the dead-letter queue: `poison`, `exhausted` or `redelivery-limit`
/// (see [`DeadLetterKind`]).
pub const DEAD_LETTER_KIND: &str = "x-pubsub-dead-letter-kind";
/// The reason in words: the decode error, or the last handler error.
pub const DEAD_LETTER_REASON: &str = "x-pubsub-dead-letter-reason";
/// When the message was dead-lettered (RFC 3339, UTC).
pub const DEAD_LETTERED_AT: &str = "x-pubsub-dead-lettered-at";
/// The queue the message was consumed from.
pub const SOURCE_QUEUE: &str = "x-pubsub-source-queue";
/// How many times an operator replayed the message from a dead-letter queue (`pubsub dlq
/// replay` sets it; the subscriber leaves it alone).
pub const REPLAYED: &str = "x-pubsub-replayed";
/// Quorum queues count deliveries in this header (set by RabbitMQ).
pub const DELIVERY_COUNT: &str = "x-delivery-count";
/// RabbitMQ's records of the times it dead-lettered the message itself (an expired retry,
/// a rejected or overflowing message), most recent first.
pub const X_DEATH: &str = "x-death";

/// The headers a replay removes: the subscriber's retry state and every dead-letter record,
/// so that the replayed event starts over with a fresh set of attempts. The original
/// exchange and routing key stay.
pub const REPLAY_STRIPPED: [&str; 11] = [
    ATTEMPT,
    DONE,
    FAILED_HANDLERS,
    LAST_ERROR,
    FIRST_FAILURE,
    DEAD_LETTER_KIND,
    DEAD_LETTER_REASON,
    DEAD_LETTERED_AT,
    SOURCE_QUEUE,
    X_DEATH,
    DELIVERY_COUNT,
];

/// Header prefixes a replay removes too: RabbitMQ's `x-first-death-*` and `x-last-death-*`,
/// and any later `x-pubsub-dead-letter-*` header.
pub const REPLAY_STRIPPED_PREFIXES: [&str; 3] =
    ["x-first-death-", "x-last-death-", "x-pubsub-dead-letter-"];

/// The retry-state headers the subscriber replaces on a message whose retry state it does
/// not trust (see the crate's "Trusting the retry state").
pub(crate) const RETRY_STATE: [&str; 7] = [
    ATTEMPT,
    DONE,
    FAILED_HANDLERS,
    LAST_ERROR,
    FIRST_FAILURE,
    ORIGINAL_EXCHANGE,
    ORIGINAL_ROUTING_KEY,
];

/// Longest text written into a header (errors can be long; bodies never are written).
pub(crate) const MAX_TEXT: usize = 1024;

/// Why a delivery was dead-lettered by the subscriber; the value of the
/// `x-pubsub-dead-letter-kind` header.
///
/// ```
/// use pubsub_subscriber::DeadLetterKind;
///
/// let kind: DeadLetterKind = "redelivery-limit".parse()?;
/// assert_eq!(kind, DeadLetterKind::RedeliveryLimit);
/// assert_eq!(kind.to_string(), "redelivery-limit");
/// assert!("melted".parse::<DeadLetterKind>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterKind {
    /// Not a valid event (not JSON, missing field, wrong content type, too large,
    /// unsupported version, or a delivery the frame guard had to alter): never retried.
    Poison,
    /// Handlers still failed on the last attempt.
    Exhausted,
    /// Delivered too many times without being acknowledged (the consumer crashed or lost its
    /// connection while handling it each time; quorum queues count deliveries).
    RedeliveryLimit,
}

impl DeadLetterKind {
    /// Every kind, in the order above.
    pub const ALL: [DeadLetterKind; 3] = [
        DeadLetterKind::Poison,
        DeadLetterKind::Exhausted,
        DeadLetterKind::RedeliveryLimit,
    ];

    /// The value of the `x-pubsub-dead-letter-kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Poison => "poison",
            DeadLetterKind::Exhausted => "exhausted",
            DeadLetterKind::RedeliveryLimit => "redelivery-limit",
        }
    }
}

impl fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterKind {
    type Err = Error;

    /// Parses the header value ([`as_str`](DeadLetterKind::as_str)), exactly.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidHeader`] for any other text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeadLetterKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::InvalidHeader {
                name: DEAD_LETTER_KIND,
                message: format!(
                    "unknown dead-letter kind {:?} (expected poison, exhausted or redelivery-limit)",
                    text::truncate_bytes(s, 64)
                ),
            })
    }
}

impl TryFrom<&str> for DeadLetterKind {
    type Error = Error;

    /// As [`FromStr`].
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The retry state a retried message carries: which attempt it is, which subscriptions
/// already succeeded, and what failed last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryState {
    /// The attempt this is (`x-pubsub-attempt`); 1 when the header is absent.
    pub attempt: u32,
    /// The subscriptions (`handler@pattern`) that already succeeded (`x-pubsub-done`).
    pub done: Vec<String>,
    /// The handlers that failed on the last attempt (`x-pubsub-failed-handlers`).
    pub failed_handlers: Vec<String>,
    /// The last handler error (`x-pubsub-last-error`).
    pub last_error: Option<String>,
    /// When the event first failed, RFC 3339 (`x-pubsub-first-failure`).
    pub first_failure: Option<String>,
}

impl RetryState {
    /// The state of a first delivery: attempt 1, nothing done, nothing failed.
    pub fn first() -> RetryState {
        RetryState {
            attempt: 1,
            ..RetryState::default()
        }
    }

    /// Reads the state from headers. Missing or mistyped headers read as a first delivery's;
    /// an attempt below 1 reads as 1.
    ///
    /// This reads what the headers say; whether to believe them is the subscriber's
    /// decision (a fresh message can carry forged headers).
    pub fn from_headers(headers: &Headers) -> RetryState {
        RetryState {
            attempt: attempt_from(headers.get(ATTEMPT)),
            done: strings(headers.get(DONE)),
            failed_handlers: strings(headers.get(FAILED_HANDLERS)),
            last_error: string(headers.get(LAST_ERROR)),
            first_failure: string(headers.get(FIRST_FAILURE)),
        }
    }

    /// Writes the state into `headers`, replacing what was there; absent optional values
    /// remove their header. The last error is clipped to 1 KiB.
    pub fn write_to(&self, headers: &mut Headers) {
        headers.insert(
            ATTEMPT.to_owned(),
            HeaderValue::Int(i64::from(self.attempt)),
        );
        headers.insert(DONE.to_owned(), HeaderValue::from(self.done.clone()));
        headers.insert(
            FAILED_HANDLERS.to_owned(),
            HeaderValue::from(self.failed_handlers.clone()),
        );
        set_or_remove(headers, LAST_ERROR, self.last_error.as_deref().map(clip));
        set_or_remove(headers, FIRST_FAILURE, self.first_failure.clone());
    }
}

/// Where an event was first published: recorded when the subscriber first republishes it (a
/// retried message comes back through the default exchange with the queue's name as routing
/// key), read by a replay to send it back there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The exchange (empty: the default exchange).
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
}

impl Origin {
    /// The subscriber's `x-pubsub-original-*` headers, if both are there.
    pub fn from_headers(headers: &Headers) -> Option<Origin> {
        Some(Origin {
            exchange: string(headers.get(ORIGINAL_EXCHANGE))?,
            routing_key: string(headers.get(ORIGINAL_ROUTING_KEY))?,
        })
    }

    /// Writes both headers, replacing what was there.
    pub fn write_to(&self, headers: &mut Headers) {
        headers.insert(
            ORIGINAL_EXCHANGE.to_owned(),
            HeaderValue::from(self.exchange.as_str()),
        );
        headers.insert(
            ORIGINAL_ROUTING_KEY.to_owned(),
            HeaderValue::from(self.routing_key.as_str()),
        );
    }
}

/// What the subscriber writes on a message it dead-letters, besides the retry state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Why (`x-pubsub-dead-letter-kind`).
    pub kind: DeadLetterKind,
    /// The reason in words (`x-pubsub-dead-letter-reason`), clipped to 1 KiB when written.
    pub reason: String,
    /// When, RFC 3339 (`x-pubsub-dead-lettered-at`).
    pub dead_lettered_at: String,
    /// The queue it was consumed from (`x-pubsub-source-queue`).
    pub source_queue: String,
}

impl DeadLetterRecord {
    /// Reads the subscriber's record; `None` unless the kind header is present and known.
    pub fn from_headers(headers: &Headers) -> Option<DeadLetterRecord> {
        let kind = headers.get(DEAD_LETTER_KIND)?.as_str()?.parse().ok()?;
        Some(DeadLetterRecord {
            kind,
            reason: string(headers.get(DEAD_LETTER_REASON)).unwrap_or_default(),
            dead_lettered_at: string(headers.get(DEAD_LETTERED_AT)).unwrap_or_default(),
            source_queue: string(headers.get(SOURCE_QUEUE)).unwrap_or_default(),
        })
    }

    /// Writes the four headers, replacing what was there.
    pub fn write_to(&self, headers: &mut Headers) {
        headers.insert(
            DEAD_LETTER_KIND.to_owned(),
            HeaderValue::from(self.kind.as_str()),
        );
        headers.insert(
            DEAD_LETTER_REASON.to_owned(),
            HeaderValue::from(clip(&self.reason)),
        );
        headers.insert(
            DEAD_LETTERED_AT.to_owned(),
            HeaderValue::from(self.dead_lettered_at.as_str()),
        );
        headers.insert(
            SOURCE_QUEUE.to_owned(),
            HeaderValue::from(self.source_queue.as_str()),
        );
    }
}

/// One of RabbitMQ's `x-death` records: a time the broker dead-lettered the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Death {
    /// The queue it was dead-lettered from.
    pub queue: Option<String>,
    /// Why: `rejected`, `expired`, `maxlen` or `delivery_limit`.
    pub reason: Option<String>,
    /// The exchange it had been published to (empty: the default exchange).
    pub exchange: Option<String>,
    /// The routing keys it had been published with.
    pub routing_keys: Vec<String>,
    /// When (seconds since the Unix epoch).
    pub time: Option<u64>,
    /// How many times this queue dead-lettered it for this reason.
    pub count: Option<i64>,
}

impl Death {
    /// The `x-death` records in `headers`, most recent first (RabbitMQ's order); entries
    /// that are not tables are skipped.
    pub fn all(headers: &Headers) -> Vec<Death> {
        match headers.get(X_DEATH) {
            Some(HeaderValue::Array(items)) => items.iter().filter_map(Death::from_value).collect(),
            _ => Vec::new(),
        }
    }

    /// The most recent `x-death` record, reading nothing else.
    pub fn latest(headers: &Headers) -> Option<Death> {
        match headers.get(X_DEATH) {
            Some(HeaderValue::Array(items)) => items.iter().find_map(Death::from_value),
            _ => None,
        }
    }

    /// One record, from its table.
    pub fn from_value(value: &HeaderValue) -> Option<Death> {
        let HeaderValue::Table(t) = value else {
            return None;
        };
        Some(Death {
            queue: string(t.get("queue")),
            reason: string(t.get("reason")),
            exchange: string(t.get("exchange")),
            routing_keys: strings(t.get("routing-keys")),
            time: match t.get("time") {
                Some(HeaderValue::Timestamp(s)) => Some(*s),
                _ => None,
            },
            count: t.get("count").and_then(HeaderValue::as_i64),
        })
    }
}

/// Why a message is in a dead-letter queue, as its headers tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterCause {
    /// The subscriber dead-lettered it.
    Subscriber(DeadLetterKind),
    /// The subscriber's kind header holds a value this version does not know.
    Unrecognized(String),
    /// RabbitMQ dead-lettered it itself, for this `x-death` reason (`rejected`, `expired`,
    /// `maxlen`, `delivery_limit`).
    Broker(String),
    /// Nothing says.
    Unknown,
}

impl fmt::Display for DeadLetterCause {
    /// `poison`, `exhausted`, `redelivery-limit`; the unrecognized value as it is; the
    /// broker's reason suffixed ` (broker)`; `unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterCause::Subscriber(kind) => fmt::Display::fmt(kind, f),
            DeadLetterCause::Unrecognized(kind) => f.write_str(kind),
            DeadLetterCause::Broker(reason) => write!(f, "{reason} (broker)"),
            DeadLetterCause::Unknown => f.write_str("unknown"),
        }
    }
}

/// What a dead-lettered message's headers say about it, whoever dead-lettered it: the
/// subscriber's `x-pubsub-*` headers, else RabbitMQ's `x-death` records (a queue's own
/// `x-dead-letter-exchange`).
///
/// A view over the headers: nothing is parsed until asked.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterHeaders<'h> {
    headers: &'h Headers,
}

impl<'h> DeadLetterHeaders<'h> {
    /// A view of `headers`.
    pub fn new(headers: &'h Headers) -> Self {
        DeadLetterHeaders { headers }
    }

    fn str(&self, name: &str) -> Option<&'h str> {
        self.headers.get(name).and_then(HeaderValue::as_str)
    }

    /// RabbitMQ's `x-death` records, most recent first.
    pub fn deaths(&self) -> Vec<Death> {
        Death::all(self.headers)
    }

    /// Where the message was first published: the subscriber's [`Origin`] headers, else the
    /// exchange and first routing key of the oldest `x-death` record. `None` when neither
    /// says (the caller may fall back on how the message reached the dead-letter queue).
    pub fn origin(&self) -> Option<Origin> {
        if let Some(origin) = Origin::from_headers(self.headers) {
            return Some(origin);
        }
        let oldest = self.deaths().pop()?;
        Some(Origin {
            exchange: oldest.exchange?,
            routing_key: oldest.routing_keys.into_iter().next()?,
        })
    }

    /// Why it is dead-lettered: the subscriber's kind, else the most recent `x-death`
    /// reason, else unknown.
    pub fn cause(&self) -> DeadLetterCause {
        if let Some(kind) = self.str(DEAD_LETTER_KIND) {
            return match kind.parse() {
                Ok(kind) => DeadLetterCause::Subscriber(kind),
                Err(_) => DeadLetterCause::Unrecognized(kind.to_owned()),
            };
        }
        match Death::latest(self.headers).and_then(|d| d.reason) {
            Some(reason) => DeadLetterCause::Broker(reason),
            None => DeadLetterCause::Unknown,
        }
    }

    /// The subscriber's kind, if it dead-lettered the message with a known one.
    pub fn kind(&self) -> Option<DeadLetterKind> {
        match self.cause() {
            DeadLetterCause::Subscriber(kind) => Some(kind),
            _ => None,
        }
    }

    /// The reason in words: the subscriber's, else ``<reason> by RabbitMQ in queue `<q>` ``
    /// from the most recent `x-death` record.
    pub fn reason(&self) -> Option<String> {
        if let Some(reason) = self.str(DEAD_LETTER_REASON) {
            return Some(reason.to_owned());
        }
        let death = Death::latest(self.headers)?;
        let queue = death.queue?;
        let reason = death.reason.as_deref().unwrap_or("dead-lettered");
        Some(format!("{reason} by RabbitMQ in queue `{queue}`"))
    }

    /// The handlers that failed on the last attempt.
    pub fn failed_handlers(&self) -> Vec<String> {
        strings(self.headers.get(FAILED_HANDLERS))
    }

    /// How many attempts were made: the subscriber's count, else the quorum queue's
    /// delivery count.
    pub fn attempts(&self) -> Option<i64> {
        self.headers
            .get(ATTEMPT)
            .or_else(|| self.headers.get(DELIVERY_COUNT))
            .and_then(HeaderValue::as_i64)
    }

    /// When the event first failed (RFC 3339): the subscriber's header, else the time of the
    /// oldest `x-death` record.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(t) = self.str(FIRST_FAILURE) {
            return Some(t.to_owned());
        }
        epoch_rfc3339(self.deaths().pop()?.time?)
    }

    /// When it was dead-lettered (RFC 3339), if the subscriber recorded it.
    pub fn dead_lettered_at(&self) -> Option<String> {
        self.str(DEAD_LETTERED_AT).map(str::to_owned)
    }

    /// The last handler error, if recorded.
    pub fn last_error(&self) -> Option<String> {
        self.str(LAST_ERROR).map(str::to_owned)
    }

    /// The queue the subscriber consumed it from, else the queue of the most recent
    /// `x-death` record.
    pub fn source_queue(&self) -> Option<String> {
        if let Some(q) = self.str(SOURCE_QUEUE) {
            return Some(q.to_owned());
        }
        Death::latest(self.headers)?.queue
    }

    /// How many times an operator replayed it ([`REPLAYED`]); 0 when absent.
    pub fn replayed(&self) -> i64 {
        self.headers
            .get(REPLAYED)
            .and_then(HeaderValue::as_i64)
            .unwrap_or(0)
    }
}

/// Prepares the headers of a message replayed from a dead-letter queue: removes the retry
/// state and the dead-letter records ([`REPLAY_STRIPPED`], [`REPLAY_STRIPPED_PREFIXES`]),
/// keeps the original exchange and routing key and the user's headers, and counts the replay
/// in [`REPLAYED`].
///
/// ```
/// use pubsub_amqp::{HeaderValue, Headers};
/// use pubsub_subscriber::headers;
///
/// let mut h = Headers::new();
/// h.insert(headers::ATTEMPT.into(), HeaderValue::Int(3));
/// h.insert("tenant".into(), "acme".into());
/// headers::strip_for_replay(&mut h);
/// assert_eq!(h.get(headers::ATTEMPT), None);
/// assert_eq!(h["tenant"], HeaderValue::from("acme"));
/// assert_eq!(h[headers::REPLAYED], HeaderValue::Int(1));
/// ```
pub fn strip_for_replay(headers: &mut Headers) {
    let replays = headers
        .get(REPLAYED)
        .and_then(HeaderValue::as_i64)
        .unwrap_or(0);
    headers.retain(|name, _| {
        !REPLAY_STRIPPED.contains(&name.as_str())
            && !REPLAY_STRIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
    });
    headers.insert(
        REPLAYED.to_owned(),
        HeaderValue::Int(replays.saturating_add(1)),
    );
}

fn attempt_from(value: Option<&HeaderValue>) -> u32 {
    value
        .and_then(HeaderValue::as_i64)
        .and_then(|a| u32::try_from(a).ok())
        .unwrap_or(1)
        .max(1)
}

fn string(value: Option<&HeaderValue>) -> Option<String> {
    value.and_then(HeaderValue::as_str).map(str::to_owned)
}

fn strings(value: Option<&HeaderValue>) -> Vec<String> {
    value
        .map(|v| v.string_items().into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn set_or_remove(headers: &mut Headers, name: &str, value: Option<String>) {
    match value {
        Some(v) => {
            headers.insert(name.to_owned(), HeaderValue::from(v));
        }
        None => {
            headers.remove(name);
        }
    }
}

/// `seconds` since the epoch as RFC 3339 (`2024-05-01T12:30:00Z`).
fn epoch_rfc3339(seconds: u64) -> Option<String> {
    let seconds = i64::try_from(seconds).ok()?;
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// `text`, cut to [`MAX_TEXT`] bytes on a character boundary: the size of a text header.
pub(crate) fn clip(text: &str) -> String {
    text::truncate_bytes(text, MAX_TEXT)
}

/// Now, as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
