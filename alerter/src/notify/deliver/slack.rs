//! Slack: an incoming webhook (Alertmanager's attachment payload; `200 ok`; errors as
//! plain-text bodies) or the Web API when `api_url` ends in `chat.postMessage` (bot token from
//! `http_config.authorization`/`bearer_token`; always HTTP 200 with `ok`, except 429). With
//! the Web API the message's `channel:ts` is the provider id, and the resolve of a stream whose
//! earlier message is known updates that message (`chat.update`) instead of posting anew.
//! Not idempotent: Slack has no idempotency key, so an ambiguous failure may duplicate.

use serde_json::{Value, json};

use super::build::{BuildCtx, BuildError, auth_header, secret};
use super::channel::{
    Channel, Delivery, SendFuture, SendOutcome, classify_failure, for_integration, read_answer,
    retry_after_body, retry_after_header, stable_hash_hex,
};
use super::text::{Renderer, TextTemplate};
use crate::notify::config::SlackConfig;

/// Alertmanager truncates attachment titles to this many characters.
const MAX_TITLE_CHARS: usize = 1024;

/// Web API errors that are worth another attempt (Slack: "some aspect of the operation may
/// have succeeded" for the first two).
const TRANSIENT_API_ERRORS: [&str; 6] = [
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
    "rate_limited",
];

#[derive(Debug)]
struct Fields {
    channel: TextTemplate,
    username: TextTemplate,
    color: TextTemplate,
    title: TextTemplate,
    title_link: TextTemplate,
    pretext: TextTemplate,
    text: TextTemplate,
    footer: TextTemplate,
    fallback: TextTemplate,
    callback_id: TextTemplate,
    icon_emoji: TextTemplate,
    icon_url: TextTemplate,
    image_url: TextTemplate,
    thumb_url: TextTemplate,
    fields: Vec<(TextTemplate, TextTemplate, Option<bool>)>,
    actions: Vec<[TextTemplate; 6]>,
}

/// One `slack_configs` entry.
#[derive(Debug)]
pub struct SlackChannel {
    http: reqwest::Client,
    url: String,
    /// `Authorization` for the Web API; `None` for a webhook.
    token: Option<String>,
    web_api: bool,
    send_resolved: bool,
    short_fields: bool,
    link_names: bool,
    mrkdwn_in: Vec<String>,
    timeout: std::time::Duration,
    rate_key: String,
    fields: Fields,
}

impl SlackChannel {
    /// Builds the channel of the integration at `path`.
    pub fn new(ctx: &BuildCtx<'_>, path: &str, c: &SlackConfig) -> Result<Self, BuildError> {
        let url = secret(path, "api_url", &c.api_url)?;
        let web_api = url.trim_end_matches('/').ends_with("chat.postMessage");
        let token = auth_header(path, &c.http)?;
        if web_api && token.is_none() {
            return Err(BuildError::Invalid {
                path: format!("{path}.http_config"),
                message: "chat.postMessage needs a bot token: set http_config.authorization \
                          (credentials: xoxb-...)"
                    .into(),
            });
        }
        let t = |f: &str, s: &str| TextTemplate::new(&format!("{path}.{f}"), s, ctx.library);
        let fields = Fields {
            channel: t("channel", &c.channel),
            username: t("username", &c.username),
            color: t("color", &c.color),
            title: t("title", &c.title),
            title_link: t("title_link", &c.title_link),
            pretext: t("pretext", &c.pretext),
            text: t("text", &c.text),
            footer: t("footer", &c.footer),
            fallback: t("fallback", &c.fallback),
            callback_id: t("callback_id", &c.callback_id),
            icon_emoji: t("icon_emoji", &c.icon_emoji),
            icon_url: t("icon_url", &c.icon_url),
            image_url: t("image_url", &c.image_url),
            thumb_url: t("thumb_url", &c.thumb_url),
            fields: c
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        t(&format!("fields[{i}].title"), &f.title),
                        t(&format!("fields[{i}].value"), &f.value),
                        f.short,
                    )
                })
                .collect(),
            actions: c
                .actions
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let p = |f: &str| format!("actions[{i}].{f}");
                    [
                        t(&p("type"), &a.kind),
                        t(&p("text"), &a.text),
                        t(&p("url"), &a.url),
                        t(&p("style"), &a.style),
                        t(&p("name"), &a.name),
                        t(&p("value"), &a.value),
                    ]
                })
                .collect(),
        };
        let rate_key = format!(
            "slack:{}",
            &stable_hash_hex(&[&url, if web_api { &c.channel } else { "" }])[..16]
        );
        Ok(Self {
            http: ctx.http.clone(),
            url,
            token,
            web_api,
            send_resolved: c.send_resolved,
            short_fields: c.short_fields,
            link_names: c.link_names,
            mrkdwn_in: c.mrkdwn_in.clone(),
            timeout: ctx.opts.request_timeout,
            rate_key,
            fields,
        })
    }

    /// The message body (Alertmanager's shape), or the template error.
    fn message(&self, r: &Renderer<'_>) -> Result<Value, String> {
        let f = &self.fields;
        let title = super::pagerduty::truncate_chars(&r.render(&f.title)?, MAX_TITLE_CHARS);
        let mut att = json!({
            "title": title,
            "title_link": r.render(&f.title_link)?,
            "pretext": r.render(&f.pretext)?,
            "text": r.render(&f.text)?,
            "fallback": r.render(&f.fallback)?,
            "callback_id": r.render(&f.callback_id)?,
            "color": r.render(&f.color)?,
            "footer": r.render(&f.footer)?,
            "mrkdwn_in": self.mrkdwn_in,
        });
        for (name, t) in [("image_url", &f.image_url), ("thumb_url", &f.thumb_url)] {
            let v = r.render(t)?;
            if !v.is_empty() {
                att[name] = v.into();
            }
        }
        let mut fields = Vec::new();
        for (title, value, short) in &f.fields {
            fields.push(json!({
                "title": r.render(title)?,
                "value": r.render(value)?,
                "short": short.unwrap_or(self.short_fields),
            }));
        }
        if !fields.is_empty() {
            att["fields"] = fields.into();
        }
        let mut actions = Vec::new();
        for [kind, text, url, style, name, value] in &f.actions {
            actions.push(json!({
                "type": r.render(kind)?, "text": r.render(text)?, "url": r.render(url)?,
                "style": r.render(style)?, "name": r.render(name)?, "value": r.render(value)?,
            }));
        }
        if !actions.is_empty() {
            att["actions"] = actions.into();
        }
        let mut msg = json!({
            "channel": r.render(&f.channel)?,
            "username": r.render(&f.username)?,
            "icon_emoji": r.render(&f.icon_emoji)?,
            "icon_url": r.render(&f.icon_url)?,
            "link_names": self.link_names,
            "attachments": [att],
        });
        if self.web_api {
            // The notification text of the Web API (and what screen readers read).
            msg["text"] = title.into();
        }
        Ok(msg)
    }

    async fn send_one(&self, delivery: &Delivery) -> SendOutcome {
        let Some(data) = for_integration(&delivery.data, self.send_resolved) else {
            return SendOutcome::Skipped;
        };
        let msg = match self.message(&Renderer::new(&data)) {
            Ok(m) => m,
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        if !self.web_api {
            return self.post_webhook(&msg).await;
        }
        let previous = delivery
            .previous_provider_id
            .as_deref()
            .and_then(|p| p.split_once(':'));
        if let (Some((channel, ts)), "resolved") = (previous, data.status.as_str()) {
            let mut update = msg.clone();
            update["channel"] = channel.into();
            update["ts"] = ts.into();
            let url = format!(
                "{}chat.update",
                self.url
                    .trim_end_matches('/')
                    .trim_end_matches("chat.postMessage")
            );
            match self.call_api(&url, &update).await {
                // The message is gone (deleted, too old): post a new one.
                ApiAnswer::Err(e) if e == "message_not_found" || e == "cant_update_message" => {}
                other => return api_outcome(other, channel, ts),
            }
        }
        let answer = self.call_api(&self.url, &msg).await;
        api_outcome(answer, "", "")
    }

    async fn post_webhook(&self, msg: &Value) -> SendOutcome {
        let req = self.http.post(&self.url).timeout(self.timeout).json(msg);
        match read_answer("slack", req.send().await).await {
            Err(outcome) => outcome,
            Ok((200, _, body)) if body.trim() == "ok" => {
                SendOutcome::Delivered { provider_id: None }
            }
            Ok((status, _, body)) if (200..300).contains(&status) => SendOutcome::Permanent {
                reason: format!("slack webhook answered {status} without \"ok\": {body:.200}"),
            },
            Ok((status, headers, body)) => classify_failure("slack", status, &headers, &body),
        }
    }

    /// One Web API call, classified.
    async fn call_api(&self, url: &str, body: &Value) -> ApiAnswer {
        let mut req = self.http.post(url).timeout(self.timeout).json(body);
        if let Some(t) = &self.token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let (status, headers, text) = match read_answer("slack", req.send().await).await {
            Ok(a) => a,
            Err(outcome) => return ApiAnswer::Failed(outcome),
        };
        if status != 200 {
            return ApiAnswer::Failed(classify_failure("slack", status, &headers, &text));
        }
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                return ApiAnswer::Failed(SendOutcome::Permanent {
                    reason: format!("slack answered 200 with a non-JSON body: {text:.200}"),
                });
            }
        };
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return ApiAnswer::Ok(v);
        }
        let error = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error")
            .to_owned();
        if TRANSIENT_API_ERRORS.contains(&error.as_str()) {
            return ApiAnswer::Failed(SendOutcome::Retry {
                retry_after: retry_after_header(&headers).or_else(|| retry_after_body(&text)),
                reason: format!("slack: {error}"),
            });
        }
        ApiAnswer::Err(error)
    }
}

/// A Web API call's answer.
#[derive(Debug)]
enum ApiAnswer {
    /// `ok: true` and the body.
    Ok(Value),
    /// `ok: false` with a permanent error code.
    Err(String),
    /// An HTTP or transport failure, already classified.
    Failed(SendOutcome),
}

/// The outcome of a Web API answer; `channel`/`ts` are used when the answer lacks them.
fn api_outcome(answer: ApiAnswer, channel: &str, ts: &str) -> SendOutcome {
    match answer {
        ApiAnswer::Ok(v) => {
            let c = v.get("channel").and_then(Value::as_str).unwrap_or(channel);
            let t = v.get("ts").and_then(Value::as_str).unwrap_or(ts);
            SendOutcome::Delivered {
                provider_id: (!c.is_empty() && !t.is_empty()).then(|| format!("{c}:{t}")),
            }
        }
        ApiAnswer::Err(e) => SendOutcome::Permanent {
            reason: format!("slack: {e}"),
        },
        ApiAnswer::Failed(o) => o,
    }
}

impl Channel for SlackChannel {
    fn kind(&self) -> &'static str {
        "slack"
    }
    fn idempotent(&self) -> bool {
        false
    }
    fn rate_key(&self) -> Option<String> {
        Some(self.rate_key.clone())
    }
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.send_one(delivery))
    }
}
