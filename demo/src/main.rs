//! The `demo` binary: the original design's order flow through RabbitMQ (or in process) into
//! the demo's handlers, with a short summary. `demo --help` documents the flags.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use demo::{Progress, RunReport, Settings, Transport, Workload};
use pubsub::amqp::{
    exchange_from_env, url_from_env, AmqpConfig, RedactingLogger, AMQP_URL_ENV, RABBITMQ_URL_ENV,
};

/// Exit status when the broker cannot be reached or refuses the connection.
const EXIT_NO_BROKER: u8 = 2;

const AFTER_HELP: &str = "\
Environment:
  AMQP_URL           The broker (default amqp://guest:guest@localhost:5672/%2f). The demo
                     tries to connect twice, at most 3 s each, so it fails fast when no
                     broker answers.
  RABBITMQ_URL       The broker when AMQP_URL is not set (the seeds' name).
  RABBITMQ_EXCHANGE  The exchange when --exchange is not given (default events).
  DATABASE_URL       The event store's database when --database is not given.
  RUST_LOG           Log filter, off by default: RUST_LOG=info shows connections, topology
                     and retries; RUST_LOG=debug every handler's effect.

No broker? `just broker` (or `docker compose up -d`) starts one; `--in-process` needs none.

Exit status: 0 when every event was handled, 1 when one failed or the run failed, 2 when
the broker cannot be reached or refuses the connection (or the arguments are wrong).";

/// Publishes the original design's order flow (OrderCreated, OrderPaid, UserRegistered)
/// through RabbitMQ and shows which handlers ran for each event: send-email,
/// update-inventory, log-analytics.
#[derive(Debug, Parser)]
#[command(name = "demo", version, after_help = AFTER_HELP)]
struct Args {
    /// Dispatch in process through the handler registry (the MediatR-style mode): no broker
    /// needed.
    #[arg(long)]
    in_process: bool,

    /// Publish N order events instead of the flow (pipelined confirms), with a progress
    /// line, and print the publish and end-to-end rates.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,

    /// Exchange to publish to and bind the queue to [default: RABBITMQ_EXCHANGE, else
    /// events].
    #[arg(long, value_name = "NAME")]
    exchange: Option<String>,

    /// Queue the demo's subscriber consumes. Reused from run to run: what an interrupted
    /// run left in it is drained; it is deleted at the end unless --keep-queue.
    #[arg(long, value_name = "NAME", default_value = "demo")]
    queue: String,

    /// Deliveries the broker may send the subscriber ahead of its acks.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,

    /// Events per pipelined publish batch (with --count).
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,

    /// Give up when no event has been handled for this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Print the demo service's AsyncAPI 3 document (JSON: its exchange, the routing keys it
    /// subscribes to and publishes, the events' schemas) and exit; needs no broker.
    #[arg(long)]
    asyncapi: bool,

    /// Keep every event of the run in this database too: `sqlite:PATH`, or
    /// `postgres://user:password@host/db` (a demo built with `--features postgres`)
    /// [default: DATABASE_URL, else sqlite:target/pubsub-demo.db, for the order flow; none
    /// with --count unless given].
    #[arg(long, value_name = "URL")]
    database: Option<String>,

    /// Do not start the event store.
    #[arg(long, conflicts_with = "database")]
    no_store: bool,

    /// Leave the queue and its retry and dead-letter queues on the broker at the end, to
    /// look at them in the management UI (http://localhost:15672).
    #[arg(long)]
    keep_queue: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let exchange = match &args.exchange {
        Some(exchange) => exchange.clone(),
        None => match exchange_from_env() {
            Ok(exchange) => exchange,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_NO_BROKER);
            }
        },
    };

    if args.asyncapi {
        return print_asyncapi(&args, &exchange);
    }

    let workload = match args.count {
        Some(n) => Workload::Orders(n),
        None => Workload::OrderFlow,
    };
    let transport = if args.in_process {
        Transport::InProcess
    } else {
        match AmqpConfig::from_env() {
            // Fail fast when no broker answers: two attempts, at most 3 s each.
            Ok(config) => Transport::Broker(Box::new(
                config
                    .with_connection_attempts(2)
                    .with_retry_delay(Duration::from_millis(500))
                    .with_connection_timeout(Duration::from_secs(3)),
            )),
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("Set {AMQP_URL_ENV} (or {RABBITMQ_URL_ENV}) to a URL like amqp://user:password@host:5672/%2f, or unset it for a local broker.");
                return ExitCode::from(EXIT_NO_BROKER);
            }
        }
    };
    let store = match store_database(&args, workload) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: --database / DATABASE_URL: {e}");
            return ExitCode::from(EXIT_NO_BROKER);
        }
    };
    let settings = Settings {
        store,
        exchange,
        queue: args.queue,
        prefetch: args.prefetch,
        batch: usize::try_from(args.batch).unwrap_or(usize::MAX),
        timeout: Duration::from_secs(args.timeout),
        keep_queue: args.keep_queue,
    };

    let what = match workload {
        Workload::OrderFlow => "the order flow".to_owned(),
        Workload::Orders(n) => format!("{n} order events"),
    };
    // Printed once connected: an unreachable broker gets a single message.
    let intro = match &transport {
        Transport::InProcess => format!("Dispatching {what} in process (no broker)\n"),
        Transport::Broker(config) => format!(
            "Sending {what} through RabbitMQ at {config} (exchange `{}`, queue `{}`)\n",
            settings.exchange, settings.queue
        ),
    };

    let handlers = match workload.handlers() {
        Ok(handlers) => handlers,
        Err(e) => {
            eprintln!("error: cannot create the shop's database: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut line = ProgressLine::new(workload, intro);
    let result = demo::run(workload, &transport, &settings, &handlers, &mut |p| {
        line.update(p)
    });
    line.finish();
    match result {
        Ok(report) => summary(&report),
        Err(e) => failure(&e, &transport),
    }
}

/// Prints the AsyncAPI document of the service the other flags describe.
fn print_asyncapi(args: &Args, exchange: &str) -> ExitCode {
    let settings = Settings {
        exchange: exchange.to_owned(),
        queue: args.queue.clone(),
        ..Settings::default()
    };
    match demo::asyncapi(&settings) {
        Ok(document) => {
            println!("{document}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The event store's database: `--database`, else (for the order flow) `DATABASE_URL`, else
/// the demo's SQLite file; none with `--no-store`, in process, or with `--count` unless
/// `--database` is given.
fn store_database(
    args: &Args,
    workload: Workload,
) -> Result<Option<pubsub_store::Database>, pubsub_store::Error> {
    if args.no_store || args.in_process {
        return Ok(None);
    }
    match (&args.database, workload) {
        (Some(url), _) => pubsub_store::Database::parse(url).map(Some),
        (None, Workload::OrderFlow) => match std::env::var(pubsub_store::DATABASE_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => pubsub_store::Database::parse(&url).map(Some),
            _ => pubsub_store::Database::parse(demo::DEMO_DATABASE).map(Some),
        },
        (None, Workload::Orders(_)) => Ok(None),
    }
}

/// Logs through `env_logger` (`RUST_LOG`, off by default), with the password blanked out of
/// the AMQP client's handshake records.
fn init_logging() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off")).build();
    let max_level = logger.filter();
    if log::set_boxed_logger(Box::new(RedactingLogger::new(logger))).is_ok() {
        log::set_max_level(max_level);
    }
}

/// Prints the summary; success when every event was handled.
fn summary(report: &RunReport) -> ExitCode {
    print!("{report}");
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints one clear message for a failed run.
fn failure(error: &anyhow::Error, transport: &Transport) -> ExitCode {
    // The transport error, where it sits in the chain or inside a failed publish.
    let amqp = error.chain().find_map(|e| {
        e.downcast_ref::<pubsub::amqp::Error>()
            .or_else(|| e.downcast_ref::<pubsub::Error>().and_then(bus_amqp))
            .or_else(|| {
                e.downcast_ref::<pubsub::PublishError>()
                    .and_then(|p| bus_amqp(p.error()))
            })
    });
    let Some(amqp) = amqp.filter(|e| is_connection_problem(e)) else {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    };
    let url = match transport {
        Transport::Broker(config) => config.redacted_url(),
        Transport::InProcess => String::new(),
    };
    // The variable the URL came from, as `AmqpConfig::from_env` chose it.
    let variable = url_from_env().ok().flatten().map(|(name, _)| name);
    let source = match variable {
        Some(name) => format!("from {name}"),
        None => format!("the default; set {AMQP_URL_ENV} or {RABBITMQ_URL_ENV} for another broker"),
    };
    let variable = variable.unwrap_or(AMQP_URL_ENV);
    eprintln!("error: {amqp}");
    eprintln!("The demo tried {url} ({source}).");
    match amqp {
        pubsub::amqp::Error::AuthenticationFailed { .. }
        | pubsub::amqp::Error::VhostNotAllowed { .. } => {
            eprintln!("Check the user, password and vhost in {variable}.");
        }
        _ => eprintln!(
            "Start a broker with `just broker` (or `docker compose up -d`), or run without one: `just demo --in-process`."
        ),
    }
    ExitCode::from(EXIT_NO_BROKER)
}

/// The transport error inside a bus error, if there is one.
fn bus_amqp(error: &pubsub::Error) -> Option<&pubsub::amqp::Error> {
    match error {
        pubsub::Error::Amqp(amqp) => Some(amqp),
        pubsub::Error::Publish(publish) => publish.as_amqp(),
        pubsub::Error::Subscriber(pubsub::subscriber::Error::Amqp(amqp)) => Some(amqp),
        _ => None,
    }
}

/// Whether the run failed because the broker cannot be reached, or refused the connection.
fn is_connection_problem(error: &pubsub::amqp::Error) -> bool {
    matches!(
        error,
        pubsub::amqp::Error::Unreachable { .. }
            | pubsub::amqp::Error::AuthenticationFailed { .. }
            | pubsub::amqp::Error::VhostNotAllowed { .. }
            | pubsub::amqp::Error::Tls { .. }
            | pubsub::amqp::Error::InvalidConfig { .. }
    )
}

/// The progress line of a `--count` run: rewritten in place on a terminal (at most ten times
/// a second), a single final line otherwise; nothing for the three-event flow.
struct ProgressLine {
    /// Printed before the first progress.
    intro: Option<String>,
    enabled: bool,
    terminal: bool,
    last: Option<Progress>,
    drawn: Option<Instant>,
}

impl ProgressLine {
    fn new(workload: Workload, intro: String) -> Self {
        ProgressLine {
            intro: Some(intro),
            enabled: matches!(workload, Workload::Orders(_)),
            terminal: std::io::stdout().is_terminal(),
            last: None,
            drawn: None,
        }
    }

    fn update(&mut self, progress: Progress) {
        if let Some(intro) = self.intro.take() {
            println!("{intro}");
        }
        self.last = Some(progress);
        if !self.enabled || !self.terminal {
            return;
        }
        let done = progress.handled == progress.total;
        if done
            || self
                .drawn
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            print!("\r{progress}");
            let _ = std::io::stdout().flush();
            self.drawn = Some(Instant::now());
        }
    }

    /// Ends the line with the last progress.
    fn finish(&self) {
        if let (true, Some(progress)) = (self.enabled, self.last) {
            if self.terminal {
                println!("\r{progress}\n");
            } else {
                println!("{progress}\n");
            }
        }
    }
}
