//! Scheduled tasks: a task submitted to run later waits in a delay queue of the broker, then
//! goes to the worker's queue.
//!
//! A delay is rounded *up* to a bucket ([`delay_bucket`]): 100 ms steps below a second, then 16
//! steps per doubling (at most 1/16 late, 6.25 %). Each bucket is a durable queue
//! `<queue>.delay.<ms>ms` with that TTL, which dead-letters its messages to the worker's
//! queue `<queue>` through the default exchange: a task runs no earlier than asked, survives a
//! restart of the broker (durable queue, persistent message) and of any worker, and needs no
//! plugin. A task is scheduled only while the worker's queue exists (else
//! [`Error::NoWorkerQueue`]): when its delay ends, the broker would drop it. The delay counts
//! from the broker's confirm. The longest is [`MAX_DELAY`]
//! (RabbitMQ's TTLs stop at 2^32 - 1 ms, about 49 days). A bucket queue stays once declared,
//! as the retry queues do; a service uses few of them.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pubsub_amqp::{AmqpConfig, Connection, QueueConfig};
use pubsub_core::envelope::Envelope;
use pubsub_publisher::{EventPublisher, PublishingThread, SharedPublisher, Unroutable};

use crate::error::{Error, Result};

/// The longest a task can be scheduled ahead.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The finest step of a delay, below a second.
const FINE_STEP_MS: u64 = 100;

/// The bucket a delay waits in: the delay rounded up, to 100 ms below a second, else to a
/// sixteenth of the power of two below it (pure).
pub fn delay_bucket(delay: Duration) -> Duration {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(1);
    let step = if ms <= 1_000 {
        FINE_STEP_MS
    } else {
        // 2^floor(log2(ms)) / 16, at least 1.
        (1u64 << (63 - ms.leading_zeros())) / 16
    };
    Duration::from_millis(ms.div_ceil(step).saturating_mul(step))
}

/// The delay queue of `queue` for the bucket `bucket`: `<queue>.delay.<ms>ms`.
pub fn delay_queue_name(queue: &str, bucket: Duration) -> String {
    format!("{queue}.delay.{}ms", bucket.as_millis())
}

/// A delay that cannot be scheduled, and why (pure).
pub(crate) fn check_delay(delay: Duration) -> Result<()> {
    if delay > MAX_DELAY {
        return Err(Error::InvalidConfig {
            message: format!(
                "a task can be scheduled at most {} days ahead, not {delay:?}",
                MAX_DELAY.as_secs() / 86_400
            ),
        });
    }
    Ok(())
}

/// What a queue needs to schedule: where the delay queues lead, the buckets declared so far,
/// and a publisher to the default exchange (opened at the first scheduled task).
pub(crate) struct Scheduler {
    config: AmqpConfig,
    queue: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    declared: HashSet<Duration>,
    publisher: Option<(SharedPublisher, PublishingThread)>,
}

impl Scheduler {
    pub(crate) fn new(config: AmqpConfig, queue: String) -> Scheduler {
        Scheduler {
            config,
            queue,
            state: Mutex::default(),
        }
    }

    /// The worker queue scheduled tasks go to.
    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    /// The publisher to the default exchange, and the name of `bucket`'s delay queue, declared
    /// if this process has not yet.
    pub(crate) fn route(&self, bucket: Duration) -> Result<(SharedPublisher, String)> {
        let name = delay_queue_name(&self.queue, bucket);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.declared.contains(&bucket) {
            let mut connection = Connection::open(&self.config)?;
            // The delay queue leads to the workers' queue by name: a task whose delay ends
            // while none exists is dropped by the broker, so none is scheduled before one
            // does (a missing queue closes the probing channel, not the connection).
            let probed = connection
                .open_channel()
                .and_then(|channel| channel.queue_info(&self.queue));
            let declared = match probed {
                Ok(_) => connection
                    .open_channel()
                    .and_then(|channel| {
                        let config = QueueConfig {
                            durable: true,
                            ..QueueConfig::default()
                        }
                        .message_ttl(bucket)
                        .dead_letter_to("", &self.queue);
                        channel.declare_queue(&name, &config)
                    })
                    .map_err(Error::from),
                Err(pubsub_amqp::Error::NotFound { .. }) => Err(Error::NoWorkerQueue {
                    queue: self.queue.clone(),
                }),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = connection.close() {
                log::debug!("closing the connection that declared `{name}`: {e}");
            }
            declared?;
            state.declared.insert(bucket);
        }
        if let Some((publisher, _)) = &state.publisher {
            return Ok((publisher.clone(), name));
        }
        let connection = Connection::open(
            &self
                .config
                .clone()
                .with_connection_name(&format!("task scheduler {}", self.queue)),
        )?;
        let publisher = EventPublisher::builder(connection, "")
            .envelope(Envelope::Task)
            .unroutable(Unroutable::Error)
            .declare_exchange(None)
            .build()?;
        let (publisher, thread) = SharedPublisher::spawn(publisher, 64)?;
        state.publisher = Some((publisher.clone(), thread));
        Ok((publisher, name))
    }

    /// Stops the publisher, if one was opened: its thread joined, its connection closed.
    pub(crate) fn close(&self) -> Result<()> {
        let taken = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .publisher
            .take();
        match taken {
            Some((publisher, thread)) => {
                drop(publisher);
                Ok(thread.join()?)
            }
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_rounded_up_to_its_bucket() {
        let ms = Duration::from_millis;
        let check = |asked: u64, bucket_ms: u64| {
            assert_eq!(delay_bucket(ms(asked)), ms(bucket_ms), "{asked} ms");
        };
        check(0, 100);
        check(1, 100);
        check(100, 100);
        check(101, 200);
        check(999, 1_000);
        check(1_000, 1_000);
        check(1_001, 1_024); // 32 ms steps from 512 ms (512 / 16)
        check(5_000, 5_120);
        check(60_000, 61_440);
        // Never early, at most 1/16 late above a second.
        for asked in [
            1_001u64,
            1_500,
            7_777,
            65_537,
            3_600_000,
            86_400_000,
            2_000_000_000,
        ] {
            let b = delay_bucket(ms(asked)).as_millis() as u64;
            assert!(b >= asked && b - asked <= asked / 16 + 1, "{asked} -> {b}");
        }
    }

    #[test]
    fn delay_queues_are_named_by_their_bucket() {
        assert_eq!(
            delay_queue_name("tasks", Duration::from_millis(5_120)),
            "tasks.delay.5120ms"
        );
    }

    #[test]
    fn delays_past_the_longest_are_refused() {
        assert!(check_delay(MAX_DELAY).is_ok());
        let e = check_delay(MAX_DELAY + Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("at most 30 days"), "{e}");
    }
}
