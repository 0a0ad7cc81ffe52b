//! The documents are valid AsyncAPI 3.0.0 (checked against the official JSON Schema, offline),
//! every `$ref` in them resolves, and their payload schemas accept the bodies the library
//! writes and refuse bodies that do not fit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use pubsub_asyncapi::{AsyncApi, Document};
use pubsub_core::schema::schemars::JsonSchema;
use pubsub_core::{json, Event, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The official JSON Schema of AsyncAPI 3.0.0 documents (see `tests/data/README.md`).
const ASYNCAPI_SCHEMA: &str = include_str!("../data/asyncapi-3.0.0.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(ASYNCAPI_SCHEMA).expect("the schema is JSON");
    jsonschema::draft7::new(&schema).expect("the AsyncAPI schema compiles")
}

/// The schema's complaints about `document`, one line each.
fn errors(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Every `$ref` in `value` that does not point into `root`.
fn dangling_refs(root: &Value, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let resolves = target
                    .strip_prefix('#')
                    .and_then(|pointer| root.pointer(pointer))
                    .is_some();
                if !resolves {
                    out.push(target.clone());
                }
            }
            map.values().for_each(|v| dangling_refs(root, v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| dangling_refs(root, v, out)),
        _ => {}
    }
}

/// Checks a document as a consumer would: valid AsyncAPI, every reference resolves.
fn check_document(document: &Document) {
    let doc = document.as_value();
    let errors = errors(&validator(), doc);
    assert!(errors.is_empty(), "{errors:#?}\n{document}");
    let mut dangling = Vec::new();
    dangling_refs(doc, doc, &mut dangling);
    assert!(dangling.is_empty(), "dangling: {dangling:?}\n{document}");
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "pubsub_core::schema::schemars")]
struct Item {
    sku: String,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "pubsub_core::schema::schemars")]
enum Channel {
    Web,
    App,
}

/// `shop.placed`, with a nested type, a list, an enum and an optional field.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "pubsub_core::schema::schemars")]
struct Placed {
    order_id: String,
    items: Vec<Item>,
    channel: Channel,
    #[serde(default)]
    note: Option<String>,
}

impl TypedEvent for Placed {
    const DOMAIN: &'static str = "shop";
    const ACTION: &'static str = "placed";
}

/// `shop.placed.v2`: a breaking change under a versioned key.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "pubsub_core::schema::schemars")]
struct PlacedV2 {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for PlacedV2 {
    const DOMAIN: &'static str = "shop";
    const ACTION: &'static str = "placed";
    const VERSION: &'static str = "2.0";
    const VERSIONED_KEY: bool = true;
}

fn placed() -> Placed {
    Placed {
        order_id: "O-1".into(),
        items: vec![Item {
            sku: "S-1".into(),
            quantity: 2,
        }],
        channel: Channel::Web,
        note: None,
    }
}

/// A service that receives on exact keys and wildcards, and publishes typed and untyped.
fn full() -> Document {
    AsyncApi::new("fulfilment", "events")
        .subscribe("shop.placed")
        .subscribe("shop.placed.v2")
        .subscribe("audit.*")
        .subscribe("#")
        .receives::<Placed>()
        .receives::<PlacedV2>()
        .publishes::<Placed>()
        .publishes_key("fulfilment.shipped")
        .version("2.3.0")
        .vhost("prod")
        .server("production", "amqps://rabbit.internal:5671")
        .server("local", "localhost:5672")
        .build()
        .expect("a document")
}

#[test]
fn documents_are_valid_asyncapi() {
    check_document(&full());
    // Only publishing, only receiving, nothing at all.
    check_document(
        &AsyncApi::new("p", "x")
            .publishes::<PlacedV2>()
            .build()
            .unwrap(),
    );
    check_document(&AsyncApi::new("r", "x").subscribe("*").build().unwrap());
    check_document(&AsyncApi::new("nothing", "x").build().unwrap());
    // Patterns the registry allows beyond the broker's: glob words, the lone `*`.
    check_document(
        &AsyncApi::new("globs", "x")
            .subscribe("sh?p.pla*")
            .subscribe("odd~word/x.y")
            .build()
            .unwrap(),
    );
}

#[test]
fn the_document_says_what_the_service_does() {
    let document = full();
    let doc = document.as_value();
    let check = |pointer: &str, expected: Value| {
        assert_eq!(
            doc.pointer(pointer),
            Some(&expected),
            "{pointer}\n{document}"
        );
    };
    check("/info/title", json!("fulfilment"));
    check("/info/version", json!("2.3.0"));
    check("/servers/production/protocol", json!("amqps"));
    check("/servers/local/host", json!("localhost:5672"));
    check("/channels/shop.placed/address", json!("shop.placed"));
    check("/channels/audit.any/address", json!("audit.*"));
    check("/channels/all/address", json!("#"));
    check(
        "/channels/shop.placed/bindings/amqp",
        json!({"is": "routingKey", "bindingVersion": "0.3.0", "exchange": {
            "name": "events", "type": "topic", "durable": true, "autoDelete": false,
            "vhost": "prod"}}),
    );
    check("/operations/receiveShopPlaced/action", json!("receive"));
    check(
        "/operations/receiveShopPlaced/bindings/amqp/ack",
        json!(true),
    );
    check("/operations/sendShopPlaced/action", json!("send"));
    check(
        "/operations/sendShopPlaced/bindings/amqp/deliveryMode",
        json!(2),
    );
    check(
        "/operations/sendFulfilmentShipped/channel/$ref",
        json!("#/channels/fulfilment.shipped"),
    );
    check(
        "/operations/receiveShopPlacedV2/messages",
        json!([{"$ref": "#/channels/shop.placed.v2/messages/PlacedV2"}]),
    );
    check(
        "/components/messages/Placed/payload/$ref",
        json!("#/components/schemas/PlacedBody"),
    );
    check(
        "/components/messages/Placed/headers/$ref",
        json!("#/components/schemas/EventHeaders"),
    );
    check(
        "/components/schemas/EventHeaders/properties/x-event-type/enum/1",
        json!("integration"),
    );
    check(
        "/components/messages/Placed/bindings/amqp/messageType",
        json!("shop.placed"),
    );
    check(
        "/components/schemas/PlacedBody/properties/data/$ref",
        json!("#/components/schemas/Placed"),
    );
    check(
        "/components/schemas/PlacedV2Body/properties/version/pattern",
        json!("^2(\\.|$)"),
    );
    // `#` receives every declared type and any other event.
    let all: Vec<&String> = doc["channels"]["all"]["messages"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(all, ["Event", "Placed", "PlacedV2"]);
}

/// Checks `body` against the payload schema `name` of `document` (its `$ref`s resolved in
/// the document).
fn payload_accepts(document: &Document, name: &str, body: &Value) -> bool {
    let doc = document.as_value();
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "allOf": [{"$ref": format!("#/components/schemas/{name}")}],
        "components": doc["components"],
    });
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the payload schema compiles");
    validator.is_valid(body)
}

fn body(event: &Event) -> Value {
    serde_json::from_slice(&json::to_vec(event)).unwrap()
}

#[test]
fn payload_schemas_describe_the_wire_body() {
    let document = full();
    let written = body(&Event::from_typed(&placed()).unwrap());
    assert!(
        payload_accepts(&document, "PlacedBody", &written),
        "{written}"
    );
    assert!(payload_accepts(&document, "Event", &written));
    let v2 = body(
        &Event::from_typed(&PlacedV2 {
            order_id: "O-1".into(),
            total_cents: 100,
        })
        .unwrap(),
    );
    assert!(payload_accepts(&document, "PlacedV2Body", &v2), "{v2}");

    // A Python service's body: timestamp without an offset, a minor version bump, an
    // extra field in `data`.
    let python = json!({"domain": "shop", "action": "placed", "event_id":
        "7c9e6679-7425-40de-944b-e07fc1f90ae7", "timestamp": "2024-05-01T12:30:00.123456",
        "version": "1.1", "data": {"order_id": "O-2", "items": [], "channel": "App",
        "gift": true}});
    assert!(payload_accepts(&document, "PlacedBody", &python));

    // What decoding refuses, the schema refuses too.
    let refused = |change: &dyn Fn(&mut Value)| {
        let mut body = written.clone();
        change(&mut body);
        assert!(
            !payload_accepts(&document, "PlacedBody", &body),
            "accepted {body}"
        );
    };
    refused(&|b| b["domain"] = "shipping".into());
    refused(&|b| b["action"] = "paid".into());
    refused(&|b| b["version"] = "2.0".into());
    refused(&|b| b["event_id"] = "not-a-uuid".into());
    refused(&|b| {
        b.as_object_mut().unwrap().remove("timestamp");
    });
    refused(&|b| {
        b["data"].as_object_mut().unwrap().remove("order_id");
    });
    refused(&|b| b["data"]["items"][0]["quantity"] = (-1).into());
    refused(&|b| b["data"]["channel"] = "Fax".into());
    refused(&|b| b["data"] = json!([1, 2]));
    assert!(!payload_accepts(
        &document,
        "Event",
        &json!({"domain": "a.b"})
    ));
}

#[test]
fn the_validator_refuses_broken_documents() {
    let validator = validator();
    let valid = full().into_value();
    assert!(errors(&validator, &valid).is_empty());
    // Each change breaks one rule of AsyncAPI 3.0.0 or of its AMQP bindings.
    type Change = dyn Fn(&mut Value);
    let broken: &[(&str, &Change)] = &[
        ("no info", &|d| {
            d.as_object_mut().unwrap().remove("info");
        }),
        ("AsyncAPI 2", &|d| d["asyncapi"] = "2.6.0".into()),
        ("info without a version", &|d| {
            d["info"].as_object_mut().unwrap().remove("version");
        }),
        ("an AsyncAPI 2 verb", &|d| {
            d["operations"]["sendShopPlaced"]["action"] = "publish".into()
        }),
        ("an operation without a channel", &|d| {
            d["operations"]["sendShopPlaced"]
                .as_object_mut()
                .unwrap()
                .remove("channel");
        }),
        ("an unknown channel field", &|d| {
            d["channels"]["shop.placed"]["routingKey"] = "shop.placed".into()
        }),
        ("an unknown exchange type", &|d| {
            d["channels"]["shop.placed"]["bindings"]["amqp"]["exchange"]["type"] =
                "x-delayed".into()
        }),
        ("both an exchange and a queue", &|d| {
            d["channels"]["shop.placed"]["bindings"]["amqp"]["queue"] = json!({"name": "q"})
        }),
        ("a binding version that does not exist", &|d| {
            d["channels"]["shop.placed"]["bindings"]["amqp"]["bindingVersion"] = "9.9.9".into()
        }),
        ("a transient-or-persistent that is neither", &|d| {
            d["operations"]["sendShopPlaced"]["bindings"]["amqp"]["deliveryMode"] = 3.into()
        }),
        ("an address that is not a string", &|d| {
            d["channels"]["shop.placed"]["address"] = 7.into()
        }),
        ("a message that is not an object", &|d| {
            d["components"]["messages"]["Placed"] = "Placed".into()
        }),
        ("a server without a protocol", &|d| {
            d["servers"]["local"]
                .as_object_mut()
                .unwrap()
                .remove("protocol");
        }),
        ("a payload that is not a schema", &|d| {
            d["components"]["schemas"]["PlacedBody"]["type"] = 42.into()
        }),
    ];
    for (what, change) in broken {
        let mut document = valid.clone();
        change(&mut document);
        assert!(
            !errors(&validator, &document).is_empty(),
            "{what}: the validator accepted it"
        );
    }
}

/// Two types of one name, in two modules.
mod elsewhere {
    use pubsub_core::schema::schemars::JsonSchema;
    use pubsub_core::TypedEvent;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, JsonSchema)]
    #[schemars(crate = "pubsub_core::schema::schemars")]
    pub(crate) struct Placed {
        pub(crate) ticket: u64,
    }

    impl TypedEvent for Placed {
        const DOMAIN: &'static str = "bet";
        const ACTION: &'static str = "placed";
    }
}

#[test]
fn types_of_one_name_stay_apart() {
    let document = AsyncApi::new("both", "x")
        .publishes::<Placed>()
        .publishes::<elsewhere::Placed>()
        .publishes::<Placed>()
        .build()
        .unwrap();
    check_document(&document);
    let doc = document.as_value();
    let payload = |message: &str| doc["components"]["messages"][message]["payload"]["$ref"].clone();
    assert_eq!(payload("Placed"), "#/components/schemas/PlacedBody");
    assert_eq!(payload("Placed_2"), "#/components/schemas/PlacedBody2");
    assert_eq!(
        doc["operations"]["sendBetPlaced"]["messages"][0]["$ref"],
        "#/channels/bet.placed/messages/Placed_2"
    );
    let ops = doc["operations"].as_object().unwrap();
    assert_eq!(ops.len(), 2, "{document}");
}
