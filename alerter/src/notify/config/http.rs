//! Field helpers shared by the receiver conversions: URLs, inline-or-file secrets and
//! `http_config`.

use std::collections::BTreeMap;

use super::raw::{self, RawHttpConfig, RawTlsConfig, S};
use super::receivers::{HttpAuth, HttpConfig, Secret, SecretSource, TlsConfig};
use super::{ConfigErrorKind, Ctx};

/// Checks an `http`/`https` URL with a host, as Alertmanager's `parseURL`.
pub(crate) fn check_url(s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("unsupported scheme \"\" for URL {s:?}"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("unsupported scheme {scheme:?} for URL"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    if host.is_empty() {
        return Err("missing host for URL".into());
    }
    Ok(())
}

pub(crate) fn inline_or_file(
    ctx: &mut Ctx,
    path: &str,
    inline: &Option<S<String>>,
    file: &Option<S<String>>,
    names: (&str, &str),
) -> Option<SecretSource> {
    match (inline, file) {
        (Some(i), Some(_)) if !i.value.is_empty() => {
            ctx.err(
                format!("{path}.{}", names.0),
                &i.referenced,
                ConfigErrorKind::Invalid(format!(
                    "at most one of {} & {} must be configured",
                    names.0, names.1
                )),
            );
            None
        }
        (Some(i), _) if !i.value.is_empty() => Some(SecretSource::Inline(Secret::new(&i.value))),
        (_, Some(f)) if !f.value.is_empty() => Some(SecretSource::File(f.value.clone())),
        _ => None,
    }
}

pub(crate) fn tls(raw: Option<&S<RawTlsConfig>>) -> TlsConfig {
    raw.map(|t| TlsConfig {
        ca_file: t.value.ca_file.clone(),
        cert_file: t.value.cert_file.clone(),
        key_file: t.value.key_file.clone(),
        server_name: t.value.server_name.clone(),
        insecure_skip_verify: t.value.insecure_skip_verify.unwrap_or(false),
        min_version: t.value.min_version.as_ref().map(|v| v.value.clone()),
    })
    .unwrap_or_default()
}

/// `http_config` → [`HttpConfig`]; `None` means "inherit the global one".
pub(crate) fn http_config(
    ctx: &mut Ctx,
    path: &str,
    raw: Option<&S<RawHttpConfig>>,
    global: &HttpConfig,
) -> HttpConfig {
    let Some(r) = raw else {
        return global.clone();
    };
    let path = format!("{path}.http_config");
    let h = &r.value;
    if let Some(o) = &h.oauth2 {
        ctx.err(
            format!("{path}.oauth2"),
            &o.referenced,
            ConfigErrorKind::Unsupported("http_config.oauth2 is not supported by Tocsin".into()),
        );
    }
    let bearer = inline_or_file(
        ctx,
        &path,
        &h.bearer_token,
        &h.bearer_token_file,
        ("bearer_token", "bearer_token_file"),
    );
    let mut auths = Vec::new();
    if let Some(b) = &h.basic_auth {
        let password = match (&b.value.password, &b.value.password_file) {
            (Some(p), None) => Some(SecretSource::Inline(Secret::new(p))),
            (None, Some(f)) => Some(SecretSource::File(f.clone())),
            (None, None) => None,
            (Some(_), Some(_)) => {
                ctx.err(
                    format!("{path}.basic_auth"),
                    &b.referenced,
                    ConfigErrorKind::Invalid(
                        "at most one of basic_auth password & password_file must be configured"
                            .into(),
                    ),
                );
                None
            }
        };
        auths.push(HttpAuth::Basic {
            username: b.value.username.clone().unwrap_or_default(),
            password,
        });
    }
    if let Some(a) = &h.authorization {
        let scheme = a.value.kind.clone().unwrap_or_else(|| "Bearer".into());
        let creds = match (&a.value.credentials, &a.value.credentials_file) {
            (Some(c), None) => SecretSource::Inline(Secret::new(c)),
            (None, Some(f)) => SecretSource::File(f.clone()),
            (None, None) => SecretSource::Inline(Secret::new("")),
            (Some(_), Some(_)) => {
                ctx.err(
                    format!("{path}.authorization"),
                    &a.referenced,
                    ConfigErrorKind::Invalid(
                        "at most one of authorization credentials & credentials_file must be configured"
                            .into(),
                    ),
                );
                SecretSource::Inline(Secret::new(""))
            }
        };
        if scheme.eq_ignore_ascii_case("basic") {
            ctx.err(
                format!("{path}.authorization.type"),
                &a.referenced,
                ConfigErrorKind::Invalid(
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                        .into(),
                ),
            );
        }
        auths.push(HttpAuth::Authorization {
            scheme,
            credentials: creds,
        });
    }
    if let Some(b) = bearer {
        auths.push(HttpAuth::Authorization {
            scheme: "Bearer".into(),
            credentials: b,
        });
    }
    if auths.len() > 1 {
        ctx.err(
            path.clone(),
            &r.referenced,
            ConfigErrorKind::Invalid(
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"
                    .into(),
            ),
        );
    }
    if let Some(p) = &h.proxy_url
        && let Err(e) = check_url(&p.value)
    {
        ctx.err(
            format!("{path}.proxy_url"),
            &p.referenced,
            ConfigErrorKind::Invalid(e),
        );
    }
    HttpConfig {
        auth: auths.into_iter().next(),
        tls: tls(h.tls_config.as_ref()),
        proxy_url: h.proxy_url.as_ref().map(|p| p.value.clone()),
        follow_redirects: h.follow_redirects.unwrap_or(true),
        enable_http2: h.enable_http2.unwrap_or(true),
    }
}

pub(crate) fn url_field(
    ctx: &mut Ctx,
    path: &str,
    field: &str,
    v: &Option<S<String>>,
) -> Option<String> {
    let v = v.as_ref()?;
    if let Err(e) = check_url(&v.value) {
        ctx.err(
            format!("{path}.{field}"),
            &v.referenced,
            ConfigErrorKind::Invalid(e),
        );
    }
    Some(v.value.clone())
}

pub(crate) fn s(v: &Option<String>, default: &str) -> String {
    v.clone().unwrap_or_else(|| default.to_owned())
}

pub(crate) fn pairs(p: &Option<raw::PairList>) -> BTreeMap<String, String> {
    p.iter()
        .flat_map(|l| l.0.iter())
        .map(|(k, v)| (k.value.clone(), v.value.clone()))
        .collect()
}
