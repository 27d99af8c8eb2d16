//! A run's report: JSON for machines (`report.json` in the run's directory), a terminal
//! table for people.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::checker::Figures;
use super::error::HarnessError;

/// One thing the harness did to the cluster, for the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Milliseconds after the workload's start (negative: before it).
    pub at_ms: i64,
    /// What was done (`kill zone b: node 2, worker w-b-1`).
    pub what: String,
}

/// The report of one scenario run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `S2`.
    pub scenario: String,
    /// The seed that drove topology, faults and workload.
    pub seed: u64,
    /// The command that replays this run.
    pub replay: String,
    /// Whether every pass criterion held.
    pub pass: bool,
    /// The criteria that failed, in words.
    pub failures: Vec<String>,
    /// Zones of the cluster.
    pub zones: Vec<String>,
    /// Workers per zone (drawn from the seed).
    pub workers_per_zone: usize,
    /// What the harness did, in order.
    pub timeline: Vec<FaultEvent>,
    /// The measured figures.
    pub figures: Figures,
    /// Scenario-specific facts (leaders, meta-alerts, worker reactions).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Where the run's data dirs and logs are.
    pub run_dir: String,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
}

impl Report {
    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), HarnessError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| HarnessError::Api {
            what: "encoding the report".into(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| HarnessError::io(path, e))
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

/// A fixed-width table of `reports`, one line each, with the replay command of every
/// failed run below it.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<4} {:>6} {:<4} {:>6} {:>6} {:>5} {:>6} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
        "scen",
        "seed",
        "pass",
        "expect",
        "missed",
        "dupId",
        "dupRaw",
        "stale",
        "spur",
        "p50ms",
        "p99ms",
        "maxms",
        "gap_s",
        "det_s",
        "move_s",
        "reasg_s"
    );
    for r in reports {
        let f = &r.figures;
        let (p50, p99, max) = f
            .latency_ms
            .map_or(("-".into(), "-".into(), "-".into()), |l| {
                (l.p50.to_string(), l.p99.to_string(), l.max.to_string())
            });
        let _ = writeln!(
            out,
            "{:<4} {:>6} {:<4} {:>6} {:>6} {:>5} {:>6} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
            r.scenario,
            r.seed,
            if r.pass { "ok" } else { "FAIL" },
            f.expected,
            f.missed,
            f.duplicates_idempotent,
            f.duplicates_raw,
            f.stale_epoch_commits,
            f.spurious,
            p50,
            p99,
            max,
            opt(f.eval_gap_s),
            opt(f.detect_s),
            opt(f.first_move_s),
            opt(f.reassign_s),
        );
    }
    for r in reports.iter().filter(|r| !r.pass) {
        let _ = writeln!(
            out,
            "{} seed {}: {}",
            r.scenario,
            r.seed,
            r.failures.join("; ")
        );
        let _ = writeln!(out, "  replay: {}", r.replay);
    }
    out
}
