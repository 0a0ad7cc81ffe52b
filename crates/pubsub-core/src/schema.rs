//! JSON Schemas of the wire body (feature `schema`): what an event looks like on the bus, for
//! documents such as AsyncAPI and for services in other languages.
//!
//! [`Event`] implements [`JsonSchema`]: the six fields with `data` any object.
//! [`Body<T>`] is the body of the typed event `T`: the same six fields with `domain` and
//! `action` fixed, `version` of `T`'s major number, and `data` the schema `T` derives. Both
//! go through [`body_schema`], the one description of the wire format
//! (see [`json`](crate::json)). [`Headers`] describes the AMQP headers a publisher may set
//! beside the body (seed 004's metadata).
//!
//! ```
//! use pubsub_core::schema::{schemars, Body};
//! use pubsub_core::TypedEvent;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, schemars::JsonSchema)]
//! #[schemars(crate = "pubsub_core::schema::schemars")]
//! struct UserRegistered {
//!     user_id: String,
//! }
//!
//! impl TypedEvent for UserRegistered {
//!     const DOMAIN: &'static str = "user";
//!     const ACTION: &'static str = "registered";
//! }
//!
//! let schema = schemars::schema_for!(Body<UserRegistered>);
//! assert_eq!(schema.pointer("/properties/domain/const"), Some(&"user".into()));
//! assert_eq!(schema.pointer("/properties/data/$ref"), Some(&"#/$defs/UserRegistered".into()));
//! ```

use std::borrow::Cow;
use std::marker::PhantomData;

pub use schemars;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::version::major_version;
use crate::{Event, EventType, TypedEvent, CAUSATION_ID_HEADER, EVENT_TYPE_HEADER};

/// The body of the typed event `T` on the wire, as a [`JsonSchema`]: never built, only
/// described (its schema is named `<T>Body`).
#[derive(Debug)]
pub struct Body<T>(PhantomData<T>);

impl<T: TypedEvent + JsonSchema> JsonSchema for Body<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("{}Body", T::schema_name()).into()
    }

    fn schema_id() -> Cow<'static, str> {
        format!("pubsub_core::schema::Body<{}>", T::schema_id()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let data = generator.subschema_for::<T>();
        body_schema(
            Some(T::DOMAIN),
            Some(T::ACTION),
            major_version(T::VERSION),
            data.to_value(),
        )
    }
}

impl JsonSchema for Event {
    fn schema_name() -> Cow<'static, str> {
        "Event".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "pubsub_core::Event".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        body_schema(None, None, None, any_object())
    }
}

/// The AMQP headers beside the body, as a [`JsonSchema`] (named `EventHeaders`): never
/// built, only described; see [`headers_schema`].
#[derive(Debug)]
pub struct Headers;

impl JsonSchema for Headers {
    fn schema_name() -> Cow<'static, str> {
        "EventHeaders".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "pubsub_core::schema::Headers".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        headers_schema()
    }
}

/// The schema of the AMQP headers a publisher sets beside the body, both optional:
/// [`EVENT_TYPE_HEADER`] (one of [`EventType`]'s names) and [`CAUSATION_ID_HEADER`]. Other
/// headers may be present.
pub fn headers_schema() -> Schema {
    let kinds: Vec<&str> = EventType::ALL.iter().map(|k| k.as_str()).collect();
    let mut properties = Map::new();
    properties.insert(
        EVENT_TYPE_HEADER.into(),
        json!({
            "type": "string",
            "enum": kinds,
            "description": "What kind of event this is (seed 004's `EventType`).",
        }),
    );
    properties.insert(
        CAUSATION_ID_HEADER.into(),
        json!({
            "type": "string",
            "description": "The id of the event whose handling caused this one.",
        }),
    );
    let schema = json!({
        "type": "object",
        "description": "AMQP headers beside the body. The AMQP properties carry the rest: \
            `message_id` (the event id), `correlation_id`, `app_id` (the publishing service), \
            `type` (the routing key), `timestamp`, `content_type` `application/json`, \
            persistent delivery.",
        "properties": properties,
    });
    Schema::try_from(schema).unwrap_or_default()
}

/// The schema of `data` when nothing more is known: any JSON object.
pub fn any_object() -> Value {
    json!({ "type": "object", "description": "The event's data: a JSON object." })
}

/// The schema of one wire body: the six fields, all required, in wire order.
///
/// `domain` and `action` are fixed when given (any routing-key word otherwise), `version`
/// must have the major number `major` when given (what [`Event::decode`] checks), and `data`
/// is the schema `data`.
pub fn body_schema(
    domain: Option<&str>,
    action: Option<&str>,
    major: Option<u64>,
    data: Value,
) -> Schema {
    let word = |field: &str, fixed: Option<&str>| {
        let mut schema = json!({
            "type": "string",
            "description": format!(
                "The event's {field}: a word of the routing key `domain.action`."
            ),
        });
        match fixed {
            Some(value) => schema["const"] = value.into(),
            None => schema["pattern"] = WORD_PATTERN.into(),
        }
        schema
    };
    let version = {
        let mut schema = json!({
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "The schema version of `data`, `major.minor`: a new optional field \
                bumps the minor number, a breaking change the major one.",
        });
        if let Some(major) = major {
            schema["pattern"] = format!("^{major}(\\.|$)").into();
            schema["examples"] = json!([format!("{major}.0")]);
        }
        schema
    };
    let mut properties = Map::new();
    properties.insert("domain".into(), word("domain", domain));
    properties.insert("action".into(), word("action", action));
    properties.insert("data".into(), data);
    properties.insert(
        "event_id".into(),
        json!({
            "type": "string",
            "format": "uuid",
            "pattern": UUID_PATTERN,
            "description": "The event's unique id (a UUID, hyphenated); also the AMQP `message_id`.",
        }),
    );
    properties.insert(
        "timestamp".into(),
        json!({
            "type": "string",
            "description": "When the event happened, ISO 8601: written in UTC with an offset \
                (`2024-05-01T12:30:00.123456+00:00`); read without one as UTC (Python's \
                `isoformat()`).",
            "examples": ["2024-05-01T12:30:00.123456+00:00"],
        }),
    );
    properties.insert("version".into(), version);
    let schema = json!({
        "type": "object",
        "description": "An event on the bus, routed by `domain.action` (or `domain.action.vN`).",
        "required": FIELDS,
        "properties": properties,
    });
    Schema::try_from(schema).unwrap_or_default()
}

/// The six fields of the wire body, in the order they are written.
pub const FIELDS: [&str; 6] = [
    "domain",
    "action",
    "data",
    "event_id",
    "timestamp",
    "version",
];

/// A UUID as written: hyphenated hex digits.
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// What a `domain` or `action` may be (what [`Event::new`] checks).
const WORD_PATTERN: &str = "^[A-Za-z0-9_-]+$";

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::json;

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Placed {
        order_id: String,
        quantity: u32,
    }

    impl TypedEvent for Placed {
        const DOMAIN: &'static str = "shop";
        const ACTION: &'static str = "placed";
        const VERSION: &'static str = "2.1";
    }

    #[test]
    fn body_fixes_what_the_type_fixes() {
        let check = |domain, action, major, pointer: &str, expected: Option<Value>| {
            let schema = body_schema(domain, action, major, any_object());
            assert_eq!(schema.pointer(pointer).cloned(), expected, "{pointer}");
        };
        check(
            Some("shop"),
            None,
            None,
            "/properties/domain/const",
            Some("shop".into()),
        );
        check(Some("shop"), None, None, "/properties/domain/pattern", None);
        check(
            None,
            None,
            None,
            "/properties/action/pattern",
            Some(WORD_PATTERN.into()),
        );
        check(
            None,
            Some("placed"),
            None,
            "/properties/action/const",
            Some("placed".into()),
        );
        check(
            None,
            None,
            Some(2),
            "/properties/version/pattern",
            Some("^2(\\.|$)".into()),
        );
        check(None, None, None, "/properties/version/pattern", None);
        check(None, None, None, "/required", Some(json!(FIELDS)));
        check(
            None,
            None,
            None,
            "/properties/event_id/format",
            Some("uuid".into()),
        );
    }

    #[test]
    fn typed_body_refers_to_the_data_schema() {
        let schema = schemars::schema_for!(Body<Placed>);
        let check = |pointer: &str, expected: Value| {
            assert_eq!(schema.pointer(pointer), Some(&expected), "{pointer}");
        };
        check("/properties/data/$ref", "#/$defs/Placed".into());
        check("/$defs/Placed/properties/quantity/type", "integer".into());
        check("/properties/version/pattern", "^2(\\.|$)".into());
        check("/properties/action/const", "placed".into());
        assert_eq!(<Body<Placed>>::schema_name(), "PlacedBody");
    }

    #[test]
    fn headers_name_every_event_type() {
        let schema = headers_schema();
        let kinds = schema
            .pointer("/properties/x-event-type/enum")
            .and_then(Value::as_array)
            .unwrap();
        assert_eq!(kinds.len(), EventType::ALL.len());
        assert!(schema.pointer("/properties/x-causation-id").is_some());
        assert_eq!(schema.get("required"), None);
    }

    #[test]
    fn the_schema_names_every_field_the_wire_carries() {
        let event = crate::Event::new("shop", "placed", serde_json::json!({"x": 1})).unwrap();
        let body: Value = serde_json::from_slice(&json::to_vec(&event)).unwrap();
        let written: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let schema = schemars::schema_for!(crate::Event);
        let mut described: Vec<&str> = schema
            .pointer("/properties")
            .and_then(Value::as_object)
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        described.sort_unstable();
        let mut written = written;
        written.sort_unstable();
        assert_eq!(written, described);
    }
}
