//! A session whose handlers run elsewhere (a [`Dispatcher`]'s): the deliveries handed over,
//! kept by delivery tag until their handlers answer, then settled as the session settles the
//! deliveries whose handlers ran on its own thread; and the drain on stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pubsub_amqp::{Channel, Delivery};
use pubsub_core::{Event, Metadata};

use super::{describe, Handled, Session, SessionResult};
use crate::decision::{self, RunSummary, Trust};
use crate::dispatch::{Completion, Dispatcher, Done, Job};
use crate::headers::{now_rfc3339, RetryState};
use crate::stats::Counters;

/// The deliveries whose handlers a [`Dispatcher`] runs, until each answers.
pub(super) struct Dispatch {
    dispatcher: Arc<dyn Dispatcher>,
    /// How long a stop waits for the deliveries in flight.
    drain: Duration,
    answers_tx: Sender<Completion>,
    answers: Receiver<Completion>,
    /// By delivery tag: the lowest is the bound of a `multiple` ack.
    in_flight: BTreeMap<u64, InFlight>,
}

/// What settling a delivery handed over needs once its handlers answer.
pub(super) struct InFlight {
    pub(super) delivery: Delivery,
    pub(super) body: Vec<u8>,
    pub(super) trust: Trust,
    pub(super) retry: RetryState,
    pub(super) published: Option<String>,
    pub(super) event: Event,
    pub(super) meta: Metadata,
}

impl Dispatch {
    /// Where a session's handlers run: `dispatcher`, with a stop waiting up to `drain`. The
    /// answer channel is the session's own: answers for an earlier session's deliveries (the
    /// broker delivers those again) go nowhere.
    pub(super) fn new(dispatcher: Arc<dyn Dispatcher>, drain: Duration) -> Self {
        let (answers_tx, answers) = crossbeam_channel::unbounded();
        Dispatch {
            dispatcher,
            drain,
            answers_tx,
            answers,
            in_flight: BTreeMap::new(),
        }
    }

    /// The channel the handlers' answers come on.
    pub(super) fn answers(&self) -> Receiver<Completion> {
        self.answers.clone()
    }
}

impl Session<'_> {
    /// Hands a decoded delivery's event to the dispatcher, and keeps the delivery until its
    /// handlers answer ([`finish`](Self::finish)).
    pub(super) fn hand_over(&mut self, in_flight: InFlight) {
        let Some(dispatch) = self.dispatch.as_mut() else {
            return;
        };
        let tag = in_flight.delivery.delivery_tag();
        let job = Job {
            #[cfg(feature = "otel")]
            span: crate::trace::consumer_span(
                self.cx.queue(),
                &in_flight.delivery,
                &in_flight.event,
            ),
            event: in_flight.event.clone(),
            meta: in_flight.meta.clone(),
            done_before: in_flight.retry.done.clone(),
            done: Done::new(tag, dispatch.answers_tx.clone()),
        };
        dispatch.in_flight.insert(tag, in_flight);
        let dispatcher = dispatch.dispatcher.clone();
        // A dispatcher that answers at once (or drops the job) answers on the channel: the
        // delivery is settled on the loop's next turn.
        dispatcher.dispatch(job);
    }

    /// Settles a delivery whose handlers answered elsewhere, as [`handle`](Self::handle)
    /// settles one whose handlers ran here. An answer for no delivery in flight is ignored.
    pub(super) fn finish(&mut self, channel: &Channel, answer: Completion) -> SessionResult<()> {
        let Some(f) = self
            .dispatch
            .as_mut()
            .and_then(|d| d.in_flight.remove(&answer.tag))
        else {
            return Ok(());
        };
        let run = match &answer.result {
            Some(result) => RunSummary::of(result),
            None => {
                log::warn!(
                    "{}: {}",
                    describe(
                        &f.delivery,
                        Handled {
                            trust: f.trust,
                            attempt: f.retry.attempt,
                            published: None,
                            event: Some(&f.event),
                            meta: None,
                            result: None,
                        }
                    ),
                    decision::ABANDONED
                );
                decision::abandoned()
            }
        };
        Counters::add(
            &self.cx.counters.handler_failures,
            run.failures.len() as u64,
        );
        let decision = decision::after_run(&f.retry, &run, &self.cx.settings().retry, now_rfc3339);
        let handled = Handled {
            trust: f.trust,
            attempt: f.retry.attempt,
            published: f.published.as_deref(),
            event: Some(&f.event),
            meta: Some(&f.meta),
            result: answer.result.as_ref(),
        };
        self.carry_out(channel, f.delivery, &f.body, handled, decision)
    }

    /// After a stop, waits (up to the dispatcher's drain time) for the handlers still running
    /// elsewhere, and settles each delivery as it answers; the ones still running after that
    /// stay unacknowledged, and the broker delivers them again.
    pub(super) fn drain(&mut self, channel: &Channel) -> SessionResult<()> {
        let Some((answers, drain)) = self
            .dispatch
            .as_ref()
            .filter(|d| !d.in_flight.is_empty())
            .map(|d| (d.answers.clone(), d.drain))
        else {
            return Ok(());
        };
        let deadline = Instant::now() + drain;
        while self
            .dispatch
            .as_ref()
            .is_some_and(|d| !d.in_flight.is_empty())
        {
            match answers.recv_deadline(deadline) {
                Ok(answer) => self.finish(channel, answer)?,
                Err(_) => break,
            }
        }
        let left = self.dispatch.as_ref().map_or(0, |d| d.in_flight.len());
        if left > 0 {
            log::warn!(
                "stopping `{}`: {left} deliveries still in their handlers after {:.1}s; the broker delivers them again",
                self.cx.queue(),
                drain.as_secs_f64()
            );
        }
        Ok(())
    }

    /// The lowest delivery tag whose handlers still run elsewhere.
    pub(super) fn lowest_in_flight(&self) -> Option<u64> {
        self.dispatch
            .as_ref()
            .and_then(|d| d.in_flight.keys().next().copied())
    }
}
