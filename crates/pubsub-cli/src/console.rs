//! [`Console`]: where a command reads and writes.

use std::fmt;
use std::io::{BufRead, Write};

/// Where a command reads and writes: results on `out`, progress, warnings and prompts on
/// `err`, data and answers from `input`.
pub struct Console<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// Standard input.
    pub input: &'a mut dyn BufRead,
    /// Whether standard input is a terminal (then `publish` does not read data from it).
    pub stdin_is_terminal: bool,
    /// Whether standard error is a terminal (then progress is redrawn in place).
    pub stderr_is_terminal: bool,
}

impl fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("stdin_is_terminal", &self.stdin_is_terminal)
            .field("stderr_is_terminal", &self.stderr_is_terminal)
            .finish_non_exhaustive()
    }
}
