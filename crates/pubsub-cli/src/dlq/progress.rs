//! [`Progress`]: how far a long operation on a dead-letter queue has got (peeking at it or
//! replaying it), for display.

/// Progress of a long operation, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Messages looked at so far.
    pub examined: u32,
    /// Messages in the queue at the start.
    pub total: u32,
    /// Messages moved so far (replay only).
    pub moved: usize,
    /// Selected messages left in the queue so far (replay only).
    pub stayed: usize,
}
