//! Declaring the subscriber's topology: exchange, queue, dead-letter and delay queues,
//! bindings.

use pubsub_amqp::{Channel, HeaderValue, QueueConfig};

use crate::settings::{dead_letter_queue_name, retry_queue_name, Settings};

/// Where a subscriber consumes from: its queue, bound to `bindings` on `exchange`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Topology<'a> {
    pub(crate) queue: &'a str,
    pub(crate) exchange: &'a str,
    pub(crate) bindings: &'a [String],
    pub(crate) settings: &'a Settings,
}

impl Topology<'_> {
    /// Declares exchange, dead-letter queue, retry queues, queue and bindings.
    pub(crate) fn declare(&self, channel: &Channel) -> pubsub_amqp::Result<()> {
        let Topology {
            queue,
            exchange,
            bindings,
            settings,
        } = *self;
        if let Some(config) = &settings.declare_exchange {
            channel.declare_exchange(exchange, config)?;
        }
        let durable = QueueConfig {
            durable: settings.queue_config.durable,
            ..QueueConfig::default()
        };
        let mut queue_config = settings.queue_config.clone();
        if settings.dead_letter {
            let dlq = dead_letter_queue_name(queue);
            channel.declare_queue(&dlq, &durable)?;
            let args = &mut queue_config.arguments;
            if !args.contains_key("x-dead-letter-exchange") {
                args.insert("x-dead-letter-exchange".into(), HeaderValue::from(""));
                args.insert("x-dead-letter-routing-key".into(), HeaderValue::from(dlq));
            }
        }
        for delay in settings.retry.used_delays() {
            let retry = durable.clone().message_ttl(delay).dead_letter_to("", queue);
            channel.declare_queue(&retry_queue_name(queue, delay), &retry)?;
        }
        if settings.existing_queue {
            channel.queue_info(queue)?;
            log::info!("consuming `{queue}` as declared elsewhere (its arguments untouched)");
        } else if let Err(e) = channel.declare_queue(queue, &queue_config) {
            if matches!(e, pubsub_amqp::Error::Inequivalent { .. }) {
                log::error!(
                    "queue `{queue}` exists with other arguments; to consume it as it is, use SubscriberBuilder::existing_queue(true)"
                );
            }
            return Err(e);
        }
        if bindings.is_empty() {
            log::warn!(
                "queue `{queue}` is bound to nothing: the registry has no handler and no binding was given"
            );
        }
        for key in bindings {
            channel.bind_queue(queue, exchange, key)?;
        }
        log::info!("queue `{queue}` bound to exchange `{exchange}` with {bindings:?}");
        Ok(())
    }
}
