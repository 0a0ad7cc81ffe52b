//! [`UpdateInventoryHandler`]: reserves the stock of each order, exactly once, in the shop's
//! database.

use std::collections::BTreeMap;

use pubsub_core::{Event, EventHandler, HandlerResult, Metadata, Permanent};
use pubsub_outbox::SqliteInbox;
use rusqlite::{params, OptionalExtension};

use crate::error::{Error, Result};
use crate::events::{is, OrderCreated, OrderItem};
use crate::shop::Shop;

/// The inbox's form of the handler: the delivery's transaction in, the reservation written
/// in it.
type Reserve = fn(&Event, &Metadata, &mut rusqlite::Savepoint<'_>) -> HandlerResult;

/// Reserves the items of each `order.created` in the [`Shop`]'s stock: the levels go down and
/// a reservation row per product is kept, in the delivery's own transaction.
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
/// guarantees in `docs/retries-and-dead-letters.md`). Taking stock twice would be wrong: the
/// handler is an inbox handler ([`SqliteInbox`]), so the reservation and the record "the
/// inventory handled this event" commit in one transaction, before the delivery is acked. A
/// redelivery of an event whose reservation committed is acked without running, across
/// restarts too.
///
/// ```
/// use demo_domain::{OrderCreated, OrderItem, Shop, UpdateInventoryHandler};
/// use pubsub_core::{Event, EventHandler, Metadata};
///
/// let shop = Shop::scratch([("PROD-001", 10)])?;
/// let inventory = UpdateInventoryHandler::new(&shop)?;
/// let order = Event::from_typed(&OrderCreated {
///     order_id: "ORD-1".into(),
///     customer_email: "ada@example.com".into(),
///     items: vec![OrderItem { product_id: "PROD-001".into(), quantity: 3 }],
///     total_amount: 29.97,
/// })?;
/// inventory.handle(&order, &Metadata::default())?;
/// inventory.handle(&order, &Metadata::default().with_redelivered(true))?; // a redelivery
/// assert_eq!(shop.stock("PROD-001")?, Some(7));
/// assert_eq!(shop.reservations()?, 1);
/// # Ok::<(), pubsub_core::HandlerError>(())
/// ```
#[derive(Debug)]
pub struct UpdateInventoryHandler {
    inbox: SqliteInbox<Reserve>,
    shop: Shop,
}

impl UpdateInventoryHandler {
    /// The handler's name in registries, logs and retry headers, and its inbox's consumer
    /// name.
    pub const NAME: &'static str = "update-inventory";

    /// The handler over `shop`'s stock.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the inbox's table cannot be created.
    pub fn new(shop: &Shop) -> Result<Self> {
        let inbox = SqliteInbox::new(shop.database(), Self::NAME, reserve as Reserve)
            .map_err(|e| Error::database("creating the inventory's inbox", &e))?;
        Ok(UpdateInventoryHandler {
            inbox,
            shop: shop.clone(),
        })
    }

    /// The shop whose stock it reserves.
    pub fn shop(&self) -> &Shop {
        &self.shop
    }
}

/// One delivery, in its transaction.
fn reserve(event: &Event, _meta: &Metadata, tx: &mut rusqlite::Savepoint<'_>) -> HandlerResult {
    if !is::<OrderCreated>(event) {
        let name = UpdateInventoryHandler::NAME;
        return Err(Permanent::new(Error::unsupported(name, event.routing_key())).into());
    }
    let order = event.decode::<OrderCreated>()?;
    match take_stock(tx, event, &order) {
        Ok(()) => Ok(()),
        Err(e @ (Error::OutOfStock { .. } | Error::UnknownProduct { .. })) => {
            Err(Permanent::new(e).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes an order's stock in the delivery's transaction and keeps one reservation row per
/// product: all or nothing.
fn take_stock(tx: &rusqlite::Connection, event: &Event, order: &OrderCreated) -> Result<()> {
    let doing = "reserving stock";
    let fail = |e: rusqlite::Error| Error::database(doing, &e);
    let mut levels = BTreeMap::new();
    for item in &order.items {
        let level: Option<i64> = tx
            .query_row(
                "SELECT level FROM demo_stock WHERE product_id = ?1",
                [&item.product_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(fail)?;
        if let Some(level) = level {
            levels.insert(item.product_id.clone(), u64::try_from(level).unwrap_or(0));
        }
    }
    let before = levels.clone();
    take(&mut levels, &order.items)?;
    for (product, level) in &levels {
        let taken = before.get(product).copied().unwrap_or(0) - level;
        if taken == 0 {
            continue;
        }
        tx.execute(
            "UPDATE demo_stock SET level = ?1 WHERE product_id = ?2",
            params![i64::try_from(*level).unwrap_or(0), product],
        )
        .map_err(fail)?;
        tx.execute(
            "INSERT INTO demo_reservations (order_id, product_id, quantity, event_id) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                order.order_id,
                product,
                i64::try_from(taken).unwrap_or(0),
                event.event_id().to_string()
            ],
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// Takes `items` out of `levels`, all or nothing (pure).
///
/// # Errors
///
/// [`Error::UnknownProduct`] or [`Error::OutOfStock`] for the first product that cannot be
/// taken; `levels` is then unchanged.
pub(crate) fn take(levels: &mut BTreeMap<String, u64>, items: &[OrderItem]) -> Result<()> {
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
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        self.inbox.handle(event, meta)
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

    fn inventory(stock: &[(&str, u64)]) -> UpdateInventoryHandler {
        UpdateInventoryHandler::new(&Shop::scratch(stock.iter().copied()).unwrap()).unwrap()
    }

    #[test]
    fn take_is_all_or_nothing() {
        // (order lines, expected error, expected levels of A and B after)
        let check = |lines: &[(&str, u32)], error: Option<&str>, after: (u64, u64)| {
            let mut levels: BTreeMap<String, u64> =
                [("A".to_owned(), 5), ("B".to_owned(), 1)].into();
            let result = take(&mut levels, &items(lines));
            assert_eq!(result.err().map(|e| e.to_string()).as_deref(), error);
            assert_eq!((levels["A"], levels["B"]), after);
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
    fn refusals_are_permanent_and_take_nothing() {
        let inventory = inventory(&[("A", 1)]);
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
        assert_eq!(inventory.shop().stock("A").unwrap(), Some(1));
        assert_eq!(inventory.shop().reservations().unwrap(), 0);
    }

    #[test]
    fn a_repeated_event_is_applied_once_even_by_another_handler_instance() {
        let inventory = inventory(&[("A", 10)]);
        let event = order(&[("A", 4)]);
        let redelivered = Metadata::default().with_redelivered(true);
        inventory.handle(&event, &Metadata::default()).unwrap();
        inventory.handle(&event, &redelivered).unwrap();
        // A restarted service: a new handler on the same database.
        let restarted = UpdateInventoryHandler::new(inventory.shop()).unwrap();
        restarted.handle(&event, &redelivered).unwrap();
        assert_eq!(inventory.shop().stock("A").unwrap(), Some(6));
        assert_eq!(inventory.shop().reservations().unwrap(), 1);
        inventory
            .handle(&order(&[("A", 4)]), &Metadata::default())
            .unwrap();
        assert_eq!(inventory.shop().stock("A").unwrap(), Some(2));
    }

    #[test]
    fn only_orders_are_handled() {
        let inventory = inventory(&[("A", 10)]);
        let err = inventory
            .handle(
                &Event::new("user", "registered", json!({})).unwrap(),
                &Metadata::default(),
            )
            .unwrap_err();
        assert!(Permanent::is_permanent(&*err), "{err}");
    }
}
