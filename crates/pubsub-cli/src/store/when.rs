//! Times on the command line: RFC 3339, or a time ago.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `text` as a time: RFC 3339 (`2024-05-01T12:00:00Z`), or a time before `now` (`30s`,
/// `15m`, `2h`, `7d`).
///
/// # Errors
///
/// What is wrong with it, in words.
pub fn parse_when(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if seconds > 0 => n
            .checked_mul(seconds)
            .and_then(|s| now.checked_sub(Duration::from_secs(s).try_into().ok()?))
            .ok_or_else(|| format!("`{text}` is too long ago")),
        _ => Err(format!(
            "`{}` is neither an RFC 3339 time (2024-05-01T12:00:00Z) nor a time ago (30s, 15m, 2h, 7d)",
            pubsub_core::text::quote(text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn times() {
        let now = datetime!(2024-05-01 12:00:00 UTC);
        let ok = |text: &str, expected: OffsetDateTime| {
            assert_eq!(parse_when(text, now).unwrap(), expected, "{text}")
        };
        ok("2024-04-30T08:00:00Z", datetime!(2024-04-30 08:00:00 UTC));
        ok(
            "2024-04-30T10:00:00+02:00",
            datetime!(2024-04-30 08:00:00 UTC),
        );
        ok("30s", datetime!(2024-05-01 11:59:30 UTC));
        ok("15m", datetime!(2024-05-01 11:45:00 UTC));
        ok("2h", datetime!(2024-05-01 10:00:00 UTC));
        ok("7d", datetime!(2024-04-24 12:00:00 UTC));
        for bad in ["", "yesterday", "5w", "m", "-5m", "99999999999999999999d"] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
    }
}
