//! UTC calendar breakdown of Unix seconds, reproducing Go's `time` package exactly.
//!
//! Prometheus's date functions (`hour`, `month`, …) convert the sample value with Go's
//! `int64(f)` and read the fields of `time.Unix(sec, 0).UTC()`. Go computes them from an
//! unsigned "absolute" day count with wrapping arithmetic, so even out-of-range input (NaN,
//! ±Inf, 1e20, which `int64` turns into `i64::MIN` on amd64) has a definite answer; this module
//! reproduces that arithmetic so results agree for every input, not only for sane dates.

const SECONDS_PER_MINUTE: u64 = 60;
const SECONDS_PER_HOUR: u64 = 3600;
const SECONDS_PER_DAY: u64 = 86_400;
const SECONDS_PER_WEEK: u64 = 7 * SECONDS_PER_DAY;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
/// Go's `absoluteZeroYear`.
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
/// Go's `unixToInternal + internalToAbsolute`: Unix seconds → absolute seconds.
const UNIX_TO_ABSOLUTE: i64 = 62_135_596_800 + 9_223_371_966_579_724_800;
/// Go's `daysBefore`: days before the start of each month in a non-leap year.
const DAYS_BEFORE: [u32; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

/// The calendar fields Prometheus's date functions expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CivilTime {
    pub(crate) year: i64,
    /// 1..=12.
    pub(crate) month: u32,
    /// 1..=31.
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    /// Sunday = 0.
    pub(crate) weekday: u32,
    /// 1..=366.
    pub(crate) day_of_year: u32,
    pub(crate) days_in_month: u32,
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

impl CivilTime {
    /// The fields of Go's `time.Unix(secs, 0).UTC()`.
    pub(crate) fn from_unix(secs: i64) -> Self {
        let abs = secs.wrapping_add(UNIX_TO_ABSOLUTE) as u64;
        let (year, yday) = abs_year(abs);
        let (month, day) = month_day(year, yday);
        let weekday =
            (abs.wrapping_add(SECONDS_PER_DAY) % SECONDS_PER_WEEK / SECONDS_PER_DAY) as u32;
        let dim = DAYS_BEFORE[month as usize] - DAYS_BEFORE[month as usize - 1];
        Self {
            year,
            month,
            day,
            hour: (abs % SECONDS_PER_DAY / SECONDS_PER_HOUR) as u32,
            minute: (abs % SECONDS_PER_HOUR / SECONDS_PER_MINUTE) as u32,
            weekday,
            day_of_year: yday + 1,
            days_in_month: dim + u32::from(month == 2 && is_leap(year)),
        }
    }
}

/// Go's `absDate` (year and zero-based day of year).
fn abs_year(abs: u64) -> (i64, u32) {
    let mut d = abs / SECONDS_PER_DAY;
    let mut n = d / DAYS_PER_400_YEARS;
    let mut y = 400 * n;
    d -= DAYS_PER_400_YEARS * n;
    n = d / DAYS_PER_100_YEARS;
    n -= n >> 2;
    y += 100 * n;
    d -= DAYS_PER_100_YEARS * n;
    n = d / DAYS_PER_4_YEARS;
    y += 4 * n;
    d -= DAYS_PER_4_YEARS * n;
    n = d / 365;
    n -= n >> 2;
    y += n;
    d -= 365 * n;
    ((y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR), d as u32)
}

/// Go's month/day split of a zero-based day of year.
fn month_day(year: i64, yday: u32) -> (u32, u32) {
    let mut day = yday;
    if is_leap(year) {
        if day == 31 + 29 - 1 {
            return (2, 29);
        }
        if day > 31 + 29 - 1 {
            day -= 1;
        }
    }
    let mut month = (day / 31) as usize;
    let end = DAYS_BEFORE[month + 1];
    let begin = if day >= end {
        month += 1;
        end
    } else {
        DAYS_BEFORE[month]
    };
    ((month + 1) as u32, day - begin + 1)
}

/// Go's `int64(f)` on amd64: truncation, with NaN and out-of-range values giving `i64::MIN`.
pub(crate) fn go_f64_to_i64(x: f64) -> i64 {
    // 2^63 as f64; i64::MIN as f64 is exact.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&x) {
        i64::MIN
    } else {
        x.trunc() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let c = CivilTime::from_unix(1_709_214_300);
        assert_eq!((c.year, c.month, c.day), (2024, 2, 29));
        assert_eq!((c.hour, c.minute, c.weekday), (13, 45, 4));
        assert_eq!((c.day_of_year, c.days_in_month), (60, 29));
        // 1969-12-31T23:59:59Z, a Wednesday.
        let c = CivilTime::from_unix(-1);
        assert_eq!((c.year, c.month, c.day, c.weekday), (1969, 12, 31, 3));
        assert_eq!(c.day_of_year, 365);
        let c = CivilTime::from_unix(0);
        assert_eq!(
            (c.year, c.month, c.day, c.weekday, c.hour),
            (1970, 1, 1, 4, 0)
        );
        // 2024-12-31: day 366 of a leap year.
        assert_eq!(CivilTime::from_unix(1_735_603_200).day_of_year, 366);
    }

    #[test]
    fn out_of_range_input_matches_go() {
        // What Prometheus 2.42 (Go on amd64) returns for year/hour/minute of NaN, 1e20, Inf.
        let c = CivilTime::from_unix(go_f64_to_i64(f64::NAN));
        assert_eq!(c.year, 292_277_026_596);
        assert_eq!(c.hour, 15);
        assert_eq!(c.minute, 30);
    }

    #[test]
    fn go_int_conversion() {
        assert_eq!(go_f64_to_i64(-1.9), -1);
        assert_eq!(go_f64_to_i64(f64::NAN), i64::MIN);
        assert_eq!(go_f64_to_i64(f64::INFINITY), i64::MIN);
        assert_eq!(go_f64_to_i64(1e20), i64::MIN);
    }
}
