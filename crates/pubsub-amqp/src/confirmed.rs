//! [`ConfirmedChannel`]: a channel in confirm mode, the one way the crates above publish with
//! publisher confirms.
//!
//! Every confirmed publisher of the workspace needs the same five things wired in the same
//! order: a channel, its returns listened for, confirms turned on, a [`ConfirmTracker`] and a
//! wait for the confirms bounded by a deadline and by the blocked-connection timeout. This
//! type is those five things. What it decides is decided by the tracker (which message a
//! confirm or a return settles) and by [`check_blocked`], both sans-I/O and unit-tested; this
//! module only moves frames between them and the channel.
//!
//! The channel does not own its [`Connection`]: a replay publishes on the connection it also
//! takes messages on. Each call that may wait is given the connection, to check whether the
//! broker blocks it.

use std::fmt;
use std::time::Instant;

use crate::channel::{Channel, Confirms, Returned, Returns};
use crate::confirm::{wait_while_blocked, ConfirmStreams, ConfirmTracker, Settled};
use crate::connection::Connection;
use crate::error::Result;
use crate::properties::Properties;

/// One message to publish: where it goes and what it is.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The exchange (empty: the default exchange, which routes by queue name).
    pub exchange: &'a str,
    /// The routing key (at most 255 bytes).
    pub routing_key: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// The properties and headers.
    pub properties: &'a Properties,
    /// Whether the broker returns the message when no queue receives it (then
    /// [`ConfirmOutcome::Returned`](crate::ConfirmOutcome::Returned)).
    pub mandatory: bool,
}

/// A channel with publisher confirms on and its returns listened for, and the
/// [`ConfirmTracker`] of the messages in flight on it, each known by the caller's token `T`.
///
/// [`publish`](Self::publish) waits (bounded by the blocked-connection timeout) while the
/// broker blocks the connection, publishes, and records the message in flight;
/// [`poll`](Self::poll), [`wait`](Self::wait) and [`wait_all`](Self::wait_all) settle what the
/// broker confirmed, nacked or returned. Returns are matched to messages by the caller's rule
/// (`is_it`), as [`ConfirmTracker`] explains.
///
/// A channel the broker closed (a publish to a missing exchange) stays closed: drop this one
/// and open another ([`abandon`](Self::abandon) gives back what was in flight).
///
/// ```no_run
/// use std::time::{Duration, Instant};
///
/// use pubsub_amqp::{AmqpConfig, ConfirmOutcome, ConfirmedChannel, Connection, Outgoing, Properties};
///
/// let mut connection = Connection::open(&AmqpConfig::from_env()?)?;
/// let mut channel = ConfirmedChannel::open(&mut connection)?;
/// let properties = Properties { message_id: Some("m-1".into()), ..Properties::default() };
/// let message = Outgoing {
///     exchange: "events",
///     routing_key: "order.created",
///     body: b"{}",
///     properties: &properties,
///     mandatory: true,
/// };
/// channel.publish(&connection, message, "m-1")?;
/// let mut settled = Vec::new();
/// let deadline = Instant::now() + Duration::from_secs(5);
/// let is_it = |id: &&str, r: &pubsub_amqp::Returned| r.message_id.as_deref() == Some(*id);
/// assert!(channel.wait_all(&connection, deadline, is_it, &mut settled)?);
/// assert!(matches!(settled[0].outcome, ConfirmOutcome::Confirmed | ConfirmOutcome::Returned { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConfirmedChannel<T> {
    channel: Channel,
    confirms: Confirms,
    returns: Returns,
    tracker: ConfirmTracker<T>,
}

impl<T> ConfirmedChannel<T> {
    /// Opens a channel on `connection`, listens for its returns and turns confirms on.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`](crate::Error::ConnectionLost) if the connection is gone.
    pub fn open(connection: &mut Connection) -> Result<Self> {
        let channel = connection.open_channel()?;
        let returns = channel.listen_for_returns()?;
        let confirms = channel.enable_confirms()?;
        Ok(ConfirmedChannel {
            channel,
            confirms,
            returns,
            tracker: ConfirmTracker::new(),
        })
    }

    /// The channel, for what is not publishing (declaring the exchange first, say).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `message` and records it in flight with `token`; returns its delivery tag.
    /// While the broker blocks `connection` (a resource alarm), it first waits, at most the
    /// connection's blocked-connection timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Blocked`](crate::Error::Blocked) once the connection has been blocked too
    /// long; as [`Channel::publish`] (nothing is in flight then).
    pub fn publish(
        &mut self,
        connection: &Connection,
        message: Outgoing<'_>,
        token: T,
    ) -> Result<u64> {
        wait_while_blocked(connection)?;
        self.channel.publish(
            message.exchange,
            message.routing_key,
            message.body,
            message.properties,
            message.mandatory,
        )?;
        Ok(self.tracker.published(token))
    }

    /// Settles every confirm (and return) already received, without waiting: appends what
    /// they settle to `settled` and returns how many confirms it took.
    ///
    /// # Errors
    ///
    /// Why the channel closed, if it did.
    pub fn poll(
        &mut self,
        connection: &Connection,
        is_it: impl FnMut(&T, &Returned) -> bool,
        settled: &mut Vec<Settled<T>>,
    ) -> Result<usize> {
        let (streams, tracker) = self.parts(connection);
        tracker.poll(streams, is_it, settled)
    }

    /// Waits for the next confirm until `deadline`, and appends what it settles to
    /// `settled`. Returns `false` if the deadline passed without one.
    ///
    /// # Errors
    ///
    /// [`Error::Blocked`](crate::Error::Blocked) once the connection has been blocked longer
    /// than its timeout; why the channel closed, if it did.
    pub fn wait(
        &mut self,
        connection: &Connection,
        deadline: Instant,
        is_it: impl FnMut(&T, &Returned) -> bool,
        settled: &mut Vec<Settled<T>>,
    ) -> Result<bool> {
        let (streams, tracker) = self.parts(connection);
        tracker.wait(streams, deadline, is_it, settled)
    }

    /// Waits until nothing is in flight, or `deadline` passes, appending what settles to
    /// `settled`. Returns `false` if the deadline passed first (what is still in flight
    /// stays so: [`abandon`](Self::abandon) it, or wait again).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); what settled before the error is in `settled`.
    pub fn wait_all(
        &mut self,
        connection: &Connection,
        deadline: Instant,
        mut is_it: impl FnMut(&T, &Returned) -> bool,
        settled: &mut Vec<Settled<T>>,
    ) -> Result<bool> {
        while !self.tracker.is_empty() {
            let (streams, tracker) = self.parts(connection);
            if !tracker.wait(streams, deadline, &mut is_it, settled)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Forgets every message in flight and gives their tokens back, in tag order: a late
    /// confirm of one of them is ignored. See [`ConfirmTracker::abandon`].
    pub fn abandon(&mut self) -> Vec<(u64, T)> {
        self.tracker.abandon()
    }

    /// How many messages are in flight (published, not settled).
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Closes the channel (a round trip: a blocked broker does not answer it; close the
    /// connection first then, or just drop the channel).
    ///
    /// # Errors
    ///
    /// As [`Channel::close`].
    pub fn close(self) -> Result<()> {
        self.channel.close()
    }

    /// The streams the tracker reads, and the tracker.
    fn parts<'a>(
        &'a mut self,
        connection: &'a Connection,
    ) -> (ConfirmStreams<'a>, &'a mut ConfirmTracker<T>) {
        let ConfirmedChannel {
            channel,
            confirms,
            returns,
            tracker,
        } = self;
        let streams = ConfirmStreams {
            connection,
            channel,
            confirms,
            returns,
        };
        (streams, tracker)
    }
}

impl<T> fmt::Debug for ConfirmedChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmedChannel")
            .field("channel", &self.channel.id())
            .field("in_flight", &self.tracker.len())
            .field("next_tag", &self.tracker.next_tag())
            .finish()
    }
}
