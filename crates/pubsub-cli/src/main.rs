//! The `pubsub` command; see the `pubsub_cli` crate and `pubsub --help`.

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use pubsub_amqp::RedactingLogger;
use pubsub_cli::cli::Cli;
use pubsub_cli::Console;

fn main() -> ExitCode {
    // clap exits with 2 on a usage error, 0 for --help and --version.
    let cli = Cli::parse();
    init_logging();

    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    if cli.command.stops_on_interrupt() {
        // The first Ctrl-C asks the command to stop cleanly; a second one exits at once.
        let interrupted = AtomicBool::new(false);
        let handler = ctrlc::set_handler(move || {
            if interrupted.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            let _ = stop_tx.try_send(());
        });
        if let Err(e) = handler {
            log::warn!("cannot handle Ctrl-C: {e}");
        }
    }

    let stdin = io::stdin();
    let stdin_is_terminal = stdin.is_terminal();
    let stderr_is_terminal = io::stderr().is_terminal();
    let mut input = stdin.lock();
    let mut out = io::stdout().lock();
    let mut err = io::stderr();
    let mut console = Console {
        out: &mut out,
        err: &mut err,
        input: &mut input,
        stdin_is_terminal,
        stderr_is_terminal,
    };
    match pubsub_cli::run(cli, &mut console, &stop_rx) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            // anyhow prints the message and its sources, `a: b: c`.
            eprintln!("error: {:#}", anyhow::Error::new(e));
            ExitCode::from(code)
        }
    }
}

/// Logs to stderr through `env_logger`, off unless `RUST_LOG` asks (e.g. `RUST_LOG=info`
/// shows the connection attempts), with the password blanked out of the AMQP client's
/// handshake records.
fn init_logging() {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .format_timestamp_millis()
        .build();
    let max_level = logger.filter();
    if log::set_boxed_logger(Box::new(RedactingLogger::new(logger))).is_ok() {
        log::set_max_level(max_level);
    }
}
