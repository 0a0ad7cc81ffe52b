//! The `orders` service of the README's incident walkthrough (`docs/cli.md`), so that the
//! walkthrough can be followed as written:
//!
//! - `incident break`: a deploy breaks the service's `send-confirmation` handler. It starts,
//!   publishes three `order.created` and one `order.paid`, and every one fails its three
//!   attempts (100 ms and 200 ms apart) and lands in `orders.dlq`; then it stops, leaving its
//!   queues on the broker, as a crashed deploy would.
//! - `incident fixed`: the fix is deployed. It handles what reaches `orders` (a replay from the
//!   dead-letter queue) and stops once nothing has arrived for `--idle` seconds (3 by default).
//! - `incident clean`: deletes the service's queues, dead letters included.
//!
//! The broker and the exchange come from the environment, as for every service (`AMQP_URL` or
//! `RABBITMQ_URL`, `RABBITMQ_EXCHANGE`). `just incident <step>` runs it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use demo_domain::{OrderCreated, OrderItem, OrderPaid};
use pubsub::{handler_fn, Disposition, Event, EventBus, EventBusBuilder, RetryPolicy};

/// The service's name: its queue, `orders.dlq`, `orders.retry.*`.
const SERVICE: &str = "orders";

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("break") => broken(),
        Some("fixed") => fixed(idle_seconds(&args[1..])),
        Some("clean") => clean(),
        _ => {
            eprintln!("usage: incident break | fixed [--idle SECONDS] | clean");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn idle_seconds(args: &[String]) -> u64 {
    match args {
        [flag, seconds] if flag == "--idle" => seconds.parse().unwrap_or(3),
        _ => 3,
    }
}

/// The service's bus: three attempts, short delays (the walkthrough should not wait).
fn bus() -> EventBusBuilder {
    EventBus::builder(SERVICE).retry(RetryPolicy::new(
        3,
        vec![Duration::from_millis(100), Duration::from_millis(200)],
    ))
}

/// The broken deploy: every order event fails `send-confirmation` until it is dead-lettered.
fn broken() -> Result<()> {
    let (reports, settled) = crossbeam_channel::unbounded();
    let mut bus = bus().observer(reports).build()?;
    bus.subscribe(
        "order.*",
        handler_fn("send-confirmation", |_, meta| {
            Err(format!(
                "template `confirmation` not found (attempt {})",
                meta.attempt()
            )
            .into())
        }),
    )?;
    bus.start().context("starting the `orders` service")?;
    let events = orders()?;
    let count = events.len();
    for event in events {
        bus.publish(event)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut dead = 0;
    while dead < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(report) = settled.recv_timeout(left) else {
            bail!("only {dead} of {count} events were dead-lettered in 30 s");
        };
        if matches!(report.disposition, Disposition::DeadLettered { .. }) {
            dead += 1;
        }
    }
    bus.stop()?;
    println!("`{SERVICE}`: {dead} events failed every attempt and are in `{SERVICE}.dlq`");
    Ok(())
}

/// The fixed deploy: handles what arrives until the queue has been quiet for `idle` seconds.
fn fixed(idle: u64) -> Result<()> {
    let (reports, settled) = crossbeam_channel::unbounded();
    let mut bus = bus().observer(reports).build()?;
    bus.subscribe(
        "order.*",
        handler_fn("send-confirmation", |event, _| {
            log::info!("confirmation sent for {event}");
            Ok(())
        }),
    )?;
    bus.start().context("starting the `orders` service")?;
    let mut handled = 0;
    while let Ok(report) = settled.recv_timeout(Duration::from_secs(idle)) {
        if report.disposition == Disposition::Acked {
            handled += 1;
        }
    }
    bus.stop()?;
    println!("`{SERVICE}`: {handled} events handled, then quiet for {idle} s");
    Ok(())
}

/// Deletes the service's queues, dead letters included.
fn clean() -> Result<()> {
    let teardown = bus().build()?.teardown()?;
    println!("deleted {}", teardown.deleted.join(", "));
    Ok(())
}

/// Three orders created, one of them paid.
fn orders() -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for n in 1..=3 {
        events.push(Event::from_typed(&OrderCreated {
            order_id: format!("ORD-{n}"),
            customer_email: format!("customer{n}@example.com"),
            items: vec![OrderItem {
                product_id: "PROD-001".to_owned(),
                quantity: 1,
            }],
            total_amount: 19.99,
        })?);
    }
    events.push(Event::from_typed(&OrderPaid {
        order_id: "ORD-1".to_owned(),
        payment_id: "PAY-1".to_owned(),
        amount: 19.99,
    })?);
    Ok(events)
}
