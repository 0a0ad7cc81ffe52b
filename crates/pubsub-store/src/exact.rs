//! What PostgreSQL cannot hold, kept all the same.
//!
//! PostgreSQL refuses the character U+0000 (NUL) in `text` and in `jsonb` strings and keys
//! (`\u0000 cannot be converted to text`, SQLSTATE 22P05; a NUL byte in `text`, 22021), and
//! any valid JSON event may hold one. The rule:
//!
//! - the queryable columns get the value with each NUL replaced by U+FFFD (the replacement
//!   character), and nothing else changed: `data ->> 'a'` still finds the event;
//! - the original of every value so replaced is kept as JSON text (where a NUL is the
//!   six characters `\u0000`, which `text` takes) in an `originals` column: an object from
//!   column name to original value, `NULL` when nothing was replaced (nearly always);
//! - reading a row puts the originals back, so a query gives the event as it was received;
//! - the message's body is kept byte for byte besides (`body`, `bytea`).
//!
//! SQLite takes every such value as it is: there, `originals` stays `NULL`.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// What a NUL becomes in a queryable column.
pub(crate) const REPLACEMENT: &str = "\u{FFFD}";

/// `s` with each NUL replaced, if it holds one.
pub(crate) fn text(s: &str) -> Option<String> {
    s.contains('\0').then(|| s.replace('\0', REPLACEMENT))
}

/// `value` with each NUL in a string or a key replaced, if it holds one.
pub(crate) fn value(value: &Value) -> Option<Value> {
    if !holds_nul(value) {
        return None;
    }
    Some(replaced(value))
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn replaced(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace('\0', REPLACEMENT)),
        Value::Array(items) => Value::Array(items.iter().map(replaced).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.replace('\0', REPLACEMENT), replaced(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The originals of one row's replaced values, by column.
#[derive(Debug, Default)]
pub(crate) struct Originals(Map<String, Value>);

impl Originals {
    /// What to write in text column `column` for `s`: `s`, or its replacement (the original
    /// kept).
    pub(crate) fn text<'s>(&mut self, column: &str, s: &'s str) -> Cow<'s, str> {
        match text(s) {
            None => Cow::Borrowed(s),
            Some(safe) => {
                self.0
                    .insert(column.to_owned(), Value::String(s.to_owned()));
                Cow::Owned(safe)
            }
        }
    }

    /// As [`text`](Self::text), for an optional column.
    pub(crate) fn text_opt<'s>(
        &mut self,
        column: &str,
        s: Option<&'s str>,
    ) -> Option<Cow<'s, str>> {
        s.map(|s| self.text(column, s))
    }

    /// What to write in jsonb column `column` for the JSON text `json`.
    pub(crate) fn json<'s>(&mut self, column: &str, json: &'s str) -> Cow<'s, str> {
        // serde_json writes a NUL as `\u0000`: without that, nothing needs replacing.
        if !json.contains("\\u0000") {
            return Cow::Borrowed(json);
        }
        let Ok(original) = serde_json::from_str::<Value>(json) else {
            return Cow::Borrowed(json);
        };
        match value(&original) {
            None => Cow::Borrowed(json),
            Some(safe) => {
                self.0.insert(column.to_owned(), original);
                Cow::Owned(safe.to_string())
            }
        }
    }

    /// What to write in jsonb column `column` for `v`.
    pub(crate) fn value<'v>(&mut self, column: &str, v: &'v Value) -> Cow<'v, Value> {
        match value(v) {
            None => Cow::Borrowed(v),
            Some(safe) => {
                self.0.insert(column.to_owned(), v.clone());
                Cow::Owned(safe)
            }
        }
    }

    /// The `originals` column: `None` when nothing was replaced.
    pub(crate) fn column(self) -> Option<String> {
        (!self.0.is_empty()).then(|| Value::Object(self.0).to_string())
    }

    /// The originals read back from an `originals` column.
    ///
    /// # Errors
    ///
    /// What is wrong with it (not JSON, not an object).
    pub(crate) fn read(column: Option<&str>) -> Result<Originals, String> {
        match column {
            None => Ok(Originals::default()),
            Some(text) => match serde_json::from_str(text) {
                Ok(Value::Object(map)) => Ok(Originals(map)),
                Ok(_) => Err("originals are not a JSON object".to_owned()),
                Err(e) => Err(format!("originals are not JSON: {e}")),
            },
        }
    }

    /// The original of text column `column`, else `stored`.
    pub(crate) fn restore_text(&mut self, column: &str, stored: String) -> String {
        match self.0.remove(column) {
            Some(Value::String(s)) => s,
            _ => stored,
        }
    }

    /// As [`restore_text`](Self::restore_text), for an optional column.
    pub(crate) fn restore_text_opt(
        &mut self,
        column: &str,
        stored: Option<String>,
    ) -> Option<String> {
        match self.0.remove(column) {
            Some(Value::String(s)) => Some(s),
            _ => stored,
        }
    }

    /// The original of jsonb column `column`, else `stored`.
    pub(crate) fn restore_value(&mut self, column: &str, stored: Value) -> Value {
        self.0.remove(column).unwrap_or(stored)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_nul_is_replaced() {
        let check = |v: Value, expected: Option<Value>| assert_eq!(value(&v), expected, "{v}");
        check(json!({ "a": "ok", "n": 1.5, "l": [true, null] }), None);
        check(
            json!({ "a": "bad\u{0}x" }),
            Some(json!({ "a": "bad\u{FFFD}x" })),
        );
        check(json!({ "k\u{0}": 1 }), Some(json!({ "k\u{FFFD}": 1 })));
        check(
            json!({ "a": { "b": ["x", "\u{0}"] }, "c": "keep\\u0000" }),
            Some(json!({ "a": { "b": ["x", "\u{FFFD}"] }, "c": "keep\\u0000" })),
        );
        check(json!("\u{0}"), Some(json!("\u{FFFD}")));
        assert_eq!(text("a\u{0}b").as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(text("ab"), None);
    }

    #[test]
    fn originals_round_trip() {
        let mut originals = Originals::default();
        let data = json!({ "a": "bad\u{0}x", "b": 1 }).to_string();
        let literal = json!({ "a": "a backslash: \\u0000" }).to_string();
        assert_eq!(originals.json("headers", &literal), literal);
        let safe = originals.json("data", &data).into_owned();
        assert_eq!(
            serde_json::from_str::<Value>(&safe).unwrap(),
            json!({ "a": "bad\u{FFFD}x", "b": 1 })
        );
        assert_eq!(originals.text("producer", "svc\u{0}"), "svc\u{FFFD}");
        assert_eq!(originals.text("version", "1.0"), "1.0");
        let column = originals.column().unwrap();
        assert!(!column.contains('\0'), "{column}");

        let mut back = Originals::read(Some(&column)).unwrap();
        assert_eq!(
            back.restore_value("data", serde_json::from_str(&safe).unwrap()),
            json!({ "a": "bad\u{0}x", "b": 1 })
        );
        assert_eq!(back.restore_text("producer", "x".into()), "svc\u{0}");
        assert_eq!(back.restore_text("version", "1.0".into()), "1.0");
        assert_eq!(back.restore_value("headers", json!({})), json!({}));

        assert!(Originals::default().column().is_none());
        assert!(Originals::read(None).unwrap().0.is_empty());
        assert!(Originals::read(Some("[1]")).is_err());
        assert!(Originals::read(Some("{")).is_err());
    }
}
