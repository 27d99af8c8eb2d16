//! [`PrometheusClient`]: a [`Datasource`] over any Prometheus-compatible HTTP API
//! (Prometheus, VictoriaMetrics, Mimir, Thanos, and Tocsin's embedded store).
//!
//! Queries are sent as `POST` forms (long expressions do not hit URL length limits) to
//! `/api/v1/query` with `time=` the slot timestamp minus `query_offset`, and `timeout=` a margin
//! under the call's deadline so the server reports its own timeout before we give up. A rule
//! group's queries go in one request to `/api/v1/query_batch` when the datasource is a Tocsin
//! node (the first 404/405/501 from it switches the client to one request per query).

pub mod config;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;

use super::{
    Datasource, DatasourceError, InstantQuery, ManyFuture, QueryFuture, QueryOutput, RangeQuery,
    wire,
};
pub use config::{
    Auth, ConfigError, PrometheusConfig, RawBasicAuth, RawPrometheusConfig, RawTlsConfig,
    TlsSettings,
};

/// Part of the deadline kept back from the server's `timeout=` (a quarter, within these
/// bounds): it covers the network and reading the answer, so a server-side timeout arrives as
/// a typed answer before our own deadline.
const SERVER_TIMEOUT_MARGIN_MIN: Duration = Duration::from_millis(100);
const SERVER_TIMEOUT_MARGIN_MAX: Duration = Duration::from_secs(2);

/// A client for one Prometheus-compatible datasource.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    cfg: PrometheusConfig,
    http: reqwest::Client,
    /// `/api/v1/query` and `/api/v1/query_range` under the base URL, parsed once (parsing a
    /// URL per query was a few percent of a worker's CPU).
    query_url: reqwest::Url,
    range_url: reqwest::Url,
    /// `/api/v1/query_batch`: a Tocsin node's embedded store answers a rule group's queries in
    /// one request there.
    batch_url: reqwest::Url,
    /// Set once the datasource answered the batch endpoint with 404, 405 or 501 (it is not a
    /// Tocsin node): from then on every query goes on its own.
    batch_unsupported: Arc<AtomicBool>,
}

impl PrometheusClient {
    /// Builds the client (no connection is made until the first query).
    pub fn new(cfg: PrometheusConfig) -> Result<Self, ConfigError> {
        tocsin_proto::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .default_headers(cfg.headers.clone())
            .redirect(reqwest::redirect::Policy::limited(3));
        for root in &cfg.tls.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if let Some(identity) = &cfg.tls.identity {
            builder = builder.identity(identity.clone());
        }
        let http = builder
            .danger_accept_invalid_certs(cfg.tls.insecure_skip_verify)
            .build()
            .map_err(|e| ConfigError {
                field: "url".into(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        let endpoint = |path: &str| {
            let base = cfg.url.as_str().trim_end_matches('/');
            reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| ConfigError {
                field: "url".into(),
                reason: format!("cannot form {path} under it: {e}"),
            })
        };
        let query_url = endpoint("/api/v1/query")?;
        let range_url = endpoint("/api/v1/query_range")?;
        let batch_url = endpoint("/api/v1/query_batch")?;
        Ok(Self {
            cfg,
            http,
            query_url,
            range_url,
            batch_url,
            batch_unsupported: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether a group's queries still go in one batch request: false once the datasource
    /// answered that it has no batch endpoint (it is not a Tocsin node).
    pub fn batches_queries(&self) -> bool {
        !self.batch_unsupported.load(Ordering::Relaxed)
    }

    /// The validated configuration.
    pub fn config(&self) -> &PrometheusConfig {
        &self.cfg
    }

    fn offset_ms(&self) -> i64 {
        i64::try_from(self.cfg.query_offset.as_millis()).unwrap_or(i64::MAX)
    }

    /// Posts `form` to `url` and reads the answer, all within `timeout` (one timer for the
    /// whole exchange).
    async fn call(
        &self,
        url: &reqwest::Url,
        form: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<QueryOutput, DatasourceError> {
        let req = self.post(url, form);
        let exchange = async {
            let resp = req.send().await.map_err(|e| transport_error(&e, timeout))?;
            let status = resp.status().as_u16();
            let body = read_bounded(resp, self.cfg.response_bytes_max, timeout).await?;
            wire::parse_answer(status, &body, timeout)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(deadline_passed(timeout)),
        }
    }
}

impl PrometheusClient {
    /// A form POST to `url` with the configured authentication.
    fn post(&self, url: &reqwest::Url, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let req = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_encode(form));
        match &self.cfg.auth {
            Some(config::Auth::Basic { username, password }) => {
                req.basic_auth(username, Some(password))
            }
            Some(config::Auth::Bearer(token)) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Asks every query of `qs` (one timestamp) in one `/api/v1/query_batch` request;
    /// `None` when the datasource does not serve that endpoint.
    async fn batch(
        &self,
        qs: &[InstantQuery],
    ) -> Option<Vec<Result<QueryOutput, DatasourceError>>> {
        let timeout = qs.iter().map(|q| q.timeout).max()?;
        let time = format_ts(qs.first()?.ts_ms.saturating_sub(self.offset_ms()));
        let server = server_timeout(timeout);
        let mut form: Vec<(&str, &str)> = qs.iter().map(|q| ("query", q.expr.as_str())).collect();
        form.extend([("time", time.as_str()), ("timeout", server.as_str())]);
        let req = self.post(&self.batch_url, &form);
        let exchange = async {
            let resp = req.send().await.map_err(|e| transport_error(&e, timeout))?;
            let status = resp.status().as_u16();
            if matches!(status, 404 | 405 | 501) {
                return Ok(None);
            }
            let body = read_bounded(resp, self.cfg.response_bytes_max, timeout).await?;
            Ok(Some(wire::parse_batch_answer(
                status,
                &body,
                timeout,
                qs.len(),
            )))
        };
        let answers = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(Some(answers))) => answers,
            Ok(Ok(None)) => {
                self.batch_unsupported.store(true, Ordering::Relaxed);
                tracing::info!(
                    url = %self.batch_url,
                    "the datasource has no batch endpoint (not a Tocsin node); queries go one by one"
                );
                return None;
            }
            Ok(Err(e)) => vec![Err(e); qs.len()],
            Err(_) => vec![Err(deadline_passed(timeout)); qs.len()],
        };
        Some(answers)
    }
}

/// The error for an exchange that outlived its deadline `timeout`.
fn deadline_passed(timeout: Duration) -> DatasourceError {
    DatasourceError::Timeout {
        timeout,
        message: "no complete answer from the datasource before the deadline".into(),
    }
}

/// Reads the body, refusing more than `max` bytes.
async fn read_bounded(
    mut resp: reqwest::Response,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, DatasourceError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(&e, timeout))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(max: usize) -> DatasourceError {
    DatasourceError::InvalidResponse {
        message: format!(
            "answer larger than response_bytes_max ({max} bytes); narrow the query or raise the limit"
        ),
    }
}

fn transport_error(e: &reqwest::Error, timeout: Duration) -> DatasourceError {
    let message = super::error::with_causes(e);
    if e.is_timeout() {
        DatasourceError::Timeout { timeout, message }
    } else {
        DatasourceError::Unavailable { message }
    }
}

/// Formats ms since the epoch as the API's decimal seconds (exact, no float rounding).
pub fn format_ts(t_ms: i64) -> String {
    let sign = if t_ms < 0 { "-" } else { "" };
    let abs = t_ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// The `timeout=` parameter for a call with deadline `timeout`.
fn server_timeout(timeout: Duration) -> String {
    let margin = (timeout / 4).clamp(SERVER_TIMEOUT_MARGIN_MIN, SERVER_TIMEOUT_MARGIN_MAX);
    let ms = timeout.saturating_sub(margin).as_millis();
    format!("{}ms", ms.max(1))
}

/// `application/x-www-form-urlencoded` encoding.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
}

impl Datasource for PrometheusClient {
    fn instant<'a>(&'a self, q: &'a InstantQuery) -> QueryFuture<'a> {
        Box::pin(async move {
            let time = format_ts(q.ts_ms.saturating_sub(self.offset_ms()));
            let timeout = server_timeout(q.timeout);
            let form = [
                ("query", q.expr.as_str()),
                ("time", &time),
                ("timeout", &timeout),
            ];
            self.call(&self.query_url, &form, q.timeout).await
        })
    }

    /// Queries at one timestamp go in one batch request while the datasource serves them
    /// (a Tocsin node); otherwise, or for a single query, each on its own.
    fn instant_many<'a>(&'a self, qs: &'a [InstantQuery]) -> ManyFuture<'a> {
        Box::pin(async move {
            let batchable = qs.len() >= 2
                && !self.batch_unsupported.load(Ordering::Relaxed)
                && qs.windows(2).all(|w| w[0].ts_ms == w[1].ts_ms);
            if batchable && let Some(answers) = self.batch(qs).await {
                return answers;
            }
            futures::future::join_all(qs.iter().map(|q| self.instant(q))).await
        })
    }

    fn range<'a>(&'a self, q: &'a RangeQuery) -> QueryFuture<'a> {
        Box::pin(async move {
            let off = self.offset_ms();
            let (start, end) = (
                format_ts(q.start_ms.saturating_sub(off)),
                format_ts(q.end_ms.saturating_sub(off)),
            );
            let (step, timeout) = (format!("{}ms", q.step_ms), server_timeout(q.timeout));
            let form = [
                ("query", q.expr.as_str()),
                ("start", &start),
                ("end", &end),
                ("step", &step),
                ("timeout", &timeout),
            ];
            self.call(&self.range_url, &form, q.timeout).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_exact_decimal_seconds() {
        assert_eq!(format_ts(1_710_028_800_001), "1710028800.001");
        assert_eq!(format_ts(0), "0.000");
        assert_eq!(format_ts(-1_500), "-1.500");
    }

    #[test]
    fn forms_are_percent_encoded() {
        let f = form_encode(&[("query", "sum(rate(x{a=\"b c\"}[5m])) + 1&")]);
        assert_eq!(
            f,
            "query=sum%28rate%28x%7Ba%3D%22b+c%22%7D%5B5m%5D%29%29+%2B+1%26"
        );
    }

    #[test]
    fn the_server_gets_most_of_the_deadline() {
        assert_eq!(server_timeout(Duration::from_secs(60)), "58000ms");
        assert_eq!(server_timeout(Duration::from_secs(2)), "1500ms");
        assert_eq!(server_timeout(Duration::from_millis(200)), "100ms");
        assert_eq!(server_timeout(Duration::from_micros(10)), "1ms");
    }
}
