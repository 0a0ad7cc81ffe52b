//! Typed events: a Rust struct that is the `data` of one kind of event.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A Rust type that is the `data` of one kind of event: its schema, in the type system.
///
/// The type names its domain, action and version as associated constants, and serde maps it to
/// and from the event's `data` object. [`Event::from_typed`](crate::Event::from_typed) builds
/// the event; [`Event::decode`](crate::Event::decode) checks the routing key and the major
/// version and decodes the data, naming the offending field when it does not fit.
///
/// Versioning follows the original designs: a compatible change (a new optional field) bumps the
/// minor version and decodes with the old type; a breaking change bumps the major version,
/// which `decode` refuses. Seed 002 publishes a breaking change under a new routing key,
/// `resource.accessed.v2`: set [`VERSIONED_KEY`](Self::VERSIONED_KEY) and the type's routing
/// key gets the word `vN` of its major version (the body's `domain` and `action` stay the
/// same). [`Event::is`](crate::Event::is) tells which version an event is, to pick the struct.
///
/// ```
/// use pubsub_core::{Event, TypedEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct UserRegistered {
///     user_id: String,
///     email: String,
/// }
///
/// impl TypedEvent for UserRegistered {
///     const DOMAIN: &'static str = "user";
///     const ACTION: &'static str = "registered";
/// }
///
/// let user = UserRegistered { user_id: "U-1".into(), email: "ada@example.com".into() };
/// let event = Event::from_typed(&user)?;
/// assert_eq!(event.routing_key(), "user.registered");
/// assert_eq!(event.decode::<UserRegistered>()?, user);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait TypedEvent: Serialize + DeserializeOwned {
    /// The event's domain, e.g. `"order"`.
    const DOMAIN: &'static str;
    /// The event's action, e.g. `"created"`.
    const ACTION: &'static str;
    /// The schema version, `"1.0"` unless overridden; decoding requires the same major number.
    const VERSION: &'static str = crate::version::DEFAULT_VERSION;
    /// Whether the routing key carries the major version as a last word,
    /// `domain.action.vN` (seed 002's versioning by routing key); `false` by default:
    /// `domain.action`.
    const VERSIONED_KEY: bool = false;

    /// The routing key this type is published with: `DOMAIN.ACTION`, or
    /// `DOMAIN.ACTION.vN` with [`VERSIONED_KEY`](Self::VERSIONED_KEY).
    fn routing_key() -> String {
        match Self::key_version() {
            Some(n) => format!("{}.{}.v{n}", Self::DOMAIN, Self::ACTION),
            None => format!("{}.{}", Self::DOMAIN, Self::ACTION),
        }
    }

    /// `N` of the routing key's `vN` word, when [`VERSIONED_KEY`](Self::VERSIONED_KEY) is set
    /// (the major number of [`VERSION`](Self::VERSION)).
    fn key_version() -> Option<u32> {
        if Self::VERSIONED_KEY {
            crate::version::major_version(Self::VERSION).and_then(|m| u32::try_from(m).ok())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::{Error, Event};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Item {
        product_id: String,
        quantity: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OrderPlaced {
        order_id: String,
        items: Vec<Item>,
        #[serde(default)]
        note: Option<String>,
    }

    impl TypedEvent for OrderPlaced {
        const DOMAIN: &'static str = "shop";
        const ACTION: &'static str = "placed";
        const VERSION: &'static str = "2.1";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PlacedV3 {
        order_id: String,
        channel: String,
    }

    impl TypedEvent for PlacedV3 {
        const DOMAIN: &'static str = "shop";
        const ACTION: &'static str = "placed";
        const VERSION: &'static str = "3.0";
        const VERSIONED_KEY: bool = true;
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct NotAnObject(u32);

    impl TypedEvent for NotAnObject {
        const DOMAIN: &'static str = "x";
        const ACTION: &'static str = "y";
    }

    fn placed() -> OrderPlaced {
        OrderPlaced {
            order_id: "O-1".into(),
            items: vec![Item {
                product_id: "P-1".into(),
                quantity: 2,
            }],
            note: None,
        }
    }

    #[test]
    fn major_version_is_the_leading_number() {
        // An event with any version the wire may carry (decoding is liberal), and the version
        // string itself (a `TypedEvent::VERSION`, a builder's version).
        let check = |version: &str, expected: Option<u64>| {
            assert_eq!(
                crate::version::major_version(version),
                expected,
                "{version:?}"
            );
            let event = Event::from_parts(
                "shop",
                "placed",
                serde_json::Map::new(),
                uuid::Uuid::nil(),
                time::OffsetDateTime::UNIX_EPOCH,
                version,
            )
            .unwrap();
            assert_eq!(event.major_version(), expected, "event of {version:?}");
        };
        check("1.0", Some(1));
        check("12", Some(12));
        check("2.1.3", Some(2));
        check("0.9", Some(0));
        check("007.1", Some(7));
        check("1.x", Some(1));
        check("v1", None);
        check(".1", None);
        check("+1.0", None);
        check("-1.0", None);
        check("1a.0", None);
        check("18446744073709551615.0", Some(u64::MAX));
        check("18446744073709551616.0", None);
        assert_eq!(crate::version::major_version(""), None);
    }

    #[test]
    fn round_trips_through_an_event() {
        let event = Event::from_typed(&placed()).unwrap();
        assert_eq!(event.routing_key(), "shop.placed");
        assert_eq!(event.version(), "2.1");
        assert_eq!(event.data()["items"][0]["quantity"], 2);
        assert_eq!(event.decode::<OrderPlaced>().unwrap(), placed());
    }

    #[test]
    fn decode_accepts_another_minor_version() {
        let event = Event::builder("shop", "placed")
            .version("2.7")
            .data(json!({"order_id": "O-1", "items": [], "extra": true}))
            .build()
            .unwrap();
        assert_eq!(event.decode::<OrderPlaced>().unwrap().order_id, "O-1");
    }

    #[test]
    fn decode_refuses_another_major_version() {
        let event = Event::builder("shop", "placed")
            .version("3.0")
            .data(json!({"order_id": "O-1", "items": []}))
            .build()
            .unwrap();
        let err = event.decode::<OrderPlaced>().unwrap_err();
        assert!(matches!(err, Error::VersionMismatch { .. }), "{err}");
    }

    #[test]
    fn decode_refuses_another_routing_key() {
        let event = Event::new("shop", "cancelled", json!({})).unwrap();
        let err = event.decode::<OrderPlaced>().unwrap_err();
        assert!(matches!(err, Error::SchemaMismatch { .. }), "{err}");
        assert!(err.to_string().contains("shop.cancelled"), "{err}");
    }

    #[test]
    fn decode_names_the_offending_field() {
        let check = |data: serde_json::Value, field: &str| {
            let event = Event::builder("shop", "placed")
                .version("2.0")
                .data(data)
                .build()
                .unwrap();
            match event.decode::<OrderPlaced>() {
                Err(Error::WrongType { field: f, message }) => {
                    assert_eq!(f, field, "{message}")
                }
                other => panic!("expected WrongType at {field}, got {other:?}"),
            }
        };
        check(json!({"items": []}), "data");
        check(json!({"order_id": 5, "items": []}), "data.order_id");
        check(
            json!({"order_id": "O", "items": [{"product_id": "P", "quantity": "two"}]}),
            "data.items[0].quantity",
        );
        check(
            json!({"order_id": "O", "items": [{"product_id": "P", "quantity": -1}]}),
            "data.items[0].quantity",
        );
    }

    #[test]
    fn versioned_key_types_pick_by_version() {
        assert_eq!(OrderPlaced::routing_key(), "shop.placed");
        assert_eq!(PlacedV3::routing_key(), "shop.placed.v3");
        let v3 = PlacedV3 {
            order_id: "O-1".into(),
            channel: "web".into(),
        };
        let event = Event::from_typed(&v3).unwrap();
        assert_eq!(event.routing_key(), "shop.placed.v3");
        assert_eq!(event.version(), "3.0");
        assert!(event.is::<PlacedV3>());
        assert!(!event.is::<OrderPlaced>());
        assert_eq!(event.decode::<PlacedV3>().unwrap(), v3);
        assert!(matches!(
            event.decode::<OrderPlaced>(),
            Err(Error::VersionMismatch { .. })
        ));
        let v2 = Event::from_typed(&placed()).unwrap();
        assert!(v2.is::<OrderPlaced>() && !v2.is::<PlacedV3>());
        // The routing key's version word decides, whatever the body's version says (a
        // Python publisher that did not bump it).
        let keyed = Event::builder("shop", "placed")
            .version("1.0")
            .key_version(3)
            .data(json!({"order_id": "O-2", "channel": "app"}))
            .build()
            .unwrap();
        assert!(keyed.is::<PlacedV3>());
    }

    #[test]
    fn from_typed_refuses_data_that_is_not_an_object() {
        let err = Event::from_typed(&NotAnObject(3)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidField { field: "data", .. }),
            "{err}"
        );
    }
}
