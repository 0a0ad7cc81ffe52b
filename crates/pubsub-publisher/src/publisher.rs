//! [`EventPublisher`]: confirmed publishing with pipelined batches and reconnection.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use pubsub_amqp::{
    wait_while_blocked, AmqpConfig, Backoff, Channel, ConfirmOutcome, ConfirmedChannel, Connection,
    Outgoing, Returned, Returns, Settled,
};
use pubsub_core::{Event, Migration};
use uuid::Uuid;

use crate::error::{Error, PublishError, Result};
use crate::message::{properties, publish_key, write_body, PublishOptions};
use crate::recovery::{recover, Recovery};
use crate::settings::{Settings, Unroutable};
use crate::stats::{Counters, StatsHandle};

/// Publishes events to an exchange, routed by their routing key, and waits for the broker to
/// confirm them.
///
/// Each event is sent as persistent JSON (`content_type=application/json`) with
/// `message_id` = its event id, `timestamp`, `type` = its routing key, `app_id` = the
/// publishing service's name if set, and an optional `correlation_id`.
///
/// With publisher confirms (the default), [`publish`](Self::publish) returns `Ok` only once
/// the broker has taken responsibility for the event. A negative confirm, a channel error (a
/// missing exchange), or a connection that cannot be restored before the reconnect deadline is
/// a [`PublishError`] that gives the event back. When the connection dies, the publisher
/// reconnects (bounded exponential backoff) and republishes the unconfirmed events itself.
/// [`publish_all`](Self::publish_all) pipelines: it sends a whole batch, then collects the
/// confirms.
///
/// While the broker blocks the connection (a resource alarm), a publish waits at most the
/// configured blocked-connection timeout, then fails with
/// [`pubsub_amqp::Error::Blocked`].
///
/// A publisher owns its connection: it is `Send` but not `Sync`; give each publishing thread
/// its own.
pub struct EventPublisher {
    config: AmqpConfig,
    exchange: String,
    settings: Settings,
    session: Option<Session>,
    body: Vec<u8>,
    counters: Arc<Counters>,
}

/// One live connection with its publishing channel. The connection is dropped first: its
/// bounded close cuts the socket if the broker does not answer, which then lets the
/// channel's own close return.
struct Session {
    connection: Connection,
    channel: Publishing,
}

/// The publishing channel of a session.
enum Publishing {
    /// With confirms (the default): the events in flight, by index in the batch being
    /// published.
    Confirmed(ConfirmedChannel<usize>),
    /// Without confirms ([`PublisherBuilder::confirms`](crate::PublisherBuilder::confirms)`(false)`); its returns are listened
    /// for, so that the client library does not log each one.
    Unconfirmed { channel: Channel, _returns: Returns },
}

impl Session {
    /// Closes the connection, then drops the channel: the connection's close is bounded (it
    /// cuts the socket when the broker does not answer, as under a resource alarm), while the
    /// channel's close is a round trip that a blocked broker never answers.
    fn close(self) -> pubsub_amqp::Result<()> {
        let Session {
            connection,
            channel,
            ..
        } = self;
        let closed = connection.close();
        drop(channel);
        closed
    }
}

impl EventPublisher {
    /// Opens the publishing channel on `connection`, declares the exchange and turns
    /// confirms on ([`PublisherBuilder::build`](crate::PublisherBuilder::build)).
    pub(crate) fn open(
        connection: Connection,
        exchange: String,
        settings: Settings,
    ) -> Result<EventPublisher> {
        let session = open_session(connection, &exchange, &settings)?;
        Ok(EventPublisher {
            config: session.connection.config().clone(),
            exchange,
            settings,
            session: Some(session),
            body: Vec::with_capacity(512),
            counters: Arc::default(),
        })
    }

    /// The exchange this publisher publishes to.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The publishing service's name, sent as `app_id` ([`PublisherBuilder::app_id`](crate::PublisherBuilder::app_id)).
    pub fn app_id(&self) -> Option<&str> {
        self.settings.app_id.as_deref()
    }

    /// A handle that reads this publisher's counters from any thread.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            counters: self.counters.clone(),
        }
    }

    /// Publishes one event and waits for the broker's confirm.
    ///
    /// # Errors
    ///
    /// A [`PublishError`] with the event and the reason; see [`EventPublisher`].
    pub fn publish(&mut self, event: &Event) -> Result<(), PublishError> {
        self.publish_with(event, &PublishOptions::default())
    }

    /// Publishes one event with options (a correlation id) and waits for the confirm.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_with(
        &mut self,
        event: &Event,
        options: &PublishOptions,
    ) -> Result<(), PublishError> {
        let events = std::slice::from_ref(event);
        match self.run(events, Options::Same(options), &[]).pop() {
            Some(Some(Err(e))) => Err(PublishError::new(event.clone(), e)),
            _ => Ok(()),
        }
    }

    /// Publishes many events with pipelined confirms (the whole batch is sent, then the
    /// confirms are collected) and returns one outcome per event, in order.
    ///
    /// This is the fast path: it costs about one round trip for the batch instead of one
    /// per event.
    pub fn publish_all(&mut self, events: &[Event]) -> Vec<Result<(), PublishError>> {
        self.publish_all_with(events, &PublishOptions::default())
    }

    /// Publishes the old and the new version of one fact ([`Migration`]: same event id,
    /// routing keys `domain.action` and `domain.action.vN`) in one batch with pipelined
    /// confirms, as seed 002 asks while consumers move to the new routing key.
    ///
    /// # Errors
    ///
    /// A [`PublishError`] giving back the first version the broker did not confirm (the old
    /// one first); the other may or may not have been confirmed. Publishing the migration
    /// again is safe: both versions keep their shared event id, so idempotent consumers see
    /// the fact once.
    pub fn publish_migration(&mut self, migration: &Migration) -> Result<(), PublishError> {
        self.publish_all(migration.events())
            .into_iter()
            .find_map(std::result::Result::err)
            .map_or(Ok(()), Err)
    }

    /// [`publish_all`](Self::publish_all) with options applied to every event.
    pub fn publish_all_with(
        &mut self,
        events: &[Event],
        options: &PublishOptions,
    ) -> Vec<Result<(), PublishError>> {
        let outcomes = self.run(events, Options::Same(options), &[]);
        given_back(outcomes, events)
    }

    /// [`publish_all`](Self::publish_all) with options of its own for each event: `options[i]`
    /// goes with `events[i]` (an event without options gets the defaults). Pipelined like
    /// `publish_all`; one outcome per event, in order.
    pub fn publish_each(
        &mut self,
        events: &[Event],
        options: &[PublishOptions],
    ) -> Vec<Result<(), PublishError>> {
        let outcomes = self.run(events, Options::Each(options), &[]);
        given_back(outcomes, events)
    }

    /// [`publish_each`](Self::publish_each) with the body of each event given as it is sent:
    /// `bodies[i]`, when `Some`, is published byte for byte instead of `events[i]`'s encoding
    /// (a replay of what a store received). The properties and headers are still those of
    /// `events[i]` and `options[i]` (its id as `message_id`, its timestamp, `type`); an event
    /// without a body (`None`, or past the end of `bodies`) is encoded in the publisher's
    /// envelope as usual. Pipelined, confirmed and republished after a reconnect like
    /// `publish_each`; one outcome per event, in order.
    pub fn publish_each_body(
        &mut self,
        events: &[Event],
        bodies: &[Option<&[u8]>],
        options: &[PublishOptions],
    ) -> Vec<Result<(), PublishError>> {
        let outcomes = self.run(events, Options::Each(options), bodies);
        given_back(outcomes, events)
    }

    /// Closes the connection (bounded: a broker that does not answer gets its socket cut).
    ///
    /// # Errors
    ///
    /// [`Error::Amqp`] if the connection was already broken.
    pub fn close(mut self) -> Result<()> {
        match self.session.take() {
            Some(session) => session.close().map_err(Error::Amqp),
            None => Ok(()),
        }
    }

    /// Publishes `events`, reconnecting and republishing the unconfirmed ones while the
    /// reconnect policy allows. `None` outcomes are successes (never left after the loop).
    /// `bodies[i]`, when given, is sent instead of the encoding of `events[i]`.
    fn run(
        &mut self,
        events: &[Event],
        options: Options<'_>,
        bodies: &[Option<&[u8]>],
    ) -> Vec<Option<Result<()>>> {
        // The producer spans end when the run does: once the broker answered.
        #[cfg(feature = "otel")]
        let traced = crate::trace::producers(&self.exchange, events, |i| options.get(i));
        #[cfg(feature = "otel")]
        let options = match &traced {
            Some((_spans, each)) => Options::Each(each),
            None => options,
        };
        let mut outcomes: Vec<Option<Result<()>>> = (0..events.len()).map(|_| None).collect();
        let mut backoff: Option<Backoff> = None;
        loop {
            let outstanding: Vec<usize> = (0..events.len())
                .filter(|&i| outcomes[i].is_none())
                .collect();
            if outstanding.is_empty() {
                return outcomes;
            }
            let error = match self.attempt(events, bodies, &outstanding, options, &mut outcomes) {
                Ok(()) => continue,
                Err(e) => e,
            };
            let error = match (error, self.session.take()) {
                (Error::Amqp(e), Some(session)) if e.is_connection_lost() => {
                    let closed = session.close().err();
                    Error::Amqp(pubsub_amqp::Error::more_precise(e, closed))
                }
                (error, session) => {
                    self.session = session;
                    error
                }
            };
            let reconnect = &self.settings.reconnect;
            let recovery = recover(&error, || {
                backoff
                    .get_or_insert_with(|| reconnect.start())
                    .next_delay()
            });
            match recovery {
                Recovery::Reconnect { after } => {
                    log::warn!(
                        "publishing to `{}` failed: {error}; reconnecting in {:.1}s ({} event(s) to republish)",
                        self.exchange,
                        after.as_secs_f64(),
                        outstanding.len()
                    );
                    thread::sleep(after);
                    continue;
                }
                // The next publish opens a new channel on the same connection.
                Recovery::ReopenChannel => self.reopen_channel(),
                Recovery::Fail => {}
            }
            log::error!(
                "publishing {} event(s) to `{}` failed: {error}",
                outstanding.len(),
                self.exchange
            );
            for &i in &outstanding {
                if outcomes[i].is_none() {
                    outcomes[i] = Some(Err(error.clone()));
                }
            }
            return outcomes;
        }
    }

    /// One try at publishing the outstanding events on the current session (opened first if
    /// needed). Settles every event it gets a confirm for; returns the error that stopped it.
    fn attempt(
        &mut self,
        events: &[Event],
        bodies: &[Option<&[u8]>],
        outstanding: &[usize],
        options: Options<'_>,
        outcomes: &mut [Option<Result<()>>],
    ) -> Result<()> {
        if self.session.is_none() {
            let connection = Connection::open(&self.config.clone().with_connection_attempts(1))?;
            let session = open_session(connection, &self.exchange, &self.settings)?;
            log::info!("publisher reconnected to `{}`", self.exchange);
            Counters::add(&self.counters.reconnects, 1);
            self.session = Some(session);
        }
        let Some(Session {
            connection,
            channel,
        }) = self.session.as_mut()
        else {
            return Ok(());
        };
        let mandatory = self.settings.unroutable != Unroutable::Ignore;
        // Whatever an attempt that failed left in flight belongs to it: later confirms of
        // those events no longer count.
        if let Publishing::Confirmed(confirmed) = channel {
            confirmed.abandon();
        }
        let window = self.settings.confirm_window;
        let mut batch = Batch {
            events,
            options,
            outcomes,
            exchange: &self.exchange,
            settings: &self.settings,
            counters: &self.counters,
            deadline: Instant::now() + self.settings.confirm_timeout,
            settled: Vec::new(),
        };
        for &i in outstanding {
            let event = &events[i];
            let options = options.get(i);
            let body: &[u8] = match bodies.get(i).copied().flatten() {
                Some(raw) => raw,
                None => {
                    self.body.clear();
                    write_body(event, &self.settings, options, &mut self.body);
                    &self.body
                }
            };
            let properties = properties(event, &self.settings, options);
            let message = Outgoing {
                exchange: &self.exchange,
                routing_key: publish_key(&self.settings, event, options),
                body,
                properties: &properties,
                mandatory,
            };
            let confirmed = match channel {
                Publishing::Confirmed(confirmed) => {
                    confirmed.publish(connection, message, i)?;
                    confirmed
                }
                Publishing::Unconfirmed { channel, .. } => {
                    wait_while_blocked(connection)?;
                    let m = message;
                    channel.publish(
                        m.exchange,
                        m.routing_key,
                        m.body,
                        m.properties,
                        m.mandatory,
                    )?;
                    Counters::add(&self.counters.published, 1);
                    batch.outcomes[i] = Some(Ok(()));
                    continue;
                }
            };
            Counters::add(&self.counters.published, 1);
            // A sliding window: settle what is confirmed already, and wait only while the
            // window is full, so that publishing and confirming overlap.
            batch.settle(connection, confirmed, Settle::Ready)?;
            while confirmed.in_flight() >= window {
                batch.settle(connection, confirmed, Settle::Next)?;
            }
        }
        let Publishing::Confirmed(channel) = channel else {
            return Ok(());
        };
        while !channel.is_empty() {
            batch.settle(connection, channel, Settle::Next)?;
        }
        Ok(())
    }

    fn reopen_channel(&mut self) {
        if let Some(session) = self.session.take() {
            let Session { mut connection, .. } = session;
            match open_channel(&mut connection, &self.settings) {
                Ok(channel) => {
                    self.session = Some(Session {
                        connection,
                        channel,
                    })
                }
                Err(e) => log::warn!("cannot reopen the publishing channel: {e}"),
            }
        }
    }
}

/// The options of a batch's events: one for all, or one each.
#[derive(Debug, Clone, Copy)]
enum Options<'a> {
    Same(&'a PublishOptions),
    Each(&'a [PublishOptions]),
}

impl Options<'_> {
    /// The options of event `i`.
    fn get(&self, i: usize) -> &PublishOptions {
        static DEFAULT: PublishOptions = PublishOptions {
            correlation_id: None,
            causation_id: None,
            event_type: None,
            source: None,
            routing_key: None,
            headers: BTreeMap::new(),
            trace: None,
            priority: None,
        };
        match self {
            Options::Same(options) => options,
            Options::Each(each) => each.get(i).unwrap_or(&DEFAULT),
        }
    }
}

/// Whether [`Batch::settle`] waits for a confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Only the confirms already received.
    Ready,
    /// Wait for the next confirm.
    Next,
}

/// One attempt's events and their outcomes, as the confirms settle them.
struct Batch<'a> {
    events: &'a [Event],
    options: Options<'a>,
    outcomes: &'a mut [Option<Result<()>>],
    exchange: &'a str,
    settings: &'a Settings,
    counters: &'a Counters,
    /// When waiting for a confirm gives up, unless one arrives.
    deadline: Instant,
    /// Scratch space for the tracker's settled events.
    settled: Vec<Settled<usize>>,
}

impl Batch<'_> {
    /// Settles the confirms already received ([`Settle::Ready`]), or waits for the next one
    /// ([`Settle::Next`], bounded by the confirm timeout and the blocked-connection timeout)
    /// and settles it.
    fn settle(
        &mut self,
        connection: &Connection,
        channel: &mut ConfirmedChannel<usize>,
        how: Settle,
    ) -> Result<()> {
        let events = self.events;
        // A return carries the event id as its message id.
        let is_it = |&i: &usize, r: &Returned| {
            r.message_id
                .as_deref()
                .and_then(|id| Uuid::try_parse(id).ok())
                .is_some_and(|id| id == events[i].event_id())
        };
        let confirmed = if how == Settle::Next {
            if !channel.wait(connection, self.deadline, is_it, &mut self.settled)? {
                return Err(pubsub_amqp::Error::Timeout {
                    what: "waiting for the broker's publisher confirms",
                    after: self.settings.confirm_timeout,
                }
                .into());
            }
            true
        } else {
            channel.poll(connection, is_it, &mut self.settled)? > 0
        };
        if confirmed {
            // The timeout measures the broker's silence, not the length of the batch.
            self.deadline = Instant::now() + self.settings.confirm_timeout;
        }
        for settled in self.settled.drain(..) {
            let event = &events[settled.token];
            self.outcomes[settled.token] = Some(match settled.outcome {
                ConfirmOutcome::Confirmed => {
                    Counters::add(&self.counters.confirmed, 1);
                    Ok(())
                }
                ConfirmOutcome::Nacked => {
                    Counters::add(&self.counters.nacked, 1);
                    Err(Error::Nacked)
                }
                ConfirmOutcome::Returned { .. } => {
                    Counters::add(&self.counters.returned, 1);
                    Counters::add(&self.counters.confirmed, 1);
                    unroutable(
                        event,
                        publish_key(self.settings, event, self.options.get(settled.token)),
                        self.exchange,
                        self.settings.unroutable,
                    )
                }
            });
        }
        Ok(())
    }
}

impl fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPublisher")
            .field("broker", &self.config.redacted_url())
            .field("exchange", &self.exchange)
            .field("connected", &self.session.is_some())
            .field("settings", &self.settings)
            .finish()
    }
}

fn open_session(
    mut connection: Connection,
    exchange: &str,
    settings: &Settings,
) -> Result<Session> {
    let channel = open_channel(&mut connection, settings)?;
    if let Some(config) = &settings.declare {
        channel.channel().declare_exchange(exchange, config)?;
    }
    Ok(Session {
        connection,
        channel,
    })
}

fn open_channel(connection: &mut Connection, settings: &Settings) -> Result<Publishing> {
    if settings.confirms {
        return Ok(Publishing::Confirmed(ConfirmedChannel::open(connection)?));
    }
    let channel = connection.open_channel()?;
    let returns = channel.listen_for_returns()?;
    Ok(Publishing::Unconfirmed {
        channel,
        _returns: returns,
    })
}

impl Publishing {
    /// The channel, for declaring.
    fn channel(&self) -> &Channel {
        match self {
            Publishing::Confirmed(confirmed) => confirmed.channel(),
            Publishing::Unconfirmed { channel, .. } => channel,
        }
    }
}

fn unroutable(event: &Event, routing_key: &str, exchange: &str, policy: Unroutable) -> Result<()> {
    match policy {
        Unroutable::Error => Err(Error::Unroutable {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
        }),
        Unroutable::Warn | Unroutable::Ignore => {
            log::warn!(
                "{event} reached no queue: nothing is bound to exchange `{exchange}` for `{routing_key}`"
            );
            Ok(())
        }
    }
}

/// One outcome per event: `Ok` unless its run failed, then the event given back with the error.
fn given_back(
    outcomes: Vec<Option<Result<()>>>,
    events: &[Event],
) -> Vec<Result<(), PublishError>> {
    outcomes
        .into_iter()
        .zip(events)
        .map(|(outcome, event)| match outcome {
            Some(Err(e)) => Err(PublishError::new(event.clone(), e)),
            _ => Ok(()),
        })
        .collect()
}
