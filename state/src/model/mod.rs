//! The replicated data model (DESIGN.md §4): what the state machine holds, the commands that
//! change it, the queries that read it and the changes a watch streams.

mod command;
mod records;

pub use command::{
    AlertUpdate, ApplyStats, Change, Command, CommandError, CommandOk, CommandResult, META_GROUP,
    META_NAMESPACE, OutboxOp, Query, QueryResult, ShardOp, meta_group,
};
pub use records::{
    Ack, AlertInstance, AlertState, Assignment, ClusterInfo, DeliveryState, GroupKey,
    GroupWatermark, MemberInfo, NodeInfo, Notification, NotificationKey, NotifyConfigRecord,
    NotifyLog, OutboxEntry, OutboxSlot, OutboxStream, RuleGroupRecord, RuleNamespace, RuleSet,
    ShardLayout, Silence, SilenceMatcher, WorkerInfo, ZoneRecord, ZoneState,
};
pub use tocsin_proto::ids::{
    Epoch, Fingerprint, NodeId, ShardId, ShardKind, WorkerId, ZoneId, stable_hash,
};
