//! The library side: the same workload through `EventPublisher`, `EventSubscriber` and
//! `HandlerRegistry`, using only their public APIs.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pubsub_amqp::AmqpConfig;
use pubsub_core::Event;
use pubsub_publisher::EventPublisher;
use pubsub_subscriber::{EventSubscriber, SubscriberStats};

use crate::admin::open;
use crate::sides::{Gate, Pace, Published};
use crate::workload::{self, Sink};

/// How long a consumer may go without handling an event before the run is abandoned.
const STALL: Duration = Duration::from_secs(60);

/// How the library publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LibPublish {
    /// One confirmed `publish` call per event.
    Single,
    /// `publish_all` of batches of this many events: pipelined confirms.
    Batch(usize),
    /// Confirms off (`PublisherBuilder::confirms(false)`), `publish_all` of batches.
    Unconfirmed(usize),
}

/// Publishes `n` events, built in the loop batch by batch.
pub(crate) fn publish(
    config: &AmqpConfig,
    exchange: &str,
    n: u64,
    mode: LibPublish,
    pace: Option<Pace>,
) -> Result<Published> {
    let mut publisher = EventPublisher::builder(open(config)?, exchange)
        .confirms(!matches!(mode, LibPublish::Unconfirmed(_)))
        .build()?;
    let batch = match mode {
        LibPublish::Single => 1,
        LibPublish::Batch(b) | LibPublish::Unconfirmed(b) => b.max(1) as u64,
    };
    let mut events: Vec<Event> = Vec::with_capacity(batch as usize);

    let start_ns = workload::wall_ns();
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        if let Some(pace) = &pace {
            pace.wait(start, i);
        }
        let end = (i + batch).min(n);
        events.clear();
        for j in i..end {
            events.push(workload::event(j, workload::wall_ns())?);
        }
        if mode == LibPublish::Single {
            publisher.publish(&events[0])?;
        } else {
            for outcome in publisher.publish_all(&events) {
                outcome?;
            }
        }
        i = end;
    }
    let seconds = start.elapsed().as_secs_f64();
    publisher.close()?;
    Ok(Published { start_ns, seconds })
}

/// Publishes prebuilt events: one `publish` call each, or one `publish_all` for all of them.
/// Returns the seconds taken.
pub(crate) fn publish_prebuilt(
    config: &AmqpConfig,
    exchange: &str,
    events: &[Event],
    all: bool,
) -> Result<f64> {
    let mut publisher = EventPublisher::new(open(config)?, exchange)?;
    let start = Instant::now();
    if all {
        for outcome in publisher.publish_all(events) {
            outcome?;
        }
    } else {
        for event in events {
            publisher.publish(event)?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    publisher.close()?;
    Ok(seconds)
}

/// Consumes with an `EventSubscriber` until `sink` has its events. `prefetch: None` keeps the
/// subscriber's default settings (prefetch 100); `quorum` makes its queues quorum queues.
pub(crate) fn consume(
    config: &AmqpConfig,
    exchange: &str,
    queue: &str,
    (prefetch, quorum): (Option<u16>, bool),
    sink: &Arc<Sink>,
    gate: &Gate,
) -> Result<SubscriberStats> {
    let registry = Arc::new(workload::registry(sink)?);
    let mut builder = EventSubscriber::builder(open(config)?, queue, registry)
        .exchange(exchange)
        .quorum(quorum);
    if let Some(prefetch) = prefetch {
        builder = builder.prefetch(prefetch);
    }
    let mut subscriber = builder.build()?;
    subscriber.setup()?;
    gate.declared()?;

    let mut admin = open(config)?;
    let channel = admin.open_channel()?;
    let mut running = subscriber.spawn()?;
    // Consuming starts on the subscriber's thread: wait until the broker lists the consumer,
    // so the publisher does not start before it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while channel.queue_info(queue)?.consumer_count == 0 {
        if running.is_finished() || Instant::now() > deadline {
            let ended = running.join();
            bail!("lib: the subscriber did not start consuming: {ended:?}");
        }
        thread::sleep(Duration::from_millis(2));
    }
    drop(channel);
    admin.close()?;
    gate.consuming()?;

    let mut last = (sink.handled(), Instant::now());
    while !sink.wait_done(Duration::from_millis(100)) {
        if running.is_finished() {
            let ended = running.join();
            bail!(
                "lib: the subscriber stopped after {} events: {ended:?}",
                sink.handled()
            );
        }
        let handled = sink.handled();
        if handled != last.0 {
            last = (handled, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!("lib: no event handled for 60 s after {handled} events");
        }
    }
    running.stop().context("lib: stopping the subscriber")
}
