//! What one balancer tick returns: the commands to propose and what the operator should see.

use tocsin_state::model::{ShardId, WorkerId, ZoneId, ZoneRecord, ZoneState};

use crate::signals::Penalties;

/// Where the core is in its leadership life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Not the leader: the tick decides nothing.
    #[default]
    Follower,
    /// Leader, still collecting heartbeats (until `until_ms`): scores move, nothing else.
    Settling {
        /// End of the settle period.
        until_ms: i64,
    },
    /// Leader, deciding.
    Active,
}

/// Something a human should look at. Emitted on every tick while it holds, so the adapter
/// can export it as a gauge or fire a meta-alert on the edge.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaAlert {
    /// Two or more zones look bad at once: placement is frozen (likely an observer fault).
    Frozen {
        /// The zones that meet degrade or drain criteria.
        zones: Vec<ZoneId>,
    },
    /// A zone whose every worker is dead was drained although others look bad too.
    DeadZoneDrainedWhileFrozen {
        /// The drained zone.
        zone: ZoneId,
    },
    /// A dead zone was drained while another zone was already not healthy.
    SecondZoneDown {
        /// The drained zone.
        zone: ZoneId,
        /// The zone that was already not healthy.
        other: ZoneId,
    },
    /// A zone should lose weight but another zone is already not healthy.
    Blocked {
        /// The zone that keeps its weight.
        zone: ZoneId,
        /// The zone that is not healthy.
        by: ZoneId,
    },
    /// The capacity precheck held a zone at a higher weight than its health asks for.
    CapacityShort {
        /// The zone.
        zone: ZoneId,
        /// The weight its health asks for.
        wanted: f64,
        /// The weight it keeps.
        kept: f64,
    },
    /// Shards nobody can own (no eligible worker in any zone).
    Unplaced {
        /// How many.
        shards: usize,
    },
}

/// One zone as the balancer sees it after the tick (for status pages and metrics).
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneView {
    /// Zone.
    pub zone: ZoneId,
    /// State after the tick.
    pub state: ZoneState,
    /// Smoothed score H_s.
    pub score: f64,
    /// This tick's raw score H_raw.
    pub raw_score: f64,
    /// Placement weight.
    pub weight: f64,
    /// The penalties behind the raw score.
    pub penalties: Penalties,
    /// Registered workers.
    pub workers: usize,
    /// Workers judged alive (heard from and not suspected).
    pub alive_workers: usize,
    /// Drains remembered (quarantine doubles with each).
    pub recent_drains: u32,
    /// Quarantine left, while drained.
    pub quarantine_left_ms: Option<i64>,
    /// Eval shards owned by the zone's workers once `assign` is applied.
    pub eval_shards: usize,
    /// Notify shards owned by the zone's workers once `assign` is applied.
    pub notify_shards: usize,
}

/// The output of [`crate::Balancer::tick`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Leadership phase during this tick.
    pub phase: Phase,
    /// Minimal ownership changes against the assignments passed in: one `Command::Assign`.
    pub assign: Vec<(ShardId, Option<WorkerId>)>,
    /// Zone records that changed (state, weight, drains, or score by `record_score_delta`):
    /// one `Command::SetZone` each.
    pub zone_records: Vec<(ZoneId, ZoneRecord)>,
    /// Why placement is frozen, if it is.
    pub frozen: Option<String>,
    /// Conditions for a human.
    pub meta_alerts: Vec<MetaAlert>,
    /// Every zone, in zone order.
    pub zones: Vec<ZoneView>,
    /// Shards left unowned after `assign`.
    pub unplaced: Vec<ShardId>,
}
