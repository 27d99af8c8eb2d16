//! Events API v2 validation, answering in PagerDuty's error shape (providers.md §1.1, §8).
//!
//! The `routing_key` length message is PagerDuty's own (seen in SDK tests and Alertmanager's
//! `TestErrDetails`); the other messages follow its style but are not verified wording.

use serde_json::Value;

use super::incidents::EventAction;

/// PagerDuty's payload limit ("512 KB"). Alertmanager keeps below 512 000 bytes.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
pub const ROUTING_KEY_LEN: usize = 32;
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
pub const MAX_SUMMARY_CHARS: usize = 1024;
const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// A valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    pub routing_key: String,
    pub action: EventAction,
    pub dedup_key: Option<String>,
    pub summary: Option<String>,
    pub severity: Option<String>,
}

/// Why an event was refused: PagerDuty's two 400 shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// `{"status":"Unrecognized object","message":"Event object format is unrecognized",...}`
    Unrecognized(String),
    /// `{"status":"invalid event","message":"Event object is invalid","errors":[...]}`
    Invalid(Vec<String>),
}

impl Rejection {
    /// The 400 body.
    pub fn body(&self) -> Value {
        match self {
            Self::Unrecognized(error) => serde_json::json!({
                "status": "Unrecognized object",
                "message": "Event object format is unrecognized",
                "errors": [error],
            }),
            Self::Invalid(errors) => serde_json::json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }),
        }
    }
}

/// Validates a `POST /v2/enqueue` body.
pub fn validate(body: &[u8]) -> Result<ValidEvent, Rejection> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(Rejection::Invalid(vec![format!(
            "Event object exceeds the maximum size of {MAX_EVENT_BYTES} bytes"
        )]));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::Unrecognized("JSON parse error".into()))?;
    let Some(event) = value.as_object() else {
        return Err(Rejection::Unrecognized("JSON parse error".into()));
    };
    let mut errors = Vec::new();
    let routing_key = string_field(event.get("routing_key"), "routing_key", &mut errors);
    if let Some(key) = &routing_key
        && key.chars().count() != ROUTING_KEY_LEN
    {
        errors.push(format!(
            "Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LEN} characters)"
        ));
    }
    let action = match string_field(event.get("event_action"), "event_action", &mut errors) {
        Some(a) => EventAction::parse(&a).or_else(|| {
            errors.push(
                "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)".into(),
            );
            None
        }),
        None => None,
    };
    let dedup_key = match event.get("dedup_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.chars().count() > MAX_DEDUP_KEY_CHARS => {
            errors.push(format!(
                "Length of 'dedup_key' is incorrect (should be at most {MAX_DEDUP_KEY_CHARS} characters)"
            ));
            None
        }
        Some(Value::String(k)) if k.trim().is_empty() => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => {
            errors.push("'dedup_key' must be a string".into());
            None
        }
    };
    let (mut summary, mut severity) = (None, None);
    match action {
        Some(EventAction::Trigger) => {
            (summary, severity) = validate_trigger(event, &mut errors);
        }
        Some(EventAction::Acknowledge | EventAction::Resolve)
            if dedup_key.is_none() && !errors.iter().any(|e| e.contains("'dedup_key'")) =>
        {
            errors.push("'dedup_key' is missing or blank".into());
        }
        Some(EventAction::Acknowledge | EventAction::Resolve) => {}
        None => {}
    }
    match (routing_key, action) {
        (Some(routing_key), Some(action)) if errors.is_empty() => Ok(ValidEvent {
            routing_key,
            action,
            dedup_key,
            summary,
            severity,
        }),
        _ => Err(Rejection::Invalid(errors)),
    }
}

/// Validates a `POST /v2/change/enqueue` body; returns the routing key. Change events have no
/// `event_action` and no `dedup_key`; the success message and the ruleset-key refusal
/// wording are not verified.
pub fn validate_change(body: &[u8]) -> Result<String, Rejection> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(Rejection::Invalid(vec![format!(
            "Event object exceeds the maximum size of {MAX_EVENT_BYTES} bytes"
        )]));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Rejection::Unrecognized("JSON parse error".into()))?;
    let Some(event) = value.as_object() else {
        return Err(Rejection::Unrecognized("JSON parse error".into()));
    };
    let mut errors = Vec::new();
    let routing_key = string_field(event.get("routing_key"), "routing_key", &mut errors);
    if let Some(key) = &routing_key {
        if key.chars().count() != ROUTING_KEY_LEN {
            errors.push(format!(
                "Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LEN} characters)"
            ));
        } else if key.starts_with('R') {
            errors.push("Change events cannot be sent to a ruleset routing key".into());
        }
    }
    match event.get("payload").and_then(Value::as_object) {
        None => errors.push("'payload' is missing or blank".into()),
        Some(payload) => {
            let summary = string_field(payload.get("summary"), "payload.summary", &mut errors);
            if summary.is_some_and(|s| s.chars().count() > MAX_SUMMARY_CHARS) {
                errors.push(format!(
                    "Length of 'payload.summary' is incorrect (should be at most {MAX_SUMMARY_CHARS} characters)"
                ));
            }
        }
    }
    match routing_key {
        Some(key) if errors.is_empty() => Ok(key),
        _ => Err(Rejection::Invalid(errors)),
    }
}

fn validate_trigger(
    event: &serde_json::Map<String, Value>,
    errors: &mut Vec<String>,
) -> (Option<String>, Option<String>) {
    let Some(payload) = event.get("payload").and_then(Value::as_object) else {
        errors.push("'payload' is missing or blank".into());
        return (None, None);
    };
    let summary = string_field(payload.get("summary"), "payload.summary", errors);
    if let Some(s) = &summary
        && s.chars().count() > MAX_SUMMARY_CHARS
    {
        errors.push(format!(
            "Length of 'payload.summary' is incorrect (should be at most {MAX_SUMMARY_CHARS} characters)"
        ));
    }
    string_field(payload.get("source"), "payload.source", errors);
    let severity = string_field(payload.get("severity"), "payload.severity", errors);
    if let Some(s) = &severity
        && !SEVERITIES.contains(&s.as_str())
    {
        errors.push(
            "'payload.severity' is invalid (must be one of: critical, error, warning, info)".into(),
        );
    }
    validate_links_images(event, errors);
    (summary, severity)
}

fn validate_links_images(event: &serde_json::Map<String, Value>, errors: &mut Vec<String>) {
    if let Some(links) = event.get("links").and_then(Value::as_array) {
        for (i, link) in links.iter().enumerate() {
            if link
                .get("href")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errors.push(format!("'links[{i}].href' is missing or blank"));
            }
        }
    }
    if let Some(images) = event.get("images").and_then(Value::as_array) {
        for (i, image) in images.iter().enumerate() {
            match image.get("src").and_then(Value::as_str) {
                Some(src) if src.starts_with("https://") => {}
                Some(_) => errors.push(format!("'images[{i}].src' must be an HTTPS URL")),
                None => errors.push(format!("'images[{i}].src' is missing or blank")),
            }
        }
    }
}

/// A required, non-blank string field.
fn string_field(value: Option<&Value>, name: &str, errors: &mut Vec<String>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_) | Value::Null) | None => {
            errors.push(format!("'{name}' is missing or blank"));
            None
        }
        Some(_) => {
            errors.push(format!("'{name}' must be a string"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_complete_trigger_passes() {
        let body = serde_json::json!({
            "routing_key": KEY, "event_action": "trigger", "dedup_key": "g1",
            "payload": {"summary": "disk full", "source": "db1", "severity": "critical"},
        });
        let ev = validate(body.to_string().as_bytes()).unwrap();
        assert_eq!(ev.action, EventAction::Trigger);
        assert_eq!(ev.dedup_key.as_deref(), Some("g1"));
    }

    #[test]
    fn every_problem_is_listed() {
        let body = serde_json::json!({
            "routing_key": "short", "event_action": "trigger",
            "payload": {"summary": "x".repeat(1025), "severity": "fatal"},
        });
        let Err(Rejection::Invalid(errors)) = validate(body.to_string().as_bytes()) else {
            panic!("expected invalid event");
        };
        assert_eq!(
            errors,
            vec![
                "Length of 'routing_key' is incorrect (should be 32 characters)",
                "Length of 'payload.summary' is incorrect (should be at most 1024 characters)",
                "'payload.source' is missing or blank",
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)",
            ]
        );
    }

    #[test]
    fn resolve_needs_a_dedup_key_and_garbage_is_unrecognized() {
        let body = serde_json::json!({"routing_key": KEY, "event_action": "resolve"});
        assert_eq!(
            validate(body.to_string().as_bytes()),
            Err(Rejection::Invalid(vec![
                "'dedup_key' is missing or blank".into()
            ]))
        );
        assert!(matches!(
            validate(b"{not json"),
            Err(Rejection::Unrecognized(_))
        ));
    }
}
