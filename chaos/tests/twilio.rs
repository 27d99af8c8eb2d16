//! Twilio emulator through real HTTP: form + basic auth, 201 Message resource, its error
//! envelope and codes, 20429, and GSM-7 / UCS-2 segments in the log.

mod common;

use std::collections::HashSet;

use common::client;
use serde_json::{Value, json};
use tocsin_chaos::rate_limit::Rate;
use tocsin_chaos::twilio::{Twilio, TwilioConfig};
use tocsin_chaos::{FaultMode, FaultSpec};
use tokio_util::sync::CancellationToken;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "secret-token";
const FROM: &str = "+15005550006";

type Form = Vec<(&'static str, &'static str)>;

fn config() -> TwilioConfig {
    TwilioConfig {
        auth_token: Some(TOKEN.into()),
        unsubscribed: HashSet::from(["+15005550010".to_owned()]),
        landlines: HashSet::from(["+15005550011".to_owned()]),
        blocked_prefixes: vec!["+882".into()],
        ..TwilioConfig::default()
    }
}

async fn send(tw: &Twilio, sid: &str, token: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = client()
        .post(
            tw.emulator()
                .url(&format!("/2010-04-01/Accounts/{sid}/Messages.json")),
        )
        .basic_auth(sid, Some(token))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn a_valid_message_is_201_queued_with_segments_recorded() {
    let stop = CancellationToken::new();
    let tw = Twilio::start_local(config(), &stop).await.unwrap();
    let (status, body) = send(
        &tw,
        SID,
        TOKEN,
        &[
            ("To", "+14155550100"),
            ("From", FROM),
            ("Body", "disk full"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["sid"].as_str().unwrap().starts_with("SM"));
    assert_eq!(body["sid"].as_str().unwrap().len(), 34);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["num_segments"], "1");
    assert_eq!(body["account_sid"], SID);
    assert!(body["date_created"].as_str().unwrap().ends_with("+0000"));
    assert!(body["error_code"].is_null());

    // 161 GSM-7 characters: 2 segments. One emoji: UCS-2.
    let long = "a".repeat(161);
    let (_, body) = send(
        &tw,
        SID,
        TOKEN,
        &[("To", "+14155550100"), ("From", FROM), ("Body", &long)],
    )
    .await;
    assert_eq!(body["num_segments"], "2");
    let (_, body) = send(
        &tw,
        SID,
        TOKEN,
        &[
            ("To", "+14155550100"),
            ("MessagingServiceSid", "MG0123"),
            ("Body", "fire 🔥"),
        ],
    )
    .await;
    assert_eq!(body["status"], "accepted");

    let log = tw.emulator().requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].details["segments"]["encoding"], "GSM-7");
    assert_eq!(log[1].details["segments"]["segments"], 2);
    assert_eq!(log[2].details["segments"]["encoding"], "UCS-2");
    assert_eq!(
        log[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(tw.messages().len(), 3);

    // The list endpoint (what a client checks after an ambiguous failure).
    let listed: Value = client()
        .get(tw.emulator().url(&format!(
            "/2010-04-01/Accounts/{SID}/Messages.json?To=%2B14155550100"
        )))
        .basic_auth(SID, Some(TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn validation_errors_use_twilios_codes_and_envelope() {
    let stop = CancellationToken::new();
    let tw = Twilio::start_local(config(), &stop).await.unwrap();
    let cases: Vec<(Form, u16, u32)> = vec![
        (vec![("From", FROM), ("Body", "x")], 400, 21604),
        (
            vec![("To", "+1555"), ("From", FROM), ("Body", "x")],
            400,
            21211,
        ),
        (
            vec![("To", "not-a-number"), ("From", FROM), ("Body", "x")],
            400,
            21211,
        ),
        (vec![("To", "+14155550100"), ("Body", "x")], 400, 21603),
        (
            vec![("To", "+14155550100"), ("From", "12"), ("Body", "x")],
            400,
            21212,
        ),
        (vec![("To", "+14155550100"), ("From", FROM)], 400, 21602),
        (
            vec![("To", "+15005550010"), ("From", FROM), ("Body", "x")],
            400,
            21610,
        ),
        (
            vec![("To", "+15005550011"), ("From", FROM), ("Body", "x")],
            400,
            21614,
        ),
        (
            vec![("To", "+88212345678"), ("From", FROM), ("Body", "x")],
            400,
            21408,
        ),
    ];
    for (form, status, code) in cases {
        let (got_status, body) = send(&tw, SID, TOKEN, &form).await;
        assert_eq!(
            (got_status, body["code"].as_u64()),
            (status, Some(u64::from(code))),
            "{form:?}: {body}"
        );
        assert_eq!(body["status"], status);
        assert_eq!(
            body["more_info"],
            format!("https://www.twilio.com/docs/errors/{code}")
        );
        assert!(body["message"].is_string());
    }
    let long = "x".repeat(1601);
    let (status, body) = send(
        &tw,
        SID,
        TOKEN,
        &[("To", "+14155550100"), ("From", FROM), ("Body", &long)],
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21617)));

    let (status, body) = send(
        &tw,
        SID,
        "wrong",
        &[("To", "+14155550100"), ("From", FROM), ("Body", "x")],
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(20003)));
    let (status, body) = send(
        &tw,
        "ACnope",
        TOKEN,
        &[("To", "+14155550100"), ("From", FROM), ("Body", "x")],
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(20404)));

    assert!(tw.messages().is_empty());
    assert!(tw.emulator().requests().iter().all(|r| !r.processed));
}

#[tokio::test]
async fn over_the_rate_is_429_with_code_20429_and_not_processed() {
    let stop = CancellationToken::new();
    let tw = Twilio::start_local(
        TwilioConfig {
            // One a minute: the second request is refused however slow the machine.
            rate: Some(Rate::per_minute(1, 1)),
            ..config()
        },
        &stop,
    )
    .await
    .unwrap();
    let form = [("To", "+14155550100"), ("From", FROM), ("Body", "x")];
    assert_eq!(send(&tw, SID, TOKEN, &form).await.0, 201);
    let (status, body) = send(&tw, SID, TOKEN, &form).await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(20429)));
    assert_eq!(body["message"], "Too Many Requests");
    assert_eq!(tw.messages().len(), 1);
}

#[tokio::test]
async fn injected_faults_use_twilios_envelope() {
    let stop = CancellationToken::new();
    let tw = Twilio::start_local(config(), &stop).await.unwrap();
    let form = [("To", "+14155550100"), ("From", FROM), ("Body", "x")];
    tw.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::Error5xx).status(500).count(1))
        .unwrap();
    let (status, body) = send(&tw, SID, TOKEN, &form).await;
    assert_eq!(
        (status, body["code"].as_u64(), &body["status"]),
        (500, Some(20500), &json!(500))
    );
    tw.emulator()
        .faults()
        .set(FaultSpec::new(FaultMode::RateLimit).count(1))
        .unwrap();
    let (status, body) = send(&tw, SID, TOKEN, &form).await;
    assert_eq!((status, body["code"].as_u64()), (429, Some(20429)));
    // Neither was processed: a retry cannot duplicate them.
    assert!(tw.messages().is_empty());
    assert_eq!(send(&tw, SID, TOKEN, &form).await.0, 201);
    assert_eq!(tw.messages().len(), 1);
}
