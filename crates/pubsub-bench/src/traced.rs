//! `--tracing`: the library's default configuration with tracing off and on, in one run,
//! interleaved round by round. Needs a build with `--features otel`; tracing "on" sends every
//! span through `tracing-opentelemetry` to OpenTelemetry's batch span processor and an exporter
//! that discards the batches (the instrumentation's cost, without a collector's).

use anyhow::{bail, Result};
use serde_json::json;

use crate::admin::{self, Admin};
use crate::cli::Options;
use crate::e2e::{run_once_on, Config, Paired, Run, LIB_DEFAULT};
use crate::report::{self, Stat};
use crate::sides::Target;
use crate::tracing_pipeline::{exported, install, ratio};

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
