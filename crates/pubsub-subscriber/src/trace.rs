//! The consumer span a delivery's handlers run in (the `otel` feature): "`<routing key>`
//! process", continued from the trace context in the delivery's `traceparent` and
//! `tracestate` headers. Without the feature, the handlers just run.

use pubsub_amqp::Delivery;
use pubsub_core::Event;
use pubsub_registry::InvocationResult;

/// Runs the handlers (`run`) of `event`, delivered from `queue`, inside its consumer span.
#[cfg(feature = "otel")]
pub(crate) fn process(
    queue: &str,
    delivery: &Delivery,
    event: &Event,
    run: impl FnOnce() -> InvocationResult,
) -> InvocationResult {
    let Some(span) = consumer_span(queue, delivery, event) else {
        return run();
    };
    let result = span.in_scope(run);
    if result.failed() > 0 {
        span.record("otel.status_code", "error");
    }
    result
}

/// The consumer span of `event`, delivered from `queue`, continued from the delivery's trace
/// context; `None` when tracing is off. (Handlers run elsewhere, such as an async bus's,
/// run in it too: the [`Job`](crate::Job) carries it.)
#[cfg(feature = "otel")]
pub(crate) fn consumer_span(
    queue: &str,
    delivery: &Delivery,
    event: &Event,
) -> Option<tracing::Span> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let span = tracing::info_span!(
        target: "pubsub",
        "process",
        otel.name = format!("{} process", event.routing_key()),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        "messaging.system" = "rabbitmq",
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "process",
        "messaging.destination.name" = delivery.exchange(),
        "messaging.consumer.group.name" = queue,
        "messaging.rabbitmq.destination.routing_key" = event.routing_key(),
        "messaging.message.id" = %event.event_id(),
        "messaging.rabbitmq.message.delivery_tag" = delivery.delivery_tag(),
    );
    if span.is_disabled() {
        return None;
    }
    if let Some(parent) = remote_parent(delivery) {
        // Fails only for a span already started, which this one is not.
        let _ = span.set_parent(parent);
    }
    Some(span)
}

/// Without the `otel` feature: the handlers, and nothing else.
#[cfg(not(feature = "otel"))]
#[inline(always)]
pub(crate) fn process(
    _queue: &str,
    _delivery: &Delivery,
    _event: &Event,
    run: impl FnOnce() -> InvocationResult,
) -> InvocationResult {
    run()
}

/// The trace context the publisher sent, if it sent a valid one.
#[cfg(feature = "otel")]
fn remote_parent(delivery: &Delivery) -> Option<opentelemetry::Context> {
    use pubsub_amqp::HeaderValue;
    use pubsub_core::trace::{TraceContext, TRACEPARENT_HEADER, TRACESTATE_HEADER};

    let traceparent = delivery.header(TRACEPARENT_HEADER)?;
    let tracestate = delivery.header(TRACESTATE_HEADER);
    TraceContext::from_headers(
        traceparent.as_str()?,
        tracestate.as_ref().and_then(HeaderValue::as_str),
    )
    .to_context()
}
