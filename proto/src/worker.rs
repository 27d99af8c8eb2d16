//! The worker ↔ balancer session in domain types. Generated messages are converted here, once,
//! with every field validated: a bad message is an `InvalidArgument` naming the field.

use crate::error::ServiceError;
use crate::ids::{Epoch, ShardId, ShardKind, WorkerId, ZoneId};
use crate::pb::worker as pb;

/// Largest capacity a worker may claim (a placement weight, not a thread count).
pub const MAX_CAPACITY: u32 = 1024;

/// A worker introducing itself at the start of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Stable worker id.
    pub worker: WorkerId,
    /// Its zone.
    pub zone: ZoneId,
    /// Placement weight, 1..=[`MAX_CAPACITY`].
    pub capacity: u32,
    /// Probe address, may be empty.
    pub addr: String,
}

/// A worker's periodic report.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Heartbeat {
    /// Increases by one per heartbeat of a session.
    pub seq: u64,
    /// CPU steal fraction over the last interval, in [0, 1].
    pub steal_fraction: f64,
    /// Evaluations since the previous heartbeat.
    pub evals: u64,
    /// Of which failed.
    pub failed_evals: u64,
    /// Of which finished late.
    pub late_evals: u64,
    /// Measured datasource round trip, ms (0: not measured).
    pub datasource_rtt_ms: f64,
    /// Measured store round trip, ms (0: not measured).
    pub store_rtt_ms: f64,
    /// Last probe sequence received (0: none).
    pub probe_echo: u64,
}

/// What the worker sends.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerReport {
    /// First message of a session.
    Hello(Hello),
    /// Every heartbeat interval.
    Heartbeat(Heartbeat),
    /// At once when a probe arrives.
    ProbeAck { seq: u64 },
}

/// What the balancer sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BalancerUpdate {
    /// The worker's complete set of owned shards, as of a committed log index.
    Assignments {
        log_index: u64,
        shards: Vec<(ShardId, Epoch)>,
    },
    /// Echo `seq` in the next heartbeat.
    Probe { seq: u64 },
}

fn finite_fraction(field: &str, v: f64) -> Result<f64, ServiceError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ServiceError::invalid(
            field,
            format!("{v} is not a fraction in [0, 1]"),
        ))
    }
}

fn rtt(field: &str, v: f64) -> Result<f64, ServiceError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(ServiceError::invalid(
            field,
            format!("{v} is not a non-negative duration"),
        ))
    }
}

impl TryFrom<pb::WorkerReport> for WorkerReport {
    type Error = ServiceError;

    fn try_from(m: pb::WorkerReport) -> Result<Self, ServiceError> {
        match m.kind {
            None => Err(ServiceError::invalid(
                "kind",
                "a report must be a hello, a heartbeat or a probe ack",
            )),
            Some(pb::worker_report::Kind::ProbeAck(a)) => Ok(Self::ProbeAck { seq: a.seq }),
            Some(pb::worker_report::Kind::Hello(h)) => {
                let worker = WorkerId::new(h.worker_id)
                    .map_err(|e| ServiceError::invalid("hello.worker_id", e))?;
                let zone =
                    ZoneId::new(h.zone).map_err(|e| ServiceError::invalid("hello.zone", e))?;
                if h.capacity == 0 || h.capacity > MAX_CAPACITY {
                    return Err(ServiceError::invalid(
                        "hello.capacity",
                        format!("must be 1..={MAX_CAPACITY}, got {}", h.capacity),
                    ));
                }
                if h.addr.len() > 256 {
                    return Err(ServiceError::invalid("hello.addr", "longer than 256 bytes"));
                }
                Ok(Self::Hello(Hello {
                    worker,
                    zone,
                    capacity: h.capacity,
                    addr: h.addr,
                }))
            }
            Some(pb::worker_report::Kind::Heartbeat(h)) => {
                if h.failed_evals > h.evals || h.late_evals > h.evals {
                    return Err(ServiceError::invalid(
                        "heartbeat.failed_evals",
                        "failed and late evaluations cannot exceed evals",
                    ));
                }
                Ok(Self::Heartbeat(Heartbeat {
                    seq: h.seq,
                    steal_fraction: finite_fraction("heartbeat.steal_fraction", h.steal_fraction)?,
                    evals: h.evals,
                    failed_evals: h.failed_evals,
                    late_evals: h.late_evals,
                    datasource_rtt_ms: rtt("heartbeat.datasource_rtt_ms", h.datasource_rtt_ms)?,
                    store_rtt_ms: rtt("heartbeat.store_rtt_ms", h.store_rtt_ms)?,
                    probe_echo: h.probe_echo,
                }))
            }
        }
    }
}

impl From<WorkerReport> for pb::WorkerReport {
    fn from(r: WorkerReport) -> Self {
        let kind = match r {
            WorkerReport::Hello(h) => pb::worker_report::Kind::Hello(pb::Hello {
                worker_id: h.worker.to_string(),
                zone: h.zone.to_string(),
                capacity: h.capacity,
                addr: h.addr,
            }),
            WorkerReport::ProbeAck { seq } => {
                pb::worker_report::Kind::ProbeAck(pb::ProbeAck { seq })
            }
            WorkerReport::Heartbeat(h) => pb::worker_report::Kind::Heartbeat(pb::Heartbeat {
                seq: h.seq,
                steal_fraction: h.steal_fraction,
                evals: h.evals,
                failed_evals: h.failed_evals,
                late_evals: h.late_evals,
                datasource_rtt_ms: h.datasource_rtt_ms,
                store_rtt_ms: h.store_rtt_ms,
                probe_echo: h.probe_echo,
            }),
        };
        Self { kind: Some(kind) }
    }
}

impl TryFrom<pb::BalancerUpdate> for BalancerUpdate {
    type Error = ServiceError;

    fn try_from(m: pb::BalancerUpdate) -> Result<Self, ServiceError> {
        match m.kind {
            None => Err(ServiceError::invalid(
                "kind",
                "an update must be assignments or a probe",
            )),
            Some(pb::balancer_update::Kind::Probe(p)) => Ok(Self::Probe { seq: p.seq }),
            Some(pb::balancer_update::Kind::Assignments(a)) => {
                let mut shards = Vec::with_capacity(a.shards.len());
                for (i, s) in a.shards.into_iter().enumerate() {
                    let kind = match pb::ShardKind::try_from(s.kind) {
                        Ok(pb::ShardKind::Eval) => ShardKind::Eval,
                        Ok(pb::ShardKind::Notify) => ShardKind::Notify,
                        _ => {
                            return Err(ServiceError::invalid(
                                format!("assignments.shards[{i}].kind"),
                                format!("unknown shard kind {}", s.kind),
                            ));
                        }
                    };
                    let index = u16::try_from(s.index).map_err(|_| {
                        ServiceError::invalid(
                            format!("assignments.shards[{i}].index"),
                            format!("{} out of range", s.index),
                        )
                    })?;
                    if s.epoch == 0 {
                        return Err(ServiceError::invalid(
                            format!("assignments.shards[{i}].epoch"),
                            "must be positive",
                        ));
                    }
                    shards.push((ShardId { kind, index }, Epoch(s.epoch)));
                }
                Ok(Self::Assignments {
                    log_index: a.log_index,
                    shards,
                })
            }
        }
    }
}

impl From<BalancerUpdate> for pb::BalancerUpdate {
    fn from(u: BalancerUpdate) -> Self {
        let kind = match u {
            BalancerUpdate::Probe { seq } => pb::balancer_update::Kind::Probe(pb::Probe { seq }),
            BalancerUpdate::Assignments { log_index, shards } => {
                pb::balancer_update::Kind::Assignments(pb::Assignments {
                    log_index,
                    shards: shards
                        .into_iter()
                        .map(|(s, e)| pb::OwnedShard {
                            kind: match s.kind {
                                ShardKind::Eval => pb::ShardKind::Eval as i32,
                                ShardKind::Notify => pb::ShardKind::Notify as i32,
                            },
                            index: u32::from(s.index),
                            epoch: e.0,
                        })
                        .collect(),
                })
            }
        };
        Self { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_validates() {
        let hello = WorkerReport::Hello(Hello {
            worker: WorkerId::new("w-a-1").unwrap(),
            zone: ZoneId::new("a").unwrap(),
            capacity: 2,
            addr: String::new(),
        });
        assert_eq!(
            WorkerReport::try_from(pb::WorkerReport::from(hello.clone())).unwrap(),
            hello
        );
        let upd = BalancerUpdate::Assignments {
            log_index: 9,
            shards: vec![(ShardId::eval(3), Epoch(7)), (ShardId::notify(1), Epoch(8))],
        };
        assert_eq!(
            BalancerUpdate::try_from(pb::BalancerUpdate::from(upd.clone())).unwrap(),
            upd
        );

        let bad = pb::WorkerReport {
            kind: Some(pb::worker_report::Kind::Heartbeat(pb::Heartbeat {
                steal_fraction: 1.5,
                ..Default::default()
            })),
        };
        let e = WorkerReport::try_from(bad).unwrap_err();
        assert!(
            matches!(e, ServiceError::InvalidArgument { ref field, .. } if field == "heartbeat.steal_fraction"),
            "{e:?}"
        );
        let bad = pb::WorkerReport {
            kind: Some(pb::worker_report::Kind::Hello(pb::Hello {
                worker_id: "w 1".into(),
                zone: "a".into(),
                capacity: 1,
                addr: String::new(),
            })),
        };
        assert!(
            matches!(WorkerReport::try_from(bad), Err(ServiceError::InvalidArgument { ref field, .. }) if field == "hello.worker_id")
        );
        assert!(WorkerReport::try_from(pb::WorkerReport { kind: None }).is_err());
        let bad = pb::BalancerUpdate {
            kind: Some(pb::balancer_update::Kind::Assignments(pb::Assignments {
                log_index: 1,
                shards: vec![pb::OwnedShard {
                    kind: 0,
                    index: 1,
                    epoch: 1,
                }],
            })),
        };
        assert!(BalancerUpdate::try_from(bad).is_err());
    }
}
