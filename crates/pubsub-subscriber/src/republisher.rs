//! The second connection retries and dead letters are published on, with confirms.
//!
//! A connection that publishes is blocked during a resource alarm, and the consuming one
//! must not be: so republishing has its own connection, opened when first needed.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use pubsub_amqp::{AmqpConfig, Channel, Confirms, Connection, Properties, Returns};

type AmqpResult<T> = pubsub_amqp::Result<T>;

/// How long to wait for the broker to confirm a retry or dead-letter publish.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection retries and dead letters are published on.
pub(crate) struct Republisher {
    connection: Connection,
    channel: Channel,
    confirms: Confirms,
    returns: Returns,
    next_tag: u64,
    /// Tags published and not confirmed yet.
    outstanding: BTreeSet<u64>,
    /// Tags the broker nacked since the last `confirm_all`.
    nacked: HashSet<u64>,
}

impl Republisher {
    /// Opens the connection (one attempt: the session's failure handling retries).
    pub(crate) fn open(config: &AmqpConfig) -> AmqpResult<Republisher> {
        let mut connection = Connection::open(&config.clone().with_connection_attempts(1))?;
        let channel = connection.open_channel()?;
        let returns = channel.listen_for_returns()?;
        let confirms = channel.enable_confirms()?;
        Ok(Republisher {
            connection,
            channel,
            confirms,
            returns,
            next_tag: 1,
            outstanding: BTreeSet::new(),
            nacked: HashSet::new(),
        })
    }

    /// Publishes to `queue` through the default exchange; returns the delivery tag whose
    /// confirm [`confirm_all`](Self::confirm_all) waits for.
    pub(crate) fn send(
        &mut self,
        queue: &str,
        body: &[u8],
        properties: &Properties,
    ) -> AmqpResult<u64> {
        self.channel.publish("", queue, body, properties, true)?;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.outstanding.insert(tag);
        Ok(tag)
    }

    /// Waits until every publish is confirmed; returns the tags the broker refused (nacked).
    ///
    /// # Errors
    ///
    /// A lost channel or connection, a blocked connection past its timeout, no confirm
    /// within [`CONFIRM_TIMEOUT`], or a message returned as unroutable (one of the
    /// subscriber's queues is gone: the session fails, and declares its topology again on
    /// reconnect).
    pub(crate) fn confirm_all(&mut self) -> AmqpResult<HashSet<u64>> {
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        while !self.outstanding.is_empty() {
            if let Some(blocked) = self.connection.blocked() {
                let waited = blocked.since.elapsed();
                if waited >= self.connection.config().blocked_connection_timeout() {
                    return Err(pubsub_amqp::Error::Blocked {
                        reason: blocked.reason,
                        waited,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(pubsub_amqp::Error::Timeout {
                    what: "waiting for the broker to confirm retries and dead letters",
                    after: CONFIRM_TIMEOUT,
                });
            }
            let confirm = match self
                .confirms
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(_) => return Err(self.channel.why_closed()),
            };
            let settled: Vec<u64> = if confirm.multiple {
                self.outstanding
                    .range(..=confirm.delivery_tag)
                    .copied()
                    .collect()
            } else {
                vec![confirm.delivery_tag]
            };
            for tag in settled {
                if self.outstanding.remove(&tag) && !confirm.ack {
                    self.nacked.insert(tag);
                }
            }
        }
        // The broker returns an unroutable message before it confirms it.
        if let Some(returned) = self.returns.try_recv() {
            return Err(pubsub_amqp::Error::NotFound {
                kind: "queue",
                name: returned.routing_key,
            });
        }
        Ok(std::mem::take(&mut self.nacked))
    }
}
