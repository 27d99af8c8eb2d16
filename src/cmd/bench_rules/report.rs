//! The figures of one run, from the probe's records and the CPU snapshots, and how they are
//! printed (`name: value unit (what)` lines).

use std::time::Instant;

use tocsin_alerter::worker::observe::EvalOutcome;
use tocsin_alerter::worker::schedule;

use super::Plan;
use super::cpu::Snapshot;
use super::dataset::{Dataset, INSTANCES_PER_JOB};
use super::probe::{Record, WallClock};

/// What the measured window was.
#[derive(Debug)]
pub(super) struct Window {
    /// When it started.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// Instants to wall-clock time.
    pub clock: WallClock,
    /// Timestamp of the samples that made the hot rules true, ms since the epoch.
    pub flip_ms: i64,
    /// CPU times at the start.
    pub before: Snapshot,
    /// CPU times at the end.
    pub after: Snapshot,
}

fn pct(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

/// p50 and p99 of a sample.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spread {
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        Self {
            p50: pct(&mut values, 0.5),
            p99: pct(&mut values, 0.99),
        }
    }
}

/// The figures of one run.
#[derive(Debug)]
pub(super) struct Report {
    pub(super) rules: usize,
    pub(super) groups: usize,
    pub(super) per_group: usize,
    pub(super) interval_ms: u64,
    pub(super) jobs: usize,
    pub(super) series: usize,
    pub(super) window_s: f64,
    /// Group evaluations reported within the window, and the rules they evaluated.
    pub(super) group_evals: usize,
    pub(super) rule_evals: usize,
    /// Slots of every group within the window (what a worker keeping up evaluates).
    pub(super) slots: f64,
    pub(super) late: usize,
    pub(super) timeouts: usize,
    pub(super) failed: usize,
    pub(super) not_committed: usize,
    pub(super) rule_failures: usize,
    pub(super) lateness: Spread,
    pub(super) eval: Spread,
    pub(super) commit: Spread,
    pub(super) worker_cpu_s: f64,
    pub(super) worker_rt_cpu_s: f64,
    pub(super) ds_cpu_s: f64,
    pub(super) process_cpu_s: f64,
    pub(super) hot_rules: usize,
    pub(super) expected_firing: usize,
    pub(super) firing_committed: usize,
    pub(super) spurious: usize,
    pub(super) firing_in_store: usize,
    pub(super) fire_total: Spread,
    pub(super) fire_eval: Spread,
    pub(super) fire_commit: Spread,
    pub(super) fire_from_data: Spread,
    pub(super) samples_refused: u64,
}

impl Report {
    pub(super) fn build(
        dataset: &Dataset,
        plan: &Plan,
        w: &Window,
        records: &[Record],
        firing_in_store: usize,
        samples_refused: u64,
    ) -> Self {
        let window_s = w.end.duration_since(w.start).as_secs_f64();
        let in_window: Vec<&Record> = records
            .iter()
            .filter(|r| r.reported >= w.start && r.reported <= w.end)
            .collect();
        let count = |o: EvalOutcome| in_window.iter().filter(|r| r.outcome == o).count();
        let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1000.0;
        let evaluated: Vec<&&Record> = in_window.iter().filter(|r| r.committed()).collect();
        // Every alert that fired after the change, timed from its group's first slot at or
        // after the change: the first evaluation that sees the changed samples (a query at
        // `t` reads samples up to `t`, and the change was written under the store's lock
        // before `flip_ms` was read). A later slot commits it when that one was cut.
        let interval_ms = plan.interval.as_millis() as i64;
        let mut fire = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut firing_committed = 0;
        for r in records.iter().filter(|r| r.committed() && r.firing > 0) {
            let (Some(end), true) = (r.end, r.slot_ms >= w.flip_ms) else {
                continue;
            };
            firing_committed += r.firing;
            let offset = schedule::slot_offset(&r.group.namespace, &r.group.name, interval_ms);
            let first_true = schedule::next_slot_after(w.flip_ms - 1, offset, interval_ms) as f64;
            let reported_ms = w.clock.wall_ms(r.reported);
            for _ in 0..r.firing {
                fire.0.push(reported_ms - first_true);
                fire.1.push(w.clock.wall_ms(end) - first_true);
                fire.2.push(ms(end, r.reported));
                fire.3.push(reported_ms - w.flip_ms as f64);
            }
        }
        let spurious = records
            .iter()
            .filter(|r| r.committed() && r.slot_ms < w.flip_ms)
            .map(|r| r.firing)
            .sum();
        let worker_rt_cpu_s = w.after.named_since(&w.before, "bench-eval");
        Self {
            rules: dataset.rules,
            groups: dataset.groups(),
            per_group: dataset.per_group,
            interval_ms: dataset.interval_ms,
            jobs: dataset.jobs,
            series: dataset.series(),
            window_s,
            group_evals: evaluated.len(),
            rule_evals: evaluated.iter().map(|r| r.rules).sum(),
            slots: dataset.groups() as f64 * window_s / plan.interval.as_secs_f64(),
            late: in_window.iter().filter(|r| r.late).count(),
            timeouts: count(EvalOutcome::Timeout),
            failed: count(EvalOutcome::Failed),
            not_committed: count(EvalOutcome::NotCommitted),
            rule_failures: in_window.iter().map(|r| r.rule_failures).sum(),
            lateness: Spread::of(
                in_window
                    .iter()
                    .map(|r| w.clock.wall_ms(r.start) - r.slot_ms as f64)
                    .collect(),
            ),
            eval: Spread::of(
                evaluated
                    .iter()
                    .filter_map(|r| r.end.map(|e| ms(r.start, e)))
                    .collect(),
            ),
            commit: Spread::of(
                evaluated
                    .iter()
                    .filter_map(|r| r.end.map(|e| ms(e, r.reported)))
                    .collect(),
            ),
            worker_cpu_s: w.after.worker_thread.saturating_sub(w.before.worker_thread) as f64 / 1e9,
            worker_rt_cpu_s,
            ds_cpu_s: w.after.named_since(&w.before, "bench-ds"),
            process_cpu_s: w.after.process.saturating_sub(w.before.process) as f64 / 1e9,
            hot_rules: dataset.hot_rules(),
            expected_firing: dataset.expected_firing(),
            firing_committed,
            spurious,
            firing_in_store,
            fire_total: Spread::of(fire.0),
            fire_eval: Spread::of(fire.1),
            fire_commit: Spread::of(fire.2),
            fire_from_data: Spread::of(fire.3),
            samples_refused,
        }
    }

    pub(super) fn print(&self) {
        let n = self.rules;
        let per_cpu_s = self.rule_evals as f64 / self.worker_cpu_s.max(1e-9);
        let per_10k = |cpu_s: f64| cpu_s * 1000.0 * 10_000.0 / (self.rule_evals.max(1) as f64);
        println!(
            "rules_{n}_setup: {} groups of {} alerting rules, interval {} ms; {} series in the \
             embedded store ({} jobs x {INSTANCES_PER_JOB} targets, a counter and a gauge each)",
            self.groups, self.per_group, self.interval_ms, self.series, self.jobs
        );
        println!(
            "rules_{n}_evaluations: {} rule evaluations in {:.1} s ({} group evaluations committed; {:.0} slots in the window)",
            self.rule_evals, self.window_s, self.group_evals, self.slots
        );
        println!(
            "rules_{n}_eval_rate: {:.0} rule evaluations/s (wall clock)",
            self.rule_evals as f64 / self.window_s.max(1e-9)
        );
        println!(
            "rules_{n}_evals_per_core_s: {per_cpu_s:.0} rule evaluations per CPU-second of the worker core (goal >= 20000)"
        );
        println!(
            "rules_{n}_worker_core_busy: {:.0} % (CPU time of the worker runtime's one thread over the window)",
            100.0 * self.worker_cpu_s / self.window_s.max(1e-9)
        );
        println!(
            "rules_{n}_cpu_per_10k_rules: {:.0} ms of worker-core CPU per 10k rules per interval",
            per_10k(self.worker_cpu_s)
        );
        println!(
            "rules_{n}_process_cpu_per_10k_rules: {:.0} ms of CPU of the whole process (worker, datasource, 3 store nodes) per 10k rules per interval",
            per_10k(self.process_cpu_s)
        );
        let rest = (self.process_cpu_s - self.worker_rt_cpu_s - self.ds_cpu_s).max(0.0);
        println!(
            "rules_{n}_cpu_split: worker thread {:.2} s (its runtime {:.2} s), datasource runtime {:.2} s (HTTP API, queries on its blocking pool, sample writes), store nodes and the rest {rest:.2} s; process {:.2} s in {:.1} s wall",
            self.worker_cpu_s,
            self.worker_rt_cpu_s,
            self.ds_cpu_s,
            self.process_cpu_s,
            self.window_s
        );
        println!(
            "rules_{n}_missed: {:.0} slots without a committed evaluation; {} late (finished > interval/2 after the slot), {} cut at the interval, {} failed, {} not committed, {} rule failures",
            (self.slots - self.group_evals as f64).max(0.0).round(),
            self.late,
            self.timeouts,
            self.failed,
            self.not_committed,
            self.rule_failures
        );
        let missed = (self.slots - self.group_evals as f64).max(0.0).round();
        if missed > self.slots * 0.01 || self.timeouts > 0 {
            println!(
                "# rules_{n}: the worker did not keep up ({missed:.0} of {:.0} slots without a committed evaluation, {} cut at the interval): these figures are of an overloaded process and include the work lost on cut evaluations; a longer --rules-interval-ms measures capacity",
                self.slots, self.timeouts
            );
        }
        let spread = |name: &str, s: Spread, what: &str| {
            println!("rules_{n}_{name}_p50: {:.1} ms ({what})", s.p50);
            println!("rules_{n}_{name}_p99: {:.1} ms", s.p99);
        };
        spread(
            "slot_lateness",
            self.lateness,
            "slot -> evaluator called, every group evaluation in the window",
        );
        spread(
            "eval",
            self.eval,
            "one group: its queries over HTTP and the rule evaluation",
        );
        spread(
            "commit",
            self.commit,
            "one group: its EvalCycle proposal until committed, every evaluation",
        );
        println!(
            "rules_{n}_firing: {} of {} alerts committed firing ({} rules made true; {} fired before the change; the store holds {} firing)",
            self.firing_committed,
            self.expected_firing,
            self.hot_rules,
            self.spurious,
            self.firing_in_store
        );
        spread(
            "firing",
            self.fire_total,
            "the group's first slot at which the condition is true -> its firing transition committed",
        );
        spread(
            "firing_eval",
            self.fire_eval,
            "of which: that slot -> evaluation done",
        );
        spread("firing_commit", self.fire_commit, "of which: the commit");
        spread(
            "firing_from_data",
            self.fire_from_data,
            "the sample making the condition true -> committed; includes the wait for the next slot",
        );
        if self.samples_refused > 0 {
            println!(
                "# {} synthetic samples were refused by the embedded store",
                self.samples_refused
            );
        }
    }
}
