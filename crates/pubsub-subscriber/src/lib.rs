//! This crate provides [`EventSubscriber`]: it consumes events from a RabbitMQ queue on its
//! own thread, runs the matching handlers of a `HandlerRegistry`, and settles every delivery
//! exactly once: ack, retry through delay queues, or dead-letter.
//!
//! # Overview
//!
//! - [`EventSubscriber`]: [`setup`](EventSubscriber::setup) declares the topology and binds
//!   the queue to exactly what the handlers need; [`start_consuming`](EventSubscriber::start_consuming)
//!   blocks until stopped; [`spawn`](EventSubscriber::spawn) runs it on its own thread.
//! - [`SubscriberBuilder`]: exchange, queue settings, prefetch, [`RetryPolicy`], dead-lettering,
//!   limits, [`ReconnectPolicy`](pubsub_amqp::ReconnectPolicy), an observer channel; the
//!   envelope messages come in ([`SubscriberBuilder::envelope`], per binding with
//!   [`SubscriberBuilder::envelope_for`]), and a queue declared elsewhere consumed as it is
//!   ([`SubscriberBuilder::existing_queue`]).
//! - [`WorkerPool`]: the one runtime of every service-shaped component (the event bus, the
//!   task worker, the event store's recorder): `n` subscribers built from one consumer
//!   definition, each on its own thread and connection, the topology declared once before
//!   any consumes, stopped and joined together, their [`SubscriberStats`] summed
//!   ([`RunningPool`], [`PoolStats`]).
//! - [`StopHandle`]: graceful stop from another thread; [`StatsHandle`] /
//!   [`SubscriberStats`]: counters readable from any thread.
//! - [`Sink`]: keeps the events the subscriber acks (an event store), committed before each
//!   ack ([`SubscriberBuilder::sink`]).
//! - [`DeliveryReport`]: what became of each delivery, for observers (demos, tests,
//!   monitoring).
//! - With the `otel` feature, each delivery's handlers run inside a consumer span continued
//!   from the trace context in its `traceparent` and `tracestate` headers.
//! - [`headers`]: the header contract: the retry state and dead-letter record written on
//!   republished messages ([`headers::RetryState`], [`headers::DeadLetterRecord`]), read back
//!   by tools ([`headers::DeadLetterHeaders`]), and what a replay strips.
//!
//! # Which event a delivery is
//!
//! A delivery is decoded with the routing key it was published with: the key it arrived
//! with, or, when it came through the default exchange (a retry back from its delay queue,
//! whose routing key is the queue's name), the key recorded in
//! [`headers::ORIGINAL_ROUTING_KEY`]. Handlers are chosen by that key, so a pattern means the
//! same in the binding and in dispatch, and a versioned key (`order.created.v2`) reaches
//! the handlers of `order.created.v2`, not those of `order.created`. A body whose own
//! `domain.action` names another event than the key is dead-lettered as poison with both in
//! the reason (see [`pubsub_core::envelope`]).
//!
//! # Trusting the retry state
//!
//! The retry state travels in `x-pubsub-*` headers, and any client that may publish to the
//! exchange can set headers. The subscriber believes them only on a delivery that came back
//! through its own retry path: from the default exchange, routed to its queue, and whose
//! most recent `x-death` record says RabbitMQ expired it from one of its delay queues
//! (`<queue>.retry.<delay>`). Any other delivery runs every matching handler as a first
//! attempt, and the forged headers are replaced when the subscriber retries or dead-letters
//! it. `x-delivery-count` is believed only on a quorum queue's redelivery. A delivery the
//! connection's frame guard had to alter ([`Delivery::alteration`](pubsub_amqp::Delivery::alteration))
//! is dead-lettered as poison at once, with the guard's reason.
//!
//! What remains: a client allowed to publish to the default exchange (`amq.default`, with
//! write permission on the subscriber's queue) can make a message look like a retry. Give
//! publishing services write permission on their exchange only.
//!
//! The subscriber sits on `pubsub-core` (decoding), `pubsub-registry` (dispatch) and
//! `pubsub-amqp` (the connection, which it owns and reconnects).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use pubsub_amqp::{AmqpConfig, Connection};
//! use pubsub_core::handler_fn;
//! use pubsub_registry::HandlerRegistry;
//! use pubsub_subscriber::EventSubscriber;
//!
//! let mut registry = HandlerRegistry::new();
//! registry.subscribe("order.*", handler_fn("audit", |event, meta| {
//!     log::info!("{event} (attempt {})", meta.attempt());
//!     Ok(())
//! }))?;
//!
//! let connection = Connection::open(&AmqpConfig::from_env()?)?;
//! let mut subscriber = EventSubscriber::builder(connection, "audit-service", Arc::new(registry))
//!     .exchange("events")
//!     .prefetch(50)
//!     .build()?;
//! subscriber.setup()?; // queue, dead-letter queue, retry queues, bindings: order.*
//!
//! let running = subscriber.spawn()?; // its own thread, with its own connection
//! // ... later, from any thread:
//! let stats = running.stop()?; // finishes the delivery in progress, closes, joins
//! println!("{stats}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod batch;
mod context;
mod decision;
mod decode;
mod dispatch;
mod error;
pub mod headers;
mod meta;
mod pool;
mod recovery;
mod report;
mod republisher;
mod session;
mod settings;
mod sink;
mod stats;
mod subscriber;
mod topology;
mod trace;

pub use crate::dispatch::{Dispatcher, Done, Job};
pub use crate::error::{Error, Result};
pub use crate::headers::DeadLetterKind;
pub use crate::pool::{PoolStats, RunningPool, WorkerPool};
pub use crate::report::{DeliveryReport, Disposition, HandlerRun};
pub use crate::settings::{dead_letter_queue_name, queue_names, retry_queue_name, RetryPolicy};
pub use crate::sink::{Committed, Refused, Sink, SinkError, Staged};
pub use crate::stats::{StatsHandle, SubscriberStats};
pub use crate::subscriber::{
    EventSubscriber, RunningSubscriber, StopHandle, SubscriberBuilder, DEFAULT_PREFETCH,
};
