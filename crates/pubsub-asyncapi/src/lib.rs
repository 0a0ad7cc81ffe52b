//! This crate provides AsyncAPI 3 documents of a service on the bus: its exchange, the routing
//! keys it subscribes to and publishes, and the JSON Schema of every message, so that other
//! teams (and services in other languages) see what a service sends and expects.
//!
//! # Overview
//!
//! - [`AsyncApi`]: the builder. The service's name, exchange and queue; what it receives
//!   (the patterns of its [`HandlerRegistry`](pubsub_registry::HandlerRegistry), and the
//!   typed events it declares with [`receives`](AsyncApi::receives)); what it publishes
//!   ([`publishes`](AsyncApi::publishes) of a typed event, or a bare routing key).
//! - [`Document`]: the result, JSON (`Display` writes it pretty).
//!
//! A channel is one address on the exchange: a subscription's binding pattern (`order.*`) or
//! a routing key (`order.created`), with the AMQP channel binding of a durable topic exchange.
//! Operations are `receive` (from the service's queue, acked) and `send` (persistent,
//! confirmed). A message's payload is the whole wire body, the six fields of
//! [`pubsub_core::json`], with `data` the schema the typed event derives with `schemars`
//! (see [`pubsub_core::schema`]). Which channels, messages and operation ids a service gets
//! is decided by a pure function, table-tested; the tests validate documents against the
//! official AsyncAPI 3.0.0 JSON Schema.
//!
//! It sits on `pubsub-core` (feature `schema`) and `pubsub-registry`: no broker, no I/O.
//! The `pubsub` facade's `EventBus::asyncapi` (feature `asyncapi`) fills it from a bus.
//!
//! # Example
//!
//! ```
//! use pubsub_asyncapi::AsyncApi;
//! use pubsub_core::schema::schemars::{self, JsonSchema};
//! use pubsub_core::TypedEvent;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! #[schemars(crate = "pubsub_core::schema::schemars")]
//! struct Placed {
//!     order_id: String,
//! }
//!
//! impl TypedEvent for Placed {
//!     const DOMAIN: &'static str = "shop";
//!     const ACTION: &'static str = "placed";
//! }
//!
//! let mut registry = pubsub_registry::HandlerRegistry::new();
//! registry.subscribe("shop.#", pubsub_core::handler_fn("audit", |_, _| Ok(())))?;
//! let document = AsyncApi::new("audit", "events")
//!     .subscriptions(&registry)
//!     .receives::<Placed>()
//!     .publishes::<Placed>()
//!     .build()?;
//! let doc = document.as_value();
//! assert_eq!(doc["asyncapi"], "3.0.0");
//! assert_eq!(doc["channels"]["shop.all"]["address"], "shop.#");
//! assert_eq!(doc["operations"]["sendShopPlaced"]["action"], "send");
//! let payload = &doc["components"]["schemas"]["PlacedBody"];
//! assert_eq!(payload["properties"]["data"]["$ref"], "#/components/schemas/Placed");
//! println!("{document}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod document;
mod error;
mod plan;

pub use crate::document::{AsyncApi, Document, AMQP_BINDING_VERSION, ASYNCAPI_VERSION};
pub use crate::error::{Error, Result};
