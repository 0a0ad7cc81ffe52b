//! Text and JSON formatting shared by the commands: times, header values, tables (cells are
//! cut with `pubsub_core::text::clip`).

use pubsub_amqp::{HeaderValue, Headers};
use pubsub_core::text::clip;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// `2024-05-01T12:30:00.123Z`: a UTC time with milliseconds.
pub(crate) fn time_millis(ts: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    ts.to_offset(UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| ts.to_string())
}

/// An RFC 3339 time from a header, shortened to `2024-05-01 12:30:00Z` when it parses;
/// otherwise the text as it is (clipped).
pub(crate) fn short_time(text: &str) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(ts) => ts
            .to_offset(UtcOffset::UTC)
            .format(&format)
            .unwrap_or_else(|_| clip(text, 32)),
        Err(_) => clip(text, 32),
    }
}

/// Seconds since the epoch as RFC 3339 (an AMQP timestamp).
pub(crate) fn epoch_rfc3339(seconds: u64) -> Option<String> {
    let seconds = i64::try_from(seconds).ok()?;
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// A header value as JSON: strings, numbers, booleans, arrays and tables as themselves;
/// bytes as a (lossy) string; timestamps as RFC 3339.
pub(crate) fn header_json(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::Bool(b) => Value::Bool(*b),
        HeaderValue::Int(i) => Value::from(*i),
        HeaderValue::Float(f) => Value::from(*f),
        HeaderValue::Str(s) => Value::from(s.as_str()),
        HeaderValue::Bytes(b) => Value::from(String::from_utf8_lossy(b).into_owned()),
        HeaderValue::Array(items) => Value::Array(items.iter().map(header_json).collect()),
        HeaderValue::Table(t) => headers_json(t),
        HeaderValue::Timestamp(t) => epoch_rfc3339(*t).map_or(Value::from(*t), Value::from),
        HeaderValue::Void => Value::Null,
    }
}

/// A header table as a JSON object.
pub(crate) fn headers_json(headers: &Headers) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), header_json(v)))
            .collect::<Map<String, Value>>(),
    )
}

/// A header value in one line of text.
pub(crate) fn header_text(value: &HeaderValue) -> String {
    match value {
        HeaderValue::Str(s) => s.clone(),
        other => header_json(other).to_string(),
    }
}

/// A body as JSON: the parsed value when it is JSON, else the text (lossy UTF-8).
pub(crate) fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(body).into_owned()))
}

/// Renders rows under a header line, each column as wide as its widest cell, two spaces
/// apart; the last column is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1 message`, `2 messages`.
pub(crate) fn plural(n: impl Into<u64>, word: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let ts = OffsetDateTime::from_unix_timestamp(1_714_566_600).unwrap();
        assert_eq!(time_millis(ts), "2024-05-01T12:30:00.000Z");
        assert_eq!(
            short_time("2024-05-01T12:30:00.123456789Z"),
            "2024-05-01 12:30:00Z"
        );
        assert_eq!(
            short_time("2024-05-01T14:30:00+02:00"),
            "2024-05-01 12:30:00Z"
        );
        assert_eq!(short_time("yesterday"), "yesterday");
        assert_eq!(
            epoch_rfc3339(1_714_566_600).as_deref(),
            Some("2024-05-01T12:30:00Z")
        );
    }

    #[test]
    fn header_values_as_json() {
        let check = |value: HeaderValue, expected: Value| assert_eq!(header_json(&value), expected);
        check(HeaderValue::Int(3), Value::from(3));
        check(HeaderValue::from("x"), Value::from("x"));
        check(
            HeaderValue::from(vec!["a".to_owned(), "b".to_owned()]),
            serde_json::json!(["a", "b"]),
        );
        check(HeaderValue::Bytes(b"raw".to_vec()), Value::from("raw"));
        check(
            HeaderValue::Timestamp(1_714_566_600),
            Value::from("2024-05-01T12:30:00Z"),
        );
        check(HeaderValue::Void, Value::Null);
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["order.created".to_owned(), "1".to_owned(), "end".to_owned()],
            vec!["x".to_owned(), "22".to_owned(), "".to_owned()],
        ];
        assert_eq!(
            table(&["KEY", "N", "NOTE"], &rows),
            "KEY            N   NOTE\norder.created  1   end\nx              22\n"
        );
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1u32, "message"), "1 message");
        assert_eq!(plural(0u32, "message"), "0 messages");
    }
}
