//! The aggregation group of one notification stream (receiver, group key): Alertmanager's
//! `aggrGroup` timers plus its `DedupStage`, as a pure state machine.
//!
//! * The first alert of an idle group arms the timer at `now + group_wait`.
//! * At each tick the group computes what it would send (muted alerts left out) and compares
//!   it with the notification log — what the stream last reported. It notifies when a firing
//!   alert is new, when everything resolved that had been reported firing, when (with
//!   `send_resolved`) an alert newly resolved, or when `repeat_interval` has passed since the
//!   last notification. Then the timer re-arms at `now + group_interval`; resolved alerts are
//!   dropped after the tick, and a group left with no alert goes idle (no deadline).
//! * An [`Ack`] given after the last escalation (a notification with a new firing alert)
//!   suppresses repeats until the next escalation.
//!
//! Deviation from Alertmanager: a repeat is due when `now - last >= repeat_interval` (Alertmanager
//! uses `>`, and its log time is the end of the send, so its repeats come one group_interval
//! late when repeat_interval is a multiple of group_interval).
//!
//! Handoff: [`AggrGroup::resume`] rebuilds the group from the replicated alerts, the last
//! committed [`NotifyLogEntry`] and ack. Because every decision is a comparison against the
//! log, a new owner re-sends nothing the log already holds and sends whatever it lacks, and its
//! first tick is never earlier than the old owner's next one (last notification +
//! group_interval) nor than `group_wait` after the group's oldest alert.

use std::collections::{BTreeMap, BTreeSet};

use tocsin_state::model::{
    Ack, AlertInstance, AlertState, Fingerprint, Notification, NotificationKey, NotifyLog,
};

use super::route::{RouteId, RouteOpts};

/// The three timers of a route, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupTimers {
    /// Wait before the first notification of a new group.
    pub group_wait_ms: i64,
    /// Minimum time between ticks.
    pub group_interval_ms: i64,
    /// Time after which an unchanged notification is repeated.
    pub repeat_interval_ms: i64,
}

impl From<&RouteOpts> for GroupTimers {
    fn from(o: &RouteOpts) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            group_wait_ms: ms(o.group_wait),
            group_interval_ms: ms(o.group_interval).max(1),
            repeat_interval_ms: ms(o.repeat_interval).max(1),
        }
    }
}

/// Firing or resolved (pending alerts never reach a group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertStatus {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

/// An alert as its group tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupAlert {
    /// Identity.
    pub fingerprint: Fingerprint,
    /// Current status.
    pub status: AlertStatus,
    /// When it started firing (ms); used to resume `group_wait` after a handoff.
    pub first_seen_ms: i64,
}

impl GroupAlert {
    /// From a replicated alert instance; `None` while it is pending.
    pub fn from_instance(a: &AlertInstance) -> Option<Self> {
        let status = match a.state {
            AlertState::Pending => return None,
            AlertState::Firing => AlertStatus::Firing,
            AlertState::Resolved => AlertStatus::Resolved,
        };
        Some(Self {
            fingerprint: a.fingerprint,
            status,
            first_seen_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
        })
    }
}

/// What the stream last notified (Alertmanager's nflog entry): committed with the outbox
/// enqueue of each [`Flush`], read back on resume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyLogEntry {
    /// Alerts reported firing.
    pub firing: BTreeSet<Fingerprint>,
    /// Alerts reported resolved.
    pub resolved: BTreeSet<Fingerprint>,
    /// When (ms).
    pub at_ms: i64,
    /// When a notification last added a firing alert (ms); acks older than this are void.
    pub escalated_ms: i64,
}

impl From<&NotifyLog> for NotifyLogEntry {
    fn from(l: &NotifyLog) -> Self {
        Self {
            firing: l.firing.iter().copied().collect(),
            resolved: l.resolved.iter().copied().collect(),
            at_ms: l.at_ms,
            escalated_ms: l.escalated_ms,
        }
    }
}

impl From<&NotifyLogEntry> for NotifyLog {
    fn from(l: &NotifyLogEntry) -> Self {
        Self {
            firing: l.firing.iter().copied().collect(),
            resolved: l.resolved.iter().copied().collect(),
            at_ms: l.at_ms,
            escalated_ms: l.escalated_ms,
        }
    }
}

/// Why a flush notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushReason {
    /// First notification of the stream.
    First,
    /// A firing alert the last notification did not report.
    NewFiring,
    /// An alert resolved since the last notification (`send_resolved`).
    NewResolved,
    /// Every alert reported firing has resolved.
    AllResolved,
    /// Unchanged for `repeat_interval`.
    Repeat,
}

/// A notification to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flush {
    /// The stream.
    pub key: NotificationKey,
    /// Firing alerts, sorted.
    pub firing: Vec<Fingerprint>,
    /// Resolved alerts to report, sorted (empty without `send_resolved`).
    pub resolved: Vec<Fingerprint>,
    /// No alert is firing: a resolve notification.
    pub resolve_only: bool,
    /// Why.
    pub reason: FlushReason,
    /// The tick time (ms).
    pub due_ms: i64,
    /// The log entry to commit with the enqueue.
    pub log: NotifyLogEntry,
    /// The route the group belongs to (set by the dispatcher, which may drop an idle group's
    /// stream in the same poll, so the route must travel with its last flush).
    pub route: Option<RouteId>,
}

impl Flush {
    /// The replicated notification record for this flush.
    pub fn to_notification(&self, payload: Vec<u8>) -> Notification {
        let mut alerts: Vec<Fingerprint> =
            self.firing.iter().chain(&self.resolved).copied().collect();
        alerts.sort_unstable();
        Notification {
            resolved: self.resolve_only,
            alerts,
            payload,
            due_ms: self.due_ms,
        }
    }
}

/// One aggregation group.
#[derive(Clone, Debug)]
pub struct AggrGroup {
    key: NotificationKey,
    timers: GroupTimers,
    send_resolved: bool,
    alerts: BTreeMap<Fingerprint, GroupAlert>,
    next_tick_ms: Option<i64>,
    last_tick_ms: Option<i64>,
    log: Option<NotifyLogEntry>,
    ack: Option<Ack>,
}

impl AggrGroup {
    /// A new, idle group.
    pub fn new(key: NotificationKey, timers: GroupTimers, send_resolved: bool) -> Self {
        Self {
            key,
            timers,
            send_resolved,
            alerts: BTreeMap::new(),
            next_tick_ms: None,
            last_tick_ms: None,
            log: None,
            ack: None,
        }
    }

    /// Rebuilds a group after a handoff from replicated state (see the module docs).
    pub fn resume(
        key: NotificationKey,
        timers: GroupTimers,
        send_resolved: bool,
        alerts: impl IntoIterator<Item = GroupAlert>,
        log: Option<NotifyLogEntry>,
        ack: Option<Ack>,
        now_ms: i64,
    ) -> Self {
        let mut g = Self::new(key, timers, send_resolved);
        g.alerts = alerts.into_iter().map(|a| (a.fingerprint, a)).collect();
        if let Some(oldest) = g.alerts.values().map(|a| a.first_seen_ms).min() {
            let wait_done = oldest.saturating_add(timers.group_wait_ms);
            let log_next = log.as_ref().map_or(i64::MIN, |l| {
                l.at_ms.saturating_add(timers.group_interval_ms)
            });
            g.next_tick_ms = Some(wait_done.max(log_next).max(now_ms));
        }
        g.log = log;
        g.ack = ack;
        g
    }

    /// The stream this group notifies.
    pub fn key(&self) -> &NotificationKey {
        &self.key
    }

    /// The current log entry (last notification), if any.
    pub fn log(&self) -> Option<&NotifyLogEntry> {
        self.log.as_ref()
    }

    /// Whether the group holds no alert (it can be dropped once its log is committed).
    pub fn is_idle(&self) -> bool {
        self.alerts.is_empty()
    }

    /// The alerts the group holds.
    pub fn alerts(&self) -> impl Iterator<Item = &GroupAlert> + '_ {
        self.alerts.values()
    }

    /// Fingerprints of the alerts the group holds.
    pub fn fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.alerts.keys().copied()
    }

    /// When [`Self::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.next_tick_ms
    }

    /// An alert joined, changed or resolved.
    pub fn on_alert(&mut self, alert: GroupAlert, now_ms: i64) {
        self.alerts.insert(alert.fingerprint, alert);
        if self.next_tick_ms.is_none() {
            self.next_tick_ms = Some(now_ms.saturating_add(self.timers.group_wait_ms));
        }
    }

    /// An alert left the group without a resolve (its rule was deleted, or it re-routed).
    pub fn on_removed(&mut self, fingerprint: Fingerprint) {
        self.alerts.remove(&fingerprint);
        if self.alerts.is_empty() {
            self.next_tick_ms = None;
        }
    }

    /// Someone acknowledged the stream.
    pub fn on_ack(&mut self, ack: Ack) {
        self.ack = Some(ack);
    }

    fn ack_holds(&self) -> bool {
        match (&self.ack, &self.log) {
            (Some(a), Some(l)) => a.at_ms >= l.escalated_ms,
            _ => false,
        }
    }

    /// Runs the tick if due. `muted(fp)` says whether an alert is silenced, inhibited or its
    /// route is outside its time intervals; muted alerts are neither sent nor logged.
    pub fn poll(&mut self, now_ms: i64, muted: &dyn Fn(Fingerprint) -> bool) -> Vec<Flush> {
        match self.next_tick_ms {
            Some(t) if now_ms >= t => {}
            _ => return Vec::new(),
        }
        let visible = self.alerts.values().filter(|a| !muted(a.fingerprint));
        let (mut firing, mut resolved) = (BTreeSet::new(), BTreeSet::new());
        for a in visible {
            match a.status {
                AlertStatus::Firing => firing.insert(a.fingerprint),
                AlertStatus::Resolved => resolved.insert(a.fingerprint),
            };
        }
        let reason = self.decide(&firing, &resolved, now_ms);
        let mut out = Vec::new();
        if let Some(reason) = reason {
            let escalated = matches!(reason, FlushReason::First | FlushReason::NewFiring);
            let log = NotifyLogEntry {
                firing: firing.clone(),
                resolved: resolved.clone(),
                at_ms: now_ms,
                escalated_ms: match (&self.log, escalated) {
                    (Some(l), false) => l.escalated_ms,
                    _ => now_ms,
                },
            };
            let suppressed = (reason == FlushReason::Repeat && self.ack_holds())
                || (firing.is_empty() && !self.send_resolved);
            if !suppressed {
                out.push(Flush {
                    key: self.key.clone(),
                    firing: firing.into_iter().collect(),
                    resolved: if self.send_resolved {
                        resolved.into_iter().collect()
                    } else {
                        Vec::new()
                    },
                    resolve_only: reason == FlushReason::AllResolved,
                    reason,
                    due_ms: now_ms,
                    log: log.clone(),
                    route: None,
                });
            }
            // A suppressed repeat leaves the log alone, so the repeat stays due if the ack
            // is voided; a suppressed all-resolved clears the firing set as Alertmanager does.
            if !(suppressed && reason == FlushReason::Repeat) {
                self.log = Some(log);
            }
        }
        self.alerts.retain(|_, a| a.status == AlertStatus::Firing);
        self.last_tick_ms = Some(now_ms);
        self.next_tick_ms =
            (!self.alerts.is_empty()).then(|| now_ms.saturating_add(self.timers.group_interval_ms));
        out
    }

    /// Alertmanager's `DedupStage.needsUpdate`.
    fn decide(
        &self,
        firing: &BTreeSet<Fingerprint>,
        resolved: &BTreeSet<Fingerprint>,
        now_ms: i64,
    ) -> Option<FlushReason> {
        let Some(log) = &self.log else {
            return (!firing.is_empty()).then_some(FlushReason::First);
        };
        if !firing.is_subset(&log.firing) {
            return Some(FlushReason::NewFiring);
        }
        if firing.is_empty() {
            return (!log.firing.is_empty()).then_some(FlushReason::AllResolved);
        }
        if self.send_resolved && !resolved.is_subset(&log.resolved) {
            return Some(FlushReason::NewResolved);
        }
        (now_ms.saturating_sub(log.at_ms) >= self.timers.repeat_interval_ms)
            .then_some(FlushReason::Repeat)
    }

    /// Checks the group's invariants (tests call it after every step).
    pub fn validate(&self) -> Result<(), String> {
        if self.alerts.is_empty() != self.next_tick_ms.is_none() {
            return Err(format!(
                "{} alerts but next tick {:?}",
                self.alerts.len(),
                self.next_tick_ms
            ));
        }
        if let (Some(last), Some(next)) = (self.last_tick_ms, self.next_tick_ms)
            && next < last
        {
            return Err(format!("next tick {next} before last tick {last}"));
        }
        if let Some(l) = &self.log {
            if l.escalated_ms > l.at_ms {
                return Err("escalation after the last notification".into());
            }
            if !l.firing.is_disjoint(&l.resolved) {
                return Err("an alert logged both firing and resolved".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
