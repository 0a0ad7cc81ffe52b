//! The memory check (`--memory`): does the consumer's resident memory stay flat over a long
//! run, and is it bounded by the prefetch rather than by the depth of the queue?
//!
//! 1. Flat: a library consumer at its default settings handles `--memory-events` events
//!    (1,000,000 by default) published at the same time; its RSS is sampled at 10,000 events
//!    and along the way. Target: RSS at the end within 10% of RSS at 10,000.
//! 2. Deep: a queue is filled with `--deep` events (200,000 by default) before a consumer of
//!    the same settings starts on it. If the consumer's memory followed the queue's depth, its
//!    peak would be far above the first case's; bounded by the prefetch, it is the same.

use std::time::Duration;

use anyhow::{bail, Result};
use pubsub_amqp::AmqpConfig;
use serde_json::json;

use crate::admin::Admin;
use crate::cli::{ConsumeArgs, Options, Side};
use crate::consumer::{ChildResult, ConsumerProcess};
use crate::library::{self, LibPublish};
use crate::report;
use crate::workload;

/// Events per `publish_all` call while filling.
const BATCH: usize = 1_000;

/// Runs the memory check and prints its results.
pub(crate) fn run(config: &AmqpConfig, options: &Options) -> Result<()> {
    let mut admin = Admin::open(config)?;
    let events = options
        .memory_events
        .unwrap_or(if options.quick { 100_000 } else { 1_000_000 })
        .max(10_000);
    let deep = options
        .deep
        .unwrap_or(if options.quick { 20_000 } else { 200_000 })
        .max(10_000);
    println!(
        "# pubsub-bench --memory against {}: library consumer, default settings (prefetch 100)",
        config.address()
    );

    // 1. A long run, published while consumed.
    let mut points: Vec<u64> = [10_000, 50_000, 100_000, 250_000, 500_000, 750_000]
        .into_iter()
        .filter(|&p| p < events)
        .collect();
    points.push(events);
    eprintln!("memory: {events} events through one consumer...");
    let names = admin.names("memory-flat")?;
    let flat = (|| {
        let consumer =
            ConsumerProcess::start(&consume_args(&names, events, points.clone(), false))?;
        let published = library::publish(
            admin.config(),
            &names.exchange,
            events,
            LibPublish::Batch(BATCH),
            None,
        )?;
        let result = consumer.finish(Duration::from_secs(120 + events / 500))?;
        let seconds = result.last_ns.saturating_sub(published.start_ns) as f64 / 1e9;
        Ok::<_, anyhow::Error>((result, seconds))
    })();
    admin.delete(&names);
    let (flat, flat_seconds) = flat?;
    check(&flat, events)?;

    // 2. A consumer started on a deep queue.
    eprintln!("memory: filling a queue with {deep} events, then consuming it...");
    let names = admin.names("memory-deep")?;
    let deep_points = vec![10_000, deep / 2, deep];
    let deep_run = (|| {
        let mut consumer =
            ConsumerProcess::start(&consume_args(&names, deep, deep_points.clone(), true))?;
        library::publish(
            admin.config(),
            &names.exchange,
            deep,
            LibPublish::Batch(BATCH),
            None,
        )?;
        let depth = admin.depth(&names.queue)?;
        let go_ns = workload::wall_ns();
        consumer.go()?;
        let result = consumer.finish(Duration::from_secs(120 + deep / 500))?;
        let seconds = result.last_ns.saturating_sub(go_ns) as f64 / 1e9;
        Ok::<_, anyhow::Error>((result, depth, seconds))
    })();
    admin.delete(&names);
    let (deep_result, depth, deep_seconds) = deep_run?;
    check(&deep_result, deep)?;

    let at = |r: &ChildResult, n: u64| {
        r.rss_samples
            .iter()
            .find(|(count, _)| *count == n)
            .map_or(0, |(_, kb)| *kb)
    };
    let flat_10k = at(&flat, 10_000);
    let flat_end = at(&flat, events);
    let growth = (flat_end as f64 - flat_10k as f64) / (flat_10k as f64).max(1.0);
    let deep_10k = at(&deep_result, 10_000);
    let deep_end = at(&deep_result, deep);

    println!("\n## Consumer memory (VmRSS of the consumer process, kB)\n");
    let mut rows = vec![vec![
        format!(
            "{} events, published while consumed",
            report::thousands(events as f64)
        ),
        report::thousands(flat.rss_start_kb as f64),
        report::thousands(flat_10k as f64),
        report::thousands(flat_end as f64),
        report::thousands(flat.hwm_kb as f64),
        report::thousands(events as f64 / flat_seconds),
    ]];
    rows.push(vec![
        format!(
            "queue {} deep before the consumer starts",
            report::thousands(f64::from(depth))
        ),
        report::thousands(deep_result.rss_start_kb as f64),
        report::thousands(deep_10k as f64),
        report::thousands(deep_end as f64),
        report::thousands(deep_result.hwm_kb as f64),
        report::thousands(deep as f64 / deep_seconds),
    ]);
    report::print_table(
        &[
            "case",
            "RSS at start",
            "RSS at 10,000",
            "RSS at end",
            "peak RSS",
            "events/s",
        ],
        &rows,
    );
    let series: Vec<String> = flat
        .rss_samples
        .iter()
        .map(|(n, kb)| {
            format!(
                "{}: {}",
                report::thousands(*n as f64),
                report::thousands(*kb as f64)
            )
        })
        .collect();
    println!(
        "\nRSS along the long run (events: kB): {}",
        series.join(", ")
    );
    println!(
        "\n- RSS after {} events vs after 10,000: {:+.1}% (target within 10%): {}",
        report::thousands(events as f64),
        growth * 100.0,
        if growth.abs() <= 0.10 {
            "met"
        } else {
            "MISSED"
        }
    );
    let bounded = deep_result.hwm_kb as f64 <= flat.hwm_kb as f64 * 1.10;
    println!(
        "- peak RSS on a queue {} deep: {} kB, vs {} kB when consumed as published: {}",
        report::thousands(f64::from(depth)),
        report::thousands(deep_result.hwm_kb as f64),
        report::thousands(flat.hwm_kb as f64),
        if bounded {
            "bounded by the prefetch, not the queue depth"
        } else {
            "HIGHER: memory follows the queue depth"
        }
    );
    println!();
    println!(
        "{}",
        report::bench_line(
            "memory_flat",
            json!({
                "events": events,
                "rss_start_kb": flat.rss_start_kb,
                "rss_10k_kb": flat_10k,
                "rss_end_kb": flat_end,
                "peak_rss_kb": flat.hwm_kb,
                "growth_pct": report::round(growth * 100.0, 2),
                "rss_samples": flat.rss_samples,
                "e2e_msgs_per_s": report::round(events as f64 / flat_seconds, 0),
            })
        )
    );
    println!(
        "{}",
        report::bench_line(
            "memory_deep_queue",
            json!({
                "queue_depth": depth,
                "rss_start_kb": deep_result.rss_start_kb,
                "rss_10k_kb": deep_10k,
                "rss_end_kb": deep_end,
                "peak_rss_kb": deep_result.hwm_kb,
                "consume_msgs_per_s": report::round(deep as f64 / deep_seconds, 0),
            })
        )
    );
    admin.close()
}

fn consume_args(
    names: &pubsub_testkit::Names,
    count: u64,
    rss_at: Vec<u64>,
    wait_go: bool,
) -> ConsumeArgs {
    ConsumeArgs {
        side: Side::Lib,
        exchange: names.exchange.clone(),
        queue: names.queue.clone(),
        prefetch: None,
        count,
        latency: false,
        rss_at,
        wait_go,
        quorum: false,
    }
}

fn check(result: &ChildResult, n: u64) -> Result<()> {
    if result.handled != n {
        bail!(
            "the consumer handled {} events, expected {n}",
            result.handled
        );
    }
    Ok(())
}
