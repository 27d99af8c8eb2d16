//! CPU steal time per zone (S7), through the workers' stat files.
//!
//! Every worker the harness launches samples steal from its own `/proc/stat`-format file
//! (`tocsin worker --stat-file`), not the machine's. [`StealFiles`] owns those files: a task
//! advances each file's counters as a 2-CPU machine at 100 Hz would (200 jiffies a second),
//! and the share of them that is `steal` is the fraction set for the worker's zone. With no
//! fraction set the steal column stays still, so a run without S7 reports zero steal.
//!
//! Each rewrite is a write to a temporary file and a rename, so a worker never reads half a
//! line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::HarnessError;

/// How often the counters advance (several times per worker heartbeat, so every heartbeat
/// sees time pass).
const TICK: Duration = Duration::from_millis(50);
/// Jiffies per second of the emulated machine (2 CPUs × `USER_HZ` 100).
const JIFFIES_PER_S: f64 = 200.0;
/// Share of the time the emulated machine spends in `user` (the rest is idle or stolen).
const USER_SHARE: f64 = 0.1;

/// One worker's emulated counters.
#[derive(Debug)]
struct Counters {
    zone: String,
    path: PathBuf,
    user: f64,
    idle: f64,
    steal: f64,
}

impl Counters {
    /// The aggregate `cpu` line and one per-CPU line, in `/proc/stat` column order: `user
    /// nice system idle iowait irq softirq steal guest guest_nice`.
    fn text(&self) -> String {
        let (u, i, s) = (
            self.user as u64,
            self.idle as u64,
            self.steal.floor() as u64,
        );
        format!(
            "cpu  {u} 0 0 {i} 0 0 0 {s} 0 0\ncpu0 {} 0 0 {} 0 0 0 {} 0 0\n",
            u / 2,
            i / 2,
            s / 2
        )
    }

    fn write(&self) -> Result<(), HarnessError> {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, self.text()).map_err(|e| HarnessError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| HarnessError::io(&self.path, e))
    }
}

#[derive(Debug, Default)]
struct State {
    workers: Vec<Counters>,
    /// Steal fraction per zone, in [0, 0.9].
    fraction: BTreeMap<String, f64>,
}

/// The workers' stat files and the steal switch. Dropping it stops the updates.
#[derive(Debug)]
pub struct StealFiles {
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl StealFiles {
    /// Writes one file per `(worker id, zone)` into `dir` (`stat-ID`) and keeps them
    /// advancing until `stop` fires. Returns the path of each worker's file, in order.
    pub fn start(
        dir: &Path,
        workers: &[(String, String)],
        stop: &CancellationToken,
    ) -> Result<(Self, Vec<PathBuf>), HarnessError> {
        let mut state = State::default();
        let mut paths = Vec::new();
        for (id, zone) in workers {
            let c = Counters {
                zone: zone.clone(),
                path: dir.join(format!("stat-{id}")),
                // A machine that has been up a while: large, plausible counters.
                user: 10_000.0,
                idle: 90_000.0,
                steal: 0.0,
            };
            c.write()?;
            paths.push(c.path.clone());
            state.workers.push(c);
        }
        let state = Arc::new(Mutex::new(state));
        let stop = stop.child_token();
        tokio::spawn(advance(state.clone(), stop.clone()));
        Ok((Self { state, stop }, paths))
    }

    /// Sets the steal fraction of every worker in `zone` (0 ends it). Clamped to [0, 0.9].
    pub fn set(&self, zone: &str, fraction: f64) {
        let f = fraction.clamp(0.0, 1.0 - USER_SHARE);
        self.lock().fraction.insert(zone.to_string(), f);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for StealFiles {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn advance(state: Arc<Mutex<State>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let jiffies = (now - last).as_secs_f64() * JIFFIES_PER_S;
        last = now;
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
        let State { workers, fraction } = &mut *s;
        for c in workers.iter_mut() {
            let f = fraction.get(&c.zone).copied().unwrap_or(0.0);
            c.user += jiffies * USER_SHARE;
            c.steal += jiffies * f;
            c.idle += jiffies * (1.0 - USER_SHARE - f);
            if let Err(err) = c.write() {
                tracing::warn!(%err, "updating a worker's stat file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (u64, u64) {
        let line = text.lines().next().unwrap_or_default();
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (v.iter().sum(), v[7])
    }

    #[tokio::test]
    async fn the_steal_column_follows_the_zone_fraction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stop = CancellationToken::new();
        let workers = [("w-a-1".to_string(), "a".to_string())];
        let (files, paths) = StealFiles::start(dir.path(), &workers, &stop).expect("start");
        let read = || parse(&std::fs::read_to_string(&paths[0]).unwrap_or_default());
        let (t0, s0) = read();
        files.set("a", 0.3);
        // Wait until at least 100 jiffies passed (half a second of emulated time).
        let mut tries = 0;
        while read().0 < t0 + 100 && tries < 200 {
            tokio::time::sleep(TICK).await;
            tries += 1;
        }
        let (t1, s1) = read();
        let frac = (s1 - s0) as f64 / (t1 - t0) as f64;
        assert!((0.25..=0.35).contains(&frac), "steal fraction {frac}");
        files.set("a", 0.0);
        let (t2, s2) = read();
        while read().0 < t2 + 100 && tries < 400 {
            tokio::time::sleep(TICK).await;
            tries += 1;
        }
        let (_, s3) = read();
        assert!(s3 <= s2 + 1, "steal kept growing after it was set to 0");
    }
}
