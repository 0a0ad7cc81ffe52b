//! The `timestamp` field: written as RFC 3339 with microseconds, read as liberal ISO 8601.
//!
//! Written form: `2024-05-01T12:30:00.123456+00:00`. The offset is `+00:00` rather than `Z`
//! because Python's `datetime.fromisoformat` accepts `Z` only from Python 3.11 on, and the
//! services of the original design run older Pythons too.
//!
//! Read form: `YYYY-MM-DD`, `T` (or a space), `HH:MM:SS`, an optional fraction of 0 to 9
//! digits, and an optional offset (`Z`, `+HH:MM`, `-HH:MM`, `+HHMM`). No offset means UTC,
//! which is what Python's `datetime.utcnow().isoformat()` writes.

use std::fmt::Write as _;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Appends `ts`, converted to UTC, as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
pub(crate) fn write_rfc3339_micros(ts: OffsetDateTime, out: &mut String) {
    let ts = ts.to_offset(UtcOffset::UTC);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        ts.year(),
        u8::from(ts.month()),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        ts.microsecond()
    );
}

/// Formats `ts` as [`write_rfc3339_micros`] does.
pub(crate) fn format_rfc3339_micros(ts: OffsetDateTime) -> String {
    let mut out = String::with_capacity(32);
    write_rfc3339_micros(ts, &mut out);
    out
}

/// Parses an ISO 8601 date-time as described in the module docs; `None` if it is not one.
pub(crate) fn parse_iso8601(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    let mut p = Cursor { b, i: 0 };
    let year = p.digits(4)? as i32;
    p.expect(b'-')?;
    let month = Month::try_from(p.digits(2)? as u8).ok()?;
    p.expect(b'-')?;
    let day = p.digits(2)? as u8;
    match p.next()? {
        b'T' | b't' | b' ' => {}
        _ => return None,
    }
    let hour = p.digits(2)? as u8;
    p.expect(b':')?;
    let minute = p.digits(2)? as u8;
    p.expect(b':')?;
    let second = p.digits(2)? as u8;
    let mut nanos = 0u32;
    if p.peek() == Some(b'.') || p.peek() == Some(b',') {
        p.i += 1;
        let mut count = 0;
        while let Some(d @ b'0'..=b'9') = p.peek() {
            count += 1;
            if count > 9 {
                return None;
            }
            nanos = nanos * 10 + u32::from(d - b'0');
            p.i += 1;
        }
        if count == 0 {
            return None;
        }
        nanos *= 10u32.pow(9 - count);
    }
    let offset = match p.next() {
        None => UtcOffset::UTC,
        Some(b'Z' | b'z') => UtcOffset::UTC,
        Some(sign @ (b'+' | b'-')) => {
            let h = p.digits(2)? as i8;
            if p.peek() == Some(b':') {
                p.i += 1;
            }
            let m = p.digits(2)? as i8;
            if h > 23 || m > 59 {
                return None;
            }
            let (h, m) = if sign == b'-' { (-h, -m) } else { (h, m) };
            UtcOffset::from_hms(h, m, 0).ok()?
        }
        Some(_) => return None,
    };
    if p.i != b.len() {
        return None;
    }
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .to_offset(UtcOffset::UTC),
    )
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            match self.next()? {
                d @ b'0'..=b'9' => v = v * 10 + u32::from(d - b'0'),
                _ => return None,
            }
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn check(input: &str, expected: Option<OffsetDateTime>) {
        assert_eq!(parse_iso8601(input), expected, "input {input:?}");
    }

    #[test]
    fn parses_the_forms_python_and_rfc3339_write() {
        let micros = datetime!(2024-05-01 12:30:00.123456 UTC);
        check("2024-05-01T12:30:00.123456", Some(micros));
        check("2024-05-01T12:30:00.123456+00:00", Some(micros));
        check("2024-05-01T12:30:00.123456Z", Some(micros));
        check("2024-05-01 12:30:00.123456", Some(micros));
        check("2024-05-01T14:30:00.123456+02:00", Some(micros));
        check("2024-05-01T14:30:00.123456+0200", Some(micros));
        check("2024-05-01T10:00:00.123456-02:30", Some(micros));
        check(
            "2024-05-01T12:30:00",
            Some(datetime!(2024-05-01 12:30:00 UTC)),
        );
        check(
            "2024-05-01T12:30:00.1",
            Some(datetime!(2024-05-01 12:30:00.1 UTC)),
        );
        check(
            "2024-05-01T12:30:00.123456789Z",
            Some(datetime!(2024-05-01 12:30:00.123456789 UTC)),
        );
    }

    #[test]
    fn rejects_what_is_not_a_date_time() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:30",
            "2024-13-01T12:30:00",
            "2024-02-30T12:30:00",
            "2024-05-01T25:00:00",
            "2024-05-01T12:30:00.",
            "2024-05-01T12:30:00.1234567890",
            "2024-05-01T12:30:00+25:00",
            "2024-05-01T12:30:00 extra",
            "yesterday",
            "２０２４-05-01T12:30:00",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn writes_utc_with_microseconds_and_reads_it_back() {
        let ts = datetime!(2024-05-01 14:30:00.123456789 +02:00);
        let text = format_rfc3339_micros(ts);
        assert_eq!(text, "2024-05-01T12:30:00.123456+00:00");
        assert_eq!(
            parse_iso8601(&text),
            Some(datetime!(2024-05-01 12:30:00.123456 UTC))
        );
    }
}
