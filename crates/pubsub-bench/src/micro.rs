//! Micro-benchmarks of the pure parts: `find_handlers` as the number of patterns grows, the
//! wire format, and in-process dispatch.
//!
//! Each is a loop timed with `Instant` around `black_box`, calibrated to run for a fixed time.
//! Repetitions are interleaved (10, 1,000, 10,000, 10, 1,000, ...) and the minimum is kept:
//! on a machine shared with builds, the fastest repetition is the one least disturbed, and
//! the cost of the code is what is being measured. (No criterion: its statistics would not
//! change the conclusions here, and it would be the workspace's heaviest dependency.)

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use pubsub_amqp::guard::InboundGuard;
use pubsub_core::{handler_fn, json, Event};
use pubsub_registry::HandlerRegistry;
use serde_json::{json as value, Value};

use crate::report::{self, Stat};
use crate::workload::{self, Sink};

/// Registry sizes for `find_handlers`.
pub(crate) const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// Patterns that match the queried keys, present at every size.
const HOT: [&str; 4] = ["order.*", "*.created", "#", "ord*.created"];

/// The routing keys looked up, in turn; each matches the same patterns at every size.
const KEYS: [&str; 4] = [
    "order.created",
    "order.paid",
    "user.registered",
    "d1.created",
];

/// What the micro-benchmarks found.
#[derive(Debug, Clone)]
pub(crate) struct MicroResults {
    /// `(patterns, ns per find_handlers)`.
    pub(crate) find_ns: Vec<(usize, Stat)>,
}

impl MicroResults {
    /// `find_handlers` at 10,000 patterns over at 10 (minima).
    pub(crate) fn find_ratio(&self) -> Option<f64> {
        let at = |n| {
            self.find_ns
                .iter()
                .find(|(s, _)| *s == n)
                .map(|(_, t)| t.min)
        };
        Some(at(10_000)? / at(10)?)
    }
}

/// The `i`-th filler pattern: a mix of exact words, `*`, `#` and glob words, none matching
/// the queried keys except `d1.*`.
fn filler(i: usize) -> String {
    match i % 8 {
        0 => format!("d{i}.created"),
        1 => format!("d{i}.*"),
        2 => format!("d{i}.#"),
        3 => format!("*.a{i}"),
        4 => format!("#.a{i}"),
        5 => format!("d{i}*.paid"),
        6 => format!("ord*.x{i}"),
        _ => format!("d{i}.a?{i}"),
    }
}

/// A registry of `n` patterns: the hot ones, then fillers.
fn registry_of(n: usize) -> Result<HandlerRegistry> {
    let mut registry = HandlerRegistry::new();
    let patterns = HOT
        .iter()
        .map(|p| (*p).to_owned())
        .chain((0..).map(filler))
        .take(n);
    for pattern in patterns {
        registry.subscribe(&pattern, handler_fn("h", |_, _| Ok(())))?;
    }
    Ok(registry)
}

/// Nanoseconds per call of `f`, over a loop calibrated to last about `target`.
fn ns_per_op(target: Duration, mut f: impl FnMut(usize)) -> f64 {
    let mut iters: usize = 16;
    loop {
        let start = Instant::now();
        for i in 0..iters {
            f(i);
        }
        let elapsed = start.elapsed();
        if elapsed >= target / 8 || iters >= 1 << 30 {
            let scale = target.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
            iters = ((iters as f64 * scale) as usize).max(1);
            break;
        }
        iters *= 4;
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Runs the micro-benchmarks, prints their table and JSON lines.
pub(crate) fn run(quick: bool) -> Result<MicroResults> {
    let (target, reps) = if quick {
        (Duration::from_millis(40), 3)
    } else {
        (Duration::from_millis(150), 5)
    };

    let registries: Vec<(usize, HandlerRegistry)> = SIZES
        .iter()
        .map(|&n| Ok((n, registry_of(n)?)))
        .collect::<Result<_>>()?;
    for (n, registry) in &registries {
        let matched: Vec<usize> = KEYS
            .iter()
            .map(|k| registry.find_handlers(k).len())
            .collect();
        anyhow::ensure!(
            matched == [4, 2, 1, 3],
            "find_handlers with {n} patterns matched {matched:?}, expected [4, 2, 1, 3]"
        );
    }

    let events: Vec<Event> = (0..3)
        .map(|i| workload::event(i, 1_732_000_000_000_000_000))
        .collect::<Result<_>>()?;
    let bodies: Vec<Vec<u8>> = events.iter().map(json::to_vec).collect();
    let sink = Arc::new(Sink::new(u64::MAX, false, Vec::new()));
    let dispatch = workload::registry(&sink)?;
    let mut buffer = Vec::with_capacity(512);

    let mut find: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
    let mut other: Vec<(&str, &str, Vec<f64>)> = vec![
        ("encode", "json::write_to into a reused buffer", Vec::new()),
        ("encode_to_vec", "json::to_vec", Vec::new()),
        ("decode", "json::from_slice (validated Event)", Vec::new()),
        (
            "decode_serde_event",
            "serde_json::from_slice::<Event> (same checks, no error path tracking)",
            Vec::new(),
        ),
        (
            "decode_raw_value",
            "serde_json::from_slice::<Value> (the raw loop's parse)",
            Vec::new(),
        ),
        (
            "event_new",
            "Event::new with the benchmark's data",
            Vec::new(),
        ),
        (
            "invoke_all",
            "HandlerRegistry::invoke_all, 3 patterns, counting handlers",
            Vec::new(),
        ),
        (
            "frame_guard",
            "the frame guard over one delivery's frames (deliver, header, body) and its copy",
            Vec::new(),
        ),
    ];
    let mut frames = delivery_frames(&bodies[0])?;
    let mut handed_on = vec![0u8; frames.len()];
    let mut guard = InboundGuard::new();
    let mut altered = Vec::new();
    for _ in 0..reps {
        for (k, (_, registry)) in registries.iter().enumerate() {
            find[k].push(ns_per_op(target, |i| {
                black_box(registry.find_handlers(black_box(KEYS[i & 3])));
            }));
        }
        for (name, _, samples) in other.iter_mut() {
            let ns = match *name {
                "encode" => ns_per_op(target, |i| {
                    buffer.clear();
                    json::write_to(black_box(&events[i % 3]), &mut buffer);
                    black_box(&buffer);
                }),
                "encode_to_vec" => ns_per_op(target, |i| {
                    black_box(json::to_vec(black_box(&events[i % 3])));
                }),
                "decode" => ns_per_op(target, |i| {
                    let _ = black_box(json::from_slice(black_box(&bodies[i % 3])));
                }),
                "decode_serde_event" => ns_per_op(target, |i| {
                    let _ = black_box(serde_json::from_slice::<Event>(black_box(&bodies[i % 3])));
                }),
                "decode_raw_value" => ns_per_op(target, |i| {
                    let _ = black_box(serde_json::from_slice::<Value>(black_box(&bodies[i % 3])));
                }),
                "event_new" => ns_per_op(target, |i| {
                    let _ = black_box(workload::event(i as u64, black_box(0)));
                }),
                "frame_guard" => ns_per_op(target, |_| {
                    if let Ok(progress) = guard.process(black_box(&mut frames), 0, &mut altered) {
                        handed_on[..progress.ready].copy_from_slice(&frames[..progress.ready]);
                    }
                    black_box(&handed_on);
                }),
                _ => ns_per_op(target, |i| {
                    black_box(dispatch.invoke_all(black_box(&events[i % 3])));
                }),
            };
            samples.push(ns);
        }
    }

    anyhow::ensure!(
        altered.is_empty(),
        "the frame guard altered a valid delivery"
    );

    let mut results = MicroResults {
        find_ns: Vec::new(),
    };
    let mut rows = Vec::new();
    for (k, &n) in SIZES.iter().enumerate() {
        let Some(stat) = Stat::of(&find[k]) else {
            continue;
        };
        results.find_ns.push((n, stat));
        rows.push(vec![
            format!("find_handlers, {} patterns", report::thousands(n as f64)),
            format!("{:.0}", stat.min),
            format!("{:.0}", stat.median),
            "4 keys in turn, 1-4 matches each".to_owned(),
        ]);
    }
    let mut lines = Vec::new();
    for (name, note, samples) in &other {
        let Some(stat) = Stat::of(samples) else {
            continue;
        };
        rows.push(vec![
            (*name).to_owned(),
            format!("{:.0}", stat.min),
            format!("{:.0}", stat.median),
            (*note).to_owned(),
        ]);
        lines.push(report::bench_line(
            name,
            value!({
                "ns_per_op": report::round(stat.min, 1),
                "ns_per_op_median": report::round(stat.median, 1),
                "body_bytes": bodies.iter().map(Vec::len).sum::<usize>() / bodies.len(),
            }),
        ));
    }

    println!(
        "\n## Micro-benchmarks (ns/op, minimum and median of {reps} interleaved repetitions)\n"
    );
    report::print_table(
        &["benchmark", "ns/op (min)", "ns/op (median)", "what"],
        &rows,
    );
    if let Some(ratio) = results.find_ratio() {
        println!("\nfind_handlers cost at 10,000 patterns / at 10 patterns: {ratio:.2}x (target <= 2.0x)");
    }
    println!();
    for (n, stat) in &results.find_ns {
        println!(
            "{}",
            report::bench_line(
                "find_handlers",
                value!({
                    "patterns": n,
                    "ns_per_op": report::round(stat.min, 1),
                    "ns_per_op_median": report::round(stat.median, 1),
                })
            )
        );
    }
    if let Some(ratio) = results.find_ratio() {
        println!(
            "{}",
            report::bench_line(
                "find_handlers_ratio_10000_vs_10",
                value!({ "ratio": report::round(ratio, 3)})
            )
        );
    }
    for line in lines {
        println!("{line}");
    }
    Ok(results)
}

/// The frames of one delivery of `body` as RabbitMQ sends them to the library's consumer: the
/// `basic.deliver` method, the content header with the properties the publisher sets, the body.
fn delivery_frames(body: &[u8]) -> Result<Vec<u8>> {
    use pubsub_testkit::raw::{encode_frame, FieldTable, RawProperties};

    fn short(out: &mut Vec<u8>, text: &str) {
        out.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(text.as_bytes());
    }
    let mut deliver = vec![0, 60, 0, 60];
    short(&mut deliver, "amq.ctag-Zv2e0R9ZdQcn3M5vC4bD0A");
    deliver.extend_from_slice(&4242u64.to_be_bytes());
    deliver.push(0);
    short(&mut deliver, "pubsub-bench.events");
    short(&mut deliver, "order.created");
    let properties = RawProperties::new()
        .content_type("application/json")
        .headers(FieldTable::new().long_string("x-pubsub-source", "bench"))
        .delivery_mode(2)
        .message_id("7c9e6679-7425-40de-944b-e07fc1f90ae7")
        .timestamp(1_732_000_000)
        .kind("order.created")
        .app_id("pubsub-bench")
        .encode()?;
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    header.extend_from_slice(&properties);
    let mut frames = encode_frame(1, 1, &deliver);
    frames.extend_from_slice(&encode_frame(2, 1, &header));
    frames.extend_from_slice(&encode_frame(3, 1, body));
    Ok(frames)
}
