//! Go's `time.Time.String()` for UTC instants, as `humanizeTimestamp` and `toTime` print them.

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Formats nanoseconds since the Unix epoch as Go's `time.Time.String()` in UTC:
/// `2006-01-02 15:04:05.999999999 +0000 UTC` (fraction trimmed of trailing zeros).
pub(crate) fn format_time(unix_nanos: i128) -> String {
    let secs = unix_nanos.div_euclid(NANOS_PER_SEC);
    let nanos = unix_nanos.rem_euclid(NANOS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(z: i128) -> (i128, i128, i128) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Prometheus's float-seconds to time conversion (`model.TimeFromUnixNano(int64(v*1e9))`):
/// truncated to milliseconds. `None` for NaN, infinities and values overflowing int64 nanos.
pub(crate) fn float_secs_to_nanos(v: f64) -> Option<i128> {
    if !v.is_finite() {
        return None;
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return None;
    }
    let ns = ns as i64;
    let ms = ns / 1_000_000;
    Some(i128::from(ms) * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            format_time(1_435_065_584_128_000_000),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(format_time(-1_000_000_000), "1969-12-31 23:59:59 +0000 UTC");
        assert_eq!(float_secs_to_nanos(1.5), Some(1_500_000_000));
        assert_eq!(float_secs_to_nanos(f64::NAN), None);
    }
}
