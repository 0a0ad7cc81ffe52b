//! `--tracing`: the library's default configuration with tracing off and on, in one run,
//! interleaved round by round. Needs a build with `--features otel`; tracing "on" sends every
//! span through `tracing-opentelemetry` to OpenTelemetry's batch span processor and an exporter
//! that discards the batches (the instrumentation's cost, without a collector's).

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::admin::{self, Admin};
use crate::cli::Options;
use crate::e2e::{run_once_on, Config, Paired, Run, Target, LIB_DEFAULT};
use crate::report::{self, Stat};

/// Set for the consumer process of a traced run: it installs the tracing pipeline.
pub(crate) const CHILD_ENV: &str = "PUBSUB_BENCH_TRACING";

/// The share of traces sampled (a `ParentBased` ratio sampler: the publisher decides, the
/// consumer follows), 1 by default: every event traced.
pub(crate) const RATIO_ENV: &str = "PUBSUB_BENCH_TRACE_RATIO";

/// The sampling ratio asked for in [`RATIO_ENV`], else 1.
fn ratio() -> Result<f64> {
    match std::env::var(RATIO_ENV) {
        Ok(text) => text
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .with_context(|| format!("{RATIO_ENV} is a ratio from 0 to 1, not {text:?}")),
        Err(_) => Ok(1.0),
    }
}

/// Runs the comparison and prints its table, its JSON line and the ratio.
pub(crate) fn run(options: &Options) -> Result<()> {
    if !cfg!(feature = "otel") {
        bail!("--tracing needs a build with tracing: cargo run --release -p pubsub-bench --features otel -- --tracing");
    }
    install()?;
    let config = admin::broker_config()?;
    let mut admin = Admin::open(&config)?;
    let lib_default = Config::lib_default()?;
    let n = lib_default.events(options);
    let rounds = options.rounds();
    let sampled = ratio()?;
    println!("# pubsub-bench --tracing: {LIB_DEFAULT}, tracing off and on (sampling {sampled})");
    let mut offs: Vec<Run> = Vec::new();
    let mut ons: Vec<Run> = Vec::new();
    for round in 1..=rounds {
        for traced in [round % 2 == 0, round % 2 == 1] {
            let target = Target {
                tracing: traced,
                ..Target::default()
            };
            let label = if traced { "tracing on" } else { "tracing off" };
            eprint!("round {round}/{rounds}: {label:<12} {n:>6} events ... ");
            let run = run_once_on(
                &mut admin,
                lib_default,
                n,
                &format!("tracing.r{round}"),
                &target,
            )?;
            eprintln!(
                "end-to-end {:>7} msg/s, consumer CPU us/event {:.1}",
                report::thousands(run.e2e_rate),
                run.consumer_cpu_us
            );
            if traced {
                ons.push(run);
            } else {
                offs.push(run);
            }
        }
    }
    admin.close()?;
    eprintln!(
        "the publishing side exported {} spans ({} events traced)",
        exported(),
        n * rounds as u64
    );

    let stat = |runs: &[Run], f: fn(&Run) -> f64| Stat::of(&runs.iter().map(f).collect::<Vec<_>>());
    let Paired {
        base: off_rate,
        other: on_rate,
        ratio,
    } = Paired::of(&offs, &ons)?;
    println!(
        "\n## Tracing off and on ({LIB_DEFAULT}, median [min-max] of {rounds} interleaved rounds)\n"
    );
    let row = |what: &str, rate: Stat, runs: &[Run], ratio: String| {
        vec![
            what.to_owned(),
            format!(
                "{} [{}-{}]",
                report::thousands(rate.median),
                report::thousands(rate.min),
                report::thousands(rate.max)
            ),
            ratio,
            stat(runs, |r| r.publisher_cpu_us)
                .map_or("-".to_owned(), |c| format!("{:.1}", c.median)),
            stat(runs, |r| r.consumer_cpu_us)
                .map_or("-".to_owned(), |c| format!("{:.1}", c.median)),
        ]
    };
    report::print_table(
        &[
            "tracing",
            "e2e msg/s",
            "ratio to off",
            "publisher CPU µs/event",
            "consumer CPU µs/event",
        ],
        &[
            row(
                "off (feature built in, no span wanted)",
                off_rate,
                &offs,
                "1.00x".to_owned(),
            ),
            row(
                &format!("on (a producer and a consumer span per event, {sampled} of traces sampled, exported in batches)"),
                on_rate,
                &ons,
                format!("{:.2}x [{:.2}-{:.2}]", ratio.median, ratio.min, ratio.max),
            ),
        ],
    );
    println!();
    println!(
        "{}",
        report::bench_line(
            "tracing_cost",
            json!({
                "events": n,
                "rounds": rounds,
                "off_msgs_per_s": off_rate.median,
                "on_msgs_per_s": on_rate.median,
                "ratio": report::round(ratio.median, 3),
                "sampling": sampled,
            })
        )
    );
    let met = ratio.median >= 0.90;
    println!(
        "target: tracing on keeps at least 90% of the rate: {} ({:.2}x)",
        if met { "met" } else { "NOT met" },
        ratio.median
    );
    Ok(())
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
