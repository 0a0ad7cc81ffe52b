//! Progress of long operations on stderr.
//!
//! On a terminal, one line redrawn in place at most ten times a second; elsewhere (a log
//! file, CI), one plain line a second. Operations that end within a second print nothing.

use std::io::Write;
use std::time::{Duration, Instant};

/// Draws progress lines.
#[derive(Debug)]
pub(crate) struct ProgressLine {
    terminal: bool,
    started: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressLine {
    pub(crate) fn new(terminal: bool) -> Self {
        ProgressLine {
            terminal,
            started: Instant::now(),
            last: None,
            drawn: false,
        }
    }

    fn interval(&self) -> Duration {
        if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        }
    }

    /// Shows `text()` if it is time to.
    pub(crate) fn update(&mut self, err: &mut dyn Write, text: impl FnOnce() -> String) {
        let now = Instant::now();
        if now.duration_since(self.started) < Duration::from_secs(1) {
            return;
        }
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval())
        {
            return;
        }
        self.last = Some(now);
        // Progress is a courtesy: a stderr that cannot be written to is not an error.
        let _ = if self.terminal {
            write!(err, "\r\x1b[2K{}", text())
        } else {
            writeln!(err, "{}", text())
        };
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line drawn on a terminal, before the summary is printed.
    pub(crate) fn finish(&mut self, err: &mut dyn Write) {
        if self.terminal && self.drawn {
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
        self.drawn = false;
    }

    /// Messages per second since the start.
    pub(crate) fn rate(&self, done: usize) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            done as f64 / secs
        } else {
            0.0
        }
    }
}
