//! [`RedactingLogger`]: keeps the broker password out of the AMQP client's own debug logs.
//!
//! amiquip logs the connection handshake at debug level (target
//! `amiquip::io_loop::handshake_state`), and the `StartOk` it prints holds the SASL PLAIN
//! response, `\0username\0password`. [`Connection`](crate::Connection) never gives amiquip the
//! password (its frame guard writes it into the handshake on the way to the socket), so that
//! record only shows a placeholder. [`RedactingLogger`] blanks the response all the same: a
//! second line of defence, for connections opened by other code on amiquip.

use std::fmt;

use log::{Log, Metadata, Record};

/// Wraps a logger and blanks SASL responses (which hold the password) in amiquip's records.
///
/// ```
/// use pubsub_amqp::RedactingLogger;
///
/// # struct Inner;
/// # impl log::Log for Inner {
/// #     fn enabled(&self, _: &log::Metadata<'_>) -> bool { true }
/// #     fn log(&self, _: &log::Record<'_>) {}
/// #     fn flush(&self) {}
/// # }
/// // With env_logger: RedactingLogger::new(env_logger::Builder::from_default_env().build())
/// let logger = RedactingLogger::new(Inner);
/// log::set_max_level(log::LevelFilter::Info);
/// let _ = log::set_boxed_logger(Box::new(logger));
/// ```
pub struct RedactingLogger<L> {
    inner: L,
}

impl<L: Log> RedactingLogger<L> {
    /// Wraps `inner`.
    pub fn new(inner: L) -> Self {
        RedactingLogger { inner }
    }
}

impl<L: Log> Log for RedactingLogger<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        if !record.target().starts_with("amiquip") {
            self.inner.log(record);
            return;
        }
        let text = record.args().to_string();
        match redact_sasl_response(&text) {
            None => self.inner.log(record),
            Some(redacted) => self.inner.log(
                &Record::builder()
                    .args(format_args!("{redacted}"))
                    .metadata(record.metadata().clone())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

impl<L> fmt::Debug for RedactingLogger<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactingLogger").finish_non_exhaustive()
    }
}

/// Replaces the value of every `response: "..."` (a Rust-`Debug`-quoted string) with `***`;
/// `None` when there is none.
fn redact_sasl_response(text: &str) -> Option<String> {
    const KEY: &str = "response: \"";
    if !text.contains(KEY) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(KEY) {
        out.push_str(&rest[..start + KEY.len()]);
        out.push_str("***");
        let value = &rest[start + KEY.len()..];
        // Skip to the closing quote, honouring backslash escapes.
        let mut end = value.len();
        let mut escaped = false;
        for (i, c) in value.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn blanks_sasl_responses() {
        let line = r#"sending handshake StartOk { mechanism: "PLAIN", response: "\0guest\0s3cr\"et", locale: "en_US" }"#;
        let redacted = redact_sasl_response(line).unwrap();
        assert_eq!(
            redacted,
            r#"sending handshake StartOk { mechanism: "PLAIN", response: "***", locale: "en_US" }"#
        );
        assert_eq!(redact_sasl_response("nothing to see"), None);
    }

    #[derive(Default)]
    struct Capture(Mutex<Vec<String>>);

    impl Log for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &Record<'_>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}", record.target(), record.args()));
        }
        fn flush(&self) {}
    }

    #[test]
    fn passes_other_records_through() {
        let logger = RedactingLogger::new(Capture::default());
        let record = |target: &'static str, text: &'static str| {
            logger.log(
                &Record::builder()
                    .target(target)
                    .args(format_args!("{text}"))
                    .build(),
            )
        };
        record(
            "amiquip::io_loop::handshake_state",
            r#"StartOk { response: "\0u\0pw" }"#,
        );
        record("amiquip::io_loop", "opening channel 1");
        record("my_app", r#"response: "kept""#);
        let lines = logger.inner.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                r#"amiquip::io_loop::handshake_state StartOk { response: "***" }"#,
                "amiquip::io_loop opening channel 1",
                r#"my_app response: "kept""#,
            ]
        );
    }
}
