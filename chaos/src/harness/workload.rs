//! The scripted workload: a metric timeline derived from the seed, the exporter that serves
//! it (scraped by every node's embedded datasource), and the rules and `alertmanager.yml`
//! that turn it into notifications.
//!
//! Every series is a gauge `chaos_load_G{series="sNN",team="a"|"b"}` (G = its rule group)
//! whose value is [`HIGH`] during its episode and [`LOW`] otherwise; each rule is
//! `chaos_load_G > THRESHOLD` with `for`. Notifications group by `[alertname, series]`, so
//! each episode yields exactly one firing and (if it ends) one resolved notification per
//! receiver: the oracle needs no knowledge of Tocsin's grouping beyond `group_wait`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::error::HarnessError;

/// The value of a series during its episode.
pub const HIGH: f64 = 10.0;
/// The value of a series outside its episode.
pub const LOW: f64 = 1.0;
/// The rules' threshold (`> THRESHOLD`).
pub const THRESHOLD: f64 = 5.0;
/// Rule groups (each hashes to its own eval shard, so several workers evaluate).
pub const RULE_GROUPS: usize = 3;
/// The namespace the rules are applied as.
pub const NAMESPACE: &str = "chaos";
/// The PagerDuty routing key of team a.
pub const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Timing parameters shared by the rules, the notification config and the oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Rule evaluation interval.
    pub eval_interval_ms: i64,
    /// Every rule's `for`.
    pub for_ms: i64,
    /// The route's `group_wait`.
    pub group_wait_ms: i64,
    /// The route's `group_interval`.
    pub group_interval_ms: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            eval_interval_ms: 1000,
            for_ms: 2000,
            group_wait_ms: 1000,
            group_interval_ms: 1000,
        }
    }
}

/// One period during which a series is above the threshold, as offsets from the workload's
/// start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// When the value goes high, ms after the start.
    pub start_ms: i64,
    /// When it goes low again; `None` = high until the end of the run.
    pub end_ms: Option<i64>,
}

/// One scripted series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// The `series` label, `sNN`.
    pub name: String,
    /// Index of its rule group (metric `chaos_load_G`).
    pub group: usize,
    /// `a` or `b`: routes to receiver `team-a` or `team-b`.
    pub team: String,
    /// At most one episode (so a series' notifications are unambiguous).
    pub episode: Option<Episode>,
}

impl Series {
    /// The value at `offset_ms` after the start.
    pub fn value_at(&self, offset_ms: i64) -> f64 {
        match self.episode {
            Some(e) if offset_ms >= e.start_ms && e.end_ms.is_none_or(|end| offset_ms < end) => {
                HIGH
            }
            _ => LOW,
        }
    }
}

/// The whole workload of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// Every series.
    pub series: Vec<Series>,
    /// How long the scripted part lasts, ms; every episode that ends, ends before this.
    pub duration_ms: i64,
    /// Rule and routing timing.
    pub timing: Timing,
}

impl Script {
    /// A script of `n` series over `duration_ms`, drawn from `rng`: one series is high from
    /// the start to the end, one never, the rest have one episode of 6–10 s that ends at
    /// least 5 s before `duration_ms`.
    pub fn generate(rng: &mut StdRng, n: usize, duration_ms: i64, timing: Timing) -> Self {
        let mut series = Vec::with_capacity(n);
        // Teams alternate (so both receivers always have work); the seed picks who starts.
        let flip = rng.random_bool(0.5);
        for i in 0..n {
            let team = if (i % 2 == 0) ^ flip { "a" } else { "b" };
            let episode = match i {
                0 => Some(Episode {
                    start_ms: 500,
                    end_ms: None,
                }),
                1 => None,
                _ => {
                    let len = rng.random_range(6_000..=10_000);
                    let latest = (duration_ms - 5_000 - len).max(1_000);
                    let start = rng.random_range(1_000..=latest);
                    Some(Episode {
                        start_ms: start,
                        end_ms: Some(start + len),
                    })
                }
            };
            series.push(Series {
                name: format!("s{i:02}"),
                group: i % RULE_GROUPS,
                team: team.into(),
                episode,
            });
        }
        Self {
            series,
            duration_ms,
            timing,
        }
    }

    /// The exposition text at `offset_ms` (`None` = not started: everything low).
    pub fn exposition(&self, offset_ms: Option<i64>) -> String {
        let mut out = String::new();
        for g in 0..RULE_GROUPS {
            let _ = writeln!(out, "# TYPE chaos_load_{g} gauge");
            for s in self.series.iter().filter(|s| s.group == g) {
                let v = offset_ms.map_or(LOW, |t| s.value_at(t));
                let _ = writeln!(
                    out,
                    "chaos_load_{g}{{series=\"{}\",team=\"{}\"}} {v}",
                    s.name, s.team
                );
            }
        }
        out
    }

    /// The rule file (applied as namespace [`NAMESPACE`]).
    pub fn rules_yaml(&self) -> String {
        let mut out = String::from("groups:\n");
        for g in 0..RULE_GROUPS {
            let _ = write!(
                out,
                "- name: load-{g}\n  interval: {}ms\n  rules:\n  - alert: ChaosLoad{g}\n    expr: chaos_load_{g} > {THRESHOLD}\n    for: {}ms\n    labels: {{severity: page}}\n    annotations: {{summary: 'load {{{{ $value }}}} on {{{{ $labels.series }}}}'}}\n",
                self.timing.eval_interval_ms, self.timing.for_ms
            );
        }
        out
    }

    /// The `alertmanager.yml`: team a pages (PagerDuty) and posts to webhook A, team b
    /// posts to webhook B and, given `slack`, to that Slack incoming webhook too (its title
    /// `STATUS SERIES` is what the checker reads).
    pub fn notify_yaml(
        &self,
        hook_a: &str,
        hook_b: &str,
        pagerduty: &str,
        slack: Option<&str>,
    ) -> String {
        let slack = slack.map_or_else(String::new, |url| {
            format!(
                "  slack_configs:\n  - api_url: {url}\n    channel: '#team-b'\n    send_resolved: true\n    title: '{{{{ .Status }}}} {{{{ .GroupLabels.series }}}}'\n"
            )
        });
        format!(
            r#"route:
  receiver: team-b
  group_by: [alertname, series]
  group_wait: {gw}ms
  group_interval: {gi}ms
  repeat_interval: 1h
  routes:
  - receiver: team-a
    matchers: ['team="a"']
receivers:
- name: team-a
  webhook_configs:
  - url: {hook_a}
  pagerduty_configs:
  - routing_key: {ROUTING_KEY}
    url: {pagerduty}
- name: team-b
  webhook_configs:
  - url: {hook_b}
{slack}"#,
            gw = self.timing.group_wait_ms,
            gi = self.timing.group_interval_ms,
        )
    }
}

/// The exporter serving a [`Script`]: everything low until [`Exporter::start_clock`], then
/// the scripted values by wall clock.
#[derive(Debug)]
pub struct Exporter {
    /// `HOST:PORT` the nodes scrape.
    pub addr: String,
    start_ms: Arc<AtomicI64>,
}

impl Exporter {
    /// Serves `script` at `/metrics` on a free port of `ip` (loopback, or the hub's address
    /// in a namespaced run) until `stop` fires.
    pub async fn start(
        script: Arc<Script>,
        ip: IpAddr,
        stop: &CancellationToken,
    ) -> Result<Self, HarnessError> {
        let start_ms = Arc::new(AtomicI64::new(0));
        let started = start_ms.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let t0 = started.load(Ordering::Relaxed);
                let offset = (t0 > 0).then(|| crate::clock::wall_ms() - t0);
                let text = script.exposition(offset);
                async move { text }
            }),
        );
        let listener = super::netns::bind_host(ip, "the exporter").await?;
        let addr = listener
            .local_addr()
            .map_err(|source| HarnessError::Bind {
                what: "the exporter",
                source,
            })?
            .to_string();
        let stop = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(err) = serve.await {
                tracing::warn!(%err, "exporter stopped");
            }
        });
        Ok(Self { addr, start_ms })
    }

    /// Starts the script now; returns the start (wall ms), offset 0 of every episode.
    pub fn start_clock(&self) -> i64 {
        let now = crate::clock::wall_ms();
        self.start_ms.store(now, Ordering::Relaxed);
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn episodes_end_before_the_drain_and_values_follow_them() {
        let mut rng = StdRng::seed_from_u64(7);
        let s = Script::generate(&mut rng, 8, 30_000, Timing::default());
        assert_eq!(s.series.len(), 8);
        for series in &s.series[2..] {
            let e = series.episode.expect("episodic");
            let end = e.end_ms.expect("ends");
            assert!(end <= 25_000, "{e:?}");
            assert_eq!(series.value_at(e.start_ms), HIGH);
            assert_eq!(series.value_at(end), LOW);
        }
        assert!(
            s.exposition(None)
                .contains("chaos_load_0{series=\"s00\",team=")
        );
        assert!(s.rules_yaml().contains("chaos_load_2 > 5"));
    }
}
