//! The baseline: the minimal publish / consume / parse / dispatch / ack loop written directly
//! on amiquip, with no crate of ours in between (the broker's address and credentials are read
//! from `AmqpConfig`, and that is all).
//!
//! Its socket is opened with `TCP_NODELAY`, as `pubsub-amqp` opens its own: with Nagle's
//! algorithm on (amiquip's `Connection::open`), a confirmed publish waits for the delayed ACK
//! and the loop falls to a few dozen messages per second.
//!
//! The consumer parses each body into a `serde_json::Value` (what a minimal consumer, or
//! Python's `json.loads`, does: no validation of the fields), dispatches it to the three
//! patterns with a plain match on the routing key, and acks every message on its own.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use amiquip::{
    AmqpProperties, Auth, Channel, Confirm, ConfirmSmoother, ConnectionOptions, ConnectionTuning,
    ConsumerMessage, ConsumerOptions, ExchangeDeclareOptions, ExchangeType, FieldTable, Publish,
    QueueDeclareOptions,
};
use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use pubsub_amqp::AmqpConfig;
use serde_json::Value;

use crate::sides::{Gate, Pace, Published};
use crate::workload::{self, raw_dispatch, route, Sink};

/// How long a consumer waits for a delivery before it gives up on a stalled run.
const STALL: Duration = Duration::from_secs(60);

/// How long a publisher waits for a confirm.
const CONFIRM_WAIT: Duration = Duration::from_secs(30);

/// When the raw publisher waits for the broker's confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawConfirms {
    /// No confirms: a publish returns once amiquip has the message.
    Off,
    /// Publish `n` messages, then wait until all of them are confirmed (lockstep batches).
    Every(u64),
    /// Wait for each message's confirm before the next publish.
    Each,
}

/// Opens an amiquip connection on a socket with `TCP_NODELAY`.
pub(crate) fn connect(config: &AmqpConfig) -> Result<amiquip::Connection> {
    let stream = TcpStream::connect((config.host(), config.port()))
        .with_context(|| format!("raw: cannot connect to {}", config.address()))?;
    stream.set_nodelay(true)?;
    let stream = mio::net::TcpStream::from_stream(stream)?;
    let options = ConnectionOptions::<Auth>::default()
        .auth(Auth::Plain {
            username: config.username().to_owned(),
            password: config.password().to_owned(),
        })
        .virtual_host(config.virtual_host());
    amiquip::Connection::insecure_open_stream(stream, options, ConnectionTuning::default())
        .context("raw: the AMQP handshake failed")
}

/// Declares the durable topic exchange and the durable queue, bound with `#`.
pub(crate) fn declare(channel: &Channel, exchange: &str, queue: &str) -> Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel.exchange_declare(ExchangeType::Topic, exchange, durable)?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(queue, durable)?;
    channel.queue_bind(queue, exchange, "#", FieldTable::new())?;
    Ok(())
}

/// Publishes `n` events (built in the loop, as the library side builds its own) as persistent
/// JSON, waiting for confirms as `confirms` says.
pub(crate) fn publish(
    config: &AmqpConfig,
    exchange: &str,
    n: u64,
    confirms: RawConfirms,
    pace: Option<Pace>,
) -> Result<Published> {
    let mut connection = connect(config)?;
    let channel = connection.open_channel(None)?;
    let confirm_rx = match confirms {
        RawConfirms::Off => None,
        RawConfirms::Every(_) | RawConfirms::Each => {
            let rx = channel.listen_for_publisher_confirms()?;
            channel.enable_publisher_confirms()?;
            Some(rx)
        }
    };
    let every = match confirms {
        RawConfirms::Off => u64::MAX,
        RawConfirms::Every(k) => k.max(1),
        RawConfirms::Each => 1,
    };
    let properties = AmqpProperties::default()
        .with_content_type("application/json".to_owned())
        .with_delivery_mode(2);
    let mut smoother = ConfirmSmoother::new();
    let mut confirmed = 0;
    let mut body = Vec::with_capacity(512);

    let start_ns = workload::wall_ns();
    let start = Instant::now();
    for i in 0..n {
        if let Some(pace) = &pace {
            if i % pace.per_tick.max(1) == 0 {
                pace.wait(start, i);
            }
        }
        workload::raw_body(i, workload::wall_ns(), &mut body)?;
        let publish = Publish::with_properties(&body, route(i).2, properties.clone());
        channel.basic_publish(exchange, publish)?;
        if let Some(rx) = &confirm_rx {
            if (i + 1) % every == 0 || i + 1 == n {
                wait_confirms(rx, &mut smoother, &mut confirmed, i + 1)?;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    channel.close()?;
    connection.close()?;
    Ok(Published { start_ns, seconds })
}

/// Waits until `target` messages are confirmed.
fn wait_confirms(
    rx: &Receiver<Confirm>,
    smoother: &mut ConfirmSmoother,
    confirmed: &mut u64,
    target: u64,
) -> Result<()> {
    while *confirmed < target {
        let raw = rx
            .recv_timeout(CONFIRM_WAIT)
            .context("raw: no publisher confirm within 30 s")?;
        for confirm in smoother.process(raw) {
            if let Confirm::Nack(payload) = confirm {
                bail!("raw: the broker nacked message {}", payload.delivery_tag);
            }
            *confirmed += 1;
        }
    }
    Ok(())
}

/// Consumes until `sink` has its events: parse, dispatch, ack each message.
pub(crate) fn consume(
    config: &AmqpConfig,
    exchange: &str,
    queue: &str,
    prefetch: u16,
    sink: &Sink,
    gate: &Gate,
) -> Result<()> {
    let mut connection = connect(config)?;
    let channel = connection.open_channel(None)?;
    declare(&channel, exchange, queue)?;
    gate.declared()?;
    channel.qos(0, prefetch, false)?;
    let consumer = channel.basic_consume(queue, ConsumerOptions::default())?;
    gate.consuming()?;
    let rx = consumer.receiver();
    while !sink.is_done() {
        let message = match rx.recv_timeout(STALL) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                bail!("raw: no delivery for 60 s after {} events", sink.handled())
            }
            Err(RecvTimeoutError::Disconnected) => bail!("raw: the connection's I/O thread ended"),
        };
        match message {
            ConsumerMessage::Delivery(delivery) => {
                let body: Value =
                    serde_json::from_slice(&delivery.body).context("raw: a body is not JSON")?;
                raw_dispatch(&delivery.routing_key, &body, sink);
                consumer.ack(delivery)?;
            }
            other => bail!("raw: the consumer ended: {other:?}"),
        }
    }
    consumer.cancel()?;
    // Wait for the end of the stream before dropping it (amiquip's I/O thread fails the
    // connection if the cancel-ok finds the stream gone).
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(message) = rx.recv_deadline(deadline) {
        if !matches!(message, ConsumerMessage::Delivery(_)) {
            break;
        }
    }
    drop(consumer);
    channel.close()?;
    connection.close()?;
    Ok(())
}
