//! The tracing pipeline of `--tracing` runs (feature `otel`): what the consumer process of a
//! traced run installs, and the switch that turns spans on and off. Without the feature,
//! nothing to install.

#[cfg(not(feature = "otel"))]
use anyhow::bail;
use anyhow::{Context, Result};

/// Set for the consumer process of a traced run: it installs the tracing pipeline.
pub(crate) const CHILD_ENV: &str = "PUBSUB_BENCH_TRACING";

/// The share of traces sampled (a `ParentBased` ratio sampler: the publisher decides, the
/// consumer follows), 1 by default: every event traced.
pub(crate) const RATIO_ENV: &str = "PUBSUB_BENCH_TRACE_RATIO";

/// The sampling ratio asked for in [`RATIO_ENV`], else 1.
pub(crate) fn ratio() -> Result<f64> {
    match std::env::var(RATIO_ENV) {
        Ok(text) => text
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .with_context(|| format!("{RATIO_ENV} is a ratio from 0 to 1, not {text:?}")),
        Err(_) => Ok(1.0),
    }
}

#[cfg(feature = "otel")]
mod pipeline {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::OnceLock;

    use anyhow::{Context, Result};
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
    use tracing_subscriber::filter::dynamic_filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    /// Whether spans are wanted now (the publishing side turns it on for traced runs only).
    static ON: AtomicBool = AtomicBool::new(false);

    /// Kept alive for the process's life: dropping it shuts the pipeline down.
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    /// Spans the exporter was given, to show that tracing was on.
    static EXPORTED: AtomicU64 = AtomicU64::new(0);

    /// Counts and discards what it is given: the cost measured is the instrumentation's.
    #[derive(Debug)]
    struct Discard;

    impl SpanExporter for Discard {
        fn export(
            &self,
            batch: Vec<SpanData>,
        ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
            EXPORTED.fetch_add(batch.len() as u64, Ordering::Relaxed);
            std::future::ready(Ok(()))
        }
    }

    /// Exports what is pending; the spans exported so far.
    pub(crate) fn exported() -> u64 {
        if let Some(provider) = PROVIDER.get() {
            if let Err(e) = provider.force_flush() {
                eprintln!("flushing the spans: {e}");
            }
        }
        EXPORTED.load(Ordering::Relaxed)
    }

    /// Installs the global tracing subscriber: spans, while [`publishing`] says so, go to
    /// OpenTelemetry's batch span processor.
    pub(crate) fn install() -> Result<()> {
        let sampled = super::ratio()?;
        let provider = PROVIDER.get_or_init(|| {
            SdkTracerProvider::builder()
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    sampled,
                ))))
                .with_batch_exporter(Discard)
                .build()
        });
        // What a service that traces every message would configure: no source locations,
        // thread names or busy/idle times on every span.
        let layer = tracing_opentelemetry::layer()
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_level(false)
            .with_target(false)
            .with_tracer(provider.tracer("pubsub-bench"))
            // Asked span by span (a plain `filter_fn` is asked once per callsite and cached).
            .with_filter(dynamic_filter_fn(|_, _| ON.load(Ordering::Relaxed)));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .context("a tracing subscriber is installed already")
    }

    /// Turns spans on or off.
    pub(crate) fn publishing(on: bool) {
        ON.store(on, Ordering::Relaxed);
    }
}

#[cfg(feature = "otel")]
pub(crate) use pipeline::{exported, install, publishing};

/// Without the `otel` feature there is nothing to install.
#[cfg(not(feature = "otel"))]
pub(crate) fn install() -> Result<()> {
    bail!("this build has no tracing (build with --features otel)")
}

/// Without the `otel` feature: nothing to turn on.
#[cfg(not(feature = "otel"))]
pub(crate) fn publishing(_on: bool) {}

/// Without the `otel` feature: no span.
#[cfg(not(feature = "otel"))]
pub(crate) fn exported() -> u64 {
    0
}
