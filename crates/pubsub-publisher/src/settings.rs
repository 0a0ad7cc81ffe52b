//! A publisher's settings, as its builder sets them, and what it does with an event no queue
//! takes.

use std::time::Duration;

use pubsub_amqp::{ExchangeConfig, ReconnectPolicy};
use pubsub_core::envelope::Envelope;

/// What to do with an event the broker can route to no queue (no service subscribes to it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unroutable {
    /// Log a warning and report success: the broker took the event, nobody wanted it.
    #[default]
    Warn,
    /// Report it as an [`Error::Unroutable`](crate::Error::Unroutable).
    Error,
    /// Do not ask (publish without `mandatory`).
    Ignore,
}

/// A publisher's settings, as its builder sets them.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) app_id: Option<String>,
    pub(crate) envelope: Envelope,
    pub(crate) confirms: bool,
    pub(crate) unroutable: Unroutable,
    pub(crate) declare: Option<ExchangeConfig>,
    pub(crate) confirm_timeout: Duration,
    pub(crate) confirm_window: usize,
    pub(crate) reconnect: ReconnectPolicy,
    /// Every event to this queue, through the default exchange (see
    /// [`PublisherBuilder::to_queue`]).
    pub(crate) to_queue: Option<String>,
}

/// The settings a new builder starts from.
pub(crate) fn default_settings() -> Settings {
    Settings {
        app_id: None,
        envelope: Envelope::Standard,
        confirms: true,
        unroutable: Unroutable::default(),
        declare: Some(ExchangeConfig::default()),
        confirm_timeout: Duration::from_secs(30),
        confirm_window: 1000,
        reconnect: ReconnectPolicy::default().with_max_total(Some(Duration::from_secs(30))),
        to_queue: None,
    }
}
