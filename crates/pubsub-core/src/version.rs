//! Event versions: the default, and the major number a version string starts with.

/// Version an event gets when none is given, as in the original design.
pub const DEFAULT_VERSION: &str = "1.0";

/// The major number of a version string: the digits before the first `.`.
pub(crate) fn major_version(version: &str) -> Option<u64> {
    let major = version.split('.').next()?;
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    major.parse().ok()
}
