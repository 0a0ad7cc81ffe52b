//! [`asyncapi`]: the demo service's AsyncAPI 3 document (`demo --asyncapi`).

use anyhow::Context as _;
use demo_domain::{Handlers, OrderCreated, OrderPaid, UserRegistered};
use pubsub::asyncapi::Document;
use pubsub::EventBus;

/// The AsyncAPI 3 document of the demo's service, as [`run`](crate::run) wires it over the
/// broker with `settings`: exchange `settings.exchange`, queue and service
/// `settings.queue`, the handlers of [`demo_domain::SUBSCRIPTIONS`], and the three events of
/// the order flow, which it publishes and receives, with their schemas. Needs no broker.
///
/// # Errors
///
/// A service or exchange name the bus refuses.
pub fn asyncapi(settings: &crate::Settings) -> anyhow::Result<Document> {
    let mut bus = EventBus::builder(&settings.queue)
        .exchange(&settings.exchange)
        .in_process()
        .build()?;
    // The handlers only lend their names and events here: a scratch shop, removed at once.
    let handlers = Handlers::new(&demo_domain::Shop::scratch(
        demo_domain::DEMO_STOCK.iter().copied(),
    )?)?;
    for &(pattern, name) in demo_domain::SUBSCRIPTIONS {
        let handler = handlers
            .by_name(name)
            .with_context(|| format!("no demo handler is called `{name}`"))?;
        bus.subscribe_arc(pattern, handler)?;
    }
    let document = bus
        .asyncapi()
        .version(env!("CARGO_PKG_VERSION"))
        .description(&format!(
            "The demo's order flow: it publishes `order.created`, `order.paid` and \
             `user.registered` to RabbitMQ topic exchange `{}` and consumes them from its \
             durable queue `{}` into its handlers (send-email, update-inventory, \
             log-analytics).",
            settings.exchange, settings.queue
        ))
        .receives::<OrderCreated>()
        .receives::<OrderPaid>()
        .receives::<UserRegistered>()
        .publishes::<OrderCreated>()
        .publishes::<OrderPaid>()
        .publishes::<UserRegistered>()
        .build()?;
    Ok(document)
}

#[cfg(test)]
mod tests {
    use pubsub::core::{json, Event};
    use serde_json::Value;

    use super::*;
    use crate::Settings;

    /// The official JSON Schema of AsyncAPI 3.0.0 documents (Apache-2.0; see the README
    /// beside it).
    const ASYNCAPI_SCHEMA: &str =
        include_str!("../../crates/pubsub-asyncapi/tests/data/asyncapi-3.0.0.json");

    fn document() -> Value {
        asyncapi(&Settings::default()).unwrap().into_value()
    }

    #[test]
    fn the_demo_document_is_valid_asyncapi() {
        let schema: Value = serde_json::from_str(ASYNCAPI_SCHEMA).unwrap();
        let validator = jsonschema::draft7::new(&schema).unwrap();
        let doc = document();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
        // And the check is a real one: a broken copy fails.
        let mut broken = doc.clone();
        broken["operations"]["sendOrderCreated"]["action"] = "publish".into();
        assert!(!validator.is_valid(&broken));
    }

    #[test]
    fn the_demo_document_holds_the_flow() {
        let doc = document();
        let check = |pointer: &str, expected: Value| {
            assert_eq!(doc.pointer(pointer), Some(&expected), "{pointer}\n{doc:#}");
        };
        check("/info/title", "demo".into());
        for (channel, op) in [
            ("order.created", "OrderCreated"),
            ("order.paid", "OrderPaid"),
            ("user.registered", "UserRegistered"),
        ] {
            check(&format!("/channels/{channel}/address"), channel.into());
            check(
                &format!("/channels/{channel}/bindings/amqp/exchange/name"),
                "events".into(),
            );
            check(&format!("/operations/send{op}/action"), "send".into());
            check(&format!("/operations/receive{op}/action"), "receive".into());
        }
        // The analytics handler's `#`: every event.
        check("/channels/all/address", "#".into());
        check("/operations/receiveAll/action", "receive".into());
        check(
            "/components/schemas/OrderCreated/properties/items/items/$ref",
            "#/components/schemas/OrderItem".into(),
        );
        check(
            "/components/schemas/OrderCreatedBody/properties/domain/const",
            "order".into(),
        );
        check(
            "/components/schemas/OrderItem/properties/product_id/description",
            "The product's identifier, e.g. `PROD-001`.".into(),
        );
    }

    #[test]
    fn the_payload_schemas_accept_the_flows_events() {
        let doc = document();
        for labeled in crate::Workload::OrderFlow.events(0, 3).unwrap() {
            let body: Value = serde_json::from_slice(&json::to_vec(&labeled.event)).unwrap();
            let name = match labeled.event.routing_key() {
                "order.created" => "OrderCreatedBody",
                "order.paid" => "OrderPaidBody",
                _ => "UserRegisteredBody",
            };
            let schema = serde_json::json!({
                "allOf": [{"$ref": format!("#/components/schemas/{name}")}],
                "components": doc["components"],
            });
            let validator = jsonschema::draft7::new(&schema).unwrap();
            assert!(validator.is_valid(&body), "{name}: {body}");
            let other = Event::new("order", "refunded", serde_json::json!({})).unwrap();
            let other: Value = serde_json::from_slice(&json::to_vec(&other)).unwrap();
            assert!(!validator.is_valid(&other), "{name} accepted {other}");
        }
    }
}
