//! A thread's or process's CPU time from its `/proc` directory (Linux), for the benchmarks:
//! `schedstat`'s time on a CPU (nanoseconds), or, where the kernel keeps no scheduler
//! statistics, `stat`'s utime + stime (clock ticks).

/// Length of one `stat` clock tick: Linux reports utime and stime in `USER_HZ`, which is 100
/// on every architecture Tocsin runs on.
pub const NS_PER_TICK: u64 = 10_000_000;

/// CPU time (ns) of the thread whose `/proc` directory is `dir` (`/proc/self/task/TID`):
/// `schedstat`, else `stat`.
pub fn task_ns(dir: &str) -> Option<u64> {
    schedstat_ns(dir).or_else(|| stat_ns(dir))
}

/// utime + stime (ns) of the `stat` file in `dir` (for `/proc/PID`, every thread of the
/// process, exited ones included).
pub fn stat_ns(dir: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    parse_stat_ticks(&text).map(|ticks| ticks * NS_PER_TICK)
}

/// The first field of `schedstat`: time spent on a CPU, ns. `None` when the file is missing
/// or reads zero (scheduler statistics disabled, or a thread that never ran).
fn schedstat_ns(dir: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|ns| *ns > 0)
}

/// utime (field 14) + stime (field 15) of a `stat` line, in ticks. The command name (field 2,
/// in parentheses) may contain spaces, so fields are counted after its closing parenthesis.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_past_a_command_with_spaces() {
        let line = "2462 (a b) c) R 2459 2459 30002 0 -1 4194304 99 0 0 0 245 7 0 0 20 0 1 0";
        assert_eq!(parse_stat_ticks(line), Some(252));
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(task_ns("/proc/thread-self").is_some());
        assert!(stat_ns("/proc/self").is_some());
    }
}
