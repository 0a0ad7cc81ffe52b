//! Handlers that run elsewhere: a [`Dispatcher`] takes each decoded delivery as a [`Job`]
//! (an async runtime runs its handlers as a task, say) and answers through the job's
//! [`Done`], later and in any order. The session keeps consuming meanwhile, up to the
//! prefetch, and settles each delivery when its answer comes, exactly as it settles the
//! deliveries whose handlers ran on its own thread: the same decision, retries, dead letters
//! and acks.
//!
//! A job dropped unanswered (its task cancelled, its runtime shut down) answers by itself:
//! its handlers count as failed, and the delivery is retried by the retry policy, never lost
//! and never looping (the attempts are counted as for any failure).

use std::fmt;

use crossbeam_channel::Sender;
use pubsub_core::{Event, Metadata};
use pubsub_registry::InvocationResult;

/// Runs the handlers of the deliveries a subscriber hands it, somewhere else than the
/// subscriber's thread, and answers each through [`Job::into_parts`]'s [`Done`].
///
/// `dispatch` is called on the subscriber's thread for each delivery whose event decoded: it
/// must return at once (spawn a task, send to a channel), never run the handlers itself.
pub trait Dispatcher: Send + Sync + 'static {
    /// Takes one delivery's event and starts its handlers.
    fn dispatch(&self, job: Job);
}

/// One delivery's event for a [`Dispatcher`]: the event and its metadata, the handlers that
/// already succeeded on an earlier attempt (skip them), and the [`Done`] to answer with.
#[derive(Debug)]
pub struct Job {
    pub(crate) event: Event,
    pub(crate) meta: Metadata,
    pub(crate) done_before: Vec<String>,
    pub(crate) done: Done,
    /// The delivery's consumer span (feature `otel`, when tracing is on).
    #[cfg(feature = "otel")]
    pub(crate) span: Option<tracing::Span>,
}

impl Job {
    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The delivery's metadata.
    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// Whether the subscription `id` (`name@pattern`, see
    /// [`subscription_id`](pubsub_registry::subscription_id)) already handled this event on
    /// an earlier attempt: a retry runs only the handlers that failed.
    pub fn already_done(&self, id: &str) -> bool {
        self.done_before.iter().any(|d| d == id)
    }

    /// The delivery's consumer span (feature `otel`; `None` when tracing is off): run the
    /// handlers in it (`tracing::Instrument`), so that what they publish is its child, and
    /// record `otel.status_code = "error"` on it when one fails.
    #[cfg(feature = "otel")]
    pub fn span(&self) -> Option<&tracing::Span> {
        self.span.as_ref()
    }

    /// The event, its metadata, the subscriptions already done, and the answer.
    pub fn into_parts(self) -> (Event, Metadata, Vec<String>, Done) {
        (self.event, self.meta, self.done_before, self.done)
    }
}

/// The answer to a [`Job`]: [`finish`](Self::finish) it with how the handlers fared. Dropped
/// unanswered, it answers that the handlers did not finish.
pub struct Done {
    tag: u64,
    answers: Option<Sender<Completion>>,
}

impl Done {
    pub(crate) fn new(tag: u64, answers: Sender<Completion>) -> Self {
        Done {
            tag,
            answers: Some(answers),
        }
    }

    /// Answers with how each handler fared; the subscriber settles the delivery. (A
    /// subscriber that has stopped or lost its connection meanwhile ignores the answer: the
    /// broker delivers the event again.)
    pub fn finish(mut self, result: InvocationResult) {
        if let Some(answers) = self.answers.take() {
            let _ = answers.send(Completion {
                tag: self.tag,
                result: Some(result),
            });
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(answers) = self.answers.take() {
            let _ = answers.send(Completion {
                tag: self.tag,
                result: None,
            });
        }
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done").field("tag", &self.tag).finish()
    }
}

/// What a [`Done`] answered for the delivery `tag`: the result, or `None` when the job was
/// dropped unanswered.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) tag: u64,
    pub(crate) result: Option<InvocationResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_answers_once_finished_or_dropped() {
        let (tx, rx) = crossbeam_channel::unbounded();
        Done::new(4, tx.clone()).finish(InvocationResult::default());
        let finished = rx.try_recv().unwrap();
        assert_eq!(finished.tag, 4);
        assert!(finished.result.is_some());
        assert!(rx.try_recv().is_err(), "finishing answers once");
        drop(Done::new(9, tx));
        let dropped = rx.try_recv().unwrap();
        assert_eq!((dropped.tag, dropped.result.is_none()), (9, true));
    }

    #[test]
    fn a_done_whose_subscriber_is_gone_answers_into_nothing() {
        let (tx, rx) = crossbeam_channel::unbounded();
        drop(rx);
        Done::new(1, tx.clone()).finish(InvocationResult::default());
        drop(Done::new(2, tx));
    }
}
