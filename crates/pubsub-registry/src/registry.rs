//! [`HandlerRegistry`]: which handlers run for which routing keys, and running them.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use pubsub_core::{Event, EventHandler, HandlerError, Metadata};

use crate::error::{Error, Result};
use crate::idempotent::Idempotent;
use crate::pattern::{binding_keys, Pattern};
use crate::trie::Node;

/// Handlers subscribed to routing-key patterns, and the dispatch of an event to every handler
/// whose pattern matches its routing key.
///
/// Build the registry with [`subscribe`](Self::subscribe), then share it, read-only, between
/// threads with an `Arc`. Dispatch goes through a word trie, so its cost does not grow with the
/// number of patterns. See [`Pattern`] for the matching rules (AMQP topic semantics).
///
/// Dispatch isolates errors: handlers run one after the other in registration order, and one
/// handler's error or panic does not keep the next from running. The
/// [`InvocationResult`] says which succeeded and which failed, and why.
///
/// ```
/// use pubsub_core::{handler_fn, Event};
/// use pubsub_registry::HandlerRegistry;
/// use serde_json::json;
///
/// let mut registry = HandlerRegistry::new();
/// registry.subscribe("order.*", handler_fn("audit", |_, _| Ok(())))?;
/// registry.subscribe("*.created", handler_fn("welcome", |_, _| Err("smtp down".into())))?;
///
/// let event = Event::new("order", "created", json!({}))?;
/// let result = registry.invoke_all(&event);
/// assert_eq!((result.total(), result.succeeded(), result.failed()), (2, 1, 1));
/// assert_eq!(result.failures().next().unwrap().handler(), "welcome");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct HandlerRegistry {
    subscriptions: Vec<Subscription>,
    trie: Node,
    /// The deduplication window every handler gets, if set.
    dedup: Option<usize>,
}

/// One handler subscribed to one pattern.
#[derive(Clone)]
pub struct Subscription {
    pattern: Pattern,
    handler: Arc<dyn EventHandler>,
    name: Arc<str>,
    id: Arc<str>,
}

impl Subscription {
    /// The pattern the handler is subscribed to.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The handler's name.
    pub fn handler_name(&self) -> &str {
        &self.name
    }

    /// The handler.
    pub fn handler(&self) -> &dyn EventHandler {
        &*self.handler
    }

    /// A stable identifier of this subscription, `name@pattern`; a retried event lists the
    /// identifiers of the subscriptions that already handled it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern.as_str())
            .field("handler", &self.name)
            .finish()
    }
}

impl HandlerRegistry {
    /// Creates an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes `handler` to the routing keys that match `pattern`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPattern`] if the pattern is not valid (see [`Pattern`]), and
    /// [`Error::DuplicateSubscription`] if a handler of the same name is already subscribed
    /// with the same pattern.
    pub fn subscribe<H: EventHandler + 'static>(
        &mut self,
        pattern: &str,
        handler: H,
    ) -> Result<&mut Self> {
        self.subscribe_arc(pattern, Arc::new(handler))
    }

    /// Subscribes a shared handler, e.g. one handler value under several patterns.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_arc(
        &mut self,
        pattern: &str,
        handler: Arc<dyn EventHandler>,
    ) -> Result<&mut Self> {
        let pattern = Pattern::parse(pattern)?;
        let handler = match self.dedup {
            Some(window) => idempotent(handler, window),
            None => handler,
        };
        let name: Arc<str> = handler.name().into();
        let id: Arc<str> = subscription_id(&name, &pattern).into();
        if self.subscriptions.iter().any(|s| s.id == id) {
            return Err(Error::DuplicateSubscription {
                pattern: pattern.as_str().to_owned(),
                handler: name.to_string(),
            });
        }
        self.trie.insert(pattern.words(), self.subscriptions.len());
        self.subscriptions.push(Subscription {
            pattern,
            handler,
            name,
            id,
        });
        Ok(self)
    }

    /// Makes every handler, those subscribed already and those subscribed later, skip the
    /// events it already handled successfully among its last `window` ones (see
    /// [`Idempotent`](crate::Idempotent) for what this covers and what it does not).
    pub fn deduplicate(&mut self, window: usize) -> &mut Self {
        if self.dedup.is_none() {
            for sub in &mut self.subscriptions {
                sub.handler = idempotent(sub.handler.clone(), window);
            }
        }
        self.dedup = Some(window);
        self
    }

    /// The subscriptions whose pattern matches `routing_key`, in registration order.
    pub fn find_handlers(&self, routing_key: &str) -> Vec<&Subscription> {
        self.matching_ids(routing_key)
            .into_iter()
            .map(|i| &self.subscriptions[i])
            .collect()
    }

    /// Runs every handler matching the event's routing key, as a first, local delivery
    /// ([`Metadata::default`]).
    pub fn invoke_all(&self, event: &Event) -> InvocationResult {
        self.invoke(event, &Metadata::default())
    }

    /// Runs every handler matching the event's routing key with the given delivery metadata.
    pub fn invoke(&self, event: &Event, meta: &Metadata) -> InvocationResult {
        self.invoke_where(event, meta, |_| true)
    }

    /// Runs the matching handlers for which `filter` returns true; a subscriber uses it on a
    /// retry to skip the handlers that already succeeded.
    pub fn invoke_where(
        &self,
        event: &Event,
        meta: &Metadata,
        mut filter: impl FnMut(&Subscription) -> bool,
    ) -> InvocationResult {
        let ids = self.matching_ids(event.routing_key());
        let mut outcomes = Vec::with_capacity(ids.len());
        for i in ids {
            let sub = &self.subscriptions[i];
            if filter(sub) {
                outcomes.push(run(sub, event, meta));
            }
        }
        if outcomes.is_empty() {
            log::debug!("no handler for {event}");
        }
        InvocationResult { outcomes }
    }

    /// The broker binding keys that deliver every routing key some handler needs, and no
    /// more than the patterns ask for: glob words become `*`, a lone `*` becomes `#`, and
    /// duplicate keys and keys covered by another (everything is covered by `#`) are dropped.
    ///
    /// A subscriber binds its queue with exactly these keys.
    pub fn bindings(&self) -> Vec<String> {
        binding_keys(self.subscriptions.iter().map(|s| &s.pattern))
    }

    /// The subscriptions, in registration order.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// The number of subscriptions.
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// Whether no handler is subscribed.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    fn matching_ids(&self, routing_key: &str) -> Vec<usize> {
        let mut ids = Vec::new();
        self.trie.collect(Some(routing_key), &mut ids);
        if ids.len() > 1 {
            ids.sort_unstable();
            ids.dedup();
        }
        ids
    }
}

impl fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerRegistry")
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

/// The identifier of handler `name` subscribed to `pattern`: `name@pattern` (see
/// [`Subscription::id`]). Handlers run outside a registry (an async bus's) are named alike,
/// so that a retried event's list of the handlers done with it means the same everywhere.
pub fn subscription_id(name: &str, pattern: &Pattern) -> String {
    format!("{name}@{pattern}")
}

/// Wraps a shared handler in a deduplication window.
fn idempotent(handler: Arc<dyn EventHandler>, window: usize) -> Arc<dyn EventHandler> {
    Arc::new(Idempotent::new(Shared(handler), window))
}

/// A shared handler, as a handler (`Arc<dyn EventHandler>` itself cannot be one: the
/// closure impl of `EventHandler` forbids a blanket impl for `Arc`).
struct Shared(Arc<dyn EventHandler>);

impl EventHandler for Shared {
    fn handle(&self, event: &Event, meta: &Metadata) -> pubsub_core::HandlerResult {
        self.0.handle(event, meta)
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

/// Runs one handler, turning an error or a panic into a failed outcome.
fn run(sub: &Subscription, event: &Event, meta: &Metadata) -> HandlerOutcome {
    let result = match catch_unwind(AssertUnwindSafe(|| sub.handler.handle(event, meta))) {
        Ok(Ok(())) => {
            log::trace!("handler `{}` handled {event}", sub.name);
            Ok(())
        }
        Ok(Err(error)) => {
            log::warn!("handler `{}` failed on {event}: {error}", sub.name);
            Err(HandlerFailure {
                error,
                panicked: false,
            })
        }
        Err(payload) => {
            let failure = HandlerFailure::from_panic(&*payload);
            log::error!("handler `{}` panicked on {event}: {failure}", sub.name);
            Err(failure)
        }
    };
    HandlerOutcome {
        handler: sub.name.clone(),
        subscription: sub.id.clone(),
        result,
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// The error recorded for a handler that panicked.
#[derive(Debug)]
struct Panicked(String);

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler panicked: {}", self.0)
    }
}

impl std::error::Error for Panicked {}

/// What happened when an event was dispatched: one outcome per handler that ran, in order.
#[derive(Debug, Default)]
pub struct InvocationResult {
    outcomes: Vec<HandlerOutcome>,
}

impl InvocationResult {
    /// The result of handlers that ran elsewhere (an async runtime, say): one outcome per
    /// handler that ran, in order.
    pub fn from_outcomes(outcomes: Vec<HandlerOutcome>) -> Self {
        InvocationResult { outcomes }
    }

    /// How many handlers ran.
    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    /// How many handlers succeeded.
    pub fn succeeded(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }

    /// How many handlers failed (returned an error or panicked).
    pub fn failed(&self) -> usize {
        self.total() - self.succeeded()
    }

    /// Whether every handler that ran succeeded (true when none ran).
    pub fn is_success(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }

    /// Whether no handler ran.
    pub fn is_unhandled(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Each handler's outcome, in the order the handlers ran.
    pub fn outcomes(&self) -> &[HandlerOutcome] {
        &self.outcomes
    }

    /// The outcomes of the handlers that failed.
    pub fn failures(&self) -> impl Iterator<Item = &HandlerOutcome> {
        self.outcomes.iter().filter(|o| o.result.is_err())
    }
}

/// How one handler fared with one event.
#[derive(Debug)]
pub struct HandlerOutcome {
    handler: Arc<str>,
    subscription: Arc<str>,
    result: std::result::Result<(), HandlerFailure>,
}

impl HandlerOutcome {
    /// How the handler `handler`, subscribed as `subscription` (`name@pattern`, see
    /// [`Subscription::id`]), fared, when it ran outside [`HandlerRegistry::invoke`].
    pub fn new(
        handler: &str,
        subscription: &str,
        result: std::result::Result<(), HandlerFailure>,
    ) -> Self {
        HandlerOutcome {
            handler: handler.into(),
            subscription: subscription.into(),
            result,
        }
    }

    /// The handler's name.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// The subscription's identifier, `name@pattern` (see [`Subscription::id`]).
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Whether the handler succeeded.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The failure, if the handler failed.
    pub fn failure(&self) -> Option<&HandlerFailure> {
        self.result.as_ref().err()
    }
}

/// Why a handler failed: the error it returned, or its panic.
#[derive(Debug)]
pub struct HandlerFailure {
    error: HandlerError,
    panicked: bool,
}

impl HandlerFailure {
    /// A handler returned `error`.
    pub fn returned(error: HandlerError) -> Self {
        HandlerFailure {
            error,
            panicked: false,
        }
    }

    /// A handler panicked with `payload` (what `catch_unwind` or a task's join gives).
    pub fn from_panic(payload: &(dyn Any + Send)) -> Self {
        HandlerFailure {
            error: Box::new(Panicked(panic_message(payload))),
            panicked: true,
        }
    }

    /// The error the handler returned (for a panic, an error carrying the panic message).
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// Whether the handler panicked rather than returning an error.
    pub fn panicked(&self) -> bool {
        self.panicked
    }

    /// Whether retrying cannot fix this failure: the handler returned a
    /// [`Permanent`](pubsub_core::Permanent) error, or a decode error of its typed event.
    pub fn is_permanent(&self) -> bool {
        !self.panicked && pubsub_core::Permanent::is_permanent(&*self.error)
    }
}

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use pubsub_core::{handler_fn, HandlerResult};
    use serde_json::json;

    use super::*;

    fn event(domain: &str, action: &str) -> Event {
        Event::new(domain, action, json!({})).unwrap()
    }

    fn ok(name: &str) -> impl EventHandler {
        handler_fn(name, |_, _| Ok(()))
    }

    fn names(subs: Vec<&Subscription>) -> Vec<&str> {
        subs.into_iter().map(|s| s.handler_name()).collect()
    }

    #[test]
    fn find_handlers_follows_the_semantics_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("order.created", "order.created", true),
            ("order.*", "order.created", true),
            ("order.*", "order.created.v2", false),
            ("order.#", "order.created.v2", true),
            ("order.#", "order", true),
            ("*.created", "user.created", true),
            ("*.created", "order.paid", false),
            ("#", "order.created", true),
            ("#", "x", true),
            ("*", "order.created", true),
            ("#.completed", "task.run.completed", true),
            ("ord*.created", "order.created", true),
            ("pay*", "payment", true),
            ("pay*", "paid", false),
            ("order.created", "order.createdx", false),
            ("ORDER.created", "order.created", false),
        ];
        for &(pattern, key, expected) in cases {
            let mut registry = HandlerRegistry::new();
            registry.subscribe(pattern, ok("h")).unwrap();
            let found = !registry.find_handlers(key).is_empty();
            assert_eq!(found, expected, "{pattern} ~ {key}");
            assert_eq!(
                Pattern::parse(pattern).unwrap().matches(key),
                expected,
                "{pattern} ~ {key} (Pattern::matches)"
            );
        }
    }

    #[test]
    fn trie_agrees_with_direct_matching_on_many_patterns() {
        let patterns = [
            "a", "a.b", "a.*", "a.#", "*.b", "#.b", "#", "*", "a.*.c", "a.#.c", "#.#", "a*", "a?",
            "*x*.b", "a.b*", "b.#.#", "#.a.#", "?.?", "a.b.c.d",
        ];
        let keys = [
            "a", "b", "ab", "ax", "a.b", "a.c", "x.b", "xxx.b", "a.b.c", "a.x.y.c", "b", "b.c",
            "b.c.d", "z.a.z", "a.bb", "q.w", "a.b.c.d", "", "a..b",
        ];
        let mut registry = HandlerRegistry::new();
        for p in patterns {
            registry.subscribe(p, ok(p)).unwrap();
        }
        for key in keys {
            let expected: Vec<&str> = patterns
                .iter()
                .copied()
                .filter(|p| Pattern::parse(p).unwrap().matches(key))
                .collect();
            assert_eq!(names(registry.find_handlers(key)), expected, "key {key:?}");
        }
    }

    #[test]
    fn handlers_run_in_registration_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut registry = HandlerRegistry::new();
        for (pattern, name) in [
            ("#", "first"),
            ("order.created", "second"),
            ("*.created", "third"),
        ] {
            let order = order.clone();
            registry
                .subscribe(
                    pattern,
                    handler_fn(name, move |_, _| {
                        order.lock().unwrap().push(name);
                        Ok(())
                    }),
                )
                .unwrap();
        }
        let result = registry.invoke_all(&event("order", "created"));
        assert!(result.is_success());
        assert_eq!(*order.lock().unwrap(), ["first", "second", "third"]);
    }

    #[test]
    fn one_failure_or_panic_does_not_stop_the_others() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = |name: &str| {
            let ran = ran.clone();
            handler_fn(name, move |_, _| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        };
        let mut registry = HandlerRegistry::new();
        registry.subscribe("order.*", counter("before")).unwrap();
        registry
            .subscribe(
                "order.*",
                handler_fn("fails", |_, _| Err("intentional failure".into())),
            )
            .unwrap();
        registry
            .subscribe(
                "order.*",
                handler_fn("panics", |_, _| panic!("boom {}", 42)),
            )
            .unwrap();
        registry.subscribe("order.*", counter("after")).unwrap();

        let result = registry.invoke_all(&event("order", "paid"));
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert_eq!(
            (result.total(), result.succeeded(), result.failed()),
            (4, 2, 2)
        );
        assert!(!result.is_success());
        let failures: Vec<_> = result
            .failures()
            .map(|o| {
                let f = o.failure().unwrap();
                (o.handler(), f.to_string(), f.panicked())
            })
            .collect();
        assert_eq!(
            failures,
            [
                ("fails", "intentional failure".to_owned(), false),
                ("panics", "handler panicked: boom 42".to_owned(), true),
            ]
        );
    }

    #[test]
    fn no_match_is_an_unhandled_success() {
        let mut registry = HandlerRegistry::new();
        registry.subscribe("order.*", ok("h")).unwrap();
        let result = registry.invoke_all(&event("user", "registered"));
        assert!(result.is_unhandled());
        assert!(result.is_success());
        assert_eq!(result.total(), 0);
    }

    #[test]
    fn invoke_where_skips_filtered_subscriptions() {
        let mut registry = HandlerRegistry::new();
        registry.subscribe("#", ok("a")).unwrap();
        registry.subscribe("#", ok("b")).unwrap();
        let result =
            registry.invoke_where(&event("x", "y"), &Metadata::default(), |s| s.id() != "a@#");
        let ran: Vec<&str> = result.outcomes().iter().map(|o| o.subscription()).collect();
        assert_eq!(ran, ["b@#"]);
    }

    #[test]
    fn handlers_receive_the_metadata() {
        let mut registry = HandlerRegistry::new();
        registry
            .subscribe(
                "#",
                handler_fn("meta", |_, meta| {
                    assert_eq!(meta.attempt(), 3);
                    assert_eq!(meta.correlation_id(), Some("c-9"));
                    Ok(())
                }),
            )
            .unwrap();
        let meta = Metadata::default()
            .with_attempt(3)
            .with_correlation_id(Some("c-9".into()));
        assert!(registry.invoke(&event("a", "b"), &meta).is_success());
    }

    #[test]
    fn subscribe_refuses_invalid_patterns_and_duplicates() {
        let mut registry = HandlerRegistry::new();
        for bad in ["", "order..x", "order created", "a#", ".a", "a."] {
            let err = registry.subscribe(bad, ok("h")).err().unwrap();
            assert!(
                matches!(err, Error::InvalidPattern { .. }),
                "{bad:?}: {err}"
            );
        }
        registry.subscribe("order.*", ok("h")).unwrap();
        let err = registry.subscribe("order.*", ok("h")).err().unwrap();
        assert!(matches!(err, Error::DuplicateSubscription { .. }), "{err}");
        registry.subscribe("order.#", ok("h")).unwrap();
        registry.subscribe("order.*", ok("other")).unwrap();
        assert_eq!(registry.len(), 3);
    }

    #[test]
    fn a_handler_under_two_matching_patterns_runs_twice() {
        let count = Arc::new(AtomicUsize::new(0));
        let shared: Arc<dyn EventHandler> = {
            let count = count.clone();
            Arc::new(handler_fn("shared", move |_, _| {
                count.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }))
        };
        let mut registry = HandlerRegistry::new();
        registry.subscribe_arc("order.*", shared.clone()).unwrap();
        registry.subscribe_arc("*.created", shared).unwrap();
        assert_eq!(registry.invoke_all(&event("order", "created")).total(), 2);
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(registry.invoke_all(&event("order", "paid")).total(), 1);
    }

    #[test]
    fn bindings_cover_what_the_handlers_need() {
        let mut registry = HandlerRegistry::new();
        registry.subscribe("order.created", ok("a")).unwrap();
        registry.subscribe("order.*", ok("b")).unwrap();
        registry.subscribe("pay*.done", ok("c")).unwrap();
        registry.subscribe("user.registered", ok("d")).unwrap();
        assert_eq!(
            registry.bindings(),
            ["order.*", "*.done", "user.registered"]
        );
        registry.subscribe("*", ok("e")).unwrap();
        assert_eq!(registry.bindings(), ["#"]);
    }

    #[test]
    fn deduplicate_skips_a_second_delivery_for_every_handler() {
        let count = Arc::new(AtomicUsize::new(0));
        let counting = |name: &str| {
            let count = count.clone();
            handler_fn(name, move |_, _| {
                count.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        };
        let mut registry = HandlerRegistry::new();
        registry.subscribe("#", counting("before")).unwrap();
        registry.deduplicate(100);
        registry.subscribe("#", counting("after")).unwrap();
        let e = event("a", "b");
        assert_eq!(registry.invoke_all(&e).succeeded(), 2);
        assert_eq!(registry.invoke_all(&e).succeeded(), 2);
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(registry.subscriptions()[0].handler_name(), "before");
    }

    #[test]
    fn registry_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HandlerRegistry>();
        let count = Arc::new(AtomicUsize::new(0));
        let mut registry = HandlerRegistry::new();
        {
            let count = count.clone();
            registry
                .subscribe(
                    "#",
                    handler_fn("count", move |_, _| -> HandlerResult {
                        count.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }),
                )
                .unwrap();
        }
        let registry = Arc::new(registry);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        registry.invoke_all(&event("a", "b"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count.load(Ordering::SeqCst), 400);
    }
}
