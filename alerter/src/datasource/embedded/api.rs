//! The embedded store's HTTP API, in Prometheus's exact JSON shapes: `/api/v1/query`,
//! `/api/v1/query_range`, `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`
//! (GET or form POST), and `POST /api/v1/write` (remote write).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;
use serde_json::{Value as Json, json};

use super::super::wire;
use super::{EmbeddedStore, now_ms};
use crate::datasource::{Datasource, DatasourceError, InstantQuery, QueryOutput, RangeQuery};

/// Request parameters from the query string and, for a form POST, the body (an extractor:
/// the handler's last argument).
struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let mut pairs = req.uri().query().map(form_decode).unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let post_form = req.method() == Method::POST && is_form;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if post_form {
            pairs.extend(form_decode(&String::from_utf8_lossy(&body)));
        }
        Ok(Self(pairs))
    }
}

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all_values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl super::service::QueryTimeoutParam for Params {
    fn timeout(&self) -> Result<Option<Duration>, DatasourceError> {
        self.get("timeout")
            .map(|v| parse_duration("timeout", v))
            .transpose()
    }
}

fn form_decode(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn bad_data(message: impl Into<String>) -> DatasourceError {
    DatasourceError::BadQuery {
        message: message.into(),
    }
}

fn error_response(e: &DatasourceError) -> Response {
    let (_, status) = wire::error_type_and_status(e);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(error_body(e))).into_response()
}

/// The API's error object for `e`.
fn error_body(e: &DatasourceError) -> Json {
    let (error_type, _) = wire::error_type_and_status(e);
    let message = match e {
        DatasourceError::BadQuery { message }
        | DatasourceError::Execution { message }
        | DatasourceError::Unavailable { message }
        | DatasourceError::Canceled { message }
        | DatasourceError::Timeout { message, .. }
        | DatasourceError::Http { message, .. }
        | DatasourceError::InvalidResponse { message } => message.as_str(),
    };
    wire::error_json(error_type, message)
}

fn success(data: Json, warnings: &[String]) -> Response {
    axum::Json(wire::success_json(data, warnings)).into_response()
}

/// A query's answer, written straight into bytes ([`wire::write_success`]): the same body as
/// [`success`] over [`wire::value_json`], without building the JSON tree first.
fn query_success(out: &QueryOutput) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        wire::write_success(&out.value, &out.warnings),
    )
        .into_response()
}

/// A time parameter, as Prometheus takes it: Unix seconds with a fraction (what Grafana and
/// the client send) or RFC 3339 (`2026-11-22T05:00:00Z`, `2026-11-22T06:00:00.5+01:00`).
fn parse_time(name: &str, v: &str) -> Result<i64, DatasourceError> {
    if let Some(secs) = v.parse::<f64>().ok().filter(|s| s.is_finite()) {
        return Ok((secs * 1000.0).round() as i64);
    }
    crate::rfc3339::parse_rfc3339_ms(v).map_err(|_| {
        bad_data(format!(
            "invalid parameter \"{name}\": cannot parse {v:?} to a valid timestamp \
             (give Unix seconds or RFC 3339)"
        ))
    })
}

fn time_or(p: &Params, name: &str, default: i64) -> Result<i64, DatasourceError> {
    p.get(name).map_or(Ok(default), |v| parse_time(name, v))
}

/// A duration parameter: float seconds or a Prometheus duration (`15s`, `1m30s`, `500ms`).
fn parse_duration(name: &str, v: &str) -> Result<Duration, DatasourceError> {
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(Duration::from_secs_f64(secs));
    }
    promql_parser::util::parse_duration(v).map_err(|_| {
        bad_data(format!(
            "invalid parameter \"{name}\": cannot parse {v:?} to a valid duration"
        ))
    })
}

/// `match[]` selectors as sets of matchers (one set per `or` alternative).
fn matcher_sets(p: &Params, required: bool) -> Result<Vec<Vec<Matcher>>, DatasourceError> {
    let mut sets = Vec::new();
    for sel in p.all_values("match[]") {
        let expr = promql_parser::parser::parse(sel)
            .map_err(|e| bad_data(format!("invalid parameter \"match[]\": {e}")))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(bad_data(format!(
                "invalid parameter \"match[]\": {sel:?} is not a series selector"
            )));
        };
        let mut base = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            base.push(Matcher::new(MatchOp::Equal, "__name__", name));
        }
        if vs.matchers.or_matchers.is_empty() {
            sets.push(base);
        } else {
            for alt in &vs.matchers.or_matchers {
                let mut m = base.clone();
                m.extend(alt.iter().cloned());
                sets.push(m);
            }
        }
    }
    if required && sets.is_empty() {
        return Err(bad_data("no match[] parameter provided"));
    }
    Ok(sets)
}

type Svc = State<Arc<EmbeddedStore>>;

/// `expr` at the request's `time` (default now) with its `timeout` (capped by the store's).
fn instant_query(
    svc: &EmbeddedStore,
    p: &Params,
    expr: &str,
) -> Result<InstantQuery, DatasourceError> {
    Ok(InstantQuery {
        expr: expr.into(),
        ts_ms: time_or(p, "time", now_ms())?,
        timeout: svc.query_timeout(p)?,
    })
}

async fn query(State(svc): Svc, p: Params) -> Response {
    let run = async {
        let expr = p
            .get("query")
            .ok_or_else(|| bad_data("no query parameter provided"))?;
        let q = instant_query(&svc, &p, expr)?;
        svc.datasource().instant(&q).await
    };
    match run.await {
        Ok(out) => query_success(&out),
        Err(e) => error_response(&e),
    }
}

/// Most queries one `/api/v1/query_batch` request may carry.
pub const BATCH_QUERIES_MAX: usize = 1_000;

/// `/api/v1/query_batch` (Tocsin's own, not Prometheus's): several `query=` at one `time=`,
/// answered as `{"status":"success","data":[answer, …]}` where each answer is what
/// `/api/v1/query` would have answered (success or error object), in order. A worker asks a
/// rule group's expressions in one round trip instead of one each.
async fn query_batch(State(svc): Svc, p: Params) -> Response {
    let run = async {
        let exprs: Vec<&str> = p.all_values("query").collect();
        if exprs.is_empty() {
            return Err(bad_data("no query parameter provided"));
        }
        if exprs.len() > BATCH_QUERIES_MAX {
            return Err(bad_data(format!(
                "{} queries in one batch; at most {BATCH_QUERIES_MAX}",
                exprs.len()
            )));
        }
        let qs = exprs
            .into_iter()
            .map(|e| instant_query(&svc, &p, e))
            .collect::<Result<Vec<_>, _>>()?;
        // One by one through the gate, so each keeps its slot and its coalescing.
        let gate = svc.datasource();
        Ok(futures::future::join_all(qs.iter().map(|q| gate.instant(q))).await)
    };
    match run.await {
        Ok(answers) => {
            let mut out = b"{\"status\":\"success\",\"data\":[".to_vec();
            for (i, a) in answers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match a {
                    Ok(o) => out.extend_from_slice(&wire::write_success(&o.value, &o.warnings)),
                    Err(e) => out.extend_from_slice(error_body(e).to_string().as_bytes()),
                }
            }
            out.extend_from_slice(b"]}");
            ([(header::CONTENT_TYPE, "application/json")], out).into_response()
        }
        Err(e) => error_response(&e),
    }
}

async fn query_range(State(svc): Svc, p: Params) -> Response {
    let run = async {
        let expr = p
            .get("query")
            .ok_or_else(|| bad_data("no query parameter provided"))?;
        let start_ms = parse_time(
            "start",
            p.get("start")
                .ok_or_else(|| bad_data("no start parameter"))?,
        )?;
        let end_ms = parse_time(
            "end",
            p.get("end").ok_or_else(|| bad_data("no end parameter"))?,
        )?;
        let step = parse_duration(
            "step",
            p.get("step").ok_or_else(|| bad_data("no step parameter"))?,
        )?;
        let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
        let timeout = svc.query_timeout(&p)?;
        let q = RangeQuery {
            expr: expr.into(),
            start_ms,
            end_ms,
            step_ms,
            timeout,
        };
        svc.datasource().range(&q).await
    };
    match run.await {
        Ok(out) => query_success(&out),
        Err(e) => error_response(&e),
    }
}

async fn series(State(svc): Svc, p: Params) -> Response {
    let run = || -> Result<Response, DatasourceError> {
        let sets = matcher_sets(&p, true)?;
        let (start, end) = (
            time_or(&p, "start", i64::MIN)?,
            time_or(&p, "end", i64::MAX)?,
        );
        let max = svc.config().series_result_max;
        let found = svc
            .store()
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .series_labels(&sets, start, end, max + 1);
        let mut warnings = Vec::new();
        if found.len() > max {
            warnings.push(format!("results truncated to {max} series; narrow match[]"));
        }
        let data: Vec<Json> = found
            .iter()
            .take(max)
            .map(|l| Json::Object(l.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
            .collect();
        Ok(success(Json::Array(data), &warnings))
    };
    run().unwrap_or_else(|e| error_response(&e))
}

async fn labels(State(svc): Svc, p: Params) -> Response {
    let run = || -> Result<Response, DatasourceError> {
        let sets = matcher_sets(&p, false)?;
        let (start, end) = (
            time_or(&p, "start", i64::MIN)?,
            time_or(&p, "end", i64::MAX)?,
        );
        let names = svc
            .store()
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .label_names(&sets, start, end);
        Ok(success(json!(names), &[]))
    };
    run().unwrap_or_else(|e| error_response(&e))
}

async fn label_values(State(svc): Svc, Path(name): Path<String>, p: Params) -> Response {
    let run = || -> Result<Response, DatasourceError> {
        if !crate::promql::labels::is_valid_label_name(&name) {
            return Err(bad_data(format!("invalid label name: {name:?}")));
        }
        let sets = matcher_sets(&p, false)?;
        let (start, end) = (
            time_or(&p, "start", i64::MIN)?,
            time_or(&p, "end", i64::MAX)?,
        );
        let values = svc
            .store()
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .label_values(&name, &sets, start, end);
        Ok(success(json!(values), &[]))
    };
    run().unwrap_or_else(|e| error_response(&e))
}

async fn write(State(svc): Svc, body: Bytes) -> Response {
    match svc.remote_write(&body) {
        Ok(summary) if summary.refused == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(summary) => (
            StatusCode::BAD_REQUEST,
            format!(
                "{} of {} samples refused; first: {}\n",
                summary.refused,
                summary.refused + summary.appended,
                summary.first_error.unwrap_or_default()
            ),
        )
            .into_response(),
        Err(e) => {
            let status = match e {
                super::remote_write::RemoteWriteError::TooLarge { .. } => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                _ => StatusCode::BAD_REQUEST,
            };
            (status, format!("{e}\n")).into_response()
        }
    }
}

/// The API router; mount it on the node's HTTP port.
pub fn router(svc: Arc<EmbeddedStore>) -> Router {
    // The write body cap is enforced in `remote_write`; axum's own limit is raised to it so
    // the refusal carries our message.
    let write_limit = svc.config().write_body_bytes_max + 1;
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/query_batch", get(query_batch).post(query_batch))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route(
            "/api/v1/write",
            post(write).layer(DefaultBodyLimit::max(write_limit)),
        )
        .with_state(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_seconds_or_rfc3339() {
        assert_eq!(
            parse_time("time", "1795323600.5").ok(),
            Some(1_795_323_600_500)
        );
        assert_eq!(
            parse_time("time", "2026-11-22T05:00:00.5Z").ok(),
            Some(1_795_323_600_500)
        );
        assert_eq!(
            parse_time("time", "2026-11-22T06:00:00+01:00").ok(),
            Some(1_795_323_600_000)
        );
        let err = parse_time("start", "yesterday").unwrap_err().to_string();
        assert!(
            err.contains("\"start\"") && err.contains("RFC 3339"),
            "{err}"
        );
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let p = form_decode("query=sum%28up%29+%2B+1&match%5B%5D=a&match%5B%5D=b&x");
        assert_eq!(p[0], ("query".into(), "sum(up) + 1".into()));
        assert_eq!(p[1].0, "match[]");
        assert_eq!(p[3], ("x".into(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
