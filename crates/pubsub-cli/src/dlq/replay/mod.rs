//! The replay engine: takes the dead-lettered messages one by one, selects them, works out
//! where each goes, and hands batches to [`batch`] to republish with confirms. The command's
//! arguments and output are in [`command`].

use std::collections::HashMap;
use std::time::Duration;

use crossbeam_channel::Receiver;
use pubsub_amqp::{Channel, Connection, Delivery};

use crate::dlq::letter::{DeadLetter, Destination};
use crate::dlq::progress::Progress;

use self::batch::{Candidate, Publisher};

mod batch;
pub(crate) mod command;

/// Which messages a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every message.
    All,
    /// The messages with these event ids.
    Ids(Vec<String>),
}

/// How to replay; see [`Dlq::replay`](crate::dlq::Dlq::replay).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Which messages.
    pub selection: Selection,
    /// At most this many.
    pub limit: Option<usize>,
    /// Only say what would happen.
    pub dry_run: bool,
    /// Publish to this queue through the default exchange instead of the original
    /// destination.
    pub to_queue: Option<String>,
    /// How many messages are published before their confirms are awaited.
    pub batch_size: usize,
    /// How long to wait for a batch's confirms.
    pub confirm_timeout: Duration,
}

impl Default for ReplayOptions {
    /// Every message, batches of 100, 30 s for the confirms.
    fn default() -> Self {
        ReplayOptions {
            selection: Selection::All,
            limit: None,
            dry_run: false,
            to_queue: None,
            batch_size: 100,
            confirm_timeout: Duration::from_secs(30),
        }
    }
}

/// One message a replay moved (or, in a dry run, would move).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Its event id, if known.
    pub event_id: Option<String>,
    /// Where it went.
    pub destination: Destination,
}

/// One selected message a replay left in the dead-letter queue, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stayed {
    /// Its event id, if known.
    pub event_id: Option<String>,
    /// Its routing key.
    pub routing_key: String,
    /// Why it was not moved.
    pub reason: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The dead-letter queue.
    pub dlq: String,
    /// How many messages were in it when the replay started.
    pub total: u32,
    /// How many were taken and looked at.
    pub examined: u32,
    /// The messages republished, confirmed and removed (in a dry run: that would be).
    pub moved: Vec<Moved>,
    /// The selected messages that stayed, with the reason.
    pub stayed: Vec<Stayed>,
    /// How many were not selected (left as they were).
    pub unselected: u32,
    /// Event ids asked for with [`Selection::Ids`] that no message had.
    pub missing_ids: Vec<String>,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Whether it was stopped (Ctrl-C) before the end.
    pub interrupted: bool,
    /// The error that ended it early (a lost connection), if any.
    pub aborted: Option<String>,
}

impl ReplayReport {
    /// Whether everything selected was moved and nothing went wrong.
    pub fn is_complete(&self) -> bool {
        self.stayed.is_empty()
            && self.missing_ids.is_empty()
            && !self.interrupted
            && self.aborted.is_none()
    }
}

/// Replays from `dlq`, whose messages are taken on `get` (`total` of them ready); see
/// [`Dlq::replay`](crate::dlq::Dlq::replay). Every message not moved is left unacknowledged
/// on `get`: closing it hands them back.
pub(crate) fn run(
    connection: &mut Connection,
    get: &Channel,
    dlq: &str,
    total: u32,
    options: &ReplayOptions,
    stop: &Receiver<()>,
    mut progress: impl FnMut(Progress),
) -> ReplayReport {
    let mut run = Replay {
        connection,
        get,
        dlq,
        options,
        publisher: None,
        exchanges: HashMap::new(),
        held: Vec::new(),
        report: ReplayReport {
            dlq: dlq.to_owned(),
            total,
            dry_run: options.dry_run,
            ..ReplayReport::default()
        },
    };
    let mut found = Found::new(&options.selection);
    let mut batch: Vec<Candidate> = Vec::new();
    let mut selected = 0usize;

    while run.report.examined < total && run.report.aborted.is_none() {
        if stop.try_recv().is_ok() {
            run.report.interrupted = true;
            break;
        }
        let Some((mut delivery, _)) = (match get.get(dlq) {
            Ok(got) => got,
            Err(e) => {
                run.report.aborted = Some(e.to_string());
                break;
            }
        }) else {
            break;
        };
        run.report.examined += 1;
        let letter = DeadLetter::from_delivery(&mut delivery);
        let event_id = letter.event_id();
        let wanted = found.select(&options.selection, event_id.as_deref());
        if !wanted || options.limit.is_some_and(|limit| selected >= limit) {
            run.report.unselected += 1;
            run.held.push(delivery);
        } else {
            selected += 1;
            if let Some(c) = run.consider(delivery, letter, event_id) {
                batch.push(c);
            }
            if batch.len() >= options.batch_size.max(1) {
                run.flush(std::mem::take(&mut batch));
            }
        }
        progress(run.progress());
    }
    if !batch.is_empty() {
        run.flush(batch);
    }
    progress(run.progress());

    run.report.missing_ids = found.missing(&options.selection);
    let Replay {
        report,
        held,
        publisher,
        ..
    } = run;
    drop(held);
    if let Some(publisher) = publisher {
        publisher.close();
    }
    report
}

/// Which event ids of a [`Selection::Ids`] some message had.
struct Found(Vec<bool>);

impl Found {
    fn new(selection: &Selection) -> Found {
        Found(match selection {
            Selection::All => Vec::new(),
            Selection::Ids(ids) => vec![false; ids.len()],
        })
    }

    /// Whether the message with `event_id` is selected; records the ids it has.
    fn select(&mut self, selection: &Selection, event_id: Option<&str>) -> bool {
        match selection {
            Selection::All => true,
            Selection::Ids(ids) => {
                let mut hit = false;
                for (i, id) in ids.iter().enumerate() {
                    if event_id == Some(id.as_str()) {
                        self.0[i] = true;
                        hit = true;
                    }
                }
                hit
            }
        }
    }

    /// The ids of the selection no message had.
    fn missing(&self, selection: &Selection) -> Vec<String> {
        match selection {
            Selection::All => Vec::new(),
            Selection::Ids(ids) => ids
                .iter()
                .zip(&self.0)
                .filter(|(_, found)| !**found)
                .map(|(id, _)| id.clone())
                .collect(),
        }
    }
}

/// The state of one replay.
struct Replay<'a> {
    connection: &'a mut Connection,
    get: &'a Channel,
    dlq: &'a str,
    options: &'a ReplayOptions,
    publisher: Option<Publisher>,
    /// Exchanges checked so far: `None` if it exists, else why it cannot be used.
    exchanges: HashMap<String, Option<String>>,
    /// Deliveries left unacknowledged: they go back to the queue when `get` closes.
    held: Vec<Delivery>,
    report: ReplayReport,
}

impl Replay<'_> {
    fn progress(&self) -> Progress {
        Progress {
            examined: self.report.examined,
            total: self.report.total,
            moved: self.report.moved.len(),
            stayed: self.report.stayed.len(),
        }
    }

    /// Works out the destination and checks its exchange; returns the candidate if it is to
    /// be published now.
    fn consider(
        &mut self,
        delivery: Delivery,
        letter: DeadLetter,
        event_id: Option<String>,
    ) -> Option<Candidate> {
        let destination = match &self.options.to_queue {
            Some(queue) => Ok(Destination {
                exchange: String::new(),
                routing_key: queue.clone(),
            }),
            None => letter.destination(self.dlq),
        };
        let destination = match destination {
            Ok(d) => match self.check_exchange(&d.exchange) {
                None => d,
                Some(reason) => {
                    let routing_key = letter.original_routing_key(self.dlq);
                    self.stay(delivery, event_id, routing_key, reason);
                    return None;
                }
            },
            Err(reason) => {
                let routing_key = letter.original_routing_key(self.dlq);
                self.stay(delivery, event_id, routing_key, reason);
                return None;
            }
        };
        if self.options.dry_run {
            self.report.moved.push(Moved {
                event_id,
                destination,
            });
            self.held.push(delivery);
            return None;
        }
        Some(Candidate {
            delivery,
            letter,
            event_id,
            destination,
        })
    }

    /// `None` if the exchange exists (checked once per replay, on a throwaway channel), else
    /// why it cannot be used.
    fn check_exchange(&mut self, exchange: &str) -> Option<String> {
        if exchange.is_empty() {
            return None; // the default exchange always exists
        }
        if let Some(known) = self.exchanges.get(exchange) {
            return known.clone();
        }
        let verdict = match self.connection.open_channel() {
            Ok(channel) => match channel.exchange_exists(exchange) {
                Ok(()) => {
                    let _ = channel.close();
                    None
                }
                Err(e @ pubsub_amqp::Error::NotFound { .. }) => Some(e.to_string()),
                Err(e) => Some(format!("cannot check exchange `{exchange}`: {e}")),
            },
            Err(e) => Some(format!("cannot check exchange `{exchange}`: {e}")),
        };
        self.exchanges.insert(exchange.to_owned(), verdict.clone());
        verdict
    }

    /// Leaves a selected message in the dead-letter queue (unacknowledged, so that closing
    /// the channel hands it back), with the reason.
    fn stay(
        &mut self,
        delivery: Delivery,
        event_id: Option<String>,
        routing_key: String,
        reason: String,
    ) {
        self.report.stayed.push(Stayed {
            event_id,
            routing_key,
            reason,
        });
        self.held.push(delivery);
    }

    fn stay_candidate(&mut self, c: Candidate, reason: String) {
        let routing_key = c.letter.original_routing_key(self.dlq);
        self.stay(c.delivery, c.event_id, routing_key, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections() {
        let check =
            |selection: Selection, ids: &[Option<&str>], picked: &[bool], missing: &[&str]| {
                let mut found = Found::new(&selection);
                let got: Vec<bool> = ids.iter().map(|id| found.select(&selection, *id)).collect();
                assert_eq!(got, picked);
                assert_eq!(found.missing(&selection), missing);
            };
        check(Selection::All, &[Some("a"), None], &[true, true], &[]);
        let ab = || Selection::Ids(vec!["a".to_owned(), "b".to_owned()]);
        check(
            ab(),
            &[Some("a"), None, Some("c")],
            &[true, false, false],
            &["b"],
        );
        check(
            ab(),
            &[Some("b"), Some("a"), Some("a")],
            &[true, true, true],
            &[],
        );
        check(ab(), &[], &[], &["a", "b"]);
    }
}
