//! The `SELECT`s of both SQL backends, built once: an [`EventQuery`] or a [`TaskFilter`] in,
//! the SQL text and its parameters out. Only the placeholder style differs between SQLite
//! (`?1`) and PostgreSQL (`$1`); each backend binds the [`Param`]s in its own types.
//!
//! Pure: no connection, table-tested below.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{EventQuery, Order, TaskFilter};

/// The columns an event row is read from, in the order the backends read them.
pub(crate) const EVENT_COLUMNS: &str = "event_id, routing_key, version, timestamp, data, \
                                        correlation_id, causation_id, producer, headers, \
                                        received_at, body, originals, domain, action";

/// The columns a task row is read from, in the order the backends read them.
pub(crate) const TASK_COLUMNS: &str = "task_id, task_name, payload, status, result, error, \
                                       attempts, routing_key, correlation_id, producer, \
                                       created_at, updated_at, originals, result_original, \
                                       error_original, started_at, finished_at, time_limit_ms";

/// How a statement numbers its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholder {
    /// SQLite's `?1`, `?2`.
    Question,
    /// PostgreSQL's `$1`, `$2`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Dollar,
}

impl Placeholder {
    fn nth(self, n: usize) -> String {
        match self {
            Placeholder::Question => format!("?{n}"),
            Placeholder::Dollar => format!("${n}"),
        }
    }
}

/// A parameter of a statement, typed: each backend binds it in its own representation (SQLite
/// keeps times and ids as text, PostgreSQL as `timestamptz` and `uuid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Text(String),
    Time(OffsetDateTime),
    Uuid(Uuid),
}

/// A statement: its SQL, and the parameters its placeholders number, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Select {
    pub(crate) sql: String,
    pub(crate) params: Vec<Param>,
}

impl Select {
    fn new(sql: String) -> Select {
        Select {
            sql,
            params: Vec::new(),
        }
    }

    /// Appends `clause`, each `?` in it a new parameter taken from `params`, in order.
    fn and(&mut self, style: Placeholder, clause: &str, params: impl IntoIterator<Item = Param>) {
        let mut params = params.into_iter();
        for (i, piece) in clause.split('?').enumerate() {
            if i > 0 {
                if let Some(param) = params.next() {
                    self.params.push(param);
                    self.sql.push_str(&style.nth(self.params.len()));
                }
            }
            self.sql.push_str(piece);
        }
    }
}

/// The `SELECT` of the events `query` selects, but for its routing pattern (beyond the
/// literal domain it narrows on) and its limit, which the caller applies to what the
/// pattern admits.
pub(crate) fn events(query: &EventQuery, style: Placeholder) -> Select {
    let mut select = Select::new(format!(
        "SELECT {EVENT_COLUMNS} FROM pubsub_events WHERE 1 = 1"
    ));
    if let Some(since) = query.since {
        select.and(style, " AND timestamp >= ?", [Param::Time(since)]);
    }
    if let Some(until) = query.until {
        select.and(style, " AND timestamp < ?", [Param::Time(until)]);
    }
    if let Some(id) = query.event_id {
        select.and(style, " AND event_id = ?", [Param::Uuid(id)]);
    }
    if let Some(correlation) = &query.correlation_id {
        // The chain's first event is the one whose id the others carry. The id is compared
        // as text: a correlation id need not be a UUID.
        select.and(
            style,
            " AND (correlation_id = ? OR CAST(event_id AS TEXT) = ?)",
            [
                Param::Text(correlation.clone()),
                Param::Text(correlation.to_lowercase()),
            ],
        );
    }
    if let Some(domain) = query.literal_domain() {
        select.and(style, " AND domain = ?", [Param::Text(domain)]);
    }
    select.sql.push_str(match query.order {
        Order::OldestFirst => " ORDER BY timestamp, event_id",
        Order::NewestFirst => " ORDER BY timestamp DESC, event_id DESC",
    });
    select
}

/// The `SELECT` of the task records `filter` selects, newest first.
pub(crate) fn tasks(filter: &TaskFilter, style: Placeholder) -> Select {
    let mut select = Select::new(format!(
        "SELECT {TASK_COLUMNS} FROM pubsub_tasks WHERE 1 = 1"
    ));
    if let Some(status) = filter.status {
        select.and(
            style,
            " AND status = ?",
            [Param::Text(status.as_str().to_owned())],
        );
    }
    if let Some(name) = &filter.task_name {
        select.and(style, " AND task_name = ?", [Param::Text(name.clone())]);
    }
    select
        .sql
        .push_str(" ORDER BY created_at DESC, task_id DESC");
    if let Some(limit) = filter.limit {
        // A number, not outside text: written inline.
        select.sql.push_str(&format!(" LIMIT {limit}"));
    }
    select
}

#[cfg(test)]
mod tests;
