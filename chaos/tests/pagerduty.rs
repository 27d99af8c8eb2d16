//! PagerDuty emulator through real HTTP: validation errors in PagerDuty's shape, the incident
//! dedup semantics, the per-key rate limit, and the v1 API.

mod common;

use common::client;
use serde_json::{Value, json};
use tocsin_chaos::pagerduty::{PagerDuty, PagerDutyConfig};
use tocsin_chaos::rate_limit::Rate;
use tokio_util::sync::CancellationToken;

const KEY: &str = "R0123456789abcdef0123456789abcde";

fn trigger(dedup_key: &str) -> Value {
    json!({
        "routing_key": KEY, "event_action": "trigger", "dedup_key": dedup_key,
        "payload": {"summary": "disk full on db1", "source": "db1", "severity": "critical"},
    })
}

fn action(action: &str, dedup_key: &str) -> Value {
    json!({"routing_key": KEY, "event_action": action, "dedup_key": dedup_key})
}

async fn post(pd: &PagerDuty, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn invalid_events_get_pagerdutys_400_shape() {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();

    let (status, body) = post(
        &pd,
        &json!({"routing_key": "short", "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "critical"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "invalid event");
    assert_eq!(body["message"], "Event object is invalid");
    assert_eq!(
        body["errors"],
        json!(["Length of 'routing_key' is incorrect (should be 32 characters)"])
    );

    let (status, body) = post(
        &pd,
        &json!({"routing_key": KEY, "event_action": "trigger",
        "payload": {"summary": "x".repeat(1025), "source": "h", "severity": "fatal"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");

    let (status, body) = post(&pd, &action("resolve", "")).await;
    assert_eq!(
        (status, &body["errors"]),
        (400, &json!(["'dedup_key' is missing or blank"]))
    );

    let resp = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "Unrecognized object");

    // Over 512 KB: refused, nothing opened.
    let mut big = trigger("big");
    big["payload"]["custom_details"] = json!({"blob": "x".repeat(600 * 1024)});
    let (status, _) = post(&pd, &big).await;
    assert_eq!(status, 400);

    assert!(pd.incidents().incidents.is_empty());
    let log = pd.emulator().requests();
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|r| r.answer.status == 400 && !r.processed));
    pd.shutdown().await;
}

#[tokio::test]
async fn dedup_key_semantics_match_pagerduty() {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();

    let (status, body) = post(&pd, &trigger("group-1")).await;
    assert_eq!(status, 202);
    assert_eq!(
        body,
        json!({"status": "success", "message": "Event processed", "dedup_key": "group-1"})
    );
    // A repeat trigger on the open incident appends to it.
    assert_eq!(post(&pd, &trigger("group-1")).await.0, 202);
    assert_eq!(post(&pd, &action("acknowledge", "group-1")).await.0, 202);
    assert_eq!(post(&pd, &action("resolve", "group-1")).await.0, 202);
    // Ack/resolve with nothing open: dropped, still 202.
    assert_eq!(post(&pd, &action("resolve", "group-1")).await.0, 202);
    assert_eq!(
        post(&pd, &action("acknowledge", "never-opened")).await.0,
        202
    );
    // Trigger after resolve opens a new incident.
    assert_eq!(post(&pd, &trigger("group-1")).await.0, 202);
    // No dedup key: PagerDuty generates one and returns it.
    let (status, body) = post(
        &pd,
        &json!({"routing_key": KEY, "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "info"}}),
    )
    .await;
    assert_eq!(status, 202);
    let generated = body["dedup_key"].as_str().unwrap().to_owned();
    assert!(!generated.is_empty());

    // The same figures over HTTP, as a harness reads them.
    let view: tocsin_chaos::pagerduty::incidents::IncidentsView = client()
        .get(pd.emulator().url("/incidents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view, pd.incidents());
    let per_key = view.per_dedup_key();
    assert_eq!(per_key["group-1"], 2);
    assert_eq!(per_key[&generated], 1);
    let first = &view.incidents[0];
    assert_eq!(first.events.len(), 4, "trigger, trigger, ack, resolve");
    assert_eq!(format!("{:?}", first.status), "Resolved");
    assert_eq!(view.dropped_events.len(), 2);
    pd.shutdown().await;
}

#[tokio::test]
async fn bursts_over_the_routing_key_rate_get_429_without_retry_after() {
    let stop = CancellationToken::new();
    let config = PagerDutyConfig {
        // A burst of 2, then one a minute: the third is refused however slow the machine.
        rate_limit: Some(Rate::per_minute(1, 2)),
    };
    let pd = PagerDuty::start_local(config, &stop).await.unwrap();
    assert_eq!(post(&pd, &trigger("a")).await.0, 202);
    assert_eq!(post(&pd, &trigger("b")).await.0, 202);
    let resp = client()
        .post(pd.emulator().url("/v2/enqueue"))
        .json(&trigger("c"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    // The throttled event was not applied.
    assert!(!pd.incidents().per_dedup_key().contains_key("c"));
    pd.shutdown().await;
}

#[tokio::test]
async fn v1_api_shares_the_incident_table() {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let url = pd.emulator().url("/generic/2010-04-15/create_event.json");
    let resp = client()
        .post(&url)
        .json(
            &json!({"service_key": KEY, "event_type": "trigger", "incident_key": "v1",
                      "description": "legacy"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["incident_key"], "v1");
    let resp = client()
        .post(&url)
        .json(&json!({"service_key": "short", "event_type": "trigger", "description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(pd.incidents().per_dedup_key()["v1"], 1);
    pd.shutdown().await;
}

#[tokio::test]
async fn change_events_are_accepted_but_never_open_incidents() {
    let stop = CancellationToken::new();
    let pd = PagerDuty::start_local(PagerDutyConfig::default(), &stop)
        .await
        .unwrap();
    let url = pd.emulator().url("/v2/change/enqueue");
    let integration_key = "0123456789abcdef0123456789abcdef";
    let resp = client()
        .post(&url)
        .json(&json!({"routing_key": integration_key,
                      "payload": {"summary": "deployed v2", "source": "ci"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = client()
        .post(&url)
        .json(&json!({"routing_key": integration_key, "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["errors"],
        json!(["'payload.summary' is missing or blank"])
    );
    assert!(pd.incidents().incidents.is_empty());
    assert_eq!(
        pd.emulator()
            .requests()
            .iter()
            .filter(|r| r.processed)
            .count(),
        1
    );
}
