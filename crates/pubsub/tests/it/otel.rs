//! Trace context across two services and the broker (`--features otel`), with the spans kept
//! by OpenTelemetry's in-memory exporter.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use pubsub::{handler_fn, EventBus, Metadata};
use pubsub_testkit::{unique, Bus};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::{event, shipped, WAIT};

/// The exporter every span of this test binary ends in (one global tracing subscriber: the
/// buses' threads are not the test's).
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("pubsub-tests");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        exporter
    })
}

/// The finished spans of `trace`, once there are `n` of them.
fn spans_of(trace: TraceId, n: usize) -> Vec<SpanData> {
    let deadline = Instant::now() + WAIT;
    loop {
        let spans: Vec<SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        if spans.len() >= n || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:#?}", names(spans)))
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// A bus of its own service on the test's exchange.
fn service(fixture: &Bus, prefix: &str) -> EventBus {
    EventBus::builder(&unique(prefix))
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .build()
        .unwrap()
}

#[test]
fn publish_handle_publish_is_one_trace_across_two_services() {
    exporter();
    let Some(fixture) = Bus::new("otel") else {
        return;
    };
    // Service `front` publishes order.created and handles item.shipped; service `back`
    // handles order.created by publishing item.shipped.
    let mut front = service(&fixture, "front");
    let mut back = service(&fixture, "back");
    let (tx, rx) = crossbeam_channel::unbounded::<(String, Metadata)>();
    let back_publisher = back.publisher();
    let seen = tx.clone();
    back.subscribe(
        "order.created",
        handler_fn("ship", move |event, meta| {
            seen.send((event.routing_key().to_owned(), meta.clone()))
                .unwrap();
            back_publisher.publish(shipped("lamp", 1))?;
            Ok(())
        }),
    )
    .unwrap();
    front
        .subscribe(
            "item.shipped",
            handler_fn("notify", move |event, meta| {
                tx.send((event.routing_key().to_owned(), meta.clone()))
                    .unwrap();
                Ok(())
            }),
        )
        .unwrap();
    back.start().unwrap();
    front.start().unwrap();

    let root = tracing::info_span!("request");
    let trace = root.context().span().span_context().trace_id();
    let root_id = root.context().span().span_context().span_id();
    root.in_scope(|| front.publish(event("order", "created", 1)))
        .unwrap();
    drop(root);
    let (a, a_meta) = rx.recv_timeout(WAIT).unwrap();
    let (b, b_meta) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("order.created", "item.shipped"));

    let spans = spans_of(trace, 5);
    assert_eq!(spans.len(), 5, "{:#?}", names(&spans));
    let request = named(&spans, "request");
    let publish_a = named(&spans, "order.created publish");
    let process_a = named(&spans, "order.created process");
    let publish_b = named(&spans, "item.shipped publish");
    let process_b = named(&spans, "item.shipped process");
    let id = |s: &SpanData| s.span_context.span_id();
    // Each span's parent, and whether it came over the broker.
    let check = |span: &SpanData, parent: SpanId, remote: bool, kind: SpanKind| {
        assert_eq!(span.parent_span_id, parent, "parent of {}", span.name);
        assert_eq!(span.parent_span_is_remote, remote, "{}", span.name);
        assert_eq!(span.span_kind, kind, "{}", span.name);
    };
    assert_eq!(id(request), root_id);
    check(request, SpanId::INVALID, false, SpanKind::Internal);
    check(publish_a, id(request), false, SpanKind::Producer);
    check(process_a, id(publish_a), true, SpanKind::Consumer);
    check(publish_b, id(process_a), false, SpanKind::Producer);
    check(process_b, id(publish_b), true, SpanKind::Consumer);

    // What travelled: the producer span's context, in the W3C header.
    let traceparent = |meta: &Metadata| {
        meta.header("traceparent")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        traceparent(&a_meta),
        Some(format!("00-{trace}-{}-01", id(publish_a)))
    );
    assert_eq!(
        traceparent(&b_meta),
        Some(format!("00-{trace}-{}-01", id(publish_b)))
    );
    // The messaging semantic conventions.
    assert_eq!(
        attribute(process_a, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        attribute(process_a, "messaging.destination.name").as_deref(),
        Some(fixture.exchange())
    );
    assert_eq!(
        attribute(process_a, "messaging.consumer.group.name").as_deref(),
        Some(back.service())
    );
    assert_eq!(
        attribute(publish_b, "messaging.rabbitmq.destination.routing_key").as_deref(),
        Some("item.shipped")
    );

    front.teardown().unwrap();
    back.teardown().unwrap();
}

#[test]
fn a_publish_outside_any_span_starts_a_trace() {
    exporter();
    let Some(fixture) = Bus::new("otel-root") else {
        return;
    };
    let mut bus = service(&fixture, "root");
    let (tx, rx) = crossbeam_channel::unbounded::<Metadata>();
    bus.subscribe(
        "order.created",
        handler_fn("see", move |_, meta| {
            tx.send(meta.clone()).unwrap();
            Ok(())
        }),
    )
    .unwrap();
    bus.start().unwrap();
    bus.publish(event("order", "created", 1)).unwrap();
    let meta = rx.recv_timeout(WAIT).unwrap();
    let traceparent = meta.header("traceparent").and_then(|v| v.as_str()).unwrap();
    let trace = TraceId::from_hex(traceparent.split('-').nth(1).unwrap()).unwrap();
    let spans = spans_of(trace, 2);
    let publish = named(&spans, "order.created publish");
    let process = named(&spans, "order.created process");
    assert_eq!(publish.parent_span_id, SpanId::INVALID);
    assert_eq!(process.parent_span_id, publish.span_context.span_id());
    bus.teardown().unwrap();
}

#[test]
fn a_failed_handler_marks_its_span_as_an_error() {
    exporter();
    let Some(fixture) = Bus::new("otel-error") else {
        return;
    };
    let mut bus = service(&fixture, "failing");
    let (tx, rx) = crossbeam_channel::unbounded::<Metadata>();
    bus.subscribe(
        "order.created",
        handler_fn("refuse", move |_, meta| {
            tx.send(meta.clone()).unwrap();
            Err(pubsub::Permanent::new("refused").into())
        }),
    )
    .unwrap();
    bus.start().unwrap();
    bus.publish(event("order", "created", 1)).unwrap();
    let meta = rx.recv_timeout(WAIT).unwrap();
    let traceparent = meta.header("traceparent").and_then(|v| v.as_str()).unwrap();
    let trace = TraceId::from_hex(traceparent.split('-').nth(1).unwrap()).unwrap();
    let spans = spans_of(trace, 2);
    let process = named(&spans, "order.created process");
    assert!(
        matches!(process.status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        process.status
    );
    assert_eq!(
        named(&spans, "order.created publish").status,
        opentelemetry::trace::Status::Unset
    );
    bus.teardown().unwrap();
}

#[test]
fn an_event_publisher_on_its_own_traces_under_the_current_span() {
    exporter();
    let Some(fixture) = Bus::new("otel-publisher") else {
        return;
    };
    let mut bus = service(&fixture, "direct");
    let (tx, rx) = crossbeam_channel::unbounded::<Metadata>();
    bus.subscribe(
        "order.*",
        handler_fn("see", move |_, meta| {
            tx.send(meta.clone()).unwrap();
            Ok(())
        }),
    )
    .unwrap();
    bus.start().unwrap();
    let mut publisher =
        pubsub::publisher::EventPublisher::new(fixture.connection(), fixture.exchange()).unwrap();
    let root = tracing::info_span!("batch");
    let trace = root.context().span().span_context().trace_id();
    root.in_scope(|| {
        let outcomes =
            publisher.publish_all(&[event("order", "created", 1), event("order", "paid", 2)]);
        assert!(outcomes.iter().all(Result::is_ok));
    });
    drop(root);
    rx.recv_timeout(WAIT).unwrap();
    rx.recv_timeout(WAIT).unwrap();
    let spans = spans_of(trace, 5);
    let batch = named(&spans, "batch");
    for key in ["order.created", "order.paid"] {
        let publish = named(&spans, &format!("{key} publish"));
        let process = named(&spans, &format!("{key} process"));
        assert_eq!(publish.parent_span_id, batch.span_context.span_id());
        assert_eq!(process.parent_span_id, publish.span_context.span_id());
    }
    publisher.close().unwrap();
    bus.teardown().unwrap();
}

/// An async service in the middle: its handler's consumer span continues the trace across an
/// `.await`, and what it publishes after the await is that span's child.
#[cfg(feature = "tokio")]
#[test]
fn an_async_handler_continues_the_trace_across_its_awaits() {
    exporter();
    let Some(fixture) = Bus::new("otel-async") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut front = service(&fixture, "front");
    let mut back = EventBus::builder(&unique("back"))
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .build_async()
        .unwrap();
    let back_publisher = back.publisher();
    back.subscribe_fn("order.created", "ship", move |_event, _meta| {
        let publisher = back_publisher.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            publisher.send(shipped("lamp", 1))?.await?;
            Ok(())
        }
    })
    .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    front
        .subscribe(
            "item.shipped",
            handler_fn("notify", move |event, _meta| {
                tx.send(event.routing_key().to_owned()).unwrap();
                Ok(())
            }),
        )
        .unwrap();
    runtime.block_on(back.start()).unwrap();
    front.start().unwrap();

    let root = tracing::info_span!("request");
    let trace = root.context().span().span_context().trace_id();
    root.in_scope(|| front.publish(event("order", "created", 1)))
        .unwrap();
    drop(root);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "item.shipped");

    let spans = spans_of(trace, 5);
    assert_eq!(spans.len(), 5, "{:#?}", names(&spans));
    let publish_a = named(&spans, "order.created publish");
    let process_a = named(&spans, "order.created process");
    let publish_b = named(&spans, "item.shipped publish");
    let process_b = named(&spans, "item.shipped process");
    let id = |s: &SpanData| s.span_context.span_id();
    assert_eq!(process_a.parent_span_id, id(publish_a));
    assert!(process_a.parent_span_is_remote);
    assert_eq!(process_a.span_kind, SpanKind::Consumer);
    assert_eq!(
        publish_b.parent_span_id,
        id(process_a),
        "published after an await"
    );
    assert_eq!(process_b.parent_span_id, id(publish_b));
    front.teardown().unwrap();
    runtime.block_on(back.teardown()).unwrap();
}
