//! The notify loop: a worker's owner side of every notify shard it holds (DESIGN.md §7).
//!
//! The loop keeps a **read replica** of the state machine: it reads the whole machine once at a
//! linearizable index, then applies every change of the store's watch stream to it, so its
//! view is exactly the committed state at some index — the alerts (for routing and
//! inhibition), silences, acks, the notification log and the outbox. On any watch error it
//! starts over from a fresh read.
//!
//! From that replica:
//! - **Groups**: a [`Dispatcher`] holds the aggregation groups of the streams whose notify shard
//!   this worker owns; committed alert transitions are routed in, and every flush is committed
//!   as an outbox `Enqueue` (with the stream's new notification log) under the shard's epoch,
//!   at most one per stream in flight: the store takes an enqueue whose log equals the
//!   stream's for a replay of a retried proposal and ignores it, which is sound only if a
//!   stream's flushes commit one after another.
//!   After a handoff or a config change the groups are rebuilt from the replicated log, so no
//!   flush is repeated and none skipped.
//! - **Outbox**: for each delivery unit of an owned stream, a pending head that is due is
//!   claimed (committed, with the epoch), sent through its [`Channel`], and the outcome
//!   committed (`Delivered`, `Retry` with backoff or `Retry-After`, `Dead`). A head claimed by
//!   someone else (an older owner, or this process before a lost answer) is *in doubt*: it is
//!   re-claimed and resent at once when the channel is idempotent, else after the claim
//!   timeout. Units are independent, so a slow receiver never delays another.
//!
//! Claims, enqueues and outcomes due at the same moment are proposed together in one call, so
//! the store's group commit amortises them. A `StaleEpoch` answer drops the shard until the
//! balancer assigns it again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tocsin_proto::ids::{Epoch, ShardId, ShardKind};
use tocsin_state::client::StoreClient;
use tocsin_state::machine::Machine;
use tocsin_state::model::{
    AlertInstance, AlertState, AlertUpdate, Command, CommandError, DeliveryState, Fingerprint,
    NotificationKey, NotifyLog, OutboxOp, Query, QueryResult, ShardOp, WorkerId,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::observe::WorkerObserver;
use super::session::Ownership;
use crate::notify::config::{self, Config};
use crate::notify::deliver::channel::{Channel, Delivery, SendOutcome};
use crate::notify::deliver::message::NotificationData;
use crate::notify::deliver::retry::{Next, RetryPolicy};
use crate::notify::dispatch::{Dispatcher, MuteState};
use crate::notify::group::{Flush, NotifyLogEntry};
use crate::notify::inhibit::{FiringAlert, Inhibitor};
use crate::notify::ratelimit::{RateLimit, RateLimiter};
use crate::notify::silence::Silencer;

/// Builds the channels (one per delivery unit) of a receiver.
pub trait ChannelFactory: Send + Sync + std::fmt::Debug {
    /// The channels of `receiver` under `config`, indexed by delivery unit.
    fn build(&self, config: &Config, receiver: &str) -> Result<Vec<Arc<dyn Channel>>, String>;
}

/// Built channels per receiver (or why they cannot be built).
type ChannelCache = BTreeMap<String, Result<Vec<Arc<dyn Channel>>, String>>;

/// Everything the notify loop needs.
#[derive(Clone, Debug)]
pub struct NotifyCtx {
    /// Store client.
    pub client: StoreClient,
    /// This worker.
    pub worker: WorkerId,
    /// Channel construction.
    pub channels: Arc<dyn ChannelFactory>,
    /// Retry policy of failed sends.
    pub retry: RetryPolicy,
    /// How long a claim by someone else is trusted before a non-idempotent resend.
    pub claim_timeout: Duration,
    /// Base URL for links in notifications.
    pub external_url: String,
    /// Wall clock, ms since the Unix epoch.
    pub now_ms: fn() -> i64,
    /// Per-endpoint rate limits shared through Redis (local at this worker's share without it).
    pub limiter: Option<RateLimiter>,
    /// Where delivery attempts are reported (the worker's `/metrics`).
    pub observer: Arc<dyn WorkerObserver>,
    /// Claim a flush's notification in the same commit as its enqueue
    /// (`OutboxOp::EnqueueClaimed`, one commit before the send). `false` enqueues and claims
    /// in two commits, the earlier protocol: only `tocsin bench e2e --two-commit-claims`
    /// uses it, to measure what the single commit saves.
    pub claim_on_enqueue: bool,
}

/// The provider limit of a channel kind (providers.md): Slack 1/s per webhook, PagerDuty
/// 120/min per key, Twilio about 1/s per sender. Slack's is taken with a 10 % margin (10 per
/// 11 s): two sends admitted exactly a second apart can arrive closer than that after network
/// jitter, and Slack answers those with 429.
fn limit_of(kind: &str) -> Option<RateLimit> {
    match kind {
        "slack" => RateLimit::new(10, Duration::from_secs(11), 1).ok(),
        "pagerduty" => Some(RateLimit::pagerduty()),
        "sms" | "twilio" | "vonage" => Some(RateLimit::twilio_sender()),
        _ => None,
    }
}

/// Outbox proposals in flight at once from one notify loop.
const PROPOSALS_IN_FLIGHT_MAX: usize = 4;

/// The status of an acknowledge notification.
const ACKNOWLEDGED: &str = "acknowledged";

/// Longest a restarting loop waits for the previous one's proposals to be answered.
const PROPOSALS_SETTLE_MAX: Duration = Duration::from_secs(5);

/// A watch stream quiet this long is checked against the cluster's applied index.
const WATCH_QUIET: Duration = Duration::from_secs(2);

/// Longest the replica may stay behind the index of the balancer's latest assignment before
/// the watch is replaced (a healthy node applies it within milliseconds).
const BEHIND_MAX: Duration = Duration::from_millis(1500);

/// Most watch events applied before the loop works on them.
const WATCH_DRAIN_MAX: usize = 4096;

/// How long a send waits for a rate-limit slot before it is rescheduled through the outbox.
const RATE_WAIT_MAX: Duration = Duration::from_secs(2);

/// Runs until `cancel`.
pub async fn run(
    ctx: NotifyCtx,
    mut ownership: watch::Receiver<Ownership>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    loop {
        let mut state = NotifyLoop::new(ctx.clone(), results_tx.clone(), tracker.clone());
        let why = state.follow(&mut ownership, &mut results_rx, &cancel).await;
        match why {
            None => break,
            Some(reason) => {
                warn!(%reason, "notify loop restarting from a fresh replica");
                // The next loop decides flushes from what it reads: an enqueue of this loop
                // still in flight must have landed or failed by then, or its flush could be
                // decided (and sent) a second time. Every proposal has a deadline.
                state.proposals.close();
                let settled = tokio::time::timeout(PROPOSALS_SETTLE_MAX, state.proposals.wait());
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = async { settled.await.ok(); tokio::time::sleep(Duration::from_millis(250)).await } => {}
                }
            }
        }
    }
    info!("notification stopped");
}

/// One send's result, back from its task.
#[derive(Debug)]
struct SendResult {
    shard: ShardId,
    epoch: Epoch,
    key: NotificationKey,
    unit: u16,
    seq: u64,
    attempt: u32,
    next: Next,
}

/// Where a unit's send stands in this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Claim proposed or send running.
    Busy,
    /// Outcome committed; waiting for the replica to show it.
    Reported,
}

struct NotifyLoop {
    ctx: NotifyCtx,
    replica: Machine,
    applied: u64,
    config: Option<(u64, Arc<Config>)>,
    channels: ChannelCache,
    dispatcher: Option<Dispatcher>,
    owned: BTreeMap<ShardId, Epoch>,
    fenced: BTreeMap<ShardId, Epoch>,
    /// The balancer's latest word on what this worker owns.
    ownership: Ownership,
    /// The lowest epoch of an assigned notify shard not yet taken up because the replica has
    /// not applied the assignment (its epoch is the assignment's log index).
    held_back: Option<u64>,
    /// Since when the replica has been behind the index of the balancer's latest word (or an
    /// assignment held back). A watched node that stays behind what the leader already
    /// decided (it is cut off, say) is replaced within [`BEHIND_MAX`], not only once its
    /// stream has been quiet for a while: meanwhile this loop flushes from a stale view.
    behind_since: Option<tokio::time::Instant>,
    inflight: BTreeMap<(NotificationKey, u16), (u64, Phase)>,
    /// Flushes decided but not yet committed (retried until committed or fenced), in the order
    /// they were decided.
    unenqueued: Vec<(ShardId, Epoch, NotificationKey, OutboxOp)>,
    /// Streams with an enqueue proposed and not yet answered. A stream has at most one: its
    /// next waits in `unenqueued`, so a retried flush can never commit after a newer one, and
    /// the store can tell a retry whose first copy committed (its log equals the stream's)
    /// from a new flush.
    enqueuing: BTreeSet<NotificationKey>,
    /// The log of each owned stream's latest flush that the replica does not show yet
    /// (proposed, or waiting to be). Groups rebuilt meanwhile (an ownership change) resume
    /// from it, not from the replica's older log, or they would decide that flush again.
    decided: BTreeMap<NotificationKey, NotifyLog>,
    /// Outcomes not yet committed.
    unreported: Vec<SendResult>,
    /// The last known instance of every alert a group holds (resolved ones may be removed from
    /// the store before their group notifies).
    known: BTreeMap<Fingerprint, AlertInstance>,
    /// Size of `known` after its last pruning.
    known_floor: usize,
    results: mpsc::UnboundedSender<SendResult>,
    /// Streams whose outbox changed since the last look.
    dirty: BTreeSet<NotificationKey>,
    /// Every stream needs a look (after a resync, an ownership or config change).
    all_dirty: bool,
    /// When a stream's head becomes due (retry time, claim timeout); stale entries are harmless.
    timers: BTreeSet<(i64, NotificationKey)>,
    /// Units this loop claimed with its own flush (`EnqueueClaimed`) and has not started
    /// sending: (stream, unit, the claim's `at_ms`). A head claimed by this worker under the
    /// current epoch at exactly that time is sent at once, without a second commit; any other
    /// head claimed by this worker (say, before a restart) is in doubt as usual. Entries older
    /// than the claim timeout are dropped: the in-doubt path then owns the head.
    preclaimed: BTreeSet<(NotificationKey, u16, i64)>,
    /// Answers of pipelined proposals.
    settled_tx: mpsc::UnboundedSender<Settled>,
    proposals_in_flight: usize,
    /// This loop's proposals in flight (each also on `tracker`).
    proposals: TaskTracker,
    tracker: TaskTracker,
}

/// The answer to one pipelined outbox proposal.
#[derive(Debug)]
struct Settled {
    pendings: Vec<Pending>,
    result: Result<Vec<Result<tocsin_state::model::CommandOk, CommandError>>, String>,
}

impl NotifyLoop {
    fn new(
        ctx: NotifyCtx,
        results: mpsc::UnboundedSender<SendResult>,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            ctx,
            replica: Machine::default(),
            applied: 0,
            config: None,
            channels: BTreeMap::new(),
            dispatcher: None,
            owned: BTreeMap::new(),
            fenced: BTreeMap::new(),
            ownership: Ownership::default(),
            held_back: None,
            behind_since: None,
            inflight: BTreeMap::new(),
            unenqueued: Vec::new(),
            enqueuing: BTreeSet::new(),
            decided: BTreeMap::new(),
            unreported: Vec::new(),
            known: BTreeMap::new(),
            known_floor: 0,
            results,
            settled_tx: mpsc::unbounded_channel().0,
            dirty: BTreeSet::new(),
            all_dirty: true,
            timers: BTreeSet::new(),
            preclaimed: BTreeSet::new(),
            proposals_in_flight: 0,
            proposals: TaskTracker::new(),
            tracker,
        }
    }

    /// Follows the store until cancelled (`None`) or until the replica must be rebuilt.
    async fn follow(
        &mut self,
        ownership: &mut watch::Receiver<Ownership>,
        results: &mut mpsc::UnboundedReceiver<SendResult>,
        cancel: &CancellationToken,
    ) -> Option<String> {
        let (index, replica) = match self.ctx.client.read(&Query::Replica, true).await {
            Ok((index, QueryResult::Replica(m))) => (index, m),
            Ok((_, other)) => return Some(format!("unexpected answer {other:?}")),
            Err(e) => return Some(format!("cannot read the state: {e}")),
        };
        self.replica = *replica;
        self.applied = index;
        self.take_ownership(&ownership.borrow_and_update());
        self.reload_config();
        let (settled_tx, mut settled_rx) = mpsc::unbounded_channel();
        self.settled_tx = settled_tx;
        let mut stream = match self.ctx.client.watch(index + 1).await {
            Ok(s) => s,
            Err(e) => return Some(format!("cannot watch: {e}")),
        };
        // A watched node cut off by a partition sends nothing and closes nothing: when the
        // stream has been quiet for a while, ask the cluster how far it is.
        let mut last_item = tokio::time::Instant::now();
        // Behind at the previous check too (one check can race an entry in flight).
        let mut behind_before = false;
        let mut stall_check = tokio::time::interval(WATCH_QUIET);
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wanted = self
                .ownership
                .log_index
                .max(self.held_back.unwrap_or_default());
            self.behind_since = match self.behind_since {
                _ if self.applied >= wanted => None,
                None => Some(tokio::time::Instant::now()),
                since => since,
            };
            if self
                .behind_since
                .is_some_and(|since| since.elapsed() >= BEHIND_MAX)
            {
                return Some(format!(
                    "the watched node has not applied index {wanted} (the balancer's latest assignment) within {BEHIND_MAX:?}; applied {}",
                    self.applied
                ));
            }
            self.work();
            let wake = self.next_wakeup();
            let sleep = Duration::from_millis((wake - (self.ctx.now_ms)()).clamp(1, 1000) as u64);
            tokio::select! {
                () = cancel.cancelled() => return None,
                _ = stall_check.tick() => {
                    if last_item.elapsed() >= WATCH_QUIET {
                        let behind = self.watch_is_behind().await;
                        if behind && behind_before {
                            return Some("the watched node fell behind the cluster".into());
                        }
                        behind_before = behind;
                    }
                }
                item = stream.next() => {
                    last_item = tokio::time::Instant::now();
                    behind_before = false;
                    // Apply everything already received before working, so one round of
                    // proposals covers all of it.
                    let mut item = Some(item);
                    let mut drained = 0;
                    while let Some(next) = item.take() {
                        match next {
                            Some(Ok((index, changes))) => {
                                if index > self.applied {
                                    self.apply(index, &changes);
                                }
                            }
                            Some(Err(e)) => return Some(format!("watch ended: {e}")),
                            None => return Some("watch ended".into()),
                        }
                        drained += 1;
                        if drained < WATCH_DRAIN_MAX {
                            item = stream.next().now_or_never();
                        }
                    }
                }
                changed = ownership.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let o = ownership.borrow_and_update().clone();
                    self.take_ownership(&o);
                    self.rebuild_groups();
                }
                Some(settled) = settled_rx.recv() => {
                    self.on_settled(settled);
                    while let Ok(more) = settled_rx.try_recv() {
                        self.on_settled(more);
                    }
                }
                Some(r) = results.recv() => {
                    self.unreported.push(r);
                    while let Ok(r) = results.try_recv() {
                        self.unreported.push(r);
                    }
                }
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Whether the cluster has applied entries this loop's watch stream has not delivered (a
    /// linearizable read answers with the leader's applied index).
    async fn watch_is_behind(&self) -> bool {
        let client = self.ctx.client.clone().with_deadline(WATCH_QUIET);
        match client.read(&Query::Layout, true).await {
            Ok((index, _)) => index > self.applied,
            Err(e) => {
                debug!(error = %e, "cannot check the watch stream against the cluster");
                false
            }
        }
    }

    /// Takes up the notify shards of `o` whose assignment the replica has applied.
    ///
    /// A shard's epoch is the log index of the assignment, and every write its previous owner
    /// got accepted lies below it (later ones are refused as stale). So once the replica has
    /// applied the epoch's index, it shows everything the previous owner enqueued, and the
    /// groups resume from it without flushing anything twice. Before that (the balancer's
    /// word can beat this worker's watch stream) the shard waits.
    fn take_ownership(&mut self, o: &Ownership) -> bool {
        self.ownership = o.clone();
        self.fenced.retain(|s, e| o.shards.get(s) == Some(e));
        self.held_back = None;
        let mut owned = BTreeMap::new();
        for (s, e) in &o.shards {
            if s.kind != ShardKind::Notify || self.fenced.get(s) == Some(e) {
                continue;
            }
            if e.0 > self.applied {
                self.held_back = Some(self.held_back.map_or(e.0, |h| h.min(e.0)));
                continue;
            }
            owned.insert(*s, *e);
        }
        if let Some(at) = self.held_back {
            debug!(
                applied = self.applied,
                waiting_for = at,
                "notify shard assigned ahead of the replica"
            );
        }
        if owned != self.owned {
            debug!(shards = owned.len(), "notify shards changed");
            let layout = *self.replica.layout();
            self.decided
                .retain(|k, _| owned.contains_key(&layout.notify_shard(k)));
            self.owned = owned;
            self.all_dirty = true;
            return true;
        }
        false
    }

    fn owns(&self, key: &NotificationKey) -> Option<(ShardId, Epoch)> {
        let shard = self.replica.layout().notify_shard(key);
        self.owned.get(&shard).map(|e| (shard, *e))
    }

    /// Parses the replicated config if it changed and rebuilds the groups.
    fn reload_config(&mut self) {
        let record = self.replica.notify_config();
        if self.config.as_ref().map(|(v, _)| *v) == Some(record.version) && record.version != 0 {
            return;
        }
        if record.version == 0 {
            self.config = None;
        } else {
            match config::load(&record.source) {
                Ok(c) => self.config = Some((record.version, Arc::new(c))),
                Err(e) => {
                    // The API validates before proposing; an unparsable stored config means a
                    // newer Tocsin wrote it. Keep the previous one.
                    warn!(error = %e, "stored notification config does not load; keeping the previous one");
                }
            }
        }
        self.channels.clear();
        self.all_dirty = true;
        self.rebuild_groups();
    }

    fn rebuild_groups(&mut self) {
        let Some((_, config)) = &self.config else {
            self.dispatcher = None;
            return;
        };
        let alerts: Vec<AlertInstance> = self.replica.alerts().cloned().collect();
        let mut logs: BTreeMap<NotificationKey, NotifyLogEntry> = self
            .replica
            .outbox()
            .iter()
            .filter_map(|(k, s)| s.log.as_ref().map(|l| (k.clone(), NotifyLogEntry::from(l))))
            .collect();
        // Flushes decided but not yet applied are newer than what the replica shows.
        for (k, l) in &self.decided {
            logs.insert(k.clone(), NotifyLogEntry::from(l));
        }
        let layout = *self.replica.layout();
        let owned = self.owned.clone();
        let owns = move |k: &NotificationKey| owned.contains_key(&layout.notify_shard(k));
        let d = Dispatcher::resume(
            Config::clone(config),
            &alerts,
            &logs,
            self.replica.acks(),
            &owns,
            (self.ctx.now_ms)(),
        );
        let held: BTreeSet<Fingerprint> = d.fingerprints().collect();
        self.known = alerts
            .into_iter()
            .filter(|a| held.contains(&a.fingerprint))
            .map(|a| (a.fingerprint, a))
            .collect();
        self.dispatcher = Some(d);
        // A new owner sends what an ack still owes (the old one may have died first).
        let acked: Vec<NotificationKey> = self.replica.acks().keys().cloned().collect();
        for key in acked {
            self.acknowledge(&key);
        }
    }

    /// Applies one committed entry to the replica and reacts to it.
    fn apply(&mut self, index: u64, changes: &[Command]) {
        self.applied = index;
        let mut config_changed = false;
        for c in changes {
            if let Err(e) = self.replica.apply(index, c) {
                // The leader applied it; the replica must too. Anything else is a bug, and the
                // next resync repairs the replica.
                warn!(index, error = %e, "replica refused a committed command");
            }
            match c {
                Command::Shard {
                    op: ShardOp::EvalCycle { updates, .. },
                    ..
                } => {
                    for u in updates {
                        if let AlertUpdate::Upsert(a) = u {
                            self.on_alert(a);
                        }
                    }
                }
                Command::Shard {
                    op: ShardOp::Outbox { key, .. },
                    ..
                } => {
                    self.dirty.insert(key.clone());
                    if let Some(l) = self.decided.get(key)
                        && self.replica.outbox().get(key).and_then(|s| s.log.as_ref()) == Some(l)
                    {
                        self.decided.remove(key);
                    }
                    // A unit busy when the ack came acknowledges once its send is done.
                    self.acknowledge(key);
                }
                Command::Ack { key, ack } => {
                    if let Some(d) = &mut self.dispatcher {
                        d.on_ack(key, ack.clone());
                    }
                    self.acknowledge(key);
                }
                Command::SetMetaAlert { name, labels, .. } => {
                    let mut all = labels.clone();
                    all.insert("alertname".into(), name.clone());
                    let (fp, group) = tocsin_state::machine::meta_identity(&all);
                    if let Some(a) = self.replica.alert(&group, fp).cloned() {
                        self.on_alert(&a);
                    }
                }
                Command::SetNotifyConfig { .. } | Command::SetLayout(_) => config_changed = true,
                _ => {}
            }
        }
        if config_changed {
            self.reload_config();
        }
        if self.held_back.is_some_and(|at| at <= index) {
            let o = self.ownership.clone();
            if self.take_ownership(&o) {
                self.rebuild_groups();
            }
        }
    }

    /// Raises (with the reason) or resolves the meta-alert `TocsinNotificationFailed` of a
    /// receiver's delivery unit: a dead letter raises it, the next delivery resolves it.
    fn meta_dead_letter(&mut self, receiver: &str, unit: u16, reason: Option<&str>) {
        let name = "TocsinNotificationFailed";
        let labels = BTreeMap::from([
            ("receiver".to_string(), receiver.to_string()),
            ("unit".to_string(), unit.to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]);
        let mut all = labels.clone();
        all.insert("alertname".into(), name.into());
        let (fp, group) = tocsin_state::machine::meta_identity(&all);
        let firing = self
            .replica
            .alert(&group, fp)
            .is_some_and(|a| a.state == AlertState::Firing);
        if reason.is_none() && !firing {
            return;
        }
        let annotations = match reason {
            Some(r) => BTreeMap::from([
                (
                    "summary".to_string(),
                    format!("A notification to receiver {receiver} was given up: {r}"),
                ),
                (
                    "description".to_string(),
                    "The provider refused it permanently (or retries ran out); see `tocsin notify status`.".to_string(),
                ),
            ]),
            None => BTreeMap::new(),
        };
        let command = Command::SetMetaAlert {
            name: name.into(),
            labels,
            annotations,
            firing: reason.is_some(),
            at_ms: (self.ctx.now_ms)(),
        };
        let client = self.ctx.client.clone();
        self.tracker.spawn(async move {
            if let Err(e) = client.propose(vec![command]).await {
                warn!(error = %e, "could not commit the dead-letter meta-alert");
            }
        });
    }

    /// For an acknowledged owned stream: an `acknowledge` to every unit whose provider has one
    /// (PagerDuty) and whose last delivery opened something (a trigger), once nothing is in
    /// flight on that unit. Derived from the replica each time the stream or its ack changes,
    /// and after a handoff, so a unit busy at the ack, or an owner that died before sending
    /// it, still acknowledges; a unit whose last delivery is the acknowledge is done.
    fn acknowledge(&mut self, key: &NotificationKey) {
        let Some(ack) = self.replica.acks().get(key).cloned() else {
            return;
        };
        // Not while an enqueue of the stream is uncommitted: the replica would show its units
        // idle, and the stream's next change asks again.
        if self.enqueuing.contains(key) {
            return;
        }
        let Some((shard, epoch)) = self.owns(key) else {
            return;
        };
        let Some((_, config)) = self.config.clone() else {
            return;
        };
        let Some(stream) = self.replica.outbox().get(key).cloned() else {
            return;
        };
        // An ack older than the stream's last escalation (a new alert firing) is void.
        if stream
            .log
            .as_ref()
            .is_some_and(|l| l.escalated_ms > ack.at_ms)
        {
            return;
        }
        let channels = match channels_of(&mut self.channels, &self.ctx, &config, &key.receiver) {
            Ok(c) => c.clone(),
            Err(_) => return,
        };
        for (unit, slot) in stream.units.iter().enumerate() {
            if slot.head.is_some() || !channels.get(unit).is_some_and(|c| c.acknowledges()) {
                continue;
            }
            let Some(last) = &slot.last else { continue };
            if last.notification.resolved || !matches!(last.state, DeliveryState::Delivered { .. })
            {
                continue;
            }
            let Ok(mut data) = NotificationData::decode(&last.notification.payload) else {
                continue;
            };
            let queued = self.unenqueued.iter().any(|(_, _, k, op)| {
                k == key
                    && matches!(op, OutboxOp::EnqueueUnit { unit: u, .. } if usize::from(*u) == unit)
            });
            if data.status == ACKNOWLEDGED || queued {
                continue;
            }
            data.status = ACKNOWLEDGED.into();
            let notification = tocsin_state::model::Notification {
                resolved: false,
                alerts: last.notification.alerts.clone(),
                payload: data.encode(),
                due_ms: ack.at_ms,
            };
            self.unenqueued.push((
                shard,
                epoch,
                key.clone(),
                OutboxOp::EnqueueUnit {
                    unit: unit as u16,
                    notification,
                },
            ));
        }
    }

    fn on_alert(&mut self, a: &AlertInstance) {
        let Some(d) = &mut self.dispatcher else {
            return;
        };
        let layout = *self.replica.layout();
        let owned = &self.owned;
        let owns = |k: &NotificationKey| owned.contains_key(&layout.notify_shard(k));
        let keys = d.on_alert(a, &owns, (self.ctx.now_ms)());
        if a.state != AlertState::Pending && keys.iter().any(owns) {
            self.known.insert(a.fingerprint, a.clone());
        }
    }

    fn next_wakeup(&self) -> i64 {
        let now = (self.ctx.now_ms)();
        let mut wake = now + 1000;
        if let Some(t) = self.dispatcher.as_ref().and_then(Dispatcher::next_deadline) {
            wake = wake.min(t);
        }
        if !self.unenqueued.is_empty() || !self.unreported.is_empty() {
            wake = wake.min(now + 100);
        }
        if let Some((t, _)) = self.timers.first() {
            wake = wake.min(*t);
        }
        // While the pipeline is full, its answers wake the loop.
        if self.proposals_in_flight < PROPOSALS_IN_FLIGHT_MAX
            && (self.all_dirty || !self.dirty.is_empty())
        {
            wake = now;
        }
        wake
    }

    /// Everything due now: group flushes, outcomes to commit, heads to claim and send.
    fn work(&mut self) {
        self.flush_groups();
        if self.proposals_in_flight >= PROPOSALS_IN_FLIGHT_MAX {
            return;
        }
        let mut batch: Vec<(Command, Pending)> = Vec::new();
        for (shard, epoch, key, op) in std::mem::take(&mut self.unenqueued) {
            if !self.enqueuing.insert(key.clone()) {
                // One enqueue per stream in flight: this one goes after the earlier's answer.
                self.unenqueued.push((shard, epoch, key, op));
                continue;
            }
            batch.push((
                outbox_command(shard, epoch, &key, op.clone()),
                Pending::Enqueue(shard, epoch, key, op),
            ));
        }
        let now = (self.ctx.now_ms)();
        for r in std::mem::take(&mut self.unreported) {
            let op = match &r.next {
                Next::Delivered(provider_id) => OutboxOp::Delivered {
                    unit: r.unit,
                    seq: r.seq,
                    provider_id: provider_id.clone(),
                    at_ms: now,
                },
                Next::RetryAfter(after, reason) => OutboxOp::Retry {
                    unit: r.unit,
                    seq: r.seq,
                    next_attempt_ms: now + after.as_millis() as i64,
                    reason: reason.clone(),
                },
                Next::Dead(reason) => OutboxOp::Dead {
                    unit: r.unit,
                    seq: r.seq,
                    reason: reason.clone(),
                    at_ms: now,
                },
            };
            batch.push((
                outbox_command(r.shard, r.epoch, &r.key, op),
                Pending::Report(r),
            ));
        }
        self.collect_claims(now, &mut batch);
        if batch.is_empty() {
            return;
        }
        // Proposals are pipelined: the loop goes on applying the watch stream while they
        // commit, and settles each when its answer comes back.
        let (commands, pendings): (Vec<Command>, Vec<Pending>) = batch.into_iter().unzip();
        let client = self.ctx.client.clone();
        let settled = self.settled_tx.clone();
        self.proposals_in_flight += 1;
        self.tracker.spawn(self.proposals.track_future(async move {
            let result = client
                .propose(commands)
                .await
                .map(|(_, results)| results)
                .map_err(|e| e.to_string());
            let _ = settled.send(Settled { pendings, result });
        }));
    }

    /// Takes the answer of one pipelined proposal.
    fn on_settled(&mut self, s: Settled) {
        self.proposals_in_flight = self.proposals_in_flight.saturating_sub(1);
        match s.result {
            Ok(results) => {
                for (pending, result) in s.pendings.into_iter().zip(results) {
                    self.settle(pending, result);
                }
            }
            Err(e) => {
                warn!(error = %e, "outbox proposal failed; will retry");
                // Retried ahead of anything decided since, in their order.
                let mut retries = Vec::new();
                for pending in s.pendings {
                    match pending {
                        Pending::Enqueue(s, e, k, op) => {
                            self.enqueuing.remove(&k);
                            retries.push((s, e, k, op));
                        }
                        Pending::Report(r) => self.unreported.push(r),
                        // An unconfirmed claim is in doubt: the replica shows whether it landed.
                        Pending::Claim { key, unit, .. } => {
                            self.inflight.remove(&(key.clone(), unit));
                            self.dirty.insert(key);
                        }
                    }
                }
                self.unenqueued.splice(0..0, retries);
            }
        }
    }

    fn settle(
        &mut self,
        pending: Pending,
        result: Result<tocsin_state::model::CommandOk, CommandError>,
    ) {
        match (pending, result) {
            (Pending::Claim { send, .. }, Ok(_)) => self.start_send(*send),
            (Pending::Claim { key, unit, .. }, Err(e)) => {
                self.inflight.remove(&(key.clone(), unit));
                self.dirty.insert(key);
                self.refused(&e);
            }
            (Pending::Enqueue(_, _, key, _), Ok(_)) => {
                self.enqueuing.remove(&key);
            }
            (Pending::Enqueue(_, _, key, op), Err(e)) => {
                self.enqueuing.remove(&key);
                if let OutboxOp::Enqueue { log, .. } | OutboxOp::EnqueueClaimed { log, .. } = &op
                    && self.decided.get(&key) == Some(log)
                {
                    self.decided.remove(&key);
                }
                self.preclaimed.retain(|(k, _, _)| *k != key);
                self.refused(&e);
            }
            (Pending::Report(r), Ok(_)) => {
                match &r.next {
                    Next::Dead(reason) => {
                        warn!(receiver = %r.key.receiver, group = %r.key.group_key, unit = r.unit,
                            attempts = r.attempt, %reason, "notification dead-lettered");
                        self.meta_dead_letter(&r.key.receiver, r.unit, Some(reason));
                    }
                    Next::Delivered(_) => self.meta_dead_letter(&r.key.receiver, r.unit, None),
                    Next::RetryAfter(..) => {}
                }
                if let Some(x) = self.inflight.get_mut(&(r.key.clone(), r.unit)) {
                    x.1 = Phase::Reported;
                }
                // The replica may already show the outcome (the watch can beat the answer):
                // look at the stream again either way.
                self.dirty.insert(r.key.clone());
            }
            (Pending::Report(r), Err(e)) => {
                // The head moved on (a newer owner) or the shard is fenced: drop the outcome.
                self.inflight.remove(&(r.key.clone(), r.unit));
                self.dirty.insert(r.key.clone());
                self.refused(&e);
            }
        }
    }

    fn refused(&mut self, e: &CommandError) {
        if let CommandError::StaleEpoch { shard, got, .. } = e {
            // A refusal of a write made under an earlier epoch of a shard owned again says
            // nothing about the current epoch.
            if self.owned.get(shard) != Some(got) {
                debug!(%shard, epoch = %got, "store refused a write of an earlier epoch");
                return;
            }
            warn!(%shard, epoch = %got, "store refused our epoch: dropping the notify shard");
            self.fenced.insert(*shard, *got);
            self.owned.remove(shard);
            self.rebuild_groups();
        } else {
            debug!(error = %e, "outbox step refused");
        }
    }

    /// Runs the groups' due ticks and queues their flushes for commit.
    fn flush_groups(&mut self) {
        let Some((_, config)) = &self.config else {
            return;
        };
        let now = (self.ctx.now_ms)();
        let Some(d) = self.dispatcher.as_mut() else {
            return;
        };
        if d.next_deadline().is_none_or(|t| t > now) {
            return;
        }
        let inhibitor = Inhibitor::new(config.inhibit_rules.clone());
        // Only inhibition needs every firing alert of the cluster.
        let firing: Vec<FiringAlert<'_>> = self
            .replica
            .alerts()
            .filter(|a| !config.inhibit_rules.is_empty() && a.state == AlertState::Firing)
            .map(|a| FiringAlert {
                fingerprint: a.fingerprint,
                labels: &a.labels,
            })
            .collect();
        let (silencer, _) = Silencer::new(self.replica.silences().cloned());
        let mute = MuteState {
            inhibitor: &inhibitor,
            firing: &firing,
            silencer: &silencer,
        };
        let flushes = d.poll(now, &mute);
        let mut ops = Vec::new();
        for f in flushes {
            let Some((shard, epoch)) = self
                .owned
                .get(&self.replica.layout().notify_shard(&f.key))
                .map(|e| (self.replica.layout().notify_shard(&f.key), *e))
            else {
                continue;
            };
            let units = match channels_of(&mut self.channels, &self.ctx, config, &f.key.receiver) {
                // A receiver without integrations is a deliberate black hole: nothing to send.
                Ok(c) if c.is_empty() => continue,
                Ok(c) => c.len(),
                Err(e) => {
                    // Recorded on one unit, which is dead-lettered with the reason (and raises
                    // the meta-alert): a broken receiver must be seen, not silently skipped.
                    warn!(receiver = %f.key.receiver, error = %e, "receiver has no usable channel");
                    1
                }
            };
            let data = data_of(&self.known, &f, d, &self.ctx.external_url);
            let (notification, log, units) = (
                f.to_notification(data.encode()),
                NotifyLog::from(&f.log),
                units as u16,
            );
            self.decided.insert(f.key.clone(), log.clone());
            let op = if self.ctx.claim_on_enqueue {
                // Claimed in the same commit: the send starts once the flush is committed.
                for unit in 0..units {
                    self.preclaimed.insert((f.key.clone(), unit, now));
                }
                OutboxOp::EnqueueClaimed {
                    notification,
                    log,
                    units,
                    worker: self.ctx.worker.clone(),
                    at_ms: now,
                }
            } else {
                OutboxOp::Enqueue {
                    notification,
                    log,
                    units,
                }
            };
            ops.push((shard, epoch, f.key.clone(), op));
        }
        // Forget alerts no group holds any more, amortised: only when the cache has doubled.
        if self.known.len() > 2 * self.known_floor + 1024 {
            let held: BTreeSet<Fingerprint> = d.fingerprints().collect();
            self.known.retain(|fp, _| held.contains(fp));
            self.known_floor = self.known.len();
        }
        self.unenqueued.extend(ops);
    }

    /// Heads due for a send: claim them (in this batch) and send once the claim commits.
    fn collect_claims(&mut self, now: i64, batch: &mut Vec<(Command, Pending)>) {
        let Some((_, config)) = self.config.clone() else {
            return;
        };
        // Forget sends whose outcome the replica now shows.
        let outbox = self.replica.outbox();
        self.inflight.retain(|(key, unit), (seq, phase)| {
            let head = outbox
                .get(key)
                .and_then(|s| s.units.get(usize::from(*unit)))
                .and_then(|slot| slot.head.as_ref());
            let settled = match head {
                Some(h) => h.seq != *seq || !matches!(h.state, DeliveryState::Claimed { .. }),
                None => true,
            };
            !(*phase == Phase::Reported && settled)
        });
        let timeout = self.ctx.claim_timeout.as_millis() as i64;
        self.preclaimed
            .retain(|(_, _, at_ms)| *at_ms + timeout > now);
        // Only streams whose outbox changed, or whose timer is due, can have work.
        let mut keys: BTreeSet<NotificationKey> = if self.all_dirty {
            outbox.keys().cloned().collect()
        } else {
            std::mem::take(&mut self.dirty)
        };
        self.all_dirty = false;
        self.dirty.clear();
        while let Some((t, _)) = self.timers.first()
            && *t <= now
        {
            if let Some((_, k)) = self.timers.pop_first() {
                keys.insert(k);
            }
        }
        let mut candidates = Vec::new();
        for key in &keys {
            let Some(stream) = outbox.get(key) else {
                continue;
            };
            let Some((shard, epoch)) = self.owns(key) else {
                continue;
            };
            for (unit, slot) in stream.units.iter().enumerate() {
                let unit = unit as u16;
                let Some(head) = &slot.head else { continue };
                if self.inflight.contains_key(&(key.clone(), unit)) {
                    continue;
                }
                let mut preclaimed = false;
                let in_doubt = match &head.state {
                    DeliveryState::Pending if head.next_attempt_ms <= now => false,
                    DeliveryState::Pending => {
                        self.timers.insert((head.next_attempt_ms, key.clone()));
                        continue;
                    }
                    // Claimed by this loop's own flush, not sent yet.
                    DeliveryState::Claimed {
                        worker,
                        epoch: claimed_epoch,
                        at_ms,
                    } if *worker == self.ctx.worker
                        && *claimed_epoch == epoch
                        && self.preclaimed.contains(&(key.clone(), unit, *at_ms)) =>
                    {
                        // Sent now (never in doubt), so this claim is used up.
                        self.preclaimed.remove(&(key.clone(), unit, *at_ms));
                        preclaimed = true;
                        false
                    }
                    // Claimed by an older owner, or by this one before a lost answer.
                    DeliveryState::Claimed { at_ms, .. } => {
                        let in_doubt = *at_ms + timeout > now;
                        if in_doubt {
                            // Resent when the claim times out, unless the channel is
                            // idempotent (decided below).
                            self.timers.insert((*at_ms + timeout, key.clone()));
                        }
                        in_doubt
                    }
                    _ => continue,
                };
                candidates.push((
                    shard,
                    epoch,
                    key.clone(),
                    unit,
                    in_doubt,
                    preclaimed,
                    head.clone(),
                    slot.last.clone(),
                ));
            }
        }
        let mut due = Vec::new();
        for (shard, epoch, key, unit, in_doubt, preclaimed, head, last) in candidates {
            // A claim still within its timeout is resent at once only if the channel
            // deduplicates; otherwise the timeout bounds the duplicate window to a crash.
            if in_doubt && self.idempotent(&config, &key, unit) != Some(true) {
                continue;
            }
            due.push((shard, epoch, key, unit, preclaimed, head, last));
        }
        for (shard, epoch, key, unit, preclaimed, head, last) in due {
            let channel = match channels_of(&mut self.channels, &self.ctx, &config, &key.receiver) {
                Ok(c) => c.get(usize::from(unit)).cloned().ok_or_else(|| {
                    format!("receiver {:?} has no delivery unit {unit}", key.receiver)
                }),
                Err(e) => Err(format!("receiver {:?} cannot be used: {e}", key.receiver)),
            };
            let channel = match channel {
                Ok(c) => c,
                Err(reason) => {
                    // Nothing can ever send it: dead-letter with the reason.
                    let op = OutboxOp::Dead {
                        unit,
                        seq: head.seq,
                        reason: reason.clone(),
                        at_ms: now,
                    };
                    self.inflight
                        .insert((key.clone(), unit), (head.seq, Phase::Busy));
                    batch.push((
                        outbox_command(shard, epoch, &key, op),
                        Pending::Report(SendResult {
                            shard,
                            epoch,
                            key: key.clone(),
                            unit,
                            seq: head.seq,
                            attempt: head.attempts,
                            next: Next::Dead(reason),
                        }),
                    ));
                    continue;
                }
            };
            let data = match NotificationData::decode(&head.notification.payload) {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "stored notification does not decode");
                    continue;
                }
            };
            self.inflight
                .insert((key.clone(), unit), (head.seq, Phase::Busy));
            // The claim of a preclaimed head already counted this attempt.
            let attempt = if preclaimed {
                head.attempts.saturating_sub(1)
            } else {
                head.attempts
            };
            let send = SendJob {
                shard,
                epoch,
                unit,
                channel,
                delivery: Delivery {
                    key: key.clone(),
                    seq: head.seq,
                    data,
                    attempt,
                    enqueued_ms: head.notification.due_ms,
                    now_ms: now,
                    previous_provider_id: last.and_then(|l| match l.state {
                        DeliveryState::Delivered { provider_id, .. } => provider_id,
                        _ => None,
                    }),
                },
            };
            if preclaimed {
                self.start_send(send);
                continue;
            }
            let op = OutboxOp::Claim {
                unit,
                seq: head.seq,
                worker: self.ctx.worker.clone(),
                at_ms: now,
            };
            batch.push((
                outbox_command(shard, epoch, &key, op),
                Pending::Claim {
                    key,
                    unit,
                    send: Box::new(send),
                },
            ));
        }
    }

    fn idempotent(&mut self, config: &Config, key: &NotificationKey, unit: u16) -> Option<bool> {
        channels_of(&mut self.channels, &self.ctx, config, &key.receiver)
            .ok()
            .and_then(|c| c.get(usize::from(unit)).map(|c| c.idempotent()))
    }

    fn start_send(&self, send: SendJob) {
        let results = self.results.clone();
        let retry = self.ctx.retry;
        let limiter = self.ctx.limiter.clone();
        let observer = self.ctx.observer.clone();
        self.tracker.spawn(async move {
            let SendJob {
                shard,
                epoch,
                unit,
                channel,
                delivery,
            } = send;
            let attempt = delivery.attempt + 1;
            let slot = match (&limiter, channel.rate_key(), limit_of(channel.kind())) {
                (Some(l), Some(key), Some(limit)) => l.acquire(&key, &limit, RATE_WAIT_MAX).await,
                _ => Ok(()),
            };
            let started = std::time::Instant::now();
            let outcome = match slot {
                Ok(()) => channel.send(&delivery).await,
                // Not a provider failure: come back when the endpoint has room.
                Err(after) => SendOutcome::Retry {
                    retry_after: Some(after),
                    reason: "rate limited locally".into(),
                },
            };
            debug!(key = ?delivery.key, seq = delivery.seq, kind = channel.kind(), ?outcome, "sent");
            let label = match &outcome {
                SendOutcome::Delivered { .. } => "delivered",
                SendOutcome::Skipped => "skipped",
                SendOutcome::Retry { .. } => "retry",
                SendOutcome::Permanent { .. } => "permanent",
            };
            observer.delivery(
                &delivery.key.receiver,
                channel.kind(),
                label,
                started.elapsed().as_secs_f64(),
            );
            let next = retry.next(attempt, outcome, rand::random::<f64>());
            let _ = results.send(SendResult {
                shard,
                epoch,
                key: delivery.key,
                unit,
                seq: delivery.seq,
                attempt,
                next,
            });
        });
    }
}

#[derive(Debug)]
struct SendJob {
    shard: ShardId,
    epoch: Epoch,
    unit: u16,
    channel: Arc<dyn Channel>,
    delivery: Delivery,
}

#[derive(Debug)]
enum Pending {
    Enqueue(ShardId, Epoch, NotificationKey, OutboxOp),
    Claim {
        key: NotificationKey,
        unit: u16,
        send: Box<SendJob>,
    },
    Report(SendResult),
}

fn outbox_command(shard: ShardId, epoch: Epoch, key: &NotificationKey, op: OutboxOp) -> Command {
    Command::Shard {
        shard,
        epoch,
        op: ShardOp::Outbox {
            key: key.clone(),
            op,
        },
    }
}

fn channels_of<'a>(
    cache: &'a mut ChannelCache,
    ctx: &NotifyCtx,
    config: &Config,
    receiver: &str,
) -> Result<&'a Vec<Arc<dyn Channel>>, &'a String> {
    cache
        .entry(receiver.to_string())
        .or_insert_with(|| ctx.channels.build(config, receiver))
        .as_ref()
}

fn data_of(
    known: &BTreeMap<Fingerprint, AlertInstance>,
    f: &Flush,
    d: &Dispatcher,
    external_url: &str,
) -> NotificationData {
    let alerts: Vec<&AlertInstance> = f
        .firing
        .iter()
        .chain(&f.resolved)
        .filter_map(|fp| known.get(fp))
        .collect();
    // The flush's own route: the final (all-resolved) flush of a group comes after the
    // dispatcher dropped its idle stream.
    let group_labels = f
        .route
        .or_else(|| d.route(&f.key))
        .map(|r| d.tree().node(r))
        .zip(alerts.first())
        .map(|(node, a)| node.group_labels(&a.labels))
        .unwrap_or_default();
    NotificationData::build(&f.key, group_labels, &alerts, external_url)
}
