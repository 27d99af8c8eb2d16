//! The shard manager: runs one group loop per rule group of every owned eval shard, following
//! ownership changes (from the balancer session) and rule changes (polled from the store).
//! A loop that hits `StaleEpoch` drops its whole shard until the shard is assigned again
//! with a new epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tocsin_proto::ids::{Epoch, ShardId, ShardKind};
use tocsin_state::model::{GroupKey, Query, QueryResult, RuleSet, ShardLayout};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::group::{self, GroupCtx, GroupExit};
use super::session::Ownership;
use crate::rules::{RuleGroup, parse_rule_file};

/// How often the rule set is re-read.
const RULES_POLL: Duration = Duration::from_secs(1);

struct Running {
    shard: ShardId,
    epoch: Epoch,
    source: String,
    cancel: CancellationToken,
}

/// Runs until `cancel`.
pub async fn run(
    ctx: GroupCtx,
    mut ownership: watch::Receiver<Ownership>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let (exit_tx, mut exits) = mpsc::channel::<(ShardId, Epoch)>(64);
    let mut running: BTreeMap<GroupKey, Running> = BTreeMap::new();
    // Shards fenced by the store at an epoch: not run again until that epoch changes.
    let mut fenced: BTreeMap<ShardId, Epoch> = BTreeMap::new();
    let mut rules = RuleSet::default();
    let mut layout = ShardLayout::default();
    let mut parsed: BTreeMap<GroupKey, (String, Option<RuleGroup>)> = BTreeMap::new();
    // Rules are read by a task of their own: a read may wait on a node that does not answer,
    // and ownership changes (a fenced worker stopping its groups) must not wait behind it.
    let (rules_tx, mut rules_rx) = watch::channel((RuleSet::default(), ShardLayout::default()));
    tracker.spawn(poll_rules(ctx.client.clone(), rules_tx, cancel.clone()));
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            changed = rules_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                (rules, layout) = rules_rx.borrow_and_update().clone();
            }
            changed = ownership.changed() => if changed.is_err() { break },
            Some((shard, epoch)) = exits.recv() => {
                fenced.insert(shard, epoch);
            }
        }
        let owned: BTreeMap<ShardId, Epoch> = ownership
            .borrow()
            .shards
            .iter()
            .filter(|(s, e)| s.kind == ShardKind::Eval && fenced.get(s) != Some(e))
            .map(|(s, e)| (*s, *e))
            .collect();
        fenced.retain(|s, e| ownership.borrow().shards.get(s) == Some(e));
        // Desired: every group of an owned shard, with its source.
        let mut desired: BTreeMap<GroupKey, (ShardId, Epoch, String, i64)> = BTreeMap::new();
        for (ns, n) in &rules.namespaces {
            for g in &n.groups {
                let key = GroupKey {
                    namespace: ns.clone(),
                    name: g.name.clone(),
                };
                let shard = layout.eval_shard(&key);
                if let Some(epoch) = owned.get(&shard) {
                    desired.insert(key, (shard, *epoch, g.source.clone(), g.interval_ms as i64));
                }
            }
        }
        // Stop what is no longer wanted or changed.
        running.retain(|key, r| {
            let keep = desired
                .get(key)
                .is_some_and(|(s, e, src, _)| *s == r.shard && *e == r.epoch && *src == r.source);
            if !keep {
                r.cancel.cancel();
            }
            keep
        });
        // Start what is missing.
        for (key, (shard, epoch, source, interval_ms)) in desired {
            if running.contains_key(&key) {
                continue;
            }
            let entry = parsed
                .entry(key.clone())
                .or_insert_with(|| (String::new(), None));
            if entry.0 != source {
                let group = parse_rule_file(&key.namespace, &source)
                    .ok()
                    .and_then(|f| f.groups.into_iter().next());
                if group.is_none() {
                    warn!(group = %key, "stored rule group does not parse; skipping it");
                }
                *entry = (source.clone(), group);
            }
            let Some(group) = entry.1.clone() else {
                continue;
            };
            let token = cancel.child_token();
            running.insert(
                key.clone(),
                Running {
                    shard,
                    epoch,
                    source,
                    cancel: token.clone(),
                },
            );
            let (ctx, exit_tx) = (ctx.clone(), exit_tx.clone());
            tracker.spawn(async move {
                if group::run(ctx, shard, epoch, key, group, interval_ms, token).await
                    == GroupExit::StaleEpoch
                {
                    let _ = exit_tx.send((shard, epoch)).await;
                }
            });
        }
        // Drop every group of a fenced shard at once.
        let dropped: BTreeSet<ShardId> = fenced.keys().copied().collect();
        running.retain(|_, r| {
            let keep = !dropped.contains(&r.shard);
            if !keep {
                r.cancel.cancel();
            }
            keep
        });
        parsed.retain(|k, _| running.contains_key(k));
    }
    for r in running.values() {
        r.cancel.cancel();
    }
    info!("evaluation stopped");
}

/// Reads the rule set and the shard layout every [`RULES_POLL`] and publishes them when they
/// change, until `cancel`.
async fn poll_rules(
    client: tocsin_state::client::StoreClient,
    tx: watch::Sender<(RuleSet, ShardLayout)>,
    cancel: CancellationToken,
) {
    let mut poll = tokio::time::interval(RULES_POLL);
    let (mut rules, mut layout) = tx.borrow().clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = poll.tick() => {}
        }
        let mut changed = false;
        match client.read(&Query::Rules, false).await {
            Ok((_, QueryResult::Rules(r)))
                if r.version != rules.version || rules.namespaces.is_empty() =>
            {
                changed |= r != rules;
                rules = r;
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot read the rule set"),
        }
        if let Ok((_, QueryResult::Layout(l))) = client.read(&Query::Layout, false).await
            && l != layout
        {
            layout = l;
            changed = true;
        }
        if changed && tx.send((rules.clone(), layout)).is_err() {
            return;
        }
    }
}
