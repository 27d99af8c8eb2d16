//! Configuration of a Prometheus-compatible datasource: the raw serde form and the validated
//! form the client is built from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// Default cap on one answer's body: a 10M-point matrix is ~300 MB of JSON; 64 MiB holds ~2M
/// points, far more than any rule needs, and keeps one answer from exhausting memory.
pub const DEFAULT_RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Default bound on establishing a TCP connection.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Largest accepted `query_offset_ms`: Prometheus rules allow any offset, but one beyond a day
/// is almost certainly a unit mistake (seconds given as milliseconds the other way round).
pub const QUERY_OFFSET_MS_MAX: u64 = 24 * 3600 * 1000;

/// A configuration error naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("datasource config `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field (dotted path).
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Basic-auth credentials as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// TLS towards an `https` datasource as written in the configuration (like Prometheus's
/// `tls_config`). Without it, `https` uses the system's trusted roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsConfig {
    /// PEM file of the CA certificates that sign the server's certificate (added to the
    /// system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate, for servers that require one (mutual TLS).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only: anyone on the path can read the queries).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A Prometheus-compatible datasource as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrometheusConfig {
    /// Base URL of the API, without `/api/v1` (for example `http://prom:9090` or
    /// `http://mimir/prometheus`).
    pub url: String,
    /// Evaluate every query this much earlier than asked, so late-arriving samples (remote
    /// write, federation) are in before rules read them; like Prometheus's rule `query_offset`.
    #[serde(default)]
    pub query_offset_ms: u64,
    /// Bound on establishing a connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Largest answer body accepted, in bytes.
    #[serde(default = "default_response_bytes_max")]
    pub response_bytes_max: u64,
    /// HTTP basic auth; exclusive with `bearer_token`.
    #[serde(default)]
    pub basic_auth: Option<RawBasicAuth>,
    /// `Authorization: Bearer` token; exclusive with `basic_auth`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Extra headers sent with every request (for example `X-Scope-OrgID` for Mimir).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS settings for an `https` URL.
    #[serde(default)]
    pub tls: Option<RawTlsConfig>,
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

fn default_response_bytes_max() -> u64 {
    DEFAULT_RESPONSE_BYTES_MAX
}

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password (never printed).
        password: String,
    },
    /// Bearer token (never printed).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

/// Validated TLS settings: the certificates are read and parsed when the configuration is.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Extra trusted roots.
    pub roots: Vec<reqwest::Certificate>,
    /// The client's certificate and key.
    pub identity: Option<reqwest::Identity>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// A validated Prometheus-compatible datasource configuration.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Base URL, without a trailing slash in its path.
    pub url: Url,
    /// Subtracted from every evaluation timestamp.
    pub query_offset: Duration,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Largest answer body accepted, in bytes.
    pub response_bytes_max: usize,
    /// Authentication, if any.
    pub auth: Option<Auth>,
    /// Extra headers for every request.
    pub headers: HeaderMap,
    /// TLS settings (`https` only).
    pub tls: TlsSettings,
}

impl RawPrometheusConfig {
    /// A configuration with only the URL set and every other field at its default.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            query_offset_ms: 0,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            response_bytes_max: DEFAULT_RESPONSE_BYTES_MAX,
            basic_auth: None,
            bearer_token: None,
            headers: BTreeMap::new(),
            tls: None,
        }
    }

    /// Checks every field; the error names the field and the fix.
    pub fn validate(&self) -> Result<PrometheusConfig, ConfigError> {
        let mut url = Url::parse(&self.url).map_err(|e| {
            invalid(
                "url",
                format!("{e}; give an absolute URL like http://prometheus:9090"),
            )
        })?;
        let tls = match (url.scheme(), &self.tls) {
            ("http", None) => TlsSettings::default(),
            ("http", Some(_)) => {
                return Err(invalid(
                    "tls",
                    "set only for an https url (this one is http)",
                ));
            }
            ("https", raw) => raw
                .as_ref()
                .map_or(Ok(TlsSettings::default()), validate_tls)?,
            (other, _) => {
                return Err(invalid(
                    "url",
                    format!("scheme `{other}` is not supported; use http or https"),
                ));
            }
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("url", "must not have a query string or fragment"));
        }
        let path = url.path().trim_end_matches('/').to_string();
        if path.ends_with("/api/v1") {
            return Err(invalid(
                "url",
                "give the base URL without `/api/v1` (it is appended per request)",
            ));
        }
        url.set_path(&path);
        if self.query_offset_ms > QUERY_OFFSET_MS_MAX {
            return Err(invalid(
                "query_offset_ms",
                format!(
                    "{} ms exceeds one day; the value is in milliseconds",
                    self.query_offset_ms
                ),
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(invalid("connect_timeout_ms", "must be positive"));
        }
        let response_bytes_max = usize::try_from(self.response_bytes_max)
            .ok()
            .filter(|n| *n >= 1024)
            .ok_or_else(|| invalid("response_bytes_max", "must be at least 1024"))?;
        let auth = match (&self.basic_auth, &self.bearer_token) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "bearer_token",
                    "set either basic_auth or bearer_token, not both",
                ));
            }
            (Some(b), None) if b.username.is_empty() => {
                return Err(invalid("basic_auth.username", "must not be empty"));
            }
            (Some(b), None) => Some(Auth::Basic {
                username: b.username.clone(),
                password: b.password.clone(),
            }),
            (None, Some(t)) if t.is_empty() || HeaderValue::from_str(t).is_err() => {
                return Err(invalid("bearer_token", "must be non-empty printable ASCII"));
            }
            (None, Some(t)) => Some(Auth::Bearer(t.clone())),
            (None, None) => None,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&field, "not a valid HTTP header name"))?;
            if n == AUTHORIZATION {
                return Err(invalid(&field, "use basic_auth or bearer_token instead"));
            }
            let v = HeaderValue::from_str(value)
                .map_err(|_| invalid(&field, "value must be printable ASCII"))?;
            headers.insert(n, v);
        }
        Ok(PrometheusConfig {
            url,
            query_offset: Duration::from_millis(self.query_offset_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            response_bytes_max,
            auth,
            headers,
            tls,
        })
    }
}

fn read_pem(field: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))
}

fn validate_tls(raw: &RawTlsConfig) -> Result<TlsSettings, ConfigError> {
    let mut roots = Vec::new();
    if let Some(path) = &raw.ca_file {
        let pem = read_pem("tls.ca_file", path)?;
        roots = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                invalid(
                    "tls.ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                )
            })?;
    }
    let identity = match (&raw.cert_file, &raw.key_file) {
        (None, None) => None,
        (Some(_), None) => return Err(invalid("tls.key_file", "required with tls.cert_file")),
        (None, Some(_)) => return Err(invalid("tls.cert_file", "required with tls.key_file")),
        (Some(cert), Some(key)) => {
            let mut pem = read_pem("tls.cert_file", cert)?;
            pem.push(b'\n');
            pem.extend(read_pem("tls.key_file", key)?);
            Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                invalid(
                    "tls.cert_file",
                    format!(
                        "{} and {} are not a PEM certificate and its key: {e}",
                        cert.display(),
                        key.display()
                    ),
                )
            })?)
        }
    };
    Ok(TlsSettings {
        roots,
        identity,
        insecure_skip_verify: raw.insecure_skip_verify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(raw: RawPrometheusConfig) -> String {
        raw.validate().unwrap_err().field
    }

    #[test]
    fn defaults_apply_and_a_trailing_slash_is_dropped() {
        let raw: RawPrometheusConfig =
            serde_json::from_str(r#"{"url":"http://prom:9090/prefix/"}"#).unwrap();
        let cfg = raw.validate().unwrap();
        assert_eq!(cfg.url.as_str(), "http://prom:9090/prefix");
        assert_eq!(cfg.response_bytes_max as u64, DEFAULT_RESPONSE_BYTES_MAX);
        assert!(cfg.auth.is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<RawPrometheusConfig>(r#"{"url":"http://p","tiemout":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("tiemout"), "{err}");
    }

    #[test]
    fn each_invalid_field_is_named() {
        let base = RawPrometheusConfig::with_url("http://prom:9090");
        assert_eq!(
            field_of(RawPrometheusConfig::with_url("prom:9090 x")),
            "url"
        );
        assert_eq!(field_of(RawPrometheusConfig::with_url("ftp://prom")), "url");
        assert_eq!(
            field_of(RawPrometheusConfig::with_url("http://p/api/v1")),
            "url"
        );
        assert_eq!(
            field_of(RawPrometheusConfig {
                query_offset_ms: QUERY_OFFSET_MS_MAX + 1,
                ..base.clone()
            }),
            "query_offset_ms"
        );
        assert_eq!(
            field_of(RawPrometheusConfig {
                basic_auth: Some(RawBasicAuth {
                    username: "u".into(),
                    password: "p".into()
                }),
                bearer_token: Some("t".into()),
                ..base.clone()
            }),
            "bearer_token"
        );
        let mut headers = BTreeMap::new();
        headers.insert("Authorization".to_string(), "x".to_string());
        assert_eq!(
            field_of(RawPrometheusConfig {
                headers,
                ..base.clone()
            }),
            "headers.Authorization"
        );
        let mut headers = BTreeMap::new();
        headers.insert("bad header".to_string(), "x".to_string());
        assert_eq!(
            field_of(RawPrometheusConfig { headers, ..base }),
            "headers.bad header"
        );
    }

    #[test]
    fn tls_fields_are_checked_and_named() {
        let https = RawPrometheusConfig::with_url("https://prom:9090");
        let cfg = https.validate().unwrap();
        assert!(cfg.tls.roots.is_empty() && cfg.tls.identity.is_none());
        let with = |tls: RawTlsConfig| RawPrometheusConfig {
            tls: Some(tls),
            ..https.clone()
        };
        assert_eq!(
            field_of(RawPrometheusConfig {
                tls: Some(RawTlsConfig::default()),
                ..RawPrometheusConfig::with_url("http://prom:9090")
            }),
            "tls"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = with(RawTlsConfig {
            ca_file: Some(missing),
            ..RawTlsConfig::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "tls.ca_file");
        assert!(err.reason.contains("cannot read"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        assert_eq!(
            field_of(with(RawTlsConfig {
                ca_file: Some(garbage.clone()),
                ..RawTlsConfig::default()
            })),
            "tls.ca_file"
        );
        assert_eq!(
            field_of(with(RawTlsConfig {
                cert_file: Some(garbage.clone()),
                ..RawTlsConfig::default()
            })),
            "tls.key_file"
        );
        assert_eq!(
            field_of(with(RawTlsConfig {
                cert_file: Some(garbage.clone()),
                key_file: Some(garbage),
                ..RawTlsConfig::default()
            })),
            "tls.cert_file"
        );
        assert_eq!(field_of(RawPrometheusConfig::with_url("ftp://prom")), "url");
    }

    #[test]
    fn secrets_are_not_printed() {
        let auth = Auth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer("tok".into())).contains("tok"));
    }
}
