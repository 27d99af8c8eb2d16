//! CPU time of this process's threads, read from `/proc` (Linux): per thread from `schedstat`
//! (nanoseconds on a CPU), falling back to `stat`'s utime + stime (clock ticks) where the
//! kernel has no scheduler statistics.

use std::collections::BTreeMap;

use anyhow::Context as _;
use tocsin_alerter::procfs::{stat_ns, task_ns};

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
    task_ns(&format!("/proc/self/task/{tid}"))
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
        if let Some(ns) = task_ns(dir) {
            *out.entry(comm.trim().to_string()).or_insert(0) += ns;
        }
    }
    out
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
