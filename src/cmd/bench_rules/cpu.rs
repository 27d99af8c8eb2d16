//! CPU time of this process's threads, read from `/proc` (Linux): per thread from `schedstat`
//! (nanoseconds on a CPU), falling back to `stat`'s utime + stime (clock ticks) where the
//! kernel has no scheduler statistics.

use std::collections::BTreeMap;

use anyhow::Context as _;

/// Length of one `stat` clock tick: Linux reports utime and stime in `USER_HZ`, which is 100
/// on every architecture Tocsin runs on.
const NS_PER_TICK: u64 = 10_000_000;

/// The calling thread's id (`/proc/thread-self` is `/proc/PID/task/TID`).
pub fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self")
        .ok()?
        .file_name()?
        .to_str()?
        .parse()
        .ok()
}

/// CPU time of thread `tid` of this process so far, nanoseconds.
pub fn thread_ns(tid: u32) -> Option<u64> {
    let dir = format!("/proc/self/task/{tid}");
    schedstat_ns(&dir).or_else(|| stat_ns(&dir))
}

/// CPU time of the whole process so far (every thread, exited ones included), nanoseconds.
pub fn process_ns() -> Option<u64> {
    stat_ns("/proc/self")
}

/// CPU time of the live threads of this process, summed by thread name (`comm`, at most 15
/// bytes: tokio's `tokio-runtime-worker` shows as `tokio-runtime-w`), nanoseconds.
pub fn by_thread_name() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let Some(dir) = dir.to_str() else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("{dir}/comm")) else {
            continue;
        };
        if let Some(ns) = schedstat_ns(dir).or_else(|| stat_ns(dir)) {
            *out.entry(comm.trim().to_string()).or_insert(0) += ns;
        }
    }
    out
}

/// The first field of `schedstat`: time spent on a CPU, ns. `None` when the file is missing
/// or reads zero for a thread that has surely run (scheduler statistics disabled).
fn schedstat_ns(dir: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{dir}/schedstat")).ok()?;
    text.split_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|ns| *ns > 0)
}

/// utime + stime of a `stat` file, ns.
fn stat_ns(dir: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    parse_stat_ticks(&text).map(|ticks| ticks * NS_PER_TICK)
}

/// utime (field 14) + stime (field 15) of a `stat` line. The command name (field 2, in
/// parentheses) may contain spaces, so fields are counted after its closing parenthesis.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU times at one moment, ns.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The worker thread's.
    pub worker_thread: u64,
    /// Live threads', by name.
    pub by_name: BTreeMap<String, u64>,
    /// The whole process's.
    pub process: u64,
}

impl Snapshot {
    /// Reads them now; `worker_tid` is the worker thread's id.
    pub fn take(worker_tid: u32) -> anyhow::Result<Self> {
        Ok(Self {
            worker_thread: thread_ns(worker_tid)
                .context("cannot read the worker thread's CPU time from /proc")?,
            by_name: by_thread_name(),
            process: process_ns().context("cannot read /proc/self/stat")?,
        })
    }

    /// CPU seconds the threads named `name` used since `before`.
    pub fn named_since(&self, before: &Self, name: &str) -> f64 {
        let at = |s: &Self| s.by_name.get(name).copied().unwrap_or(0);
        at(self).saturating_sub(at(before)) as f64 / 1e9
    }
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
    fn this_thread_has_a_cpu_time() {
        let tid = current_tid().expect("tid");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(thread_ns(tid).is_some());
        assert!(process_ns().is_some());
        assert!(!by_thread_name().is_empty());
    }
}
