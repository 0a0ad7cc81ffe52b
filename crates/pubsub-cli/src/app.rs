//! [`run`]: hands a parsed command line to its command.

use crossbeam_channel::Receiver;

use crate::cli::{Cli, Command};
use crate::console::Console;
use crate::error::Result;
use crate::{asyncapi, dlq, publish, store, tail, task};

/// Carries out the command line. `stop` ends `tail` and `replay` early (Ctrl-C).
///
/// # Errors
///
/// What went wrong, worded for the operator; [`Error::exit_code`](crate::Error::exit_code)
/// tells the exit code.
pub fn run(cli: Cli, console: &mut Console<'_>, stop: &Receiver<()>) -> Result<()> {
    let url = cli.url.as_deref();
    match cli.command {
        Command::Publish(args) => publish::command::run(url, args, console),
        Command::Tail(args) => tail::command::run(url, args, console, stop),
        Command::Dlq(command) => dlq::run(url, command, console, stop),
        Command::Task(command) => task::run(url, command, console),
        Command::Store(command) => store::command::run(url, command, console, stop),
        Command::Asyncapi(args) => asyncapi::run(args, console),
    }
}
