//! The notify-shard owner's pure core: routes alert transitions into aggregation groups,
//! applies muting (inhibition, time intervals, silences — Alertmanager's order) at each tick
//! and returns the flushes due. Only streams whose key the caller owns are kept, so an owner
//! holds exactly the groups of its notify shards.

use std::collections::{BTreeMap, BTreeSet};

use tocsin_state::model::{Ack, AlertInstance, Fingerprint, NotificationKey};

use super::config::Config;
use super::group::{AggrGroup, Flush, GroupAlert, GroupTimers, NotifyLogEntry};
use super::inhibit::{FiringAlert, Inhibitor};
use super::route::{RouteId, RouteTree};
use super::silence::Silencer;

/// Why an alert is left out of a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MuteReason {
    /// Inhibited by rule `rule` because `by` fires.
    Inhibited {
        /// Index in `inhibit_rules`.
        rule: usize,
        /// The inhibiting alert.
        by: Fingerprint,
    },
    /// Its route is in a mute interval or outside its active intervals.
    TimeInterval,
    /// Silenced by these silence ids.
    Silenced(Vec<String>),
}

/// The muting state at the committed index being evaluated.
#[derive(Clone, Copy, Debug)]
pub struct MuteState<'a> {
    /// Inhibition rules.
    pub inhibitor: &'a Inhibitor,
    /// Every firing alert of the replicated set (not just this shard's).
    pub firing: &'a [FiringAlert<'a>],
    /// Silences.
    pub silencer: &'a Silencer,
}

#[derive(Clone, Debug)]
struct Stream {
    route: RouteId,
    group: AggrGroup,
}

/// Groups of the streams one owner notifies.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    config: Config,
    tree: RouteTree,
    streams: BTreeMap<NotificationKey, Stream>,
    labels: BTreeMap<Fingerprint, BTreeMap<String, String>>,
    /// Every stream's next deadline, ordered, so a tick touches only the groups that are due.
    deadlines: BTreeSet<(i64, NotificationKey)>,
}

impl Dispatcher {
    /// An owner with no groups yet.
    pub fn new(config: Config) -> Self {
        let tree = RouteTree::new(&config.route);
        Self {
            config,
            tree,
            streams: BTreeMap::new(),
            labels: BTreeMap::new(),
            deadlines: BTreeSet::new(),
        }
    }

    fn deadline_of(&self, key: &NotificationKey) -> Option<i64> {
        self.streams.get(key).and_then(|s| s.group.next_deadline())
    }

    /// Rebuilds the owner's groups after a handoff or config change from the replicated alert
    /// set, the notification log and acks; `owns` selects this owner's streams.
    pub fn resume(
        config: Config,
        alerts: &[AlertInstance],
        logs: &BTreeMap<NotificationKey, NotifyLogEntry>,
        acks: &BTreeMap<NotificationKey, Ack>,
        owns: &dyn Fn(&NotificationKey) -> bool,
        now_ms: i64,
    ) -> Self {
        let mut d = Self::new(config);
        let mut members: BTreeMap<NotificationKey, (RouteId, Vec<GroupAlert>)> = BTreeMap::new();
        for a in alerts {
            let Some(ga) = GroupAlert::from_instance(a) else {
                continue;
            };
            for route in d.tree.matches(&a.labels) {
                let key = route.notification_key(&a.labels);
                if owns(&key) {
                    d.labels.insert(a.fingerprint, a.labels.clone());
                    members
                        .entry(key)
                        .or_insert((route.id, Vec::new()))
                        .1
                        .push(ga);
                }
            }
        }
        for (key, (route, group_alerts)) in members {
            let opts = &d.tree.node(route).opts;
            let send_resolved = d.send_resolved(&opts.receiver);
            let group = AggrGroup::resume(
                key.clone(),
                GroupTimers::from(opts),
                send_resolved,
                group_alerts,
                logs.get(&key).cloned(),
                acks.get(&key).cloned(),
                now_ms,
            );
            if let Some(t) = group.next_deadline() {
                d.deadlines.insert((t, key.clone()));
            }
            d.streams.insert(key, Stream { route, group });
        }
        d
    }

    fn send_resolved(&self, receiver: &str) -> bool {
        self.config
            .receiver(receiver)
            .is_some_and(|r| r.send_resolved())
    }

    /// The routing tree in use.
    pub fn tree(&self) -> &RouteTree {
        &self.tree
    }

    /// A committed transition of `alert`; returns the streams it belongs to (owned or not),
    /// so the caller can forward the others.
    pub fn on_alert(
        &mut self,
        alert: &AlertInstance,
        owns: &dyn Fn(&NotificationKey) -> bool,
        now_ms: i64,
    ) -> Vec<NotificationKey> {
        let Some(ga) = GroupAlert::from_instance(alert) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for route in self.tree.matches(&alert.labels) {
            let key = route.notification_key(&alert.labels);
            keys.push(key.clone());
            if !owns(&key) {
                continue;
            }
            self.labels.insert(alert.fingerprint, alert.labels.clone());
            let opts = &route.opts;
            let send_resolved = self
                .config
                .receiver(&opts.receiver)
                .is_some_and(|r| r.send_resolved());
            let timers = GroupTimers::from(opts);
            let route_id = route.id;
            let before = self.deadline_of(&key);
            self.streams
                .entry(key.clone())
                .or_insert_with(|| Stream {
                    route: route_id,
                    group: AggrGroup::new(key.clone(), timers, send_resolved),
                })
                .group
                .on_alert(ga, now_ms);
            refile(&self.streams, &mut self.deadlines, &key, before);
        }
        keys
    }

    /// An acknowledgement of a stream this owner holds.
    pub fn on_ack(&mut self, key: &NotificationKey, ack: Ack) {
        let before = self.deadline_of(key);
        if let Some(s) = self.streams.get_mut(key) {
            s.group.on_ack(ack);
        }
        refile(&self.streams, &mut self.deadlines, key, before);
    }

    /// Why `fp` would be left out of its stream's notification at `now_ms`, if it would.
    pub fn mute_reason(
        &self,
        route: RouteId,
        fp: Fingerprint,
        mute: &MuteState<'_>,
        now_ms: i64,
    ) -> Option<MuteReason> {
        let labels = self.labels.get(&fp)?;
        if let Some((rule, by)) = mute.inhibitor.mutes(labels, mute.firing) {
            return Some(MuteReason::Inhibited { rule, by });
        }
        if self
            .tree
            .node(route)
            .opts
            .muted_at(&self.config.time_intervals, now_ms)
        {
            return Some(MuteReason::TimeInterval);
        }
        let ids = mute.silencer.silenced_by(labels, now_ms);
        (!ids.is_empty()).then(|| MuteReason::Silenced(ids.into_iter().map(String::from).collect()))
    }

    /// Runs every due tick; idle groups are dropped (their log stays in the store).
    pub fn poll(&mut self, now_ms: i64, mute: &MuteState<'_>) -> Vec<Flush> {
        let mut out = Vec::new();
        let mut due = Vec::new();
        while let Some((t, _)) = self.deadlines.first()
            && *t <= now_ms
        {
            if let Some((_, k)) = self.deadlines.pop_first() {
                due.push(k);
            }
        }
        let mut dropped = false;
        for key in due {
            let Some(mut stream) = self.streams.remove(&key) else {
                continue;
            };
            let route = stream.route;
            let muted = |fp| self.mute_reason(route, fp, mute, now_ms).is_some();
            out.extend(stream.group.poll(now_ms, &muted).into_iter().map(|mut f| {
                f.route = Some(route);
                f
            }));
            if stream.group.is_idle() {
                dropped = true;
            } else {
                if let Some(t) = stream.group.next_deadline() {
                    self.deadlines.insert((t, key.clone()));
                }
                self.streams.insert(key, stream);
            }
        }
        if dropped {
            let live: BTreeSet<Fingerprint> = self
                .streams
                .values()
                .flat_map(|s| s.group.fingerprints())
                .collect();
            self.labels.retain(|fp, _| live.contains(fp));
        }
        out
    }

    /// The earliest deadline of any group.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Every alert some group of this owner holds.
    pub fn fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.streams.values().flat_map(|s| s.group.fingerprints())
    }

    /// The route of a stream, if this owner holds it.
    pub fn route(&self, key: &NotificationKey) -> Option<RouteId> {
        self.streams.get(key).map(|s| s.route)
    }

    /// The group of a stream, if this owner holds it.
    pub fn group(&self, key: &NotificationKey) -> Option<&AggrGroup> {
        self.streams.get(key).map(|s| &s.group)
    }
}

/// Re-files `key`'s deadline after its group changed (`before` is the one filed).
fn refile(
    streams: &BTreeMap<NotificationKey, Stream>,
    deadlines: &mut BTreeSet<(i64, NotificationKey)>,
    key: &NotificationKey,
    before: Option<i64>,
) {
    let after = streams.get(key).and_then(|s| s.group.next_deadline());
    if before == after {
        return;
    }
    if let Some(t) = before {
        deadlines.remove(&(t, key.clone()));
    }
    if let Some(t) = after {
        deadlines.insert((t, key.clone()));
    }
}

#[cfg(test)]
mod tests;
