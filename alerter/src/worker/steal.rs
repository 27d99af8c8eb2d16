//! CPU steal time from `/proc/stat`: the delta of the `steal` column over the delta of the sum
//! of all columns of the aggregate `cpu` line. The path is configurable so tests can inject
//! steal by writing a file.

use std::path::Path;

/// The aggregate `cpu` line's counters (jiffies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Sum of every column.
    pub total: u64,
    /// The `steal` column (8th value).
    pub steal: u64,
}

/// Parses the first `cpu ` line of a `/proc/stat`-format text.
pub fn parse(text: &str) -> Result<CpuTimes, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| "no aggregate `cpu` line".to_string())?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| format!("{v:?} is not a counter"))
        })
        .collect::<Result<_, _>>()?;
    if values.len() < 8 {
        return Err(format!(
            "the cpu line has {} columns; steal is the 8th",
            values.len()
        ));
    }
    Ok(CpuTimes {
        total: values.iter().sum(),
        steal: values[7],
    })
}

/// Reads and parses `path`.
pub fn read(path: &Path) -> Result<CpuTimes, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Steal fraction between two samples, or `None` when no time passed or counters went back
/// (a reset, or a test rewriting the file with smaller values).
pub fn fraction(prev: CpuTimes, cur: CpuTimes) -> Option<f64> {
    let total = cur.total.checked_sub(prev.total)?;
    let steal = cur.steal.checked_sub(prev.steal)?;
    if total == 0 {
        return None;
    }
    Some((steal as f64 / total as f64).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_the_steal_fraction() {
        let a = parse("cpu  100 0 100 700 0 0 0 100 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n").unwrap();
        let b = parse("cpu  150 0 150 750 0 0 0 150 0 0\n").unwrap();
        assert_eq!(a.total, 1000);
        assert_eq!(fraction(a, b), Some(0.25));
        assert_eq!(
            fraction(b, a),
            None,
            "counters going back is not a measurement"
        );
        assert_eq!(fraction(a, a), None);
        assert!(parse("cpu  1 2 3").unwrap_err().contains("8th"));
        assert!(parse("intr 5").is_err());
    }
}
