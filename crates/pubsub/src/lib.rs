//! This crate provides the pubsub facade: [`EventBus`], a whole service on RabbitMQ (its
//! handlers, its queue, its workers, a publisher every thread can share) behind one object,
//! and the names a service needs, so that a service depends on this one crate.
//!
//! # Overview
//!
//! - [`EventBus`]: [`builder`](EventBus::builder)`(service_name)` configured from code or
//!   from the environment (`AMQP_URL`, `RABBITMQ_EXCHANGE`); [`subscribe`](EventBus::subscribe)
//!   and [`subscribe_typed`](EventBus::subscribe_typed); [`start`](EventBus::start),
//!   [`stop`](EventBus::stop), [`teardown`](EventBus::teardown). `workers(n)` consumes on `n`
//!   threads; [`EventBus::in_process`] runs the same handlers without a broker.
//! - [`Publisher`]: the publishing handle, `Clone + Send + Sync`; `publish` (confirmed),
//!   `publish_all`, `send` and `send_all` (a [`Receipt`] or [`Receipts`] to wait on later,
//!   or to `.await` in async code, on any executor, without blocking it). One thread owns the
//!   connection and pipelines the confirms of every caller.
//! - With the feature `tokio`, `AsyncEventBus` (`EventBusBuilder::build_async`): async
//!   handlers run as tasks of the caller's runtime, at most `concurrency(n)` at once, settled
//!   as the blocking bus settles them (see `docs/async-services.md`).
//! - Seed 004's metadata beside the six-field body: [`EventType`] and the causation id as
//!   headers, the source as `app_id`, all in the handlers' [`Metadata`]; correlation flows
//!   from a handled event to the events its handler publishes.
//! - With the feature `asyncapi`, `EventBus::asyncapi`: the service's AsyncAPI 3 document
//!   (its exchange, the routing keys it subscribes to and publishes, its events' JSON
//!   Schemas).
//! - [`Error`] and [`PublishError`] (which gives the event back).
//! - Observability: [`EventBusBuilder::metrics`] and [`EventBusBuilder::metrics_endpoint`]
//!   (counters, a duration histogram per handler, the Prometheus text format at `/metrics`);
//!   with the `otel` cargo feature (off by default), W3C trace context in the `traceparent`
//!   and `tracestate` headers, a producer span per publish and a consumer span around each
//!   delivery's handlers, as `tracing` spans for `tracing-opentelemetry`.
//!
//! The building blocks stay usable on their own and are re-exported here:
//! [`core`] (events, handlers), [`registry`] (pattern dispatch), [`amqp`] (connections),
//! [`publisher`] (`EventPublisher`) and [`subscriber`] (`EventSubscriber`). This crate holds
//! the wiring and the lifecycle; the decisions live in those crates.
//!
//! # Example
//!
//! ```no_run
//! use pubsub::{Event, EventBus};
//! use serde_json::json;
//!
//! let mut bus = EventBus::builder("audit").workers(4).build()?; // AMQP_URL, RABBITMQ_EXCHANGE
//! bus.subscribe("order.*", pubsub::handler_fn("log", |event, meta| {
//!     log::info!("{event} from {:?} ({:?})", meta.source(), meta.event_type());
//!     Ok(())
//! }))?;
//! bus.start()?; // queue `audit` bound to `order.*`, 4 workers, a publisher thread
//!
//! let publisher = bus.publisher(); // Clone + Send + Sync
//! std::thread::scope(|s| {
//!     for i in 0..4 {
//!         let publisher = publisher.clone();
//!         let event = Event::new("order", "created", json!({ "n": i }))?;
//!         // Blocks until confirmed; a failure gives the event back.
//!         s.spawn(move || publisher.publish(event).map_err(|failed| failed.into_event()));
//!     }
//!     Ok::<(), pubsub::core::Error>(())
//! })?;
//! bus.teardown()?; // stops, joins, deletes `audit`, its retry queues and its dead letters
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # A whole service on this one crate
//!
//! With the features `store` and `tasks`, a service is one object, as seed 003's is: the bus
//! runs the event store beside its handlers (`EventBusBuilder::store`) and task functions
//! (`EventBusBuilder::task`), on the same worker pool ([`subscriber::WorkerPool`]), with its
//! broker, exchange, retry policy and lifecycle; `stop` returns everyone's counters in
//! [`BusStats`]. A service that handles events, keeps them and runs tasks depends on `pubsub`
//! alone (`pubsub = { path = "...", features = ["store", "tasks"] }`). The building blocks
//! are there too (`pubsub::store`, `pubsub::tasks`) for a store or a task worker on its own.
//!
#![cfg_attr(
    all(feature = "store", feature = "tasks"),
    doc = r#"```no_run
use pubsub::store::Database;
use pubsub::{handler_fn, serde_json::json, Event, EventBus};

// DATABASE_URL as the Python sibling reads it (SQLAlchemy's forms are taken too).
let database = Database::from_env()?;
let mut bus = EventBus::builder("billing") // or EventBus::from_env()?: SERVICE_NAME
    .workers(2)
    // Every message of the exchange kept in the database (queue `billing.store`).
    .store(database)
    // Task functions, run and recorded in the same database (queue `billing.tasks`).
    .task("send-invoice", |task| Ok(json!({ "sent": task.payload()["order_id"] })))
    .build()?;

// Handlers turn events into tasks.
let tasks = bus.task_queue()?; // Clone + Send + Sync
bus.subscribe("order.created", handler_fn("bill", move |event, _| {
    tasks.submit("send-invoice", json!({ "order_id": event.data()["order_id"] }))?;
    Ok(())
}))?;
bus.start()?; // the store, the task workers, the handlers' workers, the publisher

bus.publish(Event::new("order", "created", json!({ "order_id": "ORD-1" }))?)?;

let stats = bus.stop()?; // everything stopped and joined, in order
println!("{stats}"); // handlers, store and tasks, counted
# Ok::<(), Box<dyn std::error::Error>>(())
```"#
)]
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

#[cfg(feature = "tokio")]
mod async_bus;
mod bus;
mod context;
mod error;
mod metrics;
mod names;
#[path = "publisher.rs"]
mod publishing;
mod receipt;
mod trace;

#[cfg(feature = "tokio")]
pub use crate::async_bus::{
    async_handler_fn, AsyncEventBus, AsyncEventHandler, AsyncFnHandler, HandlerFuture,
    DEFAULT_CONCURRENCY, DEFAULT_DRAIN,
};
pub use crate::bus::{BusStats, EventBus, EventBusBuilder, Teardown, SERVICE_NAME_ENV};
pub use crate::error::{Error, PublishError, Result};
pub use crate::names::{validate_service_name, MAX_SERVICE_NAME};
pub use crate::publishing::Publisher;
pub use crate::receipt::{Receipt, Receipts};
pub use pubsub_amqp::{exchange_from_env, DEFAULT_EXCHANGE, RABBITMQ_EXCHANGE_ENV};

/// Re-exported because [`EventBusBuilder::observer`] takes its `Sender`.
pub use crossbeam_channel;
pub use pubsub_amqp::{AmqpConfig, ReconnectPolicy};
pub use pubsub_core::envelope::Envelope;
pub use pubsub_core::{
    handler_fn, serde_json, Event, EventHandler, EventType, HandlerError, HandlerResult, Metadata,
    Permanent, TypedEvent,
};
pub use pubsub_publisher::{PublishOptions, Unroutable};
pub use pubsub_registry::InvocationResult;
pub use pubsub_subscriber::{DeliveryReport, Disposition, PoolStats, RetryPolicy, SubscriberStats};

/// The event model: events, typed events, handlers, envelopes, the wire format
/// (`pubsub-core`).
pub mod core {
    #[cfg(feature = "asyncapi")]
    pub use pubsub_core::schema;
    pub use pubsub_core::{
        envelope, group_commit, handler_fn, json, serde_json, time, trace, Error, Event,
        EventBuilder, EventHandler, EventType, FnHandler, HandlerError, HandlerResult, Headers,
        Metadata, Migration, Permanent, Result, TypedEvent, CAUSATION_ID_HEADER, DEFAULT_VERSION,
        EVENT_TYPE_HEADER,
    };
}

/// Pattern dispatch: `HandlerRegistry`, in process or under a subscriber
/// (`pubsub-registry`).
pub mod registry {
    pub use pubsub_registry::{
        binding_keys, Error, HandlerFailure, HandlerOutcome, HandlerRegistry, Idempotent,
        InvocationResult, Pattern, Result, Subscription,
    };
}

/// The RabbitMQ transport a service configures and connects with: configuration, TLS,
/// reconnection, connections and their channels, queue and exchange settings, message
/// properties (`pubsub-amqp`). The frame guard and the confirm bookkeeping stay inside.
pub mod amqp {
    pub use pubsub_amqp::{
        exchange_from_env, url_from_env, AmqpConfig, Channel, Connection, Error, ExchangeConfig,
        ExchangeKind, HeaderValue, Headers, HostOrder, Properties, QueueConfig, QueueInfo,
        ReconnectPolicy, RedactingLogger, Result, TlsConfig, AMQP_URL_ENV, DEFAULT_EXCHANGE,
        RABBITMQ_EXCHANGE_ENV, RABBITMQ_URL_ENV,
    };
}

/// Confirmed publishing: `EventPublisher` on a connection of one's own, and
/// `SharedPublisher`, the publishing thread behind a `Clone + Send + Sync` handle that the
/// bus's [`Publisher`] and the task queue are built on (`pubsub-publisher`).
pub mod publisher {
    pub use pubsub_publisher::{
        BatchReceipt, Error, EventPublisher, PublishError, PublishOptions, PublisherBuilder,
        PublisherStats, PublishingThread, Receipt, Result, SharedPublisher, StatsHandle,
        Unroutable,
    };
}

/// AsyncAPI 3 documents of a service (`pubsub-asyncapi`, feature `asyncapi`); see
/// [`EventBus::asyncapi`].
#[cfg(feature = "asyncapi")]
pub mod asyncapi {
    pub use pubsub_asyncapi::*;
}

/// Consuming one queue on its own thread, and the worker pool every service shape runs on:
/// `EventSubscriber`, `WorkerPool` (`pubsub-subscriber`).
pub mod subscriber {
    pub use pubsub_subscriber::{
        dead_letter_queue_name, headers, queue_names, retry_queue_name, DeadLetterKind,
        DeliveryReport, Disposition, Error, EventSubscriber, HandlerRun, PoolStats, Result,
        RetryPolicy, RunningPool, RunningSubscriber, Sink, SinkError, StatsHandle, StopHandle,
        SubscriberBuilder, SubscriberStats, WorkerPool,
    };
}

/// The event store and the task store on SQLite and PostgreSQL (`pubsub-store`), and the
/// event store as a service: the recorder on the worker pool, and replay
/// (`pubsub-recorder`). Feature `store`.
#[cfg(feature = "store")]
pub mod store {
    pub use pubsub_recorder::{
        record, replay, start, Error as RecorderError, RecordOptions, Recorder, RecorderStats,
        ReplayOptions, ReplayProgress, ReplayTarget, RunningRecorder, DEFAULT_STORE_QUEUE,
    };
    pub use pubsub_store::{
        Database, Error, EventQuery, EventStore, Order, Result, StoredEvent, TaskFilter,
        TaskRecord, TaskStatus, TaskStore, DATABASE_URL_ENV, DEFAULT_DATABASE_URL,
    };
}

/// Exactly-once effects (`pubsub-outbox`): a transactional outbox whose relay the bus runs
/// ([`EventBusBuilder::outbox`]), and inbox handlers whose writes commit with their record of
/// the event. Feature `outbox`.
#[cfg(feature = "outbox")]
pub mod outbox {
    pub use pubsub_outbox::*;
    pub use pubsub_store::Database;
}

/// The task queue (seed 003): `TaskQueue` submits, `TaskWorker` runs task functions on the
/// worker pool and records each task in a task store (`pubsub-tasks`). Feature `tasks`.
#[cfg(feature = "tasks")]
pub mod tasks {
    pub use pubsub_tasks::*;
}

/// The exactly-once guide's Rust examples, compiled as doctests (`--features outbox`).
#[cfg(all(doctest, feature = "outbox"))]
#[doc = include_str!("../../../docs/exactly-once.md")]
struct ExactlyOnceGuide;

/// The async guide's Rust examples, compiled as doctests (`--features tokio`).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../../docs/async-services.md")]
struct AsyncServicesGuide;

/// The README's and the guides' Rust examples, compiled as doctests (`cargo test -p pubsub --doc --features store,tasks,outbox`).
#[cfg(all(doctest, feature = "store", feature = "tasks", feature = "outbox"))]
mod readme {
    // The shell walkthroughs mark what cannot run unattended `sh,norun` for
    // scripts/walkthroughs.sh; rustdoc does not know the attribute (and runs no sh block).
    #![allow(rustdoc::invalid_codeblock_attributes)]
    #[doc = include_str!("../../../README.md")]
    struct Readme;
    // one line per docs/*.md file:
    #[doc = include_str!("../../../docs/asyncapi.md")]
    struct Asyncapi;
    #[doc = include_str!("../../../docs/cli.md")]
    struct Cli;
    #[doc = include_str!("../../../docs/clusters.md")]
    struct Clusters;
    #[doc = include_str!("../../../docs/configuration.md")]
    struct Configuration;
    #[doc = include_str!("../../../docs/estates.md")]
    struct Estates;
    #[doc = include_str!("../../../docs/event-bus.md")]
    struct EventBus;
    #[doc = include_str!("../../../docs/event-store.md")]
    struct EventStore;
    #[doc = include_str!("../../../docs/events-and-handlers.md")]
    struct EventsAndHandlers;
    #[doc = include_str!("../../../docs/observability.md")]
    struct Observability;
    #[doc = include_str!("../../../docs/publishing-and-subscribing.md")]
    struct PublishingAndSubscribing;
    #[doc = include_str!("../../../docs/retries-and-dead-letters.md")]
    struct RetriesAndDeadLetters;
    #[doc = include_str!("../../../docs/task-queue.md")]
    struct TaskQueue;
    #[doc = include_str!("../../../docs/troubleshooting.md")]
    struct Troubleshooting;
}
