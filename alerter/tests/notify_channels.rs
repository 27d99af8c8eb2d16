//! The delivery channels against the provider emulators of `tocsin-chaos`: what each sends
//! (payload, headers, auth) and how each classifies success, 5xx, 429, 4xx, a hang past the
//! request timeout and a connection dropped after the provider processed the request.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tocsin_alerter::notify::config::{
    HttpConfig, Integration, OpsgenieConfig, Secret, SecretSource, SigV4, SnsConfig, SnsTarget,
    load,
};
use tocsin_alerter::notify::deliver::build::{BuildError, ChannelOptions, channels};
use tocsin_alerter::notify::deliver::channel::{Channel, Delivery, SendOutcome};
use tocsin_alerter::notify::deliver::message::{AlertData, GO_ZERO_TIME, NotificationData};
use tocsin_alerter::notify::deliver::pagerduty::dedup_key;
use tocsin_chaos::pagerduty::{PagerDuty, PagerDutyConfig};
use tocsin_chaos::slack::webhook::HookState;
use tocsin_chaos::slack::{Slack, SlackConfig};
use tocsin_chaos::smtp::SmtpSink;
use tocsin_chaos::twilio::{Twilio, TwilioConfig};
use tocsin_chaos::vonage::{Vonage, VonageConfig};
use tocsin_chaos::webhook::WebhookSink;
use tocsin_chaos::{FaultMode, FaultSpec};
use tocsin_state::model::NotificationKey;
use tokio_util::sync::CancellationToken;

/// Bound on every send in these tests.
const SEND_DEADLINE: Duration = Duration::from_secs(10);
/// The request timeout the channels get (short, so hangs end quickly).
const REQUEST_TIMEOUT: Duration = Duration::from_millis(700);
const ROUTING_KEY: &str = "R0123456789abcdef0123456789abcde";
const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const NOW_MS: i64 = 1_795_323_600_000;

fn data(status: &str) -> NotificationData {
    let labels: BTreeMap<String, String> = [
        ("alertname", "DiskFull"),
        ("instance", "db1"),
        ("severity", "critical"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let annotations: BTreeMap<String, String> =
        [("summary".to_owned(), "disk 95% full".to_owned())].into();
    NotificationData {
        receiver: "team".into(),
        status: status.into(),
        alerts: vec![AlertData {
            status: status.into(),
            labels: labels.clone(),
            annotations: annotations.clone(),
            starts_at: "2026-11-22T05:00:00.000Z".into(),
            ends_at: if status == "firing" {
                GO_ZERO_TIME.into()
            } else {
                "2026-11-22T05:10:00.000Z".into()
            },
            generator_url: "http://tocsin/api/v1/alerts?fingerprint=aa".into(),
            fingerprint: "00000000000000aa".into(),
        }],
        group_labels: [("alertname".to_owned(), "DiskFull".to_owned())].into(),
        common_labels: labels,
        common_annotations: annotations,
        external_url: "http://tocsin".into(),
        group_key: r#"{}:{alertname="DiskFull"}"#.into(),
        truncated_alerts: 0,
    }
}

fn delivery(status: &str, seq: u64) -> Delivery {
    let d = data(status);
    Delivery {
        key: NotificationKey {
            receiver: d.receiver.clone(),
            group_key: d.group_key.clone(),
        },
        seq,
        data: d,
        attempt: 0,
        enqueued_ms: NOW_MS,
        now_ms: NOW_MS,
        previous_provider_id: None,
    }
}

fn opts() -> ChannelOptions {
    ChannelOptions {
        external_url: "http://tocsin".into(),
        request_timeout: REQUEST_TIMEOUT,
        ..ChannelOptions::default()
    }
}

/// The channels of receiver `team` in `receivers_yaml` (the receiver's body).
fn build(body: &str) -> Vec<Box<dyn Channel>> {
    let yaml = format!("route:\n  receiver: team\nreceivers:\n- name: team\n{body}");
    let config = load(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let http = http_client();
    channels(&config, "team", &http, &opts()).unwrap()
}

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(SEND_DEADLINE, f)
        .await
        .expect("send finished in time")
}

async fn send(ch: &dyn Channel, d: &Delivery) -> SendOutcome {
    bounded(ch.send(d)).await
}

fn is_retry(o: &SendOutcome) -> bool {
    matches!(o, SendOutcome::Retry { .. })
}

fn retry_after(o: &SendOutcome) -> Option<Duration> {
    match o {
        SendOutcome::Retry { retry_after, .. } => *retry_after,
        _ => None,
    }
}

#[tokio::test]
async fn webhook_sends_v4_with_a_stable_idempotency_key() {
    let stop = CancellationToken::new();
    let sink = WebhookSink::start_local(&stop).await.unwrap();
    let url = sink.emulator().url("/hook");
    let chs = build(&format!(
        "  webhook_configs:\n  - url: {url}\n    max_alerts: 1\n    http_config:\n      basic_auth: {{username: u, password: p}}\n"
    ));
    let ch = chs[0].as_ref();
    assert!(ch.idempotent());
    assert_eq!(
        send(ch, &delivery("firing", 1)).await,
        SendOutcome::Delivered { provider_id: None }
    );
    let log = sink.emulator().requests();
    let body: Value = serde_json::from_str(&log[0].body).unwrap();
    assert_eq!(body["version"], "4");
    assert_eq!(body["groupKey"], r#"{}:{alertname="DiskFull"}"#);
    assert_eq!(body["alerts"][0]["labels"]["instance"], "db1");
    assert_eq!(log[0].details["valid_v4"], true, "{:?}", log[0].details);
    assert_eq!(log[0].headers["authorization"], "Basic dTpw");
    let key1 = log[0].headers["idempotency-key"].clone();

    // A resend of the same entry (after an ambiguous drop) carries the same key.
    sink.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 1)).await));
    assert!(matches!(
        send(ch, &delivery("firing", 1)).await,
        SendOutcome::Delivered { .. }
    ));
    assert!(matches!(
        send(ch, &delivery("firing", 2)).await,
        SendOutcome::Delivered { .. }
    ));
    let keys: Vec<String> = sink
        .emulator()
        .requests()
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[1], key1);
    assert_eq!(keys[2], key1);
    assert_ne!(keys[3], key1, "a new seq gets a new key");

    // 5xx, 429 with Retry-After, and a hang past the request timeout: retried.
    let faults = sink.emulator().faults();
    faults
        .set(FaultSpec::new(FaultMode::Error5xx).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 3)).await));
    faults
        .set(
            FaultSpec::new(FaultMode::RateLimit)
                .retry_after_s(2)
                .count(1),
        )
        .unwrap();
    let o = send(ch, &delivery("firing", 3)).await;
    assert_eq!(retry_after(&o), Some(Duration::from_secs(2)), "{o:?}");
    faults
        .set(
            FaultSpec::new(FaultMode::Hang)
                .hold(Duration::from_secs(5))
                .count(1),
        )
        .unwrap();
    let o = send(ch, &delivery("firing", 3)).await;
    assert!(is_retry(&o), "{o:?}");
    stop.cancel();
}

#[tokio::test]
async fn webhook_4xx_is_permanent() {
    let stop = CancellationToken::new();
    // The PagerDuty emulator answers 404 for unknown paths.
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let url = pd.emulator().url("/no/such/hook");
    let chs = build(&format!("  webhook_configs:\n  - url: {url}\n"));
    let o = send(chs[0].as_ref(), &delivery("firing", 1)).await;
    assert!(matches!(o, SendOutcome::Permanent { .. }), "{o:?}");
    stop.cancel();
}

#[tokio::test]
async fn pagerduty_triggers_dedups_and_classifies() {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let url = pd.emulator().url("/v2/enqueue");
    let chs = build(&format!(
        "  pagerduty_configs:\n  - routing_key: {ROUTING_KEY}\n    url: {url}\n    severity: critical\n    links: [{{href: 'http://runbook', text: runbook}}]\n"
    ));
    let ch = chs[0].as_ref();
    assert!(ch.idempotent());
    assert!(ch.rate_key().unwrap().starts_with("pagerduty:"));
    let key = dedup_key(r#"{}:{alertname="DiskFull"}"#);
    assert_eq!(key.len(), 64);
    assert_eq!(
        send(ch, &delivery("firing", 1)).await,
        SendOutcome::Delivered {
            provider_id: Some(key.clone())
        }
    );
    let ev: Value = serde_json::from_str(&pd.emulator().requests()[0].body).unwrap();
    assert_eq!(ev["event_action"], "trigger");
    assert_eq!(ev["dedup_key"], key.as_str());
    assert_eq!(
        ev["payload"]["summary"],
        "[FIRING:1] DiskFull (db1 critical)"
    );
    assert_eq!(ev["payload"]["severity"], "critical");
    assert_eq!(ev["payload"]["source"], "Tocsin");
    assert_eq!(ev["payload"]["timestamp"], "2026-11-22T05:00:00.000Z");
    assert_eq!(ev["payload"]["custom_details"]["num_firing"], "1");
    assert!(
        ev["payload"]["custom_details"]["firing"]
            .as_str()
            .unwrap()
            .contains(" - instance = db1")
    );
    assert_eq!(ev["links"][0]["href"], "http://runbook");
    assert_eq!(ev["client"], "Tocsin");

    let faults = pd.emulator().faults();
    faults
        .set(FaultSpec::new(FaultMode::Error5xx).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    faults
        .set(
            FaultSpec::new(FaultMode::RateLimit)
                .retry_after_s(3)
                .count(1),
        )
        .unwrap();
    let o = send(ch, &delivery("firing", 2)).await;
    assert_eq!(retry_after(&o), Some(Duration::from_secs(3)), "{o:?}");
    faults
        .set(
            FaultSpec::new(FaultMode::Hang)
                .hold(Duration::from_secs(5))
                .count(1),
        )
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    // Dropped after processing: retried, and the resend lands on the same incident.
    faults
        .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    assert!(matches!(
        send(ch, &delivery("firing", 2)).await,
        SendOutcome::Delivered { .. }
    ));
    assert_eq!(pd.incidents().per_dedup_key().get(&key), Some(&1));
    // Resolve closes it.
    assert!(matches!(
        send(ch, &delivery("resolved", 3)).await,
        SendOutcome::Delivered { .. }
    ));
    let last: Value = serde_json::from_str(&pd.emulator().requests().last().unwrap().body).unwrap();
    assert_eq!(last["event_action"], "resolve");
    stop.cancel();
}

#[tokio::test]
async fn pagerduty_400_is_permanent() {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let url = pd.emulator().url("/v2/enqueue");
    let chs = build(&format!(
        "  pagerduty_configs:\n  - routing_key: short\n    url: {url}\n"
    ));
    let o = send(chs[0].as_ref(), &delivery("firing", 1)).await;
    let SendOutcome::Permanent { reason } = o else {
        panic!("{o:?}");
    };
    assert!(reason.contains("routing_key"), "{reason}");
    stop.cancel();
}

fn slack_emulator_config() -> SlackConfig {
    SlackConfig {
        webhook_rate: None,
        post_message_rate: None,
        tokens: None,
    }
}

#[tokio::test]
async fn slack_webhook_classifies_like_slack() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(slack_emulator_config(), &stop)
        .await
        .unwrap();
    let path = "/services/T000/B000/XXXX";
    let url = slack.emulator().url(path);
    let chs = build(&format!(
        "  slack_configs:\n  - api_url: {url}\n    channel: '#ops'\n    send_resolved: true\n"
    ));
    let ch = chs[0].as_ref();
    assert!(!ch.idempotent());
    assert!(ch.rate_key().unwrap().starts_with("slack:"));
    assert_eq!(
        send(ch, &delivery("firing", 1)).await,
        SendOutcome::Delivered { provider_id: None }
    );
    let body: Value = serde_json::from_str(&slack.emulator().requests()[0].body).unwrap();
    assert_eq!(body["channel"], "#ops");
    assert_eq!(
        body["attachments"][0]["title"],
        "[FIRING:1] DiskFull (db1 critical)"
    );
    assert_eq!(body["attachments"][0]["color"], "danger");

    let faults = slack.emulator().faults();
    faults
        .set(
            FaultSpec::new(FaultMode::RateLimit)
                .retry_after_s(4)
                .count(1),
        )
        .unwrap();
    let o = send(ch, &delivery("firing", 2)).await;
    assert_eq!(retry_after(&o), Some(Duration::from_secs(4)), "{o:?}");
    faults
        .set(FaultSpec::new(FaultMode::Error5xx).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    faults
        .set(
            FaultSpec::new(FaultMode::Hang)
                .hold(Duration::from_secs(5))
                .count(1),
        )
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    faults
        .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    slack.set_hook_state(path, HookState::ChannelIsArchived);
    let o = send(ch, &delivery("firing", 2)).await;
    let SendOutcome::Permanent { reason } = o else {
        panic!("{o:?}");
    };
    assert!(reason.contains("channel_is_archived"), "{reason}");
    stop.cancel();
}

/// A config's `templates:` files reach the channels: the title calls a template the file
/// defines, and the file redefines a default the text uses.
#[tokio::test]
async fn slack_renders_templates_from_the_configs_template_files() {
    use tocsin_alerter::notify::config::templates::{TemplateFiles, bundle};
    let stop = CancellationToken::new();
    let slack = Slack::start_local(slack_emulator_config(), &stop)
        .await
        .unwrap();
    let url = slack.emulator().url("/services/T000/B000/TMPL");
    let yaml = format!(
        "route:\n  receiver: team\ntemplates: ['tmpl/*.tmpl']\nreceivers:\n- name: team\n  slack_configs:\n  - api_url: {url}\n    channel: '#ops'\n    title: '{{{{ template \"team.title\" . }}}}'\n"
    );
    let files: TemplateFiles = [(
        "tmpl/*.tmpl".to_string(),
        [(
            "tmpl/team.tmpl".to_string(),
            "{{ define \"team.title\" }}{{ .Status | toUpper }}: {{ .CommonLabels.instance }}{{ end }}\n{{ define \"slack.default.text\" }}runbook for {{ .CommonLabels.alertname }}{{ end }}\n"
                .to_string(),
        )]
        .into(),
    )]
    .into();
    let config = load(&bundle(&yaml, &files)).unwrap_or_else(|e| panic!("{e}"));
    let chs = channels(&config, "team", &http_client(), &opts()).unwrap();
    assert_eq!(
        send(chs[0].as_ref(), &delivery("firing", 1)).await,
        SendOutcome::Delivered { provider_id: None }
    );
    let body: Value = serde_json::from_str(&slack.emulator().requests()[0].body).unwrap();
    assert_eq!(body["attachments"][0]["title"], "FIRING: db1");
    assert_eq!(body["attachments"][0]["text"], "runbook for DiskFull");
}

#[tokio::test]
async fn slack_post_message_then_resolve_updates_the_same_ts() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(slack_emulator_config(), &stop)
        .await
        .unwrap();
    let url = slack.emulator().url("/api/chat.postMessage");
    let chs = build(&format!(
        "  slack_configs:\n  - api_url: {url}\n    channel: '#ops'\n    send_resolved: true\n    http_config:\n      authorization: {{credentials: xoxb-test}}\n"
    ));
    let ch = chs[0].as_ref();
    let o = send(ch, &delivery("firing", 1)).await;
    let SendOutcome::Delivered {
        provider_id: Some(id),
    } = o
    else {
        panic!("{o:?}");
    };
    let (channel, ts) = id.split_once(':').unwrap();
    let posted = slack.messages();
    assert_eq!(posted.len(), 1);
    assert_eq!(
        (posted[0].channel.as_str(), posted[0].ts.as_str()),
        (channel, ts)
    );
    assert_eq!(
        slack.emulator().requests()[0].headers["authorization"],
        "Bearer xoxb-test"
    );

    let mut resolve = delivery("resolved", 2);
    resolve.previous_provider_id = Some(id.clone());
    assert_eq!(
        send(ch, &resolve).await,
        SendOutcome::Delivered {
            provider_id: Some(id)
        }
    );
    let after = slack.messages();
    assert_eq!(after.len(), 1, "updated, not posted anew");
    assert_eq!(after[0].updates.len(), 1);
    assert!(after[0].text.starts_with("[RESOLVED]"), "{}", after[0].text);

    // ok:false answers: rate limiting is retried, a bad channel is permanent.
    slack
        .emulator()
        .faults()
        .set(
            FaultSpec::new(FaultMode::RateLimit)
                .retry_after_s(1)
                .count(1),
        )
        .unwrap();
    let o = send(ch, &delivery("firing", 3)).await;
    assert_eq!(retry_after(&o), Some(Duration::from_secs(1)), "{o:?}");
    slack.set_channel_state("#ops", tocsin_chaos::slack::web_api::ChannelState::Archived);
    let o = send(ch, &delivery("firing", 3)).await;
    assert!(matches!(o, SendOutcome::Permanent { .. }), "{o:?}");
    stop.cancel();
}

async fn sms_pair(stop: &CancellationToken) -> (Twilio, Vonage) {
    let twilio = Twilio::start_local(TwilioConfig::default(), stop)
        .await
        .unwrap();
    let vonage = Vonage::start_local(VonageConfig::default(), stop)
        .await
        .unwrap();
    (twilio, vonage)
}

fn sms_receiver(twilio: &Twilio, vonage: &Vonage, twilio_to: &str) -> String {
    format!(
        "  twilio_configs:\n  - api_url: {}\n    account_sid: {ACCOUNT_SID}\n    auth_token: tok\n    from: '+15005550006'\n    to: ['{twilio_to}']\n  vonage_configs:\n  - api_url: {}\n    api_key: key\n    api_secret: secret\n    from: Tocsin\n    to: ['+447700900000']\n",
        twilio.emulator().url(""),
        vonage.emulator().url(""),
    )
}

#[tokio::test]
async fn sms_twilio_sends_with_basic_auth() {
    let stop = CancellationToken::new();
    let (twilio, vonage) = sms_pair(&stop).await;
    let chs = build(&sms_receiver(&twilio, &vonage, "+14155550100"));
    assert_eq!(chs.len(), 1, "both SMS integrations form one unit");
    let ch = chs[0].as_ref();
    assert_eq!(ch.kind(), "sms");
    let o = send(ch, &delivery("firing", 1)).await;
    let SendOutcome::Delivered {
        provider_id: Some(id),
    } = o
    else {
        panic!("{o:?}");
    };
    assert!(id.starts_with("twilio:SM"), "{id}");
    let msgs = twilio.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body, "[FIRING:1] DiskFull disk 95% full");
    assert_eq!(msgs[0].num_segments, 1);
    assert!(vonage.emulator().requests().is_empty());
    stop.cancel();
}

#[tokio::test]
async fn sms_falls_back_to_vonage_on_permanent_twilio_failure() {
    let stop = CancellationToken::new();
    let (twilio, vonage) = sms_pair(&stop).await;
    // '+1555' is not a valid number: Twilio 21211.
    let chs = build(&sms_receiver(&twilio, &vonage, "+1555"));
    let o = send(chs[0].as_ref(), &delivery("firing", 1)).await;
    let SendOutcome::Delivered {
        provider_id: Some(id),
    } = o
    else {
        panic!("{o:?}");
    };
    assert!(id.starts_with("vonage:"), "{id}");
    assert_eq!(twilio.emulator().requests()[0].answer.status, 400);
    let v = &vonage.emulator().requests()[0];
    assert!(v.body.contains("text=%5BFIRING%3A1%5D"), "{}", v.body);
    stop.cancel();
}

#[tokio::test]
async fn sms_falls_back_after_the_deadline_only() {
    let stop = CancellationToken::new();
    let (twilio, vonage) = sms_pair(&stop).await;
    let chs = build(&sms_receiver(&twilio, &vonage, "+14155550100"));
    let ch = chs[0].as_ref();
    twilio
        .emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Error5xx))
        .unwrap();
    // Before the deadline: Twilio's 5xx is retried, Vonage is not asked.
    let mut d = delivery("firing", 1);
    d.now_ms = d.enqueued_ms + 30_000;
    assert!(is_retry(&send(ch, &d).await));
    assert!(vonage.emulator().requests().is_empty());
    // Twilio 429 (20429) is retried too.
    twilio
        .emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::RateLimit).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &d).await));
    // Past the deadline: Vonage sends.
    twilio
        .emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Error5xx))
        .unwrap();
    d.now_ms = d.enqueued_ms + 61_000;
    let o = send(ch, &d).await;
    assert!(
        matches!(&o, SendOutcome::Delivered { provider_id: Some(id) } if id.starts_with("vonage:")),
        "{o:?}"
    );
    // Vonage throttling (HTTP 200, status 1) is retried.
    vonage
        .emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::RateLimit).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &d).await));
    vonage
        .emulator()
        .faults()
        .set(
            FaultSpec::new(FaultMode::Hang)
                .hold(Duration::from_secs(5))
                .count(1),
        )
        .unwrap();
    assert!(is_retry(&send(ch, &d).await));
    stop.cancel();
}

#[tokio::test]
async fn email_arrives_with_a_deterministic_message_id() {
    let stop = CancellationToken::new();
    let sink = SmtpSink::start_local(&stop).await.unwrap();
    let chs = build(&format!(
        "  email_configs:\n  - to: 'oncall@example.com, lead@example.com'\n    from: 'Tocsin <alerts@tocsin.test>'\n    smarthost: '{}'\n    require_tls: false\n    text: 'plain {{{{ .Status }}}}'\n",
        sink.smtp_addr()
    ));
    let ch = chs[0].as_ref();
    assert!(ch.idempotent());
    let o = send(ch, &delivery("firing", 1)).await;
    let SendOutcome::Delivered {
        provider_id: Some(id),
    } = o
    else {
        panic!("{o:?}");
    };
    assert!(id.starts_with('<') && id.ends_with("@tocsin.test>"), "{id}");
    let o2 = send(ch, &delivery("firing", 1)).await;
    assert_eq!(
        o2,
        SendOutcome::Delivered {
            provider_id: Some(id.clone())
        },
        "a resend has the same Message-Id"
    );
    let log = sink.emulator().requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].headers["message-id"], id);
    assert_eq!(log[1].headers["message-id"], id);
    assert!(
        log[0].headers["subject"].contains("[FIRING:1] DiskFull"),
        "{:?}",
        log[0].headers
    );
    assert!(log[0].body.contains("plain firing"), "{}", log[0].body);
    // 554 at the end of DATA is permanent, 451 transient.
    let faults = sink.emulator().faults();
    faults
        .set(FaultSpec::new(FaultMode::Error5xx).count(1))
        .unwrap();
    assert!(matches!(
        send(ch, &delivery("firing", 2)).await,
        SendOutcome::Permanent { .. }
    ));
    faults
        .set(FaultSpec::new(FaultMode::RateLimit).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    faults
        .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))
        .unwrap();
    assert!(is_retry(&send(ch, &delivery("firing", 2)).await));
    stop.cancel();
}

#[test]
fn sns_and_opsgenie_are_refused_naming_the_integration() {
    // Config loading refuses them already; a config built in code meets the same refusal.
    let yaml = "route:\n  receiver: a\nreceivers:\n- name: a\n- name: b\n  webhook_configs: [{url: 'http://x'}]\n  twilio_configs: [{account_sid: AC1, auth_token: t, from: '+15550001111', to: ['+15550002222']}]\n";
    let mut config = load(yaml).unwrap();
    let refusal = load(
        "route:\n  receiver: b\nreceivers:\n- name: b\n  sns_configs: [{phone_number: '+15550001111'}]\n",
    )
    .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "receivers[0].sns_configs[0] (line 5, column 17): SNS delivery is not supported by Tocsin; use twilio_configs or vonage_configs"
    );
    let sns = SnsConfig {
        send_resolved: true,
        http: HttpConfig::default(),
        api_url: None,
        sigv4: SigV4::default(),
        target: SnsTarget::Phone("+15550001111".into()),
        subject: String::new(),
        message: String::new(),
        attributes: BTreeMap::new(),
    };
    config.receivers[1].integrations.push(Integration::Sns(sns));
    let err = channels(&config, "b", &http_client(), &opts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "receivers[1].sns_configs[0]: SNS delivery is not supported by Tocsin; use twilio_configs or vonage_configs"
    );
    let og = OpsgenieConfig {
        send_resolved: true,
        http: HttpConfig::default(),
        api_key: SecretSource::Inline(Secret::new("k")),
        api_url: "https://api.opsgenie.com/".into(),
        message: String::new(),
        description: String::new(),
        source: String::new(),
        details: BTreeMap::new(),
        entity: String::new(),
        responders: Vec::new(),
        actions: String::new(),
        tags: String::new(),
        note: String::new(),
        priority: String::new(),
        update_alerts: false,
    };
    config.receivers[1].integrations = vec![Integration::Opsgenie(og)];
    let err = channels(&config, "b", &http_client(), &opts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "receivers[1].opsgenie_configs[0]: Opsgenie delivery is not supported by Tocsin; use pagerduty_configs or webhook_configs"
    );
    assert!(matches!(
        channels(&config, "nope", &http_client(), &opts()),
        Err(BuildError::UnknownReceiver(_))
    ));
}

fn http_client() -> reqwest::Client {
    tocsin_proto::tls::install_crypto_provider();
    reqwest::Client::new()
}
