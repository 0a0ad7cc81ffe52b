//! `pubsub dlq purge`: its arguments, the confirmation prompt, and the purge.

use clap::Args;

use crate::connect::connect;
use crate::console::Console;
use crate::dlq::Dlq;
use crate::error::{Error, Result};
use crate::format::plural;

/// The examples under `pubsub dlq purge --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub dlq purge orders              # asks for confirmation
  pubsub dlq purge orders.dlq --yes";

/// Arguments of `pubsub dlq purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The service's queue (`orders`) or its dead-letter queue (`orders.dlq`).
    pub queue: String,

    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

/// Runs `pubsub dlq purge`: asks first, unless `--yes`.
pub(crate) fn run(url: Option<&str>, args: PurgeArgs, console: &mut Console<'_>) -> Result<()> {
    let mut connection = connect(url, "dlq purge")?;
    let mut dlq = Dlq::open(&mut connection, &args.queue)?;
    let name = dlq.name().to_owned();
    if !args.yes {
        let count = dlq.message_count();
        if count == 0 {
            writeln!(console.out, "`{name}` is already empty")?;
            return Ok(());
        }
        write!(
            console.err,
            "Delete {} from `{name}`? This cannot be undone. [y/N] ",
            plural(count, "message")
        )?;
        console.err.flush()?;
        let mut answer = String::new();
        console
            .input
            .read_line(&mut answer)
            .map_err(Error::Answer)?;
        if !console.stdin_is_terminal {
            // The answer was not typed, so no newline was echoed after the prompt.
            writeln!(console.err)?;
        }
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(Error::PurgeCancelled {
                no_answer: !console.stdin_is_terminal && answer.is_empty(),
            });
        }
    }
    let purged = dlq.purge()?;
    writeln!(
        console.out,
        "purged {} from `{name}`",
        plural(purged, "message")
    )?;
    Ok(())
}
