//! [`Idempotent`]: skip events a handler already handled, within a bounded window.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;

use pubsub_core::{Event, EventHandler, HandlerResult, Metadata};

/// Wraps a handler so that it handles each event (by [`Event::event_id`]) at most once among
/// the last `window` events it handled successfully.
///
/// Delivery is at least once: after a consumer crashes or loses its connection between a
/// handler's effect and the broker's ack, the event is delivered again. `Idempotent` turns
/// that second delivery into a no-op for this handler, as long as the first one happened in
/// this process and is among the last `window` successes. A failed run is not remembered, so
/// a retry runs the handler again.
///
/// The window lives in memory: it does not cover a redelivery to another instance of the
/// service, or after a restart. Handlers whose effect must never repeat should also record
/// the event id where they record the effect (a unique key in the same database
/// transaction).
///
/// Opt in per handler by wrapping it, or for every handler of a registry with
/// [`HandlerRegistry::deduplicate`](crate::HandlerRegistry::deduplicate).
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
///
/// use pubsub_core::{handler_fn, Event, EventHandler, Metadata};
/// use pubsub_registry::Idempotent;
/// use serde_json::json;
///
/// let sent = Arc::new(AtomicU32::new(0));
/// let counter = sent.clone();
/// let send_email = Idempotent::new(
///     handler_fn("send-email", move |_, _| {
///         counter.fetch_add(1, Ordering::SeqCst);
///         Ok(())
///     }),
///     10_000,
/// );
/// let event = Event::new("order", "created", json!({}))?;
/// send_email.handle(&event, &Metadata::default())?;
/// send_email.handle(&event, &Metadata::default().with_redelivered(true))?; // skipped
/// assert_eq!(sent.load(Ordering::SeqCst), 1);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub struct Idempotent<H> {
    inner: H,
    seen: Mutex<Window>,
}

struct Window {
    ids: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl Window {
    fn new(capacity: usize) -> Self {
        Window {
            ids: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
        }
    }

    fn insert(&mut self, id: u128) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.ids.remove(&oldest);
                }
            }
        }
    }
}

impl<H: EventHandler> Idempotent<H> {
    /// Wraps `inner`, remembering the last `window` event ids it handled successfully (at
    /// least 1).
    pub fn new(inner: H, window: usize) -> Self {
        Idempotent {
            inner,
            seen: Mutex::new(Window::new(window)),
        }
    }

    fn seen(&self, id: u128) -> bool {
        match self.seen.lock() {
            Ok(window) => window.ids.contains(&id),
            Err(poisoned) => poisoned.into_inner().ids.contains(&id),
        }
    }

    fn remember(&self, id: u128) {
        match self.seen.lock() {
            Ok(mut window) => window.insert(id),
            Err(poisoned) => poisoned.into_inner().insert(id),
        }
    }
}

impl<H: EventHandler> EventHandler for Idempotent<H> {
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        let id = event.event_id().as_u128();
        if self.seen(id) {
            log::debug!(
                "handler `{}` skips {event}: it handled this event already",
                self.inner.name()
            );
            return Ok(());
        }
        self.inner.handle(event, meta)?;
        self.remember(id);
        Ok(())
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

impl<H> fmt::Debug for Idempotent<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remembered = self.seen.lock().map(|w| w.ids.len()).unwrap_or(0);
        f.debug_struct("Idempotent")
            .field("remembered", &remembered)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use pubsub_core::handler_fn;
    use serde_json::json;

    use super::*;

    fn counting(fail_first: bool) -> (Arc<AtomicU32>, impl EventHandler) {
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let handler = handler_fn("h", move |_, _| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if fail_first && n == 0 {
                Err("first run fails".into())
            } else {
                Ok(())
            }
        });
        (runs, handler)
    }

    fn event() -> Event {
        Event::new("a", "b", json!({})).unwrap()
    }

    #[test]
    fn a_second_delivery_is_skipped() {
        let (runs, handler) = counting(false);
        let handler = Idempotent::new(handler, 10);
        let e = event();
        for _ in 0..3 {
            handler.handle(&e, &Metadata::default()).unwrap();
        }
        handler.handle(&event(), &Metadata::default()).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(handler.name(), "h");
    }

    #[test]
    fn a_failure_is_not_remembered() {
        let (runs, handler) = counting(true);
        let handler = Idempotent::new(handler, 10);
        let e = event();
        assert!(handler.handle(&e, &Metadata::default()).is_err());
        handler.handle(&e, &Metadata::default()).unwrap();
        handler.handle(&e, &Metadata::default()).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_window_is_bounded() {
        let (runs, handler) = counting(false);
        let handler = Idempotent::new(handler, 2);
        let (a, b, c) = (event(), event(), event());
        for e in [&a, &b, &c, &a] {
            handler.handle(e, &Metadata::default()).unwrap();
        }
        // `a` was evicted by `c`, so it ran again.
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        let window = handler.seen.lock().unwrap();
        assert_eq!(window.ids.len(), 2);
        assert_eq!(window.order.len(), 2);
    }
}
