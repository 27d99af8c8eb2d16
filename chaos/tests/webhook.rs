//! Webhook sink through real HTTP: records the Alertmanager v4 payload and the
//! Idempotency-Key header; faults apply.

mod common;

use common::client;
use serde_json::json;
use tocsin_chaos::webhook::WebhookSink;
use tocsin_chaos::{FaultMode, FaultSpec};
use tokio_util::sync::CancellationToken;

fn payload() -> serde_json::Value {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "team-x", "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency"}, "commonAnnotations": {},
        "externalURL": "http://tocsin:9101",
        "alerts": [{"status": "firing", "labels": {"alertname": "HighLatency"},
                    "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                    "fingerprint": "c4a1d3b2e5f60718"}],
    })
}

#[tokio::test]
async fn records_payload_and_idempotency_key() {
    let stop = CancellationToken::new();
    let sink = WebhookSink::start_local(&stop).await.unwrap();
    let resp = client()
        .post(sink.emulator().url("/hooks/team-x"))
        .header("Idempotency-Key", "n-42")
        .json(&payload())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client()
        .post(sink.emulator().url("/"))
        .json(&json!({"version": "3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the sink never refuses a payload");

    let log = sink.emulator().requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].path, "/hooks/team-x");
    assert_eq!(log[0].headers["idempotency-key"], "n-42");
    assert_eq!(log[0].details["valid_v4"], true);
    assert_eq!(log[0].details["idempotency_key"], "n-42");
    assert_eq!(log[0].details["alerts"], 1);
    let body: serde_json::Value = serde_json::from_str(&log[0].body).unwrap();
    assert_eq!(body, payload());
    assert_eq!(log[1].details["valid_v4"], false);
    assert!(!log[1].details["problems"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn drop_after_processing_on_the_sink() {
    let stop = CancellationToken::new();
    let sink = WebhookSink::start_local(&stop).await.unwrap();
    sink.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))
        .unwrap();
    let err = client()
        .post(sink.emulator().url("/hook"))
        .header("Idempotency-Key", "n-1")
        .json(&payload())
        .send()
        .await
        .expect_err("closed without an answer");
    assert!(!err.is_timeout());
    let resp = client()
        .post(sink.emulator().url("/hook"))
        .header("Idempotency-Key", "n-1")
        .json(&payload())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Both arrivals recorded, with the same key: a receiver can dedup on it.
    let keys: Vec<_> = sink
        .emulator()
        .requests()
        .iter()
        .map(|r| (r.headers["idempotency-key"].clone(), r.answer.delivered))
        .collect();
    assert_eq!(
        keys,
        vec![("n-1".to_owned(), false), ("n-1".to_owned(), true)]
    );
}
