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

/// Reads one figure of a report.
type Figure = fn(&Report) -> Option<f64>;

/// Per scenario with more than one run: the median and the maximum over its seeds of the
/// failover figures (`detect_s`, `reassign_s`, `eval_gap_s`, latency p50 and p99) and the
/// totals of missed, duplicates and stale-epoch commits, plus how many runs passed.
pub fn summary(reports: &[Report]) -> String {
    let mut by: std::collections::BTreeMap<&str, Vec<&Report>> = Default::default();
    for r in reports {
        by.entry(r.scenario.as_str()).or_default().push(r);
    }
    let mut out = String::new();
    for (scenario, runs) in by.into_iter().filter(|(_, v)| v.len() > 1) {
        let _ = writeln!(
            out,
            "{scenario} over {} seeds: {} passed; missed {}, duplicates_idempotent {}, duplicates_raw {}, stale_epoch_commits {}",
            runs.len(),
            runs.iter().filter(|r| r.pass).count(),
            runs.iter().map(|r| r.figures.missed).sum::<usize>(),
            runs.iter()
                .map(|r| r.figures.duplicates_idempotent)
                .sum::<usize>(),
            runs.iter().map(|r| r.figures.duplicates_raw).sum::<usize>(),
            runs.iter()
                .map(|r| r.figures.stale_epoch_commits)
                .sum::<u64>(),
        );
        let _ = writeln!(
            out,
            "  {:<14} {:>8} {:>8} {:>6}",
            "figure", "median", "max", "runs"
        );
        let figures: [(&str, Figure); 5] = [
            ("detect_s", |r| r.figures.detect_s),
            ("reassign_s", |r| r.figures.reassign_s),
            ("eval_gap_s", |r| r.figures.eval_gap_s),
            ("latency_p50_ms", |r| {
                r.figures.latency_ms.map(|l| l.p50 as f64)
            }),
            ("latency_p99_ms", |r| {
                r.figures.latency_ms.map(|l| l.p99 as f64)
            }),
        ];
        for (name, get) in figures {
            let mut v: Vec<f64> = runs.iter().filter_map(|r| get(r)).collect();
            v.sort_by(f64::total_cmp);
            let (median, max) = match v.len() {
                0 => ("-".to_string(), "-".to_string()),
                n => (
                    format!("{:.1}", (v[(n - 1) / 2] + v[n / 2]) / 2.0),
                    format!("{:.1}", v[n - 1]),
                ),
            };
            let _ = writeln!(out, "  {name:<14} {median:>8} {max:>8} {:>6}", v.len());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seed: u64, reassign_s: Option<f64>, missed: usize) -> Report {
        Report {
            scenario: "S2".into(),
            seed,
            replay: String::new(),
            pass: missed == 0,
            failures: Vec::new(),
            zones: Vec::new(),
            workers_per_zone: 1,
            timeline: Vec::new(),
            figures: Figures {
                reassign_s,
                missed,
                ..Figures::default()
            },
            extra: serde_json::Map::new(),
            run_dir: String::new(),
            wall_s: 0.0,
        }
    }

    #[test]
    fn summary_gives_median_and_max_per_scenario() {
        let runs = [
            report(1, Some(1.0), 0),
            report(2, Some(3.0), 1),
            report(3, Some(2.0), 0),
            report(4, None, 0),
        ];
        let s = summary(&runs);
        assert!(s.contains("S2 over 4 seeds: 3 passed; missed 1"), "{s}");
        let line = s.lines().find(|l| l.contains("reassign_s")).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols, ["reassign_s", "2.0", "3.0", "3"], "{s}");
        assert!(summary(&runs[..1]).is_empty(), "one run has no summary");
    }
}
