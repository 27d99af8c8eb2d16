//! Prometheus durations (`model.Duration`): `1y2w3d4h5m6s7ms`, units in that order, each at
//! most once, `0` allowed without a unit. A year is 365 days, a week 7 days.

use std::fmt;
use std::time::Duration;

/// Why a duration string was rejected, worded as Prometheus words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The empty string.
    #[error("empty duration string")]
    Empty,
    /// Not matching the grammar.
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    /// Larger than an int64 of nanoseconds... of milliseconds, as Prometheus stores it.
    #[error("duration out of range")]
    OutOfRange,
}

const UNITS: &[(&str, u64)] = &[
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus duration.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    match s {
        "0" => return Ok(Duration::ZERO),
        "" => return Err(DurationError::Empty),
        _ => {}
    }
    let invalid = || DurationError::Invalid(s.to_owned());
    let mut rest = s;
    let mut next_unit = 0;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::OutOfRange)?;
        rest = &rest[digits..];
        // Longest unit match first so `ms` is not read as `m` followed by `s`.
        let unit = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, (u, _))| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .map(|(i, u)| (i, *u))
            .next()
            .ok_or_else(invalid)?;
        let (i, (u, mult)) = unit;
        rest = &rest[u.len()..];
        next_unit = i + 1;
        total_ms = n
            .checked_mul(mult)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or(DurationError::OutOfRange)?;
    }
    // Prometheus keeps durations as int64 nanoseconds.
    if total_ms > (i64::MAX as u64) / 1_000_000 {
        return Err(DurationError::OutOfRange);
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats like Prometheus's `model.Duration.String()` (`1h30m`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (u, mult) in UNITS {
        let n = ms / mult;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(u);
            ms -= n * mult;
        }
    }
    out
}

/// A duration that displays the Prometheus way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PromDuration(pub Duration);

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let ms = |s: &str| parse_duration(s).map(|d| d.as_millis() as u64);
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("100ms"), Ok(100));
        assert_eq!(ms("1y"), Ok(365 * 86_400_000));
        assert_eq!(ms("2w1d"), Ok(15 * 86_400_000));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("0s"), Ok(0));
        assert_eq!(ms("1m1ms"), Ok(60_001));
        assert_eq!(ms(""), Err(DurationError::Empty));
        for bad in [
            "1", "5M", "1s1m", "1h1h", "1.5h", "-1s", " 1s", "1s ", "h", "1d1y",
        ] {
            assert!(matches!(ms(bad), Err(DurationError::Invalid(_))), "{bad}");
        }
        assert_eq!(ms("999999999999y"), Err(DurationError::OutOfRange));
        assert_eq!(format_duration(Duration::from_millis(5_400_000)), "1h30m");
        assert_eq!(
            format_duration(Duration::from_millis(86_400_000 * 8)),
            "1w1d"
        );
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..(i64::MAX as u64 / 1_000_000)) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "[0-9ywdhms.\\- ]{0,20}") {
            let _ = parse_duration(&s);
        }
    }
}
