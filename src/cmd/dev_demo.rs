//! What `tocsin dev` runs besides the cluster: a demo exporter whose series misbehave on a
//! schedule, the nodes' scrape configuration, and a sample rule set.
//!
//! Schedule (repeats every [`CYCLE_S`] seconds from the start of `tocsin dev`): the disk
//! fills from 50 % to 97 % over the first 40 s, stays full for 20 s and is cleaned up;
//! request latency spikes to 0.9 s between 70 s and 95 s. So `DiskFillingUp` and `HighLatency` fire and resolve every
//! cycle.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Length of the demo's misbehaviour cycle.
pub const CYCLE_S: u64 = 120;

/// The sample rules `tocsin dev` applies as namespace `demo`.
pub const DEMO_RULES: &str = r#"groups:
- name: demo
  interval: 5s
  rules:
  - alert: DiskFillingUp
    expr: demo_disk_used_ratio > 0.9
    for: 10s
    labels: {severity: page}
    annotations:
      summary: 'Disk {{ $labels.mount }} on {{ $labels.instance }} is {{ $value | humanizePercentage }} full'
      runbook_url: https://runbooks.example/disk-full
  - alert: HighLatency
    expr: demo_request_latency_seconds{quantile="0.99"} > 0.5
    for: 10s
    labels: {severity: warning}
    annotations:
      summary: 'p99 request latency is {{ $value }}s'
  - record: demo:disk_used_ratio:max
    expr: max by (mount) (demo_disk_used_ratio)
- name: tocsin-self
  interval: 5s
  rules:
  - alert: TocsinNodeDown
    expr: up{job="tocsin"} == 0
    for: 10s
    labels: {severity: page}
    annotations:
      summary: 'Tocsin node {{ $labels.instance }} is not answering scrapes'
"#;

fn series(t_s: f64) -> String {
    let phase = t_s % CYCLE_S as f64;
    let disk = if phase < 40.0 {
        0.5 + 0.47 * phase / 40.0
    } else if phase < 60.0 {
        0.97
    } else {
        0.5
    };
    let latency = if (70.0..95.0).contains(&phase) {
        0.9
    } else {
        0.12
    };
    format!(
        "# HELP demo_disk_used_ratio Used fraction of the disk.\n# TYPE demo_disk_used_ratio gauge\n\
         demo_disk_used_ratio{{mount=\"/data\"}} {disk:.4}\n\
         # HELP demo_request_latency_seconds Request latency quantiles.\n# TYPE demo_request_latency_seconds gauge\n\
         demo_request_latency_seconds{{quantile=\"0.99\"}} {latency}\n"
    )
}

/// Serves the demo exporter on a free loopback port until `cancel`; returns its address.
pub async fn start_exporter(cancel: CancellationToken) -> Result<String> {
    let started = tokio::time::Instant::now();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { series(started.elapsed().as_secs_f64()) }),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the demo exporter")?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
    Ok(addr)
}

/// Writes the nodes' config: every node's embedded store scrapes every node's `/metrics` and
/// the demo exporter, so each zone has the same data and losing a zone loses no datasource.
pub fn write_node_config(path: &Path, node_https: &[String], exporter: &str) -> Result<()> {
    let nodes: Vec<String> = node_https.iter().map(|h| format!("\"{h}\"")).collect();
    let text = format!(
        "# Written by `tocsin dev` at each start.\n[embedded]\nretention_ms = 3600000\nscrape_configs = [\n  \
         {{ job_name = \"tocsin\", targets = [{}], scrape_interval_ms = 2000, scrape_timeout_ms = 1000 }},\n  \
         {{ job_name = \"demo\", targets = [\"{exporter}\"], scrape_interval_ms = 1000, scrape_timeout_ms = 1000 }},\n]\n",
        nodes.join(", ")
    );
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The sample `alertmanager.yml`: pages (severity=page) go to PagerDuty, Slack and SMS;
/// everything else to Slack and a webhook. Every URL points at a local provider emulator.
pub fn demo_notify_config(emulators: &tocsin_chaos::set::EmulatorSet) -> String {
    let pd = emulators.pagerduty.emulator().url("/v2/enqueue");
    let slack = emulators.slack.emulator().url("/services/T000/B000/demo");
    let twilio = emulators.twilio.emulator().url("");
    let vonage = emulators.vonage.emulator().url("");
    let hook = emulators.webhook.emulator().url("/alerts");
    format!(
        r#"# Tocsin dev: every receiver points at a local provider emulator (see cluster.json).
route:
  receiver: team-chat
  group_by: [alertname]
  group_wait: 5s
  group_interval: 30s
  repeat_interval: 4h
  routes:
  - matchers: ['severity="page"']
    receiver: oncall
receivers:
- name: oncall
  pagerduty_configs:
  - routing_key: 0123456789abcdef0123456789abcdef
    url: {pd}
  slack_configs:
  - api_url: {slack}
    channel: '#oncall'
    send_resolved: true
  twilio_configs:
  - api_url: {twilio}
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: dev-token
    from: "+15005550006"
    to: ["+15005550001"]
  vonage_configs:
  - api_url: {vonage}
    api_key: devkey
    api_secret: devsecret
    from: Tocsin
    to: ["+15005550001"]
- name: team-chat
  slack_configs:
  - api_url: {slack}
    channel: '#alerts'
    send_resolved: true
  webhook_configs:
  - url: {hook}
inhibit_rules:
- source_matchers: ['severity="page"']
  target_matchers: ['severity="warning"']
  equal: [instance]
"#
    )
}

/// PUTs `body` to `http://{http}{path}` once the node answers; bounded.
pub async fn put_when_ready(http: &str, path: &str, body: Vec<u8>, what: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("http://{http}{path}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match client.put(&url).body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status() == reqwest::StatusCode::BAD_REQUEST => {
                anyhow::bail!("{what} was refused: {}", r.text().await.unwrap_or_default())
            }
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            other => anyhow::bail!("could not apply {what}: {other:?}"),
        }
    }
}

/// Applies the sample rules through node `http` once it answers; bounded.
pub async fn apply_rules(http: &str, rules_path: &Path) -> Result<()> {
    let body =
        std::fs::read(rules_path).with_context(|| format!("read {}", rules_path.display()))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("http://{http}/api/v1/rules/demo");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match client.put(&url).body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status() == reqwest::StatusCode::BAD_REQUEST => {
                anyhow::bail!(
                    "{} was refused: {}",
                    rules_path.display(),
                    r.text().await.unwrap_or_default()
                )
            }
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            other => anyhow::bail!("could not apply {}: {other:?}", rules_path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_misbehaves_on_schedule() {
        assert!(series(10.0).contains("demo_disk_used_ratio{mount=\"/data\"} 0.6175"));
        assert!(series(50.0).contains("0.9700"));
        assert!(series(61.0).contains("0.5000"));
        assert!(series(80.0).contains("demo_request_latency_seconds{quantile=\"0.99\"} 0.9"));
        assert!(series(125.0).contains("0.12\n"));
        let rules = tocsin_alerter::rules::parse_rule_file("demo", DEMO_RULES)
            .expect("the sample rules are valid");
        assert_eq!(rules.rule_count(), 4);
    }
}
