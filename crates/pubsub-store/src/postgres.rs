//! The PostgreSQL backend: JSONB columns, one `INSERT ... SELECT FROM UNNEST` per batch.

use postgres::types::{Json, ToSql};
use postgres::{Client, NoTls, Row, Statement};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::backend::{migrations_from, Backend};
use crate::error::{Error, Result};
use crate::filter::{self, Param, Placeholder, TASK_COLUMNS};
use crate::model::{
    EventQuery, EventRow, NewTask, StoredEvent, TaskChange, TaskFilter, TaskRecord, TaskStatus,
};

/// The schema, by version.
const MIGRATIONS: &[&str] = &[
    // 1: events and tasks.
    "CREATE TABLE pubsub_events (
        event_id UUID PRIMARY KEY,
        routing_key TEXT NOT NULL,
        domain TEXT NOT NULL,
        action TEXT NOT NULL,
        version TEXT NOT NULL,
        timestamp TIMESTAMPTZ NOT NULL,
        data JSONB NOT NULL,
        correlation_id TEXT,
        causation_id TEXT,
        producer TEXT,
        headers JSONB NOT NULL,
        received_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX pubsub_events_timestamp ON pubsub_events (timestamp, event_id);
    CREATE INDEX pubsub_events_correlation ON pubsub_events (correlation_id);
    CREATE INDEX pubsub_events_domain ON pubsub_events (domain, timestamp);
    CREATE TABLE pubsub_tasks (
        task_id UUID PRIMARY KEY,
        task_name TEXT NOT NULL,
        payload JSONB NOT NULL,
        status TEXT NOT NULL,
        result JSONB,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        routing_key TEXT NOT NULL,
        correlation_id TEXT,
        producer TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX pubsub_tasks_status ON pubsub_tasks (status, updated_at);",
];

/// A lock key only the store's migrations take (`pg_advisory_xact_lock`), so that two
/// processes opening a new database do not create the tables twice.
const MIGRATION_LOCK: i64 = 0x7075_6273_7562_0001;

/// A PostgreSQL connection holding the store's tables.
pub(crate) struct Postgres {
    client: Client,
    name: String,
    /// The batch insert, prepared once per connection.
    insert_events: Option<Statement>,
}

impl Postgres {
    pub(crate) fn open(
        config: &postgres::Config,
        schema: Option<&str>,
        database: &crate::Database,
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
        };
        if let Some(schema) = schema {
            // `schema` is a checked plain name (see `Database::with_schema`).
            pg.client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
                ))
                .map_err(|e| Error::query(format!("selecting schema {schema}"), e))?;
        }
        pg.migrate()?;
        Ok(pg)
    }

    fn migrate(&mut self) -> Result<()> {
        let doing = "creating the store's schema";
        let mut tx = self
            .client
            .transaction()
            .map_err(|e| Error::query(doing, e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(|e| Error::query(doing, e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS pubsub_store_schema (version INTEGER NOT NULL)",
        )
        .map_err(|e| Error::query(doing, e))?;
        let found: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM pubsub_store_schema",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| Error::query(doing, e))?;
        for version in migrations_from(i64::from(found))? {
            let Some(sql) = usize::try_from(version - 1)
                .ok()
                .and_then(|i| MIGRATIONS.get(i))
            else {
                continue;
            };
            tx.batch_execute(sql).map_err(|e| Error::query(doing, e))?;
            let v = i32::try_from(version).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO pubsub_store_schema (version) VALUES ($1)",
                &[&v],
            )
            .map_err(|e| Error::query(doing, e))?;
            log::info!(
                "store schema of {} migrated to version {version}",
                self.name
            );
        }
        tx.commit().map_err(|e| Error::query(doing, e))
    }
}

/// A filter's parameter in PostgreSQL's own type.
fn bind(param: &Param) -> &(dyn ToSql + Sync) {
    match param {
        Param::Text(text) => text,
        Param::Time(t) => t,
        Param::Uuid(id) => id,
    }
}

fn stored_event(row: &Row, doing: &str) -> Result<StoredEvent> {
    let get = |e: postgres::Error| Error::query(doing.to_owned(), e);
    let Json(data): Json<Value> = row.try_get(4).map_err(get)?;
    let Json(headers): Json<Value> = row.try_get(8).map_err(get)?;
    StoredEvent::from_columns(
        row.try_get(0).map_err(get)?,
        row.try_get(1).map_err(get)?,
        row.try_get::<_, &str>(2).map_err(get)?,
        row.try_get(3).map_err(get)?,
        data,
        row.try_get(5).map_err(get)?,
        row.try_get(6).map_err(get)?,
        row.try_get(7).map_err(get)?,
        headers,
        row.try_get(9).map_err(get)?,
    )
}

fn task_record(row: &Row, doing: &str) -> Result<TaskRecord> {
    let get = |e: postgres::Error| Error::query(doing.to_owned(), e);
    let task_id: Uuid = row.try_get(0).map_err(get)?;
    let Json(payload): Json<Value> = row.try_get(2).map_err(get)?;
    let status: &str = row.try_get(3).map_err(get)?;
    let result: Option<Json<Value>> = row.try_get(4).map_err(get)?;
    let attempts: i32 = row.try_get(6).map_err(get)?;
    Ok(TaskRecord {
        task_id,
        task_name: row.try_get(1).map_err(get)?,
        payload,
        status: TaskStatus::stored(task_id, status)?,
        result: result.map(|Json(v)| v),
        error: row.try_get(5).map_err(get)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        routing_key: row.try_get(7).map_err(get)?,
        correlation_id: row.try_get(8).map_err(get)?,
        producer: row.try_get(9).map_err(get)?,
        created_at: row.try_get(10).map_err(get)?,
        updated_at: row.try_get(11).map_err(get)?,
    })
}

impl Backend for Postgres {
    fn describe(&self) -> String {
        self.name.clone()
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
                         timestamp, data, correlation_id, causation_id, producer, headers, received_at) \
                         SELECT e, k, d, a, v, t, x::jsonb, c, ca, p, h::jsonb, r FROM UNNEST(\
                         $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                         $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], \
                         $11::text[], $12::timestamptz[]) AS u(e, k, d, a, v, t, x, c, ca, p, h, r) \
                         ON CONFLICT (event_id) DO NOTHING",
                    )
                    .map_err(|e| Error::query(doing.clone(), e))?;
                self.insert_events = Some(s.clone());
                s
            }
        };
        let ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
        let keys: Vec<&str> = rows.iter().map(|r| r.routing_key.as_str()).collect();
        let domains: Vec<&str> = rows.iter().map(|r| r.domain.as_str()).collect();
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        let versions: Vec<&str> = rows.iter().map(|r| r.version.as_str()).collect();
        let times: Vec<OffsetDateTime> = rows.iter().map(|r| r.timestamp).collect();
        let data: Vec<&str> = rows.iter().map(|r| r.data.as_str()).collect();
        let correlations: Vec<Option<&str>> =
            rows.iter().map(|r| r.correlation_id.as_deref()).collect();
        let causations: Vec<Option<&str>> =
            rows.iter().map(|r| r.causation_id.as_deref()).collect();
        let producers: Vec<Option<&str>> = rows.iter().map(|r| r.producer.as_deref()).collect();
        let headers: Vec<&str> = rows.iter().map(|r| r.headers.as_str()).collect();
        let received: Vec<OffsetDateTime> = rows.iter().map(|r| r.received_at).collect();
        let params: [&(dyn ToSql + Sync); 12] = [
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
        let now = OffsetDateTime::now_utc();
        self.client
            .execute(
                "INSERT INTO pubsub_tasks (task_id, task_name, payload, status, attempts, \
                 routing_key, correlation_id, producer, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'PENDING', 0, $4, $5, $6, $7, $7) \
                 ON CONFLICT (task_id) DO NOTHING",
                &[
                    &task.task_id,
                    &task.task_name,
                    &Json(task.payload),
                    &task.routing_key,
                    &task.correlation_id,
                    &task.producer,
                    &now,
                ],
            )
            .map_err(|e| Error::query(doing, e))?;
        self.task(task.task_id)?.ok_or(Error::UnknownTask {
            task_id: task.task_id,
        })
    }

    fn change_task(&mut self, task_id: Uuid, change: TaskChange<'_>) -> Result<Option<TaskRecord>> {
        let doing = format!("updating task {task_id} in {}", self.name);
        let now = OffsetDateTime::now_utc();
        let status = change.status().as_str();
        let returning = format!(" RETURNING {TASK_COLUMNS}");
        let rows = match change {
            TaskChange::Start => self.client.query(
                &format!(
                    "UPDATE pubsub_tasks SET status = $2, attempts = attempts + 1, updated_at = $3 \
                     WHERE task_id = $1{returning}"
                ),
                &[&task_id, &status, &now],
            ),
            TaskChange::Complete(result) => self.client.query(
                &format!(
                    "UPDATE pubsub_tasks SET status = $2, result = $3, error = NULL, updated_at = $4 \
                     WHERE task_id = $1{returning}"
                ),
                &[&task_id, &status, &Json(result), &now],
            ),
            TaskChange::RetryLater(error) | TaskChange::Fail(error) => self.client.query(
                &format!(
                    "UPDATE pubsub_tasks SET status = $2, error = $3, updated_at = $4 \
                     WHERE task_id = $1{returning}"
                ),
                &[&task_id, &status, &error, &now],
            ),
        }
        .map_err(|e| Error::query(doing.clone(), e))?;
        rows.first().map(|r| task_record(r, &doing)).transpose()
    }

    fn task(&mut self, task_id: Uuid) -> Result<Option<TaskRecord>> {
        let doing = format!("reading task {task_id} in {}", self.name);
        let row = self
            .client
            .query_opt(
                &format!("SELECT {TASK_COLUMNS} FROM pubsub_tasks WHERE task_id = $1"),
                &[&task_id],
            )
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
