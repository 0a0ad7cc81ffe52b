//! Text helpers for messages about values that may come from the network: quoting a value in
//! an error, cutting a long text to a size, and naming a JSON value's type.
//!
//! Every crate of the workspace words its messages with these, so that a hostile value is cut
//! the same way everywhere and never turns a message (or the log line that prints it) into a
//! copy of itself.
//!
//! # Example
//!
//! ```
//! use pubsub_core::text;
//!
//! assert_eq!(text::quote("ORD-1"), "ORD-1");
//! assert_eq!(text::quote(&"x".repeat(100)).len(), text::QUOTE_LIMIT + 3);
//! assert_eq!(text::clip("a\ttab and a long tail", 12), "a tab and...");
//! assert_eq!(text::json_type(&serde_json::json!([1, 2])), "an array");
//! ```

use serde_json::Value;

/// Longest value, in characters, that [`quote`] keeps.
pub const QUOTE_LIMIT: usize = 64;

/// What marks a cut.
const ELLIPSIS: &str = "...";

/// `value` to be quoted in an error message: cut to [`QUOTE_LIMIT`] characters, with `...`
/// after the cut.
pub fn quote(value: &str) -> String {
    truncate_chars(value, QUOTE_LIMIT)
}

/// `text` cut to its first `max` characters, with `...` after the cut (so a cut text has
/// `max + 3` characters).
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}{ELLIPSIS}", &text[..cut]),
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `...` after the cut (so a
/// cut text has at most `max + 3` bytes): for fields whose size is counted in bytes, such as
/// an AMQP header.
pub fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end])
}

/// `text` on one line and at most `max` characters, `...` included: control characters
/// (newlines, tabs) become spaces, and a text too long keeps its first `max - 3` characters.
/// For a cell of a table or a line of a terminal.
pub fn clip(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let kept: String = flat.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}{ELLIPSIS}")
}

/// The type of a JSON value as a message names it: `null`, `a boolean`, `a number`,
/// `a string`, `an array` or `an object`.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `error` and each of its sources, joined with `: ` (what `{:#}` of an `anyhow` error
/// prints): the whole story of a failure on one log line.
///
/// ```
/// use std::fmt;
///
/// #[derive(Debug)]
/// struct Outer(std::io::Error);
/// impl fmt::Display for Outer {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         f.write_str("cannot read the config")
///     }
/// }
/// impl std::error::Error for Outer {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let error = Outer(std::io::Error::other("disk on fire"));
/// assert_eq!(pubsub_core::text::error_chain(&error), "cannot read the config: disk on fire");
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quote_cases() {
        let check = |value: &str, expected: &str| assert_eq!(quote(value), expected);
        check("", "");
        check("short", "short");
        check(&"a".repeat(QUOTE_LIMIT), &"a".repeat(QUOTE_LIMIT));
        check(
            &"a".repeat(QUOTE_LIMIT + 1),
            &format!("{}...", "a".repeat(QUOTE_LIMIT)),
        );
        check(&"é".repeat(100), &format!("{}...", "é".repeat(QUOTE_LIMIT)));
    }

    #[test]
    fn truncate_cases() {
        // (text, max, cut by characters, cut by bytes)
        let check = |text: &str, max, by_chars: &str, by_bytes: &str| {
            assert_eq!(truncate_chars(text, max), by_chars, "chars of {text:?}");
            assert_eq!(truncate_bytes(text, max), by_bytes, "bytes of {text:?}");
        };
        check("short", 10, "short", "short");
        check("exactly-10", 10, "exactly-10", "exactly-10");
        check("a bit too long", 10, "a bit too ...", "a bit too ...");
        check("line\nbreak", 20, "line\nbreak", "line\nbreak");
        // `é` is two bytes: a cut inside one moves back to its start.
        check("ééééé", 4, "éééé...", "éé...");
        check("ééééé", 5, "ééééé", "éé...");
        check("aé", 1, "a...", "a...");
        check("anything", 0, "...", "...");
    }

    #[test]
    fn clip_cases() {
        let check = |text: &str, max, expected: &str| assert_eq!(clip(text, max), expected);
        check("short", 10, "short");
        check("exactly-10", 10, "exactly-10");
        check("a bit too long", 10, "a bit t...");
        check("line\nbreak", 20, "line break");
        check("tab\there\r\n", 20, "tab here  ");
        check("ééééééééééé", 5, "éé...");
        check("tiny", 2, "...");
    }

    #[test]
    fn json_type_cases() {
        let check = |value: Value, expected: &str| assert_eq!(json_type(&value), expected);
        check(json!(null), "null");
        check(json!(true), "a boolean");
        check(json!(1.5), "a number");
        check(json!("s"), "a string");
        check(json!([]), "an array");
        check(json!({}), "an object");
    }
}
