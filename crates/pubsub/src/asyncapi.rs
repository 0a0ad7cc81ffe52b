//! [`EventBus::asyncapi`] (feature `asyncapi`): the bus's own AsyncAPI document, filled from
//! what the bus knows. A child module of `bus`, to read the bus's fields.

use pubsub_asyncapi::AsyncApi;
use pubsub_publisher::Unroutable;
use pubsub_registry::HandlerRegistry;

use super::{EventBus, State};

impl EventBus {
    /// The service's AsyncAPI 3 document, to finish and [`build`](AsyncApi::build): the
    /// service's name, its exchange (durable, topic) and virtual host, its queue and the
    /// patterns of every handler subscribed so far (call it before [`start`](Self::start) or
    /// while running; a stopped bus has no handlers left).
    ///
    /// A bus cannot tell the Rust types behind its handlers nor what it will publish, so
    /// declare them: [`receives::<T>`](AsyncApi::receives) gives a subscribed typed event
    /// its schema, [`publishes::<T>`](AsyncApi::publishes) adds a send operation. `T`
    /// derives `JsonSchema` (`pubsub::core::schema::schemars`).
    ///
    /// ```
    /// use pubsub::core::schema::schemars::{self, JsonSchema};
    /// use pubsub::{EventBus, TypedEvent};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize, JsonSchema)]
    /// #[schemars(crate = "pubsub::core::schema::schemars")]
    /// struct ItemShipped {
    ///     item: String,
    /// }
    ///
    /// impl TypedEvent for ItemShipped {
    ///     const DOMAIN: &'static str = "item";
    ///     const ACTION: &'static str = "shipped";
    /// }
    ///
    /// let mut bus = EventBus::builder("billing").exchange("events").in_process().build()?;
    /// bus.subscribe_typed(|_: ItemShipped, _| Ok(()))?;
    /// let document = bus.asyncapi().receives::<ItemShipped>().build()?;
    /// assert_eq!(document.as_value()["operations"]["receiveItemShipped"]["action"], "receive");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn asyncapi(&self) -> AsyncApi {
        let mut document = AsyncApi::new(&self.settings.service, &self.exchange)
            .queue(self.queue())
            .mandatory(self.settings.unroutable != Unroutable::Ignore);
        if let Some(config) = &self.amqp {
            document = document.vhost(config.virtual_host());
        }
        match self.handlers() {
            Some(registry) => document.subscriptions(registry),
            None => document,
        }
    }

    /// The handlers: the registry until `start`, then the one the workers share.
    fn handlers(&self) -> Option<&HandlerRegistry> {
        match (&self.registry, &self.state) {
            (Some(registry), _) => Some(registry),
            (None, State::Running(running)) => Some(&running.registry),
            (None, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::handler_fn;

    use crate::EventBus;

    #[test]
    fn the_document_follows_the_bus() {
        let check = |bus: &EventBus, pointer: &str, expected: serde_json::Value| {
            let document = bus.asyncapi().build().unwrap();
            assert_eq!(
                document.as_value().pointer(pointer),
                Some(&expected),
                "{document}"
            );
        };
        let mut bus = EventBus::builder("billing")
            .exchange("shop-events")
            .in_process()
            .build()
            .unwrap();
        bus.subscribe("order.*", handler_fn("a", |_, _| Ok(())))
            .unwrap();
        check(&bus, "/info/title", "billing".into());
        check(&bus, "/channels/order.any/address", "order.*".into());
        check(
            &bus,
            "/channels/order.any/bindings/amqp/exchange/name",
            "shop-events".into(),
        );
        bus.start().unwrap();
        // Running: the handlers the workers share.
        check(&bus, "/operations/receiveOrderAny/action", "receive".into());
        bus.stop().unwrap();
    }
}
