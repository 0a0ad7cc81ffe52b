//! What the two sides (the raw amiquip loop in `raw`, the library in `library`) share with the
//! harness: how a publisher is paced and what it measured, and the [`Gate`] where a consumer
//! process tells the harness it is ready. The sides and the consumer process import this
//! module; it imports neither.

use std::cell::Cell;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::workload::{bytes_sent_to_broker, cpu_ticks, status_kb};

/// Publishing `per_tick` events every `tick`, for the latency measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Events per tick.
    pub(crate) per_tick: u64,
    /// The tick.
    pub(crate) tick: Duration,
}

impl Pace {
    /// Sleeps until the tick of event `i` (which must start a tick).
    pub(crate) fn wait(&self, start: Instant, i: u64) {
        let ticks = u32::try_from(i / self.per_tick.max(1)).unwrap_or(u32::MAX);
        let due = start + self.tick * ticks;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// What a publisher measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published {
    /// [`crate::workload::wall_ns`] just before the first publish.
    pub(crate) start_ns: u64,
    /// From the first publish to the last one returning (with its confirm, if any).
    pub(crate) seconds: f64,
}

/// Where a consumer tells the benchmark it is ready, and waits for the go when asked to.
#[derive(Debug)]
pub(crate) struct Gate {
    wait_go: bool,
    /// VmRSS when consuming started.
    pub(crate) rss_start_kb: Cell<u64>,
    /// The process's CPU ticks when consuming started.
    pub(crate) cpu_start: Cell<u64>,
    /// Bytes sent to the broker when consuming started (unknown without `ss`).
    pub(crate) sent_start: Cell<Option<u64>>,
}

impl Gate {
    pub(crate) fn new(wait_go: bool) -> Self {
        Gate {
            wait_go,
            rss_start_kb: Cell::new(0),
            cpu_start: Cell::new(0),
            sent_start: Cell::new(None),
        }
    }

    /// The topology is declared.
    pub(crate) fn declared(&self) -> Result<()> {
        if self.wait_go {
            say("READY")?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if line.trim() != "GO" {
                bail!("consume: expected GO on stdin, got {:?}", line.trim());
            }
        }
        Ok(())
    }

    /// The consumer is registered with the broker: deliveries may start.
    pub(crate) fn consuming(&self) -> Result<()> {
        self.rss_start_kb.set(status_kb("VmRSS").unwrap_or(0));
        self.cpu_start.set(cpu_ticks().unwrap_or(0));
        self.sent_start.set(bytes_sent_to_broker());
        if !self.wait_go {
            say("READY")?;
        }
        Ok(())
    }
}

/// Writes `line` to standard output at once: the consumer process's side of the protocol.
pub(crate) fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Where a run goes besides its broker: the consumer's broker URL when it is not `AMQP_URL`,
/// whether its queues are quorum queues, and whether both sides trace (`--tracing`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub(crate) url: Option<String>,
    pub(crate) quorum: bool,
    pub(crate) tracing: bool,
}
