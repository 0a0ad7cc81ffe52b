//! [`EventStore`]: events written in batches, read back by query.

use std::fmt;

use uuid::Uuid;

use crate::backend::{self, Backend};
use crate::database::Database;
use crate::error::Result;
use crate::model::{EventQuery, EventRow, StoredEvent};

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
            backend: backend::open(database)?,
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

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}
