//! Every fault mode through real HTTP, on the PagerDuty emulator (the core is shared, so the
//! webhook sink and the others behave the same) and set both from Rust and over HTTP.

mod common;

use std::time::{Duration, Instant};

use common::client;
use serde_json::{Value, json};
use tocsin_chaos::pagerduty::{PagerDuty, PagerDutyConfig};
use tocsin_chaos::{FaultMode, FaultSpec};
use tokio_util::sync::CancellationToken;

const KEY: &str = "R0123456789abcdef0123456789abcde";

fn trigger(dedup_key: &str) -> Value {
    json!({
        "routing_key": KEY, "event_action": "trigger", "dedup_key": dedup_key,
        "payload": {"summary": "s", "source": "h", "severity": "error"},
    })
}

async fn start() -> (PagerDuty, CancellationToken) {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    (pd, stop)
}

#[tokio::test]
async fn error5xx_answers_without_processing_then_count_runs_out() {
    let (pd, _stop) = start().await;
    pd.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Error5xx).status(502).count(1))
        .unwrap();
    let url = pd.emulator().url("/v2/enqueue");
    let resp = client()
        .post(&url)
        .json(&trigger("k"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"].is_array(), "PagerDuty's error shape: {body}");
    assert!(
        pd.incidents().incidents.is_empty(),
        "a 5xx is not processed"
    );
    // The count is spent: the next request goes through.
    let resp = client()
        .post(&url)
        .json(&trigger("k"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let log = pd.emulator().requests();
    assert_eq!(log[0].fault, FaultMode::Error5xx);
    assert!(!log[0].processed);
    assert_eq!(log[1].fault, FaultMode::Ok);
    assert_eq!(pd.incidents().per_dedup_key()["k"], 1);
}

#[tokio::test]
async fn rate_limit_set_over_http_answers_429_with_retry_after() {
    let (pd, _stop) = start().await;
    let resp = client()
        .put(pd.emulator().url("/faults"))
        .json(&json!({"mode": "rate_limit", "retry_after_s": 7, "count": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let current: Value = client()
        .get(pd.emulator().url("/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        current,
        json!({"mode": "rate_limit", "retry_after_s": 7, "count": 2})
    );
    let resp = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .json(&trigger("k"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert!(pd.incidents().incidents.is_empty());

    // A bad spec is refused, naming the field.
    let resp = client()
        .put(pd.emulator().url("/faults"))
        .json(&json!({"mode": "error5xx", "status": 404}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("`status`"),
        "{body}"
    );
}

#[tokio::test]
async fn hang_holds_past_the_client_timeout_after_processing() {
    let (pd, _stop) = start().await;
    pd.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Hang).count(1))
        .unwrap();
    let client_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .timeout(client_timeout)
        .json(&trigger("held"))
        .send()
        .await
        .expect_err("the emulator must not answer");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= client_timeout);
    // Recorded and applied although never answered: the ambiguous case.
    common::wait_until(
        || std::future::ready(!pd.emulator().requests().is_empty()),
        Duration::from_secs(5),
        "the held request is recorded",
    )
    .await;
    let log = pd.emulator().requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].fault, FaultMode::Hang);
    assert!(log[0].processed);
    assert!(!log[0].answer.delivered);
    assert_eq!(pd.incidents().per_dedup_key()["held"], 1);
    // The emulator still serves other connections, and the count ran out.
    let resp = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .json(&trigger("held"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(pd.incidents().per_dedup_key()["held"], 1, "deduplicated");
}

#[tokio::test]
async fn hang_ends_at_its_hold_by_closing_the_connection() {
    let (pd, _stop) = start().await;
    pd.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Hang).hold(Duration::from_millis(200)))
        .unwrap();
    // The client waits longer than the hold: it sees the connection closed, not an answer.
    let err = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .timeout(Duration::from_secs(10))
        .json(&trigger("k"))
        .send()
        .await
        .expect_err("no answer after a hang");
    assert!(
        !err.is_timeout(),
        "closed by the emulator, not timed out: {err:?}"
    );
}

#[tokio::test]
async fn drop_after_processing_is_a_transport_error_but_recorded_and_applied() {
    let (pd, _stop) = start().await;
    pd.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))
        .unwrap();
    let err = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .json(&trigger("dropped"))
        .send()
        .await
        .expect_err("the connection must close without a response");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    let log = pd.emulator().requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].fault, FaultMode::DropAfterProcessing);
    assert!(log[0].processed);
    assert!(!log[0].answer.delivered);
    assert_eq!(log[0].answer.status, 202, "what it would have answered");
    assert_eq!(pd.incidents().per_dedup_key()["dropped"], 1);
    // A retry (what a client does after the ambiguous failure) dedups into the same incident.
    let resp = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .json(&trigger("dropped"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(pd.incidents().per_dedup_key()["dropped"], 1);
    assert_eq!(pd.incidents().incidents[0].events.len(), 2);
}

#[tokio::test]
async fn delete_requests_and_faults_reset_over_http() {
    let (pd, _stop) = start().await;
    pd.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Error5xx))
        .unwrap();
    let url = pd.emulator().url("/v2/enqueue");
    assert_eq!(
        client()
            .post(&url)
            .json(&trigger("k"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let listed: Vec<tocsin_chaos::RecordedRequest> = client()
        .get(pd.emulator().url("/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, pd.emulator().requests());
    assert_eq!(listed.len(), 1);
    assert!(listed[0].time_ms > 1_700_000_000_000);
    let del = |path: &str| client().delete(pd.emulator().url(path)).send();
    assert_eq!(del("/faults").await.unwrap().status(), 204);
    assert_eq!(del("/requests").await.unwrap().status(), 204);
    assert!(pd.emulator().requests().is_empty());
    assert_eq!(
        client()
            .post(&url)
            .json(&trigger("k"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
}

#[tokio::test]
async fn shutdown_releases_a_hanging_request() {
    let (pd, _stop) = start().await;
    pd.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Hang))
        .unwrap();
    let url = pd.emulator().url("/v2/enqueue");
    let pending = tokio::spawn(async move { client().post(&url).json(&trigger("k")).send().await });
    common::wait_until(
        || std::future::ready(!pd.emulator().requests().is_empty()),
        Duration::from_secs(5),
        "the hanging request is recorded",
    )
    .await;
    let started = Instant::now();
    pd.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "released at once, not after the grace"
    );
    let result = pending.await.unwrap();
    assert!(
        result.is_err(),
        "the held request gets no answer: {result:?}"
    );
}
