//! Vonage emulator through real HTTP: HTTP 200 for every outcome, per-message status codes.

mod common;

use std::collections::HashSet;

use common::client;
use serde_json::{Value, json};
use tocsin_chaos::rate_limit::Rate;
use tocsin_chaos::vonage::{Vonage, VonageConfig};
use tocsin_chaos::{FaultMode, FaultSpec};
use tokio_util::sync::CancellationToken;

fn config() -> VonageConfig {
    VonageConfig {
        credentials: Some(("key".into(), "secret".into())),
        rate: None,
        barred: HashSet::from(["447700900666".to_owned()]),
    }
}

async fn send(v: &Vonage, form: &[(String, String)]) -> (u16, Value) {
    let resp = client()
        .post(v.emulator().url("/sms/json"))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A valid request with `extra` replacing fields (an empty value removes the field).
fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = [
        ("api_key", "key"),
        ("api_secret", "secret"),
        ("from", "Tocsin"),
        ("to", "447700900000"),
        ("text", "disk full"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        form.retain(|(fk, _)| fk != k);
        if !v.is_empty() {
            form.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    form
}

#[tokio::test]
async fn success_and_every_error_are_http_200_with_a_status() {
    let stop = CancellationToken::new();
    let v = Vonage::start_local(config(), &stop).await.unwrap();
    let (status, body) = send(&v, &with(&[("client-ref", "n-1")])).await;
    assert_eq!(status, 200);
    assert_eq!(body["message-count"], "1");
    assert_eq!(body["messages"][0]["status"], "0");
    assert_eq!(body["messages"][0]["client-ref"], "n-1");
    assert!(body["messages"][0]["message-id"].is_string());

    let long = "a".repeat(200);
    let (_, body) = send(&v, &with(&[("text", &long)])).await;
    assert_eq!(body["message-count"], "2", "two parts");

    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (with(&[("api_key", "")]), "2"),
        (with(&[("api_secret", "wrong")]), "4"),
        (with(&[("to", "")]), "2"),
        (with(&[("to", "abc")]), "3"),
        (with(&[("text", "")]), "2"),
        (with(&[("to", "447700900666")]), "7"),
    ];
    for (form, expected) in cases {
        let (status, body) = send(&v, &form).await;
        assert_eq!(status, 200);
        assert_eq!(body["messages"][0]["status"], expected, "{form:?}: {body}");
        assert!(body["messages"][0]["error-text"].is_string());
    }
    v.set_out_of_credit(true);
    assert_eq!(send(&v, &with(&[])).await.1["messages"][0]["status"], "9");
    v.set_out_of_credit(false);

    // JSON bodies are accepted too.
    let resp = client()
        .post(v.emulator().url("/sms/json"))
        .json(
            &json!({"api_key": "key", "api_secret": "secret", "from": "Tocsin",
                      "to": "447700900000", "text": "json"}),
        )
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["messages"][0]["status"], "0");
    assert_eq!(
        v.emulator()
            .requests()
            .iter()
            .filter(|r| r.processed)
            .count(),
        3
    );
}

#[tokio::test]
async fn throttling_is_status_1_with_http_200() {
    let stop = CancellationToken::new();
    let v = Vonage::start_local(
        VonageConfig {
            rate: Some(Rate::per_minute(1, 1)),
            ..config()
        },
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(send(&v, &with(&[])).await.1["messages"][0]["status"], "0");
    let (status, body) = send(&v, &with(&[])).await;
    assert_eq!((status, &body["messages"][0]["status"]), (200, &json!("1")));

    // An injected rate_limit fault takes the same shape; an injected 5xx is a real 5xx.
    v.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::RateLimit).count(1))
        .unwrap();
    let (status, body) = send(&v, &with(&[])).await;
    assert_eq!((status, &body["messages"][0]["status"]), (200, &json!("1")));
    v.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Error5xx).count(1))
        .unwrap();
    let resp = client()
        .post(v.emulator().url("/sms/json"))
        .form(&with(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
}
