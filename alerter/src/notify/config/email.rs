//! `email_configs` and `opsgenie_configs`.

use std::collections::BTreeMap;

use super::http::{http_config, inline_or_file, pairs, s, tls, url_field};
use super::raw::{self, S};
use super::receivers::{EmailConfig, OpsgenieConfig, Responder, Secret};
use super::{ConfigErrorKind, Ctx, GlobalConfig};

/// `textproto.CanonicalMIMEHeaderKey`: `content-type` → `Content-Type`.
fn canonical_header(h: &str) -> String {
    h.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `net.SplitHostPort` with a non-empty port.
pub(crate) fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| format!("address {s}: missing ']' in address"))?;
        let p = p
            .strip_prefix(':')
            .ok_or_else(|| format!("address {s}: missing port in address"))?;
        (h, p)
    } else {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("address {s}: missing port in address"))?;
        if h.contains(':') {
            return Err(format!("address {s}: too many colons in address"));
        }
        (h, p)
    };
    let _ = host;
    if port.is_empty() {
        return Err(format!("address {s:?}: port cannot be empty"));
    }
    Ok(())
}

pub(crate) fn email(
    ctx: &mut Ctx,
    path: &str,
    c: &S<raw::RawEmail>,
    g: &GlobalConfig,
) -> Option<EmailConfig> {
    let r = &c.value;
    let Some(to) = r.to.as_ref().filter(|t| !t.value.is_empty()) else {
        ctx.err(
            path.to_owned(),
            &c.referenced,
            ConfigErrorKind::Invalid("missing to address in email config".into()),
        );
        return None;
    };
    let mut headers = BTreeMap::new();
    for (k, v) in r.headers.iter().flat_map(|h| h.0.iter()) {
        let name = canonical_header(&k.value);
        if headers.insert(name.clone(), v.value.clone()).is_some() {
            ctx.err(
                format!("{path}.headers.{}", k.value),
                &k.referenced,
                ConfigErrorKind::Invalid(format!("duplicate header {name:?} in email config")),
            );
        }
    }
    let smarthost = match r.smarthost.as_ref().filter(|h| !h.value.is_empty()) {
        Some(h) => {
            if let Err(e) = check_host_port(&h.value) {
                ctx.err(
                    format!("{path}.smarthost"),
                    &h.referenced,
                    ConfigErrorKind::Invalid(e),
                );
            }
            h.value.clone()
        }
        None if !g.smtp.smarthost.is_empty() => g.smtp.smarthost.clone(),
        None => {
            ctx.err(
                path.to_owned(),
                &c.referenced,
                ConfigErrorKind::Invalid("no global SMTP smarthost set".into()),
            );
            return None;
        }
    };
    let from = match r.from.as_ref().filter(|f| !f.value.is_empty()) {
        Some(f) => f.value.clone(),
        None if !g.smtp.from.is_empty() => g.smtp.from.clone(),
        None => {
            ctx.err(
                path.to_owned(),
                &c.referenced,
                ConfigErrorKind::Invalid("no global SMTP from set".into()),
            );
            return None;
        }
    };
    headers
        .entry("To".into())
        .or_insert_with(|| to.value.clone());
    headers.entry("From".into()).or_insert_with(|| from.clone());
    headers
        .entry("Subject".into())
        .or_insert_with(|| r#"{{ template "email.default.subject" . }}"#.into());
    let password = inline_or_file(
        ctx,
        path,
        &r.auth_password,
        &r.auth_password_file,
        ("auth_password", "auth_password_file"),
    )
    .or_else(|| g.smtp.auth_password.clone());
    let get = |v: &Option<S<String>>, d: &str| {
        v.as_ref()
            .filter(|x| !x.value.is_empty())
            .map_or_else(|| d.to_owned(), |x| x.value.clone())
    };
    Some(EmailConfig {
        send_resolved: r.send_resolved.unwrap_or(false),
        to: to.value.clone(),
        from,
        hello: get(&r.hello, &g.smtp.hello),
        smarthost,
        auth_username: get(&r.auth_username, &g.smtp.auth_username),
        auth_password: password,
        auth_secret: r
            .auth_secret
            .as_ref()
            .filter(|x| !x.value.is_empty())
            .map(|x| Secret::new(&x.value))
            .or_else(|| g.smtp.auth_secret.clone()),
        auth_identity: get(&r.auth_identity, &g.smtp.auth_identity),
        headers,
        html: s(&r.html, r#"{{ template "email.default.html" . }}"#),
        text: s(&r.text, ""),
        require_tls: r.require_tls.unwrap_or(g.smtp.require_tls),
        tls: if r.tls_config.is_some() {
            tls(r.tls_config.as_ref())
        } else {
            g.smtp.tls.clone()
        },
    })
}

const RESPONDER_TYPES: [&str; 5] = ["team", "teams", "user", "escalation", "schedule"];

pub(crate) fn opsgenie(
    ctx: &mut Ctx,
    path: &str,
    c: &S<raw::RawOpsgenie>,
    g: &GlobalConfig,
) -> Option<OpsgenieConfig> {
    let r = &c.value;
    let api_key = inline_or_file(
        ctx,
        path,
        &r.api_key,
        &r.api_key_file,
        ("api_key", "api_key_file"),
    )
    .or_else(|| g.opsgenie_api_key.clone());
    let Some(api_key) = api_key else {
        ctx.err(
            path.to_owned(),
            &c.referenced,
            ConfigErrorKind::Invalid("no global OpsGenie API Key set".into()),
        );
        return None;
    };
    let mut responders = Vec::new();
    for (i, rr) in r.responders.iter().flatten().enumerate() {
        let v = &rr.value;
        let rp = format!("{path}.responders[{i}]");
        let (id, name, username) = (s(&v.id, ""), s(&v.name, ""), s(&v.username, ""));
        if id.is_empty() && name.is_empty() && username.is_empty() {
            ctx.err(
                rp.clone(),
                &rr.referenced,
                ConfigErrorKind::Invalid(
                    "opsGenieConfig responder has to have at least one of id, username or name specified"
                        .into(),
                ),
            );
        }
        let kind = s(&v.kind, "");
        if !kind.contains("{{") && !RESPONDER_TYPES.contains(&kind.to_ascii_lowercase().as_str()) {
            ctx.err(
                format!("{rp}.type"),
                &rr.referenced,
                ConfigErrorKind::Invalid(format!(
                    "opsGenieConfig responder type {kind:?} does not match valid options {}",
                    RESPONDER_TYPES.join("|")
                )),
            );
        }
        responders.push(Responder {
            id,
            name,
            username,
            kind,
        });
    }
    let mut api_url =
        url_field(ctx, path, "api_url", &r.api_url).unwrap_or_else(|| g.opsgenie_api_url.clone());
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    Some(OpsgenieConfig {
        send_resolved: r.send_resolved.unwrap_or(true),
        http: http_config(ctx, path, r.http_config.as_ref(), &g.http_config),
        api_key,
        api_url,
        message: s(&r.message, r#"{{ template "opsgenie.default.message" . }}"#),
        description: s(
            &r.description,
            r#"{{ template "opsgenie.default.description" . }}"#,
        ),
        source: s(&r.source, r#"{{ template "opsgenie.default.source" . }}"#),
        details: pairs(&r.details),
        entity: s(&r.entity, ""),
        responders,
        actions: s(&r.actions, ""),
        tags: s(&r.tags, ""),
        note: s(&r.note, ""),
        priority: s(&r.priority, ""),
        update_alerts: r.update_alerts.unwrap_or(false),
    })
}
