//! The PostgreSQL backend: JSONB columns, one `INSERT ... SELECT FROM UNNEST` per batch.

use std::borrow::Cow;

use postgres::types::{Json, ToSql};
use postgres::{Client, NoTls, SimpleQueryMessage, Statement};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::backend::{Backend, Opening};
use crate::error::{Error, Result};
use crate::exact::Originals;
use crate::filter::{self, Param, Placeholder};
use crate::migrations::STORE;
use crate::model::{
    EventQuery, EventRow, NewTask, StoredEvent, TaskChange, TaskFilter, TaskRecord, TaskRun,
    TaskState,
};

/// A PostgreSQL connection holding the store's tables.
pub(crate) struct Postgres {
    client: Client,
    name: String,
    /// The batch insert, prepared once per connection.
    insert_events: Option<Statement>,
    /// The task statements, prepared once per connection (a statement given as text is
    /// prepared on every call: a round trip more).
    task_statements: std::collections::HashMap<&'static str, Statement>,
    /// The channel its task commits are told on (see [`tasks_channel`]).
    channel: String,
}

/// The `NOTIFY` channel of the task store in `schema`: `pubsub_tasks`, or for a store in a
/// schema of its own `pubsub_tasks_` and a hash of the schema's name (stable across
/// processes; a channel is an identifier of at most 63 bytes), so that the stores of one
/// database do not wake each other's waiters.
fn tasks_channel(schema: Option<&str>) -> String {
    match schema {
        None => "pubsub_tasks".to_owned(),
        Some(schema) => {
            // FNV-1a, 64 bits.
            let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("pubsub_tasks_{hash:016x}")
        }
    }
}

impl Postgres {
    pub(crate) fn open(
        config: &postgres::Config,
        schema: Option<&str>,
        database: &crate::Database,
        opening: Opening,
    ) -> Result<Postgres> {
        let name = database.to_string();
        let client = config.connect(NoTls).map_err(|e| Error::Connect {
            database: name.clone(),
            source: Box::new(e),
        })?;
        let mut pg = Postgres {
            client,
            name,
            insert_events: None,
            task_statements: std::collections::HashMap::new(),
            channel: tasks_channel(schema),
        };
        crate::connect::select_schema(&mut pg.client, schema, opening == Opening::Create)?;
        if opening == Opening::Existing {
            let doing = "looking for the store's tables";
            let found: bool = pg
                .client
                .query_one("SELECT to_regclass('pubsub_store_schema') IS NOT NULL", &[])
                .and_then(|r| r.try_get(0))
                .map_err(|e| Error::query(doing, e))?;
            if !found {
                return Err(Error::NoStore {
                    database: pg.name,
                    missing: match schema {
                        Some(schema) => format!("schema {schema} has no store tables"),
                        None => "it has no store tables".to_owned(),
                    },
                });
            }
        }
        pg.migrate()?;
        Ok(pg)
    }

    fn migrate(&mut self) -> Result<()> {
        STORE.migrate_postgres(&mut self.client, &self.name)
    }
}

/// The states read of `ids`, in their order (`None`: not stored).
fn in_order(ids: &[Uuid], states: Vec<TaskState>) -> Vec<Option<TaskState>> {
    let mut stored: std::collections::HashMap<Uuid, TaskState> =
        states.into_iter().map(|s| (s.task_id, s)).collect();
    ids.iter().map(|id| stored.remove(id)).collect()
}

/// A filter's parameter in PostgreSQL's own type.
fn bind(param: &Param) -> &(dyn ToSql + Sync) {
    match param {
        Param::Text(text) => text,
        Param::Time(t) => t,
        Param::Uuid(id) => id,
    }
}

mod rows;
mod task_sql;

use self::rows::{stored_event, task_record, task_state, task_state_text};

/// A time limit in milliseconds, as stored.
fn limit_ms(limit: std::time::Duration) -> i64 {
    i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
}

/// An event row as PostgreSQL can hold it (see `exact.rs`): NUL replaced in the text and
/// jsonb columns, the originals kept.
struct SafeRow<'r> {
    routing_key: Cow<'r, str>,
    domain: Cow<'r, str>,
    action: Cow<'r, str>,
    version: Cow<'r, str>,
    data: Cow<'r, str>,
    correlation_id: Option<Cow<'r, str>>,
    causation_id: Option<Cow<'r, str>>,
    producer: Option<Cow<'r, str>>,
    headers: Cow<'r, str>,
    originals: Option<String>,
}

impl<'r> SafeRow<'r> {
    fn of(row: &'r EventRow) -> SafeRow<'r> {
        let mut exact = Originals::default();
        let mut safe = SafeRow {
            routing_key: exact.text("routing_key", &row.routing_key),
            domain: exact.text("domain", &row.domain),
            action: exact.text("action", &row.action),
            version: exact.text("version", &row.version),
            data: exact.json("data", &row.data),
            correlation_id: exact.text_opt("correlation_id", row.correlation_id.as_deref()),
            causation_id: exact.text_opt("causation_id", row.causation_id.as_deref()),
            producer: exact.text_opt("producer", row.producer.as_deref()),
            headers: exact.json("headers", &row.headers),
            originals: None,
        };
        safe.originals = exact.column();
        safe
    }
}

impl Postgres {
    /// Runs `sql` (the receipt or the admission of `task`: its nine parameters) and returns
    /// the task's record: the one the statement returns, else the one stored (a task the
    /// admission left as it is).
    fn write_task(
        &mut self,
        sql: &'static str,
        task: &NewTask<'_>,
        doing: &str,
    ) -> Result<TaskRecord> {
        let now = OffsetDateTime::now_utc();
        let mut exact = Originals::default();
        let task_name = exact.text("task_name", task.task_name);
        let payload = exact.value("payload", task.payload);
        let routing_key = exact.text("routing_key", task.routing_key);
        let correlation_id = exact.text_opt("correlation_id", task.correlation_id);
        let producer = exact.text_opt("producer", task.producer);
        let originals = exact.column();
        let row = self
            .task_statement(sql)
            .and_then(|statement| {
                self.client.query_opt(
                    &statement,
                    &[
                        &task.task_id,
                        &task_name,
                        &Json(payload.as_ref()),
                        &routing_key,
                        &correlation_id,
                        &producer,
                        &now,
                        &originals,
                        &task.time_limit.map(limit_ms),
                    ],
                )
            })
            .map_err(|e| Error::query(doing.to_owned(), e))?;
        match row {
            Some(row) => task_record(&row, doing),
            None => self.task(task.task_id)?.ok_or(Error::UnknownTask {
                task_id: task.task_id,
            }),
        }
    }

    /// The task statement `sql`, prepared once per connection.
    fn task_statement(
        &mut self,
        sql: &'static str,
    ) -> std::result::Result<Statement, postgres::Error> {
        if let Some(statement) = self.task_statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.task_statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Backend for Postgres {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn transaction_control(&mut self, sql: &str) -> Result<()> {
        self.client
            .batch_execute(sql)
            .map_err(|e| Error::query(format!("{sql} in {}", self.name), e))
    }

    fn commit_tasks(&mut self) -> Result<()> {
        // Delivered at the commit, once per transaction whatever it holds.
        let sql = format!("NOTIFY {}; COMMIT", self.channel);
        self.transaction_control(&sql)
    }

    fn watch_tasks(&mut self) -> Result<bool> {
        let sql = format!("LISTEN {}", self.channel);
        self.transaction_control(&sql)?;
        Ok(true)
    }

    fn wait_for_tasks(&mut self, timeout: std::time::Duration) -> Result<bool> {
        let doing = || format!("waiting for task commits in {}", self.name);
        use postgres::fallible_iterator::FallibleIterator;
        let mut notifications = self.client.notifications();
        let came = notifications
            .timeout_iter(timeout)
            .next()
            .map_err(|e| Error::query(doing(), e))?
            .is_some();
        // The others told meanwhile say the same.
        let mut told = notifications.iter();
        while told.next().map_err(|e| Error::query(doing(), e))?.is_some() {}
        Ok(came)
    }

    fn append_events(&mut self, rows: &[EventRow]) -> Result<usize> {
        let doing = format!("storing {} event(s) in {}", rows.len(), self.name);
        if rows.is_empty() {
            return Ok(0);
        }
        let statement = match &self.insert_events {
            Some(s) => s.clone(),
            None => {
                let s = self
                    .client
                    .prepare(
                        "INSERT INTO pubsub_events (event_id, routing_key, domain, action, version, \
                         timestamp, data, correlation_id, causation_id, producer, headers, received_at, \
                         body, originals) \
                         SELECT e, k, d, a, v, t, x::jsonb, c, ca, p, h::jsonb, r, b, o FROM UNNEST(\
                         $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], \
                         $11::text[], $12::timestamptz[], $13::bytea[], $14::text[]) \
                         AS u(e, k, d, a, v, t, x, c, ca, p, h, r, b, o) \
                         ON CONFLICT (event_id) DO NOTHING",
                    )
                    .map_err(|e| Error::query(doing.clone(), e))?;
                self.insert_events = Some(s.clone());
                s
            }
        };
        let safe: Vec<SafeRow<'_>> = rows.iter().map(SafeRow::of).collect();
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let keys: Vec<&str> = safe.iter().map(|r| r.routing_key.as_ref()).collect();
        let domains: Vec<&str> = safe.iter().map(|r| r.domain.as_ref()).collect();
        let actions: Vec<&str> = safe.iter().map(|r| r.action.as_ref()).collect();
        let versions: Vec<&str> = safe.iter().map(|r| r.version.as_ref()).collect();
        let times: Vec<OffsetDateTime> = rows.iter().map(|r| r.timestamp).collect();
        let data: Vec<&str> = safe.iter().map(|r| r.data.as_ref()).collect();
        let correlations: Vec<Option<&str>> =
            safe.iter().map(|r| r.correlation_id.as_deref()).collect();
        let causations: Vec<Option<&str>> =
            safe.iter().map(|r| r.causation_id.as_deref()).collect();
        let producers: Vec<Option<&str>> = safe.iter().map(|r| r.producer.as_deref()).collect();
        let headers: Vec<&str> = safe.iter().map(|r| r.headers.as_ref()).collect();
        let received: Vec<OffsetDateTime> = rows.iter().map(|r| r.received_at).collect();
        let bodies: Vec<Option<&[u8]>> = rows.iter().map(|r| r.body.as_deref()).collect();
        let originals: Vec<Option<&str>> = safe.iter().map(|r| r.originals.as_deref()).collect();
        let params: [&(dyn ToSql + Sync); 14] = [
            &ids,
            &keys,
            &domains,
            &actions,
            &versions,
            &times,
            &data,
            &correlations,
            &causations,
            &producers,
            &headers,
            &received,
            &bodies,
            &originals,
        ];
        // One statement is one transaction: all the rows or none.
        let inserted = self.client.execute(&statement, &params).map_err(|e| {
            if e.is_closed() {
                self.insert_events = None;
            }
            Error::query(doing.clone(), e)
        })?;
        Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
    }

    fn query_events(
        &mut self,
        query: &EventQuery,
        each: &mut dyn FnMut(StoredEvent) -> bool,
    ) -> Result<()> {
        let doing = format!("querying events in {}", self.name);
        let select = filter::events(query, Placeholder::Dollar);
        let mut rows = self
            .client
            .query_raw(select.sql.as_str(), select.params.iter().map(bind))
            .map_err(|e| Error::query(doing.clone(), e))?;
        use postgres::fallible_iterator::FallibleIterator;
        while let Some(row) = rows.next().map_err(|e| Error::query(doing.clone(), e))? {
            if !each(stored_event(&row, &doing)?) {
                break;
            }
        }
        Ok(())
    }

    fn count_events(&mut self) -> Result<u64> {
        let n: i64 = self
            .client
            .query_one("SELECT COUNT(*) FROM pubsub_events", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| Error::query(format!("counting events in {}", self.name), e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn receive_task(&mut self, task: &NewTask<'_>) -> Result<TaskRecord> {
        let doing = format!("recording task {} in {}", task.task_id, self.name);
        self.write_task(&task_sql::RECEIVE, task, &doing)
    }

    fn admit_task(&mut self, task: &NewTask<'_>) -> Result<TaskRecord> {
        let doing = format!(
            "recording task {} as started in {}",
            task.task_id, self.name
        );
        self.write_task(&task_sql::ADMIT, task, &doing)
    }

    fn claim_tasks(&mut self, ids: &[Uuid]) -> Result<Vec<Option<TaskState>>> {
        let doing = format!("reading {} tasks to run in {}", ids.len(), self.name);
        // Not prepared: see `change_tasks`.
        let rows = self
            .client
            .query(task_sql::CLAIM_ALL, &[&ids])
            .map_err(|e| Error::query(doing.clone(), e))?;
        let states = rows
            .iter()
            .map(|row| task_state(row, &doing))
            .collect::<Result<Vec<_>>>()?;
        Ok(in_order(ids, states))
    }

    fn begin_claim(&mut self, ids: &[Uuid]) -> Result<Vec<Option<TaskState>>> {
        if ids.is_empty() {
            return self.transaction_control("BEGIN").map(|()| Vec::new());
        }
        let doing = format!("reading {} tasks to run in {}", ids.len(), self.name);
        let messages = self
            .client
            .simple_query(&task_sql::begin_claim(ids))
            .map_err(|e| Error::query(doing, e))?;
        let states = messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(task_state_text(row)),
                _ => None,
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(in_order(ids, states))
    }

    fn record_runs(&mut self, runs: &[TaskRun<'_>]) -> Result<Vec<Uuid>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let doing = format!("recording {} task runs in {}", runs.len(), self.name);
        let now = OffsetDateTime::now_utc();
        // In the order of their ids, as every worker writes them: two batches that share
        // tasks wait for each other rather than deadlock.
        let mut runs: Vec<&TaskRun<'_>> = runs.iter().collect();
        runs.sort_by_key(|run| run.task.task_id);
        let n = runs.len();
        let mut ids = Vec::with_capacity(n);
        let (mut names, mut payloads, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        let (mut correlations, mut producers, mut originals) = (Vec::new(), Vec::new(), Vec::new());
        let (mut limits, mut statuses, mut started) = (Vec::new(), Vec::new(), Vec::new());
        let (mut results, mut result_originals) = (Vec::new(), Vec::new());
        let (mut errors, mut error_originals) = (Vec::new(), Vec::new());
        for run in &runs {
            let task = &run.task;
            let mut exact = Originals::default();
            ids.push(task.task_id);
            names.push(exact.text("task_name", task.task_name));
            payloads.push(Json(exact.value("payload", task.payload)));
            keys.push(exact.text("routing_key", task.routing_key));
            correlations.push(exact.text_opt("correlation_id", task.correlation_id));
            producers.push(exact.text_opt("producer", task.producer));
            originals.push(exact.column());
            limits.push(task.time_limit.map(limit_ms));
            statuses.push(run.outcome.status().as_str());
            started.push(run.started_at);
            let (result, result_original, error, error_original) = match run.outcome {
                TaskChange::Complete(result) => {
                    let safe = crate::exact::value(result);
                    let original = safe.as_ref().map(|_| result.to_string());
                    let stored = safe.map_or(Cow::Borrowed(result), Cow::Owned);
                    (Some(Json(stored)), original, None, None)
                }
                TaskChange::RetryLater(error) | TaskChange::Fail(error) => {
                    let safe = crate::exact::text(error);
                    let original = safe.as_ref().map(|_| Value::from(error).to_string());
                    let stored = safe.map_or(Cow::Borrowed(error), Cow::Owned);
                    (None, None, Some(stored), original)
                }
                // Refused by `TaskStore::record_all`.
                TaskChange::Start => (None, None, None, None),
            };
            results.push(result);
            result_originals.push(result_original);
            errors.push(error);
            error_originals.push(error_original);
        }
        let rows = self
            .task_statement(task_sql::RECORD_ALL)
            .and_then(|statement| {
                self.client.query(
                    &statement,
                    &[
                        &ids,
                        &names,
                        &payloads,
                        &keys,
                        &correlations,
                        &producers,
                        &originals,
                        &limits,
                        &statuses,
                        &started,
                        &results,
                        &result_originals,
                        &errors,
                        &error_originals,
                        &now,
                    ],
                )
            })
            .map_err(|e| Error::query(doing.clone(), e))?;
        let mut written = std::collections::HashSet::with_capacity(rows.len());
        for row in &rows {
            let id: Uuid = row.try_get(0).map_err(|e| Error::query(doing.clone(), e))?;
            written.insert(id);
        }
        Ok(ids.into_iter().filter(|id| !written.contains(id)).collect())
    }

    fn cancel_task(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>> {
        let doing = format!("cancelling task {task_id} in {}", self.name);
        let now = OffsetDateTime::now_utc();
        let row = self
            .task_statement(&task_sql::CANCEL)
            .and_then(|s| self.client.query_opt(&s, &[&task_id, &now]))
            .map_err(|e| Error::query(doing.clone(), e))?;
        row.map(|r| task_record(&r, &doing)).transpose()
    }

    fn change_tasks(&mut self, changes: &[(Uuid, TaskChange<'_>)]) -> Result<usize> {
        let doing = format!("updating {} tasks in {}", changes.len(), self.name);
        let now = OffsetDateTime::now_utc();
        let (mut done_ids, mut results, mut result_originals) =
            (Vec::new(), Vec::new(), Vec::new());
        let (mut failed_ids, mut statuses, mut errors, mut error_originals) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut changed = 0;
        for (task_id, change) in changes {
            match change {
                TaskChange::Complete(result) => {
                    let safe = crate::exact::value(result);
                    result_originals.push(safe.as_ref().map(|_| result.to_string()));
                    results.push(Json(safe.unwrap_or_else(|| (*result).clone())));
                    done_ids.push(*task_id);
                }
                TaskChange::RetryLater(error) | TaskChange::Fail(error) => {
                    let safe = crate::exact::text(error);
                    error_originals.push(safe.as_ref().map(|_| Value::from(*error).to_string()));
                    errors.push(safe.unwrap_or_else(|| (*error).to_owned()));
                    statuses.push(change.status().as_str());
                    failed_ids.push(*task_id);
                }
                TaskChange::Start => {
                    changed += usize::from(self.change_task(*task_id, *change)?.is_some());
                }
            }
        }
        // Not prepared: planned with each batch's arrays and the table's size then. A prepared
        // statement's generic plan, made while the table is new and small, joins by a scan of
        // the whole table and keeps doing so as it grows (measured: 2.5x slower per batch
        // within 30,000 tasks).
        if !done_ids.is_empty() {
            changed += self
                .client
                .execute(
                    task_sql::COMPLETE_ALL,
                    &[&done_ids, &results, &result_originals, &now],
                )
                .map_err(|e| Error::query(doing.clone(), e))? as usize;
        }
        if !failed_ids.is_empty() {
            changed += self
                .client
                .execute(
                    task_sql::FAIL_ALL,
                    &[&failed_ids, &statuses, &errors, &error_originals, &now],
                )
                .map_err(|e| Error::query(doing.clone(), e))? as usize;
        }
        Ok(changed)
    }

    fn change_task(&mut self, task_id: Uuid, change: TaskChange<'_>) -> Result<Option<TaskRecord>> {
        let doing = format!("updating task {task_id} in {}", self.name);
        let now = OffsetDateTime::now_utc();
        let status = change.status().as_str();
        let rows = match change {
            TaskChange::Start => self
                .task_statement(&task_sql::START)
                .and_then(|s| self.client.query(&s, &[&task_id, &status, &now])),
            TaskChange::Complete(result) => {
                let safe = crate::exact::value(result);
                let original = safe.as_ref().map(|_| result.to_string());
                self.task_statement(&task_sql::COMPLETE).and_then(|s| {
                    self.client.query(
                        &s,
                        &[
                            &task_id,
                            &status,
                            &Json(safe.as_ref().unwrap_or(result)),
                            &now,
                            &original,
                        ],
                    )
                })
            }
            TaskChange::RetryLater(error) | TaskChange::Fail(error) => {
                let safe = crate::exact::text(error);
                let original = safe.as_ref().map(|_| Value::from(error).to_string());
                self.task_statement(&task_sql::FAIL).and_then(|s| {
                    self.client.query(
                        &s,
                        &[
                            &task_id,
                            &status,
                            &safe.as_deref().unwrap_or(error),
                            &now,
                            &original,
                        ],
                    )
                })
            }
        }
        .map_err(|e| Error::query(doing.clone(), e))?;
        rows.first().map(|r| task_record(r, &doing)).transpose()
    }

    fn task(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>> {
        let doing = format!("reading task {task_id} in {}", self.name);
        let row = self
            .task_statement(&task_sql::GET)
            .and_then(|s| self.client.query_opt(&s, &[&task_id]))
            .map_err(|e| Error::query(doing.clone(), e))?;
        row.map(|r| task_record(&r, &doing)).transpose()
    }

    fn tasks(&mut self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        let doing = format!("listing tasks in {}", self.name);
        let select = filter::tasks(filter, Placeholder::Dollar);
        let params: Vec<&(dyn ToSql + Sync)> = select.params.iter().map(bind).collect();
        let rows = self
            .client
            .query(select.sql.as_str(), &params)
            .map_err(|e| Error::query(doing.clone(), e))?;
        rows.iter().map(|r| task_record(r, &doing)).collect()
    }
}

#[cfg(test)]
mod channel_tests {
    use super::tasks_channel;

    #[test]
    fn each_schema_has_a_channel_of_its_own_that_is_an_identifier() {
        assert_eq!(tasks_channel(None), "pubsub_tasks");
        let a = tasks_channel(Some("tenant_a"));
        let long = "x".repeat(200);
        for channel in [
            &a,
            &tasks_channel(Some(&long)),
            &tasks_channel(Some("Ünïcode \"x\"")),
        ] {
            assert!(channel.len() <= 63, "{channel}");
            assert!(channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
        assert_eq!(a, tasks_channel(Some("tenant_a")), "stable");
        assert_ne!(a, tasks_channel(Some("tenant_b")));
    }
}
