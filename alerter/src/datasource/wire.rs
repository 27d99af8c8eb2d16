//! The Prometheus HTTP API's JSON shapes, read by the client and written by the embedded
//! store's API, so both sides agree on one definition.
//!
//! `{"status":"success","data":{"resultType":"vector","result":[...]},"warnings":[...]}` or
//! `{"status":"error","errorType":"bad_data","error":"..."}`. Sample values are strings
//! (`"1.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`), timestamps are seconds as JSON numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{DatasourceError, QueryOutput};
use crate::promql::{Labels, Point, Sample, Series, Value};

/// Most bytes of a non-API error body quoted in an error message.
const BODY_QUOTE_MAX: usize = 512;

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Json,
}

#[derive(Debug, Deserialize)]
struct ApiSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(Json, String)>,
    #[serde(default)]
    values: Option<Vec<(Json, String)>>,
    #[serde(default)]
    histogram: Option<Json>,
    #[serde(default)]
    histograms: Option<Json>,
}

fn bad(message: impl Into<String>) -> DatasourceError {
    DatasourceError::InvalidResponse {
        message: message.into(),
    }
}

/// Parses a Prometheus API answer. `timeout` is the call's deadline, reported in timeouts.
pub fn parse_answer(
    http_status: u16,
    body: &[u8],
    timeout: Duration,
) -> Result<QueryOutput, DatasourceError> {
    let parsed: Result<ApiResponse, _> = serde_json::from_slice(body);
    let resp = match parsed {
        Ok(r) => r,
        Err(e) => return Err(status_error(http_status, body, &e.to_string())),
    };
    if resp.status != "success" {
        let message = resp.error.unwrap_or_else(|| "no error message".into());
        return Err(api_error(
            resp.error_type.as_deref().unwrap_or(""),
            http_status,
            message,
            timeout,
        ));
    }
    if !(200..300).contains(&http_status) {
        return Err(status_error(
            http_status,
            body,
            "success body with an error status",
        ));
    }
    let data = resp
        .data
        .ok_or_else(|| bad("success answer without `data`"))?;
    let value = parse_data(&data)?;
    Ok(QueryOutput {
        value,
        warnings: resp.warnings,
    })
}

/// Parses the answer to `/api/v1/query_batch` of `n` queries: one result per query, in order.
/// An error for the whole request (or an envelope that does not hold `n` answers) is every
/// query's error.
pub fn parse_batch_answer(
    http_status: u16,
    body: &[u8],
    timeout: Duration,
    n: usize,
) -> Vec<Result<QueryOutput, DatasourceError>> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        status: String,
        #[serde(borrow, default)]
        data: Option<Vec<&'a serde_json::value::RawValue>>,
    }
    let answers = match serde_json::from_slice::<Envelope<'_>>(body) {
        Ok(Envelope {
            status,
            data: Some(answers),
        }) if status == "success" && (200..300).contains(&http_status) => answers,
        // The request's own error (bad form, too many queries) in the API's error shape.
        Ok(_) | Err(_) => {
            let err = match parse_answer(http_status, body, timeout) {
                Err(e) => e,
                Ok(_) => bad("batch answer without a list of answers"),
            };
            return vec![Err(err); n];
        }
    };
    if answers.len() != n {
        let err = bad(format!(
            "batch answer holds {} answers for {n} queries",
            answers.len()
        ));
        return vec![Err(err); n];
    }
    answers
        .into_iter()
        .map(|a| parse_answer(200, a.get().as_bytes(), timeout))
        .collect()
}

/// Maps a Prometheus `errorType` to the typed error.
fn api_error(
    error_type: &str,
    http_status: u16,
    message: String,
    timeout: Duration,
) -> DatasourceError {
    match error_type {
        "bad_data" => DatasourceError::BadQuery { message },
        "execution" => DatasourceError::Execution { message },
        "timeout" => DatasourceError::Timeout { timeout, message },
        "canceled" => DatasourceError::Canceled { message },
        "unavailable" => DatasourceError::Unavailable { message },
        _ => DatasourceError::Http {
            status: http_status,
            message: format!("{error_type}: {message}"),
        },
    }
}

/// Maps an answer that is not the API's JSON by its HTTP status.
fn status_error(http_status: u16, body: &[u8], why: &str) -> DatasourceError {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_QUOTE_MAX)]).into_owned();
    match http_status {
        400 => DatasourceError::BadQuery { message: text },
        422 => DatasourceError::Execution { message: text },
        503 => DatasourceError::Unavailable { message: text },
        200..=299 => bad(format!("{why}; body starts {text:?}")),
        status => DatasourceError::Http {
            status,
            message: text,
        },
    }
}

fn parse_data(data: &ApiData) -> Result<Value, DatasourceError> {
    match data.result_type.as_str() {
        "scalar" => {
            let (t, v) = parse_pair(&data.result)?;
            Ok(Value::Scalar {
                t,
                v: parse_float(&v)?,
            })
        }
        "string" => {
            let (t, s) = parse_pair(&data.result)?;
            Ok(Value::String { t, s })
        }
        "vector" => {
            let series = series_list(&data.result)?;
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                no_histograms(&s)?;
                let (t, v) = s
                    .value
                    .ok_or_else(|| bad("vector element without `value`"))?;
                out.push(Sample {
                    labels: Labels::from_pairs(s.metric),
                    t: parse_ts(&t)?,
                    v: parse_float(&v)?,
                });
            }
            Ok(Value::Vector(out))
        }
        "matrix" => {
            let series = series_list(&data.result)?;
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                no_histograms(&s)?;
                let values = s
                    .values
                    .ok_or_else(|| bad("matrix element without `values`"))?;
                let points = values
                    .iter()
                    .map(|(t, v)| {
                        Ok(Point {
                            t: parse_ts(t)?,
                            v: parse_float(v)?,
                        })
                    })
                    .collect::<Result<Vec<_>, DatasourceError>>()?;
                out.push(Series {
                    labels: Labels::from_pairs(s.metric),
                    points,
                });
            }
            Ok(Value::Matrix(out))
        }
        other => Err(bad(format!("unknown resultType `{other}`"))),
    }
}

fn no_histograms(s: &ApiSeries) -> Result<(), DatasourceError> {
    if s.histogram.is_some() || s.histograms.is_some() {
        return Err(bad("native histogram samples are not supported"));
    }
    Ok(())
}

fn series_list(result: &Json) -> Result<Vec<ApiSeries>, DatasourceError> {
    Vec::<ApiSeries>::deserialize(result).map_err(|e| bad(format!("result: {e}")))
}

fn parse_pair(result: &Json) -> Result<(i64, String), DatasourceError> {
    let (t, v) = <(Json, String)>::deserialize(result).map_err(|e| bad(format!("result: {e}")))?;
    Ok((parse_ts(&t)?, v))
}

/// Seconds (a JSON number, or a string as some Prometheus-compatible servers send) to ms.
fn parse_ts(t: &Json) -> Result<i64, DatasourceError> {
    let secs = match t {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite())
    .ok_or_else(|| bad(format!("bad timestamp {t}")))?;
    Ok((secs * 1000.0).round() as i64)
}

/// Parses a sample value as Prometheus writes it (Go's `strconv.FormatFloat`).
pub fn parse_float(s: &str) -> Result<f64, DatasourceError> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .map_err(|_| bad(format!("bad sample value {s:?}"))),
    }
}

/// Formats a sample value as Prometheus does (`'f'` format, shortest exact digits).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A timestamp in ms as the API's seconds number, printed as Prometheus prints it
/// (`1710028800`, `1710028800.5`: shortest exact digits, no trailing `.0`).
pub fn ts_json(t_ms: i64) -> Json {
    if t_ms % 1000 == 0 {
        json!(t_ms / 1000)
    } else {
        json!(t_ms as f64 / 1000.0)
    }
}

fn pair_json(t_ms: i64, v: f64) -> Json {
    json!([ts_json(t_ms), format_float(v)])
}

fn metric_json(labels: &Labels) -> Json {
    let map: serde_json::Map<String, Json> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
        .collect();
    Json::Object(map)
}

/// The `data` object of a successful query answer.
pub fn value_json(value: &Value) -> Json {
    match value {
        Value::Scalar { t, v } => json!({"resultType": "scalar", "result": pair_json(*t, *v)}),
        Value::String { t, s } => {
            json!({"resultType": "string", "result": [ts_json(*t), s]})
        }
        Value::Vector(samples) => {
            let result: Vec<Json> = samples
                .iter()
                .map(|s| json!({"metric": metric_json(&s.labels), "value": pair_json(s.t, s.v)}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        Value::Matrix(series) => {
            let result: Vec<Json> = series
                .iter()
                .map(|s| {
                    let values: Vec<Json> = s.points.iter().map(|p| pair_json(p.t, p.v)).collect();
                    json!({"metric": metric_json(&s.labels), "values": values})
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}

/// A success envelope around `data`.
pub fn success_json(data: Json, warnings: &[String]) -> Json {
    if warnings.is_empty() {
        json!({"status": "success", "data": data})
    } else {
        json!({"status": "success", "data": data, "warnings": warnings})
    }
}

/// A successful query answer written straight into bytes: the same bytes as
/// `success_json(value_json(value), warnings).to_string()`, without building the JSON tree
/// (for thousands of series the tree and its serialization cost more than the query).
///
/// Keys come in `serde_json`'s order (sorted: `data`, `status`, `warnings`; `result`,
/// `resultType`; `metric`, `value(s)`), label names in [`Labels`]' order (also sorted).
pub fn write_success(value: &Value, warnings: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(answer_capacity(value));
    out.extend_from_slice(b"{\"data\":{\"result\":");
    let result_type = match value {
        Value::Scalar { t, v } => {
            write_pair(&mut out, *t, *v);
            "scalar"
        }
        Value::String { t, s } => {
            out.push(b'[');
            write_ts(&mut out, *t);
            out.push(b',');
            write_str(&mut out, s);
            out.push(b']');
            "string"
        }
        Value::Vector(samples) => {
            out.push(b'[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_metric(&mut out, &s.labels);
                out.extend_from_slice(b",\"value\":");
                write_pair(&mut out, s.t, s.v);
                out.push(b'}');
            }
            out.push(b']');
            "vector"
        }
        Value::Matrix(series) => {
            out.push(b'[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_metric(&mut out, &s.labels);
                out.extend_from_slice(b",\"values\":[");
                for (j, p) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_pair(&mut out, p.t, p.v);
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
            "matrix"
        }
    };
    out.extend_from_slice(b",\"resultType\":\"");
    out.extend_from_slice(result_type.as_bytes());
    out.extend_from_slice(b"\"},\"status\":\"success\"");
    if !warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":[");
        for (i, w) in warnings.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, w);
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// A first guess at an answer's size, so the buffer seldom grows: ~64 bytes of labels per
/// series and ~32 bytes per point.
fn answer_capacity(value: &Value) -> usize {
    match value {
        Value::Scalar { .. } => 96,
        Value::String { s, .. } => 96 + s.len() * 2,
        Value::Vector(samples) => 64 + samples.len() * 128,
        Value::Matrix(series) => {
            64 + series
                .iter()
                .map(|s| 96 + s.points.len() * 32)
                .sum::<usize>()
        }
    }
}

/// `{"metric":{"name":"value",...}` (the series object left open).
fn write_metric(out: &mut Vec<u8>, labels: &Labels) {
    out.extend_from_slice(b"{\"metric\":{");
    for (i, (n, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, n);
        out.push(b':');
        write_str(out, v);
    }
    out.push(b'}');
}

/// `[seconds,"value"]`.
fn write_pair(out: &mut Vec<u8>, t_ms: i64, v: f64) {
    out.push(b'[');
    write_ts(out, t_ms);
    out.extend_from_slice(b",\"");
    write_float(out, v);
    out.extend_from_slice(b"\"]");
}

/// [`format_float`] into `out`.
fn write_float(out: &mut Vec<u8>, v: f64) {
    use std::io::Write as _;
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if v == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        // Writing into a `Vec` cannot fail.
        let _ = write!(out, "{v}");
    }
}

/// Below this many ms (2^51, the year 73,000), `t_ms as f64 / 1000.0` is the double nearest
/// to `s.mmm` and its spacing is under 2^-10 s, so no other decimal of 3 digits or fewer lies
/// within its rounding interval: its shortest round-trip digits (what `serde_json` prints,
/// via ryu, without exponent below 1e16) are exactly `s.mmm` without trailing zeros.
const TS_EXACT_MS_MAX: u64 = 1 << 51;

/// [`ts_json`] into `out`: whole seconds as an integer, else seconds with up to 3 decimals.
fn write_ts(out: &mut Vec<u8>, t_ms: i64) {
    if t_ms % 1000 == 0 {
        write_int(out, t_ms / 1000);
        return;
    }
    let abs = t_ms.unsigned_abs();
    if abs >= TS_EXACT_MS_MAX {
        // Far outside any real timestamp: let serde_json print it as `ts_json` does.
        let _ = serde_json::to_writer(&mut *out, &ts_json(t_ms));
        return;
    }
    if t_ms < 0 {
        out.push(b'-');
    }
    write_uint(out, abs / 1000);
    let mut frac = abs % 1000;
    let mut digits = 3;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    out.push(b'.');
    let mut buf = [b'0'; 3];
    for slot in buf[..digits].iter_mut().rev() {
        *slot = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    out.extend_from_slice(&buf[..digits]);
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_uint(out, n.unsigned_abs());
}

fn write_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A JSON string as `serde_json` writes it: `"` and `\` escaped, the control characters
/// `\b \f \n \r \t` by name and the others as `\u00XX` (lowercase hex), everything else
/// (non-ASCII and DEL included) as is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The `errorType` and HTTP status Prometheus uses for `e`.
pub fn error_type_and_status(e: &DatasourceError) -> (&'static str, u16) {
    match e {
        DatasourceError::BadQuery { .. } => ("bad_data", 400),
        DatasourceError::Execution { .. } => ("execution", 422),
        DatasourceError::Timeout { .. } => ("timeout", 503),
        DatasourceError::Canceled { .. } => ("canceled", 503),
        DatasourceError::Unavailable { .. } => ("unavailable", 503),
        DatasourceError::Http { .. } | DatasourceError::InvalidResponse { .. } => ("internal", 500),
    }
}

/// An error envelope.
pub fn error_json(error_type: &str, message: &str) -> Json {
    json!({"status": "error", "errorType": error_type, "error": message})
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
