//! Python services of the seeds, for interop tests: [`pika`] runs a script with Python 3
//! and the `pika` client against the broker under test.
//!
//! Like [`broker`](crate::broker), it skips (returns `None`) when Python or pika is missing,
//! except under `CI=true`, where it panics: an interop test never passes by not running.
//! Install pika with `pip install pika` (or `apt-get install python3-pika`).

use std::process::Command;

use pubsub_amqp::AmqpConfig;

/// The interpreter the scripts run with.
const PYTHON: &str = "python3";

/// Runs `script` (Python source) with `args` as `sys.argv[1:]` and the broker's URL in the
/// environment variable `AMQP_URL` (password included: it is the test broker's), and returns
/// its standard output. `None` when Python 3 or pika is missing and `CI` is not `true`.
///
/// # Panics
///
/// When Python or pika is missing under `CI=true`, and when the script fails (its standard
/// error is in the message).
pub fn pika(config: &AmqpConfig, script: &str, args: &[&str]) -> Option<String> {
    if !pika_available() {
        let message = format!(
            "Python 3 with pika is not available (`{PYTHON} -c 'import pika'` failed; install it with `pip install pika`)"
        );
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{message}; under CI=true interop tests fail instead of skipping");
        }
        eprintln!("skipping: {message}");
        return None;
    }
    let output = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .env("AMQP_URL", config.url_with_password())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the Python script failed ({}):\n{}\nstdout:\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout)
}

/// Whether `python3 -c 'import pika'` succeeds.
pub fn pika_available() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import pika"])
        .output()
        .is_ok_and(|o| o.status.success())
}
