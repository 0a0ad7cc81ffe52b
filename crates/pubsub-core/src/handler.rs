//! [`EventHandler`], the unit of business logic, and the [`Metadata`] of a delivery.

use std::collections::BTreeMap;
use std::fmt;

use crate::envelope::EnvelopeMeta;
use crate::event_type::{EventType, CAUSATION_ID_HEADER, EVENT_TYPE_HEADER};
use crate::Event;

/// The error a handler returns: any error type, boxed.
///
/// A handler can use `?` on its own errors, or return `Err("reason".into())`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result a handler returns.
pub type HandlerResult = std::result::Result<(), HandlerError>;

/// Something that reacts to an event: sends an email, updates stock, records a metric.
///
/// A handler does one thing, knows nothing of AMQP, and is synchronous: the subscriber calls
/// it on its consumer thread, one event at a time. It is `Send + Sync` because one registry
/// (and so one handler value) can serve several consumer threads; keep mutable state behind a
/// `Mutex` or an atomic.
///
/// Returning `Err` marks this handler as failed for this event; the other handlers matching the
/// event still run (error isolation), and the subscriber retries only the failed ones. A panic
/// is caught and counted as a failure in the same way.
///
/// Delivery is at least once: after a crash between a handler's effect and the broker's ack,
/// the event is delivered again. Handlers whose effect must not repeat should deduplicate by
/// [`Event::event_id`].
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use pubsub_core::{Event, EventHandler, HandlerResult, Metadata};
///
/// #[derive(Debug, Default)]
/// struct CountOrders(AtomicU64);
///
/// impl EventHandler for CountOrders {
///     fn handle(&self, event: &Event, _meta: &Metadata) -> HandlerResult {
///         if event.data().get("order_id").is_none() {
///             return Err("order event without order_id".into());
///         }
///         self.0.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
///
///     fn name(&self) -> &str {
///         "count-orders"
///     }
/// }
/// ```
pub trait EventHandler: Send + Sync {
    /// Handles one event. `meta` describes this delivery of it (correlation id, producing
    /// service, attempt number, redelivered flag).
    ///
    /// # Errors
    ///
    /// Any error marks the handler as failed for this event; the subscriber retries it later
    /// and dead-letters the event after the last attempt.
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult;

    /// The handler's name, used in logs, invocation results and the retry and dead-letter
    /// headers. Defaults to the type's name without its module path; keep it stable across
    /// deployments, since a retried event remembers the handlers that already succeeded by name.
    fn name(&self) -> &str {
        short_type_name(std::any::type_name::<Self>())
    }
}

/// Any `Fn(&Event, &Metadata) -> HandlerResult` closure is a handler; its name is the closure's
/// type name. Use [`handler_fn`] to give it a readable one.
impl<F> EventHandler for F
where
    F: Fn(&Event, &Metadata) -> HandlerResult + Send + Sync,
{
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        self(event, meta)
    }
}

/// Marks a handler error as permanent: retrying the event cannot fix it (the data is
/// invalid for this handler, say), so a subscriber dead-letters the event at once instead of
/// retrying it.
///
/// A [`crate::Error`] returned by a handler (e.g. from [`Event::decode`] with `?`) is treated
/// as permanent too.
///
/// ```
/// use pubsub_core::{handler_fn, Permanent};
///
/// let handler = handler_fn("charge", |event, _| {
///     let amount = event.data()["amount"].as_f64().ok_or_else(|| Permanent::new("no amount"))?;
///     if amount < 0.0 {
///         return Err(Permanent::new(format!("negative amount {amount}")).into());
///     }
///     Ok(())
/// });
/// # let _ = handler;
/// ```
#[derive(Debug)]
pub struct Permanent(HandlerError);

impl Permanent {
    /// Wraps an error (or a message) as permanent.
    pub fn new(error: impl Into<HandlerError>) -> Self {
        Permanent(error.into())
    }

    /// Whether `error` is permanent: a [`Permanent`], or a [`crate::Error`] (the event does
    /// not fit the handler's typed event).
    pub fn is_permanent(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
        error.is::<Permanent>() || error.is::<crate::Error>()
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Transparent: its `Display` is the wrapped error's, and `source()` is the wrapped error's
/// own source, so an error chain prints each cause once.
impl std::error::Error for Permanent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Wraps a closure as a named handler.
///
/// ```
/// use pubsub_core::{handler_fn, Event, EventHandler, Metadata};
///
/// let audit = handler_fn("audit", |event, _meta| {
///     println!("saw {}", event.routing_key());
///     Ok(())
/// });
/// assert_eq!(audit.name(), "audit");
/// # let event = Event::new("a", "b", serde_json::json!({}))?;
/// # audit.handle(&event, &Metadata::default())?;
/// # Ok::<(), pubsub_core::HandlerError>(())
/// ```
pub fn handler_fn<F>(name: &str, f: F) -> FnHandler<F>
where
    F: Fn(&Event, &Metadata) -> HandlerResult + Send + Sync,
{
    FnHandler {
        name: name.to_owned(),
        f,
    }
}

/// A closure with a name; see [`handler_fn`].
pub struct FnHandler<F> {
    name: String,
    f: F,
}

impl<F> EventHandler for FnHandler<F>
where
    F: Fn(&Event, &Metadata) -> HandlerResult + Send + Sync,
{
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        (self.f)(event, meta)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl<F> fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `my_crate::handlers::SendEmail<T>` becomes `SendEmail<T>`.
fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    match base.rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

/// Message headers as a handler sees them: names to JSON values (strings, numbers, booleans,
/// arrays, objects; raw bytes become arrays of numbers, an AMQP void becomes `null`).
pub type Headers = BTreeMap<String, serde_json::Value>;

/// What the transport knows about one delivery of an event, beside the event itself.
///
/// The six wire fields of [`Event`] never change; everything about how this copy travelled is
/// here: the correlation and causation ids, the publishing service (the source), the
/// [`EventType`], the attempt, the message headers, and what an envelope carried besides the
/// event ([`envelope`](Self::envelope): seed 004's `source`, `event_type` and other body
/// fields). In-process dispatch uses [`Metadata::default`] (first attempt, not redelivered)
/// or sets what it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    correlation_id: Option<String>,
    causation_id: Option<String>,
    app_id: Option<String>,
    event_type: Option<EventType>,
    attempt: u32,
    redelivered: bool,
    headers: Headers,
    envelope: EnvelopeMeta,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            correlation_id: None,
            causation_id: None,
            app_id: None,
            event_type: None,
            attempt: 1,
            redelivered: false,
            headers: Headers::new(),
            envelope: EnvelopeMeta::default(),
        }
    }
}

impl Metadata {
    /// The correlation id the publisher set, if any, to tie related events together.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The causation id, if any: the id of the event whose handling published this one
    /// (the [`CAUSATION_ID_HEADER`] header).
    pub fn causation_id(&self) -> Option<&str> {
        self.causation_id.as_deref()
    }

    /// The name of the service that published the event (AMQP `app_id`), if set.
    pub fn app_id(&self) -> Option<&str> {
        self.app_id.as_deref()
    }

    /// The event's source, in seed 004's words: the publishing service. The envelope's
    /// `source` field when it has one (seed 004's envelope), else the
    /// [`app_id`](Self::app_id).
    pub fn source(&self) -> Option<&str> {
        self.envelope.source().or(self.app_id())
    }

    /// The event's type, if the publisher set a known one: the envelope's `event_type` field
    /// when it names one (seed 004's envelope), else the [`EVENT_TYPE_HEADER`] header.
    pub fn event_type(&self) -> Option<EventType> {
        self.envelope.event_type().or(self.event_type)
    }

    /// What the envelope carried besides the event: seed 004's `source`, `event_type` (also
    /// as written, when it names no [`EventType`]) and the body's other fields, unchanged.
    /// Empty for the other envelopes.
    pub fn envelope(&self) -> &EnvelopeMeta {
        &self.envelope
    }

    /// The body's fields besides the event's and those read above (seed 004's envelope),
    /// by name; see [`EnvelopeMeta::extra`].
    pub fn extra(&self) -> &serde_json::Map<String, serde_json::Value> {
        self.envelope.extra()
    }

    /// Which attempt this is at handling the event: 1 the first time, 2 on the first retry.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the broker delivered this copy before (to a consumer that did not ack it, e.g.
    /// because it crashed): the handler may have seen the event already.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The message's headers, all of them (the subscriber's own `x-pubsub-*` retry state
    /// included); empty in process unless set.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// One header, if present.
    pub fn header(&self, name: &str) -> Option<&serde_json::Value> {
        self.headers.get(name)
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: Option<String>) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, causation_id: Option<String>) -> Self {
        self.causation_id = causation_id;
        self
    }

    /// Sets the producing service's name.
    #[must_use]
    pub fn with_app_id(mut self, app_id: Option<String>) -> Self {
        self.app_id = app_id;
        self
    }

    /// Sets the event type.
    #[must_use]
    pub fn with_event_type(mut self, event_type: Option<EventType>) -> Self {
        self.event_type = event_type;
        self
    }

    /// Sets what the envelope carried besides the event (see [`envelope`](Self::envelope)).
    #[must_use]
    pub fn with_envelope(mut self, envelope: EnvelopeMeta) -> Self {
        self.envelope = envelope;
        self
    }

    /// Sets the attempt number (1-based; 0 is read as 1).
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt.max(1);
        self
    }

    /// Sets the redelivered flag.
    #[must_use]
    pub fn with_redelivered(mut self, redelivered: bool) -> Self {
        self.redelivered = redelivered;
        self
    }

    /// Sets the headers, and reads the causation id and the event type from them
    /// ([`CAUSATION_ID_HEADER`], [`EVENT_TYPE_HEADER`]) when they are strings; an unknown
    /// event type is left unset (the header itself stays readable).
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        let text = |name: &str| headers.get(name).and_then(serde_json::Value::as_str);
        if let Some(causation) = text(CAUSATION_ID_HEADER) {
            self.causation_id = Some(causation.to_owned());
        }
        if let Some(kind) = text(EVENT_TYPE_HEADER) {
            self.event_type = EventType::parse(kind);
        }
        self.headers = headers;
        self
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_permanent_error_prints_its_causes_once() {
        #[derive(Debug)]
        struct Io;
        impl fmt::Display for Io {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("disk full")
            }
        }
        impl std::error::Error for Io {}
        #[derive(Debug)]
        struct Saving(Io);
        impl fmt::Display for Saving {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("saving the invoice")
            }
        }
        impl std::error::Error for Saving {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let plain = Permanent::new("bad payload");
        assert_eq!(crate::text::error_chain(&plain), "bad payload");
        let nested = Permanent::new(Saving(Io));
        assert_eq!(
            crate::text::error_chain(&nested),
            "saving the invoice: disk full"
        );
        assert!(Permanent::is_permanent(&nested));
    }

    struct Plain;

    impl EventHandler for Plain {
        fn handle(&self, _: &Event, _: &Metadata) -> HandlerResult {
            Ok(())
        }
    }

    struct Generic<T>(T);

    impl<T: Send + Sync> EventHandler for Generic<T> {
        fn handle(&self, _: &Event, _: &Metadata) -> HandlerResult {
            Err("always".into())
        }
    }

    #[test]
    fn default_name_is_the_short_type_name() {
        assert_eq!(Plain.name(), "Plain");
        assert_eq!(Generic(1u8).name(), "Generic<u8>");
        assert_eq!(short_type_name("a::b::C<d::E>"), "C<d::E>");
        assert_eq!(short_type_name("C"), "C");
    }

    #[test]
    fn closures_are_handlers() {
        let event = Event::new("a", "b", json!({})).unwrap();
        let closure = |e: &Event, m: &Metadata| -> HandlerResult {
            assert_eq!(m.attempt(), 1);
            if e.domain() == "a" {
                Ok(())
            } else {
                Err("no".into())
            }
        };
        assert!(closure.handle(&event, &Metadata::default()).is_ok());
        let named = handler_fn("named", |_, meta| {
            assert_eq!(meta.correlation_id(), Some("c-1"));
            Err("fails".into())
        });
        assert_eq!(named.name(), "named");
        let meta = Metadata::default().with_correlation_id(Some("c-1".into()));
        assert_eq!(
            named.handle(&event, &meta).unwrap_err().to_string(),
            "fails"
        );
    }

    #[test]
    fn permanent_errors_are_recognised() {
        let permanent: HandlerError = Permanent::new("bad data").into();
        assert!(Permanent::is_permanent(&*permanent));
        assert_eq!(permanent.to_string(), "bad data");
        let decode: HandlerError = crate::Error::MissingField { field: "x" }.into();
        assert!(Permanent::is_permanent(&*decode));
        let transient: HandlerError = "database down".into();
        assert!(!Permanent::is_permanent(&*transient));
    }

    #[test]
    fn metadata_defaults_to_a_first_delivery() {
        let meta = Metadata::default();
        assert_eq!(meta.attempt(), 1);
        assert!(!meta.redelivered());
        assert_eq!(meta.correlation_id(), None);
        let meta = meta
            .with_attempt(0)
            .with_redelivered(true)
            .with_app_id(Some("orders".into()));
        assert_eq!(meta.attempt(), 1);
        assert!(meta.redelivered());
        assert_eq!(meta.app_id(), Some("orders"));
    }

    #[test]
    fn metadata_reads_causation_and_type_from_headers() {
        let check =
            |headers: serde_json::Value, causation: Option<&str>, kind: Option<EventType>| {
                let headers: Headers = serde_json::from_value(headers).unwrap();
                let meta = Metadata::default().with_headers(headers.clone());
                assert_eq!(meta.causation_id(), causation, "{headers:?}");
                assert_eq!(meta.event_type(), kind, "{headers:?}");
                assert_eq!(meta.headers(), &headers);
            };
        check(json!({}), None, None);
        check(
            json!({ "x-causation-id": "e-1", "x-event-type": "integration" }),
            Some("e-1"),
            Some(EventType::Integration),
        );
        check(json!({ "x-event-type": "bogus", "other": 1 }), None, None);
        check(
            json!({ "x-causation-id": 7, "x-event-type": true }),
            None,
            None,
        );
        let meta = Metadata::default()
            .with_app_id(Some("billing".into()))
            .with_headers(serde_json::from_value(json!({ "k": "v" })).unwrap());
        assert_eq!(meta.source(), Some("billing"));
        assert_eq!(meta.header("k"), Some(&json!("v")));
    }

    #[test]
    fn the_envelope_wins_over_the_properties() {
        let check = |source: Option<&str>,
                     kind: Option<&str>,
                     want: (Option<&str>, Option<EventType>)| {
            let meta = Metadata::default()
                .with_app_id(Some("app".into()))
                .with_headers(serde_json::from_value(json!({ "x-event-type": "system" })).unwrap())
                .with_envelope(
                    EnvelopeMeta::default()
                        .with_source(source.map(str::to_owned))
                        .with_event_type_name(kind.map(str::to_owned)),
                );
            assert_eq!(
                (meta.source(), meta.event_type()),
                want,
                "{source:?} {kind:?}"
            );
            assert_eq!(meta.envelope().event_type_name(), kind);
        };
        check(None, None, (Some("app"), Some(EventType::System)));
        check(
            Some("accounts"),
            Some("USER"),
            (Some("accounts"), Some(EventType::User)),
        );
        // A type of the producer's own is kept as text; the header's known type is read.
        check(
            Some("a"),
            Some("audit"),
            (Some("a"), Some(EventType::System)),
        );
        assert!(Metadata::default().extra().is_empty());
    }
}
