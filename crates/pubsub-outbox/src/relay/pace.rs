//! What the relay does next (pure): go again, wait for a wake-up, or back off; and when its
//! lease needs renewing.

use std::time::Duration;

/// How one step of the relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Another relay holds the lease.
    Standby,
    /// Everything committed was published (or nothing was waiting).
    Drained,
    /// A whole batch was published: more may be waiting.
    Full,
    /// The database or the broker failed: what was not confirmed stays staged.
    Failed,
}

/// The first wait after a failure; each further one doubles, up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait after failures.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The relay's pace: how long to wait after each step.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    poll: Duration,
    lease: Duration,
    failures: u32,
}

impl Pace {
    pub(crate) fn new(poll: Duration, lease: Duration) -> Pace {
        Pace {
            poll,
            lease,
            failures: 0,
        }
    }

    /// How long to wait after `step` (a wake-up ends the wait early, except a backoff's);
    /// `None`: go again at once.
    pub(crate) fn after(&mut self, step: Step) -> Option<Wait> {
        if step != Step::Failed {
            self.failures = 0;
        }
        match step {
            Step::Full => None,
            Step::Drained => Some(Wait::Wakeable(self.poll)),
            // A standby takes over within half a lease of the holder's end.
            Step::Standby => Some(Wait::Wakeable(self.poll.min(self.lease / 2))),
            Step::Failed => {
                self.failures = self.failures.saturating_add(1);
                let doubled = FIRST_BACKOFF.saturating_mul(1 << (self.failures - 1).min(16));
                Some(Wait::Backoff(doubled.min(MAX_BACKOFF)))
            }
        }
    }
}

/// A wait of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Until a commit wakes it, or this long.
    Wakeable(Duration),
    /// This long, whatever commits (only a stop ends it early).
    Backoff(Duration),
}

/// Whether a lease taken `held_for` ago (`None`: not held) must be renewed before the next
/// batch: at a third of its term, so that a slow batch never outlives it.
pub(crate) fn renew_lease(held_for: Option<Duration>, lease: Duration) -> bool {
    held_for.is_none_or(|held| held >= lease / 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_comes_after_each_step() {
        let ms = Duration::from_millis;
        let mut pace = Pace::new(ms(1_000), ms(10_000));
        let table = [
            (Step::Full, None),
            (Step::Drained, Some(Wait::Wakeable(ms(1_000)))),
            (Step::Standby, Some(Wait::Wakeable(ms(1_000)))),
            (Step::Failed, Some(Wait::Backoff(ms(100)))),
            (Step::Failed, Some(Wait::Backoff(ms(200)))),
            (Step::Failed, Some(Wait::Backoff(ms(400)))),
            (Step::Drained, Some(Wait::Wakeable(ms(1_000)))),
            (Step::Failed, Some(Wait::Backoff(ms(100)))),
        ];
        for (i, (step, wait)) in table.into_iter().enumerate() {
            assert_eq!(pace.after(step), wait, "row {i}: {step:?}");
        }
        for _ in 0..40 {
            pace.after(Step::Failed);
        }
        assert_eq!(pace.after(Step::Failed), Some(Wait::Backoff(MAX_BACKOFF)));
        let mut short_lease = Pace::new(ms(5_000), ms(2_000));
        assert_eq!(
            short_lease.after(Step::Standby),
            Some(Wait::Wakeable(ms(1_000)))
        );
    }

    #[test]
    fn when_the_lease_is_renewed() {
        let s = Duration::from_secs;
        let table = [
            (None, true),
            (Some(s(0)), false),
            (Some(s(3)), false),
            (Some(s(4)), true),
            (Some(s(60)), true),
        ];
        for (held, renew) in table {
            assert_eq!(renew_lease(held, s(12)), renew, "{held:?}");
        }
    }
}
