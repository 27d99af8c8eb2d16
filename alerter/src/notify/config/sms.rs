//! `sns_configs` and Tocsin's own SMS receivers, `twilio_configs` and `vonage_configs`.

use super::http::{http_config, inline_or_file, pairs, s, url_field};
use super::raw::{self, S};
use super::receivers::{
    DEFAULT_SMS_MESSAGE, Secret, SigV4, SmsSender, SnsConfig, SnsTarget, TwilioConfig, VonageConfig,
};
use super::{ConfigErrorKind, Ctx, GlobalConfig};

const TWILIO_API_URL: &str = "https://api.twilio.com";
const VONAGE_API_URL: &str = "https://rest.nexmo.com";

pub(crate) fn sns(
    ctx: &mut Ctx,
    path: &str,
    c: &S<raw::RawSns>,
    g: &GlobalConfig,
) -> Option<SnsConfig> {
    let r = &c.value;
    let nonempty = |v: &Option<String>| v.clone().filter(|x| !x.is_empty());
    let (topic, phone, target) = (
        nonempty(&r.topic_arn),
        nonempty(&r.phone_number),
        nonempty(&r.target_arn),
    );
    // Alertmanager's check `(target == "") != (topic == "") != (phone == "")` accepts exactly
    // one, and (by accident) all three; we accept the same.
    let count = [&topic, &phone, &target]
        .iter()
        .filter(|x| x.is_some())
        .count();
    if count != 1 && count != 3 {
        ctx.err(
            path.to_owned(),
            &c.referenced,
            ConfigErrorKind::Invalid(
                "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config"
                    .into(),
            ),
        );
        return None;
    }
    let target = match (topic, phone, target) {
        (Some(t), _, _) => SnsTarget::Topic(t),
        (None, Some(p), _) => SnsTarget::Phone(p),
        (None, None, Some(t)) => SnsTarget::Target(t),
        (None, None, None) => return None,
    };
    let sigv4 = r.sigv4.as_ref().map_or_else(SigV4::default, |v| {
        let x = &v.value;
        let (ak, sk) = (s(&x.access_key, ""), s(&x.secret_key, ""));
        if ak.is_empty() != sk.is_empty() {
            ctx.err(
                format!("{path}.sigv4"),
                &v.referenced,
                ConfigErrorKind::Invalid(
                    "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in the SigV4 config"
                        .into(),
                ),
            );
        }
        SigV4 {
            region: s(&x.region, ""),
            access_key: ak,
            secret_key: (!sk.is_empty()).then(|| Secret::new(sk)),
            profile: s(&x.profile, ""),
            role_arn: s(&x.role_arn, ""),
        }
    });
    Some(SnsConfig {
        send_resolved: r.send_resolved.unwrap_or(true),
        http: http_config(ctx, path, r.http_config.as_ref(), &g.http_config),
        api_url: url_field(ctx, path, "api_url", &r.api_url),
        sigv4,
        target,
        subject: s(&r.subject, r#"{{ template "sns.default.subject" . }}"#),
        message: s(&r.message, r#"{{ template "sns.default.message" . }}"#),
        attributes: pairs(&r.attributes),
    })
}

fn required(
    ctx: &mut Ctx,
    path: &str,
    field: &str,
    c_loc: &serde_saphyr::Location,
    v: &Option<S<String>>,
) -> Option<String> {
    match v.as_ref().filter(|x| !x.value.is_empty()) {
        Some(x) => Some(x.value.clone()),
        None => {
            ctx.err(
                format!("{path}.{field}"),
                c_loc,
                ConfigErrorKind::Invalid(format!("missing {field}")),
            );
            None
        }
    }
}

fn recipients(
    ctx: &mut Ctx,
    path: &str,
    c_loc: &serde_saphyr::Location,
    to: &Option<Vec<S<String>>>,
) -> Vec<String> {
    let to: Vec<String> = to
        .iter()
        .flatten()
        .map(|t| t.value.clone())
        .filter(|t| !t.is_empty())
        .collect();
    if to.is_empty() {
        ctx.err(
            format!("{path}.to"),
            c_loc,
            ConfigErrorKind::Invalid("at least one recipient is required in to".into()),
        );
    }
    to
}

pub(crate) fn twilio(
    ctx: &mut Ctx,
    path: &str,
    c: &S<raw::RawTwilio>,
    g: &GlobalConfig,
) -> Option<TwilioConfig> {
    let r = &c.value;
    let loc = &c.referenced;
    let account_sid = required(ctx, path, "account_sid", loc, &r.account_sid);
    let token = inline_or_file(
        ctx,
        path,
        &r.auth_token,
        &r.auth_token_file,
        ("auth_token", "auth_token_file"),
    );
    if token.is_none() {
        ctx.err(
            format!("{path}.auth_token"),
            loc,
            ConfigErrorKind::Invalid(
                "one of auth_token or auth_token_file must be configured".into(),
            ),
        );
    }
    let from = r
        .from
        .as_ref()
        .filter(|x| !x.value.is_empty())
        .map(|x| x.value.clone());
    let mss = r
        .messaging_service_sid
        .as_ref()
        .filter(|x| !x.value.is_empty())
        .map(|x| x.value.clone());
    let sender = match (from, mss) {
        (Some(f), None) => Some(SmsSender::From(f)),
        (None, Some(m)) => Some(SmsSender::MessagingService(m)),
        _ => {
            ctx.err(
                path.to_owned(),
                loc,
                ConfigErrorKind::Invalid(
                    "exactly one of from or messaging_service_sid must be configured".into(),
                ),
            );
            None
        }
    };
    let to = recipients(ctx, path, loc, &r.to);
    let api_url =
        url_field(ctx, path, "api_url", &r.api_url).unwrap_or_else(|| TWILIO_API_URL.into());
    Some(TwilioConfig {
        send_resolved: r.send_resolved.unwrap_or(false),
        http: http_config(ctx, path, r.http_config.as_ref(), &g.http_config),
        api_url,
        account_sid: account_sid?,
        auth_token: token?,
        sender: sender?,
        to,
        message: s(&r.message, DEFAULT_SMS_MESSAGE),
    })
}

pub(crate) fn vonage(
    ctx: &mut Ctx,
    path: &str,
    c: &S<raw::RawVonage>,
    g: &GlobalConfig,
) -> Option<VonageConfig> {
    let r = &c.value;
    let loc = &c.referenced;
    let api_key = required(ctx, path, "api_key", loc, &r.api_key);
    let secret = inline_or_file(
        ctx,
        path,
        &r.api_secret,
        &r.api_secret_file,
        ("api_secret", "api_secret_file"),
    );
    if secret.is_none() {
        ctx.err(
            format!("{path}.api_secret"),
            loc,
            ConfigErrorKind::Invalid(
                "one of api_secret or api_secret_file must be configured".into(),
            ),
        );
    }
    let from = required(ctx, path, "from", loc, &r.from);
    let to = recipients(ctx, path, loc, &r.to);
    let api_url =
        url_field(ctx, path, "api_url", &r.api_url).unwrap_or_else(|| VONAGE_API_URL.into());
    Some(VonageConfig {
        send_resolved: r.send_resolved.unwrap_or(false),
        http: http_config(ctx, path, r.http_config.as_ref(), &g.http_config),
        api_url,
        api_key: api_key?,
        api_secret: secret?,
        from: from?,
        to,
        message: s(&r.message, DEFAULT_SMS_MESSAGE),
    })
}
