//! [`EventSubscriber`]: setup, the reconnecting consume loop, stopping.

use std::fmt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use pubsub_amqp::{AmqpConfig, Connection, ExchangeConfig, QueueConfig, ReconnectPolicy};
use pubsub_core::envelope::Envelope;
use pubsub_registry::{HandlerRegistry, Pattern};

use crate::context::Context;
use crate::decode::Decoder;
use crate::dispatch::Dispatcher;
use crate::error::{chain, Error, Result};
use crate::recovery::{self, SessionRun};
use crate::report::DeliveryReport;
use crate::session::{Session, SessionEnd};
use crate::settings::{dead_letter_queue_name, Dispatching, RetryPolicy, Settings};
use crate::sink::{BoxedSink, Failure, Sink};
use crate::stats::{Counters, StatsHandle, SubscriberStats};
use crate::topology::Topology;

/// Consumes events from one queue and runs the matching handlers of a [`HandlerRegistry`].
///
/// # Topology
///
/// [`setup`](Self::setup) (also run by [`start_consuming`](Self::start_consuming) and after
/// every reconnect) declares, idempotently:
///
/// - the exchange (a durable topic exchange, unless told not to);
/// - the queue, with the given [`QueueConfig`], plus `x-dead-letter-exchange=""` and
///   `x-dead-letter-routing-key=<queue>.dlq` so that whatever the broker itself
///   dead-letters (a reject, an expired message, an overflow) also reaches the dead-letter
///   queue;
/// - the dead-letter queue `<queue>.dlq`;
/// - one delay queue per retry delay, `<queue>.retry.<delay>` (see [`RetryPolicy`]);
/// - the queue's bindings: exactly [`HandlerRegistry::bindings`], plus any key given to
///   [`setup_queue`](Self::setup_queue).
///
/// # Acknowledgements
///
/// Every delivery is settled exactly once:
///
/// - all matching handlers succeeded, or none matched: ack;
/// - the body is not a valid event (not UTF-8, not JSON, a field missing or mistyped, a
///   content type other than JSON, larger than the maximum, an unsupported major version):
///   published to the dead-letter queue with the reason in headers, then acked, never
///   retried;
/// - a handler failed or panicked: published to the delay queue with the retry state in
///   headers, then acked; it comes back after the delay and only the handlers that failed run
///   again. After the last attempt it is published to the dead-letter queue with the failed
///   handlers, the last error, the attempt count and the first failure time.
///
/// Publishes to the retry and dead-letter queues are confirmed before the original is acked:
/// a crash in between duplicates a message, never loses one. Acks are batched (`multiple`)
/// while more deliveries are waiting, and sent at once when the queue goes quiet.
///
/// # Threads and stopping
///
/// The subscriber owns its connection; run it on its own thread ([`spawn`](Self::spawn)
/// does). A [`StopHandle`] stops it from another thread: the delivery in progress finishes
/// and is acked, nothing new starts, the consumer is cancelled and the channel and
/// connection closed; unprocessed prefetched deliveries go back to the queue.
///
/// # Recovery
///
/// When its connection or channel dies (broker restart, closed connection, missed
/// heartbeats, cancelled consumer), the subscriber reconnects with backoff, declares its
/// topology again and resumes; unacknowledged deliveries come back from the broker. Errors
/// that reconnecting cannot fix (credentials, vhost, inequivalent queue arguments) are
/// returned instead.
pub struct EventSubscriber {
    config: AmqpConfig,
    connection: Option<Connection>,
    queue: String,
    exchange: String,
    registry: Arc<HandlerRegistry>,
    settings: Settings,
    /// The keys to bind instead of the registry's, when given.
    bindings: Option<Vec<String>>,
    extra_bindings: Vec<String>,
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
    counters: Arc<Counters>,
    sink: Option<BoxedSink>,
}

/// Builds an [`EventSubscriber`]; see [`EventSubscriber::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SubscriberBuilder {
    connection: Connection,
    queue: String,
    exchange: String,
    registry: Arc<HandlerRegistry>,
    settings: Settings,
    envelope_patterns: Vec<(String, Envelope)>,
    bindings: Option<Vec<String>>,
    sink: Option<BoxedSink>,
}

impl SubscriberBuilder {
    /// Keeps the events the subscriber acks in `sink`, committed before each ack (see
    /// [`Sink`]): an event store, an inbox table.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sink = Some(BoxedSink(Box::new(sink)));
        self
    }

    /// The exchange to bind the queue to (`events` by default).
    pub fn exchange(mut self, exchange: &str) -> Self {
        self.exchange = exchange.to_owned();
        self
    }

    /// The exchange's settings to declare it with (a durable topic exchange by default), or
    /// `None` to use an existing one as is.
    pub fn declare_exchange(mut self, config: Option<ExchangeConfig>) -> Self {
        self.settings.declare_exchange = config;
        self
    }

    /// Binds the queue to exactly these keys instead of what the registry's patterns need:
    /// for a direct exchange, where a key is matched literally and a registry pattern such
    /// as `task.*` means nothing (seed 003's task queue binds one key per task). Dispatch
    /// still goes by the registry's patterns. [`setup_queue`](EventSubscriber::setup_queue)
    /// adds more keys.
    pub fn bindings<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.bindings = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// The queue's settings (durable, not exclusive, not auto-delete by default).
    pub fn queue_config(mut self, config: QueueConfig) -> Self {
        self.settings.queue_config = config;
        self
    }

    /// How many unacknowledged deliveries the broker may send ahead (100 by default; at
    /// least 1). Higher is faster; the consumer holds up to this many messages in memory.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.settings.prefetch = prefetch.max(1);
        self
    }

    /// How failed events are retried ([`RetryPolicy::default`]: 3 attempts, 1 s and 5 s
    /// apart).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self
    }

    /// Whether to declare the dead-letter queue and route the queue's own dead letters to it
    /// (on by default). Off, a message that would be dead-lettered is rejected without
    /// requeue instead: the broker drops it unless the queue has its own dead-letter exchange.
    pub fn dead_letter(mut self, enabled: bool) -> Self {
        self.settings.dead_letter = enabled;
        self
    }

    /// Consumes a queue that another service declared (a Python service of the seeds, with
    /// `durable=True` and its own arguments, or none) as it is: the queue is looked up with a
    /// passive declare instead of being declared, so its arguments never conflict. Retries
    /// and the dead-letter queue keep working: the subscriber republishes to
    /// `<queue>.retry.<delay>` and `<queue>.dlq` (declared as usual) and needs no argument
    /// on the queue. Only the queue's own dead-lettering of rejected messages (the rare
    /// case where the broker refuses a republished copy) is then the queue's business.
    ///
    /// Off by default: the subscriber declares its queue, with dead-letter arguments, and a
    /// queue that exists with other arguments fails with
    /// [`pubsub_amqp::Error::Inequivalent`]. On, a queue that does not exist fails with
    /// [`pubsub_amqp::Error::NotFound`], and a queue another connection holds exclusively
    /// with [`pubsub_amqp::Error::ChannelClosed`] (RESOURCE_LOCKED): those are the cases
    /// where consuming it is impossible. A quorum queue's delivery count is used only when
    /// [`queue_config`](Self::queue_config) says `x-queue-type=quorum` (a passive declare
    /// does not tell the queue's type).
    pub fn existing_queue(mut self, existing: bool) -> Self {
        self.settings.existing_queue = existing;
        self
    }

    /// The envelope the queue's messages come in ([`Envelope::Standard`], seed 000's six
    /// fields, by default); see [`pubsub_core::envelope`]. Handlers receive the same
    /// [`Event`](pubsub_core::Event) whichever the envelope.
    pub fn envelope(mut self, envelope: Envelope) -> Self {
        self.settings.decoder.envelope = envelope;
        self
    }

    /// The envelope of the messages whose routing key matches `pattern` (a registry pattern,
    /// AMQP topic semantics), for a queue that receives several kinds: the first matching
    /// pattern wins, other messages use [`envelope`](Self::envelope). This does not bind the
    /// queue: handlers' patterns and [`EventSubscriber::setup_queue`] do.
    pub fn envelope_for(mut self, pattern: &str, envelope: Envelope) -> Self {
        self.envelope_patterns.push((pattern.to_owned(), envelope));
        self
    }

    /// The largest body accepted (16 MiB by default); larger ones are dead-lettered as
    /// poison.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.settings.decoder.max_body_size = bytes;
        self
    }

    /// Dead-letters as poison the events whose major version is not in `versions` (by
    /// default every version is accepted, and typed handlers check their own).
    pub fn supported_major_versions(mut self, versions: &[u64]) -> Self {
        self.settings.decoder.supported_major_versions = Some(versions.to_vec());
        self
    }

    /// How many times a message may be delivered without being acknowledged before it is
    /// dead-lettered (10 by default). Counted by quorum queues only (`x-delivery-count`):
    /// it stops a message that crashes the consumer from looping forever.
    pub fn max_redeliveries(mut self, max: u32) -> Self {
        self.settings.max_redeliveries = max.max(1);
        self
    }

    /// Makes the queue, its delay queues and its dead-letter queue quorum queues: replicated
    /// over a cluster's nodes, so that a node failure loses no message (off by default).
    ///
    /// The broker then counts deliveries: a message delivered
    /// [`max_redeliveries`](Self::max_redeliveries) times without an ack is dead-lettered by
    /// the subscriber with its reason, or by the broker (`x-delivery-limit`) if the consumer
    /// dies on that delivery too. The delay queues dead-letter back at least once. A queue
    /// that already exists as a classic queue cannot become a quorum queue: delete it first
    /// (its messages with it), or keep classic queues.
    pub fn quorum(mut self, enabled: bool) -> Self {
        self.settings.quorum = enabled;
        self
    }

    /// How to reconnect after the connection dies (forever by default: a consumer should not
    /// give up on its own).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.settings.reconnect = policy;
        self
    }

    /// Sends a [`DeliveryReport`] for every delivery once it is settled. The subscriber never
    /// blocks on the observer: if a bounded channel is full the report is dropped (with a
    /// warning).
    pub fn observer(mut self, reports: Sender<DeliveryReport>) -> Self {
        self.settings.observer = Some(reports);
        self
    }

    /// Runs the handlers through `dispatcher` (an async runtime, say) instead of on the
    /// subscriber's thread: each decoded delivery is handed over as a [`Job`](crate::Job),
    /// the subscriber keeps consuming up to the prefetch (which bounds the jobs in flight),
    /// and settles each delivery when its job answers, in any order, as it settles the others
    /// (retries, dead letters, acks). The registry's handlers are not run; bind the queue
    /// with [`bindings`](Self::bindings). A stop waits up to `drain` for the jobs in flight,
    /// then leaves the rest to the broker, which delivers them again.
    pub fn dispatcher(mut self, dispatcher: Arc<dyn Dispatcher>, drain: Duration) -> Self {
        self.settings.dispatcher = Some(Dispatching { dispatcher, drain });
        self
    }

    /// Builds the subscriber. Nothing is declared yet: see [`EventSubscriber::setup`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty or over-long queue name, an empty exchange name,
    /// a queue configuration the broker would refuse, or an invalid pattern given to
    /// [`envelope_for`](Self::envelope_for).
    pub fn build(mut self) -> Result<EventSubscriber> {
        for (pattern, envelope) in std::mem::take(&mut self.envelope_patterns) {
            let parsed = Pattern::parse(&pattern).map_err(|e| Error::InvalidConfig {
                message: format!("envelope_for({pattern:?}): {e}"),
            })?;
            self.settings.decoder.envelopes.push((parsed, envelope));
        }
        let invalid = |message: String| Err(Error::InvalidConfig { message });
        if self.queue.is_empty() {
            return invalid("the queue name must not be empty".to_owned());
        }
        // The longest derived name is `<queue>.retry.<delay>`; names are at most 255 bytes.
        if self.queue.len() > 200 {
            return invalid(format!(
                "queue name `{}...` is longer than 200 bytes (its retry queues need room)",
                &self.queue.chars().take(40).collect::<String>()
            ));
        }
        if let Some(key) = self
            .bindings
            .iter()
            .flatten()
            .find(|k| k.is_empty() || k.len() > 255)
        {
            return invalid(format!("invalid binding key {key:?}"));
        }
        if self.exchange.is_empty() {
            return invalid(
                "the exchange name must not be empty (the default exchange cannot be bound)"
                    .to_owned(),
            );
        }
        self.settings
            .queue_config
            .validate(&self.queue)
            .map_err(Error::Amqp)?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        Ok(EventSubscriber {
            config: self.connection.config().clone(),
            connection: Some(self.connection),
            queue: self.queue,
            exchange: self.exchange,
            registry: self.registry,
            settings: self.settings,
            bindings: self.bindings,
            extra_bindings: Vec::new(),
            stop_tx,
            stop_rx,
            counters: Arc::default(),
            sink: self.sink,
        })
    }
}

/// The prefetch of a subscriber unless its builder sets another
/// ([`SubscriberBuilder::prefetch`]): deliveries unacked at once, and twice the commit batch.
pub const DEFAULT_PREFETCH: u16 = 100;

/// The settings a new builder starts from.
pub(crate) fn default_settings() -> Settings {
    Settings {
        queue_config: QueueConfig::default(),
        declare_exchange: Some(ExchangeConfig::default()),
        prefetch: DEFAULT_PREFETCH,
        retry: RetryPolicy::default(),
        dead_letter: true,
        existing_queue: false,
        decoder: Decoder {
            max_body_size: 16 << 20,
            supported_major_versions: None,
            envelope: Envelope::Standard,
            envelopes: Vec::new(),
        },
        max_redeliveries: 10,
        quorum: false,
        reconnect: ReconnectPolicy::default().forever(),
        observer: None,
        dispatcher: None,
    }
}

impl EventSubscriber {
    /// A subscriber in the original design's shape; the builder offers more settings.
    ///
    /// # Errors
    ///
    /// As [`SubscriberBuilder::build`].
    pub fn new(
        connection: Connection,
        queue: &str,
        registry: Arc<HandlerRegistry>,
        exchange: &str,
        queue_config: QueueConfig,
        prefetch: u16,
    ) -> Result<Self> {
        Self::builder(connection, queue, registry)
            .exchange(exchange)
            .queue_config(queue_config)
            .prefetch(prefetch)
            .build()
    }

    /// Starts configuring a subscriber that owns `connection`, consumes `queue` and
    /// dispatches to `registry`.
    pub fn builder(
        connection: Connection,
        queue: &str,
        registry: Arc<HandlerRegistry>,
    ) -> SubscriberBuilder {
        SubscriberBuilder {
            connection,
            queue: queue.to_owned(),
            exchange: "events".to_owned(),
            registry,
            envelope_patterns: Vec::new(),
            settings: default_settings(),
            bindings: None,
            sink: None,
        }
    }

    /// The queue this subscriber consumes.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The name of its dead-letter queue.
    pub fn dead_letter_queue(&self) -> String {
        dead_letter_queue_name(&self.queue)
    }

    /// The binding keys the queue gets: the registry's (or those given to
    /// [`SubscriberBuilder::bindings`]), then the extra ones.
    pub fn bindings(&self) -> Vec<String> {
        let mut keys = match &self.bindings {
            Some(keys) => keys.clone(),
            None => self.registry.bindings(),
        };
        for key in &self.extra_bindings {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        keys
    }

    /// Declares the topology (see [`EventSubscriber`]) and binds the queue to exactly the
    /// keys the registry's handlers need.
    ///
    /// # Errors
    ///
    /// [`Error::Amqp`]: the connection is gone, or the queue or exchange exists with other
    /// arguments ([`pubsub_amqp::Error::Inequivalent`] names them).
    pub fn setup(&mut self) -> Result<()> {
        let bindings = self.bindings();
        let topology = Topology {
            queue: &self.queue,
            exchange: &self.exchange,
            bindings: &bindings,
            settings: &self.settings,
        };
        let connection = connection_mut(&mut self.connection, &self.config)?;
        let channel = topology.declare_on(connection)?;
        let _ = channel.close();
        Ok(())
    }

    /// Adds a binding key (any topic pattern the broker understands, e.g. `#`) to the
    /// registry's, then declares the topology as [`setup`](Self::setup) does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty key, else as [`setup`](Self::setup).
    pub fn setup_queue(&mut self, binding_key: &str) -> Result<()> {
        if binding_key.is_empty() || binding_key.len() > 255 {
            return Err(Error::InvalidConfig {
                message: format!("invalid binding key {binding_key:?}"),
            });
        }
        if !self.extra_bindings.iter().any(|k| k == binding_key) {
            self.extra_bindings.push(binding_key.to_owned());
        }
        self.setup()
    }

    /// A handle that stops this subscriber from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            tx: self.stop_tx.clone(),
        }
    }

    /// A handle that reads this subscriber's counters from any thread.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            counters: self.counters.clone(),
        }
    }

    /// Declares the topology, then consumes until stopped, reconnecting when the connection
    /// dies. Blocks the calling thread.
    ///
    /// Returns the final counters once stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Amqp`] when the topology cannot be declared (inequivalent arguments), the
    /// credentials or vhost are refused, or the reconnect policy gave up. The error is also
    /// logged.
    pub fn start_consuming(&mut self) -> Result<SubscriberStats> {
        let result = self.consume_until_stopped();
        let stats = self.counters.snapshot();
        match &result {
            Ok(_) => log::info!("subscriber of `{}` stopped: {stats}", self.queue),
            Err(e) => log::error!(
                "subscriber of `{}` stopped on error: {}; {stats}",
                self.queue,
                chain(e)
            ),
        }
        result.map(|()| stats)
    }

    /// Runs [`start_consuming`](Self::start_consuming) on a new thread.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the operating system cannot start the thread.
    pub fn spawn(mut self) -> Result<RunningSubscriber> {
        let stop = self.stop_handle();
        let stats = self.stats_handle();
        let name = format!(
            "pubsub-sub-{}",
            self.queue.chars().take(20).collect::<String>()
        );
        // The thread holds the sender: it is dropped when the thread ends, however it ends
        // (returned or panicked), which wakes `wait_timeout`.
        let (ended_tx, ended) = crossbeam_channel::bounded::<()>(0);
        let join = thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _ended = ended_tx;
                self.start_consuming()
            })
            .map_err(|e| Error::Spawn {
                message: e.to_string(),
            })?;
        Ok(RunningSubscriber {
            stop,
            stats,
            join: Some(join),
            ended,
        })
    }

    fn consume_until_stopped(&mut self) -> Result<()> {
        let bindings = self.bindings();
        let cx = Context {
            topology: Topology {
                queue: &self.queue,
                exchange: &self.exchange,
                bindings: &bindings,
                settings: &self.settings,
            },
            config: &self.config,
            registry: &self.registry,
            stop: &self.stop_rx,
            counters: &self.counters,
            quorum: self.settings.is_quorum(),
        };
        let mut backoff = None;
        let mut last_failure: Option<String> = None;
        loop {
            let end = match self.connection.take() {
                Some(connection) => Session::run(
                    cx,
                    connection,
                    self.sink.as_mut().map(|s| &mut *s.0 as &mut dyn Sink),
                ),
                None => SessionEnd::Failed {
                    error: Failure::Amqp(pubsub_amqp::Error::ConnectionLost {
                        reason: "no connection".to_owned(),
                    }),
                    run: SessionRun::default(),
                },
            };
            let error = match end {
                SessionEnd::Stopped => return Ok(()),
                SessionEnd::Failed { error, .. } if error.is_permanent() => {
                    return Err(error.into())
                }
                SessionEnd::Failed { error, run } => {
                    let failure = chain(&error);
                    let same = last_failure.as_deref() == Some(failure.as_str());
                    if recovery::starts_new_outage(&run, same) {
                        backoff = None;
                    } else if run.consumed_for.is_some() {
                        log::warn!(
                            "subscriber of `{}` failed again right after it resumed consuming ({} settled): backing off further",
                            self.queue,
                            run.settled
                        );
                    }
                    last_failure = Some(failure);
                    error
                }
            };
            let backoff = backoff.get_or_insert_with(|| self.settings.reconnect.start());
            let Some(delay) = backoff.next_delay() else {
                log::error!(
                    "subscriber of `{}` gives up reconnecting after {:.0}s",
                    self.queue,
                    backoff.elapsed().as_secs_f64()
                );
                return Err(error.into());
            };
            log::warn!(
                "subscriber of `{}`: {}; reconnecting in {:.1}s",
                self.queue,
                chain(&error),
                delay.as_secs_f64()
            );
            if self.stop_rx.recv_timeout(delay).is_ok() {
                return Ok(());
            }
            match Connection::open(&self.config.clone().with_connection_attempts(1)) {
                Ok(connection) => {
                    Counters::add(&self.counters.reconnects, 1);
                    log::info!("subscriber of `{}` reconnected", self.queue);
                    self.connection = Some(connection);
                }
                Err(e) if e.is_permanent() => return Err(Error::Amqp(e)),
                Err(e) => log::warn!(
                    "subscriber of `{}`: reconnecting failed: {}",
                    self.queue,
                    chain(&e)
                ),
            }
        }
    }
}

/// The subscriber's connection, opened again if it is gone.
fn connection_mut<'c>(
    connection: &'c mut Option<Connection>,
    config: &AmqpConfig,
) -> Result<&'c mut Connection> {
    if connection.is_none() {
        *connection = Some(Connection::open(config)?);
    }
    connection.as_mut().ok_or_else(|| {
        Error::Amqp(pubsub_amqp::Error::ConnectionLost {
            reason: "no connection".to_owned(),
        })
    })
}

impl fmt::Debug for EventSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSubscriber")
            .field("broker", &self.config.redacted_url())
            .field("queue", &self.queue)
            .field("exchange", &self.exchange)
            .field("bindings", &self.bindings())
            .field("prefetch", &self.settings.prefetch)
            .field("retry", &self.settings.retry)
            .finish_non_exhaustive()
    }
}

/// Stops a subscriber from another thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct StopHandle {
    tx: Sender<()>,
}

impl StopHandle {
    /// Asks the subscriber to stop: it finishes the delivery in progress, acks it, and
    /// returns from `start_consuming`. Asking twice is harmless.
    pub fn stop(&self) {
        let _ = self.tx.try_send(());
    }
}

/// A subscriber running on its own thread; see [`EventSubscriber::spawn`].
///
/// Dropping it stops the subscriber and joins its thread.
#[derive(Debug)]
pub struct RunningSubscriber {
    stop: StopHandle,
    stats: StatsHandle,
    join: Option<JoinHandle<Result<SubscriberStats>>>,
    /// Disconnected when the thread has ended.
    ended: Receiver<()>,
}

impl RunningSubscriber {
    /// A handle to stop it from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Its counters now.
    pub fn stats(&self) -> SubscriberStats {
        self.stats.snapshot()
    }

    /// A handle that reads its counters from any thread.
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Whether its thread has ended (stopped, or failed).
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops it gracefully and waits for its thread: returns the final counters, or the
    /// error that had stopped it.
    ///
    /// # Errors
    ///
    /// The error that ended the subscriber, or [`Error::Panicked`].
    pub fn stop(mut self) -> Result<SubscriberStats> {
        self.stop.stop();
        self.join()
    }

    /// Waits for the thread to end by itself (on error), without asking it to stop.
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop).
    pub fn join(&mut self) -> Result<SubscriberStats> {
        match self.join.take() {
            Some(join) => join.join().unwrap_or(Err(Error::Panicked)),
            None => Ok(self.stats.snapshot()),
        }
    }

    /// Waits up to `timeout` for the thread to end; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<SubscriberStats>> {
        if self.join.is_some() {
            // Nothing is ever sent: the channel disconnects when the thread ends.
            if let Err(RecvTimeoutError::Timeout) = self.ended.recv_timeout(timeout) {
                return None;
            }
        }
        Some(self.join())
    }
}

impl Drop for RunningSubscriber {
    fn drop(&mut self) {
        if self.join.is_some() {
            self.stop.stop();
            if let Err(e) = self.join() {
                log::debug!("dropped subscriber ended with: {e}");
            }
        }
    }
}
