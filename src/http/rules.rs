//! `GET|PUT|DELETE /api/v1/rules`: the replicated rule set.
//!
//! A rule file is validated in full (every error reported, with positions) before anything is
//! proposed; a refused file changes nothing. Each valid group is stored as a one-group rule
//! file in canonical JSON (valid YAML), so every worker parses exactly the same text with the
//! same parser. Writes on a follower are forwarded to the leader by the store client.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value as J, json};
use tocsin_alerter::rules::duration::format_duration;
use tocsin_alerter::rules::{Rule, RuleError, RuleFile, RuleGroup, parse_rule_file};
use tocsin_proto::ServiceError;
use tocsin_state::model::{
    Command, CommandError, GroupKey, Query, QueryResult, RuleGroupRecord, RuleNamespace,
    ShardLayout,
};

use super::AppState;

/// Prometheus's default `evaluation_interval`, used for groups without `interval`.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(60);
/// Largest accepted request body (the rule-file size limit).
pub const MAX_BODY_BYTES: usize = tocsin_alerter::rules::MAX_RULE_FILE_BYTES as usize;

/// An API error as JSON: `{"error": "...", "errors": [...]}`.
pub fn api_error(status: StatusCode, message: impl Into<String>, details: Vec<J>) -> Response {
    (
        status,
        Json(json!({"error": message.into(), "errors": details})),
    )
        .into_response()
}

/// Maps a store error to an HTTP answer.
pub fn store_error(e: ServiceError) -> Response {
    let status = match &e {
        ServiceError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        ServiceError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    api_error(status, e.to_string(), vec![])
}

fn rule_error_json(e: &RuleError) -> J {
    json!({
        "file": e.file, "line": e.line, "column": e.column,
        "group": e.group, "rule": e.rule.as_ref().map(|r| json!({"index": r.index, "name": r.name})),
        "message": e.to_string(),
    })
}

/// Checks a namespace name; the error is the answer to send.
fn valid_namespace(ns: &str) -> Result<(), Box<Response>> {
    let ok = !ns.is_empty()
        && ns.len() <= 128
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Box::new(api_error(
            StatusCode::BAD_REQUEST,
            format!("invalid namespace {ns:?}: use 1-128 characters of [A-Za-z0-9._-]"),
            vec![],
        )))
    }
}

/// One group as canonical JSON rule-file text.
pub fn group_source(g: &RuleGroup) -> String {
    let rules: Vec<J> = g
        .rules
        .iter()
        .map(|r| match r {
            Rule::Alerting(a) => {
                let mut m = json!({"alert": a.name, "expr": a.expr});
                if !a.for_.is_zero() {
                    m["for"] = json!(format_duration(a.for_));
                }
                if !a.keep_firing_for.is_zero() {
                    m["keep_firing_for"] = json!(format_duration(a.keep_firing_for));
                }
                if !a.labels.is_empty() {
                    m["labels"] = json!(a.labels);
                }
                if !a.annotations.is_empty() {
                    m["annotations"] = json!(a.annotations);
                }
                m
            }
            Rule::Recording(rr) => {
                let mut m = json!({"record": rr.name, "expr": rr.expr});
                if !rr.labels.is_empty() {
                    m["labels"] = json!(rr.labels);
                }
                m
            }
        })
        .collect();
    let mut group = json!({"name": g.name, "rules": rules});
    if let Some(i) = g.interval {
        group["interval"] = json!(format_duration(i));
    }
    if let Some(o) = g.query_offset {
        group["query_offset"] = json!(format_duration(o));
    }
    if let Some(l) = g.limit {
        group["limit"] = json!(l.get());
    }
    if !g.labels.is_empty() {
        group["labels"] = json!(g.labels);
    }
    json!({"groups": [group]}).to_string()
}

/// Validates a rule file into the records to store, or every error.
pub fn to_records(
    namespace: &str,
    text: &str,
) -> Result<(RuleFile, Vec<RuleGroupRecord>), Vec<RuleError>> {
    let file = parse_rule_file(namespace, text)?;
    let records = file
        .groups
        .iter()
        .map(|g| RuleGroupRecord {
            name: g.name.clone(),
            interval_ms: g.interval.unwrap_or(DEFAULT_GROUP_INTERVAL).as_millis() as u64,
            source: group_source(g),
        })
        .collect();
    Ok((file, records))
}

/// Optional optimistic lock.
#[derive(Debug, Deserialize)]
pub struct VersionParam {
    /// Apply only if the rule set is at this version.
    pub expected_version: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Applied {
    namespace: String,
    version: u64,
    groups: usize,
    rules: usize,
}

pub(crate) async fn commit(s: &AppState, command: Command) -> Result<u64, Response> {
    let (index, results) = s.client.propose(vec![command]).await.map_err(store_error)?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(index),
        Some(Err(CommandError::Conflict(m))) => Err(api_error(StatusCode::CONFLICT, m, vec![])),
        Some(Err(e)) => Err(api_error(StatusCode::BAD_REQUEST, e.to_string(), vec![])),
        None => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no result for the command",
            vec![],
        )),
    }
}

/// `PUT /api/v1/rules/{namespace}`: replace one namespace with the rule file in the body.
pub async fn put_namespace(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    UrlQuery(v): UrlQuery<VersionParam>,
    body: Bytes,
) -> Response {
    if let Err(r) = valid_namespace(&namespace) {
        return *r;
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "the rule file is not UTF-8",
            vec![],
        );
    };
    let (file, groups) = match to_records(&namespace, text) {
        Ok(r) => r,
        Err(errors) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "rule file {namespace:?} is invalid ({} errors); nothing was changed",
                    errors.len()
                ),
                errors.iter().map(rule_error_json).collect(),
            );
        }
    };
    let rules = file.rule_count();
    let n = groups.len();
    match commit(
        &s,
        Command::PutRules {
            namespace: namespace.clone(),
            groups,
            expected_version: v.expected_version,
        },
    )
    .await
    {
        Ok(version) => Json(Applied {
            namespace,
            version,
            groups: n,
            rules,
        })
        .into_response(),
        Err(r) => r,
    }
}

/// `DELETE /api/v1/rules/{namespace}`.
pub async fn delete_namespace(
    State(s): State<AppState>,
    Path(namespace): Path<String>,
    UrlQuery(v): UrlQuery<VersionParam>,
) -> Response {
    if let Err(r) = valid_namespace(&namespace) {
        return *r;
    }
    match commit(
        &s,
        Command::PutRules {
            namespace: namespace.clone(),
            groups: vec![],
            expected_version: v.expected_version,
        },
    )
    .await
    {
        Ok(version) => Json(Applied {
            namespace,
            version,
            groups: 0,
            rules: 0,
        })
        .into_response(),
        Err(r) => r,
    }
}

/// Body of `PUT /api/v1/rules`: the whole rule set, namespace → rule-file text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetBody {
    /// Namespace → rule file (YAML).
    pub namespaces: BTreeMap<String, String>,
}

/// `PUT /api/v1/rules`: replace the whole rule set (all namespaces validated first).
pub async fn put_all(
    State(s): State<AppState>,
    UrlQuery(v): UrlQuery<VersionParam>,
    body: Bytes,
) -> Response {
    let parsed: RuleSetBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("invalid body: {e} (expected {{\"namespaces\": {{NAME: YAML}}}})"),
                vec![],
            );
        }
    };
    let mut namespaces = BTreeMap::new();
    let mut errors = Vec::new();
    let mut rules = 0;
    for (ns, text) in &parsed.namespaces {
        if let Err(r) = valid_namespace(ns) {
            return *r;
        }
        match to_records(ns, text) {
            Ok((file, groups)) => {
                rules += file.rule_count();
                namespaces.insert(ns.clone(), RuleNamespace { groups });
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!(
                "the rule set is invalid ({} errors); nothing was changed",
                errors.len()
            ),
            errors.iter().map(rule_error_json).collect(),
        );
    }
    let groups: usize = namespaces.values().map(|n| n.groups.len()).sum();
    match commit(&s, Command::ReplaceRules { namespaces, expected_version: v.expected_version }).await {
        Ok(version) => Json(json!({"version": version, "namespaces": parsed.namespaces.len(), "groups": groups, "rules": rules})).into_response(),
        Err(r) => r,
    }
}

/// `GET /api/v1/rules`: the committed rule set (a linearizable read through the leader).
pub async fn get_rules(State(s): State<AppState>) -> Response {
    let read = async {
        let (_, rules) = s.client.read(&Query::Rules, true).await?;
        let (_, layout) = s.client.read(&Query::Layout, false).await?;
        Ok::<_, ServiceError>((rules, layout))
    };
    let (QueryResult::Rules(set), QueryResult::Layout(layout)) = (match read.await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    }) else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected query result",
            vec![],
        );
    };
    Json(rules_json(&set, &layout)).into_response()
}

fn rules_json(set: &tocsin_state::model::RuleSet, layout: &ShardLayout) -> J {
    let namespaces: Vec<J> = set
        .namespaces
        .iter()
        .map(|(ns, n)| {
            let groups: Vec<J> = n
                .groups
                .iter()
                .map(|g| {
                    let key = GroupKey { namespace: ns.clone(), name: g.name.clone() };
                    let rules: Vec<J> = parse_rule_file(ns, &g.source)
                        .ok()
                        .and_then(|f| f.groups.into_iter().next())
                        .map(|grp| {
                            grp.rules
                                .iter()
                                .map(|r| match r {
                                    Rule::Alerting(a) => json!({"type": "alerting", "name": a.name, "expr": a.expr, "for": format_duration(a.for_)}),
                                    Rule::Recording(rr) => json!({"type": "recording", "name": rr.name, "expr": rr.expr}),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({
                        "name": g.name,
                        "interval": format_duration(Duration::from_millis(g.interval_ms)),
                        "eval_shard": layout.eval_shard(&key).index,
                        "rules": rules,
                    })
                })
                .collect();
            json!({"name": ns, "groups": groups})
        })
        .collect();
    json!({"version": set.version, "namespaces": namespaces})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_source_round_trips_through_the_parser() {
        let text = "groups:\n- name: api\n  interval: 30s\n  limit: 10\n  labels: {team: core}\n  rules:\n  - alert: High\n    expr: rate(x[5m]) > 1\n    for: 5m\n    keep_firing_for: 1m\n    labels: {severity: page}\n    annotations: {summary: \"{{ $labels.instance }} is {{ $value }}\"}\n  - record: job:x:rate5m\n    expr: sum by (job) (rate(x[5m]))\n";
        let (file, records) = to_records("ns", text).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].interval_ms, 30_000);
        let again = parse_rule_file("ns", &records[0].source).unwrap();
        assert_eq!(
            again.groups[0], file.groups[0],
            "the stored JSON is the same group"
        );
    }

    #[test]
    fn invalid_files_are_refused_with_positions() {
        let errs = to_records(
            "ns",
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up ==\n",
        )
        .unwrap_err();
        assert!(!errs.is_empty());
        let j = rule_error_json(&errs[0]);
        assert!(j["line"].as_u64().unwrap() > 0, "{j}");
    }
}
