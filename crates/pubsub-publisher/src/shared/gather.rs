//! How the publishing thread gathers queued requests into one pipelined batch: sans-I/O, no
//! channel and no clock, so that every case is a unit test.
//!
//! The thread waits for a first request, then takes whatever else is queued, without waiting,
//! up to [`MAX_BATCH`] events. When the queue runs dry while fewer callers are in the batch
//! than the last batch answered, it lingers a moment ([`LINGER`]) for them: callers that
//! block on a publish come back at once with their next event, and waiting for them (group
//! commit) makes one round trip serve them all instead of splitting them over several
//! batches.

use std::time::{Duration, Instant};

/// The most events the publishing thread takes from its queue for one pipelined batch.
pub(crate) const MAX_BATCH: usize = 4096;

/// How long the publishing thread waits for the callers of its last batch to queue their
/// next events before it publishes what it has (only while fewer callers are queued than it
/// last answered).
pub(crate) const LINGER: Duration = Duration::from_micros(200);

/// What the publishing thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait, however long, for a first request (the batch is empty).
    Wait,
    /// Take a request if one is queued, without waiting.
    Poll,
    /// Wait for a request until then.
    Linger(Instant),
    /// Publish the batch and answer its callers.
    Publish,
}

/// The state of the batch being gathered.
#[derive(Debug, Clone)]
pub(crate) struct Gather {
    max_events: usize,
    linger: Duration,
    /// How many callers the last batch answered.
    answered: usize,
    /// The events in the batch being gathered.
    events: usize,
    /// The callers (requests) in it.
    callers: usize,
    /// Until when the batch may linger: set by its first request.
    linger_until: Option<Instant>,
    /// The queue was found empty since the last request taken.
    dry: bool,
    /// A linger ended without a request.
    lingered: bool,
}

impl Gather {
    /// A batch of at most `max_events` (unless one request brings more), lingering at most
    /// `linger` after the first request.
    pub(crate) fn new(max_events: usize, linger: Duration) -> Gather {
        Gather {
            max_events,
            linger,
            answered: 0,
            events: 0,
            callers: 0,
            linger_until: None,
            dry: false,
            lingered: false,
        }
    }

    /// What to do next.
    pub(crate) fn next(&self) -> Next {
        if self.callers == 0 {
            return Next::Wait;
        }
        if self.events >= self.max_events {
            return Next::Publish;
        }
        if !self.dry {
            return Next::Poll;
        }
        match self.linger_until {
            Some(until) if self.callers < self.answered && !self.lingered => Next::Linger(until),
            _ => Next::Publish,
        }
    }

    /// A request of `events` events was taken, at `now` (only read for the batch's first).
    pub(crate) fn took(&mut self, events: usize, now: impl FnOnce() -> Instant) {
        if self.callers == 0 {
            self.linger_until = Some(now() + self.linger);
        }
        self.callers += 1;
        self.events += events;
        self.dry = false;
    }

    /// A [`Next::Poll`] or [`Next::Linger`] found no request (the queue is empty, or every
    /// handle is gone).
    pub(crate) fn ran_dry(&mut self) {
        if self.dry {
            self.lingered = true;
        }
        self.dry = true;
    }

    /// The batch was published and its callers answered.
    pub(crate) fn published(&mut self) {
        self.answered = self.callers;
        self.events = 0;
        self.callers = 0;
        self.linger_until = None;
        self.dry = false;
        self.lingered = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the thread is told, and what it then asks for.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// A request of this many events is taken.
        Took(usize),
        /// Nothing came.
        Dry,
        /// The batch was published.
        Published,
    }
    use Step::*;

    /// A word for each [`Next`]: `wait`, `poll`, `linger` (until the first request's time
    /// plus the linger), `publish`.
    fn word(next: Next, t0: Instant) -> &'static str {
        match next {
            Next::Wait => "wait",
            Next::Poll => "poll",
            Next::Linger(until) if until == t0 + LINGER => "linger",
            Next::Linger(_) => "linger until the wrong time",
            Next::Publish => "publish",
        }
    }

    /// Runs `steps` on a gather of at most `max` events that last answered `answered`
    /// callers, and checks what it asks for first and after each step.
    fn check(max: usize, answered: usize, steps: &[Step], expected: &[&str]) {
        let t0 = Instant::now();
        let mut gather = Gather::new(max, LINGER);
        gather.answered = answered;
        let mut seen = vec![word(gather.next(), t0)];
        for step in steps {
            match *step {
                Took(n) => gather.took(n, || t0),
                Dry => gather.ran_dry(),
                Published => gather.published(),
            }
            seen.push(word(gather.next(), t0));
        }
        assert_eq!(seen, expected, "{steps:?}");
    }

    #[test]
    fn a_lone_request_is_published_once_the_queue_is_dry() {
        check(10, 0, &[], &["wait"]);
        check(10, 0, &[Took(1), Dry], &["wait", "poll", "publish"]);
        // One caller answered last time, one is here: nobody to wait for.
        check(10, 1, &[Took(1), Dry], &["wait", "poll", "publish"]);
    }

    #[test]
    fn everything_queued_is_taken_into_one_batch() {
        check(
            10,
            0,
            &[Took(1), Took(1), Took(3), Dry],
            &["wait", "poll", "poll", "poll", "publish"],
        );
    }

    #[test]
    fn a_full_batch_is_published_without_polling_for_more() {
        check(3, 0, &[Took(1), Took(2)], &["wait", "poll", "publish"]);
        // One request may bring more than a batch holds: it is not split.
        check(3, 5, &[Took(7)], &["wait", "publish"]);
    }

    #[test]
    fn it_lingers_for_the_callers_of_the_last_batch() {
        // Three answered last time; one is back: linger for the others.
        check(
            10,
            3,
            &[Took(1), Dry, Took(1), Dry, Took(1), Dry],
            &[
                "wait", "poll", "linger", "poll", "linger", "poll", "publish",
            ],
        );
        // They do not come: the linger ends, and the batch goes.
        check(
            10,
            3,
            &[Took(1), Dry, Dry],
            &["wait", "poll", "linger", "publish"],
        );
        // One comes during the linger, then nobody: the linger does not start over.
        check(
            10,
            3,
            &[Took(1), Dry, Took(1), Dry, Dry],
            &["wait", "poll", "linger", "poll", "linger", "publish"],
        );
    }

    #[test]
    fn the_next_batch_lingers_for_as_many_callers_as_this_one_answered() {
        check(
            10,
            0,
            &[
                Took(1),
                Took(1),
                Dry,
                Published,
                Took(1),
                Dry,
                Dry,
                Published,
            ],
            &[
                "wait", "poll", "poll", "publish", "wait", "poll", "linger", "publish", "wait",
            ],
        );
        // A batch of one caller: the next one does not linger.
        check(
            10,
            2,
            &[Took(1), Dry, Dry, Published, Took(1), Dry],
            &[
                "wait", "poll", "linger", "publish", "wait", "poll", "publish",
            ],
        );
    }

    #[test]
    fn an_empty_request_still_counts_as_a_caller() {
        // `publish_all` of nothing is answered like any request.
        check(10, 0, &[Took(0), Dry], &["wait", "poll", "publish"]);
    }

    #[test]
    fn the_clock_is_read_once_a_batch() {
        let mut gather = Gather::new(10, LINGER);
        let mut reads = 0;
        let t0 = Instant::now();
        for _ in 0..3 {
            gather.took(1, || {
                reads += 1;
                t0
            });
        }
        assert_eq!(reads, 1);
        gather.published();
        gather.took(1, || {
            reads += 1;
            t0
        });
        assert_eq!(reads, 2);
    }
}
