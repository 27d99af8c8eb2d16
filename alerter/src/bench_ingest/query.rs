//! Query latency through the HTTP API: the same instant queries at the same timestamp against
//! our store's `/api/v1/query` and Prometheus's, with the same client, alternately. Beside
//! them, the same query through our store's in-process datasource (engine and store, without
//! HTTP and JSON), to tell where our time goes.

use std::time::Instant;

use reqwest::Url;
use serde_json::Value as Json;

use super::HTTP_TIMEOUT;
use crate::bench_eval::{EXPRESSIONS, line, median, ms, ratio};
use crate::datasource::embedded::EmbeddedStore;
use crate::datasource::{Datasource as _, InstantQuery};
use crate::promql::Value;

/// A plain selector beside [`EXPRESSIONS`]: its cost is mostly reading and encoding series.
const SELECTOR: (&str, &str) = ("selector", "http_requests_total{code=\"500\"}");

/// One answer of `/api/v1/query`.
pub(super) struct Answer {
    /// From sending the request to the last byte of the answer (ms).
    pub ms: f64,
    /// Series (or 1 for a scalar or string) returned.
    pub series: usize,
    /// The answer's `data`.
    pub data: Json,
}

/// One instant query at `ts_ms` (the server's now when `None`).
pub(super) async fn instant(
    client: &reqwest::Client,
    base: &Url,
    expr: &str,
    ts_ms: Option<i64>,
) -> Result<Answer, String> {
    let mut url = base.clone();
    url.set_path("/api/v1/query");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("query", expr);
        if let Some(ts) = ts_ms {
            let time = format!("{}.{:03}", ts.div_euclid(1000), ts.rem_euclid(1000));
            q.append_pair("time", &time);
        }
    }
    let fail = |what: String| format!("{expr} at {base}: {what}");
    let started = Instant::now();
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    let took = ms(started.elapsed());
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let mut answer: Json =
        serde_json::from_slice(&body).map_err(|e| fail(format!("bad JSON: {e}")))?;
    if answer["status"] != "success" {
        return Err(fail(format!("answer {answer}")));
    }
    let data = answer["data"].take();
    let series = match &data["result"] {
        Json::Array(a) if data["resultType"] == "vector" || data["resultType"] == "matrix" => {
            a.len()
        }
        _ => 1,
    };
    Ok(Answer {
        ms: took,
        series,
        data,
    })
}

/// Our store's in-process answer: time (ms) and series.
async fn in_process(store: &EmbeddedStore, expr: &str, ts_ms: i64) -> Result<(f64, usize), String> {
    let q = InstantQuery {
        expr: expr.into(),
        ts_ms,
        timeout: HTTP_TIMEOUT,
    };
    let started = Instant::now();
    let answer = store
        .datasource()
        .instant(&q)
        .await
        .map_err(|e| format!("{expr} in process: {e}"))?;
    let took = ms(started.elapsed());
    let series = match answer.value {
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.len(),
        Value::Scalar { .. } | Value::String { .. } => 1,
    };
    Ok((took, series))
}

/// Times every expression `iterations` times in each API at `ts_ms` (after one untimed
/// round), alternating which goes first, and in our store in process; fails when any two
/// return different numbers of series.
pub(super) async fn compare(
    client: &reqwest::Client,
    (ours, store): (&Url, &EmbeddedStore),
    prom: &Url,
    ts_ms: i64,
    iterations: usize,
    out: &mut String,
) -> Result<(), String> {
    for &(name, expr) in EXPRESSIONS.iter().chain(std::iter::once(&SELECTOR)) {
        let mut o = Vec::with_capacity(iterations);
        let mut p = Vec::with_capacity(iterations);
        let mut e = Vec::with_capacity(iterations);
        let mut series = 0;
        for i in 0..=iterations {
            let (a, b) = if i % 2 == 0 {
                let a = instant(client, ours, expr, Some(ts_ms)).await?;
                (a, instant(client, prom, expr, Some(ts_ms)).await?)
            } else {
                let b = instant(client, prom, expr, Some(ts_ms)).await?;
                (instant(client, ours, expr, Some(ts_ms)).await?, b)
            };
            let (engine_ms, engine_series) = in_process(store, expr, ts_ms).await?;
            if a.series != b.series || engine_series != a.series {
                return Err(format!(
                    "{expr}: Prometheus returned {} series, ours {} (in process {engine_series}): \
                     results differ",
                    b.series, a.series
                ));
            }
            series = a.series;
            if i > 0 {
                o.push(a.ms);
                p.push(b.ms);
                e.push(engine_ms);
            }
        }
        let (o, p, e) = (median(o), median(p), median(e));
        let prefix = format!("query.{name}");
        line(out, &prefix, "series", series as f64, "series");
        line(out, &prefix, "ours_median", o, "ms");
        line(out, &prefix, "prometheus_median", p, "ms");
        line(out, &prefix, "ratio_ours_over_prometheus", ratio(o, p), "x");
        line(out, &prefix, "ours_in_process_median", e, "ms");
    }
    Ok(())
}
