//! [`ReconnectPolicy`]: bounded exponential backoff with jitter, for reconnecting.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// How a publisher or subscriber reconnects after its connection died: exponential backoff
/// with jitter, for at most `max_total` (or forever).
///
/// Delays grow from `initial` by `multiplier` up to `max`; each is then scaled by a random
/// factor in `[1 - jitter, 1]` so that many clients restarting together do not reconnect in
/// lockstep.
///
/// ```
/// use std::time::Duration;
///
/// use pubsub_amqp::ReconnectPolicy;
///
/// let policy = ReconnectPolicy::default().with_max_total(Some(Duration::from_secs(10)));
/// let mut backoff = policy.start();
/// let first = backoff.next_delay().unwrap();
/// assert!(first <= Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    max_total: Option<Duration>,
}

impl Default for ReconnectPolicy {
    /// 100 ms doubling up to 10 s, 20% jitter, for at most 5 minutes.
    fn default() -> Self {
        ReconnectPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            max_total: Some(Duration::from_secs(300)),
        }
    }
}

impl ReconnectPolicy {
    /// Reconnects forever (a service's consumer usually should).
    #[must_use]
    pub fn forever(self) -> Self {
        self.with_max_total(None)
    }

    /// Sets the total time spent reconnecting before giving up (`None`: never give up).
    #[must_use]
    pub fn with_max_total(mut self, max_total: Option<Duration>) -> Self {
        self.max_total = max_total;
        self
    }

    /// Sets the first delay and the largest one.
    #[must_use]
    pub fn with_delays(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Sets the growth factor of the delays (at least 1).
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Sets the jitter, the largest fraction taken off a delay at random (0 to 1).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The total time spent reconnecting before giving up, `None` for forever.
    pub fn max_total(&self) -> Option<Duration> {
        self.max_total
    }

    /// Starts a sequence of delays for one outage.
    pub fn start(&self) -> Backoff {
        Backoff {
            policy: self.clone(),
            next: self.initial,
            started: Instant::now(),
            seed: RandomState::new().build_hasher().finish() | 1,
        }
    }
}

/// The delays of one outage; see [`ReconnectPolicy::start`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    next: Duration,
    started: Instant,
    seed: u64,
}

impl Backoff {
    /// The next delay to wait before trying again, or `None` when the policy's total time is
    /// spent (the last delay is cut to end at that limit).
    pub fn next_delay(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = self
            .next
            .mul_f64(self.policy.multiplier)
            .min(self.policy.max);
        let delay = base.mul_f64(1.0 - self.policy.jitter * self.random_fraction());
        match self.remaining() {
            None => Some(delay),
            Some(remaining) if remaining.is_zero() => None,
            Some(remaining) => Some(delay.min(remaining)),
        }
    }

    /// How long this outage has lasted.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The time left before the policy gives up, `None` for forever.
    pub fn remaining(&self) -> Option<Duration> {
        self.policy
            .max_total
            .map(|total| total.saturating_sub(self.started.elapsed()))
    }

    /// A pseudo-random fraction in [0, 1) (xorshift; jitter needs no better).
    fn random_fraction(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_with_jitter() {
        let policy = ReconnectPolicy::default()
            .with_delays(Duration::from_millis(100), Duration::from_millis(800))
            .with_jitter(0.5)
            .forever();
        let mut backoff = policy.start();
        let bases = [100, 200, 400, 800, 800, 800];
        for base in bases {
            let d = backoff.next_delay().unwrap();
            let base = Duration::from_millis(base);
            assert!(d <= base && d >= base / 2, "{d:?} vs {base:?}");
        }
    }

    #[test]
    fn gives_up_after_the_total() {
        let policy = ReconnectPolicy::default().with_max_total(Some(Duration::ZERO));
        assert_eq!(policy.start().next_delay(), None);
        let policy = ReconnectPolicy::default().with_max_total(Some(Duration::from_millis(30)));
        let mut backoff = policy.start();
        assert!(backoff.next_delay().unwrap() <= Duration::from_millis(30));
    }

    #[test]
    fn settings_are_clamped() {
        let p = ReconnectPolicy::default()
            .with_multiplier(f64::NAN)
            .with_jitter(7.0);
        assert_eq!(p.multiplier, 1.0);
        assert_eq!(p.jitter, 1.0);
    }
}
