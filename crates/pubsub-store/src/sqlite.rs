//! The SQLite backend: one file (or memory), WAL journal, durable commits.

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use serde_json::Value;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use uuid::Uuid;

use crate::backend::{Backend, Opening};
use crate::database::SqliteTarget;
use crate::error::{Error, Result};
use crate::filter::{self, Param, Placeholder, TASK_COLUMNS};
use crate::migrations::STORE;
use crate::model::{
    EventQuery, EventRow, NewTask, StoredEvent, TaskChange, TaskFilter, TaskRecord, TaskRun,
    TaskState, TaskStatus,
};

/// Timestamps are stored as UTC text of fixed width, so that text order is time order.
const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// A SQLite connection holding the store's tables.
pub(crate) struct Sqlite {
    connection: Connection,
    name: String,
}

impl Sqlite {
    pub(crate) fn open(
        target: &SqliteTarget,
        database: &crate::Database,
        opening: Opening,
    ) -> Result<Sqlite> {
        let name = database.to_string();
        let connect = |e: rusqlite::Error| Error::Connect {
            database: name.clone(),
            source: Box::new(e),
        };
        if opening == Opening::Existing {
            let missing = match target {
                SqliteTarget::Memory => Some("a new in-memory database is empty".to_owned()),
                SqliteTarget::File(path) if !path.is_file() => {
                    Some(format!("the file {} does not exist", path.display()))
                }
                SqliteTarget::File(_) => None,
            };
            if let Some(missing) = missing {
                return Err(Error::NoStore {
                    database: name,
                    missing,
                });
            }
        }
        if let SqliteTarget::File(path) = target {
            // Like the schema, the file's directory is the store's to create.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::Connect {
                    database: name.clone(),
                    source: Box::new(e),
                })?;
            }
        }
        let connection = match (target, opening) {
            // Never creates the file (it could be removed since it was checked).
            (SqliteTarget::File(path), Opening::Existing) => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            (SqliteTarget::File(path), Opening::Create) => Connection::open(path),
            (SqliteTarget::Memory, _) => Connection::open_in_memory(),
        }
        .map_err(connect)?;
        if opening == Opening::Existing {
            let holds_store: bool = connection
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pubsub_store_schema')",
                    [],
                    |r| r.get(0),
                )
                .map_err(connect)?;
            if !holds_store {
                return Err(Error::NoStore {
                    database: name,
                    missing: "it has no store tables".to_owned(),
                });
            }
        }
        crate::connect::configure_sqlite(&connection, matches!(target, SqliteTarget::File(_)))
            .map_err(connect)?;
        let mut sqlite = Sqlite { connection, name };
        sqlite.migrate()?;
        Ok(sqlite)
    }

    fn migrate(&mut self) -> Result<()> {
        STORE.migrate_sqlite(&mut self.connection, &self.name)
    }
}

fn ts(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(TIMESTAMP)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn parse_ts(key: &str, text: &str) -> Result<OffsetDateTime> {
    PrimitiveDateTime::parse(text, TIMESTAMP)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|e| Error::CorruptRow {
            key: key.to_owned(),
            message: format!("timestamp `{}`: {e}", pubsub_core::text::quote(text)),
        })
}

fn parse_json(key: &str, column: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::CorruptRow {
        key: key.to_owned(),
        message: format!("{column} is not JSON: {e}"),
    })
}

fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::try_parse(text).map_err(|e| Error::CorruptRow {
        key: format!("`{}`", pubsub_core::text::quote(text)),
        message: format!("not a UUID: {e}"),
    })
}

/// An event row: read inside rusqlite's row callback (the outer error: the driver's), then
/// checked (the inner one: a row that does not make an event).
fn stored_event(r: &Row<'_>) -> rusqlite::Result<Result<StoredEvent>> {
    let id: String = r.get(0)?;
    let (timestamp, data): (String, String) = (r.get(3)?, r.get(4)?);
    let (headers, received): (String, String) = (r.get(8)?, r.get(9)?);
    let (routing_key, version): (String, String) = (r.get(1)?, r.get(2)?);
    let (correlation, causation, producer) = (r.get(5)?, r.get(6)?, r.get(7)?);
    let body: Option<Vec<u8>> = r.get(10)?;
    let (domain, action): (String, String) = (r.get(12)?, r.get(13)?);
    Ok(parse_uuid(&id).and_then(|event_id| {
        let key = format!("event {event_id}");
        StoredEvent::from_columns(
            event_id,
            routing_key,
            (&domain, &action),
            &version,
            parse_ts(&key, &timestamp)?,
            parse_json(&key, "data", &data)?,
            correlation,
            causation,
            producer,
            parse_json(&key, "headers", &headers)?,
            parse_ts(&key, &received)?,
        )
        .map(|event| event.with_body(body))
    }))
}

/// A filter's parameter as SQLite keeps it: times and ids as text.
fn bind(param: &Param) -> String {
    match param {
        Param::Text(text) => text.clone(),
        Param::Time(t) => ts(*t),
        Param::Uuid(id) => id.to_string(),
    }
}

/// The note an admission leaves in a task's error when the task was RUNNING: its attempt
/// never finished (SQLite's SQL, the stored row's attempts in it).
const INTERRUPTED_SQLITE: &str = "'attempt ' || attempts || ' was interrupted: its worker stopped \
     while running it (or another worker runs it now)'";

/// A time limit in milliseconds, as stored.
fn limit_ms(limit: std::time::Duration) -> i64 {
    i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
}

impl Sqlite {
    /// Runs `sql` (the receipt or the admission of `task`: its eight parameters) and returns
    /// the task's record: the one the insert returns, else the one stored (a task stored
    /// before, or one the admission left as it is).
    fn write_task(&mut self, sql: &str, task: &NewTask<'_>, doing: &str) -> Result<TaskRecord> {
        let now = ts(OffsetDateTime::now_utc());
        let written = self
            .connection
            .prepare_cached(sql)
            .and_then(|mut statement| {
                statement
                    .query_row(
                        params![
                            task.task_id.to_string(),
                            task.task_name,
                            task.payload.to_string(),
                            task.routing_key,
                            task.correlation_id,
                            task.producer,
                            now,
                            task.time_limit.map(limit_ms),
                        ],
                        task_record,
                    )
                    .optional()
            })
            .map_err(|e| Error::query(doing.to_owned(), e))?;
        match written {
            Some(record) => record,
            None => self.task(task.task_id)?.ok_or(Error::UnknownTask {
                task_id: task.task_id,
            }),
        }
    }
}

/// A task row, read and checked as [`stored_event`] reads an event row.
fn task_record(r: &Row<'_>) -> rusqlite::Result<Result<TaskRecord>> {
    let id: String = r.get(0)?;
    let (task_name, payload, status): (String, String, String) = (r.get(1)?, r.get(2)?, r.get(3)?);
    let (result, error): (Option<String>, Option<String>) = (r.get(4)?, r.get(5)?);
    let attempts: i64 = r.get(6)?;
    let (routing_key, correlation, producer) = (r.get(7)?, r.get(8)?, r.get(9)?);
    let (created, updated): (String, String) = (r.get(10)?, r.get(11)?);
    let (started, finished): (Option<String>, Option<String>) = (r.get(15)?, r.get(16)?);
    let limit_ms: Option<i64> = r.get(17)?;
    Ok(parse_uuid(&id).and_then(|task_id| {
        let key = format!("task {task_id}");
        Ok(TaskRecord {
            task_id,
            task_name,
            payload: parse_json(&key, "payload", &payload)?,
            status: TaskStatus::stored(task_id, &status)?,
            result: result.map(|r| parse_json(&key, "result", &r)).transpose()?,
            error,
            attempts: u32::try_from(attempts).unwrap_or(0),
            routing_key,
            correlation_id: correlation,
            producer,
            created_at: parse_ts(&key, &created)?,
            updated_at: parse_ts(&key, &updated)?,
            started_at: started.map(|t| parse_ts(&key, &t)).transpose()?,
            finished_at: finished.map(|t| parse_ts(&key, &t)).transpose()?,
            time_limit: limit_ms.map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
        })
    }))
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn transaction_control(&mut self, sql: &str) -> Result<()> {
        // IMMEDIATE: the write lock from the start, so that concurrent writers wait for it
        // (busy timeout) instead of failing at their first write.
        let sql = if sql == "BEGIN" {
            "BEGIN IMMEDIATE"
        } else {
            sql
        };
        self.connection
            .execute_batch(sql)
            .map_err(|e| Error::query(format!("{sql} in {}", self.name), e))
    }

    fn append_events(&mut self, rows: &[EventRow]) -> Result<usize> {
        let doing = || format!("storing {} event(s) in {}", rows.len(), self.name);
        let tx = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| Error::query(doing(), e))?;
        let mut inserted = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO pubsub_events (event_id, routing_key, domain, action, version, \
                     timestamp, data, correlation_id, causation_id, producer, headers, received_at, \
                     body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .map_err(|e| Error::query(doing(), e))?;
            for row in rows {
                inserted += insert
                    .execute(params![
                        row.event_id.to_string(),
                        row.routing_key,
                        row.domain,
                        row.action,
                        row.version,
                        ts(row.timestamp),
                        row.data,
                        row.correlation_id,
                        row.causation_id,
                        row.producer,
                        row.headers,
                        ts(row.received_at),
                        row.body,
                    ])
                    .map_err(|e| Error::query(doing(), e))?;
            }
        }
        tx.commit().map_err(|e| Error::query(doing(), e))?;
        Ok(inserted)
    }

    fn query_events(
        &mut self,
        query: &EventQuery,
        each: &mut dyn FnMut(StoredEvent) -> bool,
    ) -> Result<()> {
        let doing = || format!("querying events in {}", self.name);
        let select = filter::events(query, Placeholder::Question);
        let mut statement = self
            .connection
            .prepare(&select.sql)
            .map_err(|e| Error::query(doing(), e))?;
        let mut rows = statement
            .query(rusqlite::params_from_iter(select.params.iter().map(bind)))
            .map_err(|e| Error::query(doing(), e))?;
        while let Some(row) = rows.next().map_err(|e| Error::query(doing(), e))? {
            let event = stored_event(row).map_err(|e| Error::query(doing(), e))??;
            if !each(event) {
                break;
            }
        }
        Ok(())
    }

    fn count_events(&mut self) -> Result<u64> {
        let n: i64 = self
            .connection
            .query_row("SELECT COUNT(*) FROM pubsub_events", [], |r| r.get(0))
            .map_err(|e| Error::query(format!("counting events in {}", self.name), e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn receive_task(&mut self, task: &NewTask<'_>) -> Result<TaskRecord> {
        let doing = format!("recording task {} in {}", task.task_id, self.name);
        let sql = format!(
            "INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
             routing_key, correlation_id, producer, created_at, updated_at, time_limit_ms) \
             VALUES (?1, ?2, ?3, 'PENDING', 0, ?4, ?5, ?6, ?7, ?7, ?8) \
             ON CONFLICT (task_id) DO NOTHING RETURNING {TASK_COLUMNS}"
        );
        self.write_task(&sql, task, &doing)
    }

    fn admit_task(&mut self, task: &NewTask<'_>) -> Result<TaskRecord> {
        let doing = format!(
            "recording task {} as started in {}",
            task.task_id, self.name
        );
        let sql = format!(
            "INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
             routing_key, correlation_id, producer, created_at, updated_at, started_at, \
             time_limit_ms) \
             VALUES (?1, ?2, ?3, 'RUNNING', 1, ?4, ?5, ?6, ?7, ?7, ?7, ?8) \
             ON CONFLICT (task_id) DO UPDATE SET status = 'RUNNING', attempts = attempts + 1, \
             updated_at = excluded.updated_at, started_at = excluded.started_at, \
             finished_at = NULL, time_limit_ms = excluded.time_limit_ms, \
             error = CASE WHEN status = 'RUNNING' THEN {INTERRUPTED_SQLITE} ELSE error END \
             WHERE status NOT IN ('COMPLETED', 'CANCELLED') RETURNING {TASK_COLUMNS}"
        );
        self.write_task(&sql, task, &doing)
    }

    fn claim_tasks(&mut self, ids: &[Uuid]) -> Result<Vec<Option<TaskState>>> {
        let doing = || format!("reading {} tasks to run in {}", ids.len(), self.name);
        // The transaction (`BEGIN IMMEDIATE`) holds the write lock: nothing to lock per row.
        let mut statement = self
            .connection
            .prepare_cached("SELECT status, attempts FROM pubsub_tasks WHERE task_id = ?1")
            .map_err(|e| Error::query(doing(), e))?;
        let mut states = Vec::with_capacity(ids.len());
        for &task_id in ids {
            let row = statement
                .query_row([task_id.to_string()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
                .map_err(|e| Error::query(doing(), e))?;
            states.push(match row {
                Some((status, attempts)) => Some(TaskState {
                    task_id,
                    status: TaskStatus::stored(task_id, &status)?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                }),
                None => None,
            });
        }
        Ok(states)
    }

    fn record_runs(&mut self, runs: &[TaskRun<'_>]) -> Result<Vec<Uuid>> {
        let doing = || format!("recording {} task runs in {}", runs.len(), self.name);
        let now = ts(OffsetDateTime::now_utc());
        let mut statement = self
            .connection
            .prepare_cached(
                "INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
                 routing_key, correlation_id, producer, created_at, updated_at, time_limit_ms, \
                 started_at, finished_at, result, error) \
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8, ?8, ?9, ?10, \
                 CASE WHEN ?4 IN ('COMPLETED', 'FAILED') THEN ?8 END, ?11, ?12) \
                 ON CONFLICT (task_id) DO UPDATE SET status = excluded.status, \
                 attempts = attempts + 1, updated_at = excluded.updated_at, \
                 time_limit_ms = excluded.time_limit_ms, started_at = excluded.started_at, \
                 finished_at = excluded.finished_at, result = excluded.result, \
                 error = excluded.error \
                 WHERE status NOT IN ('COMPLETED', 'CANCELLED')",
            )
            .map_err(|e| Error::query(doing(), e))?;
        let mut left = Vec::new();
        for run in runs {
            let task = &run.task;
            let (result, error) = match run.outcome {
                TaskChange::Complete(result) => (Some(result.to_string()), None),
                TaskChange::RetryLater(error) | TaskChange::Fail(error) => (None, Some(error)),
                // Refused by `TaskStore::record_all`.
                TaskChange::Start => (None, None),
            };
            let written = statement
                .execute(params![
                    task.task_id.to_string(),
                    task.task_name,
                    task.payload.to_string(),
                    run.outcome.status().as_str(),
                    task.routing_key,
                    task.correlation_id,
                    task.producer,
                    now,
                    task.time_limit.map(limit_ms),
                    ts(run.started_at),
                    result,
                    error,
                ])
                .map_err(|e| Error::query(doing(), e))?;
            if written == 0 {
                left.push(task.task_id);
            }
        }
        Ok(left)
    }

    fn cancel_task(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>> {
        let doing = || format!("cancelling task {task_id} in {}", self.name);
        let now = ts(OffsetDateTime::now_utc());
        self.connection
            .prepare_cached(&format!(
                "INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
                 routing_key, created_at, updated_at, finished_at) \
                 VALUES (?1, '', '{{}}', 'CANCELLED', 0, '', ?2, ?2, ?2) \
                 ON CONFLICT (task_id) DO UPDATE SET status = 'CANCELLED', \
                 updated_at = excluded.updated_at, finished_at = excluded.finished_at \
                 WHERE status = 'PENDING' RETURNING {TASK_COLUMNS}"
            ))
            .and_then(|mut s| {
                s.query_row(params![task_id.to_string(), now], task_record)
                    .optional()
            })
            .map_err(|e| Error::query(doing(), e))?
            .transpose()
    }

    fn change_tasks(&mut self, changes: &[(Uuid, TaskChange<'_>)]) -> Result<usize> {
        let name = self.name.clone();
        let doing = || format!("updating {} tasks in {name}", changes.len());
        let now = ts(OffsetDateTime::now_utc());
        let mut changed = 0;
        for (task_id, change) in changes {
            let id = task_id.to_string();
            let status = change.status().as_str();
            changed += match change {
                TaskChange::Start => usize::from(self.change_task(*task_id, *change)?.is_some()),
                TaskChange::Complete(result) => self
                    .connection
                    .prepare_cached(
                        "UPDATE pubsub_tasks SET status = ?2, result = ?3, error = NULL, \
                         updated_at = ?4, finished_at = ?4 WHERE task_id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, status, result.to_string(), now]))
                    .map_err(|e| Error::query(doing(), e))?,
                TaskChange::RetryLater(error) | TaskChange::Fail(error) => self
                    .connection
                    .prepare_cached(
                        "UPDATE pubsub_tasks SET status = ?2, error = ?3, updated_at = ?4, \
                         finished_at = CASE WHEN ?2 = 'FAILED' THEN ?4 END WHERE task_id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, status, error, now]))
                    .map_err(|e| Error::query(doing(), e))?,
            };
        }
        Ok(changed)
    }

    fn change_task(&mut self, task_id: Uuid, change: TaskChange<'_>) -> Result<Option<TaskRecord>> {
        let doing = || format!("updating task {task_id} in {}", self.name);
        let now = ts(OffsetDateTime::now_utc());
        let id = task_id.to_string();
        let status = change.status().as_str();
        let returning = |sql: &str| format!("{sql} RETURNING {TASK_COLUMNS}");
        let row = match change {
            TaskChange::Start => self
                .connection
                .prepare_cached(&returning(
                    "UPDATE pubsub_tasks SET status = ?2, attempts = attempts + 1, updated_at = ?3, \
                     started_at = ?3, finished_at = NULL WHERE task_id = ?1",
                ))
                .and_then(|mut s| {
                    s.query_row(params![id, status, now], task_record)
                        .optional()
                }),
            TaskChange::Complete(result) => self
                .connection
                .prepare_cached(&returning(
                    "UPDATE pubsub_tasks SET status = ?2, result = ?3, error = NULL, updated_at = ?4, \
                     finished_at = ?4 WHERE task_id = ?1",
                ))
                .and_then(|mut s| {
                    s.query_row(params![id, status, result.to_string(), now], task_record)
                        .optional()
                }),
            TaskChange::RetryLater(error) | TaskChange::Fail(error) => self
                .connection
                .prepare_cached(&returning(
                    "UPDATE pubsub_tasks SET status = ?2, error = ?3, updated_at = ?4, \
                     finished_at = CASE WHEN ?2 = 'FAILED' THEN ?4 END WHERE task_id = ?1",
                ))
                .and_then(|mut s| {
                    s.query_row(params![id, status, error, now], task_record)
                        .optional()
                }),
        }
        .map_err(|e| Error::query(doing(), e))?;
        row.transpose()
    }

    fn task(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>> {
        self.connection
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM pubsub_tasks WHERE task_id = ?1"
            ))
            .and_then(|mut s| s.query_row([task_id.to_string()], task_record).optional())
            .map_err(|e| Error::query(format!("reading task {task_id} in {}", self.name), e))?
            .transpose()
    }

    fn tasks(&mut self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        let doing = || format!("listing tasks in {}", self.name);
        let select = filter::tasks(filter, Placeholder::Question);
        let mut statement = self
            .connection
            .prepare(&select.sql)
            .map_err(|e| Error::query(doing(), e))?;
        let rows = statement
            .query_map(
                rusqlite::params_from_iter(select.params.iter().map(bind)),
                task_record,
            )
            .map_err(|e| Error::query(doing(), e))?;
        let mut records = Vec::new();
        for row in rows {
            records.push(row.map_err(|e| Error::query(doing(), e))??);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_sort_as_text() {
        let a = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_001_000).unwrap();
        let b = a + Duration::from_millis(1);
        assert!(ts(a) < ts(b));
        assert_eq!(ts(a), "2023-11-14T22:13:20.000001Z");
        assert_eq!(parse_ts("k", &ts(a)).unwrap(), a);
        assert!(parse_ts("k", "yesterday").is_err());
    }
}
