//! Publish-to-handler latency at a fixed rate, and `publish_all` against single publish.

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;

use crate::admin::Admin;
use crate::bus;
use crate::cli::{ConsumeArgs, Options, Side};
use crate::consumer::{ConsumerProcess, Latency};
use crate::library::{self, LibPublish};
use crate::raw::{self, RawConfirms};
use crate::report;
use crate::sides::Pace;
use crate::workload;

/// Publish-to-handler latency at a fixed moderate rate, raw then library.
pub(crate) fn latency(admin: &mut Admin, options: &Options) -> Result<Vec<(Side, Latency)>> {
    const RATE: u64 = 1_000;
    let seconds = if options.quick { 1 } else { 3 };
    let n = RATE * seconds;
    let pace = Pace {
        per_tick: 5,
        tick: Duration::from_millis(5),
    };
    let mut results = Vec::new();
    for side in [Side::Raw, Side::Lib, Side::Bus, Side::AsyncBus] {
        eprintln!("latency, {}: {n} events at {RATE} msg/s...", side.as_str());
        let names = admin.names(&format!("latency-{}", side.as_str()))?;
        let measured = (|| {
            let args = ConsumeArgs {
                side,
                exchange: names.exchange.clone(),
                queue: names.queue.clone(),
                prefetch: (side == Side::Raw).then_some(100),
                count: n,
                latency: true,
                rss_at: Vec::new(),
                wait_go: false,
                quorum: false,
            };
            let consumer = ConsumerProcess::start(&args)?;
            let config = admin.config();
            match side {
                Side::Raw => raw::publish(
                    config,
                    &names.exchange,
                    n,
                    RawConfirms::Every(5),
                    Some(pace),
                )?,
                Side::Lib => {
                    library::publish(config, &names.exchange, n, LibPublish::Batch(5), Some(pace))?
                }
                Side::Bus | Side::AsyncBus => bus::publish(config, &names.exchange, n, pace)?,
            };
            let result = consumer.finish(Duration::from_secs(60))?;
            result
                .latency
                .ok_or_else(|| anyhow::anyhow!("the consumer recorded no latency"))
        })();
        admin.delete(&names);
        results.push((side, measured?));
    }
    println!(
        "\n## Publish-to-handler latency at {RATE} msg/s ({} events each; batches of 5 every 5 ms, confirmed; prefetch 100)\n",
        n
    );
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(side, l)| {
            vec![
                match side {
                    Side::Raw => "raw amiquip loop".to_owned(),
                    Side::Lib => "library (default subscriber)".to_owned(),
                    Side::Bus => "EventBus (publisher handle, 1 worker)".to_owned(),
                    Side::AsyncBus => "AsyncEventBus (publisher handle, concurrency 64)".to_owned(),
                },
                format!("{:.0}", l.p50_us),
                format!("{:.0}", l.p99_us),
                format!("{:.0}", l.max_us),
            ]
        })
        .collect();
    report::print_table(&["consumer", "p50 us", "p99 us", "max us"], &rows);
    println!();
    for (side, l) in &results {
        println!(
            "{}",
            report::bench_line(
                "latency",
                json!({
                    "side": side.as_str(),
                    "rate_msgs_per_s": RATE,
                    "events": l.n,
                    "p50_us": report::round(l.p50_us, 1),
                    "p99_us": report::round(l.p99_us, 1),
                    "max_us": report::round(l.max_us, 1),
                })
            )
        );
    }
    Ok(results)
}

/// `publish_all` of N events against N single `publish` calls, both confirmed. The order is
/// publish_all, single, publish_all, and the two publish_all times are averaged, so that a
/// drift in the machine's speed during the long single run cancels out.
pub(crate) fn publish_speedup(admin: &mut Admin, options: &Options) -> Result<f64> {
    let n: u64 = if options.quick { 2_000 } else { 10_000 };
    eprintln!("publish_all against single publish, {n} events each...");
    let names = admin.names("publish-all")?;
    let measured = (|| {
        admin.declare_bound_queue(&names)?;
        let events = (0..n)
            .map(|i| workload::event(i, 0))
            .collect::<Result<Vec<_>>>()?;
        let config = admin.config().clone();
        let all_1 = library::publish_prebuilt(&config, &names.exchange, &events, true)?;
        let single = library::publish_prebuilt(&config, &names.exchange, &events, false)?;
        let all_2 = library::publish_prebuilt(&config, &names.exchange, &events, true)?;
        let depth = u64::from(admin.depth(&names.queue)?);
        if depth != 3 * n {
            bail!("the queue holds {depth} events, expected {}", 3 * n);
        }
        Ok((single, (all_1 + all_2) / 2.0, all_1, all_2))
    })();
    admin.delete(&names);
    let (single, all, all_1, all_2) = measured?;
    let speedup = single / all;
    println!("\n## publish_all against single publish ({n} events each, confirms on)\n");
    report::print_table(
        &["publisher", "seconds", "msg/s"],
        &[
            vec![
                format!("{n} x publish()"),
                format!("{single:.3}"),
                report::thousands(n as f64 / single),
            ],
            vec![
                format!("publish_all({n} events) (mean of {all_1:.3} s and {all_2:.3} s)"),
                format!("{all:.3}"),
                report::thousands(n as f64 / all),
            ],
        ],
    );
    println!("\npublish_all speedup: {speedup:.1}x (target >= 5x)\n");
    println!(
        "{}",
        report::bench_line(
            "publish_all_vs_single",
            json!({
                "events": n,
                "single_s": report::round(single, 4),
                "publish_all_s": report::round(all, 4),
                "speedup": report::round(speedup, 2),
            })
        )
    );
    Ok(speedup)
}
