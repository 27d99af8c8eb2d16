//! The pure, deterministic state machine: `apply(index, command)` in, result out.
//!
//! No I/O, no clock (every timestamp comes in the command), no randomness: replicas that
//! apply the same log prefix hold equal state (checked with [`Machine::digest`]). The Raft
//! adapter in `raft::sm_store` feeds it committed entries and snapshots it.
//!
//! The fencing invariant lives here: a [`Command::Shard`] whose epoch is not the shard's
//! current epoch is refused with [`CommandError::StaleEpoch`] and changes nothing.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{
    Ack, AlertInstance, AlertState, AlertUpdate, ApplyStats, Assignment, Command, CommandError,
    CommandOk, CommandResult, DeliveryState, Epoch, Fingerprint, GroupKey, GroupWatermark,
    META_NAMESPACE, Notification, NotificationKey, NotifyConfigRecord, NotifyLog, OutboxEntry,
    OutboxOp, OutboxSlot, OutboxStream, Query, QueryResult, RuleSet, ShardId, ShardKind,
    ShardLayout, ShardOp, Silence, WorkerId, WorkerInfo, ZoneId, ZoneRecord, meta_group,
    stable_hash,
};

/// Most alert updates accepted in one evaluation cycle command; bounds one entry's size.
pub const MAX_UPDATES_PER_CYCLE: usize = 100_000;

/// Most delivery units one receiver may have (integrations plus one SMS chain).
pub const MAX_DELIVERY_UNITS: usize = 64;

/// The replicated state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    layout: ShardLayout,
    workers: BTreeMap<WorkerId, WorkerInfo>,
    assignments: BTreeMap<ShardId, Assignment>,
    rules: RuleSet,
    /// Eval shard index → group → fingerprint → instance. Nested, so an evaluation cycle
    /// compares its group's strings once, not once per instance; encoded as the flat
    /// `(group, fingerprint) → instance` map of each shard (see [`flat_alerts`]). Instances
    /// are shared with the command that wrote them.
    #[serde(with = "flat_alerts")]
    alerts: BTreeMap<u16, ShardAlerts>,
    watermarks: BTreeMap<GroupKey, GroupWatermark>,
    outbox: BTreeMap<NotificationKey, OutboxStream>,
    notify_config: NotifyConfigRecord,
    silences: BTreeMap<String, Silence>,
    acks: BTreeMap<NotificationKey, Ack>,
    zones: BTreeMap<ZoneId, ZoneRecord>,
    stats: ApplyStats,
}

impl Machine {
    /// Applies one command committed at log `index`. Deterministic; a refused command leaves
    /// the state untouched.
    pub fn apply(&mut self, index: u64, command: &Command) -> CommandResult {
        let result = self.apply_inner(index, command);
        match &result {
            Ok(_) => self.stats.applied += 1,
            Err(CommandError::StaleEpoch { .. }) => self.stats.stale_epoch += 1,
            Err(_) => self.stats.refused += 1,
        }
        debug_assert!(self.validate().is_ok(), "{:?}", self.validate());
        result
    }

    fn apply_inner(&mut self, index: u64, command: &Command) -> CommandResult {
        let ok = Ok(CommandOk::Applied { index });
        match command {
            Command::SetLayout(layout) => {
                if layout.eval_shards == 0 || layout.notify_shards == 0 {
                    return Err(CommandError::invalid(
                        "layout",
                        "shard counts must be at least 1",
                    ));
                }
                if !self.assignments.is_empty() && *layout != self.layout {
                    return Err(CommandError::Conflict(
                        "the shard layout cannot change once shards are assigned".into(),
                    ));
                }
                self.layout = *layout;
            }
            Command::RegisterWorker(w) => {
                if w.capacity == 0 {
                    return Err(CommandError::invalid(
                        "worker.capacity",
                        "must be at least 1",
                    ));
                }
                self.workers.insert(w.id.clone(), w.clone());
            }
            Command::RemoveWorker { id } => {
                if self.workers.remove(id).is_none() {
                    return Err(CommandError::invalid(
                        "worker.id",
                        format!("no worker {id}"),
                    ));
                }
                for a in self.assignments.values_mut() {
                    if a.owner.as_ref() == Some(id) {
                        *a = Assignment {
                            owner: None,
                            epoch: Epoch(index),
                        };
                    }
                }
            }
            Command::Assign { shards } => self.assign(index, shards)?,
            Command::SetZone { zone, record } => {
                if !(0.0..=1.0).contains(&record.score) || !(0.0..=1.0).contains(&record.weight) {
                    return Err(CommandError::invalid(
                        "zone.score",
                        "score and weight must be in [0, 1]",
                    ));
                }
                self.zones.insert(zone.clone(), record.clone());
            }
            Command::PutRules {
                namespace,
                groups,
                expected_version,
            } => {
                self.check_rules_version(*expected_version)?;
                if namespace.is_empty() {
                    return Err(CommandError::invalid("namespace", "must not be empty"));
                }
                if namespace == META_NAMESPACE {
                    return Err(CommandError::invalid(
                        "namespace",
                        format!("{META_NAMESPACE:?} is reserved for Tocsin's meta-alerts"),
                    ));
                }
                check_groups(namespace, groups)?;
                if groups.is_empty() {
                    self.rules.namespaces.remove(namespace);
                } else {
                    let ns = self.rules.namespaces.entry(namespace.clone()).or_default();
                    ns.groups = groups.clone();
                }
                self.rules.version = index;
            }
            Command::ReplaceRules {
                namespaces,
                expected_version,
            } => {
                self.check_rules_version(*expected_version)?;
                for (name, ns) in namespaces {
                    if name == META_NAMESPACE {
                        return Err(CommandError::invalid(
                            "namespace",
                            format!("{META_NAMESPACE:?} is reserved for Tocsin's meta-alerts"),
                        ));
                    }
                    check_groups(name, &ns.groups)?;
                }
                self.rules.namespaces = namespaces.clone();
                self.rules.version = index;
            }
            Command::Shard { shard, epoch, op } => self.apply_shard(index, *shard, *epoch, op)?,
            Command::PutSilence(s) => {
                if s.id.is_empty() {
                    return Err(CommandError::invalid("silence.id", "must not be empty"));
                }
                if s.matchers.is_empty() {
                    return Err(CommandError::invalid(
                        "silence.matchers",
                        "at least one matcher is required",
                    ));
                }
                if s.ends_at_ms <= s.starts_at_ms {
                    return Err(CommandError::invalid(
                        "silence.endsAt",
                        "must be after startsAt",
                    ));
                }
                self.silences.insert(s.id.clone(), s.clone());
            }
            Command::ExpireSilence { id, at_ms } => {
                let s = self.silences.get_mut(id).ok_or_else(|| {
                    CommandError::invalid("silence.id", format!("no silence {id}"))
                })?;
                if s.ends_at_ms > *at_ms {
                    s.ends_at_ms = (*at_ms).max(s.starts_at_ms);
                }
            }
            Command::Ack { key, ack } => {
                self.acks.insert(key.clone(), ack.clone());
            }
            Command::SetMetaAlert {
                name,
                labels,
                annotations,
                firing,
                at_ms,
            } => self.set_meta_alert(name, labels, annotations, *firing, *at_ms)?,
            Command::SetNotifyConfig { source } => {
                if source.trim().is_empty() {
                    return Err(CommandError::invalid("source", "must not be empty"));
                }
                self.notify_config = NotifyConfigRecord {
                    source: source.clone(),
                    version: index,
                };
            }
        }
        ok
    }

    fn check_rules_version(&self, expected: Option<u64>) -> Result<(), CommandError> {
        match expected {
            Some(v) if v != self.rules.version => Err(CommandError::Conflict(format!(
                "rule set is at version {}, the change expected {v}",
                self.rules.version
            ))),
            _ => Ok(()),
        }
    }

    fn assign(
        &mut self,
        index: u64,
        shards: &[(ShardId, Option<WorkerId>)],
    ) -> Result<(), CommandError> {
        // Validate everything first so a refused Assign changes nothing.
        let mut seen = std::collections::BTreeSet::new();
        for (i, (shard, owner)) in shards.iter().enumerate() {
            if !self.layout.contains(*shard) {
                return Err(CommandError::invalid(
                    format!("shards[{i}]"),
                    format!("no shard {shard} in the layout"),
                ));
            }
            if !seen.insert(*shard) {
                return Err(CommandError::invalid(
                    format!("shards[{i}]"),
                    format!("shard {shard} listed twice"),
                ));
            }
            if let Some(w) = owner
                && !self.workers.contains_key(w)
            {
                return Err(CommandError::invalid(
                    format!("shards[{i}].owner"),
                    format!("worker {w} is not registered"),
                ));
            }
        }
        for (shard, owner) in shards {
            let prev = self.assignments.insert(
                *shard,
                Assignment {
                    owner: owner.clone(),
                    epoch: Epoch(index),
                },
            );
            // Epochs only grow: positive space of the fencing invariant.
            assert!(prev.is_none_or(|p| p.epoch.0 < index), "epoch must grow");
        }
        Ok(())
    }

    fn apply_shard(
        &mut self,
        index: u64,
        shard: ShardId,
        epoch: Epoch,
        op: &ShardOp,
    ) -> Result<(), CommandError> {
        if !self.layout.contains(shard) {
            return Err(CommandError::invalid(
                "shard",
                format!("no shard {shard} in the layout"),
            ));
        }
        let current = self.assignments.get(&shard).map_or(Epoch(0), |a| a.epoch);
        let owned = self
            .assignments
            .get(&shard)
            .is_some_and(|a| a.owner.is_some());
        if epoch != current || !owned {
            return Err(CommandError::StaleEpoch {
                shard,
                current,
                got: epoch,
            });
        }
        match op {
            ShardOp::EvalCycle {
                group,
                eval_ms,
                updates,
            } => {
                if shard.kind != ShardKind::Eval || self.layout.eval_shard(group) != shard {
                    return Err(CommandError::invalid(
                        "group",
                        format!("group {group} does not belong to shard {shard}"),
                    ));
                }
                if updates.len() > MAX_UPDATES_PER_CYCLE {
                    return Err(CommandError::invalid(
                        "updates",
                        format!("more than {MAX_UPDATES_PER_CYCLE} updates"),
                    ));
                }
                for (i, u) in updates.iter().enumerate() {
                    if let AlertUpdate::Upsert(a) = u
                        && a.group != *group
                    {
                        return Err(CommandError::invalid(
                            format!("updates[{i}].group"),
                            "alert belongs to another group",
                        ));
                    }
                }
                let last_eval_ms = self
                    .watermarks
                    .get(group)
                    .map_or(GroupWatermark::default().last_eval_ms, |w| w.last_eval_ms);
                if *eval_ms <= last_eval_ms {
                    return Err(CommandError::Conflict(format!(
                        "evaluation at {eval_ms} is not after the watermark {last_eval_ms} of {group}"
                    )));
                }
                match self.watermarks.get_mut(group) {
                    Some(wm) => wm.last_eval_ms = *eval_ms,
                    None => {
                        let wm = GroupWatermark {
                            last_eval_ms: *eval_ms,
                        };
                        self.watermarks.insert(group.clone(), wm);
                    }
                }
                let shard_alerts = self.alerts.entry(shard.index).or_default();
                if !shard_alerts.contains_key(group) {
                    shard_alerts.insert(group.clone(), BTreeMap::new());
                }
                let group_alerts = shard_alerts
                    .get_mut(group)
                    .expect("the group's map was just ensured");
                for u in updates {
                    match u {
                        AlertUpdate::Upsert(a) => {
                            group_alerts.insert(a.fingerprint, Arc::clone(a));
                        }
                        AlertUpdate::Remove(fp) => {
                            group_alerts.remove(fp);
                        }
                    }
                }
                if group_alerts.is_empty() {
                    shard_alerts.remove(group);
                }
                if shard_alerts.is_empty() {
                    self.alerts.remove(&shard.index);
                }
            }
            ShardOp::Outbox { key, op } => {
                if shard.kind != ShardKind::Notify || self.layout.notify_shard(key) != shard {
                    return Err(CommandError::invalid(
                        "key",
                        format!("notification stream does not belong to shard {shard}"),
                    ));
                }
                let stream = self.outbox.entry(key.clone()).or_default();
                apply_outbox(stream, op, epoch, index)?;
            }
        }
        Ok(())
    }

    fn set_meta_alert(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        firing: bool,
        at_ms: i64,
    ) -> Result<(), CommandError> {
        if name.is_empty() || labels.contains_key("alertname") {
            return Err(CommandError::invalid(
                "name",
                "must be non-empty, and labels must not carry alertname",
            ));
        }
        let mut all = labels.clone();
        all.insert("alertname".into(), name.into());
        let (fp, group) = meta_identity(&all);
        let shard = self.layout.eval_shard(&group);
        let existing = self
            .alerts
            .get(&shard.index)
            .and_then(|m| m.get(&group))
            .and_then(|m| m.get(&fp))
            .map(|a| AlertInstance::clone(a));
        let next = match (existing, firing) {
            (Some(a), true) if a.state == AlertState::Firing => AlertInstance {
                annotations: annotations.clone(),
                ..a
            },
            (_, true) => AlertInstance {
                fingerprint: fp,
                group: group.clone(),
                rule: name.into(),
                labels: all,
                annotations: annotations.clone(),
                state: AlertState::Firing,
                active_at_ms: at_ms,
                fired_at_ms: Some(at_ms),
                resolved_at_ms: None,
                keep_firing_since_ms: None,
                value: 1.0,
            },
            (Some(a), false) if a.state == AlertState::Firing => AlertInstance {
                state: AlertState::Resolved,
                resolved_at_ms: Some(at_ms),
                value: 0.0,
                ..a
            },
            // Resolving what is not firing changes nothing.
            (_, false) => return Ok(()),
        };
        self.alerts
            .entry(shard.index)
            .or_default()
            .entry(group)
            .or_default()
            .insert(fp, Arc::new(next));
        Ok(())
    }

    /// The alert instance `fp` of `group`, if any.
    pub fn alert(&self, group: &GroupKey, fp: Fingerprint) -> Option<&AlertInstance> {
        self.alerts
            .get(&self.layout.eval_shard(group).index)?
            .get(group)?
            .get(&fp)
            .map(|a| &**a)
    }

    /// The notification config.
    pub fn notify_config(&self) -> &NotifyConfigRecord {
        &self.notify_config
    }

    /// Every alert instance of every eval shard.
    pub fn alerts(&self) -> impl Iterator<Item = &AlertInstance> {
        self.alerts
            .values()
            .flat_map(|m| m.values())
            .flat_map(|m| m.values())
            .map(|a| &**a)
    }

    /// The outbox streams.
    pub fn outbox(&self) -> &BTreeMap<NotificationKey, OutboxStream> {
        &self.outbox
    }

    /// Silences.
    pub fn silences(&self) -> impl Iterator<Item = &Silence> {
        self.silences.values()
    }

    /// Acknowledgements.
    pub fn acks(&self) -> &BTreeMap<NotificationKey, Ack> {
        &self.acks
    }

    /// The shard layout.
    pub fn layout(&self) -> &ShardLayout {
        &self.layout
    }

    /// Answers a query from the current state.
    pub fn query(&self, q: &Query) -> QueryResult {
        match q {
            Query::Layout => QueryResult::Layout(self.layout),
            Query::Workers => QueryResult::Workers(self.workers.values().cloned().collect()),
            Query::Assignments => QueryResult::Assignments(
                self.assignments
                    .iter()
                    .map(|(s, a)| (*s, a.clone()))
                    .collect(),
            ),
            Query::Rules => QueryResult::Rules(self.rules.clone()),
            Query::Alerts { shard } => QueryResult::Alerts(
                self.alerts
                    .iter()
                    .filter(|(i, _)| {
                        shard.is_none_or(|s| s.kind == ShardKind::Eval && s.index == **i)
                    })
                    .flat_map(|(_, m)| m.values())
                    .flat_map(|m| m.values().map(|a| AlertInstance::clone(a)))
                    .collect(),
            ),
            Query::Watermarks { shard } => QueryResult::Watermarks(
                self.watermarks
                    .iter()
                    .filter(|(g, _)| shard.is_none_or(|s| self.layout.eval_shard(g) == s))
                    .map(|(g, w)| (g.clone(), w.clone()))
                    .collect(),
            ),
            Query::Outbox { shard } => QueryResult::Outbox(
                self.outbox
                    .iter()
                    .filter(|(k, _)| shard.is_none_or(|s| self.layout.notify_shard(k) == s))
                    .map(|(k, stream)| (k.clone(), stream.clone()))
                    .collect(),
            ),
            Query::NotifyConfig => QueryResult::NotifyConfig(self.notify_config.clone()),
            Query::Replica => QueryResult::Replica(Box::new(self.clone())),
            Query::Silences => QueryResult::Silences(self.silences.values().cloned().collect()),
            Query::Acks => QueryResult::Acks(
                self.acks
                    .iter()
                    .map(|(k, a)| (k.clone(), a.clone()))
                    .collect(),
            ),
            Query::Zones => QueryResult::Zones(
                self.zones
                    .iter()
                    .map(|(z, r)| (z.clone(), r.clone()))
                    .collect(),
            ),
            Query::Stats => QueryResult::Stats(self.stats.clone()),
            Query::Digest => QueryResult::Digest(self.digest()),
        }
    }

    /// A hash of the whole state; replicas that applied the same log prefix agree on it.
    pub fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        tocsin_proto::codec::encode(self).hash(&mut h);
        h.finish()
    }

    /// The current assignment of a shard.
    pub fn assignment(&self, shard: ShardId) -> Option<&Assignment> {
        self.assignments.get(&shard)
    }

    /// Checks the state's invariants (tests call it after every step).
    pub fn validate(&self) -> Result<(), String> {
        for (shard, a) in &self.assignments {
            if !self.layout.contains(*shard) {
                return Err(format!("assignment for {shard} outside the layout"));
            }
            if let Some(w) = &a.owner
                && !self.workers.contains_key(w)
            {
                return Err(format!("{shard} owned by unregistered worker {w}"));
            }
        }
        for (index, alerts) in &self.alerts {
            for (group, fp) in alerts
                .iter()
                .flat_map(|(g, m)| m.keys().map(move |fp| (g, fp)))
            {
                if self.layout.eval_shard(group).index != *index {
                    return Err(format!(
                        "alert {fp} of {group} stored under eval shard {index}"
                    ));
                }
            }
        }
        for (key, stream) in &self.outbox {
            for (unit, slot) in stream.units.iter().enumerate() {
                if slot.queued.is_some() && slot.head.is_none() {
                    return Err(format!(
                        "outbox {key:?}/{unit} has a queued entry but no head"
                    ));
                }
                if let (Some(h), Some(q)) = (&slot.head, &slot.queued)
                    && q.seq <= h.seq
                {
                    return Err(format!(
                        "outbox {key:?}/{unit} queued seq {} not after head {}",
                        q.seq, h.seq
                    ));
                }
                let newest = [&slot.head, &slot.queued, &slot.last]
                    .into_iter()
                    .flatten()
                    .map(|e| e.seq)
                    .max();
                if newest.is_some_and(|n| n > stream.seq) {
                    return Err(format!(
                        "outbox {key:?}/{unit} has an entry after the stream seq"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_groups(
    namespace: &str,
    groups: &[crate::model::RuleGroupRecord],
) -> Result<(), CommandError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, g) in groups.iter().enumerate() {
        if g.name.is_empty() {
            return Err(CommandError::invalid(
                format!("{namespace}.groups[{i}].name"),
                "must not be empty",
            ));
        }
        if !names.insert(&g.name) {
            return Err(CommandError::invalid(
                format!("{namespace}.groups[{i}].name"),
                format!("duplicate group {:?}", g.name),
            ));
        }
        if g.interval_ms == 0 {
            return Err(CommandError::invalid(
                format!("{namespace}.groups[{i}].interval"),
                "must be positive",
            ));
        }
    }
    Ok(())
}

fn apply_outbox(
    stream: &mut OutboxStream,
    op: &OutboxOp,
    epoch: Epoch,
    index: u64,
) -> Result<(), CommandError> {
    let (unit, seq) = match op {
        OutboxOp::Enqueue {
            notification,
            log,
            units,
        } => return enqueue(stream, notification, log, *units, index).map(drop),
        OutboxOp::EnqueueUnit { unit, notification } => {
            return enqueue_unit(stream, *unit, notification, index);
        }
        OutboxOp::EnqueueClaimed {
            notification,
            log,
            units,
            worker,
            at_ms,
        } => {
            if !enqueue(stream, notification, log, *units, index)? {
                return Ok(());
            }
            let seq = stream.seq;
            for slot in &mut stream.units {
                if let Some(head) = slot.head.as_mut().filter(|h| h.seq == seq) {
                    head.state = DeliveryState::Claimed {
                        worker: worker.clone(),
                        epoch,
                        at_ms: *at_ms,
                    };
                    head.attempts += 1;
                }
            }
            return Ok(());
        }
        OutboxOp::Claim { unit, seq, .. }
        | OutboxOp::Delivered { unit, seq, .. }
        | OutboxOp::Retry { unit, seq, .. }
        | OutboxOp::Dead { unit, seq, .. } => (*unit, *seq),
    };
    let units = stream.units.len();
    let slot = stream.units.get_mut(usize::from(unit)).ok_or_else(|| {
        CommandError::invalid("unit", format!("the stream has {units} delivery units"))
    })?;
    let head = match slot.head.as_mut() {
        Some(h) if h.seq == seq => h,
        other => {
            return Err(CommandError::Conflict(format!(
                "outbox head of unit {unit} is {:?}, not {seq}",
                other.map(|h| h.seq)
            )));
        }
    };
    match op {
        OutboxOp::Enqueue { .. }
        | OutboxOp::EnqueueUnit { .. }
        | OutboxOp::EnqueueClaimed { .. } => {}
        OutboxOp::Claim { worker, at_ms, .. } => {
            head.state = DeliveryState::Claimed {
                worker: worker.clone(),
                epoch,
                at_ms: *at_ms,
            };
            head.attempts += 1;
        }
        OutboxOp::Delivered {
            provider_id, at_ms, ..
        } => {
            head.state = DeliveryState::Delivered {
                provider_id: provider_id.clone(),
                at_ms: *at_ms,
            };
            slot.last = slot.head.take();
            slot.head = slot.queued.take();
        }
        OutboxOp::Retry {
            next_attempt_ms, ..
        } => {
            head.state = DeliveryState::Pending;
            head.next_attempt_ms = *next_attempt_ms;
            // A newer notification waiting behind a failed one supersedes it: a stale trigger
            // is never sent after the resolve that followed it.
            if let Some(q) = slot.queued.take() {
                slot.head = Some(q);
            }
        }
        OutboxOp::Dead { reason, at_ms, .. } => {
            head.state = DeliveryState::Dead {
                reason: reason.clone(),
                at_ms: *at_ms,
            };
            slot.last = slot.head.take();
            slot.head = slot.queued.take();
        }
    }
    Ok(())
}

/// Queues a notification on one idle unit of the stream.
fn enqueue_unit(
    stream: &mut OutboxStream,
    unit: u16,
    notification: &Notification,
    index: u64,
) -> Result<(), CommandError> {
    let units = stream.units.len();
    let slot = stream.units.get_mut(usize::from(unit)).ok_or_else(|| {
        CommandError::invalid("unit", format!("the stream has {units} delivery units"))
    })?;
    if let Some(h) = &slot.head {
        return Err(CommandError::Conflict(format!(
            "unit {unit} has notification {} in flight",
            h.seq
        )));
    }
    stream.seq = index.max(stream.seq + 1);
    slot.head = Some(OutboxEntry {
        seq: stream.seq,
        notification: notification.clone(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_ms: notification.due_ms,
    });
    Ok(())
}

/// Queues a notification on every unit of the stream and records the log; `false` when the
/// enqueue is a replay of the one that wrote the stream's log, which changes nothing.
///
/// A replay is a proposal retried after a lost answer whose first copy committed after all.
/// By then its notification may be delivered and off the head, so only the log tells: a flush
/// is decided at a time (`log.at_ms`) from the group's alerts, and its owner proposes the next
/// flush of a stream only once this one is answered, so an equal log is this flush again.
/// Queued again, it would be delivered a second time under a new idempotency key.
fn enqueue(
    stream: &mut OutboxStream,
    notification: &Notification,
    log: &NotifyLog,
    units: u16,
    index: u64,
) -> Result<bool, CommandError> {
    {
        let units = &units;
        if *units == 0 || usize::from(*units) > MAX_DELIVERY_UNITS {
            return Err(CommandError::invalid(
                "units",
                format!("must be between 1 and {MAX_DELIVERY_UNITS}"),
            ));
        }
        if stream.log.as_ref() == Some(log) {
            return Ok(false);
        }
        // The log index orders deliveries of the stream: always newer than anything before.
        stream.seq = index.max(stream.seq + 1);
        stream.log = Some(log.clone());
        stream
            .units
            .resize_with(usize::from(*units), OutboxSlot::default);
        for slot in &mut stream.units {
            let entry = OutboxEntry {
                seq: stream.seq,
                notification: notification.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_ms: notification.due_ms,
            };
            match &slot.head {
                // An unclaimed head is replaced: nobody has started sending it.
                None
                | Some(OutboxEntry {
                    state: DeliveryState::Pending,
                    ..
                }) => slot.head = Some(entry),
                // The notification in flight already says this (a flush repeated after its
                // owner resynced, a proposal retried after a lost answer): queuing it again
                // would deliver it twice, and anything queued before it is older news.
                Some(head) if same_news(&head.notification, notification) => slot.queued = None,
                Some(_) => slot.queued = Some(entry),
            }
        }
        Ok(true)
    }
}

/// Whether two notifications of one stream tell the same: firing or resolved, about the same
/// alerts.
fn same_news(a: &Notification, b: &Notification) -> bool {
    if a.resolved != b.resolved || a.alerts.len() != b.alerts.len() {
        return false;
    }
    let mut x = a.alerts.clone();
    let mut y = b.alerts.clone();
    x.sort_unstable();
    y.sort_unstable();
    x == y
}

/// The fingerprint and group of a meta-alert with the full label set `labels`.
pub fn meta_identity(labels: &BTreeMap<String, String>) -> (Fingerprint, GroupKey) {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let parts: Vec<&str> = pairs.iter().map(String::as_str).collect();
    (Fingerprint(stable_hash(&parts)), meta_group())
}

/// One eval shard's alert instances: group → fingerprint → instance.
type ShardAlerts = BTreeMap<GroupKey, BTreeMap<Fingerprint, Arc<AlertInstance>>>;

/// Encodes the nested alert index as, per shard, the flat `(group, fingerprint) → instance`
/// map it replaced: the same bytes in the same order, so snapshots written before still load.
mod flat_alerts {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ShardAlerts;
    use crate::model::{AlertInstance, Fingerprint, GroupKey};

    struct Flat<'a>(&'a ShardAlerts);

    impl Serialize for Flat<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let len = self.0.values().map(BTreeMap::len).sum();
            let mut map = serializer.serialize_map(Some(len))?;
            for (group, instances) in self.0 {
                for (fp, instance) in instances {
                    map.serialize_entry(&(group, fp), instance)?;
                }
            }
            map.end()
        }
    }

    pub(super) fn serialize<S: Serializer>(
        alerts: &BTreeMap<u16, ShardAlerts>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(alerts.len()))?;
        for (shard, groups) in alerts {
            map.serialize_entry(shard, &Flat(groups))?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u16, ShardAlerts>, D::Error> {
        type Flat = BTreeMap<(GroupKey, Fingerprint), Arc<AlertInstance>>;
        let flat = BTreeMap::<u16, Flat>::deserialize(deserializer)?;
        Ok(flat
            .into_iter()
            .map(|(shard, instances)| {
                let mut groups = ShardAlerts::new();
                for ((group, fp), instance) in instances {
                    groups.entry(group).or_default().insert(fp, instance);
                }
                (shard, groups)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
