//! Slack emulator through real HTTP: webhook answers and error bodies, 1 message/s with 429 +
//! Retry-After, hook states, and chat.postMessage / chat.update.

mod common;

use std::time::Duration;

use common::{client, wait_until};
use serde_json::{Value, json};
use tocsin_chaos::rate_limit::Rate;
use tocsin_chaos::slack::web_api::ChannelState;
use tocsin_chaos::slack::webhook::HookState;
use tocsin_chaos::slack::{Slack, SlackConfig};
use tocsin_chaos::{FaultMode, FaultSpec};
use tokio_util::sync::CancellationToken;

const HOOK: &str = "/services/T000/B000/XXXX";

fn unlimited() -> SlackConfig {
    SlackConfig {
        webhook_rate: None,
        post_message_rate: None,
        tokens: None,
    }
}

async fn post_hook(slack: &Slack, path: &str, body: &Value) -> (u16, Option<String>, String) {
    let resp = client()
        .post(slack.emulator().url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, resp.text().await.unwrap())
}

#[tokio::test]
async fn webhook_answers_ok_and_plain_text_errors() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(unlimited(), &stop).await.unwrap();
    let resp = client()
        .post(slack.emulator().url(HOOK))
        .json(&json!({"text": "disk full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html");
    assert_eq!(resp.text().await.unwrap(), "ok");

    let cases = [
        (json!({}), 400, "no_text"),
        (json!({"text": ["not", "text"]}), 400, "invalid_payload"),
        (
            json!({"blocks": [{"text": "no type"}]}),
            400,
            "invalid_blocks",
        ),
        (
            json!({"attachments": vec![json!({"text": "a"}); 101]}),
            400,
            "too_many_attachments",
        ),
    ];
    for (body, status, error) in cases {
        let (got_status, _, got_body) = post_hook(&slack, HOOK, &body).await;
        assert_eq!((got_status, got_body.as_str()), (status, error), "{body}");
    }
    let resp = client()
        .post(slack.emulator().url(HOOK))
        .body("{broken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), "invalid_payload");
    // Legacy form `payload=`.
    let resp = client()
        .post(slack.emulator().url(HOOK))
        .form(&[("payload", r#"{"text":"legacy"}"#)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");

    let log = slack.emulator().requests();
    assert_eq!(log.iter().filter(|r| r.processed).count(), 2);
}

#[tokio::test]
async fn hook_states_answer_slacks_errors_set_from_rust_and_http() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(unlimited(), &stop).await.unwrap();
    slack.set_hook_state(HOOK, HookState::ChannelIsArchived);
    let (status, _, body) = post_hook(&slack, HOOK, &json!({"text": "x"})).await;
    assert_eq!((status, body.as_str()), (410, "channel_is_archived"));

    let other = "/services/T1/B1/Y";
    let resp = client()
        .put(slack.emulator().url("/hooks"))
        .json(&json!({"path": other, "state": "no_service"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (status, _, body) = post_hook(&slack, other, &json!({"text": "x"})).await;
    assert_eq!((status, body.as_str()), (404, "no_service"));
    slack.set_hook_state(other, HookState::ActionProhibited);
    let (status, _, body) = post_hook(&slack, other, &json!({"text": "x"})).await;
    assert_eq!((status, body.as_str()), (403, "action_prohibited"));
}

#[tokio::test]
async fn webhook_allows_one_message_per_second_then_429_with_retry_after() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(SlackConfig::default(), &stop)
        .await
        .unwrap();
    let (status, _, body) = post_hook(&slack, HOOK, &json!({"text": "first"})).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, retry_after, body) = post_hook(&slack, HOOK, &json!({"text": "second"})).await;
    assert_eq!(status, 429);
    assert_eq!(retry_after.as_deref(), Some("1"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"retry_after": 1, "ok": false, "error": "rate_limited"})
    );
    // Another webhook has its own budget.
    let (status, _, _) = post_hook(&slack, "/services/T/B/OTHER", &json!({"text": "x"})).await;
    assert_eq!(status, 200);
    // The first hook accepts again once its second has passed.
    wait_until(
        || async { post_hook(&slack, HOOK, &json!({"text": "again"})).await.0 == 200 },
        Duration::from_secs(3),
        "the webhook accepts again",
    )
    .await;
    let log = slack.emulator().requests();
    let throttled = log
        .iter()
        .filter(|r| r.answer.status == 429)
        .collect::<Vec<_>>();
    assert!(!throttled.is_empty());
    assert!(
        throttled
            .iter()
            .all(|r| !r.processed && r.answer.retry_after_s == Some(1))
    );
    // Accepted messages on one hook are at least ~1 s apart.
    let accepted: Vec<i64> = log
        .iter()
        .filter(|r| r.path == HOOK && r.processed)
        .map(|r| r.time_ms)
        .collect();
    assert_eq!(accepted.len(), 2);
    assert!(accepted[1] - accepted[0] >= 900, "{accepted:?}");
}

#[tokio::test]
async fn injected_rate_limit_on_a_webhook_uses_slacks_shape() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(unlimited(), &stop).await.unwrap();
    slack
        .emulator()
        .faults()
        .set(
            FaultSpec::new(FaultMode::RateLimit)
                .retry_after_s(30)
                .count(1),
        )
        .unwrap();
    let (status, retry_after, body) = post_hook(&slack, HOOK, &json!({"text": "x"})).await;
    assert_eq!((status, retry_after.as_deref()), (429, Some("30")));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "rate_limited"
    );
}

async fn api(slack: &Slack, method: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = client()
        .post(slack.emulator().url(&format!("/api/{method}")))
        .json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn post_message_then_update_by_ts() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(unlimited(), &stop).await.unwrap();
    let token = Some("xoxb-test");
    let (status, body) = api(
        &slack,
        "chat.postMessage",
        token,
        &json!({"channel": "#alerts", "text": "FIRING"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true, "{body}");
    let channel = body["channel"].as_str().unwrap().to_owned();
    let ts = body["ts"].as_str().unwrap().to_owned();
    assert!(channel.starts_with('C'));
    assert!(ts.contains('.'));

    let (_, body) = api(
        &slack,
        "chat.update",
        token,
        &json!({"channel": channel, "ts": ts, "text": "RESOLVED"}),
    )
    .await;
    assert_eq!(body["ok"], true, "{body}");
    let messages = slack.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, "RESOLVED");
    assert_eq!(messages[0].updates.len(), 1);

    let (_, body) = api(
        &slack,
        "chat.update",
        token,
        &json!({"channel": channel, "ts": "1.000000", "text": "x"}),
    )
    .await;
    assert_eq!(body, json!({"ok": false, "error": "message_not_found"}));
}

#[tokio::test]
async fn web_api_errors_are_http_200_with_ok_false() {
    let stop = CancellationToken::new();
    let slack = Slack::start_local(unlimited(), &stop).await.unwrap();
    let msg = json!({"channel": "#alerts", "text": "x"});
    let cases = [
        ("chat.postMessage", None, msg.clone(), "not_authed"),
        (
            "chat.postMessage",
            Some("bogus"),
            msg.clone(),
            "invalid_auth",
        ),
        (
            "chat.postMessage",
            Some("xoxb-1"),
            json!({"text": "x"}),
            "channel_not_found",
        ),
        (
            "chat.postMessage",
            Some("xoxb-1"),
            json!({"channel": "#a"}),
            "no_text",
        ),
        (
            "chat.postMessage",
            Some("xoxb-1"),
            json!({"channel": "#a", "text": "x".repeat(40_001)}),
            "msg_too_long",
        ),
        (
            "chat.nonsense",
            Some("xoxb-1"),
            msg.clone(),
            "unknown_method",
        ),
    ];
    for (method, token, body, error) in cases {
        let (status, got) = api(&slack, method, token, &body).await;
        assert_eq!(status, 200);
        assert_eq!(got, json!({"ok": false, "error": error}));
    }
    slack.set_channel_state("#archived", ChannelState::Archived);
    let (_, got) = api(
        &slack,
        "chat.postMessage",
        Some("xoxb-1"),
        &json!({"channel": "#archived", "text": "x"}),
    )
    .await;
    assert_eq!(got["error"], "is_archived");
    assert!(slack.messages().is_empty());
}

#[tokio::test]
async fn post_message_rate_limit_is_429_ratelimited_per_channel() {
    let stop = CancellationToken::new();
    let config = SlackConfig {
        post_message_rate: Some(Rate::per_minute(1, 1)),
        ..unlimited()
    };
    let slack = Slack::start_local(config, &stop).await.unwrap();
    let msg = json!({"channel": "#alerts", "text": "x"});
    assert_eq!(
        api(&slack, "chat.postMessage", Some("xoxb-1"), &msg)
            .await
            .1["ok"],
        true
    );
    let resp = client()
        .post(slack.emulator().url("/api/chat.postMessage"))
        .bearer_auth("xoxb-1")
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"ok": false, "error": "ratelimited"}));
    let other = json!({"channel": "#other", "text": "x"});
    assert_eq!(
        api(&slack, "chat.postMessage", Some("xoxb-1"), &other)
            .await
            .1["ok"],
        true
    );
}
