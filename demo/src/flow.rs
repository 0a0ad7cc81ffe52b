//! [`Workload`]: the events the demo sends.

use demo_domain::{Handlers, OrderCreated, OrderItem, OrderPaid, Shop, UserRegistered};
use pubsub::core::Event;

/// What the demo sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// The original design's order flow: an order is created, then paid, then a user
    /// registers. Each event is reported in detail.
    OrderFlow,
    /// This many `order.created` events, one product each, for throughput: only totals and
    /// rates are reported.
    Orders(u64),
}

/// One event to send, with a short description for the summary.
#[derive(Debug, Clone)]
pub(crate) struct Labeled {
    pub(crate) label: String,
    pub(crate) event: Event,
}

impl Workload {
    /// How many events it sends.
    pub fn len(&self) -> u64 {
        match self {
            Workload::OrderFlow => 3,
            Workload::Orders(n) => *n,
        }
    }

    /// Whether it sends nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fresh handlers over a new shop (a SQLite file under the temporary directory, removed
    /// with the handlers) with just the stock the workload needs: the demo stock for the
    /// order flow, one `PROD-001` per order otherwise (so the stock ends at zero when every
    /// order was taken exactly once).
    ///
    /// # Errors
    ///
    /// The shop's database cannot be created.
    pub fn handlers(&self) -> demo_domain::Result<Handlers> {
        let shop = match self {
            Workload::OrderFlow => Shop::scratch(demo_domain::DEMO_STOCK.iter().copied())?,
            Workload::Orders(n) => Shop::scratch([(BULK_PRODUCT, *n)])?,
        };
        Handlers::new(&shop)
    }

    /// Whether each event is reported in detail.
    pub(crate) fn detailed(&self) -> bool {
        matches!(self, Workload::OrderFlow)
    }

    /// The events from `start`, at most `len` of them.
    pub(crate) fn events(&self, start: u64, len: u64) -> pubsub::core::Result<Vec<Labeled>> {
        let end = start.saturating_add(len).min(self.len());
        match self {
            Workload::OrderFlow => Ok(order_flow()?
                .into_iter()
                .skip(usize::try_from(start).unwrap_or(usize::MAX))
                .take(usize::try_from(end.saturating_sub(start)).unwrap_or(0))
                .collect()),
            Workload::Orders(_) => (start..end).map(bulk_order).collect(),
        }
    }
}

/// The product every bulk order takes one of.
const BULK_PRODUCT: &str = "PROD-001";

/// The seeds' order flow.
fn order_flow() -> pubsub::core::Result<Vec<Labeled>> {
    let order = OrderCreated {
        order_id: "ORD-123".into(),
        customer_email: "customer@example.com".into(),
        items: vec![
            OrderItem {
                product_id: "PROD-001".into(),
                quantity: 2,
            },
            OrderItem {
                product_id: "PROD-002".into(),
                quantity: 1,
            },
        ],
        total_amount: 99.99,
    };
    let paid = OrderPaid {
        order_id: "ORD-123".into(),
        payment_id: "PAY-456".into(),
        amount: 99.99,
    };
    let user = UserRegistered {
        user_id: "U-789".into(),
        username: "ada".into(),
        email: "ada@example.com".into(),
    };
    Ok(vec![
        Labeled {
            label: format!("{} ({} items)", order.order_id, order.items.len()),
            event: Event::from_typed(&order)?,
        },
        Labeled {
            label: format!("{} for {}", paid.payment_id, paid.order_id),
            event: Event::from_typed(&paid)?,
        },
        Labeled {
            label: format!("{} ({})", user.user_id, user.username),
            event: Event::from_typed(&user)?,
        },
    ])
}

/// Bulk order number `i`.
fn bulk_order(i: u64) -> pubsub::core::Result<Labeled> {
    let order = OrderCreated {
        order_id: format!("ORD-{i:07}"),
        customer_email: format!("customer{}@example.com", i % 100),
        items: vec![OrderItem {
            product_id: BULK_PRODUCT.into(),
            quantity: 1,
        }],
        total_amount: 19.99,
    };
    Ok(Labeled {
        label: order.order_id.clone(),
        event: Event::from_typed(&order)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_into_batches() {
        // (workload, start, len, expected routing keys)
        let check = |workload: Workload, start: u64, len: u64, expected: &[&str]| {
            let events = workload.events(start, len).unwrap();
            let keys: Vec<&str> = events.iter().map(|l| l.event.routing_key()).collect();
            assert_eq!(keys, expected, "{workload:?} from {start}, {len}");
        };
        let flow = Workload::OrderFlow;
        check(
            flow,
            0,
            10,
            &["order.created", "order.paid", "user.registered"],
        );
        check(flow, 1, 1, &["order.paid"]);
        check(flow, 3, 1, &[]);
        check(Workload::Orders(5), 3, 10, &["order.created"; 2]);
        check(Workload::Orders(0), 0, 10, &[]);
    }

    #[test]
    fn bulk_orders_are_distinct() {
        let events = Workload::Orders(3).events(0, 3).unwrap();
        let labels: Vec<&str> = events.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["ORD-0000000", "ORD-0000001", "ORD-0000002"]);
        assert_ne!(events[0].event.event_id(), events[1].event.event_id());
    }
}
