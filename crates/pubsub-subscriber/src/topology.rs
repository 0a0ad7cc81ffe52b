//! Declaring the subscriber's topology: exchange, queue, dead-letter and delay queues,
//! bindings.

use pubsub_amqp::{Channel, Connection, HeaderValue, QueueConfig};

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
    /// Declares exchange, dead-letter queue, retry queues, queue and bindings on a channel of
    /// `connection`, and returns that channel. When a step fails, the queues this call
    /// created (those that did not exist before it) are deleted again, so that a failed
    /// setup leaves the broker as it found it; the queues that existed are left alone.
    pub(crate) fn declare_on(&self, connection: &mut Connection) -> pubsub_amqp::Result<Channel> {
        let queues = Queues::of(self.queue, self.settings);
        let names = queues.declared_names(self.queue, self.settings.existing_queue);
        let existed = probe(connection, &names)?;
        let channel = connection.open_channel()?;
        let mut declared = Vec::new();
        match self.declare(&channel, &queues, &mut declared) {
            Ok(()) => Ok(channel),
            Err(error) => {
                drop(channel); // closed by the broker on most errors
                let created = created_by(&names, &existed, &declared);
                if !created.is_empty() {
                    remove(connection, &created);
                }
                Err(error)
            }
        }
    }

    /// Declares everything on `channel`, noting each queue in `declared` once it is.
    fn declare(
        &self,
        channel: &Channel,
        queues: &Queues,
        declared: &mut Vec<String>,
    ) -> pubsub_amqp::Result<()> {
        let Topology {
            queue,
            exchange,
            bindings,
            settings,
        } = *self;
        if let Some(config) = &settings.declare_exchange {
            channel.declare_exchange(exchange, config)?;
        }
        if let Some((dlq, config)) = &queues.dead_letter {
            channel.declare_queue(dlq, config)?;
            declared.push(dlq.clone());
        }
        for (name, config) in &queues.retries {
            channel.declare_queue(name, config)?;
            declared.push(name.clone());
        }
        if settings.existing_queue {
            channel.queue_info(queue)?;
            log::info!("consuming `{queue}` as declared elsewhere (its arguments untouched)");
        } else if let Err(e) = channel.declare_queue(queue, &queues.main) {
            if matches!(e, pubsub_amqp::Error::Inequivalent { .. }) {
                log::error!(
                    "queue `{queue}` exists with other arguments; to consume it as it is, use SubscriberBuilder::existing_queue(true)"
                );
            }
            return Err(e);
        } else {
            declared.push(queue.to_owned());
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

/// Which of `names` exist now (`true`), by a passive declare of each; a missing one closes
/// the probing channel, so the next probe opens another.
fn probe(connection: &mut Connection, names: &[String]) -> pubsub_amqp::Result<Vec<bool>> {
    let mut existed = Vec::with_capacity(names.len());
    let mut channel = None;
    for name in names {
        let probing = match channel.take() {
            Some(open) => open,
            None => connection.open_channel()?,
        };
        match probing.queue_info(name) {
            Ok(_) => {
                existed.push(true);
                channel = Some(probing);
            }
            Err(pubsub_amqp::Error::NotFound { .. }) => existed.push(false),
            Err(e) => return Err(e),
        }
    }
    if let Some(open) = channel {
        let _ = open.close();
    }
    Ok(existed)
}

/// The queues a failed setup created and must delete: those of `declared` that did not
/// exist before (`existed`, in the order of `names`).
fn created_by(names: &[String], existed: &[bool], declared: &[String]) -> Vec<String> {
    declared
        .iter()
        .filter(|name| {
            names
                .iter()
                .position(|n| n == *name)
                .and_then(|i| existed.get(i))
                == Some(&false)
        })
        .cloned()
        .collect()
}

/// Deletes `queues` (best effort: a failure is logged, the setup's own error is what counts).
fn remove(connection: &mut Connection, queues: &[String]) {
    let channel = match connection.open_channel() {
        Ok(channel) => channel,
        Err(e) => {
            log::warn!("the failed setup could not remove the queues it created {queues:?}: {e}");
            return;
        }
    };
    for queue in queues {
        match channel.delete_queue(queue) {
            Ok(_) => log::info!("removed `{queue}`, which the failed setup had created"),
            Err(e) => {
                log::warn!("the failed setup could not remove `{queue}`, which it created: {e}");
                return;
            }
        }
    }
    let _ = channel.close();
}

/// The queues a subscriber declares, with their arguments: what the settings decide, without
/// I/O.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queues {
    /// The subscriber's queue.
    pub(crate) main: QueueConfig,
    /// `<queue>.dlq`, unless dead-lettering is off.
    pub(crate) dead_letter: Option<(String, QueueConfig)>,
    /// `<queue>.retry.<delay>`, one per delay the retry policy uses.
    pub(crate) retries: Vec<(String, QueueConfig)>,
}

impl Queues {
    /// The names of the queues a setup declares, in order: the dead-letter queue, the delay
    /// queues, then `queue` itself unless it is an existing queue (only looked up).
    pub(crate) fn declared_names(&self, queue: &str, existing_queue: bool) -> Vec<String> {
        let mut names: Vec<String> = self.dead_letter.iter().map(|(n, _)| n.clone()).collect();
        names.extend(self.retries.iter().map(|(n, _)| n.clone()));
        if !existing_queue {
            names.push(queue.to_owned());
        }
        names
    }

    /// The queues for `queue` under `settings`.
    ///
    /// With quorum queues on, all of them are quorum queues (replicated on a cluster). The
    /// main queue's broker-side delivery limit is the subscriber's `max_redeliveries`: the
    /// subscriber dead-letters a message delivered that often itself, with its reason, and the
    /// broker does it only when the consumer dies on that last delivery too. The delay queues
    /// dead-letter their expired messages back at least once (`x-dead-letter-strategy`), so a
    /// node failure cannot lose a retry.
    pub(crate) fn of(queue: &str, settings: &Settings) -> Queues {
        let quorum = settings.is_quorum();
        let durable = QueueConfig {
            durable: settings.queue_config.durable || quorum,
            ..QueueConfig::default()
        };
        let durable = if quorum { durable.quorum() } else { durable };
        let mut main = settings.queue_config.clone();
        if quorum {
            main.durable = true;
            if !main.arguments.contains_key("x-queue-type") {
                main = main.quorum();
            }
            if !main.arguments.contains_key("x-delivery-limit") {
                main = main.argument("x-delivery-limit", i64::from(settings.max_redeliveries));
            }
        }
        let dead_letter = settings.dead_letter.then(|| {
            let dlq = dead_letter_queue_name(queue);
            let args = &mut main.arguments;
            if !args.contains_key("x-dead-letter-exchange") {
                args.insert("x-dead-letter-exchange".into(), HeaderValue::from(""));
                args.insert(
                    "x-dead-letter-routing-key".into(),
                    HeaderValue::from(dlq.as_str()),
                );
            }
            (dlq, durable.clone())
        });
        let retries = settings
            .retry
            .used_delays()
            .into_iter()
            .map(|delay| {
                let mut retry = durable.clone().message_ttl(delay).dead_letter_to("", queue);
                if quorum {
                    retry = retry
                        .argument("x-dead-letter-strategy", "at-least-once")
                        .argument("x-overflow", "reject-publish");
                }
                (retry_queue_name(queue, delay), retry)
            })
            .collect();
        Queues {
            main,
            dead_letter,
            retries,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::RetryPolicy;

    fn settings(quorum: bool, dead_letter: bool) -> Settings {
        let mut settings = crate::subscriber::default_settings();
        settings.quorum = quorum;
        settings.dead_letter = dead_letter;
        settings.retry = RetryPolicy::new(3, vec![Duration::from_secs(1), Duration::from_secs(5)]);
        settings
    }

    fn arg<'a>(config: &'a QueueConfig, name: &str) -> Option<&'a HeaderValue> {
        config.arguments.get(name)
    }

    #[test]
    fn a_failed_setup_removes_only_what_it_created() {
        let names: Vec<String> = ["q.dlq", "q.retry.1s", "q"].map(String::from).to_vec();
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // (existed before, declared before the failure, to remove)
        let table: &[(&[bool], &[&str], &[&str])] = &[
            // A new service whose queue fails: its dead-letter and delay queues go.
            (
                &[false, false, false],
                &["q.dlq", "q.retry.1s"],
                &["q.dlq", "q.retry.1s"],
            ),
            // The queue exists with other arguments; its old DLQ stays, the new delay queue goes.
            (
                &[true, false, true],
                &["q.dlq", "q.retry.1s"],
                &["q.retry.1s"],
            ),
            // Everything existed: nothing is removed.
            (&[true, true, true], &["q.dlq", "q.retry.1s", "q"], &[]),
            // A binding failed after a new queue was declared: all three go.
            (
                &[false, false, false],
                &["q.dlq", "q.retry.1s", "q"],
                &["q.dlq", "q.retry.1s", "q"],
            ),
            // Nothing declared yet (the exchange failed).
            (&[false, false, false], &[], &[]),
        ];
        for (existed, declared, remove) in table {
            assert_eq!(
                created_by(&names, existed, &s(declared)),
                s(remove),
                "{existed:?} {declared:?}"
            );
        }
        let q = Queues::of("q", &settings(false, true));
        assert_eq!(
            q.declared_names("q", false),
            ["q.dlq", "q.retry.1s", "q.retry.5s", "q"]
        );
        assert_eq!(
            q.declared_names("q", true),
            ["q.dlq", "q.retry.1s", "q.retry.5s"]
        );
    }

    #[test]
    fn classic_queues_by_default() {
        let q = Queues::of("orders", &settings(false, true));
        assert_eq!(arg(&q.main, "x-queue-type"), None);
        assert_eq!(
            arg(&q.main, "x-dead-letter-routing-key"),
            Some(&HeaderValue::from("orders.dlq"))
        );
        let (dlq, dlq_config) = q.dead_letter.unwrap();
        assert_eq!(
            (dlq.as_str(), arg(&dlq_config, "x-queue-type")),
            ("orders.dlq", None)
        );
        let names: Vec<&str> = q.retries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["orders.retry.1s", "orders.retry.5s"]);
        assert_eq!(arg(&q.retries[0].1, "x-dead-letter-strategy"), None);
    }

    #[test]
    fn quorum_makes_every_queue_a_replicated_quorum_queue() {
        let q = Queues::of("orders", &settings(true, true));
        let quorum = Some(&HeaderValue::from("quorum"));
        assert_eq!(arg(&q.main, "x-queue-type"), quorum);
        assert!(q.main.durable);
        assert_eq!(
            arg(&q.main, "x-delivery-limit"),
            Some(&HeaderValue::Int(10))
        );
        let (_, dlq) = q.dead_letter.unwrap();
        assert_eq!(arg(&dlq, "x-queue-type"), quorum);
        for (name, retry) in &q.retries {
            assert_eq!(arg(retry, "x-queue-type"), quorum, "{name}");
            assert_eq!(
                arg(retry, "x-dead-letter-strategy"),
                Some(&HeaderValue::from("at-least-once")),
                "{name}"
            );
            assert_eq!(
                arg(retry, "x-overflow"),
                Some(&HeaderValue::from("reject-publish"))
            );
            assert!(retry.validate(name).is_ok());
        }
        assert!(q.main.validate("orders").is_ok());
    }

    #[test]
    fn a_queue_config_that_says_quorum_is_quorum_too() {
        let mut s = settings(false, false);
        s.queue_config = QueueConfig::default()
            .quorum()
            .argument("x-delivery-limit", 3i64);
        let q = Queues::of("orders", &s);
        assert_eq!(arg(&q.main, "x-delivery-limit"), Some(&HeaderValue::Int(3)));
        assert!(q.dead_letter.is_none());
        assert_eq!(
            arg(&q.retries[0].1, "x-queue-type"),
            Some(&HeaderValue::from("quorum"))
        );
        assert_eq!(arg(&q.main, "x-dead-letter-exchange"), None);
    }
}
