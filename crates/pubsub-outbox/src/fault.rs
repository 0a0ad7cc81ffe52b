//! The fault suite's pause points (feature `fault-points`, never on in a service): with
//! `PUBSUB_OUTBOX_PAUSE_AT=<point>` set, the process stops at that point for good, after
//! saying so on standard error, so that the suite kills it (`kill -9`) exactly there.

/// The environment variable that names the point to pause at.
#[cfg(feature = "fault-points")]
pub const PAUSE_AT_ENV: &str = "PUBSUB_OUTBOX_PAUSE_AT";

/// Pauses for good if the suite asked for `point`.
#[cfg(feature = "fault-points")]
pub(crate) fn pause_at(point: &str) {
    if std::env::var(PAUSE_AT_ENV).is_ok_and(|p| p == point) {
        eprintln!("paused at {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Nothing, without the feature.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub(crate) fn pause_at(_point: &str) {}
