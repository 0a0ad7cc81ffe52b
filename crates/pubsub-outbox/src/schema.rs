//! The outbox's tables: the staged events, the relay's lease, and the inbox's records, by
//! version, in both backends' SQL (migrated as the store's are, with their own version table).

use pubsub_store::Schema;

/// The tables of this crate.
pub(crate) const OUTBOX: Schema = Schema {
    name: "outbox",
    version_table: "pubsub_outbox_schema",
    sqlite: &[
        // 1: staged events (in id order), the relay's lease, the inbox.
        "CREATE TABLE pubsub_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL,
            routing_key TEXT NOT NULL,
            body TEXT NOT NULL,
            correlation_id TEXT,
            causation_id TEXT,
            staged_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            failed TEXT
        );
        CREATE TABLE pubsub_outbox_lease (
            name TEXT PRIMARY KEY NOT NULL,
            owner TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        );
        CREATE TABLE pubsub_inbox (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            handled_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (consumer, event_id)
        );",
    ],
    postgres: &[
        // 1: as SQLite's.
        "CREATE TABLE pubsub_outbox (
            id BIGSERIAL PRIMARY KEY,
            event_id UUID NOT NULL,
            routing_key TEXT NOT NULL,
            body TEXT NOT NULL,
            correlation_id TEXT,
            causation_id TEXT,
            staged_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            failed TEXT
        );
        CREATE TABLE pubsub_outbox_lease (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE pubsub_inbox (
            consumer TEXT NOT NULL,
            event_id UUID NOT NULL,
            handled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, event_id)
        );",
    ],
    lock: 0x7075_6273_7562_0002,
};

/// The channel the relay listens on, and staging notifies (PostgreSQL).
#[cfg(feature = "postgres")]
pub(crate) const CHANNEL: &str = "pubsub_outbox";

/// Opens the database and creates or migrates the tables.
pub(crate) fn prepare(database: &pubsub_store::Database) -> pubsub_store::Result<()> {
    let name = database.to_string();
    #[cfg(feature = "postgres")]
    if database.is_postgres() {
        let mut client = database.connect_postgres()?;
        return OUTBOX.migrate_postgres(&mut client, &name);
    }
    let mut connection = database.open_sqlite()?;
    OUTBOX.migrate_sqlite(&mut connection, &name)
}
