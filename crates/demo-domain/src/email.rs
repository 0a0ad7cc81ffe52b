//! [`SendEmailHandler`]: one email per order, payment and new user, kept in an outbox.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use pubsub_core::{Event, EventHandler, HandlerResult, Metadata, Permanent};

use crate::error::Error;
use crate::events::{is, OrderCreated, OrderPaid, UserRegistered};

/// How many emails an outbox keeps by default; older ones are forgotten (but counted).
pub const DEFAULT_OUTBOX_CAPACITY: usize = 1000;

/// An email the demo would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The recipient.
    pub to: String,
    /// The subject line, which says it all.
    pub subject: String,
}

/// Sends the email an event calls for, and records it in an outbox instead of sending it:
///
/// | event | email |
/// | --- | --- |
/// | `order.created` | order confirmation to `customer_email` |
/// | `order.paid` | payment receipt to the order's customer |
/// | `user.registered` | welcome email to `email` |
///
/// A payment event carries no address, so the handler remembers each order's customer from
/// its `order.created`. A payment for an order it has not seen yet is a retryable error
/// ([`Error::UnknownOrder`]): events of one queue can arrive out of order when an earlier one
/// is retried, and the retry of the payment finds the address once the order is handled.
///
/// Events it is not written for, and events whose data does not decode, are permanent
/// errors: retrying cannot fix them, so a subscriber dead-letters them at once.
///
/// ```
/// use demo_domain::{OrderCreated, OrderItem, SendEmailHandler};
/// use pubsub_core::{Event, EventHandler, Metadata};
///
/// let email = SendEmailHandler::new();
/// let order = OrderCreated {
///     order_id: "ORD-1".into(),
///     customer_email: "ada@example.com".into(),
///     items: vec![OrderItem { product_id: "PROD-001".into(), quantity: 1 }],
///     total_amount: 9.5,
/// };
/// email.handle(&Event::from_typed(&order)?, &Metadata::default())?;
/// assert_eq!(email.outbox()[0].to, "ada@example.com");
/// # Ok::<(), pubsub_core::HandlerError>(())
/// ```
#[derive(Debug)]
pub struct SendEmailHandler {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    outbox: VecDeque<Email>,
    capacity: usize,
    sent: u64,
    /// Order id to customer address, learned from `order.created`.
    customers: HashMap<String, String>,
}

impl SendEmailHandler {
    /// The handler's name in registries, logs and retry headers.
    pub const NAME: &'static str = "send-email";

    /// A handler whose outbox keeps the last [`DEFAULT_OUTBOX_CAPACITY`] emails.
    pub fn new() -> Self {
        Self::with_outbox_capacity(DEFAULT_OUTBOX_CAPACITY)
    }

    /// A handler whose outbox keeps the last `capacity` emails.
    pub fn with_outbox_capacity(capacity: usize) -> Self {
        SendEmailHandler {
            state: Mutex::new(State {
                outbox: VecDeque::new(),
                capacity,
                sent: 0,
                customers: HashMap::new(),
            }),
        }
    }

    /// The emails in the outbox, oldest first.
    pub fn outbox(&self) -> Vec<Email> {
        self.state().outbox.iter().cloned().collect()
    }

    /// How many emails were sent in all, including those the outbox no longer keeps.
    pub fn sent(&self) -> u64 {
        self.state().sent
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the state consistent: every update
        // below is a single push or insert.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The email `event` calls for.
    fn compose(&self, event: &Event) -> Result<Email, pubsub_core::HandlerError> {
        if is::<OrderCreated>(event) {
            let order = event.decode::<OrderCreated>()?;
            self.state()
                .customers
                .insert(order.order_id.clone(), order.customer_email.clone());
            let lines = order.items.len();
            Ok(Email {
                to: order.customer_email,
                subject: format!(
                    "Order {} confirmed: {lines} item{}, total {:.2}",
                    order.order_id,
                    if lines == 1 { "" } else { "s" },
                    order.total_amount
                ),
            })
        } else if is::<OrderPaid>(event) {
            let paid = event.decode::<OrderPaid>()?;
            let to = self
                .state()
                .customers
                .get(&paid.order_id)
                .cloned()
                .ok_or_else(|| Error::unknown_order(&paid.order_id))?;
            Ok(Email {
                to,
                subject: format!(
                    "Payment {} of {:.2} received for order {}",
                    paid.payment_id, paid.amount, paid.order_id
                ),
            })
        } else if is::<UserRegistered>(event) {
            let user = event.decode::<UserRegistered>()?;
            Ok(Email {
                to: user.email,
                subject: format!("Welcome, {}!", user.username),
            })
        } else {
            Err(Permanent::new(Error::unsupported(Self::NAME, event.routing_key())).into())
        }
    }
}

impl Default for SendEmailHandler {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHandler for SendEmailHandler {
    fn handle(&self, event: &Event, _meta: &Metadata) -> HandlerResult {
        let email = self.compose(event)?;
        log::debug!("email to {}: {}", email.to, email.subject);
        let mut state = self.state();
        if state.capacity > 0 {
            if state.outbox.len() == state.capacity {
                state.outbox.pop_front();
            }
            state.outbox.push_back(email);
        }
        state.sent += 1;
        Ok(())
    }

    fn name(&self) -> &str {
        Self::NAME
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::TypedEvent;
    use serde_json::json;

    use super::*;
    use crate::fixtures::{paid, user};

    fn order(order_id: &str, to: &str) -> Event {
        crate::fixtures::order(order_id, to, &[("PROD-001", 2)])
    }

    fn handle(handler: &SendEmailHandler, event: &Event) -> HandlerResult {
        handler.handle(event, &Metadata::default())
    }

    #[test]
    fn each_event_gets_its_email() {
        let check = |events: &[Event], to: &str, subject: &str| {
            let handler = SendEmailHandler::new();
            for event in events {
                handle(&handler, event).unwrap();
            }
            let last = handler.outbox().pop().unwrap();
            assert_eq!((last.to.as_str(), last.subject.as_str()), (to, subject));
        };
        check(
            &[order("ORD-123", "c@example.com")],
            "c@example.com",
            "Order ORD-123 confirmed: 1 item, total 99.99",
        );
        check(
            &[order("ORD-123", "c@example.com"), paid("ORD-123")],
            "c@example.com",
            "Payment PAY-456 of 99.99 received for order ORD-123",
        );
        check(&[user()], "ada@example.com", "Welcome, ada!");
    }

    #[test]
    fn a_payment_before_its_order_is_retryable() {
        let handler = SendEmailHandler::new();
        let err = handle(&handler, &paid("ORD-9")).unwrap_err();
        assert!(!Permanent::is_permanent(&*err), "{err}");
        assert!(err.to_string().contains("ORD-9"), "{err}");
        assert_eq!(handler.sent(), 0);
        // Once the order is handled, the retried payment goes through.
        handle(&handler, &order("ORD-9", "late@example.com")).unwrap();
        handle(&handler, &paid("ORD-9")).unwrap();
        assert_eq!(handler.outbox()[1].to, "late@example.com");
    }

    #[test]
    fn bad_data_and_foreign_events_are_permanent() {
        let check = |event: Event, message: &str| {
            let err = handle(&SendEmailHandler::new(), &event).unwrap_err();
            assert!(Permanent::is_permanent(&*err), "{err}");
            assert!(err.to_string().contains(message), "{err}");
        };
        check(
            Event::new(OrderCreated::DOMAIN, OrderCreated::ACTION, json!({})).unwrap(),
            "order_id",
        );
        check(
            Event::new("order", "cancelled", json!({})).unwrap(),
            "does not handle `order.cancelled`",
        );
    }

    #[test]
    fn the_outbox_keeps_the_last_emails() {
        let handler = SendEmailHandler::with_outbox_capacity(2);
        for i in 0..5 {
            handle(&handler, &order(&format!("ORD-{i}"), "c@example.com")).unwrap();
        }
        let subjects: Vec<String> = handler.outbox().into_iter().map(|e| e.subject).collect();
        assert!(subjects[0].starts_with("Order ORD-3 "), "{subjects:?}");
        assert!(subjects[1].starts_with("Order ORD-4 "), "{subjects:?}");
        assert_eq!(handler.sent(), 5);
    }
}
