//! The fault suite of the pubsub workspace (`just test-faults`).
//!
//! Each scenario runs against the real broker and prints one line of figures: events sent,
//! confirmed by the broker, consumed (unique), lost (confirmed but never handled),
//! duplicated, and the time to recover. A scenario fails if a confirmed event is lost or one
//! of its own checks fails; the suite exits non-zero if any scenario fails.
//!
//! Broker-wide state the scenarios change (the application stopped, the memory watermark)
//! is put back afterwards, even when a scenario fails or panics.

mod cluster;
mod harness;
mod outbox_service;
mod scenarios;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Parser;
use pubsub_amqp::{AmqpConfig, RedactingLogger};

use crate::harness::{BrokerGuard, Line};
use crate::scenarios::{Ctx, ALL};

/// Fault scenarios against the broker at AMQP_URL (RabbitMQ on localhost by default).
/// Needs `rabbitmqctl` for the broker's own faults.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  just test-faults\n  just test-faults --only proxy-cut --only poison\n  RUST_LOG=info just test-faults --list\n  RUST_LOG=debug PUBSUB_FAULTS_SERVICE_LOG=debug,amiquip=warn just test-faults --only kill-after-publish   # the spawned services' own logs"
)]
struct Args {
    /// Run only this scenario (repeatable).
    #[arg(long, value_name = "SCENARIO")]
    only: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Run the cluster scenarios instead, on the 3-node cluster of `just cluster`
    /// (or PUBSUB_CLUSTER_URL).
    #[arg(long)]
    cluster: bool,
    /// Events published in the connection-killing scenario.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
}

fn main() -> ExitCode {
    // The exactly-once scenarios' service runs as a child process of the suite.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == outbox_service::MODE) {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
        return outbox_service::main(&argv[1..]);
    }
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).build();
    let level = logger.filter();
    if log::set_boxed_logger(Box::new(RedactingLogger::new(logger))).is_ok() {
        log::set_max_level(level);
    }
    // Handler panics are part of the scenarios: one log line each, not a backtrace.
    std::panic::set_hook(Box::new(|info| log::debug!("panic: {info}")));
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool> {
    let all = if args.cluster { cluster::CLUSTER } else { ALL };
    if args.list {
        for scenario in all {
            println!("{:<20} {}", scenario.name, scenario.about);
        }
        return Ok(true);
    }
    for name in &args.only {
        if !all.iter().any(|s| s.name == name) {
            return Err(anyhow!("unknown scenario {name:?}; `--list` shows them"));
        }
    }
    if args.cluster {
        let config = cluster::config()?;
        pubsub_amqp::Connection::open(&config)
            .map_err(|e| anyhow!("{e}\nstart the cluster with `just cluster`"))?
            .close()?;
    }
    let broker = AmqpConfig::from_env()?;
    pubsub_amqp::Connection::open(&broker.clone().with_connection_attempts(1))
        .map_err(|e| anyhow!("{e}\nstart a broker with `just broker`"))?
        .close()?;
    let ctx = Ctx {
        broker,
        events: args.events,
        guard: BrokerGuard::new()?,
    };
    // Killed by Ctrl-C or a timeout: put the broker back before dying.
    let watermark = ctx.guard.watermark().to_owned();
    let consumer_timeout = ctx.guard.consumer_timeout().map(str::to_owned);
    let _ = ctrlc::set_handler(move || {
        eprintln!("interrupted: restoring the broker");
        BrokerGuard::restore_to(&watermark, consumer_timeout.as_deref());
        std::process::exit(130);
    });
    let started = Instant::now();
    let mut passed = 0;
    let mut failed = 0;
    for scenario in all
        .iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s.name))
    {
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (scenario.run)(&ctx)));
        ctx.guard.restore();
        scenarios::restore_postgres();
        if args.cluster {
            cluster::restore();
        }
        let line = match outcome {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => failed_line(scenario.name, format!("{e:#}")),
            Err(_) => failed_line(scenario.name, "the scenario panicked".to_owned()),
        };
        println!("{line}  ({:.1}s)", t.elapsed().as_secs_f64());
        if line.passed() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!(
        "fault suite: {passed} passed, {failed} failed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(failed == 0)
}

fn failed_line(name: &'static str, why: String) -> Line {
    let mut line = Line::new(name);
    line.check(false, why);
    line
}
