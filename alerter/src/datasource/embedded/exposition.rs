//! A parser for the Prometheus text exposition format (0.0.4) and OpenMetrics text (1.0),
//! as served by exporters' `/metrics`.
//!
//! Only what ingestion needs is kept: metric name, labels, value and optional timestamp.
//! `# HELP`/`# TYPE`/`# UNIT` lines and exemplars are skipped. Bounded: parsing stops with an
//! error past `series_max` samples, so a target serving a million series cannot flood the store.
//!
//! Two levels: [`samples`] finds each line's series text, value and timestamp without
//! allocating, and [`series_labels`] builds a series' [`Labels`] from its text. A scrape loop
//! builds labels only for series texts it has not seen before (see `scrape::TargetState`);
//! [`parse`] does both for every line.

use std::collections::BTreeSet;

use super::super::wire::parse_float;
use crate::promql::Labels;

/// Which text format a body is in (from the response's `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps are integer milliseconds.
    PrometheusText,
    /// `application/openmetrics-text`: timestamps are seconds, `# EOF` ends the body.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header names; anything else is read as Prometheus text.
    pub fn from_content_type(content_type: &str) -> Self {
        if content_type
            .trim_start()
            .starts_with("application/openmetrics-text")
        {
            Self::OpenMetrics
        } else {
            Self::PrometheusText
        }
    }
}

/// One exposed sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedSample {
    /// Name and labels.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// The exposed timestamp (ms), if the exporter gave one.
    pub t_ms: Option<i64>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpositionError {
    /// A line is not valid exposition text.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// More samples than allowed in one scrape.
    #[error("more than {limit} samples in one scrape (sample_limit)")]
    TooManySamples {
        /// The cap.
        limit: usize,
    },
}

/// One sample line of a body, as written: found without allocating, its labels left unparsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSample<'a> {
    /// The metric name and label set exactly as written (`name` or `name{a="b",...}`); a
    /// scrape target's key for the series ([`series_labels`] reads it).
    pub series: &'a str,
    /// The value.
    pub value: f64,
    /// The exposed timestamp (ms), if the exporter gave one.
    pub t_ms: Option<i64>,
    /// 1-based line number, for errors.
    pub line: usize,
}

/// The sample lines of a body in order (see [`samples`]).
#[derive(Debug, Clone)]
pub struct Samples<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    format: Format,
}

/// The sample lines of `text`, each with its series text, value and timestamp. Comments and
/// blank lines are skipped, OpenMetrics stops at `# EOF`; a line that is not a sample is an
/// error (and ends the body). The label set itself is only checked by [`series_labels`].
pub fn samples(text: &str, format: Format) -> Samples<'_> {
    Samples {
        lines: text.lines().enumerate(),
        format,
    }
}

impl<'a> Iterator for Samples<'a> {
    type Item = Result<RawSample<'a>, ExpositionError>;

    fn next(&mut self) -> Option<Self::Item> {
        for (i, raw) in self.lines.by_ref() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                if self.format == Format::OpenMetrics && line == "# EOF" {
                    break;
                }
                continue;
            }
            let sample =
                raw_sample(line, self.format, i + 1).map_err(|reason| ExpositionError::Syntax {
                    line: i + 1,
                    reason,
                });
            if sample.is_err() {
                // Nothing after a bad line is read.
                self.lines = "".lines().enumerate();
            }
            return Some(sample);
        }
        self.lines = "".lines().enumerate();
        None
    }
}

/// Parses a whole body. Samples with the same label set keep the first occurrence.
pub fn parse(
    text: &str,
    format: Format,
    samples_max: usize,
) -> Result<Vec<ExposedSample>, ExpositionError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for sample in samples(text, format) {
        let sample = sample?;
        let labels = series_labels(sample.series).map_err(|reason| ExpositionError::Syntax {
            line: sample.line,
            reason,
        })?;
        if !seen.insert(labels.clone()) {
            continue;
        }
        if out.len() >= samples_max {
            return Err(ExpositionError::TooManySamples { limit: samples_max });
        }
        out.push(ExposedSample {
            labels,
            value: sample.value,
            t_ms: sample.t_ms,
        });
    }
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Where the metric name at the start of `line` ends (0: there is none).
fn name_end(line: &str) -> usize {
    line.char_indices()
        .find(|(i, c)| {
            if *i == 0 {
                !is_name_start(*c)
            } else {
                !is_name_char(*c)
            }
        })
        .map_or(line.len(), |(i, _)| i)
}

/// Where the label set opening `s` (at its `{`) ends, past its `}`: the first `}` outside a
/// quoted value (whose `\` escapes the next character). Whether the set is well-formed is
/// [`series_labels`]' business.
fn label_set_end(s: &str) -> Result<usize, String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match (quoted, b) {
            _ if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => quoted = false,
            (false, b'"') => quoted = true,
            (false, b'}') => return Ok(i + 1),
            _ => {}
        }
    }
    Err("unterminated label set".into())
}

/// A sample line's parts; the series text is only delimited here.
fn raw_sample(line: &str, format: Format, line_no: usize) -> Result<RawSample<'_>, String> {
    let name_end = name_end(line);
    if name_end == 0 {
        return Err("expected a metric name".into());
    }
    let series_end = if line[name_end..].starts_with('{') {
        name_end + label_set_end(&line[name_end..])?
    } else {
        name_end
    };
    // OpenMetrics exemplars follow ` # `.
    let rest = line[series_end..].split(" # ").next().unwrap_or_default();
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("expected a value")?;
    let value = parse_float(value).map_err(|_| format!("bad value {value:?}"))?;
    let t_ms = match fields.next() {
        None => None,
        Some(ts) => Some(parse_timestamp(ts, format)?),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(RawSample {
        series: &line[..series_end],
        value,
        t_ms,
        line: line_no,
    })
}

/// The label set of a [`RawSample::series`] text, its metric name as `__name__`: label
/// names must be valid and distinct, values quoted with `\\`, `\"` and `\n` escapes.
pub fn series_labels(series: &str) -> Result<Labels, String> {
    let name_end = name_end(series);
    if name_end == 0 {
        return Err("expected a metric name".into());
    }
    let mut pairs = vec![("__name__".to_string(), series[..name_end].to_string())];
    let mut rest = &series[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut pairs)?;
    }
    if !rest.is_empty() {
        return Err(format!("unexpected {:?} after the labels", truncate(rest)));
    }
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err("duplicate label name".into());
    }
    Ok(Labels::from_pairs(pairs))
}

/// Parses `name="value",...}` and returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, pairs: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let end = s
            .find(|c: char| !is_name_char(c))
            .ok_or("unterminated label set")?;
        let name = &s[..end];
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(format!("bad label name at {:?}", truncate(s)));
        }
        s = s[end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or("expected `=` after a label name")?;
        s = s.trim_start();
        s = s
            .strip_prefix('"')
            .ok_or("expected `\"` to open a label value")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        pairs.push((name.to_string(), value));
        s = s[close + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label".into());
        }
    }
}

fn truncate(s: &str) -> &str {
    let end = s.char_indices().nth(20).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

fn parse_timestamp(ts: &str, format: Format) -> Result<i64, String> {
    let bad = || format!("bad timestamp {ts:?}");
    match format {
        Format::PrometheusText => ts.parse::<i64>().map_err(|_| bad()),
        Format::OpenMetrics => {
            let secs: f64 = ts.parse().map_err(|_| bad())?;
            if !secs.is_finite() {
                return Err(bad());
            }
            Ok((secs * 1000.0).round() as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_with_labels_escapes_and_special_values() {
        let body = "# HELP x help\n# TYPE x gauge\nx 1\n\
            y{a=\"b\",c=\"q\\\"u\\\\o\\nte\",} NaN 1700000000123\n\
            z{le=\"+Inf\"} +Inf\nw -Inf\n";
        let got = parse(body, Format::PrometheusText, 10).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].labels, Labels::from_pairs([("__name__", "x")]));
        assert_eq!(got[1].labels.get("c"), "q\"u\\o\nte");
        assert!(got[1].value.is_nan());
        assert_eq!(got[1].t_ms, Some(1_700_000_000_123));
        assert_eq!(got[2].value, f64::INFINITY);
        assert_eq!(got[3].value, f64::NEG_INFINITY);
    }

    #[test]
    fn openmetrics_timestamps_exemplars_and_eof() {
        let body = "# TYPE c counter\nc_total{a=\"1\"} 5 1700000000.5 # {trace_id=\"x\"} 1 1.0\n\
            # EOF\nignored 1\n";
        let got = parse(body, Format::OpenMetrics, 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].t_ms, Some(1_700_000_000_500));
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0"),
            Format::OpenMetrics
        );
    }

    #[test]
    fn garbage_and_floods_are_refused_with_the_line() {
        for bad in [
            "<html>",
            "x{a=\"1\" 1",
            "x{a=1} 1",
            "x one",
            "x 1 2 3",
            "x{a=\"1\",a=\"2\"} 1",
        ] {
            let err = parse(bad, Format::PrometheusText, 10).unwrap_err();
            assert!(
                matches!(err, ExpositionError::Syntax { line: 1, .. }),
                "{bad}: {err}"
            );
        }
        let flood: String = (0..100).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
        assert_eq!(
            parse(&flood, Format::PrometheusText, 50).unwrap_err(),
            ExpositionError::TooManySamples { limit: 50 }
        );
    }
}
