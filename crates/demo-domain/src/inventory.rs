//! [`UpdateInventoryHandler`]: takes ordered items out of stock, never below zero.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pubsub_core::{Event, EventHandler, HandlerResult, Metadata, Permanent};

use crate::error::{Error, Result};
use crate::events::{is, OrderCreated, OrderItem};

/// Takes the items of each `order.created` out of stock.
///
/// An order is taken whole or not at all: when one of its products is unknown or short, the
/// handler fails with [`Error::UnknownProduct`] or [`Error::OutOfStock`] and no level changes.
///
/// Those failures are **permanent** ([`Permanent`]): the subscriber dead-letters the event at
/// once instead of retrying it. Retries come seconds apart, and stock does not come back in
/// seconds; an order that cannot be filled needs a decision (restock and replay it from the
/// dead-letter queue, back-order it, cancel it), and the dead-letter queue is where an
/// operator sees it, with the reason in its headers. Retrying would only delay that, and
/// make the event look like a transient fault.
///
/// Delivery is at least once, so an `order.created` can arrive twice (see the delivery
/// guarantees in `docs/retries-and-dead-letters.md`). Taking stock twice would be wrong, so
/// the handler remembers the ids of the events it applied and skips a repeat. A real service would record them in the same
/// database transaction as the stock change.
///
/// ```
/// use demo_domain::{OrderCreated, OrderItem, UpdateInventoryHandler};
/// use pubsub_core::{Event, EventHandler, Metadata};
///
/// let inventory = UpdateInventoryHandler::new([("PROD-001", 10)]);
/// let order = OrderCreated {
///     order_id: "ORD-1".into(),
///     customer_email: "ada@example.com".into(),
///     items: vec![OrderItem { product_id: "PROD-001".into(), quantity: 3 }],
///     total_amount: 29.97,
/// };
/// inventory.handle(&Event::from_typed(&order)?, &Metadata::default())?;
/// assert_eq!(inventory.stock("PROD-001"), Some(7));
/// # Ok::<(), pubsub_core::HandlerError>(())
/// ```
#[derive(Debug)]
pub struct UpdateInventoryHandler {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    levels: BTreeMap<String, u64>,
    /// Ids of the events already applied.
    applied: HashSet<u128>,
}

impl UpdateInventoryHandler {
    /// The handler's name in registries, logs and retry headers.
    pub const NAME: &'static str = "update-inventory";

    /// A handler over this stock: product ids and how many of each are in stock.
    pub fn new<P: Into<String>>(stock: impl IntoIterator<Item = (P, u64)>) -> Self {
        UpdateInventoryHandler {
            state: Mutex::new(State {
                levels: stock.into_iter().map(|(p, n)| (p.into(), n)).collect(),
                applied: HashSet::new(),
            }),
        }
    }

    /// How many of `product_id` are in stock; `None` for a product the inventory does not
    /// carry.
    pub fn stock(&self, product_id: &str) -> Option<u64> {
        self.state().levels.get(product_id).copied()
    }

    /// Every product's stock level, by product id.
    pub fn levels(&self) -> BTreeMap<String, u64> {
        self.state().levels.clone()
    }

    /// Takes `items` out of stock, all or nothing.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProduct`] or [`Error::OutOfStock`] for the first product that cannot
    /// be taken; the stock is then unchanged.
    pub fn take(&self, items: &[OrderItem]) -> Result<()> {
        take(&mut self.state().levels, items)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update below is checked before it is applied: a panic cannot leave half of it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes `items` out of `levels`, all or nothing.
fn take(levels: &mut BTreeMap<String, u64>, items: &[OrderItem]) -> Result<()> {
    // The same product can appear on several lines: check each product's total.
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for item in items {
        *wanted.entry(&item.product_id).or_default() += u64::from(item.quantity);
    }
    for (&product_id, &requested) in &wanted {
        let available = *levels
            .get(product_id)
            .ok_or_else(|| Error::unknown_product(product_id))?;
        if requested > available {
            return Err(Error::out_of_stock(product_id, requested, available));
        }
    }
    for (product_id, requested) in wanted {
        if let Some(level) = levels.get_mut(product_id) {
            *level -= requested;
        }
    }
    Ok(())
}

impl EventHandler for UpdateInventoryHandler {
    fn handle(&self, event: &Event, _meta: &Metadata) -> HandlerResult {
        if !is::<OrderCreated>(event) {
            return Err(Permanent::new(Error::unsupported(Self::NAME, event.routing_key())).into());
        }
        let order = event.decode::<OrderCreated>()?;
        let mut state = self.state();
        let id = event.event_id().as_u128();
        if state.applied.contains(&id) {
            log::info!("{event} was already applied to the stock: skipped");
            return Ok(());
        }
        take(&mut state.levels, &order.items).map_err(Permanent::new)?;
        state.applied.insert(id);
        Ok(())
    }

    fn name(&self) -> &str {
        Self::NAME
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::items;

    fn order(lines: &[(&str, u32)]) -> Event {
        crate::fixtures::order("ORD-1", "c@example.com", lines)
    }

    #[test]
    fn take_is_all_or_nothing() {
        // (order lines, expected error, expected levels of A and B after)
        let check = |lines: &[(&str, u32)], error: Option<&str>, after: (u64, u64)| {
            let inventory = UpdateInventoryHandler::new([("A", 5), ("B", 1)]);
            let result = inventory.take(&items(lines));
            assert_eq!(result.err().map(|e| e.to_string()).as_deref(), error);
            assert_eq!(
                (inventory.stock("A"), inventory.stock("B")),
                (Some(after.0), Some(after.1))
            );
        };
        check(&[("A", 2)], None, (3, 1));
        check(&[("A", 5), ("B", 1)], None, (0, 0));
        check(&[("A", 0)], None, (5, 1));
        check(&[], None, (5, 1));
        check(
            &[("A", 3), ("A", 3)],
            Some(r#"out of stock: product "A" has 5 left, the order asks for 6"#),
            (5, 1),
        );
        check(
            &[("A", 1), ("B", 2)],
            Some(r#"out of stock: product "B" has 1 left, the order asks for 2"#),
            (5, 1),
        );
        check(
            &[("A", 1), ("C", 1)],
            Some(r#"unknown product "C""#),
            (5, 1),
        );
    }

    #[test]
    fn refusals_are_permanent() {
        let inventory = UpdateInventoryHandler::new([("A", 1)]);
        let err = inventory
            .handle(&order(&[("A", 2)]), &Metadata::default())
            .unwrap_err();
        assert!(Permanent::is_permanent(&*err), "{err}");
        let err = inventory
            .handle(
                &Event::new("order", "created", json!({"order_id": "O"})).unwrap(),
                &Metadata::default(),
            )
            .unwrap_err();
        assert!(Permanent::is_permanent(&*err), "{err}");
        assert_eq!(inventory.stock("A"), Some(1));
    }

    #[test]
    fn a_repeated_event_is_applied_once() {
        let inventory = UpdateInventoryHandler::new([("A", 10)]);
        let event = order(&[("A", 4)]);
        let redelivered = Metadata::default().with_redelivered(true);
        inventory.handle(&event, &Metadata::default()).unwrap();
        inventory.handle(&event, &redelivered).unwrap();
        assert_eq!(inventory.stock("A"), Some(6));
        inventory
            .handle(&order(&[("A", 4)]), &Metadata::default())
            .unwrap();
        assert_eq!(inventory.stock("A"), Some(2));
    }

    #[test]
    fn only_orders_are_handled() {
        let inventory = UpdateInventoryHandler::new([("A", 10)]);
        let err = inventory
            .handle(
                &Event::new("user", "registered", json!({})).unwrap(),
                &Metadata::default(),
            )
            .unwrap_err();
        assert!(Permanent::is_permanent(&*err), "{err}");
    }
}
