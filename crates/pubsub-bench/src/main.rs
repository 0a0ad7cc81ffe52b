//! This crate provides `pubsub-bench`, the benchmark of the pubsub workspace: what the library
//! costs over the AMQP client beneath it, measured side by side against a real RabbitMQ.
//!
//! # Overview
//!
//! One run (`just bench`, under 3 minutes; `just bench --quick` for CI) measures, in this
//! order:
//!
//! 1. micro-benchmarks of the pure parts (`micro`): `HandlerRegistry::find_handlers` with
//!    10, 1,000 and 10,000 patterns, event encode and decode, in-process dispatch;
//! 2. end-to-end throughput (`e2e`): a publisher and a consumer running at the same time,
//!    each with its own connection, for the raw amiquip loop (`raw`) and for the library
//!    (`library`: `EventPublisher`, `EventSubscriber`, `HandlerRegistry`), over several
//!    prefetch and confirm settings, interleaved round by round (A B A B ...), reported as
//!    medians with min-max and as a ratio to the raw loop of the same round;
//! 3. publish-to-handler latency (p50, p99) at a fixed moderate rate;
//! 4. `publish_all` against single confirmed `publish` calls;
//! 5. the `EventBus` rows (`bus`): one publisher handle shared by 8 threads against one
//!    thread's `publish_all` and against a `Mutex<EventPublisher>`, `workers(16)` against
//!    `workers(1)` with a handler sleeping 5 ms, `workers(2)` against `workers(1)` with
//!    trivial handlers, and the memory of an idle bus with 16 workers (a child process,
//!    `pubsub-bench idle-bus ...`). The latency measurement has a bus row too.
//!
//! Rates on a machine shared with builds are noisy, so each run also records what the client
//! spent: CPU time per event of the publishing and of the consuming process, and acks sent per
//! event (the consumer's bytes sent to the broker, from the kernel's TCP counters).
//!
//! The full run ends with the event store's rows and the exactly-once rows (`outbox`: the
//! outbox's throughput and latency, the inbox handler's rate; `just bench --outbox` alone).
//!
//! `just bench --tasks` measures the task queue instead (`tasks`): tasks per second through a
//! `TaskWorker` with a trivial task function, on SQLite and on PostgreSQL, beside the same
//! messages through an `EventSubscriber` without a store.
//!
//! `just bench --memory` runs the memory check instead (`memory`): a million events through
//! one consumer, and a consumer started on a deep queue.
//!
//! Both sides run the same `workload`: ~280-byte persistent JSON events on a durable topic
//! exchange and queue, routing keys cycling over `order.created`, `order.paid` and
//! `user.registered`, and a consumer that parses each body and dispatches it to three patterns
//! (`order.*`, `*.created`, `#`) whose handlers count.
//!
//! The consumer runs in a child process (`pubsub-bench consume ...`, see `consumer`) so that
//! its resident memory is its own: the publisher's buffers would otherwise be counted with it,
//! and a process's peak RSS (`VmHWM`) covers its whole life, so a fresh process per run makes
//! it the peak of that run.
//!
//! # amiquip
//!
//! This is the one crate besides `pubsub-amqp` that imports `amiquip`, and that is deliberate:
//! the baseline must be the client itself, with no crate of ours in between, so that the
//! ratio measures what the library adds. The library side uses only the public APIs of our
//! crates.
//!
//! # Example
//!
//! ```text
//! just bench                 # the full run: table, JSON lines, targets
//! just bench --quick         # a CI-sized run (~20-30 s)
//! just bench --only p1-,confirm100   # only the configurations whose name contains one of these
//! just bench --memory        # 1,000,000 events: does the consumer's memory stay flat?
//! ```

mod admin;
mod asynchronous;
mod bus;
mod cli;
mod cluster;
mod consumer;
mod e2e;
mod latency;
mod library;
mod memory;
mod micro;
mod outbox;
mod raw;
mod report;
mod sides;
mod store;
mod suite;
mod targets;
mod tasks;
mod traced;
mod tracing_pipeline;
mod workload;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::Command;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubsub-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    match cli::parse(std::env::args().skip(1))? {
        Command::Help => {
            print!("{}", cli::HELP);
            Ok(())
        }
        Command::Consume(args) => consumer::run_child(&args),
        Command::IdleBus(args) => match args.asynchronous {
            Some(in_flight) => asynchronous::run_idle(&args, in_flight),
            None => bus::run_idle(&args),
        },
        Command::Bench(options) => {
            let config = admin::broker_config()?;
            if options.memory {
                memory::run(&config, &options)
            } else if options.tasks {
                tasks::run(&config, &options)
            } else if options.cluster {
                cluster::run(&options)
            } else if options.store {
                let mut admin = admin::Admin::open(&config)?;
                store::run(&mut admin, &options)?;
                admin.close()
            } else if options.outbox {
                let mut admin = admin::Admin::open(&config)?;
                outbox::run(&mut admin, &options)?;
                admin.close()
            } else if options.tracing {
                traced::run(&options)
            } else {
                suite::run_all(&config, &options)
            }
        }
    }
}
