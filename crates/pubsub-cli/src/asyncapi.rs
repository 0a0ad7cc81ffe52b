//! `pubsub asyncapi`: the AsyncAPI 3 document of a service described by flags (its name,
//! exchange, queue, the patterns it subscribes to and the routing keys it publishes), for a
//! service whose code cannot describe itself (a Python one) or to sketch a new one. A Rust
//! service prints a richer document, with its events' schemas, from its own `EventBus`
//! (`bus.asyncapi()`). Needs no broker.

use clap::Args;

use crate::console::Console;
use crate::error::{Result, UsageError};

/// The examples under `pubsub asyncapi --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub asyncapi billing --subscribe 'order.*' --publish invoice.sent
  pubsub asyncapi audit --subscribe '#' --exchange shop > audit.asyncapi.json
  pubsub asyncapi audit --subscribe '#' --server production=amqps://rabbit.internal:5671
  pubsub asyncapi analytics --queue analytics-v2 --subscribe 'user.#' --subscribe order.paid";

/// Arguments of `pubsub asyncapi`.
#[derive(Debug, Args)]
pub struct AsyncApiArgs {
    /// The service's name (the document's title, and its queue's name by default).
    #[arg(value_name = "SERVICE")]
    pub service: String,

    /// The exchange the service publishes to and binds its queue to.
    #[arg(long, env = pubsub_amqp::RABBITMQ_EXCHANGE_ENV, default_value = pubsub_amqp::DEFAULT_EXCHANGE)]
    pub exchange: String,

    /// The queue the service consumes (by default the service's name).
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,

    /// A pattern the service subscribes to, as in handler subscriptions (repeatable).
    #[arg(long = "subscribe", value_name = "PATTERN")]
    pub subscribe: Vec<String>,

    /// A routing key the service publishes, `domain.action` or `domain.action.vN`
    /// (repeatable).
    #[arg(long = "publish", value_name = "KEY")]
    pub publish: Vec<String>,

    /// A broker the service runs against, `NAME=HOST[:PORT]` or `NAME=amqps://HOST[:PORT]`
    /// (repeatable; no credentials).
    #[arg(long = "server", value_name = "NAME=HOST")]
    pub servers: Vec<String>,

    /// The virtual host of the exchange.
    #[arg(long, default_value = "/")]
    pub vhost: String,

    /// The version of the service's API (`info.version`).
    #[arg(long = "api-version", value_name = "VERSION", default_value = "1.0.0")]
    pub api_version: String,
}

/// Prints the document (pretty JSON) on stdout.
pub(crate) fn run(args: AsyncApiArgs, console: &mut Console<'_>) -> Result<()> {
    let mut document = pubsub_asyncapi::AsyncApi::new(&args.service, &args.exchange)
        .vhost(&args.vhost)
        .version(&args.api_version);
    if let Some(queue) = &args.queue {
        document = document.queue(queue);
    }
    for pattern in &args.subscribe {
        document = document.subscribe(pattern);
    }
    for key in &args.publish {
        document = document.publishes_key(key);
    }
    for server in &args.servers {
        let Some((name, host)) = server.split_once('=') else {
            return Err(UsageError::new(format!(
                "--server `{}`: expected NAME=HOST, e.g. production=rabbit.internal:5672",
                pubsub_core::text::quote(server)
            ))
            .into());
        };
        document = document.server(name, host);
    }
    // Everything the builder refuses is in the command line.
    let document = document
        .build()
        .map_err(|e| UsageError::new(pubsub_core::text::error_chain(&e)))?;
    writeln!(console.out, "{document}")?;
    console.out.flush()?;
    Ok(())
}
