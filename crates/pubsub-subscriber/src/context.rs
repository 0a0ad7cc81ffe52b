//! What a consuming session needs of its subscriber, and nothing more.

use crossbeam_channel::{Receiver, TrySendError};
use pubsub_amqp::AmqpConfig;
use pubsub_registry::HandlerRegistry;

use crate::report::DeliveryReport;
use crate::settings::Settings;
use crate::stats::Counters;
use crate::topology::Topology;

/// A session's view of its subscriber: borrowed for the session's lifetime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The queue, exchange, bindings and settings, to declare after (re)connecting.
    pub(crate) topology: Topology<'a>,
    /// The connection settings, for the republishing connection.
    pub(crate) config: &'a AmqpConfig,
    /// The handlers.
    pub(crate) registry: &'a HandlerRegistry,
    /// Stop requests.
    pub(crate) stop: &'a Receiver<()>,
    /// The counters.
    pub(crate) counters: &'a Counters,
    /// Whether the queue is a quorum queue (it counts deliveries).
    pub(crate) quorum: bool,
}

impl Context<'_> {
    /// The queue consumed.
    pub(crate) fn queue(&self) -> &str {
        self.topology.queue
    }

    /// The subscriber's settings.
    pub(crate) fn settings(&self) -> &Settings {
        self.topology.settings
    }

    /// Whether anyone observes delivery reports (build none otherwise).
    pub(crate) fn observed(&self) -> bool {
        self.settings().observer.is_some()
    }

    /// Sends a report to the observer, never blocking: a full observer loses it, with a
    /// warning.
    pub(crate) fn send_report(&self, report: Option<DeliveryReport>) {
        if let (Some(observer), Some(report)) = (&self.settings().observer, report) {
            if let Err(TrySendError::Full(_)) = observer.try_send(report) {
                log::warn!(
                    "the observer of `{}` is full: a delivery report was dropped",
                    self.queue()
                );
            }
        }
    }
}
