//! The command line: the benchmark's options, and the internal `consume` command that runs a
//! consumer in a child process.

use anyhow::{bail, Context, Result};

/// `--help`.
pub(crate) const HELP: &str = "\
pubsub-bench: throughput, latency and memory of the pubsub crates against the raw amiquip client

USAGE:
    just bench [OPTIONS]          (cargo run --release -p pubsub-bench -- [OPTIONS])

OPTIONS:
    --quick               a CI-sized run (~30 s): fewer messages, shorter micro-benchmarks
    --rounds <N>          interleaved rounds of the end-to-end matrix (default 5; 3 with --quick)
    --scale <F>           multiply every end-to-end message count by F (e.g. 0.5 or 2)
    --only <TEXT,..>      run only the end-to-end configurations whose name contains one of
                          the comma-separated TEXTs (with --tasks: only the task rows so
                          named, beside the events rows at their prefetch)
    --skip-micro          skip the micro-benchmarks (find_handlers, encode, decode)
    --skip-e2e            skip the end-to-end matrix
    --skip-latency        skip the publish-to-handler latency measurement
    --skip-publish        skip publish_all against single confirmed publish calls
    --cluster             instead of the benchmark: the library's default configuration on the
                          3-node cluster of `just cluster` (PUBSUB_CLUSTER_URL) with quorum
                          queues, beside one node (AMQP_URL) with classic queues, interleaved
    --tracing             instead of the benchmark: the library's default configuration with
                          tracing off and on (a build with `--features otel`: spans through
                          OpenTelemetry to a batch exporter that discards them), interleaved
    --skip-bus            skip the EventBus rows (shared publisher handle, workers, idle
                          memory; the bus's latency row goes with --skip-latency)
    --store               only the event store rows: events stored per second through the
                          bus into SQLite and PostgreSQL (PUBSUB_TEST_DATABASE_URL, default the
                          local `test` database), each against the same run without a store,
                          and plain batched INSERTs of the same rows
    --skip-store          skip the event store rows
    --outbox              only the exactly-once rows, on SQLite and PostgreSQL: the outbox's
                          throughput (commit to confirm) against publish_all through the bus,
                          its latency (commit to handler, p50 and p99 at 500/s) against a
                          direct publish, and an inbox handler writing one row per event
                          against the event store
    --skip-outbox         skip the exactly-once rows
    --tasks               instead of the benchmark: the task queue's rate (pubsub-tasks), tasks
                          per second with a trivial task function through a TaskWorker on
                          SQLite and on PostgreSQL (PUBSUB_TEST_DATABASE_URL, else the local
                          `test` database), beside the same messages through an
                          EventSubscriber with a trivial handler and no store; and
                          TaskQueue::submit against EventPublisher::publish, one confirm each
    --memory              run the memory check instead of the benchmark: --memory-events
                          events through one consumer (RSS sampled along the way), then a
                          consumer started on a queue pre-filled --deep messages deep
    --memory-events <N>   events for --memory (default 1000000; 100000 with --quick)
    --deep <N>            depth of the pre-filled queue for --memory (default 200000;
                          20000 with --quick)
    -h, --help            print this help

ENVIRONMENT:
    AMQP_URL              the broker (default amqp://guest:guest@localhost:5672/%2f)
    PUBSUB_BENCH_TRACE_RATIO
                          with --tracing: the share of traces sampled, 0 to 1 (default 1)

OUTPUT:
    stdout: the results table, one JSON line per end-to-end configuration
    ({\"config\":..,\"publish_msgs_per_s\":..,\"e2e_msgs_per_s\":..,\"ratio_vs_raw\":..,
    \"consumer_rss_kb\":..}), one JSON line per other measurement (with a \"bench\" key),
    and which targets are met. stderr: progress.

    The consumer of each run is a child process (`pubsub-bench consume ...`), so that
    consumer_rss_kb is the consumer's own peak resident memory (VmHWM).

    Besides the rates, each run records the CPU time per event of the publishing and of the
    consuming process (all threads, from /proc/<pid>/stat: less sensitive to a busy machine
    than the rates), and the acks the consumer sent per event (its bytes sent to the broker,
    from `ss -ti`, over the 21 bytes of a basic.ack frame).

EXIT STATUS:
    0 when every measurement ran (whether or not the targets are met), 1 on an error such as
    an unreachable broker.
";

/// What to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Print the help.
    Help,
    /// Run the benchmark (or the memory check).
    Bench(Options),
    /// Run one consumer, in a child process of the benchmark.
    Consume(ConsumeArgs),
    /// Start an idle `EventBus` and print its memory, in a child process of the benchmark.
    IdleBus(IdleArgs),
}

/// The benchmark's options.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// CI-sized run.
    pub(crate) quick: bool,
    /// Interleaved rounds of the end-to-end matrix, if given.
    pub(crate) rounds: Option<usize>,
    /// Multiplies the end-to-end message counts.
    pub(crate) scale: f64,
    /// Only the configurations whose name contains this.
    pub(crate) only: Option<String>,
    /// Skip the micro-benchmarks.
    pub(crate) skip_micro: bool,
    /// Skip the end-to-end matrix.
    pub(crate) skip_e2e: bool,
    /// Skip the latency measurement.
    pub(crate) skip_latency: bool,
    /// Skip publish_all against single publish.
    pub(crate) skip_publish: bool,
    /// Skip the EventBus rows.
    pub(crate) skip_bus: bool,
    /// Skip the event store rows.
    pub(crate) skip_store: bool,
    /// Run only the event store rows.
    pub(crate) store: bool,
    /// Skip the exactly-once rows.
    pub(crate) skip_outbox: bool,
    /// Run only the exactly-once rows.
    pub(crate) outbox: bool,
    /// Compare the 3-node cluster with quorum queues against one node with classic queues,
    /// instead of the benchmark.
    pub(crate) cluster: bool,
    /// Measure the task queue instead.
    pub(crate) tasks: bool,
    /// Compare the default configuration with tracing on against tracing off, instead of
    /// the benchmark.
    pub(crate) tracing: bool,
    /// Run the memory check instead.
    pub(crate) memory: bool,
    /// Events for the memory check.
    pub(crate) memory_events: Option<u64>,
    /// Depth of the pre-filled queue for the memory check.
    pub(crate) deep: Option<u64>,
}

/// Which implementation a consumer or publisher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The loop written directly on amiquip.
    Raw,
    /// `EventPublisher`, `EventSubscriber` and `HandlerRegistry`.
    Lib,
    /// The `EventBus` facade: its publisher handle and its workers.
    Bus,
    /// The `AsyncEventBus`: the same publisher handle, async handlers as tokio tasks.
    AsyncBus,
}

impl Side {
    /// `raw` or `lib`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Raw => "raw",
            Side::Lib => "lib",
            Side::Bus => "bus",
            Side::AsyncBus => "async-bus",
        }
    }
}

/// The arguments of the internal `idle-bus` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdleArgs {
    /// The exchange to bind to.
    pub(crate) exchange: String,
    /// The bus's service name (its queue).
    pub(crate) queue: String,
    /// Its workers.
    pub(crate) workers: usize,
    /// An `AsyncEventBus` instead of an `EventBus`, holding this many deliveries in its
    /// handlers (each waits until the bus stops), or none: idle.
    pub(crate) asynchronous: Option<u64>,
}

impl IdleArgs {
    /// The command-line arguments that reproduce these.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "idle-bus".to_owned(),
            "--exchange".to_owned(),
            self.exchange.clone(),
            "--queue".to_owned(),
            self.queue.clone(),
            "--workers".to_owned(),
            self.workers.to_string(),
        ];
        if let Some(in_flight) = self.asynchronous {
            args.extend(["--async-in-flight".to_owned(), in_flight.to_string()]);
        }
        args
    }
}

/// The arguments of the internal `consume` command.
#[derive(Debug, Clone)]
pub(crate) struct ConsumeArgs {
    /// Raw amiquip loop or library subscriber.
    pub(crate) side: Side,
    /// The exchange to bind to.
    pub(crate) exchange: String,
    /// The queue to consume.
    pub(crate) queue: String,
    /// The prefetch; `None` leaves the subscriber's default.
    pub(crate) prefetch: Option<u16>,
    /// Events to handle before reporting.
    pub(crate) count: u64,
    /// Record publish-to-handler latencies.
    pub(crate) latency: bool,
    /// Handled-event counts at which to sample RSS.
    pub(crate) rss_at: Vec<u64>,
    /// Declare, say READY, then wait for GO on stdin before consuming.
    pub(crate) wait_go: bool,
    /// Make the subscriber's queues quorum queues.
    pub(crate) quorum: bool,
}

impl Options {
    /// Interleaved rounds of the end-to-end matrix: as given, else 5 (3 with `--quick`).
    pub(crate) fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick { 3 } else { 5 })
    }
}

impl ConsumeArgs {
    /// The command-line arguments that reproduce these.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "consume".to_owned(),
            "--side".to_owned(),
            self.side.as_str().to_owned(),
            "--exchange".to_owned(),
            self.exchange.clone(),
            "--queue".to_owned(),
            self.queue.clone(),
            "--count".to_owned(),
            self.count.to_string(),
        ];
        if let Some(p) = self.prefetch {
            args.extend(["--prefetch".to_owned(), p.to_string()]);
        }
        if self.latency {
            args.push("--latency".to_owned());
        }
        if !self.rss_at.is_empty() {
            let points: Vec<String> = self.rss_at.iter().map(u64::to_string).collect();
            args.extend(["--rss-at".to_owned(), points.join(",")]);
        }
        if self.wait_go {
            args.push("--wait-go".to_owned());
        }
        if self.quorum {
            args.push("--quorum".to_owned());
        }
        args
    }
}

/// Parses the command line (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("consume") {
        args.next();
        return parse_consume(args).map(Command::Consume);
    }
    if args.peek().map(String::as_str) == Some("idle-bus") {
        args.next();
        return parse_idle(args).map(Command::IdleBus);
    }
    let mut options = Options {
        quick: false,
        rounds: None,
        scale: 1.0,
        only: None,
        skip_micro: false,
        skip_e2e: false,
        skip_latency: false,
        skip_publish: false,
        skip_bus: false,
        skip_store: false,
        skip_outbox: false,
        outbox: false,
        store: false,
        cluster: false,
        tasks: false,
        tracing: false,
        memory: false,
        memory_events: None,
        deep: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value (see --help)"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" => options.quick = true,
            "--rounds" => {
                let rounds = number(&value("--rounds")?, "--rounds")?;
                if rounds == 0 {
                    bail!("--rounds must be at least 1");
                }
                options.rounds = Some(rounds);
            }
            "--scale" => {
                let text = value("--scale")?;
                options.scale = text
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .with_context(|| format!("--scale wants a positive number, not {text:?}"))?;
            }
            "--only" => options.only = Some(value("--only")?),
            "--skip-micro" => options.skip_micro = true,
            "--skip-e2e" => options.skip_e2e = true,
            "--skip-latency" => options.skip_latency = true,
            "--skip-publish" => options.skip_publish = true,
            "--skip-bus" => options.skip_bus = true,
            "--skip-store" => options.skip_store = true,
            "--skip-outbox" => options.skip_outbox = true,
            "--outbox" => options.outbox = true,
            "--store" => options.store = true,
            "--cluster" => options.cluster = true,
            "--tracing" => options.tracing = true,
            "--memory" => options.memory = true,
            "--tasks" => options.tasks = true,
            "--memory-events" => {
                options.memory_events = Some(number(&value("--memory-events")?, "--memory-events")?)
            }
            "--deep" => options.deep = Some(number(&value("--deep")?, "--deep")?),
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(Command::Bench(options))
}

fn parse_consume(mut args: impl Iterator<Item = String>) -> Result<ConsumeArgs> {
    let mut side = None;
    let mut exchange = None;
    let mut queue = None;
    let mut prefetch = None;
    let mut count = None;
    let mut latency = false;
    let mut rss_at = Vec::new();
    let mut wait_go = false;
    let mut quorum = false;
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("consume: {arg} needs a value"))
        };
        match arg.as_str() {
            "--side" => {
                side = Some(match value()?.as_str() {
                    "raw" => Side::Raw,
                    "lib" => Side::Lib,
                    "bus" => Side::Bus,
                    "async-bus" => Side::AsyncBus,
                    other => bail!("consume: --side is raw, lib, bus or async-bus, not {other:?}"),
                })
            }
            "--exchange" => exchange = Some(value()?),
            "--queue" => queue = Some(value()?),
            "--prefetch" => prefetch = Some(number(&value()?, "--prefetch")?),
            "--count" => count = Some(number(&value()?, "--count")?),
            "--latency" => latency = true,
            "--rss-at" => {
                for point in value()?.split(',') {
                    rss_at.push(number(point, "--rss-at")?);
                }
                rss_at.sort_unstable();
            }
            "--wait-go" => wait_go = true,
            "--quorum" => quorum = true,
            other => bail!("consume: unknown argument {other:?}"),
        }
    }
    Ok(ConsumeArgs {
        side: side.context("consume: --side is required")?,
        exchange: exchange.context("consume: --exchange is required")?,
        queue: queue.context("consume: --queue is required")?,
        prefetch,
        count: count.context("consume: --count is required")?,
        latency,
        rss_at,
        wait_go,
        quorum,
    })
}

fn parse_idle(mut args: impl Iterator<Item = String>) -> Result<IdleArgs> {
    let mut exchange = None;
    let mut queue = None;
    let mut workers = None;
    let mut asynchronous = None;
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("idle-bus: {arg} needs a value"))
        };
        match arg.as_str() {
            "--exchange" => exchange = Some(value()?),
            "--queue" => queue = Some(value()?),
            "--workers" => workers = Some(number(&value()?, "--workers")?),
            "--async-in-flight" => {
                asynchronous = Some(number(&value()?, "--async-in-flight")?);
            }
            other => bail!("idle-bus: unknown argument {other:?}"),
        }
    }
    Ok(IdleArgs {
        exchange: exchange.context("idle-bus: --exchange is required")?,
        queue: queue.context("idle-bus: --queue is required")?,
        workers: workers.context("idle-bus: --workers is required")?,
        asynchronous,
    })
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T> {
    text.trim()
        .replace('_', "")
        .parse()
        .ok()
        .with_context(|| format!("{name} wants a whole number, not {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn options_parse() {
        let Ok(Command::Bench(o)) = parse_args(&["--quick", "--rounds", "4", "--only", "lib"])
        else {
            panic!("not a bench command");
        };
        assert!(o.quick);
        assert_eq!(o.rounds(), 4);
        assert_eq!(o.only.as_deref(), Some("lib"));
        assert!(matches!(parse_args(&["--help"]), Ok(Command::Help)));
        assert!(parse_args(&["--rounds", "0"]).is_err());
        assert!(parse_args(&["--bogus"]).is_err());
        assert!(parse_args(&["--scale", "-1"]).is_err());
    }

    #[test]
    fn consume_args_round_trip() {
        let args = ConsumeArgs {
            side: Side::Lib,
            exchange: "x".to_owned(),
            queue: "q".to_owned(),
            prefetch: Some(5),
            count: 1_000,
            latency: true,
            rss_at: vec![10, 20],
            wait_go: true,
            quorum: false,
        };
        let Ok(Command::Consume(back)) = parse(args.to_args()) else {
            panic!("not a consume command");
        };
        assert_eq!(back.side, Side::Lib);
        assert_eq!(back.prefetch, Some(5));
        assert_eq!(back.count, 1_000);
        assert_eq!(back.rss_at, [10, 20]);
        assert!(back.latency && back.wait_go);
    }

    #[test]
    fn idle_args_round_trip() {
        let args = IdleArgs {
            exchange: "x".to_owned(),
            queue: "q".to_owned(),
            workers: 16,
            asynchronous: None,
        };
        for args in [
            args.clone(),
            IdleArgs {
                asynchronous: Some(10_000),
                ..args
            },
        ] {
            let Ok(Command::IdleBus(back)) = parse(args.to_args()) else {
                panic!("not an idle-bus command");
            };
            assert_eq!(back, args);
        }
    }
}
