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
//!   `publish_all`, `send` (a [`Receipt`] to wait on later). One thread owns the connection
//!   and pipelines the confirms of every caller.
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
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod bus;
mod context;
mod error;
mod metrics;
mod names;
#[path = "publisher.rs"]
mod publishing;
mod trace;

pub use crate::bus::{BusStats, EventBus, EventBusBuilder, Teardown};
pub use crate::error::{Error, PublishError, Result};
pub use crate::names::{validate_service_name, MAX_SERVICE_NAME};
pub use crate::publishing::{Publisher, Receipt};
pub use pubsub_amqp::{exchange_from_env, DEFAULT_EXCHANGE, RABBITMQ_EXCHANGE_ENV};

pub use pubsub_amqp::{AmqpConfig, ReconnectPolicy};
pub use pubsub_core::envelope::Envelope;
pub use pubsub_core::{
    handler_fn, serde_json, Event, EventHandler, EventType, HandlerError, HandlerResult, Metadata,
    Permanent, TypedEvent,
};
pub use pubsub_publisher::{PublishOptions, Unroutable};
pub use pubsub_registry::InvocationResult;
pub use pubsub_subscriber::{DeliveryReport, Disposition, RetryPolicy};

/// The event model: events, typed events, handlers, the wire format (`pubsub-core`).
pub mod core {
    pub use pubsub_core::*;
}

/// Pattern dispatch: `HandlerRegistry` (`pubsub-registry`).
pub mod registry {
    pub use pubsub_registry::*;
}

/// The RabbitMQ transport: configuration, connections, channels (`pubsub-amqp`).
pub mod amqp {
    pub use pubsub_amqp::*;
}

/// Confirmed publishing on a connection of one's own: `EventPublisher` (`pubsub-publisher`).
pub mod publisher {
    pub use pubsub_publisher::*;
}

/// AsyncAPI 3 documents of a service (`pubsub-asyncapi`, feature `asyncapi`); see
/// [`EventBus::asyncapi`].
#[cfg(feature = "asyncapi")]
pub mod asyncapi {
    pub use pubsub_asyncapi::*;
}

/// Consuming one queue on its own thread: `EventSubscriber` (`pubsub-subscriber`).
pub mod subscriber {
    pub use pubsub_subscriber::*;
}
