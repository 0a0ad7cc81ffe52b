//! Correlation: the event a handler is handling is the "current" one on its thread (for an
//! async handler, in its task: feature `tokio`), and what the bus publishes from there is
//! correlated with it.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use pubsub_core::{Event, EventHandler, HandlerResult, Metadata};
use uuid::Uuid;

use crate::metrics::Histogram;

/// The event being handled on this thread: its id and its correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incoming {
    pub(crate) event_id: Uuid,
    pub(crate) correlation_id: Option<String>,
}

impl Incoming {
    /// The event `event`, delivered with `meta`, as the one being handled.
    pub(crate) fn of(event: &Event, meta: &Metadata) -> Incoming {
        Incoming {
            event_id: event.event_id(),
            correlation_id: meta.correlation_id().map(str::to_owned),
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

#[cfg(feature = "tokio")]
tokio::task_local! {
    /// The event an async handler's task is handling: it stays with the task across
    /// `.await` points, whichever thread polls it.
    pub(crate) static TASK_CURRENT: Incoming;
}

/// The event being handled on this thread, if a bus handler is running (or, with the `tokio`
/// feature, in this task, if an async handler is).
pub(crate) fn current() -> Option<Incoming> {
    let on_thread = CURRENT.with(|c| c.borrow().clone());
    #[cfg(feature = "tokio")]
    if on_thread.is_none() {
        return TASK_CURRENT.try_with(Clone::clone).ok();
    }
    on_thread
}

/// Restores the previous current event when dropped, also when the handler panics.
struct Restore(Option<Incoming>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Runs `f` with `incoming` as the current event of this thread (nested runs restore the
/// outer one).
pub(crate) fn with_incoming<R>(incoming: Incoming, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.borrow_mut().replace(incoming));
    let _restore = Restore(previous);
    f()
}

/// The correlation and causation ids of an event published while `incoming` is being
/// handled, unless the caller set them: the correlation id is the incoming event's
/// correlation id, or its event id when it had none (it starts the flow); the causation id is
/// the incoming event's id.
pub(crate) fn correlate(
    correlation_id: Option<String>,
    causation_id: Option<String>,
    incoming: Option<&Incoming>,
) -> (Option<String>, Option<String>) {
    let Some(incoming) = incoming else {
        return (correlation_id, causation_id);
    };
    let correlation = correlation_id.or_else(|| {
        Some(
            incoming
                .correlation_id
                .clone()
                .unwrap_or_else(|| incoming.event_id.to_string()),
        )
    });
    let causation = causation_id.or_else(|| Some(incoming.event_id.to_string()));
    (correlation, causation)
}

/// A handler that runs with its event as the thread's current one, timed into its
/// histogram when metrics are on.
pub(crate) struct Contextual {
    pub(crate) handler: Arc<dyn EventHandler>,
    pub(crate) durations: Option<Arc<Histogram>>,
}

impl EventHandler for Contextual {
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        let incoming = Incoming::of(event, meta);
        let Some(durations) = &self.durations else {
            return with_incoming(incoming, || self.handler.handle(event, meta));
        };
        let started = Instant::now();
        // Observed on return and on panic alike.
        let _timer = Timer(durations, started);
        with_incoming(incoming, || self.handler.handle(event, meta))
    }

    fn name(&self) -> &str {
        self.handler.name()
    }
}

/// Observes the time since it was made when dropped.
struct Timer<'a>(&'a Histogram, Instant);

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.0.observe(self.1.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E1: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    const E2: &str = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

    fn incoming(id: &str, correlation: Option<&str>) -> Incoming {
        Incoming {
            event_id: Uuid::parse_str(id).unwrap(),
            correlation_id: correlation.map(str::to_owned),
        }
    }

    #[test]
    fn published_events_follow_the_incoming_one() {
        let check = |set: (Option<&str>, Option<&str>),
                     current: Option<Incoming>,
                     expected: (Option<&str>, Option<&str>)| {
            let owned = |s: Option<&str>| s.map(str::to_owned);
            let got = correlate(owned(set.0), owned(set.1), current.as_ref());
            assert_eq!(
                (got.0.as_deref(), got.1.as_deref()),
                expected,
                "{set:?} {current:?}"
            );
        };
        // Outside a handler: what the caller set, nothing more.
        check((None, None), None, (None, None));
        check((Some("c"), None), None, (Some("c"), None));
        // Inside: the incoming correlation id, and the incoming event as the cause.
        check(
            (None, None),
            Some(incoming(E1, Some("c0"))),
            (Some("c0"), Some(E1)),
        );
        // The incoming event had no correlation id: it starts the flow.
        check((None, None), Some(incoming(E1, None)), (Some(E1), Some(E1)));
        // The caller's ids win.
        check(
            (Some("mine"), Some("cause")),
            Some(incoming(E1, Some("c0"))),
            (Some("mine"), Some("cause")),
        );
        check(
            (Some("mine"), None),
            Some(incoming(E1, None)),
            (Some("mine"), Some(E1)),
        );
    }

    #[test]
    fn the_current_event_is_scoped_and_restored() {
        assert_eq!(current(), None);
        with_incoming(incoming(E1, None), || {
            assert_eq!(current(), Some(incoming(E1, None)));
            let caught = std::panic::catch_unwind(|| {
                with_incoming(incoming(E2, Some("c")), || {
                    assert_eq!(current(), Some(incoming(E2, Some("c"))));
                    panic!("handler panics");
                })
            });
            assert!(caught.is_err());
            assert_eq!(current(), Some(incoming(E1, None)));
        });
        assert_eq!(current(), None);
    }
}
