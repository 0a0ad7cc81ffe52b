//! The subscriber's settings, the retry policy and topology naming.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use pubsub_amqp::{ExchangeConfig, QueueConfig, ReconnectPolicy};

use crate::decode::Decoder;
use crate::dispatch::Dispatcher;
use crate::report::DeliveryReport;

/// What a [`SubscriberBuilder`](crate::SubscriberBuilder) sets.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) queue_config: QueueConfig,
    pub(crate) declare_exchange: Option<ExchangeConfig>,
    pub(crate) prefetch: u16,
    pub(crate) retry: RetryPolicy,
    pub(crate) dead_letter: bool,
    /// Consume a queue declared elsewhere as it is (passive declare) instead of declaring it.
    pub(crate) existing_queue: bool,
    pub(crate) decoder: Decoder,
    pub(crate) max_redeliveries: u32,
    /// Whether the queue, its delay queues and its dead-letter queue are quorum queues.
    pub(crate) quorum: bool,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) observer: Option<Sender<DeliveryReport>>,
    /// Where the handlers run when not on the subscriber's thread.
    pub(crate) dispatcher: Option<Dispatching>,
}

/// A [`Dispatcher`] and how long a stop waits for the handlers it is running.
#[derive(Clone)]
pub(crate) struct Dispatching {
    pub(crate) dispatcher: Arc<dyn Dispatcher>,
    /// How long a stop waits for the jobs in flight before it leaves them to the broker.
    pub(crate) drain: Duration,
}

impl std::fmt::Debug for Dispatching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatching")
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Whether the queue is declared as a quorum queue (which counts deliveries).
    pub(crate) fn is_quorum(&self) -> bool {
        self.quorum
            || self
                .queue_config
                .arguments
                .get("x-queue-type")
                .and_then(|t| t.as_str())
                == Some("quorum")
    }
}

/// How often a failed event is retried, and how long to wait before each retry.
///
/// `max_attempts` counts every time the handlers run, the first included: with the default
/// of 3, an event whose handler keeps failing runs three times (first delivery, then after
/// 1 s, then after 5 s) and then goes to the dead-letter queue. Retry `n` waits `delays[n-1]`;
/// when there are fewer delays than retries, the last one repeats.
///
/// Retries go through delay queues, one per distinct delay (`<queue>.retry.<delay>`, e.g.
/// `orders.retry.5s`), declared with a message TTL and the main queue as their dead-letter
/// target: no broker plugin is needed, and a retry reaches only this service's queue.
///
/// # Jitter
///
/// With [`with_jitter`](Self::with_jitter)`(j)`, each retry waits a random time between
/// `(1 - j)` times its delay and the whole delay, so that events that failed together (a
/// database that went down) do not all come back at the same instant. The delay queue still
/// holds the whole delay; each retried copy carries a per-message expiration (AMQP
/// `expiration`) of its own wait. RabbitMQ expires messages from the head of a queue, so a
/// copy can wait behind an earlier one with a longer wait: at most `j` times the delay, and
/// never longer than the whole delay. [`exponential`](Self::exponential) has a jitter of
/// 0.5 (AWS's "equal jitter"); [`new`](Self::new) and the default have none.
///
/// ```
/// use std::time::Duration;
///
/// use pubsub_subscriber::RetryPolicy;
///
/// let policy = RetryPolicy::new(4, vec![Duration::from_secs(1), Duration::from_secs(10)]);
/// assert_eq!(policy.delay_after(1), Some(Duration::from_secs(1)));
/// assert_eq!(policy.delay_after(3), Some(Duration::from_secs(10)));
/// assert_eq!(policy.delay_after(4), None); // the last attempt: dead-letter instead
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    delays: Vec<Duration>,
    /// The share of a delay a retry may be shortened by, in millionths (0 to 1,000,000).
    jitter_ppm: u32,
}

/// One in a million: the unit of [`RetryPolicy`]'s jitter.
const PPM: u32 = 1_000_000;

impl Default for RetryPolicy {
    /// 3 attempts, 1 s then 5 s apart (then 30 s, if `max_attempts` is raised).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            jitter_ppm: 0,
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts in all (at least 1), waiting `delays` between them (at least
    /// one delay is kept: 1 s when none is given; delays are at least 1 ms).
    pub fn new(max_attempts: u32, delays: Vec<Duration>) -> Self {
        let mut delays: Vec<Duration> = delays
            .into_iter()
            .map(|d| d.max(Duration::from_millis(1)))
            .collect();
        if delays.is_empty() {
            delays.push(Duration::from_secs(1));
        }
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            delays,
            jitter_ppm: 0,
        }
    }

    /// Exponential backoff (seed 003's): `max_attempts` attempts in all, the retry after
    /// attempt `n` waiting `first * factor^(n-1)`, at most `max` (a factor below 1 counts as
    /// 1). Each distinct delay is one delay queue (`<queue>.retry.<delay>`), so the delays are
    /// whole milliseconds and there are at most `max_attempts - 1` of them.
    ///
    /// With jitter (see [the type's docs](Self#jitter)): each retry waits between half its
    /// delay and the whole of it ("equal jitter"); [`with_jitter`](Self::with_jitter) sets
    /// another share, 0 none.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use pubsub_subscriber::RetryPolicy;
    ///
    /// let s = Duration::from_secs;
    /// let policy = RetryPolicy::exponential(s(1), 2.0, s(5), 5);
    /// assert_eq!(policy.delays(), [s(1), s(2), s(4), s(5)]);
    /// assert_eq!(policy.jitter(), 0.5); // the retry after 4 s waits 2 s to 4 s
    /// assert_eq!(policy.with_jitter(0.0).jitter(), 0.0); // exactly 1 s, 2 s, 4 s, 5 s
    /// ```
    pub fn exponential(first: Duration, factor: f64, max: Duration, max_attempts: u32) -> Self {
        let factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        let first_ms = first.as_millis().max(1) as f64;
        let max_ms = max.as_millis().max(first.as_millis()).max(1) as f64;
        let retries = max_attempts.max(1) - 1;
        let delays = (0..retries)
            .map(|i| {
                let ms = (first_ms * factor.powi(i.min(1_000) as i32)).min(max_ms);
                Duration::from_millis(ms.round() as u64)
            })
            .collect();
        RetryPolicy::new(max_attempts, delays).with_jitter(0.5)
    }

    /// The same delays, each retry shortened by a random share of its delay up to `jitter`
    /// (0 to 1; clamped, NaN counts as 0): it waits between `(1 - jitter) * delay` and
    /// `delay`. See [the type's docs](Self#jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        let share = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self.jitter_ppm = (share * f64::from(PPM)).round() as u32;
        self
    }

    /// The share of a delay a retry may be shortened by (0: none).
    pub fn jitter(&self) -> f64 {
        f64::from(self.jitter_ppm) / f64::from(PPM)
    }

    /// How long the retry after `delay` waits, given `sample`, a uniformly random `u64`:
    /// `delay` shortened by `sample / 2^64` of its jitter share, at least 1 ms. The same
    /// `delay` without jitter.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use pubsub_subscriber::RetryPolicy;
    ///
    /// let ms = Duration::from_millis;
    /// let policy = RetryPolicy::new(3, vec![ms(1_000)]).with_jitter(0.5);
    /// assert_eq!(policy.wait(ms(1_000), 0), ms(1_000));
    /// assert_eq!(policy.wait(ms(1_000), u64::MAX / 2), ms(750));
    /// assert_eq!(policy.wait(ms(1_000), u64::MAX), ms(500));
    /// ```
    pub fn wait(&self, delay: Duration, sample: u64) -> Duration {
        if self.jitter_ppm == 0 {
            return delay;
        }
        let unit = sample as f64 / u64::MAX as f64; // 0 to 1
        let ms = delay.as_millis() as f64;
        let off = ms * self.jitter() * unit;
        Duration::from_millis(((ms - off).round() as u64).max(1))
    }

    /// No retry: a failed event goes straight to the dead-letter queue.
    pub fn none() -> Self {
        RetryPolicy::new(1, Vec::new())
    }

    /// The delays between attempts, in order (the last one repeats); each is one delay
    /// queue.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How many times the handlers run at most.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long to wait after attempt `attempt` (1-based) failed, or `None` if it was the
    /// last.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let index = usize::try_from(attempt.max(1) - 1).unwrap_or(usize::MAX);
        self.delays.get(index).or(self.delays.last()).copied()
    }

    /// Whether a failed attempt will be retried, and after how long: `None` when the error
    /// is `permanent` (retrying cannot fix it) or `attempt` (1-based; 0 counts as 1) was the
    /// last. The subscriber decides its retries and dead letters by this, and so must anyone
    /// who records what will become of a failed attempt (the task store), so that both say
    /// the same.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use pubsub_subscriber::RetryPolicy;
    ///
    /// let policy = RetryPolicy::default(); // 3 attempts
    /// assert_eq!(policy.retry_after_failure(1, false), Some(Duration::from_secs(1)));
    /// assert_eq!(policy.retry_after_failure(1, true), None); // permanent: dead-lettered
    /// assert_eq!(policy.retry_after_failure(3, false), None); // the last attempt
    /// ```
    pub fn retry_after_failure(&self, attempt: u32, permanent: bool) -> Option<Duration> {
        if permanent {
            None
        } else {
            self.delay_after(attempt.max(1))
        }
    }

    /// The distinct delays the policy uses, in order.
    pub(crate) fn used_delays(&self) -> Vec<Duration> {
        let mut used = Vec::new();
        for attempt in 1..self.max_attempts {
            if let Some(d) = self.delay_after(attempt) {
                if !used.contains(&d) {
                    used.push(d);
                }
            }
            if attempt as usize > self.delays.len() {
                break; // the last delay repeats from here on
            }
        }
        used
    }
}

/// Every queue a subscriber of `queue` with `retry` declares: `queue` itself, its delay
/// queues (`<queue>.retry.<delay>`, see [`retry_queue_name`]), and its dead-letter queue
/// (`<queue>.dlq`), in that order: what to delete when a service goes away.
pub fn queue_names(queue: &str, retry: &RetryPolicy) -> Vec<String> {
    let mut names = vec![queue.to_owned()];
    names.extend(
        retry
            .used_delays()
            .into_iter()
            .map(|delay| retry_queue_name(queue, delay)),
    );
    names.push(dead_letter_queue_name(queue));
    names
}

/// The name of the dead-letter queue of `queue`: `<queue>.dlq`.
pub fn dead_letter_queue_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// The name of the delay queue for retries after `delay`: `<queue>.retry.<delay>`, the delay
/// written `1s`, `30s`, `1500ms`.
pub fn retry_queue_name(queue: &str, delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms % 1000 == 0 {
        format!("{queue}.retry.{}s", ms / 1000)
    } else {
        format!("{queue}.retry.{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jittered_waits() {
        use std::time::Duration;

        use super::RetryPolicy;
        let ms = Duration::from_millis;
        let half = u64::MAX / 2;
        // (jitter asked, delay, sample, wait)
        let table: &[(f64, u64, u64, u64)] = &[
            (0.0, 1_000, u64::MAX, 1_000), // no jitter: the delay
            (0.5, 1_000, 0, 1_000),
            (0.5, 1_000, half, 750),
            (0.5, 1_000, u64::MAX, 500),
            (1.0, 1_000, u64::MAX, 1), // never 0: at least 1 ms
            (1.0, 1_000, half, 500),
            (2.0, 1_000, u64::MAX, 1),      // clamped to 1
            (-1.0, 1_000, u64::MAX, 1_000), // clamped to 0
            (f64::NAN, 1_000, u64::MAX, 1_000),
            (0.2, 30_000, u64::MAX, 24_000),
            (0.5, 1, u64::MAX, 1),
        ];
        for &(jitter, delay, sample, wait) in table {
            let policy = RetryPolicy::new(3, vec![ms(delay)]).with_jitter(jitter);
            assert_eq!(
                policy.wait(ms(delay), sample),
                ms(wait),
                "{jitter} {delay} {sample}"
            );
            assert!((0.0..=1.0).contains(&policy.jitter()));
        }
        // Exponential backoff jitters by default; the others do not.
        let s = Duration::from_secs;
        assert_eq!(RetryPolicy::exponential(s(1), 2.0, s(8), 4).jitter(), 0.5);
        assert_eq!(RetryPolicy::default().jitter(), 0.0);
        assert_eq!(RetryPolicy::new(2, vec![s(1)]).jitter(), 0.0);
    }

    #[test]
    fn exponential_delays() {
        use std::time::Duration;

        use super::RetryPolicy;
        let ms = Duration::from_millis;
        let check = |first: u64, factor: f64, max: u64, attempts: u32, expected: &[u64]| {
            let policy = RetryPolicy::exponential(ms(first), factor, ms(max), attempts);
            let got: Vec<u64> = policy
                .delays()
                .iter()
                .map(|d| d.as_millis() as u64)
                .collect();
            assert_eq!(got, expected, "{first} {factor} {max} {attempts}");
            assert_eq!(policy.max_attempts(), attempts.max(1));
        };
        check(1_000, 2.0, 30_000, 4, &[1_000, 2_000, 4_000]);
        check(1_000, 2.0, 3_000, 5, &[1_000, 2_000, 3_000, 3_000]);
        check(500, 1.5, 10_000, 3, &[500, 750]);
        check(1_000, 0.5, 10_000, 3, &[1_000, 1_000]); // never shrinks
        check(1_000, f64::NAN, 10_000, 3, &[1_000, 1_000]);
        check(
            1_000,
            1e300,
            60_000,
            40,
            &[&[1_000][..], &[60_000; 38][..]].concat(),
        );
        check(2_000, 2.0, 1_000, 2, &[2_000]); // max below first: first
        check(1_000, 2.0, 10_000, 1, &[1_000]); // one attempt: the kept delay is unused
        assert_eq!(
            RetryPolicy::exponential(ms(1_000), 2.0, ms(10_000), 1).delay_after(1),
            None
        );
    }

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn default_policy_tries_three_times() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 3);
        assert_eq!(p.delay_after(1), Some(S(1)));
        assert_eq!(p.delay_after(2), Some(S(5)));
        assert_eq!(p.delay_after(3), None);
        assert_eq!(p.used_delays(), [S(1), S(5)]);
    }

    #[test]
    fn last_delay_repeats() {
        let p = RetryPolicy::new(6, vec![S(1), S(2)]);
        let delays: Vec<_> = (1..6).map(|a| p.delay_after(a).unwrap()).collect();
        assert_eq!(delays, [S(1), S(2), S(2), S(2), S(2)]);
        assert_eq!(p.used_delays(), [S(1), S(2)]);
    }

    #[test]
    fn no_retry_policy() {
        let p = RetryPolicy::none();
        assert_eq!(p.delay_after(1), None);
        assert!(p.used_delays().is_empty());
        assert_eq!(RetryPolicy::new(0, vec![]).max_attempts(), 1);
    }

    #[test]
    fn which_failures_are_retried() {
        // (policy, attempt, permanent) -> delay
        let check = |policy: &RetryPolicy, attempt: u32, permanent: bool, expected| {
            assert_eq!(
                policy.retry_after_failure(attempt, permanent),
                expected,
                "{policy:?} attempt {attempt} permanent={permanent}"
            );
        };
        let three = RetryPolicy::new(3, vec![S(1)]);
        check(&three, 0, false, Some(S(1)));
        check(&three, 1, false, Some(S(1)));
        check(&three, 2, false, Some(S(1)));
        check(&three, 3, false, None);
        check(&three, 7, false, None);
        check(&three, 1, true, None);
        check(&RetryPolicy::none(), 1, false, None);
        check(&RetryPolicy::none(), 0, false, None);
    }

    #[test]
    fn names() {
        assert_eq!(dead_letter_queue_name("orders"), "orders.dlq");
        assert_eq!(retry_queue_name("orders", S(5)), "orders.retry.5s");
        assert_eq!(
            retry_queue_name("orders", Duration::from_millis(1500)),
            "orders.retry.1500ms"
        );
        assert_eq!(
            queue_names("orders", &RetryPolicy::default()),
            ["orders", "orders.retry.1s", "orders.retry.5s", "orders.dlq"]
        );
        assert_eq!(
            queue_names("orders", &RetryPolicy::none()),
            ["orders", "orders.dlq"]
        );
    }
}
