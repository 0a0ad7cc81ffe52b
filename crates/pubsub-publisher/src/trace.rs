//! Producer spans (the `otel` feature): one per published event, a child of the publishing
//! thread's current span, whose context the event carries in its `traceparent` header.

use pubsub_core::trace::TraceContext;
use pubsub_core::Event;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::message::PublishOptions;

/// A producer span for `event` published to `exchange` ("`<routing key>` publish", with the
/// OpenTelemetry messaging attributes), a child of the current span. Disabled, and free, when
/// no tracing subscriber wants it.
pub fn producer_span(exchange: &str, event: &Event) -> tracing::Span {
    tracing::info_span!(
        target: "pubsub",
        "publish",
        otel.name = format!("{} publish", event.routing_key()),
        otel.kind = "producer",
        "messaging.system" = "rabbitmq",
        "messaging.operation.type" = "send",
        "messaging.operation.name" = "publish",
        "messaging.destination.name" = exchange,
        "messaging.rabbitmq.destination.routing_key" = event.routing_key(),
        "messaging.message.id" = %event.event_id(),
    )
}

/// The trace context `span` sends on; `None` when it is disabled (no tracing).
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    TraceContext::of(&span.context())
}

/// The producer spans of the events whose options carry no trace context, and every event's
/// options with the context to send; `None` when there is nothing to trace (no tracing, or
/// every event's context set by the caller). The spans end when dropped: after the confirms.
pub(crate) fn producers<'a>(
    exchange: &str,
    events: &[Event],
    options: impl Fn(usize) -> &'a PublishOptions,
) -> Option<(Vec<tracing::Span>, Vec<PublishOptions>)> {
    // Options that all carry a context (the bus's requests) need no copy.
    if (0..events.len()).all(|i| options(i).trace.is_some()) {
        return None;
    }
    let mut spans = Vec::new();
    let mut each = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let mut o = options(i).clone();
        if o.trace.is_none() {
            let span = producer_span(exchange, event);
            if span.is_disabled() {
                // Tracing is off (for one span of this callsite, so for all): leave the batch.
                return None;
            }
            o.trace = context_of(&span);
            spans.push(span);
        }
        each.push(o);
    }
    Some((spans, each))
}
