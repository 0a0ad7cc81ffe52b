//! The second connection retries and dead letters are published on, with confirms.
//!
//! A connection that publishes is blocked during a resource alarm, and the consuming one
//! must not be: so republishing has its own connection, opened when first needed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pubsub_amqp::{AmqpConfig, ConfirmOutcome, ConfirmedChannel, Connection, Outgoing, Properties};

type AmqpResult<T> = pubsub_amqp::Result<T>;

/// How long to wait for the broker to confirm a retry or dead-letter publish.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection retries and dead letters are published on.
pub(crate) struct Republisher {
    connection: Connection,
    /// The copies in flight, each with the queue it was sent to.
    channel: ConfirmedChannel<String>,
}

impl Republisher {
    /// Opens the connection (one attempt: the session's failure handling retries).
    pub(crate) fn open(config: &AmqpConfig) -> AmqpResult<Republisher> {
        let mut connection = Connection::open(&config.clone().with_connection_attempts(1))?;
        let channel = ConfirmedChannel::open(&mut connection)?;
        Ok(Republisher {
            connection,
            channel,
        })
    }

    /// Publishes to `queue` through the default exchange (after waiting, bounded, while the
    /// broker blocks the connection); returns the delivery tag whose confirm
    /// [`confirm_all`](Self::confirm_all) waits for.
    pub(crate) fn send(
        &mut self,
        queue: &str,
        body: &[u8],
        properties: &Properties,
    ) -> AmqpResult<u64> {
        let message = Outgoing {
            exchange: "",
            routing_key: queue,
            body,
            properties,
            mandatory: true,
        };
        self.channel
            .publish(&self.connection, message, queue.to_owned())
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
        let mut settled = Vec::new();
        let is_it = |queue: &String, r: &pubsub_amqp::Returned| *queue == r.routing_key;
        if !self
            .channel
            .wait_all(&self.connection, deadline, is_it, &mut settled)?
        {
            return Err(pubsub_amqp::Error::Timeout {
                what: "waiting for the broker to confirm retries and dead letters",
                after: CONFIRM_TIMEOUT,
            });
        }
        let mut refused = HashSet::new();
        for copy in settled {
            match copy.outcome {
                ConfirmOutcome::Confirmed => {}
                ConfirmOutcome::Nacked => {
                    refused.insert(copy.tag);
                }
                ConfirmOutcome::Returned { .. } => {
                    return Err(pubsub_amqp::Error::NotFound {
                        kind: "queue",
                        name: copy.token,
                    })
                }
            }
        }
        Ok(refused)
    }
}
