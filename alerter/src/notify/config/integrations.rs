//! Raw receivers → typed [`Receiver`]s: the unsupported-type check and the PagerDuty, Slack
//! and webhook integrations (email/Opsgenie in `email`, SNS and SMS in `sms`).

use super::http::{http_config, inline_or_file, pairs, s, url_field};
use super::raw::{self, S};
use super::receivers::{
    Integration, PagerDutyConfig, PagerDutyKey, Receiver, Secret, SecretSource, SlackAction,
    SlackConfig, SlackField, WebhookConfig,
};
use super::{ConfigErrorKind, Ctx, GlobalConfig};

fn each<T>(l: &Option<Vec<S<T>>>) -> impl Iterator<Item = (usize, &S<T>)> {
    l.iter().flatten().enumerate()
}

/// Converts one receiver; `path` is `receivers[i]`.
pub(crate) fn receiver(
    ctx: &mut Ctx,
    path: &str,
    r: &S<raw::RawReceiver>,
    g: &GlobalConfig,
) -> Option<Receiver> {
    let rv = &r.value;
    let name = match &rv.name {
        Some(n) if !n.value.is_empty() => n.value.clone(),
        _ => {
            ctx.err(
                format!("{path}.name"),
                &r.referenced,
                ConfigErrorKind::Invalid("missing name in receiver".into()),
            );
            return None;
        }
    };
    let unsupported = [
        ("victorops_configs", rv.victorops_configs.as_ref()),
        ("wechat_configs", rv.wechat_configs.as_ref()),
        ("telegram_configs", rv.telegram_configs.as_ref()),
        ("discord_configs", rv.discord_configs.as_ref()),
        ("msteams_configs", rv.msteams_configs.as_ref()),
        ("msteamsv2_configs", rv.msteamsv2_configs.as_ref()),
        ("webex_configs", rv.webex_configs.as_ref()),
        ("pushover_configs", rv.pushover_configs.as_ref()),
        ("jira_configs", rv.jira_configs.as_ref()),
        ("rocketchat_configs", rv.rocketchat_configs.as_ref()),
        ("mattermost_configs", rv.mattermost_configs.as_ref()),
        ("incidentio_configs", rv.incidentio_configs.as_ref()),
    ];
    for (field, list) in unsupported {
        if let Some(first) = list.and_then(|l| l.first()) {
            ctx.err(
                format!("{path}.{field}"),
                &first.referenced,
                ConfigErrorKind::Unsupported(format!(
                    "receiver {name:?} uses {field}, which Tocsin does not support; supported \
                     receiver types: pagerduty_configs, slack_configs, webhook_configs, \
                     email_configs, twilio_configs, vonage_configs"
                )),
            );
        }
    }
    let mut out = Vec::new();
    for (i, c) in each(&rv.pagerduty_configs) {
        let p = format!("{path}.pagerduty_configs[{i}]");
        out.extend(pagerduty(ctx, &p, c, g).map(Integration::PagerDuty));
    }
    for (i, c) in each(&rv.slack_configs) {
        let p = format!("{path}.slack_configs[{i}]");
        out.extend(slack(ctx, &p, c, g).map(Integration::Slack));
    }
    for (i, c) in each(&rv.webhook_configs) {
        let p = format!("{path}.webhook_configs[{i}]");
        out.extend(webhook(ctx, &p, c, g).map(Integration::Webhook));
    }
    for (i, c) in each(&rv.email_configs) {
        let p = format!("{path}.email_configs[{i}]");
        out.extend(super::email::email(ctx, &p, c, g).map(Integration::Email));
    }
    // Opsgenie and SNS are parsed and checked like Alertmanager does (so a file's other
    // mistakes are still reported), then refused: Tocsin has no channel for them.
    for (i, c) in each(&rv.opsgenie_configs) {
        let p = format!("{path}.opsgenie_configs[{i}]");
        let _ = super::email::opsgenie(ctx, &p, c, g);
        ctx.err(p, &c.referenced, not_delivered("Opsgenie"));
    }
    for (i, c) in each(&rv.sns_configs) {
        let p = format!("{path}.sns_configs[{i}]");
        let _ = super::sms::sns(ctx, &p, c, g);
        ctx.err(p, &c.referenced, not_delivered("SNS"));
    }
    for (i, c) in each(&rv.twilio_configs) {
        let p = format!("{path}.twilio_configs[{i}]");
        out.extend(super::sms::twilio(ctx, &p, c, g).map(Integration::Twilio));
    }
    for (i, c) in each(&rv.vonage_configs) {
        let p = format!("{path}.vonage_configs[{i}]");
        out.extend(super::sms::vonage(ctx, &p, c, g).map(Integration::Vonage));
    }
    Some(Receiver {
        name,
        integrations: out,
    })
}

/// The refusal of an integration type that is parsed but not delivered to (the same words as
/// the delivery builder's error).
fn not_delivered(what: &str) -> ConfigErrorKind {
    let instead = if what == "SNS" {
        "use twilio_configs or vonage_configs"
    } else {
        "use pagerduty_configs or webhook_configs"
    };
    ConfigErrorKind::Unsupported(format!(
        "{what} delivery is not supported by Tocsin; {instead}"
    ))
}

const PD_DEFAULT_DETAILS: [(&str, &str); 4] = [
    (
        "firing",
        r#"{{ template "pagerduty.default.instances" .Alerts.Firing }}"#,
    ),
    (
        "resolved",
        r#"{{ template "pagerduty.default.instances" .Alerts.Resolved }}"#,
    ),
    ("num_firing", "{{ .Alerts.Firing | len }}"),
    ("num_resolved", "{{ .Alerts.Resolved | len }}"),
];

fn pagerduty(
    ctx: &mut Ctx,
    path: &str,
    c: &S<raw::RawPagerDuty>,
    g: &GlobalConfig,
) -> Option<PagerDutyConfig> {
    let r = &c.value;
    let routing = inline_or_file(
        ctx,
        path,
        &r.routing_key,
        &r.routing_key_file,
        ("routing_key", "routing_key_file"),
    );
    let service = inline_or_file(
        ctx,
        path,
        &r.service_key,
        &r.service_key_file,
        ("service_key", "service_key_file"),
    );
    let key = match (routing, service) {
        (Some(k), _) => PagerDutyKey::Routing(k),
        (None, Some(k)) => PagerDutyKey::Service(k),
        (None, None) => {
            ctx.err(
                path.to_owned(),
                &c.referenced,
                ConfigErrorKind::Invalid(
                    "missing service or routing key in PagerDuty config".into(),
                ),
            );
            return None;
        }
    };
    let http = http_config(ctx, path, r.http_config.as_ref(), &g.http_config);
    let url = url_field(ctx, path, "url", &r.url).unwrap_or_else(|| g.pagerduty_url.clone());
    let mut details = pairs(&r.details);
    for (k, v) in PD_DEFAULT_DETAILS {
        details.entry(k.to_owned()).or_insert_with(|| v.to_owned());
    }
    Some(PagerDutyConfig {
        send_resolved: r.send_resolved.unwrap_or(true),
        http,
        key,
        url,
        client: s(&r.client, r#"{{ template "pagerduty.default.client" . }}"#),
        client_url: s(
            &r.client_url,
            r#"{{ template "pagerduty.default.clientURL" . }}"#,
        ),
        description: s(
            &r.description,
            r#"{{ template "pagerduty.default.description" .}}"#,
        ),
        details,
        images: r
            .images
            .iter()
            .flatten()
            .map(|i| (s(&i.src, ""), s(&i.alt, ""), s(&i.href, "")))
            .collect(),
        links: r
            .links
            .iter()
            .flatten()
            .map(|l| (s(&l.href, ""), s(&l.text, "")))
            .collect(),
        source: s(&r.source, r#"{{ template "pagerduty.default.client" . }}"#),
        severity: s(&r.severity, "error"),
        class: s(&r.class, ""),
        component: s(&r.component, ""),
        group: s(&r.group, ""),
    })
}

fn slack(ctx: &mut Ctx, path: &str, c: &S<raw::RawSlack>, g: &GlobalConfig) -> Option<SlackConfig> {
    let r = &c.value;
    let own = inline_or_file(
        ctx,
        path,
        &r.api_url,
        &r.api_url_file,
        ("api_url", "api_url_file"),
    );
    if let Some(u) = r.api_url.as_ref().filter(|u| !u.value.is_empty()) {
        url_field(ctx, path, "api_url", &Some(u.clone()));
    }
    let Some(api_url) = own.or_else(|| g.slack_api_url.clone()) else {
        ctx.err(
            path.to_owned(),
            &c.referenced,
            ConfigErrorKind::Invalid("no global Slack API URL set".into()),
        );
        return None;
    };
    let mut actions = Vec::new();
    for (i, a) in r.actions.iter().flatten().enumerate() {
        let av = &a.value;
        let bad = |m: &str| ConfigErrorKind::Invalid(m.to_owned());
        let ap = format!("{path}.actions[{i}]");
        if av.kind.as_deref().unwrap_or("").is_empty() {
            ctx.err(
                ap.clone(),
                &a.referenced,
                bad("missing type in Slack action configuration"),
            );
        }
        if av.text.as_deref().unwrap_or("").is_empty() {
            ctx.err(
                ap.clone(),
                &a.referenced,
                bad("missing text in Slack action configuration"),
            );
        }
        let has_url = !av.url.as_deref().unwrap_or("").is_empty();
        let has_name = !av.name.as_deref().unwrap_or("").is_empty();
        if !has_url && !has_name {
            ctx.err(
                ap,
                &a.referenced,
                bad("missing name or url in Slack action configuration"),
            );
        }
        actions.push(SlackAction {
            kind: s(&av.kind, ""),
            text: s(&av.text, ""),
            url: s(&av.url, ""),
            style: s(&av.style, ""),
            name: s(&av.name, ""),
            value: s(&av.value, ""),
            confirm: av.confirm.as_ref().map(|c| {
                (
                    s(&c.title, ""),
                    s(&c.text, ""),
                    s(&c.ok_text, ""),
                    s(&c.dismiss_text, ""),
                )
            }),
        });
    }
    Some(SlackConfig {
        send_resolved: r.send_resolved.unwrap_or(false),
        http: http_config(ctx, path, r.http_config.as_ref(), &g.http_config),
        api_url,
        channel: s(&r.channel, ""),
        username: s(&r.username, r#"{{ template "slack.default.username" . }}"#),
        color: s(
            &r.color,
            r#"{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}"#,
        ),
        title: s(&r.title, r#"{{ template "slack.default.title" . }}"#),
        title_link: s(
            &r.title_link,
            r#"{{ template "slack.default.titlelink" . }}"#,
        ),
        pretext: s(&r.pretext, r#"{{ template "slack.default.pretext" . }}"#),
        text: s(&r.text, r#"{{ template "slack.default.text" . }}"#),
        fields: r
            .fields
            .iter()
            .flatten()
            .map(|f| SlackField {
                title: s(&f.title, ""),
                value: s(&f.value, ""),
                short: f.short,
            })
            .collect(),
        short_fields: r.short_fields.unwrap_or(false),
        footer: s(&r.footer, r#"{{ template "slack.default.footer" . }}"#),
        fallback: s(&r.fallback, r#"{{ template "slack.default.fallback" . }}"#),
        callback_id: s(
            &r.callback_id,
            r#"{{ template "slack.default.callbackid" . }}"#,
        ),
        icon_emoji: s(
            &r.icon_emoji,
            r#"{{ template "slack.default.iconemoji" . }}"#,
        ),
        icon_url: s(&r.icon_url, r#"{{ template "slack.default.iconurl" . }}"#),
        image_url: s(&r.image_url, ""),
        thumb_url: s(&r.thumb_url, ""),
        link_names: r.link_names.unwrap_or(false),
        mrkdwn_in: r
            .mrkdwn_in
            .clone()
            .unwrap_or_else(|| vec!["fallback".into(), "pretext".into(), "text".into()]),
        actions,
    })
}

fn webhook(
    ctx: &mut Ctx,
    path: &str,
    c: &S<raw::RawWebhook>,
    g: &GlobalConfig,
) -> Option<WebhookConfig> {
    let r = &c.value;
    let has_url = r.url.as_ref().is_some_and(|u| !u.value.is_empty());
    let has_file = r.url_file.as_ref().is_some_and(|u| !u.value.is_empty());
    let url = match (has_url, has_file) {
        (true, true) => {
            ctx.err(
                path.to_owned(),
                &c.referenced,
                ConfigErrorKind::Invalid("at most one of url & url_file must be configured".into()),
            );
            return None;
        }
        (false, false) => {
            ctx.err(
                path.to_owned(),
                &c.referenced,
                ConfigErrorKind::Invalid("one of url or url_file must be configured".into()),
            );
            return None;
        }
        (true, false) => {
            let u = url_field(ctx, path, "url", &r.url)?;
            SecretSource::Inline(Secret::new(u))
        }
        (false, true) => SecretSource::File(r.url_file.as_ref()?.value.clone()),
    };
    Some(WebhookConfig {
        send_resolved: r.send_resolved.unwrap_or(true),
        http: http_config(ctx, path, r.http_config.as_ref(), &g.http_config),
        url,
        max_alerts: r.max_alerts.unwrap_or(0),
    })
}
