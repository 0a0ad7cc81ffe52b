//! The demo's typed events, with the field names of the original design's Python services.

#[cfg(feature = "schema")]
use pubsub_core::schema::schemars;
use pubsub_core::TypedEvent;
use serde::{Deserialize, Serialize};

/// `order.created`: a customer placed an order.
///
/// The fields are those the original design's services send, so their events decode:
///
/// ```json
/// {"order_id": "ORD-123", "customer_email": "customer@example.com",
///  "items": [{"product_id": "PROD-001", "quantity": 2}], "total_amount": 99.99}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(crate = "pubsub_core::schema::schemars"))]
pub struct OrderCreated {
    /// The order's identifier, e.g. `ORD-123`.
    pub order_id: String,
    /// Where the order confirmation goes.
    pub customer_email: String,
    /// What was ordered.
    pub items: Vec<OrderItem>,
    /// The order's total, in the shop's currency (a JSON number, as the Python services send).
    pub total_amount: f64,
}

impl TypedEvent for OrderCreated {
    const DOMAIN: &'static str = "order";
    const ACTION: &'static str = "created";
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(crate = "pubsub_core::schema::schemars"))]
pub struct OrderItem {
    /// The product's identifier, e.g. `PROD-001`.
    pub product_id: String,
    /// How many were ordered.
    pub quantity: u32,
}

/// `order.paid`: the payment of an order went through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(crate = "pubsub_core::schema::schemars"))]
pub struct OrderPaid {
    /// The order that was paid.
    pub order_id: String,
    /// The payment's identifier, e.g. `PAY-456`.
    pub payment_id: String,
    /// The amount paid.
    pub amount: f64,
}

impl TypedEvent for OrderPaid {
    const DOMAIN: &'static str = "order";
    const ACTION: &'static str = "paid";
}

/// `user.registered`: someone created an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(crate = "pubsub_core::schema::schemars"))]
pub struct UserRegistered {
    /// The user's identifier.
    pub user_id: String,
    /// The name the user chose.
    pub username: String,
    /// Where the welcome email goes.
    pub email: String,
}

impl TypedEvent for UserRegistered {
    const DOMAIN: &'static str = "user";
    const ACTION: &'static str = "registered";
}

/// Whether `event` is of the typed event `T` (same domain and action).
pub(crate) fn is<T: TypedEvent>(event: &pubsub_core::Event) -> bool {
    event.domain() == T::DOMAIN && event.action() == T::ACTION
}

#[cfg(test)]
mod tests {
    use pubsub_core::{json, Event};

    use super::*;

    /// The body a Python service of the original design publishes.
    fn python(domain: &str, action: &str, data: &str) -> Event {
        let body = format!(
            r#"{{"domain": "{domain}", "action": "{action}", "data": {data},
                "event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                "timestamp": "2024-05-01T12:30:00.123456", "version": "1.0"}}"#
        );
        json::from_slice(body.as_bytes()).unwrap()
    }

    #[test]
    fn python_events_decode() {
        let order = python(
            "order",
            "created",
            r#"{"order_id": "ORD-123", "customer_email": "customer@example.com",
                "items": [{"product_id": "PROD-001", "quantity": 2}], "total_amount": 99.99}"#,
        );
        let order = order.decode::<OrderCreated>().unwrap();
        assert_eq!(order.order_id, "ORD-123");
        assert_eq!(
            order.items,
            [OrderItem {
                product_id: "PROD-001".into(),
                quantity: 2
            }]
        );
        assert_eq!(order.total_amount, 99.99);

        let paid = python(
            "order",
            "paid",
            r#"{"order_id": "ORD-123", "payment_id": "PAY-456", "amount": 99.99}"#,
        );
        assert_eq!(paid.decode::<OrderPaid>().unwrap().payment_id, "PAY-456");

        let user = python(
            "user",
            "registered",
            r#"{"user_id": "U-1", "username": "ada", "email": "ada@example.com"}"#,
        );
        assert_eq!(user.decode::<UserRegistered>().unwrap().username, "ada");
    }

    #[test]
    fn decode_names_what_does_not_fit() {
        let check = |data: &str, field: &str| {
            let event = python("order", "created", data);
            let err = event.decode::<OrderCreated>().unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        };
        check(
            r#"{"customer_email": "a@b", "items": [], "total_amount": 1}"#,
            "order_id",
        );
        check(
            r#"{"order_id": "O", "customer_email": "a@b", "total_amount": 1,
                "items": [{"product_id": "P", "quantity": -2}]}"#,
            "data.items[0].quantity",
        );
        check(
            r#"{"order_id": "O", "customer_email": "a@b", "items": [], "total_amount": "12"}"#,
            "data.total_amount",
        );
    }

    #[test]
    fn routing_keys() {
        let check = |event: Event, key: &str| assert_eq!(event.routing_key(), key);
        check(
            Event::from_typed(&OrderPaid {
                order_id: "O".into(),
                payment_id: "P".into(),
                amount: 1.0,
            })
            .unwrap(),
            "order.paid",
        );
        check(
            Event::from_typed(&UserRegistered {
                user_id: "U".into(),
                username: "u".into(),
                email: "u@example.com".into(),
            })
            .unwrap(),
            "user.registered",
        );
    }
}
