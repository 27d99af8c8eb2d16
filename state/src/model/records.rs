//! Records held by the state machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use tocsin_proto::ids::{
    Epoch, Fingerprint, NodeId, ShardId, ShardKind, WorkerId, ZoneId, stable_hash,
};

/// A Raft member's address book entry; part of openraft's replicated membership, so every
/// node knows every member's zone (placement checks refuse two voters in one zone).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Availability zone of the node.
    pub zone: String,
    /// gRPC address (`host:port`) for Raft and the store service.
    pub grpc: String,
    /// HTTP address (`host:port`) for the API.
    pub http: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.zone, self.grpc)
    }
}

/// A member as reported by [`ClusterInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Raft node id.
    pub id: NodeId,
    /// Zone, gRPC and HTTP addresses.
    pub info: NodeInfo,
    /// Whether the member votes (false: learner).
    pub voter: bool,
}

/// One node's view of the cluster (served by every node, without a quorum round).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// This node.
    pub node: MemberInfo,
    /// Current leader as this node knows it.
    pub leader: Option<NodeId>,
    /// Current Raft term.
    pub term: u64,
    /// Last log index known committed on this node.
    pub commit_index: u64,
    /// Last log index applied to this node's state machine.
    pub applied_index: u64,
    /// Last log index in this node's log.
    pub last_log_index: u64,
    /// Every member of the current membership.
    pub members: Vec<MemberInfo>,
}

/// The fixed shard spaces. Changing the counts reshuffles everything, so they are fixed when the
/// cluster is created (the first rule set commit pins them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLayout {
    /// Number of eval shards (default 256).
    pub eval_shards: u16,
    /// Number of notify shards (default 64).
    pub notify_shards: u16,
}

impl Default for ShardLayout {
    fn default() -> Self {
        Self {
            eval_shards: 256,
            notify_shards: 64,
        }
    }
}

impl ShardLayout {
    /// Number of shards in a space.
    pub fn count(&self, kind: ShardKind) -> u16 {
        match kind {
            ShardKind::Eval => self.eval_shards,
            ShardKind::Notify => self.notify_shards,
        }
    }

    /// Whether `shard` exists in this layout.
    pub fn contains(&self, shard: ShardId) -> bool {
        shard.index < self.count(shard.kind)
    }

    /// The eval shard of a rule group: a stable hash of (namespace, group name).
    pub fn eval_shard(&self, group: &GroupKey) -> ShardId {
        let h = stable_hash(&[&group.namespace, &group.name]);
        ShardId::eval((h % u64::from(self.eval_shards.max(1))) as u16)
    }

    /// The notify shard of a notification group: a stable hash of (receiver, group key).
    pub fn notify_shard(&self, key: &NotificationKey) -> ShardId {
        let h = stable_hash(&[&key.receiver, &key.group_key]);
        ShardId::notify((h % u64::from(self.notify_shards.max(1))) as u16)
    }

    /// Every shard of both spaces.
    pub fn all(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.eval_shards)
            .map(ShardId::eval)
            .chain((0..self.notify_shards).map(ShardId::notify))
    }
}

/// A registered worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Stable id.
    pub id: WorkerId,
    /// Zone the worker runs in.
    pub zone: ZoneId,
    /// Address the balancer probes (`host:port`), may be empty.
    pub addr: String,
    /// Relative capacity (placement weight), >= 1.
    pub capacity: u32,
    /// Registration time, ms since the Unix epoch (proposer's clock; informational).
    pub registered_at_ms: i64,
}

/// Who owns a shard, since which epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Owning worker, or `None` when the shard is deliberately unowned.
    pub owner: Option<WorkerId>,
    /// Log index of the entry that made this assignment.
    pub epoch: Epoch,
}

/// A rule group's identity: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    /// The namespace (a rule file, or an explicit name).
    pub namespace: String,
    /// Group name, unique within the namespace.
    pub name: String,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One rule group as stored: validated by the alerter before it was proposed; the store keeps
/// its source so every worker parses the same text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleGroupRecord {
    /// Group name.
    pub name: String,
    /// Evaluation interval in ms.
    pub interval_ms: u64,
    /// The group's YAML source (one element of the file's `groups` list).
    pub source: String,
}

/// All rule groups of one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RuleNamespace {
    /// Groups in file order.
    pub groups: Vec<RuleGroupRecord>,
}

/// The versioned rule set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RuleSet {
    /// Bumped (to the committing log index) on every change.
    pub version: u64,
    /// Namespace name → groups.
    pub namespaces: BTreeMap<String, RuleNamespace>,
}

/// Lifecycle of an alert instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertState {
    /// Condition true, `for` not yet elapsed.
    Pending,
    /// Condition true for at least `for` (or kept by `keep_firing_for`).
    Firing,
    /// Was firing, condition no longer true. Kept so the resolve is notified.
    Resolved,
}

/// One alert instance (one label set of one alerting rule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertInstance {
    /// Stable hash of `labels`.
    pub fingerprint: Fingerprint,
    /// The rule group that produced it.
    pub group: GroupKey,
    /// The `alert:` name.
    pub rule: String,
    /// Full label set (including `alertname`).
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// Current state.
    pub state: AlertState,
    /// When the condition first became true (evaluation timestamp, ms).
    pub active_at_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// When the condition cleared while `keep_firing_for` keeps it firing.
    pub keep_firing_since_ms: Option<i64>,
    /// Last evaluated value.
    pub value: f64,
}

/// Per rule group: the last evaluation timestamp committed (the catch-up watermark).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GroupWatermark {
    /// Slot timestamp of the last committed evaluation, ms.
    pub last_eval_ms: i64,
}

/// Identity of a notification stream: a receiver and an Alertmanager-style group key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NotificationKey {
    /// Receiver name from the routing config.
    pub receiver: String,
    /// Group key (route path + group_by label values).
    pub group_key: String,
}

/// What a notification stream last notified (Alertmanager's nflog entry), committed with each
/// enqueue so a new owner of the notify shard resumes the group's timers and dedup from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyLog {
    /// Alerts reported firing, sorted.
    pub firing: Vec<Fingerprint>,
    /// Alerts reported resolved, sorted.
    pub resolved: Vec<Fingerprint>,
    /// When the notification was decided (ms).
    pub at_ms: i64,
    /// When a notification last added a firing alert (ms); acks older than this are void.
    pub escalated_ms: i64,
}

/// A notification to deliver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// True when every alert in it is resolved.
    pub resolved: bool,
    /// Fingerprints of the alerts it reports, sorted.
    pub alerts: Vec<Fingerprint>,
    /// Channel payload prepared by the enqueuer (opaque to the store).
    pub payload: Vec<u8>,
    /// When it became due, ms.
    pub due_ms: i64,
}

/// Where an outbox entry is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by the notify shard's owner at `epoch`; a send may be in flight.
    Claimed {
        worker: WorkerId,
        epoch: Epoch,
        at_ms: i64,
    },
    /// Delivered; `provider_id` is what the provider returned, if anything.
    Delivered {
        provider_id: Option<String>,
        at_ms: i64,
    },
    /// Given up (permanent error or retries exhausted).
    Dead { reason: String, at_ms: i64 },
}

/// The outbox slot of one (receiver, group key): at most one undelivered notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Log index of the enqueue that created this notification; orders deliveries.
    pub seq: u64,
    /// The notification.
    pub notification: Notification,
    /// Delivery state.
    pub state: DeliveryState,
    /// Send attempts so far.
    pub attempts: u32,
    /// Earliest time for the next attempt, ms.
    pub next_attempt_ms: i64,
}

/// The outbox slot of one delivery unit of a stream: the entry being worked on, a newer one
/// waiting behind a claimed head, and the last one delivered (or dead).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxSlot {
    /// The entry to send next (pending) or being sent (claimed).
    pub head: Option<OutboxEntry>,
    /// A newer notification queued behind a claimed head; replaced by anything newer.
    pub queued: Option<OutboxEntry>,
    /// The last delivered (or dead) entry.
    pub last: Option<OutboxEntry>,
}

/// One notification stream (receiver, group key): its notification log and one outbox slot per
/// delivery unit of the receiver (DESIGN.md §7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxStream {
    /// What the stream last notified.
    pub log: Option<NotifyLog>,
    /// Sequence of the last enqueue; orders every delivery of the stream.
    pub seq: u64,
    /// Slots, indexed by delivery unit.
    pub units: Vec<OutboxSlot>,
}

/// The replicated `alertmanager.yml` (validated by the API before it is proposed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyConfigRecord {
    /// The YAML text as submitted.
    pub source: String,
    /// Log index of the command that set it (0: never set).
    pub version: u64,
}

/// A silence matcher (Alertmanager semantics).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceMatcher {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// Regex match (`=~` / `!~`).
    pub is_regex: bool,
    /// Equality (`=` / `=~`) vs negation.
    pub is_equal: bool,
}

/// A silence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Unique id (the log index that created it, as text, unless given).
    pub id: String,
    /// Matchers, all of which must match.
    pub matchers: Vec<SilenceMatcher>,
    /// Start, ms.
    pub starts_at_ms: i64,
    /// End, ms.
    pub ends_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// An acknowledgement of a notification group: stops repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Who acknowledged.
    pub by: String,
    /// When, ms.
    pub at_ms: i64,
}

/// Health state of a zone as decided by the balancer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ZoneState {
    /// Full weight.
    #[default]
    Healthy,
    /// Reduced weight; loses shards gradually.
    Degraded,
    /// Weight 0; no shards.
    Drained,
    /// Coming back with a ramped weight.
    Probation,
}

impl ZoneState {
    /// The state's name as the API, metrics and CLI show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ZoneState::Healthy => "healthy",
            ZoneState::Degraded => "degraded",
            ZoneState::Drained => "drained",
            ZoneState::Probation => "probation",
        }
    }
}

/// The balancer's committed view of a zone, so a new leader resumes timers and quarantine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneRecord {
    /// State.
    pub state: ZoneState,
    /// Smoothed health score in [0, 1].
    pub score: f64,
    /// Placement weight in [0, 1].
    pub weight: f64,
    /// When the state was entered, ms.
    pub since_ms: i64,
    /// Drains in the recent window (quarantine doubles with each).
    pub recent_drains: u32,
}

impl Default for ZoneRecord {
    /// A zone nobody has judged yet: healthy at full weight.
    fn default() -> Self {
        Self {
            state: ZoneState::Healthy,
            score: 1.0,
            weight: 1.0,
            since_ms: 0,
            recent_drains: 0,
        }
    }
}
