//! The checker: compares what the emulators received with what the oracle expects, and reads
//! the store's committed log for fencing, evaluation gaps and ownership after a fault. Pure:
//! everything it needs is passed in.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tocsin_state::audit::FenceAudit;
use tocsin_state::model::{Command, ShardOp, ZoneState};

use super::oracle::{Expected, IncidentCounts, NoticeKey, NoticeStatus};
use super::recorder::Recording;
use crate::RecordedRequest;
use crate::pagerduty::incidents::{IncidentStatus, IncidentsView};

/// Tolerance when checking that a resend waited for `Retry-After` (timer granularity).
const RETRY_AFTER_SLACK_MS: i64 = 100;

/// What the emulators recorded.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Webhook requests per receiver (`team-a`, `team-b`).
    pub hooks: BTreeMap<String, Vec<RecordedRequest>>,
    /// PagerDuty requests.
    pub pagerduty: Vec<RecordedRequest>,
    /// PagerDuty's incident table at the end.
    pub incidents: IncidentsView,
    /// Slack incoming-webhook requests (team b's second integration in S13; empty when
    /// nothing routes there).
    pub slack: Vec<RecordedRequest>,
}

/// The receiver name the oracle and checker give team b's Slack integration.
pub const SLACK_RECEIVER: &str = "team-b/slack";

/// The fault the figures are measured against.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultWindow {
    /// When it was injected (wall ms).
    pub start_ms: i64,
    /// The zone it hit, if it hit one.
    pub zone: Option<String>,
    /// Workers it killed or paused (their shards must move).
    pub workers: BTreeSet<String>,
    /// Every worker of the zone it hit (killed or not), whose shard count the checker
    /// follows.
    pub zone_workers: BTreeSet<String>,
}

/// One committed change of a zone's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneChange {
    /// When the record reached the harness, wall ms.
    pub at_ms: i64,
    /// The new state (`healthy`, `degraded`, `drained`, `probation`).
    pub state: String,
    /// Its smoothed score.
    pub score: f64,
}

/// p50, p99 and max of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: i64,
    /// 99th percentile.
    pub p99: i64,
    /// Maximum.
    pub max: i64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for an empty sample.
    pub fn of(mut v: Vec<i64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[i - 1]
        };
        Some(Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// Every figure of SCENARIOS.md the harness measures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Figures {
    /// Notifications the oracle expects (webhooks) plus PagerDuty incidents and resolves.
    pub expected: usize,
    /// Expected notifications nobody received.
    pub missed: usize,
    /// Which webhook notifications were missed (`receiver/series/status`), for the
    /// post-mortem.
    pub missed_keys: Vec<String>,
    /// Expected firing notifications the receiver refused (an injected 5xx/429/hang) until
    /// the group resolved: the outbox then sends the resolve instead, as specified (a stale
    /// trigger is dropped once a newer resolve exists; Alertmanager does the same). Not
    /// missed: the page was attempted and its resolve delivered.
    pub superseded: usize,
    /// Which notifications were superseded (`receiver/series`).
    pub superseded_keys: Vec<String>,
    /// The same notification delivered twice after the provider's own dedup (two
    /// idempotency keys for one webhook notification, two incidents for one dedup key).
    pub duplicates_idempotent: usize,
    /// Any notification processed more than once, any channel.
    pub duplicates_raw: usize,
    /// Shard writes applied with a stale epoch (from the committed log).
    pub stale_epoch_commits: u64,
    /// Shard writes applied for an unowned shard (from the committed log).
    pub unowned_commits: u64,
    /// Whether the audit saw every entry (no compaction gap).
    pub audit_complete: bool,
    /// Notifications the oracle does not expect, or that came before they could be true.
    pub spurious: usize,
    /// Which webhook notifications were spurious, for the post-mortem.
    pub spurious_keys: Vec<String>,
    /// Tocsin's own meta-alert notifications (`alertname status`), in arrival order per
    /// receiver: not part of the workload, so neither expected nor spurious.
    pub meta_notifications: Vec<String>,
    /// Arrival − due, webhook notifications, ms.
    pub latency_ms: Option<Percentiles>,
    /// Max latency per receiver, ms (other receivers unaffected by one's faults).
    pub latency_max_ms_by_receiver: BTreeMap<String, i64>,
    /// Longest gap between two evaluations of one rule group (in evaluation slots or in
    /// commit arrival, whichever is longer), s.
    pub eval_gap_s: Option<f64>,
    /// Longest time between an evaluation's slot and its commit reaching the harness, ms
    /// (an evaluator running behind shows here).
    pub eval_lag_ms_max: Option<i64>,
    /// Fault → the balancer marks the zone non-healthy, s.
    pub detect_s: Option<f64>,
    /// Fault → the first shard moved off a faulted worker, s.
    pub first_move_s: Option<f64>,
    /// Fault → every shard owned by a worker the fault did not hit, s.
    pub reassign_s: Option<f64>,
    /// Requests answered 429 with `Retry-After` whose resend was checked.
    pub retry_after_checked: usize,
    /// Resends that came sooner than `Retry-After` allowed.
    pub retry_after_violations: usize,
    /// Each zone's committed state changes, in log order (a zone's first record counts
    /// only if it is not `healthy`).
    pub zone_states: BTreeMap<String, Vec<ZoneChange>>,
    /// Shards (eval and notify) owned by the fault zone's workers, after each assignment
    /// that changed the number: (wall ms, shards).
    pub zone_shards: Vec<(i64, usize)>,
    /// Most shards the fault zone lost in one assignment after the fault started.
    pub zone_shards_max_drop: usize,
    /// Shards of both spaces (eval and notify) the log assigned, at the end.
    pub shards_total: usize,
    /// Shards handed from one worker to another after the fault started (a shard whose
    /// owner was removed and then given a new one is not a move: it had none).
    pub shard_moves: usize,
    /// Workload webhook notifications whose `groupLabels` lack the `series` the route groups
    /// by (Alertmanager's payload carries them on resolves too).
    pub group_labels_missing: usize,
    /// Entries in the committed log that the checker read.
    pub log_entries: usize,
    /// Evaluations committed (all groups).
    pub evaluations: usize,
}

/// One webhook delivery, parsed.
struct Hook<'a> {
    key: NoticeKey,
    idempotency_key: String,
    req: &'a RecordedRequest,
}

fn parse_hook<'a>(receiver_hint: &str, req: &'a RecordedRequest) -> Option<Hook<'a>> {
    let body: serde_json::Value = serde_json::from_str(&req.body).ok()?;
    let status = NoticeStatus::parse(body["status"].as_str()?)?;
    let receiver = body["receiver"]
        .as_str()
        .unwrap_or(receiver_hint)
        .to_string();
    let series = body["alerts"][0]["labels"]["series"].as_str()?.to_string();
    Some(Hook {
        key: NoticeKey {
            receiver,
            series,
            status,
        },
        idempotency_key: req
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default(),
        req,
    })
}

/// `alertname status` of a notification about Tocsin itself (its meta-alerts, such as
/// `TocsinZoneUnhealthy`, go through the same routes); `None` for workload notifications.
pub(crate) fn meta_alert(req: &RecordedRequest) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(&req.body).ok()?;
    let name = body["alerts"][0]["labels"]["alertname"].as_str()?;
    name.starts_with("Tocsin")
        .then(|| format!("{name} {}", body["status"].as_str().unwrap_or("")))
}

/// Whether a Slack message is about one of Tocsin's own meta-alerts (its title names no
/// workload series: `STATUS Tocsin…`).
fn meta_alert_slack(req: &RecordedRequest) -> bool {
    let body: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
    body["attachments"][0]["title"]
        .as_str()
        .and_then(|t| t.split_once(' '))
        .is_some_and(|(_, rest)| rest.is_empty() || rest.starts_with("Tocsin"))
}

/// A pass-criterion recorder for the judges: `need(ok, what)` records `what` as a failure
/// unless `ok`.
pub(crate) fn needs(failures: &mut Vec<String>) -> impl FnMut(bool, String) + '_ {
    move |ok, what| {
        if !ok {
            failures.push(what);
        }
    }
}

/// Compares deliveries with the oracle and reads the log.
pub fn check(
    expected: &[Expected],
    incidents_expected: IncidentCounts,
    observed: &Observed,
    recording: &Recording,
    fault: Option<&FaultWindow>,
    end_ms: i64,
) -> Figures {
    let mut f = Figures::default();
    deliveries(expected, observed, &mut f);
    pagerduty(incidents_expected, observed, &mut f);
    retry_after(observed, &mut f);
    log(recording, fault, end_ms, &mut f);
    f
}

/// A Slack message of the workload: its attachment title is `STATUS SERIES` (the S13
/// route's template). Slack has no idempotency key: every processed copy is one the user
/// sees, so each gets its own key (a duplicate counts as `duplicates_idempotent`).
fn parse_slack(req: &RecordedRequest) -> Option<Hook<'_>> {
    let body: serde_json::Value = serde_json::from_str(&req.body).ok()?;
    let title = body["attachments"][0]["title"].as_str()?;
    let (status, series) = title.split_once(' ')?;
    Some(Hook {
        key: NoticeKey {
            receiver: SLACK_RECEIVER.into(),
            series: series.to_string(),
            status: NoticeStatus::parse(status)?,
        },
        idempotency_key: format!("slack-{}", req.seq),
        req,
    })
}

fn deliveries(expected: &[Expected], observed: &Observed, f: &mut Figures) {
    let mut got: BTreeMap<NoticeKey, Vec<Hook<'_>>> = BTreeMap::new();
    for r in observed.slack.iter().filter(|r| r.processed) {
        if meta_alert_slack(r) {
            continue;
        }
        match parse_slack(r) {
            Some(h) => got.entry(h.key.clone()).or_default().push(h),
            None => f.spurious += 1,
        }
    }
    for (receiver, reqs) in &observed.hooks {
        for r in reqs.iter().filter(|r| r.processed) {
            if let Some(meta) = meta_alert(r) {
                f.meta_notifications.push(meta);
                continue;
            }
            match parse_hook(receiver, r) {
                Some(h) => {
                    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                    if body["groupLabels"]["series"].as_str() != Some(h.key.series.as_str()) {
                        f.group_labels_missing += 1;
                    }
                    got.entry(h.key.clone()).or_default().push(h);
                }
                None => f.spurious += 1,
            }
        }
    }
    // Notifications a receiver refused (faults answer without processing), by first attempt.
    let mut refused: BTreeMap<NoticeKey, i64> = BTreeMap::new();
    for r in observed.slack.iter().filter(|r| !r.processed) {
        if let Some(h) = parse_slack(r) {
            let t = refused.entry(h.key).or_insert(r.time_ms);
            *t = (*t).min(r.time_ms);
        }
    }
    for (receiver, reqs) in &observed.hooks {
        for r in reqs
            .iter()
            .filter(|r| !r.processed && meta_alert(r).is_none())
        {
            if let Some(h) = parse_hook(receiver, r) {
                let t = refused.entry(h.key).or_insert(r.time_ms);
                *t = (*t).min(r.time_ms);
            }
        }
    }
    let by_key: BTreeMap<&NoticeKey, &Expected> = expected.iter().map(|e| (&e.key, e)).collect();
    let mut latencies = Vec::new();
    for e in expected {
        f.expected += usize::from(!e.optional);
        let Some(hooks) = got.get(&e.key) else {
            if e.optional {
                continue;
            }
            let resolve = NoticeKey {
                status: NoticeStatus::Resolved,
                ..e.key.clone()
            };
            let resolved_after = |tried: i64| {
                got.get(&resolve)
                    .is_some_and(|hs| hs.iter().any(|h| h.req.time_ms > tried))
            };
            if e.key.status == NoticeStatus::Firing
                && refused.get(&e.key).is_some_and(|t| resolved_after(*t))
            {
                f.superseded += 1;
                f.superseded_keys
                    .push(format!("{}/{}", e.key.receiver, e.key.series));
                continue;
            }
            f.missed += 1;
            f.missed_keys.push(format!(
                "{}/{}/{:?} due at {} ms",
                e.key.receiver, e.key.series, e.key.status, e.due_ms
            ));
            continue;
        };
        if let Some(first) = hooks.iter().map(|h| h.req.time_ms).min()
            && !e.optional
        {
            let l = first - e.due_ms;
            latencies.push(l);
            let m = f
                .latency_max_ms_by_receiver
                .entry(e.key.receiver.clone())
                .or_insert(i64::MIN);
            *m = (*m).max(l);
        }
    }
    for (key, hooks) in &got {
        f.duplicates_raw += hooks.len().saturating_sub(1);
        let keys: BTreeSet<&str> = hooks.iter().map(|h| h.idempotency_key.as_str()).collect();
        f.duplicates_idempotent += keys.len().saturating_sub(1);
        let early = match by_key.get(key) {
            None => hooks.len(),
            Some(e) => hooks
                .iter()
                .filter(|h| h.req.time_ms < e.not_before_ms)
                .count(),
        };
        if early > 0 {
            f.spurious += early;
            f.spurious_keys.push(format!(
                "{}/{}/{:?} x{early}",
                key.receiver, key.series, key.status
            ));
        }
    }
    f.latency_ms = Percentiles::of(latencies);
}

fn pagerduty(incidents_expected: IncidentCounts, observed: &Observed, f: &mut Figures) {
    let IncidentCounts {
        opened,
        resolved,
        optional,
    } = incidents_expected;
    let per_key = observed.incidents.per_dedup_key();
    let resolved_seen = observed
        .incidents
        .incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Resolved)
        .count();
    f.expected += opened + resolved;
    f.missed += opened.saturating_sub(per_key.len()) + resolved.saturating_sub(resolved_seen);
    f.spurious += per_key.len().saturating_sub(opened + optional);
    f.duplicates_idempotent += per_key.values().map(|n| n.saturating_sub(1)).sum::<usize>();
    let mut events: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in observed.pagerduty.iter().filter(|r| r.processed) {
        let key = r.details["dedup_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let action = r.details["action"].to_string();
        *events.entry((key, action)).or_default() += 1;
    }
    f.duplicates_raw += events.values().map(|n| n.saturating_sub(1)).sum::<usize>();
}

fn retry_after(observed: &Observed, f: &mut Figures) {
    let logs = observed
        .hooks
        .values()
        .chain(std::iter::once(&observed.pagerduty));
    for reqs in logs {
        for (i, r) in reqs.iter().enumerate() {
            let Some(after_s) = r.answer.retry_after_s.filter(|_| r.answer.status == 429) else {
                continue;
            };
            let ident = |q: &RecordedRequest| {
                q.headers
                    .get("idempotency-key")
                    .cloned()
                    .or_else(|| q.details["dedup_key"].as_str().map(str::to_owned))
            };
            let me = ident(r);
            let Some(next) = reqs[i + 1..].iter().find(|q| ident(q) == me) else {
                continue;
            };
            f.retry_after_checked += 1;
            let wait = i64::try_from(after_s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            if next.time_ms - r.time_ms < wait - RETRY_AFTER_SLACK_MS {
                f.retry_after_violations += 1;
            }
        }
    }
}

/// Ownership replayed from the log: shard → owner.
type Owners = BTreeMap<tocsin_state::model::ShardId, Option<String>>;
/// Per rule group, each committed evaluation as (slot ms, arrival ms).
type Evals = BTreeMap<String, Vec<(i64, i64)>>;

/// Whether `owner` is a worker the fault hit (or no worker at all).
fn hit(owner: &Option<String>, fw: &FaultWindow) -> bool {
    owner.as_ref().is_none_or(|w| fw.workers.contains(w))
}

fn log(recording: &Recording, fault: Option<&FaultWindow>, end_ms: i64, f: &mut Figures) {
    let mut audit = FenceAudit::new();
    let mut evals = Evals::new();
    let mut owners = Owners::new();
    // Past a gap the audit would judge commands against assignments it never saw: it covers
    // the prefix before the first gap only (and says so in `audit_complete`).
    let audit_until = recording.gaps.first().map_or(u64::MAX, |g| g.0);
    for e in &recording.entries {
        if e.index < audit_until {
            audit.observe(e.index, &e.changes);
        }
        let after_fault = fault.filter(|fw| e.recv_ms >= fw.start_ms);
        for c in &e.changes {
            on_change(c, e.recv_ms, after_fault, &mut owners, &mut evals, f);
        }
        if let Some(fw) = fault.filter(|fw| !fw.zone_workers.is_empty()) {
            let n = owners
                .values()
                .filter(|o| o.as_ref().is_some_and(|w| fw.zone_workers.contains(w)))
                .count();
            let prev = f.zone_shards.last().map(|(_, n)| *n);
            if prev != Some(n) {
                if let Some(p) = prev
                    && after_fault.is_some()
                {
                    f.zone_shards_max_drop = f.zone_shards_max_drop.max(p.saturating_sub(n));
                }
                f.zone_shards.push((e.recv_ms, n));
            }
        }
        if let Some(fw) = after_fault
            && !fw.workers.is_empty()
            && f.reassign_s.is_none()
            && !owners.is_empty()
            && owners.values().all(|o| !hit(o, fw))
        {
            f.reassign_s = Some(secs(e.recv_ms - fw.start_ms));
        }
    }
    let report = audit.report();
    f.stale_epoch_commits = report.stale_epoch_commits;
    f.unowned_commits = report.unowned_commits;
    f.audit_complete = recording.gaps.is_empty();
    f.log_entries = recording.entries.len();
    f.shards_total = owners.len();
    eval_gaps(&mut evals, end_ms, f);
}

/// Follows one applied command: ownership, the zone's marking, evaluations. `fault` is set
/// only for entries that arrived after the fault started.
fn on_change(
    c: &Command,
    recv_ms: i64,
    fault: Option<&FaultWindow>,
    owners: &mut Owners,
    evals: &mut Evals,
    f: &mut Figures,
) {
    match c {
        Command::Assign { shards } => {
            for (s, o) in shards {
                let new = o.as_ref().map(|w| w.to_string());
                if fault.is_some()
                    && let (Some(Some(old)), Some(new)) = (owners.get(s), &new)
                    && old != new
                {
                    f.shard_moves += 1;
                }
                if let Some(fw) = fault
                    && f.first_move_s.is_none()
                    && owners.get(s).is_some_and(|old| hit(old, fw))
                    && !hit(&new, fw)
                {
                    f.first_move_s = Some(secs(recv_ms - fw.start_ms));
                }
                owners.insert(*s, new);
            }
        }
        Command::RemoveWorker { id } => {
            for o in owners.values_mut() {
                if o.as_deref() == Some(id.as_str()) {
                    *o = None;
                }
            }
        }
        Command::SetZone { zone, record } => {
            let changes = f.zone_states.entry(zone.to_string()).or_default();
            let last = changes.last().map_or("healthy", |c| c.state.as_str());
            if last != record.state.as_str() {
                changes.push(ZoneChange {
                    at_ms: recv_ms,
                    state: record.state.as_str().into(),
                    score: record.score,
                });
            }
            if let Some(fw) = fault
                && f.detect_s.is_none()
                && fw.zone.as_deref() == Some(zone.as_str())
                && record.state != ZoneState::Healthy
            {
                f.detect_s = Some(secs(recv_ms - fw.start_ms));
            }
        }
        Command::Shard {
            op: ShardOp::EvalCycle { group, eval_ms, .. },
            ..
        } => {
            evals
                .entry(format!("{}/{}", group.namespace, group.name))
                .or_default()
                .push((*eval_ms, recv_ms));
        }
        _ => {}
    }
}

/// `eval_gap_s`, `eval_lag_ms_max` and `evaluations` from the committed evaluations.
fn eval_gaps(evals: &mut Evals, end_ms: i64, f: &mut Figures) {
    let mut gap_ms: Option<i64> = None;
    for list in evals.values_mut() {
        list.sort_unstable();
        list.dedup_by_key(|x| x.0);
        f.evaluations += list.len();
        // Both clocks: the evaluation slots (a catch-up evaluation fills a missed slot) and
        // when the commits reached the harness (which a catch-up cannot hide).
        let inner = list
            .windows(2)
            .map(|w| (w[1].0 - w[0].0).max(w[1].1 - w[0].1))
            .max();
        // A group that stopped being evaluated shows as the gap up to the end of the run.
        let tail = list.last().map(|l| end_ms - l.0);
        let g = inner.into_iter().chain(tail).max();
        gap_ms = gap_ms.max(g);
    }
    f.eval_gap_s = gap_ms.map(secs);
    f.eval_lag_ms_max = evals
        .values()
        .flatten()
        .map(|(eval, recv)| recv - eval)
        .max();
}

fn secs(ms: i64) -> f64 {
    (ms as f64 / 100.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = Percentiles::of((1..=100).collect()).expect("non-empty");
        assert_eq!((p.p50, p.p99, p.max), (50, 99, 100));
        assert!(Percentiles::of(Vec::new()).is_none());
    }
}
