//! The rows a store keeps: events ([`EventRow`] in, [`StoredEvent`] out, chosen by an
//! [`EventQuery`]) and tasks ([`NewTask`] in, [`TaskRecord`] out, chosen by a
//! [`TaskFilter`]).

use std::fmt;
use std::str::FromStr;

use pubsub_core::{Event, Headers, Metadata};
use pubsub_registry::Pattern;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};

/// One event as it is written: the event's six fields and what the transport knew of it,
/// with `data` and `headers` already serialized.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// The event id (unique in the store: a redelivered event is stored once).
    pub event_id: Uuid,
    /// The routing key it was published with (`order.created`, or versioned
    /// `order.created.v2`; a message kept whatever its shape, with
    /// [`Envelope::Any`](pubsub_core::envelope::Envelope::Any), may have a key of another
    /// convention: seed 003's `routing.event.create.user`).
    pub routing_key: String,
    /// Its domain (derived from the routing key for a message that is not a six-field
    /// event: see [`decode_any`](pubsub_core::envelope::decode_any)).
    pub domain: String,
    /// Its action (derived as the domain is).
    pub action: String,
    /// Its schema version (`1.0`).
    pub version: String,
    /// When it happened (the event's timestamp).
    pub timestamp: OffsetDateTime,
    /// Its data, as a JSON object's text.
    pub data: String,
    /// The flow it belongs to (AMQP `correlation_id`).
    pub correlation_id: Option<String>,
    /// The event whose handling caused it.
    pub causation_id: Option<String>,
    /// The service that published it (AMQP `app_id`).
    pub producer: Option<String>,
    /// Every header of the message, as a JSON object's text.
    pub headers: String,
    /// When the store received it.
    pub received_at: OffsetDateTime,
    /// The message's body as received, byte for byte (`None`: not known, as for an event
    /// built in code).
    pub body: Option<Vec<u8>>,
}

impl EventRow {
    /// The row of `event`, delivered with `meta`, received at `received_at`.
    pub fn new(event: &Event, meta: &Metadata, received_at: OffsetDateTime) -> EventRow {
        EventRow {
            event_id: event.event_id(),
            routing_key: event.routing_key().to_owned(),
            domain: event.domain().to_owned(),
            action: event.action().to_owned(),
            version: event.version().to_owned(),
            timestamp: event.timestamp(),
            data: serde_json::to_string(event.data()).unwrap_or_else(|_| "{}".to_owned()),
            correlation_id: meta.correlation_id().map(str::to_owned),
            causation_id: meta.causation_id().map(str::to_owned),
            producer: meta.app_id().map(str::to_owned),
            headers: serde_json::to_string(meta.headers()).unwrap_or_else(|_| "{}".to_owned()),
            received_at,
            body: None,
        }
    }

    /// The same row published with `routing_key`, when it is not the event's own: a message
    /// kept with [`Envelope::Any`](pubsub_core::envelope::Envelope::Any) under a key of
    /// another convention, from which the event was derived.
    pub fn with_routing_key(mut self, routing_key: &str) -> EventRow {
        routing_key.clone_into(&mut self.routing_key);
        self
    }

    /// The same row with the body the event was decoded from, kept byte for byte.
    pub fn with_body(mut self, body: &[u8]) -> EventRow {
        self.body = Some(body.to_vec());
        self
    }
}

/// An event read back from the store, with what the transport knew of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// The event, as it was published (its six fields, in the wire format's order); for a
    /// message kept whatever its shape ([`Envelope::Any`](pubsub_core::envelope::Envelope::Any)),
    /// the event derived from it (its routing key may then differ from
    /// [`routing_key`](Self::routing_key), and [`body`](Self::body) is the message).
    #[serde(flatten)]
    pub event: Event,
    /// The routing key it was published with (what queries match and replays publish with).
    pub routing_key: String,
    /// The flow it belongs to.
    pub correlation_id: Option<String>,
    /// The event whose handling caused it.
    pub causation_id: Option<String>,
    /// The service that published it.
    pub producer: Option<String>,
    /// Every header of the message.
    pub headers: Headers,
    /// When the store received it.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The message's body as it was received, byte for byte, when the store kept it (rows
    /// written before schema version 2, or without a body, have none). Not in the JSON form
    /// (the six fields are).
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
}

impl StoredEvent {
    /// Rebuilds a stored event from its columns: from its routing key when that is an
    /// event's (`domain.action[.vN]`), else from its `domain` and `action` columns (a message
    /// kept under a key of another convention).
    ///
    /// # Errors
    ///
    /// [`Error::CorruptRow`] if the columns do not make a valid event.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_columns(
        event_id: Uuid,
        routing_key: String,
        (domain, action): (&str, &str),
        version: &str,
        timestamp: OffsetDateTime,
        data: Value,
        correlation_id: Option<String>,
        causation_id: Option<String>,
        producer: Option<String>,
        headers: Value,
        received_at: OffsetDateTime,
    ) -> Result<StoredEvent> {
        let corrupt = |message: String| Error::CorruptRow {
            key: format!("event {event_id}"),
            message,
        };
        let builder = if Event::from_routing_key(&routing_key).build().is_ok() {
            Event::from_routing_key(&routing_key)
        } else {
            Event::builder(domain, action)
        };
        let event = builder
            .data(data)
            .event_id(event_id)
            .timestamp(timestamp)
            .version(version)
            .build()
            .map_err(|e| corrupt(e.to_string()))?;
        let headers: Headers = match headers {
            Value::Object(map) => map.into_iter().collect(),
            Value::Null => Headers::new(),
            other => {
                return Err(corrupt(format!(
                    "headers are {}, not an object",
                    pubsub_core::text::json_type(&other)
                )))
            }
        };
        Ok(StoredEvent {
            event,
            routing_key,
            correlation_id,
            causation_id,
            producer,
            headers,
            received_at,
            body: None,
        })
    }

    /// The same event with the body it was stored with.
    pub(crate) fn with_body(mut self, body: Option<Vec<u8>>) -> StoredEvent {
        self.body = body;
        self
    }
}

/// In which order a query returns events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (by the event's timestamp, then its id): the order to replay in.
    #[default]
    OldestFirst,
    /// Newest first: the latest events.
    NewestFirst,
}

/// Which stored events a query returns; every criterion set must hold.
///
/// ```
/// use pubsub_store::EventQuery;
///
/// let query = EventQuery::new().pattern("order.*")?.limit(20);
/// assert_eq!(query.describe(), "routing key matches `order.*`, at most 20");
/// # Ok::<(), pubsub_store::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Routing keys matching this pattern (the handlers' semantics: `*` one word, `#` any
    /// number, glob words).
    pub pattern: Option<Pattern>,
    /// Events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Events before this time.
    pub until: Option<OffsetDateTime>,
    /// A whole causal chain: events with this correlation id, and the event with this id
    /// (the chain's first event, whose id the others carry).
    pub correlation_id: Option<String>,
    /// One event.
    pub event_id: Option<Uuid>,
    /// At most this many.
    pub limit: Option<usize>,
    /// In which order.
    pub order: Order,
}

impl EventQuery {
    /// Every event, oldest first.
    pub fn new() -> EventQuery {
        EventQuery::default()
    }

    /// Only routing keys matching `pattern`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `pattern` is not a valid pattern.
    pub fn pattern(mut self, pattern: &str) -> Result<EventQuery> {
        self.pattern = Some(Pattern::parse(pattern).map_err(|e| Error::InvalidConfig {
            message: e.to_string(),
        })?);
        Ok(self)
    }

    /// Only events at or after `since`.
    pub fn since(mut self, since: OffsetDateTime) -> EventQuery {
        self.since = Some(since);
        self
    }

    /// Only events before `until`.
    pub fn until(mut self, until: OffsetDateTime) -> EventQuery {
        self.until = Some(until);
        self
    }

    /// Only the causal chain of `correlation_id`.
    pub fn correlation_id(mut self, correlation_id: &str) -> EventQuery {
        self.correlation_id = Some(correlation_id.to_owned());
        self
    }

    /// Only the event `event_id`.
    pub fn event_id(mut self, event_id: Uuid) -> EventQuery {
        self.event_id = Some(event_id);
        self
    }

    /// At most `limit` events.
    pub fn limit(mut self, limit: usize) -> EventQuery {
        self.limit = Some(limit);
        self
    }

    /// In `order`.
    pub fn order(mut self, order: Order) -> EventQuery {
        self.order = order;
        self
    }

    /// Whether `row` passes the criteria the database does not check (the pattern).
    pub(crate) fn admits(&self, routing_key: &str) -> bool {
        self.pattern.as_ref().is_none_or(|p| p.matches(routing_key))
    }

    /// The domain every key the pattern matches has, when its first word is a plain word of
    /// an event (letters, digits, `_`, `-`): the database narrows on it, the pattern does
    /// the rest. A row's domain is its key's first word whenever that is such a word, also
    /// for a message kept under a key of another convention (see
    /// [`decode_any`](pubsub_core::envelope::decode_any)), whose other words make the action.
    pub(crate) fn literal_domain(&self) -> Option<String> {
        let pattern = self.pattern.as_ref()?;
        let first = pattern.as_str().split('.').next()?;
        // A derived domain is at most 127 bytes: a longer first word was cut.
        let plain = !first.is_empty()
            && first.len() <= 127
            && first
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        plain.then(|| first.to_owned())
    }

    /// The criteria in words, for logs and progress.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.pattern {
            parts.push(format!("routing key matches `{p}`"));
        }
        if let Some(t) = self.since {
            parts.push(format!("since {t}"));
        }
        if let Some(t) = self.until {
            parts.push(format!("until {t}"));
        }
        if let Some(c) = &self.correlation_id {
            parts.push(format!("correlation id {c}"));
        }
        if let Some(id) = self.event_id {
            parts.push(format!("event {id}"));
        }
        if let Some(n) = self.limit {
            parts.push(format!("at most {n}"));
        }
        if parts.is_empty() {
            "every event".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A task as a worker received it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewTask<'a> {
    /// Its id (unique: a task delivered twice is one task).
    pub task_id: Uuid,
    /// The name of the task function to run.
    pub task_name: &'a str,
    /// Its arguments.
    pub payload: &'a Value,
    /// The routing key it was submitted with.
    pub routing_key: &'a str,
    /// The flow it belongs to.
    pub correlation_id: Option<&'a str>,
    /// The service that submitted it.
    pub producer: Option<&'a str>,
    /// The longest its function may run on the worker, if limited: kept in the record, so
    /// that a task RUNNING past it shows as stuck.
    pub time_limit: Option<std::time::Duration>,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Received, not running (first, or waiting for a retry).
    Pending,
    /// A worker runs it.
    Running,
    /// Done, with a result.
    Completed,
    /// Failed for good, with the error.
    Failed,
    /// Cancelled before it ran: a worker that receives it skips it.
    Cancelled,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED` (the seed's) or `CANCELLED`: the stored
    /// word.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether a task in this status is done for good: never run again.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Cancelled)
    }
}

impl TaskStatus {
    /// The status stored in task `task_id`'s row.
    ///
    /// # Errors
    ///
    /// [`Error::CorruptRow`] for a word that is not a status.
    pub(crate) fn stored(task_id: Uuid, text: &str) -> Result<TaskStatus> {
        text.parse().map_err(|e: Error| Error::CorruptRow {
            key: format!("task {task_id}"),
            message: e.to_string(),
        })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = Error;

    /// Any case: `failed`, `FAILED`.
    fn from_str(s: &str) -> Result<Self> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::InvalidConfig {
                message: format!(
                    "unknown task status `{}` (pending, running, completed, failed or cancelled)",
                    pubsub_core::text::quote(s)
                ),
            })
    }
}

/// A task's status and attempts as stored: what a worker decides on before it runs it
/// ([`TaskStore::claim_all`](crate::TaskStore::claim_all)), without the rest of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    /// Its id.
    pub task_id: Uuid,
    /// Where it is.
    pub status: TaskStatus,
    /// Its attempts so far.
    pub attempts: u32,
}

impl From<&TaskRecord> for TaskState {
    fn from(record: &TaskRecord) -> Self {
        Self {
            task_id: record.task_id,
            status: record.status,
            attempts: record.attempts,
        }
    }
}

/// One run of a task inside the store's open transaction, recorded with its outcome in one
/// write ([`TaskStore::record_all`](crate::TaskStore::record_all)): received (if new),
/// started at `started_at`, and ended as `outcome` says.
#[derive(Debug, Clone, Copy)]
pub struct TaskRun<'a> {
    /// The task as delivered.
    pub task: NewTask<'a>,
    /// When its function started.
    pub started_at: OffsetDateTime,
    /// How the run ended: [`TaskChange::Complete`], [`TaskChange::RetryLater`] or
    /// [`TaskChange::Fail`] ([`TaskChange::Start`] is refused).
    pub outcome: TaskChange<'a>,
}

/// A task's record in the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    /// Its id.
    pub task_id: Uuid,
    /// The task function's name.
    pub task_name: String,
    /// Its arguments.
    pub payload: Value,
    /// Where it is.
    pub status: TaskStatus,
    /// What it returned, once completed.
    pub result: Option<Value>,
    /// The error of its latest failed attempt.
    pub error: Option<String>,
    /// How many times it was started.
    pub attempts: u32,
    /// The routing key it was submitted with.
    pub routing_key: String,
    /// The flow it belongs to.
    pub correlation_id: Option<String>,
    /// The service that submitted it.
    pub producer: Option<String>,
    /// When it was first received.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its record last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When its latest attempt started (`RUNNING`); `None` before the first.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it finished (`COMPLETED`, `FAILED` for good, or `CANCELLED`); `None` until
    /// then, and again while a retry waits.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The longest its function may run, when the worker limits it.
    #[serde(with = "duration_ms")]
    pub time_limit: Option<std::time::Duration>,
}

impl TaskRecord {
    /// Whether it is stuck at `now`: RUNNING for longer than its time limit, or than
    /// `otherwise` when it has none (its worker died, or it never ends).
    pub fn is_stuck(&self, now: OffsetDateTime, otherwise: std::time::Duration) -> bool {
        if self.status != TaskStatus::Running {
            return false;
        }
        let Some(started) = self.started_at else {
            return false;
        };
        let limit = self.time_limit.unwrap_or(otherwise);
        now - started > limit
    }
}

/// A time limit as milliseconds in JSON (`null` without one).
mod duration_ms {
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<std::time::Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => serializer.serialize_none(),
        }
    }
}

/// Which task records a listing returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this name.
    pub task_name: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// A change of a task's record (see [`TaskStore`](crate::TaskStore)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskChange<'a> {
    /// A worker starts it: `RUNNING`, one more attempt.
    Start,
    /// It returned `result`: `COMPLETED`.
    Complete(&'a Value),
    /// An attempt failed and it will be retried: back to `PENDING`, the error kept.
    RetryLater(&'a str),
    /// It failed for good: `FAILED`, with the error.
    Fail(&'a str),
}

impl TaskChange<'_> {
    /// The status a task has after this change.
    pub fn status(self) -> TaskStatus {
        match self {
            TaskChange::Start => TaskStatus::Running,
            TaskChange::Complete(_) => TaskStatus::Completed,
            TaskChange::RetryLater(_) => TaskStatus::Pending,
            TaskChange::Fail(_) => TaskStatus::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_event_prints_the_wire_fields_first() {
        let event = Event::new("order", "created", serde_json::json!({ "id": 1 })).unwrap();
        let meta = Metadata::default().with_correlation_id(Some("c-1".into()));
        let row = EventRow::new(&event, &meta, OffsetDateTime::UNIX_EPOCH);
        let stored = StoredEvent::from_columns(
            row.event_id,
            row.routing_key,
            (&row.domain, &row.action),
            &row.version,
            row.timestamp,
            serde_json::from_str(&row.data).unwrap(),
            row.correlation_id,
            None,
            None,
            Value::Null,
            row.received_at,
        )
        .unwrap();
        assert_eq!(stored.event, event);
        let line = serde_json::to_string(&stored).unwrap();
        let wire = String::from_utf8(pubsub_core::json::to_vec(&event)).unwrap();
        assert!(line.starts_with(wire.trim_end_matches('}')), "{line}");
        assert!(line.ends_with(r#""correlation_id":"c-1","causation_id":null,"producer":null,"headers":{},"received_at":"1970-01-01T00:00:00Z"}"#), "{line}");
    }

    #[test]
    fn statuses_read_in_any_case() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>().unwrap(), status);
            assert_eq!(
                status
                    .as_str()
                    .to_lowercase()
                    .parse::<TaskStatus>()
                    .unwrap(),
                status
            );
        }
        assert!("done".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn changes_lead_to_statuses() {
        let v = Value::Null;
        let table = [
            (TaskChange::Start, TaskStatus::Running),
            (TaskChange::Complete(&v), TaskStatus::Completed),
            (TaskChange::RetryLater("e"), TaskStatus::Pending),
            (TaskChange::Fail("e"), TaskStatus::Failed),
        ];
        for (change, status) in table {
            assert_eq!(change.status(), status, "{change:?}");
        }
    }

    #[test]
    fn the_database_narrows_on_a_plain_first_word() {
        let check = |pattern: &str, domain: Option<&str>| {
            let q = EventQuery::new().pattern(pattern).unwrap();
            assert_eq!(q.literal_domain().as_deref(), domain, "{pattern}");
        };
        check("order.*", Some("order"));
        check("order.#", Some("order"));
        check("order.created", Some("order"));
        check("#", None);
        check("*.created", None);
        check("ord*.created", None);
        check("routing.event.#", Some("routing"));
        check("my-app_2.#", Some("my-app_2"));
        check("ord?r.#", None);
        assert_eq!(EventQuery::new().literal_domain(), None);
    }

    #[test]
    fn queries_admit_by_pattern() {
        let q = EventQuery::new().pattern("order.#").unwrap();
        assert!(q.admits("order.created"));
        assert!(q.admits("order.created.v2"));
        assert!(!q.admits("user.registered"));
        assert!(EventQuery::new().admits("anything.at.all"));
        assert!(EventQuery::new().pattern("a..b").is_err());
        assert_eq!(EventQuery::new().describe(), "every event");
    }
}
