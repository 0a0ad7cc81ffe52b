//! [`PublisherBuilder`] and the settings it sets.

use std::time::Duration;

use pubsub_amqp::{Connection, ExchangeConfig, ReconnectPolicy};
use pubsub_core::envelope::Envelope;

use crate::error::Result;
use crate::publisher::EventPublisher;
use crate::settings::{default_settings, Settings, Unroutable};

/// Builds an [`EventPublisher`]; see [`EventPublisher::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PublisherBuilder {
    connection: Connection,
    exchange: String,
    settings: Settings,
}

impl PublisherBuilder {
    /// Names the publishing service; sent as `app_id` with every event.
    pub fn app_id(mut self, app_id: &str) -> Self {
        self.settings.app_id = Some(app_id.to_owned());
        self
    }

    /// The envelope events are written in ([`Envelope::Standard`], seed 000's six fields, by
    /// default), for consumers that expect another: [`Envelope::Bare`] writes the `data`
    /// object alone (seed 002's services read the bare model; the routing key, `message_id`
    /// and `timestamp` properties carry the rest), [`Envelope::EventBus`] seed 004's envelope,
    /// with the `app_id` as its `source` (or [`PublishOptions::source`]) and
    /// [`PublishOptions::event_type`] as its `event_type` (`domain` when unset).
    ///
    /// [`PublishOptions::source`]: crate::PublishOptions::source
    /// [`PublishOptions::event_type`]: crate::PublishOptions::event_type
    pub fn envelope(mut self, envelope: Envelope) -> Self {
        self.settings.envelope = envelope;
        self
    }

    /// Turns publisher confirms on (the default) or off. Without confirms a publish returns
    /// as soon as the event is handed to the client library, and events in flight are lost
    /// if the connection fails.
    pub fn confirms(mut self, confirms: bool) -> Self {
        self.settings.confirms = confirms;
        self
    }

    /// What to do with events no queue receives; [`Unroutable::Warn`] by default.
    pub fn unroutable(mut self, unroutable: Unroutable) -> Self {
        self.settings.unroutable = unroutable;
        self
    }

    /// The exchange to declare before publishing (a durable topic exchange by default), or
    /// `None` to use an existing one as is.
    pub fn declare_exchange(mut self, config: Option<ExchangeConfig>) -> Self {
        self.settings.declare = config;
        self
    }

    /// How long to wait without any confirm from the broker, while some are due, before
    /// treating the connection as dead (30 s by default).
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.settings.confirm_timeout = timeout;
        self
    }

    /// How many events [`publish_all`](EventPublisher::publish_all) keeps in flight, published
    /// but not yet confirmed (1,000 by default; at least 1). Publishing and confirming
    /// overlap within this window; a larger one rides out slower confirms at the price of
    /// more events to publish again after a lost connection.
    pub fn confirm_window(mut self, window: usize) -> Self {
        self.settings.confirm_window = window.max(1);
        self
    }

    /// How to reconnect when the connection dies, and for how long a publish may keep
    /// trying (30 s by default).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.settings.reconnect = policy;
        self
    }

    /// Publishes every event straight into `queue`, through the default exchange, instead of
    /// to the exchange by its routing key: for replaying events to one service. Nothing is
    /// declared; an event that reaches no queue (no queue `queue`) is handled as
    /// [`unroutable`](Self::unroutable) says. The events keep their routing key in the `type`
    /// property, and a subscriber of that queue reads the key from the body.
    pub fn to_queue(mut self, queue: &str) -> Self {
        self.exchange = String::new();
        self.settings.declare = None;
        self.settings.to_queue = Some(queue.to_owned());
        self
    }

    /// Opens the publishing channel, declares the exchange and turns confirms on.
    ///
    /// # Errors
    ///
    /// [`Error::Amqp`](crate::Error::Amqp): the connection is gone, or the exchange exists with another kind.
    pub fn build(self) -> Result<EventPublisher> {
        EventPublisher::open(self.connection, self.exchange, self.settings)
    }
}

impl PublisherBuilder {
    /// A builder for a publisher on `connection` to `exchange`, at the default settings.
    pub(crate) fn new(connection: Connection, exchange: &str) -> PublisherBuilder {
        PublisherBuilder {
            connection,
            exchange: exchange.to_owned(),
            settings: default_settings(),
        }
    }
}

/// The ways to make a publisher (here, beside its builder, so that `publisher.rs` needs
/// nothing of this file).
impl EventPublisher {
    /// A publisher with the default settings: confirms on, durable topic exchange declared,
    /// unroutable events logged as warnings.
    ///
    /// # Errors
    ///
    /// As [`PublisherBuilder::build`].
    pub fn new(connection: Connection, exchange: &str) -> Result<Self> {
        Self::builder(connection, exchange).build()
    }

    /// Starts configuring a publisher that owns `connection` and publishes to `exchange`.
    pub fn builder(connection: Connection, exchange: &str) -> PublisherBuilder {
        PublisherBuilder::new(connection, exchange)
    }
}
