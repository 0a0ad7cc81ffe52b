//! Events the unit tests share.

use pubsub_core::Event;

use crate::events::{OrderCreated, OrderItem, OrderPaid, UserRegistered};

/// Order lines from `(product_id, quantity)` pairs.
pub(crate) fn items(lines: &[(&str, u32)]) -> Vec<OrderItem> {
    lines
        .iter()
        .map(|&(p, quantity)| OrderItem {
            product_id: p.into(),
            quantity,
        })
        .collect()
}

/// An `order.created` event.
pub(crate) fn order(order_id: &str, to: &str, lines: &[(&str, u32)]) -> Event {
    Event::from_typed(&OrderCreated {
        order_id: order_id.into(),
        customer_email: to.into(),
        items: items(lines),
        total_amount: 99.99,
    })
    .unwrap()
}

/// An `order.paid` event.
pub(crate) fn paid(order_id: &str) -> Event {
    Event::from_typed(&OrderPaid {
        order_id: order_id.into(),
        payment_id: "PAY-456".into(),
        amount: 99.99,
    })
    .unwrap()
}

/// A `user.registered` event.
pub(crate) fn user() -> Event {
    Event::from_typed(&UserRegistered {
        user_id: "U-1".into(),
        username: "ada".into(),
        email: "ada@example.com".into(),
    })
    .unwrap()
}
