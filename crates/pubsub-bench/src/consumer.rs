//! The consumer of each run, in a child process (`pubsub-bench consume ...`), so that the
//! resident memory measured is the consumer's alone, and its peak (`VmHWM`) is the peak of
//! that run.
//!
//! The protocol, on the child's standard input and output: the child declares its topology
//! and starts consuming, then prints `READY`; with `--wait-go` it prints `READY` after
//! declaring and waits for a `GO` line before consuming (to consume a queue filled
//! meanwhile). Once it has handled its events it prints `RESULT {json}` and exits.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{json, Value};

use crate::cli::{ConsumeArgs, Side};
use crate::sides::{say, Gate, Target};
use crate::workload::{status_kb, Sink, ACK_FRAME_BYTES, TICKS_PER_SECOND};
use crate::{admin, library, raw};

/// The `consume` command: runs one consumer and prints its result.
pub(crate) fn run_child(args: &ConsumeArgs) -> Result<()> {
    let traced = std::env::var_os(crate::tracing_pipeline::CHILD_ENV).is_some();
    if traced {
        crate::tracing_pipeline::install()?;
        crate::tracing_pipeline::publishing(true);
    }
    let result = consume(args);
    if traced {
        eprint!(
            "(consumer: {} spans exported) ",
            crate::tracing_pipeline::exported()
        );
    }
    result
}

/// Runs one consumer and prints its result.
fn consume(args: &ConsumeArgs) -> Result<()> {
    let config = admin::config_from_env()?;
    let sink = Arc::new(Sink::new(args.count, args.latency, args.rss_at.clone()));
    let gate = Gate::new(args.wait_go);
    let stats = match args.side {
        Side::Raw => {
            let prefetch = args.prefetch.unwrap_or(100);
            raw::consume(&config, &args.exchange, &args.queue, prefetch, &sink, &gate)?;
            Value::Null
        }
        Side::Lib => {
            let stats = library::consume(
                &config,
                &args.exchange,
                &args.queue,
                (args.prefetch, args.quorum),
                &sink,
                &gate,
            )?;
            json!(stats.to_string())
        }
        Side::Bus | Side::AsyncBus => {
            let consume = match args.side {
                Side::AsyncBus => crate::asynchronous::consume,
                _ => crate::bus::consume,
            };
            let stats = consume(
                &config,
                &args.exchange,
                &args.queue,
                args.prefetch,
                &sink,
                &gate,
            )?;
            json!(stats.to_string())
        }
    };
    let mut tally = sink.tally();
    let latency = if tally.latencies.is_empty() {
        Value::Null
    } else {
        tally.latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((tally.latencies.len() - 1) as f64 * q).round() as usize;
            tally.latencies[i] as f64 / 1_000.0
        };
        json!({
            "n": tally.latencies.len(),
            "p50_us": at(0.50),
            "p99_us": at(0.99),
            "max_us": at(1.0),
        })
    };
    let result = json!({
        "handled": tally.handled,
        "order_star": tally.order_star,
        "star_created": tally.star_created,
        "first_ns": tally.first_ns,
        "last_ns": tally.last_ns,
        // Without `ss`, unknown.
        "ack_frames": gate
            .sent_start
            .get()
            .map(|start| tally.sent_at_done.saturating_sub(start) / ACK_FRAME_BYTES),
        "cpu_ms": tally.cpu_at_done.saturating_sub(gate.cpu_start.get()) * 1_000 / TICKS_PER_SECOND,
        "rss_start_kb": gate.rss_start_kb.get(),
        "rss_end_kb": status_kb("VmRSS").unwrap_or(0),
        // The kernel updates VmHWM lazily: it can lag a VmRSS read moments before.
        "hwm_kb": tally
            .rss_samples
            .iter()
            .map(|(_, kb)| *kb)
            .chain(status_kb("VmHWM"))
            .chain(status_kb("VmRSS"))
            .max()
            .unwrap_or(0),
        "rss_samples": tally.rss_samples,
        "latency": latency,
        "stats": stats,
    });
    say(&format!("RESULT {result}"))
}

/// What a consumer process reported.
#[derive(Debug, Clone)]
pub(crate) struct ChildResult {
    /// Events handled by `#`.
    pub(crate) handled: u64,
    /// Events handled by `order.*`.
    pub(crate) order_star: u64,
    /// Events handled by `*.created`.
    pub(crate) star_created: u64,
    /// Wall-clock nanoseconds when the last expected event was handled.
    pub(crate) last_ns: u64,
    /// CPU time the consumer process used from READY to the last event, all its threads.
    pub(crate) cpu_ms: u64,
    /// Bytes the consumer sent to the broker from READY to the last event, over the size of
    /// an ack frame: about how many acks it sent.
    pub(crate) ack_frames: Option<u64>,
    /// VmRSS once consuming started.
    pub(crate) rss_start_kb: u64,
    /// Peak RSS of the process (VmHWM).
    pub(crate) hwm_kb: u64,
    /// `(handled, VmRSS kB)` samples.
    pub(crate) rss_samples: Vec<(u64, u64)>,
    /// Publish-to-handler latency, when measured.
    pub(crate) latency: Option<Latency>,
    /// The subscriber's final counters (library side).
    pub(crate) stats: Option<String>,
}

/// Publish-to-handler latency percentiles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    /// Samples.
    pub(crate) n: u64,
    /// Median, in microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile, in microseconds.
    pub(crate) p99_us: f64,
    /// Maximum, in microseconds.
    pub(crate) max_us: f64,
}

impl ChildResult {
    fn parse(text: &str) -> Result<ChildResult> {
        let v: Value = serde_json::from_str(text).context("the consumer's RESULT is not JSON")?;
        let int = |key: &str| v[key].as_u64().unwrap_or(0);
        let latency = v["latency"].as_object().map(|l| Latency {
            n: l.get("n").and_then(Value::as_u64).unwrap_or(0),
            p50_us: l.get("p50_us").and_then(Value::as_f64).unwrap_or(0.0),
            p99_us: l.get("p99_us").and_then(Value::as_f64).unwrap_or(0.0),
            max_us: l.get("max_us").and_then(Value::as_f64).unwrap_or(0.0),
        });
        let rss_samples = v["rss_samples"]
            .as_array()
            .map(|samples| {
                samples
                    .iter()
                    .filter_map(|s| Some((s[0].as_u64()?, s[1].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ChildResult {
            handled: int("handled"),
            order_star: int("order_star"),
            star_created: int("star_created"),
            last_ns: int("last_ns"),
            cpu_ms: int("cpu_ms"),
            ack_frames: v["ack_frames"].as_u64(),
            rss_start_kb: int("rss_start_kb"),
            hwm_kb: int("hwm_kb"),
            rss_samples,
            latency,
            stats: v["stats"].as_str().map(str::to_owned),
        })
    }
}

/// A consumer running in a child process.
#[derive(Debug)]
pub(crate) struct ConsumerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl ConsumerProcess {
    /// Starts a consumer process and waits for its `READY`.
    pub(crate) fn start(args: &ConsumeArgs) -> Result<ConsumerProcess> {
        Self::start_on(args, &Target::default())
    }

    /// [`start`](Self::start), on the broker at the target's URL instead of `AMQP_URL`'s,
    /// tracing if it says so.
    pub(crate) fn start_on(args: &ConsumeArgs, target: &Target) -> Result<ConsumerProcess> {
        let exe = std::env::current_exe().context("cannot find the benchmark's executable")?;
        let mut command = Command::new(exe);
        if let Some(url) = &target.url {
            command.env("AMQP_URL", url);
        }
        if target.tracing {
            command.env(crate::tracing_pipeline::CHILD_ENV, "1");
        }
        let mut child = command
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the consumer process")?;
        let stdout = child.stdout.take().context("no stdout from the consumer")?;
        let (tx, lines) = crossbeam_channel::unbounded();
        let reader = thread::Builder::new()
            .name("bench-consumer-stdout".to_owned())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        let mut process = ConsumerProcess {
            stdin: child.stdin.take(),
            child,
            lines,
            reader: Some(reader),
        };
        process.expect("READY", Duration::from_secs(30))?;
        Ok(process)
    }

    /// Tells a `--wait-go` consumer to start consuming.
    pub(crate) fn go(&mut self) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the consumer's stdin is closed")?;
        writeln!(stdin, "GO")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits up to `timeout` for the consumer's result, and for it to exit.
    pub(crate) fn finish(mut self, timeout: Duration) -> Result<ChildResult> {
        let line = self.expect("RESULT", timeout)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the consumer process exited with {status}");
        }
        ChildResult::parse(&line)
    }

    fn expect(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        loop {
            match self.lines.recv_timeout(timeout) {
                Ok(line) => match line.strip_prefix(prefix) {
                    Some(rest) => return Ok(rest.trim().to_owned()),
                    None => eprintln!("consumer: {line}"),
                },
                Err(RecvTimeoutError::Timeout) => bail!(
                    "the consumer process did not say {prefix} within {:.0} s",
                    timeout.as_secs_f64()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("the consumer process exited ({status}) before saying {prefix}");
                }
            }
        }
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
