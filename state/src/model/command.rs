//! Commands (the only way state changes), their results, queries and watch changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::records::{
    Ack, AlertInstance, Assignment, GroupKey, GroupWatermark, Notification, NotificationKey,
    NotifyConfigRecord, NotifyLog, OutboxStream, RuleGroupRecord, RuleNamespace, RuleSet,
    ShardLayout, Silence, WorkerInfo, ZoneRecord,
};
use tocsin_proto::ids::{Epoch, Fingerprint, ShardId, WorkerId, ZoneId};

/// A state-machine command. Many commands travel in one Raft entry (see `raft::Batch`); each
/// gets its own [`CommandResult`], so one stale or invalid command never fails its neighbours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Fix the shard spaces. Allowed only while no shard has ever been assigned.
    SetLayout(ShardLayout),
    /// Add or update a worker (same id: address, zone and capacity are replaced).
    RegisterWorker(WorkerInfo),
    /// Remove a worker; its shards become unowned at this entry's epoch (fencing it at once).
    RemoveWorker { id: WorkerId },
    /// Balancer decision: every listed shard gets the owner and `epoch = this entry's index`.
    Assign {
        shards: Vec<(ShardId, Option<WorkerId>)>,
    },
    /// Record the balancer's view of a zone.
    SetZone { zone: ZoneId, record: ZoneRecord },
    /// Replace one namespace's rule groups (empty `groups` deletes the namespace).
    /// `expected_version`, when set, must equal the current rule-set version (optimistic lock).
    PutRules {
        namespace: String,
        groups: Vec<RuleGroupRecord>,
        expected_version: Option<u64>,
    },
    /// Replace the whole rule set.
    ReplaceRules {
        namespaces: BTreeMap<String, RuleNamespace>,
        expected_version: Option<u64>,
    },
    /// A shard-scoped command: applied only if `epoch` is the shard's current epoch.
    Shard {
        shard: ShardId,
        epoch: Epoch,
        op: ShardOp,
    },
    /// Create or replace a silence.
    PutSilence(Silence),
    /// End a silence at `at_ms` (no-op if it already ended).
    ExpireSilence { id: String, at_ms: i64 },
    /// Acknowledge a notification group.
    Ack { key: NotificationKey, ack: Ack },
    /// Replace the notification config (`alertmanager.yml`, validated by the caller).
    SetNotifyConfig { source: String },
    /// Raise (`firing`) or resolve a meta-alert: Tocsin's own alerts about itself (placement
    /// frozen, notifications dead-lettered). They are ordinary alert instances of the reserved
    /// group [`META_GROUP`], routed and notified like any other alert.
    SetMetaAlert {
        /// `alertname`.
        name: String,
        /// Further labels (identity).
        labels: BTreeMap<String, String>,
        /// Annotations (`summary`, `description`).
        annotations: BTreeMap<String, String>,
        /// Firing, or resolved.
        firing: bool,
        /// When (ms).
        at_ms: i64,
    },
}

/// The namespace reserved for meta-alerts; rule namespaces may not use it.
pub const META_NAMESPACE: &str = "__meta__";

/// The rule group meta-alerts belong to.
pub fn meta_group() -> GroupKey {
    GroupKey {
        namespace: META_NAMESPACE.into(),
        name: "tocsin".into(),
    }
}

/// See [`meta_group`].
pub const META_GROUP: &str = "__meta__/tocsin";

/// What a shard owner does, fenced by its epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShardOp {
    /// One evaluation of one rule group: the alert transitions it produced and the group's new
    /// watermark. `eval_ms` must be later than the stored watermark (so a retried proposal is
    /// rejected rather than applied twice).
    EvalCycle {
        group: GroupKey,
        eval_ms: i64,
        updates: Vec<AlertUpdate>,
    },
    /// An outbox step for one notification stream.
    Outbox { key: NotificationKey, op: OutboxOp },
}

/// One alert transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AlertUpdate {
    /// Insert or replace the instance (shared: the state machine keeps this very instance).
    Upsert(Arc<AlertInstance>),
    /// Forget the instance (a resolved alert whose resolve was handed to notification).
    Remove(Fingerprint),
}

/// Outbox protocol steps (DESIGN.md §7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OutboxOp {
    /// Queue a notification on each of the stream's `units` delivery units (replacing, per
    /// unit, a queued one that is not yet claimed) and record `log` as what the stream last
    /// notified.
    Enqueue {
        notification: Notification,
        log: NotifyLog,
        units: u16,
    },
    /// Queue a notification on one delivery unit only, without touching the stream's log (a
    /// PagerDuty `acknowledge` after `tocsin ack`). Refused while the unit has a head: a
    /// notification in flight is never replaced by it.
    EnqueueUnit {
        unit: u16,
        notification: Notification,
    },
    /// Claim unit `unit`'s head entry `seq` for sending.
    Claim {
        unit: u16,
        seq: u64,
        worker: WorkerId,
        at_ms: i64,
    },
    /// The head entry `seq` was delivered.
    Delivered {
        unit: u16,
        seq: u64,
        provider_id: Option<String>,
        at_ms: i64,
    },
    /// A retryable failure: back to pending, not before `next_attempt_ms`.
    Retry {
        unit: u16,
        seq: u64,
        next_attempt_ms: i64,
        reason: String,
    },
    /// A permanent failure: dead-lettered.
    Dead {
        unit: u16,
        seq: u64,
        reason: String,
        at_ms: i64,
    },
    /// [`OutboxOp::Enqueue`] by the stream's owner, which claims the new notification for
    /// `worker` at once on every unit where it becomes the head (an idle unit, or one whose
    /// head was still pending); on a unit with a claimed head it waits behind it as usual.
    /// One commit instead of two before the send; the claim is fenced by the command's
    /// epoch like any other. (Last variant: the log's encoding of the others is unchanged.)
    EnqueueClaimed {
        notification: Notification,
        log: NotifyLog,
        units: u16,
        worker: WorkerId,
        at_ms: i64,
    },
}

/// Success of one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOk {
    /// Applied at this log index (for `Assign`, this is the new epoch).
    Applied { index: u64 },
}

/// Why one command was refused. A refused command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// The fencing invariant: the proposer's epoch is not the shard's current epoch. A worker
    /// receiving this must stop acting for the shard at once.
    #[error("stale epoch for shard {shard}: command has {got}, current is {current}")]
    StaleEpoch {
        shard: ShardId,
        current: Epoch,
        got: Epoch,
    },
    /// The command is malformed.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The command is well-formed but conflicts with current state (version mismatch,
    /// watermark regression, wrong outbox sequence).
    #[error("conflict: {0}")]
    Conflict(String),
}

impl CommandError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result of one command.
pub type CommandResult = Result<CommandOk, CommandError>;

/// A read of the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Shard layout.
    Layout,
    /// All registered workers.
    Workers,
    /// Every shard's assignment.
    Assignments,
    /// The rule set.
    Rules,
    /// Alert instances, of one eval shard or all.
    Alerts { shard: Option<ShardId> },
    /// Watermarks of the groups of one eval shard or all.
    Watermarks { shard: Option<ShardId> },
    /// Outbox slots, of one notify shard or all.
    Outbox { shard: Option<ShardId> },
    /// Silences.
    Silences,
    /// The notification config.
    NotifyConfig,
    /// The whole state machine, for a read replica that follows the watch stream from the
    /// returned applied index (a worker's notify loop).
    Replica,
    /// Acknowledgements.
    Acks,
    /// Zone records.
    Zones,
    /// Apply statistics (commands applied and refused, stale epochs refused).
    Stats,
    /// A digest of the whole state, equal on replicas that applied the same log prefix.
    Digest,
}

/// Apply counters kept by the state machine (replicated, so equal on every replica).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplyStats {
    /// Commands applied.
    pub applied: u64,
    /// Commands refused for a stale epoch.
    pub stale_epoch: u64,
    /// Commands refused as invalid or conflicting.
    pub refused: u64,
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueryResult {
    /// See [`Query::Layout`].
    Layout(ShardLayout),
    /// See [`Query::Workers`].
    Workers(Vec<WorkerInfo>),
    /// See [`Query::Assignments`].
    Assignments(Vec<(ShardId, Assignment)>),
    /// See [`Query::Rules`].
    Rules(RuleSet),
    /// See [`Query::Alerts`].
    Alerts(Vec<AlertInstance>),
    /// See [`Query::Watermarks`].
    Watermarks(Vec<(GroupKey, GroupWatermark)>),
    /// See [`Query::Outbox`]: per stream, the head, the queued entry and the last delivered.
    Outbox(Vec<(NotificationKey, OutboxStream)>),
    /// See [`Query::NotifyConfig`].
    NotifyConfig(NotifyConfigRecord),
    /// See [`Query::Replica`].
    Replica(Box<crate::machine::Machine>),
    /// See [`Query::Silences`].
    Silences(Vec<Silence>),
    /// See [`Query::Acks`].
    Acks(Vec<(NotificationKey, Ack)>),
    /// See [`Query::Zones`].
    Zones(Vec<(ZoneId, ZoneRecord)>),
    /// See [`Query::Stats`].
    Stats(ApplyStats),
    /// See [`Query::Digest`].
    Digest(u64),
}

/// What a watch streams for each applied entry: the commands that were applied (refused ones
/// are left out). For an `Assign` the new epoch is the event's log index.
pub type Change = Command;
