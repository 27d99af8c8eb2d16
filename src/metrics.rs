//! `/metrics`: Prometheus text exposition (prometheus-client). Raft and batcher figures are
//! read at scrape time from their sources (a [`Collector`]); the write path's latency
//! histograms (fsync, and each stage of `tocsin_state::probe`) are fed by the store's probe.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tocsin_state::node::StoreNode;
use tocsin_state::probe::{Stage, StageObserver};

use crate::balance::BalancerHandle;

/// The node's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    fsync: Histogram,
    stages: Family<StageLabels, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// 50 µs .. ~100 ms.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    ])
}

impl Metrics {
    /// A registry with the write-path histograms registered.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("tocsin");
        let fsync = latency_histogram();
        registry.register(
            "raft_log_write_seconds",
            "Durable (fsynced) Raft log writes",
            fsync.clone(),
        );
        let stages = Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "store_stage_seconds",
            "Stages of the store's write path: call, batch_queue, raft_write, log_flush, append_entries, apply",
            stages.clone(),
        );
        Arc::new(Self {
            registry: std::sync::Mutex::new(registry),
            fsync,
            stages,
        })
    }

    /// The store's observer: the fsync histogram and one histogram per other stage.
    pub fn store_observer(self: &Arc<Self>) -> StageObserver {
        let me = self.clone();
        Arc::new(move |stage, d| match stage {
            Stage::LogFsync => me.fsync.observe(d.as_secs_f64()),
            _ => me
                .stages
                .get_or_create(&StageLabels {
                    stage: stage.name(),
                })
                .observe(d.as_secs_f64()),
        })
    }

    /// Adds the store node's scrape-time collector.
    pub fn register_store(&self, node: StoreNode) {
        self.registry
            .lock()
            .expect("registry lock")
            .register_collector(Box::new(StoreCollector { node }));
    }

    /// Adds the balancer's scrape-time collector.
    pub fn register_balancer(&self, balancer: BalancerHandle) {
        self.registry
            .lock()
            .expect("registry lock")
            .register_collector(Box::new(BalancerCollector { balancer }));
    }

    /// Renders the exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[derive(Debug)]
struct StoreCollector {
    node: StoreNode,
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for StoreCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (term, last_log, is_leader, leader_known) = {
            let m = self.node.raft.metrics();
            let m = m.borrow();
            (
                m.current_term,
                m.last_log_index.unwrap_or(0),
                m.current_leader == Some(m.id),
                m.current_leader.is_some(),
            )
        };
        let applied = self.node.reader.applied_index();
        let stats = self.node.proposer.stats();
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(&mut e, "raft_term", "Current Raft term", as_i64(term))?;
        gauge(
            &mut e,
            "raft_applied_index",
            "Last log index applied to the state machine",
            as_i64(applied),
        )?;
        gauge(
            &mut e,
            "raft_last_log_index",
            "Last log index in the local log",
            as_i64(last_log),
        )?;
        gauge(
            &mut e,
            "raft_apply_lag",
            "Log entries not yet applied locally",
            as_i64(last_log.saturating_sub(applied)),
        )?;
        gauge(
            &mut e,
            "raft_is_leader",
            "1 if this node is the Raft leader",
            i64::from(is_leader),
        )?;
        gauge(
            &mut e,
            "raft_leader_known",
            "1 if this node knows a leader",
            i64::from(leader_known),
        )?;
        counter(
            &mut e,
            "store_proposed_commands",
            "Commands proposed through this node's batcher",
            stats.commands.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "store_proposed_entries",
            "Raft entries written by this node's batcher (commands/entries = mean batch size)",
            stats.entries.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}

#[derive(Debug)]
struct BalancerCollector {
    balancer: BalancerHandle,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ZoneLabels {
    zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ZoneStateLabels {
    zone: String,
    state: String,
}

impl Collector for BalancerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let view = self.balancer.view();
        gauge(
            &mut e,
            "balancer_active",
            "1 if this node's balancer is acting (leader, settled)",
            i64::from(view.active),
        )?;
        gauge(
            &mut e,
            "balancer_frozen",
            "1 while placement is frozen (two or more zones look bad)",
            i64::from(view.frozen.is_some()),
        )?;
        counter(
            &mut e,
            "balancer_shard_moves",
            "Shards moved by this node's balancer",
            view.shard_moves,
        )?;
        gauge(
            &mut e,
            "balancer_meta_alerts",
            "Conditions a human should look at, now",
            view.meta_alerts.len() as i64,
        )?;
        let mut score = e.encode_descriptor(
            "zone_score",
            "Smoothed zone health score in [0, 1]",
            None,
            MetricType::Gauge,
        )?;
        for z in &view.zones {
            ConstGauge::new(z.score).encode(score.encode_family(&ZoneLabels {
                zone: z.zone.to_string(),
            })?)?;
        }
        let mut weight = e.encode_descriptor(
            "zone_weight",
            "Zone placement weight in [0, 1]",
            None,
            MetricType::Gauge,
        )?;
        for z in &view.zones {
            ConstGauge::new(z.weight).encode(weight.encode_family(&ZoneLabels {
                zone: z.zone.to_string(),
            })?)?;
        }
        let mut state = e.encode_descriptor(
            "zone_state",
            "1 for the zone's current state",
            None,
            MetricType::Gauge,
        )?;
        for z in &view.zones {
            let s = z.state.as_str().to_string();
            ConstGauge::new(1i64).encode(state.encode_family(&ZoneStateLabels {
                zone: z.zone.to_string(),
                state: s,
            })?)?;
        }
        Ok(())
    }
}
