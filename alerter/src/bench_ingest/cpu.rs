//! CPU time (Linux). The calling thread's comes from its CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`), which is exact at any moment. Other threads' comes from
//! `/proc/…/task/TID/schedstat` (nanoseconds on a CPU), which the kernel brings up to date
//! whenever a thread leaves the CPU: exact for threads that are idle when read, as a
//! receiver's are between the benchmark's phases. Where the kernel keeps no scheduler
//! statistics, `stat`'s utime + stime (10 ms ticks) stands in.

use crate::procfs::task_ns;

/// The kernel keeps at most this many bytes of a thread name (`comm`), NUL excluded.
const COMM_BYTES_MAX: usize = 15;

/// CPU time of the calling thread so far (ns).
pub(super) fn thread_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

/// CPU time of the live threads of process `pid` so far, summed (ns).
pub(super) fn process_ns(pid: u32) -> Option<u64> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let dir = task.path();
        let Some(dir) = dir.to_str() else { continue };
        total += task_ns(dir).unwrap_or(0);
    }
    Some(total)
}

/// CPU time of the live threads of this process named `name` (as truncated by the kernel),
/// summed (ns).
pub(super) fn named_threads_ns(name: &str) -> u64 {
    let want = &name.as_bytes()[..name.len().min(COMM_BYTES_MAX)];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let dir = task.path();
        let Some(dir) = dir.to_str() else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("{dir}/comm")) else {
            continue;
        };
        if comm.trim_end().as_bytes() == want {
            total += task_ns(dir).unwrap_or(0);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: std::time::Duration) {
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < d {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
    }

    #[test]
    fn cpu_time_grows_while_a_thread_works() {
        // Work until the thread's CPU time has grown by 10 ms: on a loaded machine a thread
        // gets less CPU than wall time, so a fixed spin proves nothing. If the clock did not
        // grow with work, this fails at its bound.
        let (before, started) = (thread_ns(), std::time::Instant::now());
        loop {
            spin(std::time::Duration::from_millis(5));
            let spent = thread_ns() - before;
            if spent >= 10_000_000 {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "20 s of spinning added only {spent} ns of thread CPU time"
            );
        }
        let worker = std::thread::Builder::new()
            .name("cpu-test-worker".into())
            .spawn(|| spin(std::time::Duration::from_millis(30)))
            .unwrap();
        worker.join().unwrap();
        assert!(process_ns(std::process::id()).is_some_and(|ns| ns > 0));
        assert_eq!(named_threads_ns("no-such-thread"), 0);
    }
}
