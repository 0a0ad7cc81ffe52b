//! This crate provides the demo's business: typed order and user events, and three handlers
//! with effects a test can observe. It is the only library crate of the workspace that knows
//! what an order is.
//!
//! # Overview
//!
//! - Events ([`pubsub_core::TypedEvent`]s, with the original design's field names, so the
//!   Python services' events decode): [`OrderCreated`] (with [`OrderItem`]s), [`OrderPaid`],
//!   [`UserRegistered`].
//! - [`Shop`]: the shop's tables in a SQLite file (orders, users, stock levels, reservations).
//!   [`Shop::commit`] writes an order's row and stages its `order.created` in the transactional
//!   outbox in one transaction (`pubsub-outbox`).
//! - Handlers, each doing one thing, thread-safe: [`SendEmailHandler`] records the email it
//!   would send in a list; [`UpdateInventoryHandler`] reserves ordered items in the shop's
//!   stock, never below zero, exactly once per order (an inbox handler: the reservation and
//!   its record of the event commit together); [`LogAnalyticsHandler`] counts events per
//!   routing key.
//! - [`Handlers`] holds one of each, and [`registry`] subscribes them as [`SUBSCRIPTIONS`]
//!   says, for the `demo` binary and for tests.
//! - [`Error`]: what the handlers refuse.
//!
//! It sits on `pubsub-core` (events, handlers) and `pubsub-registry` (dispatch); it knows
//! nothing of RabbitMQ. The `demo` binary carries these events over the broker, or
//! dispatches them in process.
//!
//! # Example
//!
//! ```
//! use demo_domain::{Handlers, OrderCreated, OrderItem, UserRegistered};
//! use pubsub_core::Event;
//!
//! let shop = demo_domain::Shop::scratch([("PROD-001", 10)])?; // a SQLite file, removed at the end
//! let handlers = Handlers::new(&shop)?;
//! let registry = demo_domain::registry(&handlers)?;
//!
//! let order = Event::from_typed(&OrderCreated {
//!     order_id: "ORD-123".into(),
//!     customer_email: "customer@example.com".into(),
//!     items: vec![OrderItem { product_id: "PROD-001".into(), quantity: 2 }],
//!     total_amount: 99.99,
//! })?;
//! let result = registry.invoke_all(&order); // in process, no broker
//! let ran: Vec<&str> = result.outcomes().iter().map(|o| o.handler()).collect();
//! assert_eq!(ran, ["send-email", "update-inventory", "log-analytics"]);
//! assert!(result.is_success());
//!
//! assert_eq!(handlers.email().outbox()[0].to, "customer@example.com");
//! assert_eq!(shop.stock("PROD-001")?, Some(8));
//! assert_eq!(shop.reservations()?, 1); // kept in the database
//! assert_eq!(handlers.analytics().count("order.created"), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod analytics;
mod email;
mod error;
mod events;
#[cfg(test)]
mod fixtures;
mod inventory;
mod invoice;
mod shop;

use std::sync::Arc;

use pubsub_core::EventHandler;
use pubsub_registry::HandlerRegistry;

pub use crate::analytics::LogAnalyticsHandler;
pub use crate::email::{Email, SendEmailHandler, DEFAULT_OUTBOX_CAPACITY};
pub use crate::error::{Error, Result};
pub use crate::events::{OrderCreated, OrderItem, OrderPaid, UserRegistered};
pub use crate::inventory::UpdateInventoryHandler;
pub use crate::invoice::{send_invoice, SEND_INVOICE};
pub use crate::shop::Shop;

/// Which handler listens to which pattern in the demo, in registration order (the order in
/// which they run): `(pattern, handler name)`.
pub const SUBSCRIPTIONS: &[(&str, &str)] = &[
    ("order.created", SendEmailHandler::NAME),
    ("order.paid", SendEmailHandler::NAME),
    ("user.registered", SendEmailHandler::NAME),
    ("order.created", UpdateInventoryHandler::NAME),
    ("#", LogAnalyticsHandler::NAME),
];

/// The demo's stock: ten keyboards and five mice, so to speak.
pub const DEMO_STOCK: &[(&str, u64)] = &[("PROD-001", 10), ("PROD-002", 5)];

/// One of each of the demo's handlers, shared (`Arc`) between the registry and whoever
/// wants to look at their effects; cheap to clone.
#[derive(Debug, Clone)]
pub struct Handlers {
    email: Arc<SendEmailHandler>,
    inventory: Arc<UpdateInventoryHandler>,
    analytics: Arc<LogAnalyticsHandler>,
}

impl Handlers {
    /// Handlers over `shop`'s stock (see [`UpdateInventoryHandler::new`]).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the inventory's inbox cannot be created in the shop's
    /// database.
    pub fn new(shop: &Shop) -> Result<Self> {
        Ok(Handlers {
            email: Arc::new(SendEmailHandler::new()),
            inventory: Arc::new(UpdateInventoryHandler::new(shop)?),
            analytics: Arc::new(LogAnalyticsHandler::new()),
        })
    }

    /// The email handler and its outbox.
    pub fn email(&self) -> &SendEmailHandler {
        &self.email
    }

    /// The inventory handler.
    pub fn inventory(&self) -> &UpdateInventoryHandler {
        &self.inventory
    }

    /// The shop whose stock the inventory handler reserves.
    pub fn shop(&self) -> &Shop {
        self.inventory.shop()
    }

    /// The analytics handler and its counts.
    pub fn analytics(&self) -> &LogAnalyticsHandler {
        &self.analytics
    }

    /// The handler called `name`, if it is one of these, shared: to subscribe it elsewhere
    /// than in [`registry`] (an `EventBus`, say) while its effects stay readable here.
    pub fn by_name(&self, name: &str) -> Option<Arc<dyn EventHandler>> {
        match name {
            SendEmailHandler::NAME => Some(self.email.clone()),
            UpdateInventoryHandler::NAME => Some(self.inventory.clone()),
            LogAnalyticsHandler::NAME => Some(self.analytics.clone()),
            _ => None,
        }
    }
}

/// A registry with `handlers` subscribed as [`SUBSCRIPTIONS`] says.
///
/// Dispatch through it in process with [`HandlerRegistry::invoke_all`], or share it (`Arc`)
/// with a subscriber. The handlers stay shared with `handlers`, where their effects can be
/// read.
///
/// # Errors
///
/// [`Error::Registry`] if a subscription is refused; with the fixed table this is a bug.
pub fn registry(handlers: &Handlers) -> Result<HandlerRegistry> {
    let mut registry = HandlerRegistry::new();
    for &(pattern, name) in SUBSCRIPTIONS {
        // Every name in the table is one of `Handlers`'; the test below checks it.
        if let Some(handler) = handlers.by_name(name) {
            registry.subscribe_arc(pattern, handler)?;
        }
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use pubsub_core::{Event, Permanent};
    use serde_json::json;

    use super::*;
    use crate::fixtures::{paid, user};

    fn order(order_id: &str, lines: &[(&str, u32)]) -> Event {
        crate::fixtures::order(order_id, "customer@example.com", lines)
    }

    fn handlers(stock: &[(&str, u64)]) -> Handlers {
        Handlers::new(&Shop::scratch(stock.iter().copied()).unwrap()).unwrap()
    }

    #[test]
    fn every_subscription_names_a_handler() {
        let handlers = handlers(DEMO_STOCK);
        for (_, name) in SUBSCRIPTIONS {
            assert!(handlers.by_name(name).is_some(), "{name}");
        }
        assert_eq!(registry(&handlers).unwrap().len(), SUBSCRIPTIONS.len());
    }

    #[test]
    fn each_event_reaches_its_handlers() {
        // (event, the handlers that run, in order)
        let registry = registry(&handlers(DEMO_STOCK)).unwrap();
        let check = |event: Event, expected: &[&str]| {
            let ran: Vec<String> = registry
                .find_handlers(event.routing_key())
                .iter()
                .map(|s| s.handler_name().to_owned())
                .collect();
            assert_eq!(ran, expected, "{}", event.routing_key());
        };
        check(
            order("ORD-1", &[]),
            &["send-email", "update-inventory", "log-analytics"],
        );
        check(paid("ORD-1"), &["send-email", "log-analytics"]);
        check(user(), &["send-email", "log-analytics"]);
        check(
            Event::new("order", "cancelled", json!({})).unwrap(),
            &["log-analytics"],
        );
        assert_eq!(registry.bindings(), ["#"]);
    }

    #[test]
    fn the_order_flow_has_the_expected_effects() {
        let handlers = handlers(DEMO_STOCK);
        let registry = registry(&handlers).unwrap();
        for event in [
            order("ORD-123", &[("PROD-001", 2), ("PROD-002", 1)]),
            paid("ORD-123"),
            user(),
        ] {
            let result = registry.invoke_all(&event);
            assert!(result.is_success(), "{}: {result:?}", event.routing_key());
        }
        let to: Vec<String> = handlers
            .email()
            .outbox()
            .into_iter()
            .map(|e| e.to)
            .collect();
        assert_eq!(
            to,
            [
                "customer@example.com",
                "customer@example.com",
                "ada@example.com"
            ]
        );
        assert_eq!(handlers.shop().stock("PROD-001").unwrap(), Some(8));
        assert_eq!(handlers.shop().stock("PROD-002").unwrap(), Some(4));
        assert_eq!(handlers.shop().reservations().unwrap(), 2);
        assert_eq!(handlers.analytics().total(), 3);
    }

    #[test]
    fn one_refusal_does_not_stop_the_other_handlers() {
        let handlers = handlers(&[("PROD-001", 1)]);
        let registry = registry(&handlers).unwrap();
        let result = registry.invoke_all(&order("ORD-9", &[("PROD-001", 5)]));
        assert_eq!((result.succeeded(), result.failed()), (2, 1));
        let failure = result.failures().next().unwrap();
        assert_eq!(failure.handler(), "update-inventory");
        assert!(failure.failure().unwrap().is_permanent());
        assert!(Permanent::is_permanent(failure.failure().unwrap().error()));
        assert_eq!(handlers.email().sent(), 1);
        assert_eq!(handlers.shop().stock("PROD-001").unwrap(), Some(1));
        assert_eq!(handlers.analytics().count("order.created"), 1);
    }
}
