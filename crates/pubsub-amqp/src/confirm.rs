//! [`ConfirmTracker`]: publisher confirms and returns settled into per-message outcomes.
//!
//! The tracker is sans-I/O: it is told what was published, which confirms and returns came,
//! and answers with [`Settled`] messages. It never touches a socket or a clock, so every
//! sequence of confirms (single, `multiple`, nacks, duplicates, unknown tags, returns before
//! confirms) is a unit test. [`ConfirmTracker::poll`] and [`ConfirmTracker::wait`] are the thin
//! I/O edge: they move a channel's [`Confirms`] and [`Returns`] into the tracker, bounded by a
//! deadline and by the connection's blocked-connection timeout ([`check_blocked`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::channel::{Channel, Confirm, Confirms, Returned, Returns};
use crate::connection::Connection;
use crate::error::{Error, Result};

/// How often [`ConfirmTracker::wait`] and [`wait_while_blocked`] look at the connection's
/// blocked state while they wait.
const POLL: Duration = Duration::from_millis(50);

/// What became of one published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The broker took responsibility for it (ack, and not returned).
    Confirmed,
    /// The broker refused it (nack).
    Nacked,
    /// The broker could route it to no queue (`basic.return` of a `mandatory` publish), then
    /// acked it.
    Returned {
        /// The AMQP reply code (312 NO_ROUTE).
        reply_code: u16,
        /// The broker's text.
        reply_text: String,
    },
}

/// A published message whose fate is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled<T> {
    /// Its delivery tag (the sequence number [`ConfirmTracker::published`] gave it).
    pub tag: u64,
    /// The caller's token given to [`ConfirmTracker::published`].
    pub token: T,
    /// What became of it.
    pub outcome: ConfirmOutcome,
}

/// The confirm bookkeeping of one channel in confirm mode: which messages are in flight, and
/// what the broker's confirms and returns say about them.
///
/// Delivery tags count the publishes of a channel from 1, so a tracker belongs to one channel:
/// create it when confirms are turned on ([`Channel::enable_confirms`]) and call
/// [`published`](Self::published) after every publish on that channel. A new channel needs a
/// new tracker.
///
/// Returns are matched to publishes by the caller's rule (`is_it`: the message id, the
/// destination): the broker sends a message's `basic.return` before its confirm, so a return
/// marks the earliest in-flight message it matches that is not marked yet, and the confirm
/// then settles that message as [`ConfirmOutcome::Returned`]. A nack wins over a return.
///
/// Confirms and returns that match nothing in flight (a duplicate, a message
/// [`abandon`](Self::abandon)ed earlier) are ignored.
///
/// ```
/// use pubsub_amqp::{Confirm, ConfirmOutcome, ConfirmTracker};
///
/// let mut tracker = ConfirmTracker::new();
/// assert_eq!(tracker.published("a"), 1);
/// assert_eq!(tracker.published("b"), 2);
/// let settled = tracker.confirmed(Confirm { delivery_tag: 2, multiple: true, ack: true });
/// assert_eq!(settled.len(), 2);
/// assert!(settled.iter().all(|s| s.outcome == ConfirmOutcome::Confirmed));
/// assert!(tracker.is_empty());
/// ```
pub struct ConfirmTracker<T> {
    next_tag: u64,
    pending: BTreeMap<u64, Pending<T>>,
}

struct Pending<T> {
    token: T,
    returned: Option<(u16, String)>,
}

impl<T> ConfirmTracker<T> {
    /// A tracker for a channel on which confirms were just turned on: the next publish gets
    /// tag 1.
    pub fn new() -> Self {
        ConfirmTracker {
            next_tag: 1,
            pending: BTreeMap::new(),
        }
    }

    /// Records a publish (call it right after [`Channel::publish`] succeeded) and returns its
    /// delivery tag.
    pub fn published(&mut self, token: T) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.pending.insert(
            tag,
            Pending {
                token,
                returned: None,
            },
        );
        tag
    }

    /// Records a message the broker returned: marks the earliest in-flight message, not
    /// marked yet, for which `is_it` holds. Returns whether one matched.
    pub fn returned(
        &mut self,
        returned: &Returned,
        mut is_it: impl FnMut(&T, &Returned) -> bool,
    ) -> bool {
        let hit = self
            .pending
            .values_mut()
            .find(|p| p.returned.is_none() && is_it(&p.token, returned));
        match hit {
            Some(p) => {
                p.returned = Some((returned.reply_code, returned.reply_text.clone()));
                true
            }
            None => false,
        }
    }

    /// Settles the messages a confirm covers: its own tag, and with `multiple` every earlier
    /// one still in flight. They are returned in tag order (none for an unknown or repeated
    /// tag).
    pub fn confirmed(&mut self, confirm: Confirm) -> Vec<Settled<T>> {
        let mut settled = Vec::new();
        self.settle(confirm, &mut settled);
        settled
    }

    /// [`confirmed`](Self::confirmed), appending to `settled`.
    fn settle(&mut self, confirm: Confirm, settled: &mut Vec<Settled<T>>) {
        let outcome = |returned: Option<(u16, String)>| match returned {
            _ if !confirm.ack => ConfirmOutcome::Nacked,
            Some((reply_code, reply_text)) => ConfirmOutcome::Returned {
                reply_code,
                reply_text,
            },
            None => ConfirmOutcome::Confirmed,
        };
        if confirm.multiple {
            let rest = match confirm.delivery_tag.checked_add(1) {
                Some(after) => self.pending.split_off(&after),
                None => BTreeMap::new(),
            };
            let done = std::mem::replace(&mut self.pending, rest);
            settled.extend(done.into_iter().map(|(tag, p)| Settled {
                tag,
                token: p.token,
                outcome: outcome(p.returned),
            }));
        } else if let Some(p) = self.pending.remove(&confirm.delivery_tag) {
            settled.push(Settled {
                tag: confirm.delivery_tag,
                token: p.token,
                outcome: outcome(p.returned),
            });
        }
    }

    /// Forgets every message in flight and gives their tokens back, in tag order: for a wait
    /// that gave up (a timeout, a lost channel). Tags keep counting; a late confirm or return
    /// for a forgotten message is ignored.
    pub fn abandon(&mut self) -> Vec<(u64, T)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(tag, p)| (tag, p.token))
            .collect()
    }

    /// How many messages are in flight (published, not settled).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The tag the next publish will get.
    pub fn next_tag(&self) -> u64 {
        self.next_tag
    }

    /// Takes every confirm and return already received on `streams`, without waiting,
    /// appends what they settle to `settled`, and returns how many confirms it took.
    ///
    /// # Errors
    ///
    /// Why the channel closed ([`Channel::why_closed`]), if its confirm stream ended.
    pub fn poll(
        &mut self,
        streams: ConfirmStreams<'_>,
        mut is_it: impl FnMut(&T, &Returned) -> bool,
        settled: &mut Vec<Settled<T>>,
    ) -> Result<usize> {
        let mut taken = 0;
        loop {
            match streams.confirms.try_recv() {
                Ok(Some(confirm)) => {
                    self.take(streams, confirm, &mut is_it, settled);
                    taken += 1;
                }
                Ok(None) => return Ok(taken),
                Err(_) => return Err(streams.channel.why_closed()),
            }
        }
    }

    /// Waits until the next confirm arrives or `deadline` passes, and appends what it settles
    /// to `settled`. Returns `false` if the deadline passed without a confirm.
    ///
    /// # Errors
    ///
    /// [`Error::Blocked`] once the connection has been blocked longer than its
    /// blocked-connection timeout (see [`check_blocked`]); why the channel closed, if its
    /// confirm stream ended.
    pub fn wait(
        &mut self,
        streams: ConfirmStreams<'_>,
        deadline: Instant,
        mut is_it: impl FnMut(&T, &Returned) -> bool,
        settled: &mut Vec<Settled<T>>,
    ) -> Result<bool> {
        loop {
            check_blocked(streams.connection)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match streams.confirms.recv_timeout(left.min(POLL)) {
                Ok(Some(confirm)) => {
                    self.take(streams, confirm, &mut is_it, settled);
                    return Ok(true);
                }
                Ok(None) => continue,
                Err(_) => return Err(streams.channel.why_closed()),
            }
        }
    }

    /// Settles one confirm, after the returns received before it (the broker returns a
    /// message before it confirms it; a drain may take returns of later confirms too, which
    /// stay marked until theirs come).
    fn take(
        &mut self,
        streams: ConfirmStreams<'_>,
        confirm: Confirm,
        is_it: &mut impl FnMut(&T, &Returned) -> bool,
        settled: &mut Vec<Settled<T>>,
    ) {
        while let Some(r) = streams.returns.try_recv() {
            log::debug!(
                "broker returned a message published to `{}` with `{}`: {} {}",
                r.exchange,
                r.routing_key,
                r.reply_code,
                r.reply_text
            );
            self.returned(&r, &mut *is_it);
        }
        self.settle(confirm, settled);
    }
}

impl<T> Default for ConfirmTracker<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for ConfirmTracker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmTracker")
            .field("next_tag", &self.next_tag)
            .field("in_flight", &self.pending.len())
            .finish()
    }
}

/// What [`ConfirmTracker::poll`] and [`ConfirmTracker::wait`] read: the confirm and return
/// streams of one channel in confirm mode, the channel (to ask why it closed) and its
/// connection (to check whether it is blocked).
#[derive(Debug, Clone, Copy)]
pub struct ConfirmStreams<'a> {
    /// The connection the channel is on.
    pub connection: &'a Connection,
    /// The publishing channel.
    pub channel: &'a Channel,
    /// Its confirms ([`Channel::enable_confirms`]).
    pub confirms: &'a Confirms,
    /// Its returns ([`Channel::listen_for_returns`]).
    pub returns: &'a Returns,
}

/// Fails with [`Error::Blocked`] once the broker has blocked `connection` (a resource alarm)
/// for longer than its configured blocked-connection timeout.
///
/// # Errors
///
/// [`Error::Blocked`], with the broker's reason and how long it has been blocked.
pub fn check_blocked(connection: &Connection) -> Result<()> {
    match connection.blocked() {
        Some(blocked) => blocked_past(
            blocked.reason,
            blocked.since.elapsed(),
            connection.config().blocked_connection_timeout(),
        ),
        None => Ok(()),
    }
}

/// Waits while the broker blocks `connection` (a resource alarm), at most its
/// blocked-connection timeout: for a publisher about to publish more.
///
/// # Errors
///
/// [`Error::Blocked`] once the connection has been blocked longer than its timeout.
pub fn wait_while_blocked(connection: &Connection) -> Result<()> {
    while connection.blocked().is_some() {
        check_blocked(connection)?;
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The blocked-connection decision: an error once `waited` reaches `timeout`.
fn blocked_past(reason: String, waited: Duration, timeout: Duration) -> Result<()> {
    if waited >= timeout {
        Err(Error::Blocked { reason, waited })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One thing the tracker is told.
    #[derive(Clone, Copy)]
    enum Step {
        /// A publish, with its message id as the token.
        Publish(&'static str),
        /// A return of the message with this id.
        Return(&'static str),
        /// A confirm: tag, multiple, ack.
        Confirm(u64, bool, bool),
        /// Give up on everything in flight.
        Abandon,
    }
    use Step::*;

    const ACK: bool = true;
    const NACK: bool = false;
    const ONE: bool = false;
    const MULTI: bool = true;

    /// Runs the steps and returns everything settled, as `tag token outcome` words
    /// (`ok`, `nack`, `ret`), plus `abandoned tag token` for [`Abandon`] and the number in
    /// flight at the end.
    fn run(steps: &[Step]) -> (Vec<String>, usize) {
        let mut tracker = ConfirmTracker::new();
        let mut seen = Vec::new();
        for step in steps {
            match *step {
                Publish(id) => {
                    let expected = tracker.next_tag();
                    assert_eq!(tracker.published(id), expected);
                }
                Return(id) => {
                    let returned = Returned {
                        reply_code: 312,
                        reply_text: "NO_ROUTE".to_owned(),
                        exchange: "events".to_owned(),
                        routing_key: "a.b".to_owned(),
                        message_id: Some(id.to_owned()),
                    };
                    tracker.returned(&returned, |token, r| r.message_id.as_deref() == Some(token));
                }
                Confirm(delivery_tag, multiple, ack) => {
                    let confirm = crate::Confirm {
                        delivery_tag,
                        multiple,
                        ack,
                    };
                    for s in tracker.confirmed(confirm) {
                        let outcome = match s.outcome {
                            ConfirmOutcome::Confirmed => "ok",
                            ConfirmOutcome::Nacked => "nack",
                            ConfirmOutcome::Returned {
                                reply_code: 312,
                                ref reply_text,
                            } if reply_text == "NO_ROUTE" => "ret",
                            ConfirmOutcome::Returned { .. } => "bad return",
                        };
                        seen.push(format!("{} {} {outcome}", s.tag, s.token));
                    }
                }
                Abandon => {
                    for (tag, token) in tracker.abandon() {
                        seen.push(format!("abandoned {tag} {token}"));
                    }
                }
            }
        }
        (seen, tracker.len())
    }

    fn check(steps: &[Step], expected: &[&str], in_flight: usize) {
        let (seen, left) = run(steps);
        assert_eq!(seen, expected, "steps settled differently");
        assert_eq!(left, in_flight, "messages left in flight");
    }

    #[test]
    fn single_confirms() {
        check(&[Publish("a"), Confirm(1, ONE, ACK)], &["1 a ok"], 0);
        check(&[Publish("a"), Confirm(1, ONE, NACK)], &["1 a nack"], 0);
        check(
            &[Publish("a"), Publish("b"), Confirm(1, ONE, ACK)],
            &["1 a ok"],
            1,
        );
        // Out of order.
        check(
            &[
                Publish("a"),
                Publish("b"),
                Publish("c"),
                Confirm(3, ONE, ACK),
                Confirm(1, ONE, NACK),
                Confirm(2, ONE, ACK),
            ],
            &["3 c ok", "1 a nack", "2 b ok"],
            0,
        );
    }

    #[test]
    fn multiple_confirms() {
        let three = [Publish("a"), Publish("b"), Publish("c")];
        check(
            &[&three[..], &[Confirm(2, MULTI, ACK)]].concat(),
            &["1 a ok", "2 b ok"],
            1,
        );
        check(
            &[&three[..], &[Confirm(3, MULTI, NACK)]].concat(),
            &["1 a nack", "2 b nack", "3 c nack"],
            0,
        );
        // A multiple confirm skips what an earlier single one settled.
        check(
            &[&three[..], &[Confirm(2, ONE, ACK), Confirm(3, MULTI, ACK)]].concat(),
            &["2 b ok", "1 a ok", "3 c ok"],
            0,
        );
        // Past the last publish: everything in flight.
        check(
            &[&three[..], &[Confirm(99, MULTI, ACK)]].concat(),
            &["1 a ok", "2 b ok", "3 c ok"],
            0,
        );
        check(
            &[Publish("a"), Confirm(u64::MAX, MULTI, ACK)],
            &["1 a ok"],
            0,
        );
    }

    #[test]
    fn duplicate_and_unknown_confirms_settle_nothing() {
        check(&[Confirm(1, ONE, ACK), Confirm(5, MULTI, NACK)], &[], 0);
        check(&[Confirm(0, ONE, ACK), Confirm(0, MULTI, ACK)], &[], 0);
        check(
            &[
                Publish("a"),
                Confirm(1, ONE, ACK),
                Confirm(1, ONE, NACK),
                Confirm(1, MULTI, ACK),
                Confirm(7, ONE, ACK),
            ],
            &["1 a ok"],
            0,
        );
        check(
            &[
                Publish("a"),
                Publish("b"),
                Confirm(2, ONE, ACK),
                Confirm(2, MULTI, ACK),
            ],
            &["2 b ok", "1 a ok"],
            0,
        );
    }

    #[test]
    fn returns_before_confirms() {
        check(
            &[Publish("a"), Return("a"), Confirm(1, ONE, ACK)],
            &["1 a ret"],
            0,
        );
        // A nack wins over a return.
        check(
            &[Publish("a"), Return("a"), Confirm(1, ONE, NACK)],
            &["1 a nack"],
            0,
        );
        // Within a multiple confirm, only the returned one.
        check(
            &[
                Publish("a"),
                Publish("b"),
                Publish("c"),
                Return("b"),
                Confirm(3, MULTI, ACK),
            ],
            &["1 a ok", "2 b ret", "3 c ok"],
            0,
        );
        // A return drained early (before the confirm of an earlier message) waits for its own.
        check(
            &[
                Publish("a"),
                Publish("b"),
                Return("b"),
                Confirm(1, ONE, ACK),
                Confirm(2, ONE, ACK),
            ],
            &["1 a ok", "2 b ret"],
            0,
        );
    }

    #[test]
    fn returns_mark_the_earliest_unmarked_match() {
        // The same message published twice, returned once: the first copy.
        check(
            &[
                Publish("a"),
                Publish("a"),
                Return("a"),
                Confirm(2, MULTI, ACK),
            ],
            &["1 a ret", "2 a ok"],
            0,
        );
        // Returned twice: both copies; a third return matches nothing.
        check(
            &[
                Publish("a"),
                Publish("a"),
                Return("a"),
                Return("a"),
                Return("a"),
                Confirm(2, MULTI, ACK),
            ],
            &["1 a ret", "2 a ret"],
            0,
        );
        // A return of a message not in flight (already settled, or never published) is
        // ignored.
        check(
            &[
                Publish("a"),
                Confirm(1, ONE, ACK),
                Return("a"),
                Return("z"),
                Publish("b"),
                Confirm(2, ONE, ACK),
            ],
            &["1 a ok", "2 b ok"],
            0,
        );
    }

    #[test]
    fn abandoned_messages_are_forgotten() {
        check(
            &[
                Publish("a"),
                Publish("b"),
                Confirm(1, ONE, ACK),
                Abandon,
                // Late confirm and return of the abandoned message.
                Return("b"),
                Confirm(2, ONE, ACK),
                // Tags keep counting.
                Publish("c"),
                Confirm(3, MULTI, ACK),
            ],
            &["1 a ok", "abandoned 2 b", "3 c ok"],
            0,
        );
        check(&[Abandon], &[], 0);
    }

    #[test]
    fn returned_reports_a_match() {
        let mut tracker = ConfirmTracker::new();
        tracker.published(1);
        let returned = Returned {
            reply_code: 312,
            reply_text: "NO_ROUTE".to_owned(),
            exchange: String::new(),
            routing_key: "gone".to_owned(),
            message_id: None,
        };
        assert!(tracker.returned(&returned, |_, r| r.routing_key == "gone"));
        assert!(!tracker.returned(&returned, |_, r| r.routing_key == "gone"));
    }

    #[test]
    fn blocked_decision() {
        let check = |waited: u64, timeout: u64, blocked: bool| {
            let got = blocked_past(
                "low on memory".to_owned(),
                Duration::from_secs(waited),
                Duration::from_secs(timeout),
            );
            match got {
                Err(Error::Blocked { reason, waited: w }) if blocked => {
                    assert_eq!(reason, "low on memory");
                    assert_eq!(w, Duration::from_secs(waited));
                }
                Ok(()) if !blocked => {}
                other => panic!("waited {waited}s of {timeout}s: {other:?}"),
            }
        };
        check(0, 60, false);
        check(59, 60, false);
        check(60, 60, true);
        check(61, 60, true);
        check(0, 0, true);
    }
}
