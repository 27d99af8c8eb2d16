//! Notification delivery end to end: 3 nodes scraping an exporter served by the test, one
//! worker per zone, a rule and an `alertmanager.yml` applied through the API, and the real
//! provider emulators (PagerDuty, a webhook sink, Twilio) in this process.
//!
//! Every provider is told to accept the first request and then hold its answer: the send is
//! cut off mid-flight after the provider processed it. The worker owning the notify shard is
//! killed right then, before `delivered` can commit. The new owner finds the claims in doubt:
//! PagerDuty and the webhook (idempotent) are resent at once, SMS after the claim timeout.
//! Then the alert resolves. The test checks that nothing is missed (trigger and resolve reach
//! every provider), that PagerDuty shows exactly one incident for the group, now resolved, that
//! the webhook's resends carry the same `Idempotency-Key`, and that the SMS duplicate count
//! equals the number of SMS sends cut off (1), and reports it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::{NodeProc, WorkerProc, wait_for};
use tocsin_chaos::pagerduty::{PagerDuty, PagerDutyConfig};
use tocsin_chaos::twilio::{Twilio, TwilioConfig};
use tocsin_chaos::webhook::WebhookSink;
use tocsin_chaos::{FaultMode, FaultSpec};
use tokio_util::sync::CancellationToken;

const RULES: &str = "groups:\n- name: disk\n  interval: 1s\n  rules:\n  - alert: DiskFull\n    expr: tocsin_test_disk > 90\n    labels: {severity: critical}\n    annotations: {summary: 'disk {{ $value }}% full'}\n";
const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

async fn exporter(value: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = f64::from_bits(value.load(Ordering::Relaxed));
            async move { format!("# TYPE tocsin_test_disk gauge\ntocsin_test_disk {v}\n") }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

async fn get_json(nodes: &[NodeProc], path: &str) -> Option<serde_json::Value> {
    for n in nodes.iter().filter(|n| n.child.is_some()) {
        let r = support::http_client()
            .get(format!("http://{}{path}", n.http))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            return r.json().await.ok();
        }
    }
    None
}

/// The workers holding a claim on a unit of the `oncall` stream.
async fn claimants(nodes: &[NodeProc]) -> Vec<String> {
    let Some(v) = get_json(nodes, "/api/v1/notifications").await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in v["streams"].as_array().into_iter().flatten() {
        for u in s["units"].as_array().into_iter().flatten() {
            if u["head"]["state"] == "claimed" {
                out.push(u["head"]["worker"].as_str().unwrap_or("").to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_owner_mid_delivery_misses_nothing_and_pages_once() {
    kill_the_owner(Cut::AfterProcessing).await;
}

/// The second case: every provider fails (503) while the owner retries, so no send has been
/// processed when the owner dies: nothing is missed and no SMS is duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_owner_while_providers_fail_duplicates_nothing() {
    kill_the_owner(Cut::WhileFailing).await;
}

/// Where the killed owner's sends stand.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cut {
    /// Each provider processed the first request and holds its answer.
    AfterProcessing,
    /// Each provider answers 503 (nothing processed); the owner is retrying.
    WhileFailing,
}

/// The notify shard owner of the (only) stream, from the committed assignments.
async fn stream_owner(nodes: &[NodeProc]) -> Option<String> {
    let v = get_json(nodes, "/api/v1/notifications").await?;
    let key = tocsin_state::model::NotificationKey {
        receiver: v["streams"][0]["receiver"].as_str()?.to_string(),
        group_key: v["streams"][0]["group_key"].as_str()?.to_string(),
    };
    let shard = tocsin_state::model::ShardLayout::default().notify_shard(&key);
    let client =
        tocsin_state::client::StoreClient::new(nodes.iter().map(|n| n.grpc.clone()).collect())
            .ok()?;
    let (_, result) = client
        .read(&tocsin_state::model::Query::Assignments, true)
        .await
        .ok()?;
    let tocsin_state::model::QueryResult::Assignments(a) = result else {
        return None;
    };
    a.into_iter()
        .find(|(s, _)| *s == shard)
        .and_then(|(_, a)| a.owner)
        .map(|w| w.to_string())
}

async fn kill_the_owner(cut: Cut) {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let hook = WebhookSink::start_local(&stop).await.unwrap();
    let sms = Twilio::start_local(TwilioConfig::default(), &stop)
        .await
        .unwrap();
    let fault = match cut {
        Cut::AfterProcessing => FaultSpec::new(FaultMode::Hang)
            .hold(Duration::from_secs(20))
            .count(1),
        Cut::WhileFailing => FaultSpec::new(FaultMode::Error5xx).count(100_000),
    };
    pd.emulator().faults().set(fault.clone()).unwrap();
    hook.emulator().faults().set(fault.clone()).unwrap();
    sms.emulator().faults().set(fault).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(AtomicU64::new(50.0f64.to_bits()));
    let target = exporter(disk.clone()).await;
    let nodes = support::scraping_nodes(dir.path(), &target);
    let mut workers: Vec<WorkerProc> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(z, n)| {
            WorkerProc::new(dir.path(), &format!("w-{z}"), z, &nodes, None)
                .arg(format!("--datasource=http://{}", n.http))
                .arg("--claim-timeout-ms=3000".into())
                .arg("--provider-timeout-ms=30000".into())
        })
        .collect();
    for w in &mut workers {
        w.start();
    }
    support::wait_all_shards_owned(&nodes).await;

    let am = format!(
        r#"route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
  # Tocsin's own meta-alerts (the killed worker's zone) go nowhere in this test.
  - matchers: ['alertname=~"Tocsin.*"']
    receiver: blackhole
receivers:
- name: blackhole
- name: oncall
  pagerduty_configs:
  - routing_key: {ROUTING_KEY}
    url: {pd}
  webhook_configs:
  - url: {hook}
  twilio_configs:
  - api_url: {sms}
    account_sid: {ACCOUNT}
    auth_token: secret
    from: "+15005550006"
    to: ["+15005550001"]
    send_resolved: true
"#,
        pd = pd.emulator().url("/v2/enqueue"),
        hook = hook.emulator().url("/hook"),
        sms = sms.emulator().url(""),
    );
    let http = support::http_client();
    // A bad config is refused with the field named, and changes nothing.
    let bad = http
        .put(format!("http://{}/api/v1/notify/config", nodes[1].http))
        .body("route:\n  receiver: nobody\nreceivers:\n- name: oncall\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.unwrap();
    assert!(text.contains("nobody"), "{text}");
    let put = http
        .put(format!("http://{}/api/v1/notify/config", nodes[1].http))
        .body(am)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    let put = http
        .put(format!("http://{}/api/v1/rules/demo", nodes[0].http))
        .body(RULES)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);

    // Fire: every provider receives (and processes) the trigger, and holds its answer.
    disk.store(95.0f64.to_bits(), Ordering::Relaxed);
    wait_for(
        Duration::from_secs(40),
        "the trigger at every provider",
        || async {
            (!pd.emulator().requests().is_empty()
                && !hook.emulator().requests().is_empty()
                && !sms.emulator().requests().is_empty())
            .then_some(())
        },
    )
    .await;
    let owner = match cut {
        // The owner holds three claims it can never confirm: kill it now.
        Cut::AfterProcessing => {
            wait_for(Duration::from_secs(10), "the claims", || async {
                let c = claimants(&nodes).await;
                (c.len() == 3 && c.iter().all(|w| *w == c[0])).then(|| c[0].clone())
            })
            .await
        }
        // The owner is retrying against failing providers: kill it now.
        Cut::WhileFailing => {
            wait_for(
                Duration::from_secs(20),
                "retries at every provider",
                || async {
                    (pd.emulator().requests().len() >= 2
                        && hook.emulator().requests().len() >= 2
                        && sms.emulator().requests().len() >= 2)
                        .then_some(())
                },
            )
            .await;
            wait_for(Duration::from_secs(10), "the stream's owner", || {
                stream_owner(&nodes)
            })
            .await
        }
    };
    let w = workers
        .iter_mut()
        .find(|w| w.id == owner)
        .expect("the owner is one of ours");
    w.kill().await;
    if cut == Cut::WhileFailing {
        for f in [
            pd.emulator().faults(),
            hook.emulator().faults(),
            sms.emulator().faults(),
        ] {
            f.clear();
        }
    }

    // The new owner resends: PagerDuty and the webhook at once, SMS after the claim timeout.
    wait_for(
        Duration::from_secs(60),
        "every unit delivered after the handoff",
        || async {
            let v = get_json(&nodes, "/api/v1/notifications").await?;
            let units = v["streams"][0]["units"].as_array()?.clone();
            (units.len() == 3
                && units
                    .iter()
                    .all(|u| u["head"].is_null() && u["last"]["state"] == "delivered"))
            .then_some(())
        },
    )
    .await;

    // Resolve: every provider hears it once more.
    disk.store(10.0f64.to_bits(), Ordering::Relaxed);
    wait_for(Duration::from_secs(60), "the resolve delivered", || async {
        let incidents = pd.incidents();
        (incidents.incidents.len() == 1
            && incidents.incidents[0].status
                == tocsin_chaos::pagerduty::incidents::IncidentStatus::Resolved
            && hook
                .emulator()
                .requests()
                .iter()
                .any(|r| r.body.contains("\"status\":\"resolved\""))
            && sms.messages().iter().any(|m| m.body.contains("RESOLVED")))
        .then_some(())
    })
    .await;

    let incidents = pd.incidents();
    assert_eq!(
        incidents
            .per_dedup_key()
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![1],
        "exactly one PagerDuty incident for the group: {incidents:?}"
    );
    let hooks = hook.emulator().requests();
    let triggers: Vec<_> = hooks
        .iter()
        .filter(|r| r.body.contains("\"status\":\"firing\""))
        .collect();
    assert!(
        triggers.len() >= 2,
        "the cut-off webhook was resent: {}",
        triggers.len()
    );
    if cut == Cut::WhileFailing {
        let accepted = triggers.iter().filter(|r| r.answer.status == 200).count();
        assert_eq!(accepted, 1, "the webhook accepted the trigger once");
    }
    let keys: std::collections::BTreeSet<_> = triggers
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(keys.len(), 1, "a resend carries the same Idempotency-Key");
    assert!(!keys.iter().next().unwrap().is_empty());
    let messages = sms.messages();
    let firing_sms = messages
        .iter()
        .filter(|m| m.body.contains("FIRING"))
        .count();
    let resolved_sms = messages.len() - firing_sms;
    let cut_off = usize::from(cut == Cut::AfterProcessing);
    println!(
        "sms: {firing_sms} trigger messages for 1 notification ({} duplicates, {cut_off} send cut off mid-flight); {resolved_sms} resolve",
        firing_sms - 1
    );
    assert_eq!(
        firing_sms - 1,
        cut_off,
        "SMS duplicates equal the sends cut off"
    );
    assert_eq!(resolved_sms, 1, "the resolve SMS was sent once");
    stop.cancel();
}

async fn two_series_exporter(value: Arc<AtomicU64>) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = f64::from_bits(value.load(Ordering::Relaxed));
            async move {
                format!(
                    "# TYPE tocsin_test_x gauge\ntocsin_test_x{{name=\"a\"}} {v}\ntocsin_test_x{{name=\"b\"}} {v}\n"
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn tocsin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(support::bin())
        .args(args)
        .output()
        .expect("run tocsin")
}

/// The webhook notifications received for the group of series `name`.
fn notifications_for(hook: &WebhookSink, name: &str) -> usize {
    hook.emulator()
        .requests()
        .iter()
        .filter(|r| {
            r.body.contains(&format!(
                "\"groupLabels\":{{\"alertname\":\"X\",\"name\":\"{name}\"}}"
            ))
        })
        .count()
}

/// Silences keep a group quiet until they expire; an acknowledgement stops a group's repeats
/// and acknowledges its PagerDuty incident, even when it comes while PagerDuty is refusing a
/// send (the acknowledge waits for that send). Bad silences are refused, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_mute_and_acks_stop_repeats() {
    let stop = CancellationToken::new();
    let hook = WebhookSink::start_local(&stop).await.unwrap();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let x = Arc::new(AtomicU64::new(0.0f64.to_bits()));
    let target = two_series_exporter(x.clone()).await;
    let nodes = support::scraping_nodes(dir.path(), &target);
    let mut workers: Vec<WorkerProc> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(z, n)| {
            WorkerProc::new(dir.path(), &format!("w-{z}"), z, &nodes, None)
                .arg(format!("--datasource=http://{}", n.http))
                // Port 0: the worker binds and logs the port the OS picked, so no other
                // process can take it between a probe and the bind.
                .arg("--metrics-listen=127.0.0.1:0".to_string())
        })
        .collect();
    for w in &mut workers {
        w.start();
    }
    support::wait_all_shards_owned(&nodes).await;
    let server = format!("--server=http://{}", nodes[2].http);
    let am = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, name]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 2s\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: {}\n  pagerduty_configs:\n  - routing_key: {ROUTING_KEY}\n    url: {}\n",
            hook.emulator().url("/hook"),
            pd.emulator().url("/v2/enqueue"),
        ),
    )
    .unwrap();
    let out = tocsin(&["notify", "apply", am.to_str().unwrap(), &server]);
    assert!(out.status.success(), "{out:?}");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: x\n  interval: 1s\n  rules:\n  - alert: X\n    expr: tocsin_test_x > 90\n",
    )
    .unwrap();
    let out = tocsin(&[
        "rules",
        "apply",
        rules.to_str().unwrap(),
        "--namespace=t",
        &server,
    ]);
    assert!(out.status.success(), "{out:?}");

    // A bad silence is refused with the field named and creates nothing.
    let bad = support::http_client()
        .post(format!("http://{}/api/v1/silences", nodes[0].http))
        .json(&serde_json::json!({
            "matchers": [{"name": "name", "value": "b"}],
            "endsAt": "2001-01-01T00:00:00Z", "createdBy": "t", "comment": "c",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("endsAt"));
    let out = tocsin(&[
        "silences",
        "add",
        "name=b",
        "--duration=10m",
        "--comment=maintenance",
        &server,
    ]);
    assert!(out.status.success(), "{out:?}");
    let silence_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = tocsin(&["silences", "list", &server]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains(&silence_id) && listed.contains("active"),
        "{listed}"
    );

    // Both fire; only `a` is notified, and repeats.
    x.store(95.0f64.to_bits(), Ordering::Relaxed);
    wait_for(
        Duration::from_secs(40),
        "a notified and repeated",
        || async { (notifications_for(&hook, "a") >= 2).then_some(()) },
    )
    .await;
    assert_eq!(notifications_for(&hook, "b"), 0, "b is silenced");

    // Acknowledge `a` while its PagerDuty unit is busy: a repeat is refused (503) and waits
    // for its retry. Its repeats stop, and the acknowledge follows once that send is done.
    pd.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Error5xx).count(1_000))
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "a repeat refused by PagerDuty",
        || async {
            let refused = pd
                .emulator()
                .requests()
                .iter()
                .any(|r| r.fault == FaultMode::Error5xx);
            refused.then_some(())
        },
    )
    .await;
    let out = tocsin(&["ack", "name=a", "--by=oncall", &server]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("acknowledged hook"));
    // The ack is committed before the refused repeat can be delivered.
    pd.emulator().faults().clear();
    // PagerDuty hears the acknowledgement: a's incident (the only one: b is silenced).
    wait_for(
        Duration::from_secs(30),
        "the incident acknowledged",
        || async {
            let view = pd.incidents();
            (view.incidents.len() == 1
                && view.incidents[0].status
                    == tocsin_chaos::pagerduty::incidents::IncidentStatus::Acknowledged)
                .then_some(())
        },
    )
    .await;
    let acked_at = notifications_for(&hook, "a");
    // Expire b's silence: b is notified, then repeats 2 s later — by then `a` would have
    // repeated too, had the ack not stopped it.
    let out = tocsin(&["silences", "expire", &silence_id, &server]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        Duration::from_secs(40),
        "b notified and repeated",
        || async { (notifications_for(&hook, "b") >= 2).then_some(()) },
    )
    .await;
    let after = notifications_for(&hook, "a");
    assert!(
        after <= acked_at + 1,
        "a kept repeating after its ack: {acked_at} -> {after}"
    );

    // Each worker's /metrics reports its evaluations and deliveries.
    let mut scraped = String::new();
    for w in &workers {
        let log = w.log();
        let addr = log
            .split("worker metrics listening addr=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{} did not log its metrics address; its log:\n{log}", w.id))
            .to_string();
        let text = support::http_client()
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        scraped.push_str(&text);
    }
    assert!(
        scraped
            .contains(r#"tocsin_worker_evaluations_total{namespace="t",group="x",outcome="ok"}"#),
        "{scraped}"
    );
    assert!(
        scraped.contains(
            r#"tocsin_worker_notifications_total{receiver="hook",integration="webhook",outcome="delivered"}"#
        ),
        "{scraped}"
    );
    assert!(scraped.contains("tocsin_worker_owned_shards{kind=\"notify\"}"));
    stop.cancel();
}

/// A notification the provider refuses permanently (PagerDuty 400: a malformed routing key) is
/// dead-lettered, not retried forever, and raises the meta-alert `TocsinNotificationFailed`,
/// which is routed like any alert (here to a webhook). The webhook unit of the same receiver
/// is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_dead_lettered_and_raises_a_meta_alert() {
    let stop = CancellationToken::new();
    let hook = WebhookSink::start_local(&stop).await.unwrap();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let x = Arc::new(AtomicU64::new(95.0f64.to_bits()));
    let target = two_series_exporter(x.clone()).await;
    let nodes = support::scraping_nodes(dir.path(), &target);
    let mut workers: Vec<WorkerProc> = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(z, n)| {
            WorkerProc::new(dir.path(), &format!("w-{z}"), z, &nodes, None)
                .arg(format!("--datasource=http://{}", n.http))
        })
        .collect();
    for w in &mut workers {
        w.start();
    }
    support::wait_all_shards_owned(&nodes).await;
    let server = format!("--server=http://{}", nodes[0].http);
    let am = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am,
        format!(
            "route:\n  receiver: ops\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n  routes:\n  - matchers: ['alertname=\"X\"']\n    receiver: pager\nreceivers:\n- name: ops\n  webhook_configs:\n  - url: {hook}\n- name: pager\n  pagerduty_configs:\n  - routing_key: too-short\n    url: {pd}\n  webhook_configs:\n  - url: {hook}\n",
            hook = hook.emulator().url("/hook"),
            pd = pd.emulator().url("/v2/enqueue"),
        ),
    )
    .unwrap();
    let out = tocsin(&["notify", "apply", am.to_str().unwrap(), &server]);
    assert!(out.status.success(), "{out:?}");
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: x\n  interval: 1s\n  rules:\n  - alert: X\n    expr: max(tocsin_test_x) > 90\n",
    )
    .unwrap();
    let out = tocsin(&[
        "rules",
        "apply",
        rules.to_str().unwrap(),
        "--namespace=t",
        &server,
    ]);
    assert!(out.status.success(), "{out:?}");

    let meta = wait_for(
        Duration::from_secs(40),
        "TocsinNotificationFailed notified",
        || async {
            hook.emulator().requests().into_iter().find(|r| {
                r.body
                    .contains("\"alertname\":\"TocsinNotificationFailed\"")
            })
        },
    )
    .await;
    assert!(
        meta.body.contains("\"receiver\":\"pager\""),
        "{}",
        meta.body
    );
    // PagerDuty was asked once and refused; the webhook unit of `pager` delivered X anyway.
    let pd_requests = pd.emulator().requests();
    assert_eq!(pd_requests.len(), 1, "a 400 is not retried");
    assert_eq!(pd_requests[0].answer.status, 400);
    assert!(
        hook.emulator()
            .requests()
            .iter()
            .any(|r| r.body.contains("\"alertname\":\"X\"")),
        "the receiver's other unit delivered"
    );
    let out = tocsin(&["notify", "status", &server]);
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(status.contains("dead#"), "{status}");
    stop.cancel();
}
