//! Trace context on the caller's thread (the `otel` feature): a publish request captures it
//! when it is made, because the publishing thread that sends the event runs in no span of
//! the caller's. A publish from inside a bus handler is thereby a child of the handler's
//! consumer span.

use pubsub_core::Event;
use pubsub_publisher::PublishOptions;

/// The producer span of one publish request, ended when dropped (after the confirm for a
/// blocking publish). Nothing without the `otel` feature, or without tracing.
#[derive(Debug)]
pub(crate) struct Producing {
    #[cfg(feature = "otel")]
    _span: Option<tracing::Span>,
}

/// Starts the producer span of `event` as a child of this thread's current span, and puts
/// its context into `options` (unless the caller set one).
#[cfg(feature = "otel")]
pub(crate) fn produce(exchange: &str, event: &Event, options: &mut PublishOptions) -> Producing {
    if options.trace.is_some() {
        return Producing { _span: None };
    }
    let span = pubsub_publisher::trace::producer_span(exchange, event);
    if span.is_disabled() {
        return Producing { _span: None };
    }
    options.trace = pubsub_publisher::trace::context_of(&span);
    Producing { _span: Some(span) }
}

/// Without the `otel` feature: nothing.
#[cfg(not(feature = "otel"))]
#[inline(always)]
pub(crate) fn produce(_exchange: &str, _event: &Event, _options: &mut PublishOptions) -> Producing {
    Producing {}
}
