//! Alertmanager's `time_intervals`: times of day, weekdays, days of month (negative counts from
//! the end), months and years, evaluated in a location.
//!
//! Time zones: Tocsin evaluates intervals in UTC or in a fixed offset, with no time-zone
//! database. Accepted `location` values: `UTC`, `Etc/UTC`, `GMT`, `Etc/GMT`, `Etc/GMT+N` /
//! `Etc/GMT-N` (POSIX sign: `Etc/GMT+5` is UTC−5, as in the IANA database) and `+HH:MM` /
//! `-HH:MM`. Any other name (`Europe/Paris`, `Local`) is refused with an error naming these
//! forms, because a zone with daylight saving cannot be represented by a fixed offset.

/// An inclusive integer range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InclusiveRange {
    /// First value.
    pub begin: i32,
    /// Last value (inclusive).
    pub end: i32,
}

/// A time-of-day range in minutes since midnight, end exclusive (`24:00` = 1440).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, minutes since midnight.
    pub start_minute: u32,
    /// End (exclusive), minutes since midnight.
    pub end_minute: u32,
}

/// One entry of a named interval's `time_intervals` list; every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeInterval {
    /// Times of day (any may match); empty = all day.
    pub times: Vec<TimeRange>,
    /// Weekdays, 0 = Sunday.
    pub weekdays: Vec<InclusiveRange>,
    /// Days of month, 1..=31 or -31..=-1 (from the end).
    pub days_of_month: Vec<InclusiveRange>,
    /// Months, 1..=12.
    pub months: Vec<InclusiveRange>,
    /// Years.
    pub years: Vec<InclusiveRange>,
    /// Offset from UTC in seconds of the location the fields are evaluated in.
    pub utc_offset_secs: i32,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn parse_hhmm(s: &str) -> Result<u32, String> {
    let bad = || format!("couldn't parse timestamp {s}, invalid format");
    if s == "24:00" {
        return Ok(1440);
    }
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `start_time`/`end_time` (`HH:MM`, end may be `24:00`), start before end.
pub fn parse_time_range(start: &str, end: &str) -> Result<TimeRange, String> {
    let s = parse_hhmm(start)?;
    let e = parse_hhmm(end)?;
    if s >= 1440 {
        return Err(format!("start time {start} is out of range"));
    }
    if s >= e {
        return Err("start time cannot be equal or greater than end time".into());
    }
    Ok(TimeRange {
        start_minute: s,
        end_minute: e,
    })
}

fn split_range(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// A weekday or weekday range (`monday`, `monday:friday`; case-insensitive).
pub fn parse_weekdays(s: &str) -> Result<InclusiveRange, String> {
    let day = |d: &str| {
        let d = d.trim().to_ascii_lowercase();
        WEEKDAYS
            .iter()
            .position(|w| *w == d)
            .map(|i| i as i32)
            .ok_or_else(|| format!("{d} is not a valid weekday"))
    };
    let (a, b) = split_range(s);
    let begin = day(a)?;
    let end = b.map(day).transpose()?.unwrap_or(begin);
    if begin > end {
        return Err("start day cannot be before end day".into());
    }
    Ok(InclusiveRange { begin, end })
}

/// A day of month or range, `-31..=31` without 0 (`1:5`, `-3:-1`).
pub fn parse_days_of_month(s: &str) -> Result<InclusiveRange, String> {
    let day = |d: &str| -> Result<i32, String> {
        let n: i32 = d
            .trim()
            .parse()
            .map_err(|_| format!("{d} is not a valid day of the month"))?;
        if n == 0 || !(-31..=31).contains(&n) {
            return Err(format!("{n} is not a valid day of the month: out of range"));
        }
        Ok(n)
    };
    let (a, b) = split_range(s);
    let begin = day(a)?;
    let end = b.map(day).transpose()?.unwrap_or(begin);
    // Alertmanager's sanity check: negative days compared as if the month had 30 days.
    let norm = |d: i32| if d < 0 { 30 + d } else { d };
    if begin < 0 && end > 0 {
        return Err("end day must be negative if start day is negative".into());
    }
    if norm(begin) > norm(end) {
        return Err("end day must be greater than start day".into());
    }
    Ok(InclusiveRange { begin, end })
}

/// A month (name or 1..=12) or range.
pub fn parse_months(s: &str) -> Result<InclusiveRange, String> {
    let month = |m: &str| -> Result<i32, String> {
        let m = m.trim().to_ascii_lowercase();
        if let Some(i) = MONTHS.iter().position(|n| *n == m) {
            return Ok(i as i32 + 1);
        }
        // Alertmanager 0.25 accepts any integer here (a month outside 1..=12 never matches).
        m.parse::<i32>()
            .map_err(|_| format!("{m} is not a valid month"))
    };
    let (a, b) = split_range(s);
    let begin = month(a)?;
    let end = b.map(month).transpose()?.unwrap_or(begin);
    if begin > end {
        return Err(format!("end month {end} is before start month {begin}"));
    }
    Ok(InclusiveRange { begin, end })
}

/// A year or range of years.
pub fn parse_years(s: &str) -> Result<InclusiveRange, String> {
    let year = |y: &str| -> Result<i32, String> {
        y.trim()
            .parse()
            .map_err(|_| format!("{y} is not a valid year"))
    };
    let (a, b) = split_range(s);
    let begin = year(a)?;
    let end = b.map(year).transpose()?.unwrap_or(begin);
    if begin > end {
        return Err("end year must be greater than start year".into());
    }
    Ok(InclusiveRange { begin, end })
}

/// A `location` as an offset from UTC in seconds; see the module docs for the forms.
pub fn parse_location(s: &str) -> Result<i32, String> {
    let unsupported = || {
        format!(
            "location {s:?} is not supported: Tocsin has no time-zone database; use \"UTC\", \
             \"Etc/GMT+N\"/\"Etc/GMT-N\" or a fixed offset \"+HH:MM\""
        )
    };
    match s {
        "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "Etc/Universal" | "Etc/Zulu" | "Zulu" => {
            return Ok(0);
        }
        _ => {}
    }
    if let Some(rest) = s.strip_prefix("Etc/GMT") {
        let (sign, digits) = match rest.as_bytes().first() {
            Some(b'+') => (-1, &rest[1..]),
            Some(b'-') => (1, &rest[1..]),
            _ => return Err(unsupported()),
        };
        let h: i32 = digits.parse().map_err(|_| unsupported())?;
        // IANA defines Etc/GMT-14 ..= Etc/GMT+12.
        if digits.starts_with('0') || (sign == -1 && h > 12) || (sign == 1 && h > 14) {
            return Err(unsupported());
        }
        return Ok(sign * h * 3600);
    }
    if let Some((sign, rest)) = s
        .strip_prefix('+')
        .map(|r| (1, r))
        .or_else(|| s.strip_prefix('-').map(|r| (-1, r)))
    {
        let (h, m) = rest.split_once(':').ok_or_else(unsupported)?;
        let (h, m): (i32, i32) = (
            h.parse().map_err(|_| unsupported())?,
            m.parse().map_err(|_| unsupported())?,
        );
        if h > 14 || m > 59 {
            return Err(unsupported());
        }
        return Ok(sign * (h * 3600 + m * 60));
    }
    Err(unsupported())
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm): (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i64, month: u32) -> i32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn in_any(ranges: &[InclusiveRange], v: i32) -> bool {
    ranges.is_empty() || ranges.iter().any(|r| r.begin <= v && v <= r.end)
}

impl TimeInterval {
    /// Whether the instant `now_ms` (Unix ms) lies in this interval.
    pub fn contains(&self, now_ms: i64) -> bool {
        let local_s = now_ms.div_euclid(1000) + i64::from(self.utc_offset_secs);
        let days = local_s.div_euclid(86_400);
        let minute = (local_s.rem_euclid(86_400) / 60) as u32;
        let (year, month, day) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7) as i32; // 1970-01-01 was a Thursday.
        let times_ok = self.times.is_empty()
            || self
                .times
                .iter()
                .any(|t| t.start_minute <= minute && minute < t.end_minute);
        let dim = days_in_month(year, month);
        let dom_ok = self.days_of_month.is_empty()
            || self.days_of_month.iter().any(|r| {
                // Negative days count from the end; clamp to the month's length.
                let res = |d: i32| {
                    if d < 0 {
                        (dim + d + 1).max(1)
                    } else {
                        d.min(dim)
                    }
                };
                if r.begin > dim {
                    return false;
                }
                let (b, e) = (res(r.begin), res(r.end));
                b <= day as i32 && day as i32 <= e
            });
        times_ok
            && dom_ok
            && in_any(&self.weekdays, weekday)
            && in_any(&self.months, month as i32)
            && in_any(&self.years, year as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-15 (a Friday) 10:30 UTC.
    const FRI_1030: i64 = 1_710_498_600_000;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_797), (2024, 3, 15));
    }

    #[test]
    fn business_hours() {
        let ti = TimeInterval {
            times: vec![parse_time_range("09:00", "17:00").unwrap()],
            weekdays: vec![parse_weekdays("monday:friday").unwrap()],
            ..Default::default()
        };
        assert!(ti.contains(FRI_1030));
        assert!(!ti.contains(FRI_1030 + 86_400_000)); // Saturday
        assert!(!ti.contains(FRI_1030 + 7 * 3_600_000)); // 17:30
        let tokyo = TimeInterval {
            utc_offset_secs: parse_location("Etc/GMT-9").unwrap(),
            ..ti.clone()
        };
        assert!(!tokyo.contains(FRI_1030)); // 19:30 in UTC+9
    }

    #[test]
    fn days_months_years() {
        let last_days = TimeInterval {
            days_of_month: vec![parse_days_of_month("-17:-1").unwrap()],
            months: vec![parse_months("march").unwrap()],
            years: vec![parse_years("2023:2025").unwrap()],
            ..Default::default()
        };
        assert!(last_days.contains(FRI_1030)); // 15 March = 31 - 17 + 1
        assert!(!last_days.contains(FRI_1030 - 86_400_000));
        assert!(parse_days_of_month("0").is_err());
        assert!(parse_days_of_month("5:1").is_err());
        assert!(parse_time_range("10:00", "09:00").is_err());
        assert!(parse_time_range("9:00", "10:00").is_err());
        assert!(parse_weekdays("friday:monday").is_err());
        assert!(parse_location("Europe/Paris").is_err());
        assert_eq!(parse_location("-05:30"), Ok(-19_800));
    }
}
