//! An independent check of the fencing invariant over the stream of applied commands (the
//! store's watch stream), for tests and the chaos checker.
//!
//! It replays ownership from the applied `Assign`/`RemoveWorker` commands alone (an
//! assignment's epoch is the log index of its entry) and flags every applied shard command
//! whose epoch was not the shard's current epoch, or whose shard had no owner. It shares no
//! code with [`crate::Machine`], so a fencing bug there shows up here.

use std::collections::BTreeMap;

use crate::model::{Change, Command, Epoch, ShardId, WorkerId};

/// What the audit found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries seen.
    pub entries: u64,
    /// Applied shard-scoped commands.
    pub shard_commands: u64,
    /// Applied shard commands whose epoch was not current (must be 0).
    pub stale_epoch_commits: u64,
    /// Applied shard commands for a shard with no owner (must be 0).
    pub unowned_commits: u64,
    /// Assignments observed.
    pub assignments: u64,
    /// First violation, for the failure message.
    pub first_violation: Option<String>,
}

impl AuditReport {
    /// True when no violation was seen.
    pub fn clean(&self) -> bool {
        self.stale_epoch_commits == 0 && self.unowned_commits == 0
    }
}

/// Consumes applied entries in log order.
#[derive(Debug, Default)]
pub struct FenceAudit {
    owners: BTreeMap<ShardId, (Option<WorkerId>, Epoch)>,
    last_index: u64,
    report: AuditReport,
}

impl FenceAudit {
    /// An audit that starts from an empty state (watch from index 0/1).
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the applied changes of entry `index`. Entries must come in increasing order.
    pub fn observe(&mut self, index: u64, changes: &[Change]) {
        assert!(
            index > self.last_index || self.report.entries == 0,
            "entries out of order: {index} after {}",
            self.last_index
        );
        self.last_index = index;
        self.report.entries += 1;
        for c in changes {
            match c {
                Command::Assign { shards } => {
                    for (shard, owner) in shards {
                        self.owners.insert(*shard, (owner.clone(), Epoch(index)));
                        self.report.assignments += 1;
                    }
                }
                Command::RemoveWorker { id } => {
                    for v in self.owners.values_mut() {
                        if v.0.as_ref() == Some(id) {
                            *v = (None, Epoch(index));
                        }
                    }
                }
                Command::Shard { shard, epoch, .. } => {
                    self.report.shard_commands += 1;
                    match self.owners.get(shard) {
                        Some((Some(_), current)) if current == epoch => {}
                        Some((None, _)) | None => {
                            self.report.unowned_commits += 1;
                            self.note(format!(
                                "entry {index}: command for unowned shard {shard} applied"
                            ));
                        }
                        Some((Some(w), current)) => {
                            self.report.stale_epoch_commits += 1;
                            self.note(format!("entry {index}: shard {shard} command with epoch {epoch} applied while {w} owns it at {current}"));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn note(&mut self, v: String) {
        if self.report.first_violation.is_none() {
            self.report.first_violation = Some(v);
        }
    }

    /// The findings so far.
    pub fn report(&self) -> &AuditReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GroupKey, ShardOp};

    fn cycle(shard: ShardId, epoch: u64) -> Command {
        let group = GroupKey {
            namespace: "n".into(),
            name: "g".into(),
        };
        Command::Shard {
            shard,
            epoch: Epoch(epoch),
            op: ShardOp::EvalCycle {
                group,
                eval_ms: 1,
                updates: vec![],
            },
        }
    }

    #[test]
    fn flags_stale_and_unowned_commits() {
        let s = ShardId::eval(1);
        let w = WorkerId::new("w").unwrap();
        let mut a = FenceAudit::new();
        a.observe(1, &[cycle(s, 0)]);
        a.observe(
            2,
            &[Command::Assign {
                shards: vec![(s, Some(w.clone()))],
            }],
        );
        a.observe(3, &[cycle(s, 2)]);
        assert!(!a.report().clean(), "the unowned commit at 1 is flagged");
        assert_eq!(a.report().unowned_commits, 1);
        a.observe(
            4,
            &[Command::Assign {
                shards: vec![(s, Some(w))],
            }],
        );
        a.observe(5, &[cycle(s, 2)]);
        assert_eq!(a.report().stale_epoch_commits, 1);
        assert!(
            a.report()
                .first_violation
                .as_deref()
                .unwrap()
                .contains("entry 1")
        );
    }
}
