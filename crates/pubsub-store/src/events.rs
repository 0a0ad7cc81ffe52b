//! [`EventStore`]: events written in batches, read back by query.

use std::fmt;

use uuid::Uuid;

use crate::backend::{Backend, Opening};
use crate::database::Database;
use crate::error::{Error, Result};
use crate::fault;
use crate::model::{EventQuery, EventRow, StoredEvent};
use crate::open;

/// The events of a bus, kept in a database: one row per event id.
///
/// It holds one connection: `Send`, not `Sync`; give each thread its own store. It creates
/// and migrates its schema when opened.
///
/// ```
/// use pubsub_core::{Event, Metadata};
/// use pubsub_store::{Database, EventQuery, EventRow, EventStore};
/// use time::OffsetDateTime;
///
/// let mut store = EventStore::open(&Database::sqlite_in_memory())?;
/// let event = Event::new("order", "created", serde_json::json!({ "order_id": "ORD-1" }))?;
/// let row = EventRow::new(&event, &Metadata::default(), OffsetDateTime::now_utc());
/// assert_eq!(store.append(&[row.clone(), row])?, 1); // an event id is stored once
///
/// let found = store.query(&EventQuery::new().pattern("order.*")?)?;
/// assert_eq!(found[0].event, event);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EventStore {
    backend: Box<dyn Backend>,
    database: Database,
}

impl EventStore {
    /// Opens the store in `database`, creating or migrating its tables.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`](crate::Error::Connect) if the database cannot be reached or opened,
    /// [`Error::SchemaTooNew`](crate::Error::SchemaTooNew), or the error of a migration.
    pub fn open(database: &Database) -> Result<EventStore> {
        Ok(EventStore {
            backend: open::open(database, Opening::Create)?,
            database: database.clone(),
        })
    }

    /// Opens the store `database` already holds, for reading: unlike
    /// [`open`](Self::open), it creates nothing (no SQLite file, no PostgreSQL schema, no
    /// table) where there is no store, so that a reader given the wrong database says so
    /// instead of reading an empty new one. A store of an older schema is migrated.
    ///
    /// # Errors
    ///
    /// [`Error::NoStore`](crate::Error::NoStore) when the file does not exist or holds no
    /// store's tables; otherwise as [`open`](Self::open).
    pub fn open_existing(database: &Database) -> Result<EventStore> {
        Ok(EventStore {
            backend: open::open(database, Opening::Existing)?,
            database: database.clone(),
        })
    }

    /// The database it uses.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Stores `rows` in one transaction, skipping event ids already stored; returns how many
    /// were new.
    ///
    /// # Errors
    ///
    /// [`Error::Query`](crate::Error::Query): nothing of the batch is stored.
    pub fn append(&mut self, rows: &[EventRow]) -> Result<usize> {
        self.backend.append_events(rows)
    }

    /// Stores `rows` as [`append`](Self::append) does when the database takes them all (one
    /// transaction). When it refuses some (a [`Fault::Refused`](crate::Fault) error: data it
    /// will never take), the rest are stored and the refused ones returned, each with the
    /// database's error: the batch is bisected, each part in its own transaction, until every
    /// refused row is alone.
    ///
    /// # Errors
    ///
    /// An outage ([`Error::fault`] is [`Fault::Outage`](crate::Fault::Outage)): the parts
    /// committed before it stay committed (an event id is stored once, so writing the batch
    /// again is harmless), the rest are not.
    pub fn append_batch(&mut self, rows: &[EventRow]) -> Result<Appended> {
        let backend = &mut self.backend;
        let sifted = fault::sift(
            rows.len(),
            |range| backend.append_events(&rows[range]),
            Error::fault,
        )?;
        if !sifted.refused.is_empty() {
            log::warn!(
                "{}: the database refused {} of {} event(s)",
                self.database,
                sifted.refused.len(),
                rows.len()
            );
        }
        Ok(Appended {
            inserted: sifted.written,
            refused: sifted
                .refused
                .into_iter()
                .map(|(index, error)| RefusedRow { index, error })
                .collect(),
        })
    }

    /// The events `query` selects.
    ///
    /// # Errors
    ///
    /// The query failed, or a row cannot be read back.
    pub fn query(&mut self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let mut found = Vec::new();
        self.for_each(query, |event| {
            found.push(event);
            true
        })?;
        Ok(found)
    }

    /// Calls `each` with every event `query` selects, one at a time (nothing is collected),
    /// until it returns `false`; returns how many it was given.
    ///
    /// # Errors
    ///
    /// The query failed, or a row cannot be read back.
    pub fn for_each(
        &mut self,
        query: &EventQuery,
        mut each: impl FnMut(StoredEvent) -> bool,
    ) -> Result<usize> {
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut given = 0;
        if limit == 0 {
            return Ok(0);
        }
        self.backend.query_events(query, &mut |event| {
            if !query.admits(&event.routing_key) {
                return true;
            }
            given += 1;
            each(event) && given < limit
        })?;
        Ok(given)
    }

    /// The event `event_id`, if stored.
    ///
    /// # Errors
    ///
    /// The query failed.
    pub fn get(&mut self, event_id: Uuid) -> Result<Option<StoredEvent>> {
        Ok(self
            .query(&EventQuery::new().event_id(event_id).limit(1))?
            .pop())
    }

    /// How many events are stored.
    ///
    /// # Errors
    ///
    /// The query failed.
    pub fn count(&mut self) -> Result<u64> {
        self.backend.count_events()
    }
}

/// What [`EventStore::append_batch`] made of a batch.
#[derive(Debug)]
#[non_exhaustive]
pub struct Appended {
    /// How many rows were new (stored now, not before).
    pub inserted: usize,
    /// The rows the database refused, in batch order.
    pub refused: Vec<RefusedRow>,
}

/// A row of a batch the database refuses, and its error (whose chain holds the database's
/// message).
#[derive(Debug)]
#[non_exhaustive]
pub struct RefusedRow {
    /// Its position in the batch, from 0.
    pub index: usize,
    /// Why.
    pub error: Error,
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}
