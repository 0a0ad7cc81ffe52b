//! [`Dlq`]: a dead-letter queue on a connection, to peek at, replay or purge.

use crossbeam_channel::Receiver;
use pubsub_amqp::{Channel, Connection};

use crate::dlq::letter::{dlq_name, DeadLetter};
use crate::dlq::progress::Progress;
use crate::dlq::replay::{self, ReplayOptions, ReplayReport};
use crate::error::{Error, Result};

/// A dead-letter queue on a connection.
#[derive(Debug)]
pub struct Dlq<'c> {
    connection: &'c mut Connection,
    name: String,
    message_count: u32,
}

impl<'c> Dlq<'c> {
    /// Finds the dead-letter queue of `queue` (see [`dlq_name`]).
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`] when it does not exist, [`Error::Amqp`] when the connection
    /// fails.
    pub fn open(connection: &'c mut Connection, queue: &str) -> Result<Dlq<'c>> {
        let name = dlq_name(queue);
        let message_count = queue_info(connection, &name)?;
        Ok(Dlq {
            connection,
            name,
            message_count,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many messages were ready in it when it was opened.
    pub fn message_count(&self) -> u32 {
        self.message_count
    }

    /// Calls `visit` with every message (up to the count the broker reports now), then puts
    /// them all back, and returns how many were seen. See the [module docs](crate::dlq).
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`] when the queue is gone, [`Error::Amqp`] when the connection
    /// fails, [`Error::PutBack`] when closing the channel fails (the messages go back either
    /// way).
    pub fn peek(&mut self, mut visit: impl FnMut(DeadLetter, Progress)) -> Result<u32> {
        let channel = self.connection.open_channel()?;
        let total = channel_queue_info(&channel, &self.name)?;
        let mut held = Vec::with_capacity(usize::try_from(total).unwrap_or(0).min(100_000));
        let mut seen = 0;
        while seen < total {
            let Some((mut delivery, _)) = channel.get(&self.name)? else {
                break;
            };
            seen += 1;
            let letter = DeadLetter::from_delivery(&mut delivery);
            held.push(delivery);
            visit(
                letter,
                Progress {
                    examined: seen,
                    total,
                    moved: 0,
                    stayed: 0,
                },
            );
        }
        drop(held);
        // Closing the channel hands every message taken back to the queue.
        channel.close().map_err(Error::PutBack)?;
        Ok(seen)
    }

    /// Republishes the selected messages to their [`DeadLetter::destination`] (or to
    /// `options.to_queue`) with publisher confirms and removes each from the dead-letter
    /// queue once the broker confirmed it; see the [module docs](crate::dlq).
    ///
    /// A message stays when it has no known destination, its exchange does not exist, no
    /// queue is bound for it (it is published `mandatory`), the broker refuses it (negative
    /// confirm) or does not confirm it in time. A lost connection ends the replay early
    /// ([`ReplayReport::aborted`]); a message on `stop` ends it after the current batch.
    /// `progress` is called after every message looked at.
    ///
    /// # Errors
    ///
    /// When the replay cannot start ([`Error::QueueNotFound`]: the queue is gone;
    /// [`Error::Amqp`]: the connection fails). Failures after the start are in the report.
    pub fn replay(
        &mut self,
        options: &ReplayOptions,
        stop: &Receiver<()>,
        progress: impl FnMut(Progress),
    ) -> Result<ReplayReport> {
        let get = self.connection.open_channel()?;
        let total = channel_queue_info(&get, &self.name)?;
        let report = replay::run(
            &mut *self.connection,
            &get,
            &self.name,
            total,
            options,
            stop,
            progress,
        );
        // Closing the channel hands back every message that was not moved.
        if let Err(e) = get.close() {
            log::debug!("closing the dead-letter channel: {e}");
        }
        Ok(report)
    }

    /// Deletes every ready message and returns how many there were.
    ///
    /// # Errors
    ///
    /// [`Error::QueueNotFound`] when the queue is gone, [`Error::Amqp`] when the connection
    /// fails.
    pub fn purge(&mut self) -> Result<u32> {
        let channel = self.connection.open_channel()?;
        let purged = channel
            .purge_queue(&self.name)
            .map_err(|e| Error::queue(e, &self.name))?;
        let _ = channel.close();
        Ok(purged)
    }
}

/// The ready-message count of a queue, on a channel of its own (a missing queue closes it).
fn queue_info(connection: &mut Connection, name: &str) -> Result<u32> {
    let channel = connection.open_channel()?;
    let count = channel_queue_info(&channel, name)?;
    let _ = channel.close();
    Ok(count)
}

fn channel_queue_info(channel: &Channel, name: &str) -> Result<u32> {
    channel
        .queue_info(name)
        .map(|info| info.message_count)
        .map_err(|e| Error::queue(e, name))
}
