//! Decoding the store's rows on PostgreSQL: events, task records and task states, with the
//! originals of what PostgreSQL could not hold as it was (see `exact.rs`).

use postgres::types::Json;
use postgres::{Row, SimpleQueryRow};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::exact::Originals;
use crate::model::{StoredEvent, TaskRecord, TaskState, TaskStatus};

/// The originals of a row (see `exact.rs`), read from column `index`.
fn originals(row: &Row, index: usize, key: impl Fn() -> String, doing: &str) -> Result<Originals> {
    let column: Option<&str> = row
        .try_get(index)
        .map_err(|e| Error::query(doing.to_owned(), e))?;
    Originals::read(column).map_err(|message| Error::CorruptRow {
        key: key(),
        message,
    })
}

/// An event, from a row of the event columns.
pub(super) fn stored_event(row: &Row, doing: &str) -> Result<StoredEvent> {
    let get = |e: postgres::Error| Error::query(doing.to_owned(), e);
    let event_id: Uuid = row.try_get(0).map_err(get)?;
    let mut exact = originals(row, 11, || format!("event {event_id}"), doing)?;
    let Json(data): Json<Value> = row.try_get(4).map_err(get)?;
    let Json(headers): Json<Value> = row.try_get(8).map_err(get)?;
    let version = exact.restore_text("version", row.try_get(2).map_err(get)?);
    let domain = exact.restore_text("domain", row.try_get(12).map_err(get)?);
    let action = exact.restore_text("action", row.try_get(13).map_err(get)?);
    StoredEvent::from_columns(
        event_id,
        exact.restore_text("routing_key", row.try_get(1).map_err(get)?),
        (&domain, &action),
        &version,
        row.try_get(3).map_err(get)?,
        exact.restore_value("data", data),
        exact.restore_text_opt("correlation_id", row.try_get(5).map_err(get)?),
        exact.restore_text_opt("causation_id", row.try_get(6).map_err(get)?),
        exact.restore_text_opt("producer", row.try_get(7).map_err(get)?),
        exact.restore_value("headers", headers),
        row.try_get(9).map_err(get)?,
    )
    .map(|event| event.with_body(row.try_get(10).ok().flatten()))
}

/// A task's record, from a row of `TASK_COLUMNS`.
pub(super) fn task_record(row: &Row, doing: &str) -> Result<TaskRecord> {
    let get = |e: postgres::Error| Error::query(doing.to_owned(), e);
    let task_id: Uuid = row.try_get(0).map_err(get)?;
    let key = || format!("task {task_id}");
    let mut exact = originals(row, 12, key, doing)?;
    let Json(payload): Json<Value> = row.try_get(2).map_err(get)?;
    let status: &str = row.try_get(3).map_err(get)?;
    let result: Option<Json<Value>> = row.try_get(4).map_err(get)?;
    let result = match row.try_get::<_, Option<&str>>(13).map_err(get)? {
        Some(original) => Some(
            serde_json::from_str(original).map_err(|e| Error::CorruptRow {
                key: key(),
                message: format!("result_original is not JSON: {e}"),
            })?,
        ),
        None => result.map(|Json(v)| v),
    };
    let error: Option<String> = match row.try_get::<_, Option<&str>>(14).map_err(get)? {
        Some(original) => Some(
            serde_json::from_str(original).map_err(|e| Error::CorruptRow {
                key: key(),
                message: format!("error_original is not a JSON string: {e}"),
            })?,
        ),
        None => row.try_get(5).map_err(get)?,
    };
    let attempts: i32 = row.try_get(6).map_err(get)?;
    Ok(TaskRecord {
        task_id,
        task_name: exact.restore_text("task_name", row.try_get(1).map_err(get)?),
        payload: exact.restore_value("payload", payload),
        status: TaskStatus::stored(task_id, status)?,
        result,
        error,
        attempts: u32::try_from(attempts).unwrap_or(0),
        routing_key: exact.restore_text("routing_key", row.try_get(7).map_err(get)?),
        correlation_id: exact.restore_text_opt("correlation_id", row.try_get(8).map_err(get)?),
        producer: exact.restore_text_opt("producer", row.try_get(9).map_err(get)?),
        created_at: row.try_get(10).map_err(get)?,
        updated_at: row.try_get(11).map_err(get)?,
        started_at: row.try_get(15).map_err(get)?,
        finished_at: row.try_get(16).map_err(get)?,
        time_limit: row
            .try_get::<_, Option<i64>>(17)
            .map_err(get)?
            .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
    })
}

/// A task's status and attempts, from a row of `task_id, status, attempts`.
pub(super) fn task_state(row: &Row, doing: &str) -> Result<TaskState> {
    let get = |e: postgres::Error| Error::query(doing.to_owned(), e);
    let task_id: Uuid = row.try_get(0).map_err(get)?;
    let attempts: i32 = row.try_get(2).map_err(get)?;
    Ok(TaskState {
        task_id,
        status: TaskStatus::stored(task_id, row.try_get(1).map_err(get)?)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

/// A task's state from a simple query's row (`task_id, status, attempts`, as text).
pub(super) fn task_state_text(row: &SimpleQueryRow) -> Result<TaskState> {
    let corrupt = |message: String| Error::CorruptRow {
        key: format!("task {}", row.get(0).unwrap_or("?")),
        message,
    };
    let task_id: Uuid = row
        .get(0)
        .unwrap_or_default()
        .parse()
        .map_err(|e| corrupt(format!("its id: {e}")))?;
    let status = row.get(1).ok_or_else(|| corrupt("no status".into()))?;
    let attempts: i64 = row
        .get(2)
        .unwrap_or_default()
        .parse()
        .map_err(|e| corrupt(format!("its attempts: {e}")))?;
    Ok(TaskState {
        task_id,
        status: TaskStatus::stored(task_id, status)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}
