//! [`RunReport`]: what a demo run did, and its readable summary.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use demo_domain::Handlers;
use pubsub::subscriber::{Disposition, HandlerRun, SubscriberStats};

/// How far a run is, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events published (confirmed by the broker), or dispatched in process.
    pub published: u64,
    /// Events whose handling is over (handled, dead-lettered or failed).
    pub handled: u64,
    /// Events the run sends in all.
    pub total: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {}/{}, handled {}/{}",
            self.published, self.total, self.handled, self.total
        )
    }
}

/// What became of one handling of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In process: every matching handler succeeded.
    Handled,
    /// In process: some handler failed. In process there is no retry.
    Failed,
    /// Over the broker: what the subscriber did with the delivery.
    Delivery(Disposition),
}

impl Outcome {
    /// Whether the event is done with: everything but a retry still to come.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Delivery(Disposition::Retried { .. }))
    }

    /// Whether every handler succeeded in the end.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Handled | Outcome::Delivery(Disposition::Acked | Disposition::Unhandled)
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Handled => f.write_str("handled"),
            Outcome::Failed => f.write_str("failed"),
            Outcome::Delivery(disposition) => fmt::Display::fmt(disposition, f),
        }
    }
}

/// One handling of an event: the first delivery, or a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first delivery, 2 for the first retry.
    pub attempt: u32,
    /// The handlers that ran, in order, with their errors. A retry runs only those that
    /// failed before.
    pub handlers: Vec<HandlerRun>,
    /// What became of it.
    pub outcome: Outcome,
}

/// One event of the order flow, and each handling of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The event's routing key.
    pub routing_key: String,
    /// The event's id.
    pub event_id: String,
    /// A short description: the order, payment or user.
    pub label: String,
    /// Each handling, in order; empty if the event was never handled.
    pub attempts: Vec<Attempt>,
}

impl Handled {
    /// The last handling's outcome, if the event was handled at all.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.attempts.last().map(|a| &a.outcome)
    }

    /// The names of the handlers that ran, over all attempts, in order.
    pub fn handler_names(&self) -> Vec<&str> {
        self.attempts
            .iter()
            .flat_map(|a| a.handlers.iter().map(|h| h.handler.as_str()))
            .collect()
    }
}

/// How many times one handler ran, and how many of those failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerTally {
    /// Runs that succeeded.
    pub ok: u64,
    /// Runs that failed.
    pub failed: u64,
}

/// What a demo run did. Its `Display` is the summary the demo prints.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Events sent.
    pub total: u64,
    /// Events whose handling ended with every handler succeeded.
    pub succeeded: u64,
    /// Events whose handling ended otherwise (dead-lettered, dropped, or failed in process).
    pub failed: u64,
    /// Each event in detail (the order flow only; empty for `--count`).
    pub events: Vec<Handled>,
    /// Each handler's runs.
    pub handler_runs: BTreeMap<String, HandlerTally>,
    /// The subscriber's final counters (over the broker only).
    pub stats: Option<SubscriberStats>,
    /// Deliveries of events this run did not send, left in the queue by an earlier run: they
    /// were handled (and acked) too, but are not counted above.
    pub leftovers: u64,
    /// From the first publish to the last confirm (in process: to the last dispatch).
    pub publish_time: Duration,
    /// From the first publish to the end of the last event's handling.
    pub end_to_end_time: Duration,
    /// What was done with the queue at the end (over the broker only).
    pub cleanup: Option<String>,
    /// The handlers, whose effects the summary shows.
    pub handlers: Handlers,
    /// What the event store kept (over the broker, with a store).
    pub stored: Option<crate::StoredRows>,
    /// The order flow's task, as the task store recorded it (over the broker, with a store).
    pub task: Option<crate::TaskDone>,
    /// What the outbox's relay published (over the broker): the events committed with the
    /// shop's rows.
    pub relay: Option<pubsub::outbox::RelayStats>,
}

impl RunReport {
    /// Whether every event sent was handled with success.
    pub fn is_success(&self) -> bool {
        self.succeeded == self.total && self.failed == 0
    }
}

/// Events per second, or 0 for an instant run.
fn rate(n: u64, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for event in &self.events {
            if event.attempts.is_empty() {
                writeln!(
                    f,
                    "  {:<16} {:<22} not handled",
                    event.routing_key, event.label
                )?;
            }
            for (i, attempt) in event.attempts.iter().enumerate() {
                let (key, label) = if i == 0 {
                    (event.routing_key.as_str(), event.label.as_str())
                } else {
                    ("", "")
                };
                let runs: Vec<String> = attempt
                    .handlers
                    .iter()
                    .map(|run| match &run.error {
                        None => format!("{} ok", run.handler),
                        Some(error) => format!("{} FAILED ({error})", run.handler),
                    })
                    .collect();
                let runs = if runs.is_empty() {
                    "no handler".to_owned()
                } else {
                    runs.join(", ")
                };
                writeln!(f, "  {key:<16} {label:<22} {runs} -> {}", attempt.outcome)?;
            }
        }
        if !self.events.is_empty() {
            writeln!(f)?;
        }
        writeln!(
            f,
            "{} of {} events handled{}",
            self.succeeded,
            self.total,
            if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            }
        )?;
        let runs: Vec<String> = self
            .handler_runs
            .iter()
            .map(|(name, t)| match t.failed {
                0 => format!("{name} {}", t.ok),
                n => format!("{name} {} ({n} failed)", t.ok + n),
            })
            .collect();
        writeln!(f, "  handler runs: {}", runs.join(", "))?;

        let email = self.handlers.email();
        if self.events.is_empty() {
            writeln!(f, "  emails:       {} sent", email.sent())?;
        } else {
            for (i, mail) in email.outbox().iter().enumerate() {
                let head = if i == 0 { "emails:" } else { "" };
                writeln!(f, "  {head:<13} to {} \"{}\"", mail.to, mail.subject)?;
            }
        }
        let shop = self.handlers.shop();
        match (shop.levels(), shop.reservations()) {
            (Ok(levels), Ok(reservations)) => {
                let stock: Vec<String> = levels
                    .iter()
                    .map(|(product, n)| format!("{product} {n}"))
                    .collect();
                writeln!(f, "  stock left:   {}", stock.join(", "))?;
                writeln!(
                    f,
                    "  reserved:     {reservations} line(s), once per order (kept with the inventory's inbox records)"
                )?;
            }
            (Err(e), _) | (_, Err(e)) => writeln!(f, "  stock:        unreadable: {e}")?,
        }
        let counts: Vec<String> = self
            .handlers
            .analytics()
            .counts()
            .iter()
            .map(|(key, n)| format!("{key} {n}"))
            .collect();
        writeln!(f, "  analytics:    {}", counts.join(", "))?;

        if self.events.is_empty() && self.stats.is_none() {
            writeln!(
                f,
                "  dispatch:     {} events in {:.2}s = {:.0} events/s (in process)",
                self.total,
                self.end_to_end_time.as_secs_f64(),
                rate(self.total, self.end_to_end_time)
            )?;
        } else if self.events.is_empty() {
            writeln!(
                f,
                "  publish:      {} events in {:.2}s = {:.0} events/s",
                self.total,
                self.publish_time.as_secs_f64(),
                rate(self.total, self.publish_time)
            )?;
            writeln!(
                f,
                "  end to end:   {} events in {:.2}s = {:.0} events/s",
                self.succeeded + self.failed,
                self.end_to_end_time.as_secs_f64(),
                rate(self.succeeded + self.failed, self.end_to_end_time)
            )?;
        }
        if let Some(relay) = &self.relay {
            writeln!(
                f,
                "  outbox:       {} event(s) committed with their rows, published by the relay in {} batch(es)",
                relay.published, relay.batches
            )?;
        }
        if let Some(stats) = &self.stats {
            writeln!(f, "  subscriber:   {stats}")?;
        }
        if self.leftovers > 0 {
            writeln!(
                f,
                "  also drained {} delivery(ies) left in the queue by an earlier run",
                self.leftovers
            )?;
        }
        if let Some(stored) = &self.stored {
            writeln!(
                f,
                "  event store:  {} new row(s) in {} (queue `{}`)",
                stored.stored, stored.database, stored.queue
            )?;
            for row in &stored.rows {
                writeln!(
                    f,
                    "    {}  {:<16} {}  from {}",
                    row.event
                        .timestamp()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    row.routing_key,
                    row.event.event_id(),
                    row.producer.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(f, "    (pubsub store query --database {})", stored.database)?;
        }
        if let Some(task) = &self.task {
            let r = &task.record;
            writeln!(
                f,
                "  task:         {} {} -> {} after {} attempt(s): {} (queue `{}`)",
                r.task_name,
                r.task_id,
                r.status,
                r.attempts,
                r.result
                    .as_ref()
                    .map(ToString::to_string)
                    .or_else(|| r.error.clone())
                    .unwrap_or_default(),
                task.queue
            )?;
            writeln!(
                f,
                "    (pubsub task status {} --database {})",
                r.task_id, task.database
            )?;
        }
        if let Some(cleanup) = &self.cleanup {
            writeln!(f, "{cleanup}")?;
        }
        Ok(())
    }
}
