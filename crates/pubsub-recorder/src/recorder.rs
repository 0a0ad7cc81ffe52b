//! [`Recorder`]: the event store as a subscriber's [`Sink`], and [`record`]: the store's
//! subscriber, bound to every event of an exchange.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pubsub_amqp::Connection;
use pubsub_core::envelope::Envelope;
use pubsub_core::text::error_chain;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{
    Committed, EventSubscriber, Refused, Sink, SinkError, Staged, SubscriberBuilder,
};
use time::OffsetDateTime;

use pubsub_store::{Database, EventRow, EventStore};

use crate::error::Result;

/// The queue the store consumes unless told otherwise (the seed's name).
pub const DEFAULT_STORE_QUEUE: &str = "event.store";

/// Keeps every event a subscriber acks in an [`EventStore`], one transaction per ack batch
/// (see [`Sink`]): a delivery is acked only after its row is committed.
///
/// Each row keeps the message's body byte for byte, and what PostgreSQL cannot hold (a NUL in
/// a string or a key) is kept all the same (see `pubsub-store`).
///
/// A commit tells an outage from data the database refuses (by its error codes:
/// [`Fault`](pubsub_store::Fault)):
///
/// - when the database went away (or is busy, full, ...), the recorder drops its connection
///   and opens a new one at the next commit; meanwhile nothing is acked, and the broker
///   delivers the batch again. An event delivered again is stored once (its id is unique);
/// - when it refuses some rows, the rest are committed
///   ([`EventStore::append_batch`]), and the refused events are dead-lettered by the
///   subscriber, each with the database's reason.
pub struct Recorder {
    database: Database,
    store: Option<EventStore>,
    staged: Vec<EventRow>,
    stored: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder into `database`, opened now (so that a wrong URL or a database that is down
    /// is an error at start, not a reconnect loop).
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store), as [`EventStore::open`].
    pub fn new(database: &Database) -> Result<Recorder> {
        Ok(Recorder {
            database: database.clone(),
            store: Some(EventStore::open(database)?),
            staged: Vec::new(),
            stored: Arc::default(),
        })
    }

    /// A counter of the new rows it committed, readable from any thread.
    pub fn stored(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.stored)
    }
}

impl Sink for Recorder {
    fn stage(&mut self, staged: Staged<'_>) -> Result<(), SinkError> {
        let mut row = EventRow::new(staged.event(), staged.meta(), OffsetDateTime::now_utc())
            .with_body(staged.body());
        // The key it was published with: the event's own for a six-field event, the one it
        // was derived from for a message of another shape (`Envelope::Any`).
        if let Some(key) = staged.routing_key() {
            if key != row.routing_key {
                row = row.with_routing_key(key);
            }
        }
        self.staged.push(row);
        Ok(())
    }

    fn commit(&mut self) -> Result<Committed, SinkError> {
        if self.staged.is_empty() {
            return Ok(Committed::all());
        }
        let store = match &mut self.store {
            Some(store) => store,
            None => {
                let store = EventStore::open(&self.database)?;
                log::info!("event store reconnected to {}", self.database);
                self.store.insert(store)
            }
        };
        match store.append_batch(&self.staged) {
            Ok(appended) => {
                self.stored
                    .fetch_add(appended.inserted as u64, Ordering::Relaxed);
                self.staged.clear();
                let refused = appended
                    .refused
                    .iter()
                    .map(|row| Refused::new(row.index, error_chain(&row.error)))
                    .collect();
                Ok(Committed::refusing(refused))
            }
            Err(e) => {
                // The connection's state is unknown: the next commit opens a new one.
                self.store = None;
                Err(Box::new(e))
            }
        }
    }

    fn discard(&mut self) {
        self.staged.clear();
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("database", &self.database)
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

/// Where and how the store's subscriber consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    /// Its queue ([`DEFAULT_STORE_QUEUE`]).
    pub queue: String,
    /// The exchange whose every event it keeps (`events`).
    pub exchange: String,
    /// What it binds (`#`: everything).
    pub pattern: String,
    /// Its prefetch; the commit batch is half of it (1,000: batches of up to 500, smaller
    /// when the queue goes quiet). A commit costs about the same for 50 rows as for 500.
    pub prefetch: u16,
    /// The envelope of what it stores ([`Envelope::Standard`]: six-field events; a message
    /// of another shape is dead-lettered as poison). [`Envelope::Any`] keeps every JSON
    /// message its binding receives, as seed 003's `event.store` does: six-field events as
    /// with `Standard`, any other JSON body with an event derived from its routing key (see
    /// [`decode_any`](pubsub_core::envelope::decode_any)) and its key as it was published;
    /// a body that is not JSON is still dead-lettered as poison, with the reason.
    pub envelope: Envelope,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            queue: DEFAULT_STORE_QUEUE.to_owned(),
            exchange: "events".to_owned(),
            pattern: "#".to_owned(),
            prefetch: 1_000,
            envelope: Envelope::Standard,
        }
    }
}

/// The store's subscriber: consumes `options.queue`, bound to `options.pattern` on the
/// exchange, and keeps every event it takes in `recorder`'s database, acked after commit.
/// Its topology is declared; start it with [`EventSubscriber::spawn`] or
/// [`start_consuming`](EventSubscriber::start_consuming).
///
/// A message that is not an event of `options.envelope` (poison) is dead-lettered to
/// `<queue>.dlq`, not stored: with [`Envelope::Any`], only a body that is not JSON.
///
/// # Errors
///
/// [`Error::Subscribe`](crate::Error::Subscribe): invalid options, or declaring the topology
/// failed.
pub fn record(
    connection: Connection,
    recorder: Recorder,
    options: &RecordOptions,
) -> Result<EventSubscriber> {
    let mut subscriber = consumer(connection, recorder, options).build()?;
    subscriber.setup()?;
    Ok(subscriber)
}

/// The store's consumer definition: one subscriber on `options.queue`, bound to exactly
/// `options.pattern`, keeping what it acks in `recorder` (for [`record`] and the worker pool
/// of [`start`](crate::start)).
pub(crate) fn consumer(
    connection: Connection,
    recorder: Recorder,
    options: &RecordOptions,
) -> SubscriberBuilder {
    EventSubscriber::builder(connection, &options.queue, Arc::new(HandlerRegistry::new()))
        .exchange(&options.exchange)
        .bindings([options.pattern.as_str()])
        .prefetch(options.prefetch)
        .envelope(options.envelope)
        .sink(recorder)
}
