//! The relay: one thread that publishes what the outbox's committed transactions staged,
//! with the broker's confirms, and deletes each row once its event is confirmed.
//!
//! On SQLite a deletion needs the database's write lock, which a service's commit holds while
//! it waits for the disk. The relay does not wait for it while events wait to be published:
//! it keeps the confirmed rows' ids, leaves them out of its next claims, and deletes them
//! at a later step when the lock is free (or waits for it once it kept a batch's worth, and
//! when it stops). A crash in between publishes their events again, as a crash between the
//! confirm and the deletion always could.
//!
//! It consumes nothing, so it is not a consumer definition on the worker pool: it is a
//! publishing thread with its own connection (an `EventPublisher`, as the bus's publishing
//! thread), started and stopped by the bus beside the pool.

pub(crate) mod pace;
pub(crate) mod store;

#[cfg(feature = "postgres")]
mod listen;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pubsub_amqp::{AmqpConfig, Connection};
use pubsub_core::{json, Event};
use pubsub_publisher::{EventPublisher, PublishError, PublishOptions, Unroutable};

use self::pace::{renew_lease, Pace, Step, Wait};
use self::store::{Row, Store};
use crate::error::{Error, Result};
use crate::outbox::Outbox;

/// How many rows the relay publishes in one batch unless told otherwise.
pub const DEFAULT_BATCH: usize = 500;
/// How often a relay looks at the outbox when nothing woke it, unless told otherwise.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// How long a relay's lease lasts unless renewed: a standby takes over within this after the
/// holder dies.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// The lease all the relays of one outbox share.
const LEASE_NAME: &str = "relay";

/// Settings of a relay, from [`Outbox::relay`].
#[derive(Clone)]
pub struct RelayBuilder {
    outbox: Outbox,
    amqp: AmqpConfig,
    exchange: String,
    app_id: Option<String>,
    unroutable: Unroutable,
    batch: usize,
    poll: Duration,
    lease: Duration,
}

impl Outbox {
    /// A relay that publishes this outbox's events to `exchange` on the broker of `amqp`:
    /// [`start`](RelayBuilder::start) it (the bus's `.outbox(...)` does).
    pub fn relay(&self, amqp: &AmqpConfig, exchange: &str) -> RelayBuilder {
        RelayBuilder {
            outbox: self.clone(),
            amqp: amqp.clone(),
            exchange: exchange.to_owned(),
            app_id: None,
            unroutable: Unroutable::default(),
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            lease: DEFAULT_LEASE,
        }
    }
}

impl RelayBuilder {
    /// The `app_id` its messages carry (the service's name).
    #[must_use]
    pub fn app_id(mut self, app_id: &str) -> Self {
        self.app_id = Some(app_id.to_owned());
        self
    }

    /// What becomes of an event no queue receives (as the publisher's setting).
    #[must_use]
    pub fn unroutable(mut self, unroutable: Unroutable) -> Self {
        self.unroutable = unroutable;
        self
    }

    /// How many rows one batch publishes (pipelined confirms) ([`DEFAULT_BATCH`]).
    #[must_use]
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows;
        self
    }

    /// How often the relay looks at the outbox when no commit woke it ([`DEFAULT_POLL`]):
    /// the longest an event committed without the outbox's knowledge (on SQLite, a
    /// transaction committed by another process, or with `tx.commit()` instead of
    /// [`Outbox::commit`]) waits. PostgreSQL's commits always wake it.
    #[must_use]
    pub fn poll(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// How long the relay's lease lasts unless renewed ([`DEFAULT_LEASE`]): the longest a
    /// standby relay waits to take over from one that died.
    #[must_use]
    pub fn lease(mut self, term: Duration) -> Self {
        self.lease = term;
        self
    }

    /// Starts the relay on its own thread, with its own connections to the database and the
    /// broker (and on PostgreSQL a listener thread for the commits' notifications).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero batch, poll interval or lease; [`Error::Store`]
    /// when the database cannot be reached; [`Error::Publisher`] when the broker cannot;
    /// [`Error::Spawn`].
    pub fn start(self) -> Result<RunningRelay> {
        if self.batch == 0 || self.poll.is_zero() || self.lease.is_zero() {
            return Err(Error::InvalidConfig {
                message: "a relay's batch, poll interval and lease must not be zero".into(),
            });
        }
        let store = Store::open(self.outbox.database())?;
        let name = format!(
            "{} outbox relay",
            self.app_id.as_deref().unwrap_or("pubsub")
        );
        let connection = Connection::open(&self.amqp.clone().with_connection_name(&name))?;
        let mut publisher =
            EventPublisher::builder(connection, &self.exchange).unroutable(self.unroutable);
        if let Some(app_id) = &self.app_id {
            publisher = publisher.app_id(app_id);
        }
        let publisher = publisher.build()?;
        let stop = Arc::new(AtomicBool::new(false));
        #[cfg(feature = "postgres")]
        let listener = if self.outbox.database().is_postgres() {
            Some(listen::spawn(self.outbox.clone(), stop.clone())?)
        } else {
            None
        };
        let counters = Arc::new(Counters::default());
        let (stopper, stopped) = crossbeam_channel::bounded(1);
        let relay = Relay {
            wakes: self.outbox.wakes(),
            owner: uuid::Uuid::new_v4().to_string(),
            store: Some(store),
            outbox: self.outbox,
            publisher,
            batch: self.batch,
            lease: self.lease,
            held_since: None,
            confirmed: Vec::new(),
            pace: Pace::new(self.poll, self.lease),
            counters: counters.clone(),
            stop: stop.clone(),
            stopped,
        };
        let thread = thread::Builder::new()
            .name("pubsub-outbox-relay".into())
            .spawn(move || relay.run())
            .map_err(Error::Spawn)?;
        log::info!("outbox relay started, publishing to `{}`", self.exchange);
        Ok(RunningRelay {
            thread: Some(thread),
            stop,
            stopper,
            counters,
            #[cfg(feature = "postgres")]
            listener,
        })
    }
}

impl fmt::Debug for RelayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("outbox", &self.outbox)
            .field("broker", &self.amqp.redacted_url())
            .field("exchange", &self.exchange)
            .field("batch", &self.batch)
            .field("poll", &self.poll)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// What a relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Events the broker confirmed (their rows deleted, or on SQLite about to be, when the
    /// database's write lock is free).
    pub published: u64,
    /// Batches published.
    pub batches: u64,
    /// Steps that failed (the database or the broker): their events stayed staged.
    pub failures: u64,
    /// Rows set aside as unreadable (see [`Outbox::set_aside`]).
    pub set_aside: u64,
}

impl fmt::Display for RelayStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} published in {} batch(es), {} failure(s), {} set aside",
            self.published, self.batches, self.failures, self.set_aside
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    batches: AtomicU64,
    failures: AtomicU64,
    set_aside: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RelayStats {
        RelayStats {
            published: self.published.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            set_aside: self.set_aside.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A started relay. Dropping it stops it (see [`stop`](Self::stop)).
pub struct RunningRelay {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    stopper: Sender<()>,
    counters: Arc<Counters>,
    #[cfg(feature = "postgres")]
    listener: Option<JoinHandle<()>>,
}

impl RunningRelay {
    /// Its counters now.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// Whether its thread runs (it ends only when stopped, or on a panic).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the relay: it publishes what is committed by now (one last batch), gives its
    /// lease up (a standby takes over at once), and its thread is joined.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] if its thread panicked.
    pub fn stop(mut self) -> Result<RelayStats> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> Result<RelayStats> {
        self.stop.store(true, Ordering::Release);
        let _ = self.stopper.try_send(());
        let mut panicked = false;
        if let Some(thread) = self.thread.take() {
            panicked |= thread.join().is_err();
        }
        #[cfg(feature = "postgres")]
        if let Some(listener) = self.listener.take() {
            panicked |= listener.join().is_err();
        }
        if panicked {
            return Err(Error::Panicked);
        }
        Ok(self.counters.snapshot())
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.stop_now() {
                log::error!("{e}");
            }
        }
    }
}

impl fmt::Debug for RunningRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningRelay")
            .field("running", &self.is_running())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The relay's thread.
struct Relay {
    outbox: Outbox,
    wakes: Receiver<()>,
    owner: String,
    /// `None` after the connection broke: reopened at the next step.
    store: Option<Store>,
    publisher: EventPublisher,
    batch: usize,
    lease: Duration,
    held_since: Option<Instant>,
    /// Rows whose events the broker confirmed, not deleted yet: SQLite's write lock was
    /// taken (a service's commit waiting for the disk), and the relay did not wait for it.
    /// Left out of its claims until deleted.
    confirmed: Vec<i64>,
    pace: Pace,
    counters: Arc<Counters>,
    /// Set when the relay is to stop; `stopped` interrupts its waits.
    stop: Arc<AtomicBool>,
    stopped: Receiver<()>,
}

impl Relay {
    fn run(mut self) {
        let mut last = Step::Drained;
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            // On a stop, one last batch publishes what is committed by now, unless the last
            // step failed (the broker or the database is away: the events stay staged).
            if stopping && last == Step::Failed {
                break;
            }
            let step = self.step();
            last = step;
            if stopping {
                break;
            }
            match self.pace.after(step) {
                None => {}
                Some(Wait::Wakeable(wait)) => {
                    crossbeam_channel::select! {
                        recv(self.wakes) -> _ => {}
                        recv(self.stopped) -> _ => {}
                        default(wait) => {}
                    }
                }
                Some(Wait::Backoff(wait)) => {
                    crossbeam_channel::select! {
                        recv(self.stopped) -> _ => {}
                        default(wait) => {}
                    }
                }
            }
        }
        if let (Some(store), false) = (self.store.as_mut(), self.confirmed.is_empty()) {
            if let Err(e) = store.delete(&self.confirmed, true) {
                log::warn!("{e}: their events will be published again");
            }
        }
        if let (Some(store), Some(_)) = (self.store.as_mut(), self.held_since) {
            if let Err(e) = store.release_lease(LEASE_NAME, &self.owner) {
                log::warn!("{e}");
            }
        }
        if let Err(e) = self.publisher.close() {
            log::debug!("closing the outbox relay's connection: {e}");
        }
        log::info!("outbox relay stopped: {}", self.counters.snapshot());
    }

    /// Takes the lease if due, then publishes one batch.
    fn step(&mut self) -> Step {
        match self.try_step() {
            Ok(step) => step,
            Err(e) => {
                Counters::add(&self.counters.failures, 1);
                log::warn!("outbox relay: {}", pubsub_core::text::error_chain(&e));
                if let Error::Store(store) = &e {
                    if store.is_connection() {
                        self.store = None;
                        self.held_since = None;
                    }
                }
                Step::Failed
            }
        }
    }

    fn try_step(&mut self) -> Result<Step> {
        let store = match &mut self.store {
            Some(store) => store,
            None => self.store.insert(Store::open(self.outbox.database())?),
        };
        if renew_lease(self.held_since.map(|t| t.elapsed()), self.lease) {
            let asked = Instant::now();
            if !store.take_lease(LEASE_NAME, &self.owner, self.lease)? {
                if self.held_since.take().is_some() {
                    log::warn!("outbox relay: another relay took the lease");
                }
                return Ok(Step::Standby);
            }
            self.held_since = Some(asked);
        }
        delete_confirmed(store, &mut self.confirmed, false)?;
        let rows = store.claim(self.batch + self.confirmed.len())?;
        let rows = unpublished(rows, &self.confirmed, self.batch);
        if rows.is_empty() {
            return Ok(Step::Drained);
        }
        let full = rows.len() == self.batch;
        let (ready, unreadable) = decode(rows);
        for (id, reason) in &unreadable {
            log::error!("outbox row {id} set aside: {reason}");
            store.set_aside(*id, reason)?;
            Counters::add(&self.counters.set_aside, 1);
        }
        crate::fault::pause_at("relay-before-publish");
        let (events, options): (Vec<Event>, Vec<PublishOptions>) =
            ready.iter().map(|(_, e, o)| (e.clone(), o.clone())).unzip();
        let outcomes = self.publisher.publish_each(&events, &options);
        crate::fault::pause_at("relay-after-publish");
        let settled = settle(&outcomes);
        let sent = settled.sent.len();
        self.confirmed
            .extend(settled.sent.iter().map(|&i| ready[i].0));
        let wait = wait_to_delete(self.confirmed.len(), self.batch);
        delete_confirmed(store, &mut self.confirmed, wait)?;
        Counters::add(&self.counters.published, sent);
        Counters::add(&self.counters.batches, 1);
        match settled.error {
            Some(e) => Err(Error::Publisher(e)),
            None if full => Ok(Step::Full),
            None => Ok(Step::Drained),
        }
    }
}

/// Deletes the rows in `confirmed`, waiting for SQLite's write lock if `wait`; what the
/// lock kept stays in `confirmed`.
fn delete_confirmed(store: &mut Store, confirmed: &mut Vec<i64>, wait: bool) -> Result<()> {
    if !confirmed.is_empty() && store.delete(confirmed, wait)? {
        confirmed.clear();
    }
    Ok(())
}

/// Whether the relay waits for SQLite's write lock to delete the rows it has confirmed
/// (pure). The lock is held by a service's commit waiting for the disk, and SQLite's wait
/// sleeps in steps of 1, 2, 5, 10 ms, which the event that commit stages would wait for too
/// (that was the p99 of `just bench --outbox` on SQLite): the relay tries again at its next
/// step (the commit's wake-up, or its poll). It waits only once it kept `batch` rows or more,
/// where its claims would read mostly rows it already published.
fn wait_to_delete(kept: usize, batch: usize) -> bool {
    kept >= batch
}

/// The claimed rows whose events are not published yet (pure): those in `confirmed` left
/// out, at most `limit`, in id order.
fn unpublished(rows: Vec<Row>, confirmed: &[i64], limit: usize) -> Vec<Row> {
    if confirmed.is_empty() {
        return rows.into_iter().take(limit).collect();
    }
    let confirmed: std::collections::HashSet<i64> = confirmed.iter().copied().collect();
    rows.into_iter()
        .filter(|r| !confirmed.contains(&r.id))
        .take(limit)
        .collect()
}

/// The rows' events and options, and the rows that no longer decode (with why).
type Decoded = (Vec<(i64, Event, PublishOptions)>, Vec<(i64, String)>);

fn decode(rows: Vec<Row>) -> Decoded {
    let mut ready = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        match json::from_str(&row.body) {
            Ok(event) => ready.push((
                row.id,
                event,
                PublishOptions {
                    correlation_id: row.correlation_id,
                    causation_id: row.causation_id,
                    ..PublishOptions::default()
                },
            )),
            Err(e) => unreadable.push((row.id, format!("its body is not an event: {e}"))),
        }
    }
    (ready, unreadable)
}

/// What the broker's answers mean for the rows of a batch.
#[derive(Debug)]
struct Settled {
    /// The rows whose events are published (confirmed, or confirmed with no queue to
    /// receive them): deleted.
    sent: Vec<usize>,
    /// The first failure: the other rows stay staged and are published again later.
    error: Option<pubsub_publisher::Error>,
}

/// Decides which rows of a batch are sent (pure). An event no queue receives is sent: the
/// broker confirmed it, and publishing it again would change nothing.
fn settle(outcomes: &[std::result::Result<(), PublishError>]) -> Settled {
    let mut sent = Vec::with_capacity(outcomes.len());
    let mut error = None;
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(()) => sent.push(i),
            Err(e) if matches!(e.error(), pubsub_publisher::Error::Unroutable { .. }) => {
                sent.push(i);
            }
            Err(e) => {
                error.get_or_insert_with(|| e.error().clone());
            }
        }
    }
    Settled { sent, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_rows_are_sent() {
        let event = Event::new("a", "b", serde_json::json!({})).unwrap();
        let failed = |e: pubsub_publisher::Error| Err(PublishError::new(event.clone(), e));
        let unroutable = pubsub_publisher::Error::Unroutable {
            exchange: "x".into(),
            routing_key: "a.b".into(),
        };
        type Outcomes = Vec<std::result::Result<(), PublishError>>;
        // (outcomes, rows sent, a failure)
        let table: Vec<(Outcomes, Vec<usize>, bool)> = vec![
            (vec![], vec![], false),
            (vec![Ok(()), Ok(())], vec![0, 1], false),
            (
                vec![Ok(()), failed(pubsub_publisher::Error::Nacked), Ok(())],
                vec![0, 2],
                true,
            ),
            (vec![failed(unroutable), Ok(())], vec![0, 1], false),
        ];
        for (outcomes, sent, error) in table {
            let settled = settle(&outcomes);
            assert_eq!(settled.sent, sent);
            assert_eq!(settled.error.is_some(), error);
        }
    }

    #[test]
    fn the_relay_waits_for_the_lock_only_once_it_kept_a_batch() {
        // (rows kept, batch) -> wait
        let table = [
            ((0, 500), false),
            ((3, 500), false),
            ((499, 500), false),
            ((500, 500), true),
            ((900, 500), true),
            ((1, 1), true),
        ];
        for ((kept, batch), wait) in table {
            assert_eq!(wait_to_delete(kept, batch), wait, "{kept} {batch}");
        }
    }

    #[test]
    fn rows_published_and_not_deleted_yet_are_not_claimed_again() {
        let row = |id| Row {
            id,
            body: String::new(),
            correlation_id: None,
            causation_id: None,
        };
        let ids = |rows: Vec<Row>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let rows = || (1..=6).map(row).collect::<Vec<_>>();
        assert_eq!(ids(unpublished(rows(), &[], 4)), [1, 2, 3, 4]);
        assert_eq!(ids(unpublished(rows(), &[1, 2, 4], 4)), [3, 5, 6]);
        assert_eq!(ids(unpublished(rows(), &[2], 2)), [1, 3]);
        assert!(unpublished(rows(), &[1, 2, 3, 4, 5, 6], 4).is_empty());
    }

    #[test]
    fn rows_that_no_longer_decode_are_set_aside() {
        let event = Event::new("a", "b", serde_json::json!({ "k": 1 })).unwrap();
        let row = |id, body: &str| Row {
            id,
            body: body.to_owned(),
            correlation_id: Some("c".into()),
            causation_id: None,
        };
        let body = String::from_utf8(json::to_vec(&event)).unwrap();
        let (ready, unreadable) = decode(vec![row(1, &body), row(2, "{not json"), row(3, &body)]);
        assert_eq!(ready.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(ready[0].1, event);
        assert_eq!(ready[0].2.correlation_id.as_deref(), Some("c"));
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].0, 2);
    }
}
