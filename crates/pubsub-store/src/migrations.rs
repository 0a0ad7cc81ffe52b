//! The store's tables, by version, in both backends' SQL: one [`Schema`](crate::Schema).

/// The store's tables: events and tasks.
pub(crate) const STORE: crate::Schema = crate::Schema {
    name: "store",
    version_table: "pubsub_store_schema",
    sqlite: SQLITE,
    #[cfg(feature = "postgres")]
    postgres: POSTGRES,
    #[cfg(not(feature = "postgres"))]
    postgres: &[],
    // A lock key only the store's migrations take.
    lock: 0x7075_6273_7562_0001,
};

/// SQLite's schema, by version.
const SQLITE: &[&str] = &[
    // 1: events and tasks.
    "CREATE TABLE pubsub_events (
        event_id TEXT PRIMARY KEY NOT NULL,
        routing_key TEXT NOT NULL,
        domain TEXT NOT NULL,
        action TEXT NOT NULL,
        version TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        data TEXT NOT NULL,
        correlation_id TEXT,
        causation_id TEXT,
        producer TEXT,
        headers TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE INDEX pubsub_events_timestamp ON pubsub_events (timestamp, event_id);
    CREATE INDEX pubsub_events_correlation ON pubsub_events (correlation_id);
    CREATE INDEX pubsub_events_domain ON pubsub_events (domain, timestamp);
    CREATE TABLE pubsub_tasks (
        task_id TEXT PRIMARY KEY NOT NULL,
        task_name TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        routing_key TEXT NOT NULL,
        correlation_id TEXT,
        producer TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX pubsub_tasks_status ON pubsub_tasks (status, updated_at);",
    // 2: the body as received; what PostgreSQL cannot hold (see `exact.rs`: SQLite holds
    // everything, so these stay NULL here, but both backends read the same columns).
    "ALTER TABLE pubsub_events ADD COLUMN body BLOB;
    ALTER TABLE pubsub_events ADD COLUMN originals TEXT;
    ALTER TABLE pubsub_tasks ADD COLUMN originals TEXT;
    ALTER TABLE pubsub_tasks ADD COLUMN result_original TEXT;
    ALTER TABLE pubsub_tasks ADD COLUMN error_original TEXT;",
    // 3: when a task's latest attempt started and when it finished (its statuses commit by
    // batch: the record keeps each step's time), and its time limit (to tell a stuck task).
    "ALTER TABLE pubsub_tasks ADD COLUMN started_at TEXT;
    ALTER TABLE pubsub_tasks ADD COLUMN finished_at TEXT;
    ALTER TABLE pubsub_tasks ADD COLUMN time_limit_ms INTEGER;",
];

/// PostgreSQL's schema, by version.
#[cfg(feature = "postgres")]
const POSTGRES: &[&str] = &[
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
    // 2: the body as received (`bytea`), and the originals of what PostgreSQL cannot hold
    // (NUL in text and jsonb: see `exact.rs`).
    "ALTER TABLE pubsub_events ADD COLUMN body BYTEA, ADD COLUMN originals TEXT;
    ALTER TABLE pubsub_tasks ADD COLUMN originals TEXT, ADD COLUMN result_original TEXT,
        ADD COLUMN error_original TEXT;",
    // 3: when a task's latest attempt started and when it finished, and its time limit.
    "ALTER TABLE pubsub_tasks ADD COLUMN started_at TIMESTAMPTZ, ADD COLUMN finished_at TIMESTAMPTZ,
        ADD COLUMN time_limit_ms BIGINT;",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SCHEMA_VERSION;

    #[test]
    fn the_store_schema_is_this_version() {
        assert_eq!(STORE.version(), SCHEMA_VERSION);
        #[cfg(feature = "postgres")]
        assert_eq!(STORE.postgres.len(), STORE.sqlite.len());
    }
}
