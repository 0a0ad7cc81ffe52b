//! Statistics and formatting: medians with min-max, thousands separators, table rows.

/// A median with its range, over rounds or repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    /// The median (the mean of the middle two for an even count).
    pub(crate) median: f64,
    /// The smallest value.
    pub(crate) min: f64,
    /// The largest value.
    pub(crate) max: f64,
}

impl Stat {
    /// The statistics of `values`; `None` when there are none.
    pub(crate) fn of(values: &[f64]) -> Option<Stat> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 0 {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Some(Stat {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// `12345.6` as `12,346`.
pub(crate) fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 {
        out.insert(0, '-');
    }
    out
}

/// A rate with its range: `9,512 [9,100-9,870]`.
pub(crate) fn rate_range(stat: &Stat) -> String {
    format!(
        "{} [{}-{}]",
        thousands(stat.median),
        thousands(stat.min),
        thousands(stat.max)
    )
}

/// A ratio with its range: `1.12x [1.05-1.20]`.
pub(crate) fn ratio_range(stat: &Stat) -> String {
    format!("{:.2}x [{:.2}-{:.2}]", stat.median, stat.min, stat.max)
}

/// Rounds to `digits` decimals, for JSON.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// A JSON object with its keys in the given order (serde_json's own maps sort them).
pub(crate) fn json_line<K: AsRef<str>>(fields: &[(K, serde_json::Value)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", serde_json::Value::from(key.as_ref())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A JSON line for a measurement other than the matrix: `"bench"` first, then `fields` (a JSON
/// object).
pub(crate) fn bench_line(bench: &str, fields: serde_json::Value) -> String {
    let mut pairs = vec![("bench".to_owned(), serde_json::Value::from(bench))];
    if let serde_json::Value::Object(map) = fields {
        pairs.extend(map);
    }
    json_line(&pairs)
}

/// Prints a Markdown table (readable as is, and pasteable into the README).
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .chain(std::iter::once(header[c].chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).expect("stat");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Stat::of(&[4.0, 1.0, 2.0, 3.0]).expect("stat");
        assert_eq!(s.median, 2.5);
        assert!(Stat::of(&[]).is_none());
        assert!(Stat::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(round(1.23456, 2), 1.23);
        let s = Stat {
            median: 9512.0,
            min: 9100.0,
            max: 9870.0,
        };
        assert_eq!(rate_range(&s), "9,512 [9,100-9,870]");
        assert_eq!(
            ratio_range(&Stat {
                median: 1.0,
                min: 0.5,
                max: 2.0
            }),
            "1.00x [0.50-2.00]"
        );
        let line = json_line(&[("b", 1.into()), ("a", serde_json::Value::Null)]);
        assert_eq!(line, r#"{"b":1,"a":null}"#);
    }
}
