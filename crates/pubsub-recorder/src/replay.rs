//! [`replay`]: stored events published again, to the exchange or into one service's queue,
//! with confirms and a rate limit.

use std::time::{Duration, Instant};

use pubsub_amqp::Connection;
use pubsub_publisher::{EventPublisher, PublishOptions, Unroutable};

use pubsub_store::{EventQuery, EventStore, StoredEvent};

use crate::error::{Error, Result};

/// Where a replay publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// To this exchange, each event with its own routing key: every bound service gets it
    /// again.
    Exchange(String),
    /// Into this queue only (one service), through the default exchange.
    Queue(String),
}

/// How a replay goes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Where to.
    pub target: ReplayTarget,
    /// At most this many events per second (`None`: as fast as the broker confirms).
    pub rate: Option<f64>,
    /// How many events are published before their confirms are awaited (at most).
    pub batch: usize,
}

/// How far a replay got: given to the progress callback after each batch, and returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Events the broker confirmed.
    pub published: u64,
    /// Events the broker refused or could not route (with `Queue`: the queue is missing).
    pub failed: u64,
    /// Time since the replay started.
    pub elapsed: Duration,
}

/// The size of a batch for `rate` events per second: at most `batch`, and about a tenth of a
/// second's worth, so that the rate holds within each second.
pub(crate) fn batch_size(batch: usize, rate: Option<f64>) -> usize {
    let batch = batch.max(1);
    match rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => {
            let tenth = (rate / 10.0).floor();
            batch.min(if tenth < 1.0 { 1 } else { tenth as usize })
        }
        _ => batch,
    }
}

/// How long to wait before the next batch so that `sent` events in `elapsed` stay within
/// `rate` per second.
pub(crate) fn pause(sent: u64, elapsed: Duration, rate: Option<f64>) -> Duration {
    match rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            due.saturating_sub(elapsed)
        }
        _ => Duration::ZERO,
    }
}

/// What a stored event is published again with: its routing key as stored (when it is not
/// the event's own: a message the store kept under another convention's key), its
/// correlation and causation ids.
pub(crate) fn options_of(stored: &StoredEvent) -> PublishOptions {
    PublishOptions {
        correlation_id: stored.correlation_id.clone(),
        causation_id: stored.causation_id.clone(),
        routing_key: (stored.routing_key != stored.event.routing_key())
            .then(|| stored.routing_key.clone()),
        ..PublishOptions::default()
    }
}

/// Publishes again every event `query` selects in `store`, oldest first unless the query
/// says otherwise, with publisher confirms, on `connection`. `progress` is called after each
/// batch (print it on stderr); `stop` ends the replay early between batches.
///
/// Each event is published with the body the store received, byte for byte (the NULs, the
/// whitespace and the key order of its JSON as sent), under the routing key it was stored
/// with; an event stored without a body (before schema version 2, or appended in code) is
/// encoded again from its six fields. The events keep their id (as `message_id`), timestamp
/// and data (a subscriber's idempotency by event id applies), their correlation and
/// causation ids.
///
/// # Errors
///
/// [`Error::InvalidConfig`] for a rate that is not a positive number, the store's query error,
/// or [`Error::Publish`] when the broker connection cannot be used (what was confirmed before
/// stays published).
pub fn replay(
    store: &mut EventStore,
    query: &EventQuery,
    connection: Connection,
    options: &ReplayOptions,
    mut progress: impl FnMut(&ReplayProgress),
    stop: impl Fn() -> bool,
) -> Result<ReplayProgress> {
    if let Some(rate) = options.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::InvalidConfig {
                message: format!(
                    "the replay rate must be a positive number of events per second, not {rate}"
                ),
            });
        }
    }
    let builder = match &options.target {
        ReplayTarget::Exchange(exchange) => EventPublisher::builder(connection, exchange),
        ReplayTarget::Queue(queue) => EventPublisher::builder(connection, "").to_queue(queue),
    };
    let mut publisher = builder
        .app_id("pubsub-store-replay")
        .unroutable(Unroutable::Error)
        .build()?;
    let size = batch_size(options.batch, options.rate);
    let started = Instant::now();
    let mut done = ReplayProgress::default();
    let mut batch: Vec<StoredEvent> = Vec::with_capacity(size);
    let mut failure: Option<Error> = None;
    let mut send = |batch: &mut Vec<StoredEvent>, done: &mut ReplayProgress| -> Result<()> {
        let events: Vec<_> = batch.iter().map(|s| s.event.clone()).collect();
        let opts: Vec<PublishOptions> = batch.iter().map(options_of).collect();
        let bodies: Vec<Option<&[u8]>> = batch.iter().map(|s| s.body.as_deref()).collect();
        for outcome in publisher.publish_each_body(&events, &bodies, &opts) {
            match outcome {
                Ok(()) => done.published += 1,
                Err(e) => match e.error() {
                    pubsub_publisher::Error::Nacked
                    | pubsub_publisher::Error::Unroutable { .. } => done.failed += 1,
                    _ => return Err(Error::Publish(e.error().clone())),
                },
            }
        }
        batch.clear();
        done.elapsed = started.elapsed();
        Ok(())
    };
    store.for_each(query, |event| {
        batch.push(event);
        if batch.len() < size {
            return true;
        }
        std::thread::sleep(pause(
            done.published + done.failed,
            started.elapsed(),
            options.rate,
        ));
        if let Err(e) = send(&mut batch, &mut done) {
            failure = Some(e);
            return false;
        }
        progress(&done);
        !stop()
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !batch.is_empty() && !stop() {
        std::thread::sleep(pause(
            done.published + done.failed,
            started.elapsed(),
            options.rate,
        ));
        send(&mut batch, &mut done)?;
        progress(&done);
    }
    if let Err(e) = publisher.close() {
        log::debug!("closing the replay's connection: {e}");
    }
    done.elapsed = started.elapsed();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_the_rate() {
        assert_eq!(batch_size(100, None), 100);
        assert_eq!(batch_size(100, Some(5000.0)), 100);
        assert_eq!(batch_size(100, Some(200.0)), 20);
        assert_eq!(batch_size(100, Some(3.0)), 1);
        assert_eq!(batch_size(0, None), 1);
        assert_eq!(batch_size(100, Some(f64::NAN)), 100);
    }

    #[test]
    fn pauses_keep_the_rate() {
        let ms = Duration::from_millis;
        assert_eq!(pause(100, ms(0), None), Duration::ZERO);
        assert_eq!(pause(100, ms(400), Some(100.0)), ms(600));
        assert_eq!(pause(100, ms(1500), Some(100.0)), Duration::ZERO);
        assert_eq!(pause(0, ms(0), Some(100.0)), Duration::ZERO);
    }
}
