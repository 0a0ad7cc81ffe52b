//! The whole benchmark in order: micro-benchmarks, the end-to-end matrix, latency,
//! `publish_all` against single publish, the `EventBus` rows, then the targets.

use anyhow::Result;
use pubsub_amqp::AmqpConfig;

use crate::admin::Admin;
use crate::cli::Options;
use crate::e2e::matrix;
use crate::latency::{latency, publish_speedup};
use crate::targets::{bus_targets, targets};
use crate::{asynchronous, bus, micro};

/// Runs the whole benchmark: micro-benchmarks, matrix, latency, publish_all, targets.
pub(crate) fn run_all(config: &AmqpConfig, options: &Options) -> Result<()> {
    let mut admin = Admin::open(config)?;
    println!(
        "# pubsub-bench{} against {}",
        if options.quick { " --quick" } else { "" },
        config.address()
    );
    let micro = if options.skip_micro {
        None
    } else {
        eprintln!("micro-benchmarks...");
        Some(micro::run(options.quick)?)
    };
    let summaries = if options.skip_e2e {
        Vec::new()
    } else {
        matrix(&mut admin, options)?
    };
    let latencies = if options.skip_latency {
        Vec::new()
    } else {
        latency(&mut admin, options)?
    };
    let speedup = if options.skip_publish {
        None
    } else {
        Some(publish_speedup(&mut admin, options)?)
    };
    let bus = if options.skip_bus {
        None
    } else {
        let bus = bus::run(&mut admin, options)?;
        asynchronous::run(&mut admin, options)?;
        Some(bus)
    };
    if !options.skip_store {
        crate::store::run(&mut admin, options)?;
    }
    if !options.skip_outbox {
        crate::outbox::run(&mut admin, options)?;
    }
    targets(micro.as_ref(), &summaries, speedup, &latencies);
    bus_targets(bus.as_ref(), &latencies);
    admin.close()
}
