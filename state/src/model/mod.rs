//! The replicated data model (DESIGN.md §4): what the state machine holds, the commands that
//! change it, the queries that read it and the changes a watch streams.

mod command;
mod ids;
mod records;

pub use command::{
    AlertUpdate, ApplyStats, Change, Command, CommandError, CommandOk, CommandResult, OutboxOp,
    Query, QueryResult, ShardOp,
};
pub use ids::{Epoch, Fingerprint, NodeId, ShardId, ShardKind, WorkerId, ZoneId, stable_hash};
pub use records::{
    Ack, AlertInstance, AlertState, Assignment, ClusterInfo, DeliveryState, GroupKey,
    GroupWatermark, MemberInfo, NodeInfo, Notification, NotificationKey, OutboxEntry,
    RuleGroupRecord, RuleNamespace, RuleSet, ShardLayout, Silence, SilenceMatcher, WorkerInfo,
    ZoneRecord, ZoneState,
};
