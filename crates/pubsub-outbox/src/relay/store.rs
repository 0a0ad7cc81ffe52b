//! The relay's statements, in each backend's SQL: the lease, the batch of staged rows, and
//! their deletion once confirmed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pubsub_store::Database;

use crate::error::query_error;
use crate::error::Result;

/// One staged row, as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) body: String,
    pub(crate) correlation_id: Option<String>,
    pub(crate) causation_id: Option<String>,
}

/// A connection to the outbox's database.
pub(crate) enum Store {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Client),
}

const CLAIM: &str = "SELECT id, body, correlation_id, causation_id FROM pubsub_outbox \
                     WHERE failed IS NULL ORDER BY id LIMIT ";

impl Store {
    /// A connection whose own writes (the lease, deleting published rows) need no
    /// durability of their own: one lost in a crash only publishes its events again, which
    /// at-least-once allows. So they do not wait for the disk (`synchronous = NORMAL` on
    /// SQLite's WAL, `synchronous_commit = off` on PostgreSQL); what the service staged was
    /// made durable by its own commit. On SQLite it leaves the WAL's checkpoints (which wait
    /// for the disk) to the service's connections, which commit what the relay publishes
    /// anyway: a checkpoint run by the relay would hold back the next event's publish.
    pub(crate) fn open(database: &Database) -> Result<Store> {
        let doing = "setting up the relay's connection";
        #[cfg(feature = "postgres")]
        if database.is_postgres() {
            let mut client = database.connect_postgres()?;
            client
                .batch_execute("SET synchronous_commit = off")
                .map_err(|e| query_error(doing, e))?;
            return Ok(Store::Postgres(client));
        }
        let connection = database.open_sqlite()?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .and_then(|()| connection.pragma_update(None, "wal_autocheckpoint", 0))
            .map_err(|e| query_error(doing, e))?;
        Ok(Store::Sqlite(connection))
    }

    /// Takes or renews the lease `name` for `owner` for `term`: `false` when another owner
    /// holds it and it has not expired.
    pub(crate) fn take_lease(&mut self, name: &str, owner: &str, term: Duration) -> Result<bool> {
        let doing = "taking the outbox relay's lease";
        let taken = match self {
            Store::Sqlite(c) => {
                let now = unix_ms(SystemTime::now());
                let until = now.saturating_add(i64::try_from(term.as_millis()).unwrap_or(i64::MAX));
                c.execute(
                    "INSERT INTO pubsub_outbox_lease (name, owner, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
                     expires_at = excluded.expires_at \
                     WHERE pubsub_outbox_lease.owner = excluded.owner \
                     OR pubsub_outbox_lease.expires_at < ?4",
                    rusqlite::params![name, owner, until, now],
                )
                .map_err(|e| query_error(doing, e))?
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(c) => {
                let ms = i64::try_from(term.as_millis()).unwrap_or(i64::MAX);
                use postgres::types::Type;
                let n = c
                    .execute_typed(
                        "INSERT INTO pubsub_outbox_lease (name, owner, expires_at) \
                         VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond') \
                         ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, \
                         expires_at = EXCLUDED.expires_at \
                         WHERE pubsub_outbox_lease.owner = EXCLUDED.owner \
                         OR pubsub_outbox_lease.expires_at < now()",
                        &[(&name, Type::TEXT), (&owner, Type::TEXT), (&ms, Type::INT8)],
                    )
                    .map_err(|e| query_error(doing, e))?;
                usize::try_from(n).unwrap_or(0)
            }
        };
        Ok(taken == 1)
    }

    /// Gives the lease up, so that a standby takes over at once.
    pub(crate) fn release_lease(&mut self, name: &str, owner: &str) -> Result<()> {
        let doing = "releasing the outbox relay's lease";
        match self {
            Store::Sqlite(c) => c
                .execute(
                    "UPDATE pubsub_outbox_lease SET expires_at = 0 WHERE name = ?1 AND owner = ?2",
                    [name, owner],
                )
                .map(drop)
                .map_err(|e| query_error(doing, e)),
            #[cfg(feature = "postgres")]
            Store::Postgres(c) => c
                .execute(
                    "UPDATE pubsub_outbox_lease SET expires_at = '-infinity' \
                     WHERE name = $1 AND owner = $2",
                    &[&name, &owner],
                )
                .map(drop)
                .map_err(|e| query_error(doing, e)),
        }
    }

    /// The first `limit` staged rows, in id order.
    pub(crate) fn claim(&mut self, limit: usize) -> Result<Vec<Row>> {
        let doing = "reading the outbox";
        let sql = format!("{CLAIM}{limit}");
        match self {
            Store::Sqlite(c) => {
                let mut statement = c.prepare_cached(&sql).map_err(|e| query_error(doing, e))?;
                let rows = statement
                    .query_map([], |r| {
                        Ok(Row {
                            id: r.get(0)?,
                            body: r.get(1)?,
                            correlation_id: r.get(2)?,
                            causation_id: r.get(3)?,
                        })
                    })
                    .map_err(|e| query_error(doing, e))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(|e| query_error(doing, e))
            }
            // Typed: parsed, bound and run in one round trip (a statement given as text is
            // otherwise prepared first, a round trip more on every batch).
            #[cfg(feature = "postgres")]
            Store::Postgres(c) => c
                .query_typed(&sql, &[])
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| {
                            Ok(Row {
                                id: r.try_get(0)?,
                                body: r.try_get(1)?,
                                correlation_id: r.try_get(2)?,
                                causation_id: r.try_get(3)?,
                            })
                        })
                        .collect()
                })
                .map_err(|e| query_error(doing, e)),
        }
    }

    /// Deletes the rows whose events the broker confirmed (marked sent and pruned at once);
    /// `false` when SQLite's write lock is held by another connection (a service's commit
    /// waiting for the disk) and `wait` is not set: the rows stay, and the caller tries again.
    /// PostgreSQL locks rows only, and always deletes.
    pub(crate) fn delete(&mut self, ids: &[i64], wait: bool) -> Result<bool> {
        if ids.is_empty() {
            return Ok(true);
        }
        let doing = "deleting published rows from the outbox";
        match self {
            Store::Sqlite(c) => {
                // Integers the database gave: safe to write into the statement.
                let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                let sql = format!("DELETE FROM pubsub_outbox WHERE id IN ({list})");
                let deleted = if wait {
                    c.execute(&sql, [])
                } else {
                    // For this statement only: the lease and the rows set aside still wait.
                    c.busy_timeout(Duration::ZERO)
                        .map_err(|e| query_error(doing, e))?;
                    let deleted = c.execute(&sql, []);
                    c.busy_timeout(pubsub_store::BUSY_TIMEOUT)
                        .map_err(|e| query_error(doing, e))?;
                    deleted
                };
                match deleted {
                    Ok(_) => Ok(true),
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if !wait && e.code == rusqlite::ErrorCode::DatabaseBusy =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(query_error(doing, e)),
                }
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(c) => c
                .execute_typed(
                    "DELETE FROM pubsub_outbox WHERE id = ANY($1)",
                    &[(&ids, postgres::types::Type::INT8_ARRAY)],
                )
                .map(|_| true)
                .map_err(|e| query_error(doing, e)),
        }
    }

    /// Sets a row aside with the reason it cannot be published.
    pub(crate) fn set_aside(&mut self, id: i64, reason: &str) -> Result<()> {
        let doing = "setting an unreadable outbox row aside";
        match self {
            Store::Sqlite(c) => c
                .execute(
                    "UPDATE pubsub_outbox SET failed = ?1 WHERE id = ?2",
                    rusqlite::params![reason, id],
                )
                .map(drop)
                .map_err(|e| query_error(doing, e)),
            #[cfg(feature = "postgres")]
            Store::Postgres(c) => c
                .execute(
                    "UPDATE pubsub_outbox SET failed = $1 WHERE id = $2",
                    &[&reason, &id],
                )
                .map(drop)
                .map_err(|e| query_error(doing, e)),
        }
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use std::time::{Duration, Instant};

    use pubsub_store::Database;
    use pubsub_testkit::TestDatabase;

    use super::Store;

    #[test]
    fn a_delete_that_does_not_wait_leaves_the_lease_waiting_for_the_lock() {
        let owned = TestDatabase::sqlite("relay-lock");
        let database = Database::parse(owned.url()).unwrap();
        crate::schema::prepare(&database).unwrap();
        let mut store = Store::open(&database).unwrap();
        // Another connection holds the write lock, as a service's commit does.
        let holder = database.open_sqlite().unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = Instant::now();
        assert!(!store.delete(&[1], false).unwrap(), "the lock is taken");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "without waiting"
        );
        // The lock goes 200 ms later: the lease, a write of the relay's, waits for it.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            holder.execute_batch("COMMIT").unwrap();
        });
        assert!(store
            .take_lease("relay", "me", Duration::from_secs(10))
            .unwrap());
        release.join().unwrap();
        assert!(store.delete(&[1], false).unwrap(), "the lock is free");
    }
}
