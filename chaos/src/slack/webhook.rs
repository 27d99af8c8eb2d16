//! Incoming-webhook payload validation and per-hook states (providers.md §2.1), pure.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Slack's block limit per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's attachment limit (Slack SDK `attachments_max_length`).
pub const MAX_ATTACHMENTS: usize = 100;
/// A section block's text limit.
pub const MAX_SECTION_TEXT_CHARS: usize = 3000;

/// What a webhook URL currently does, as a test sets it. Every state but `active` answers
/// with Slack's plain-text error for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookState {
    #[default]
    Active,
    /// 404 `no_service`: the hook was removed.
    NoService,
    /// 404 `no_team`.
    NoTeam,
    /// 404 `channel_not_found`.
    ChannelNotFound,
    /// 410 `channel_is_archived`.
    ChannelIsArchived,
    /// 403 `action_prohibited`.
    ActionProhibited,
    /// 403 `posting_to_general_channel_denied`.
    PostingToGeneralChannelDenied,
    /// 403 `invalid_token`.
    InvalidToken,
    /// 500 `rollup_error`.
    RollupError,
}

impl HookState {
    /// The status and body this state answers with, or `None` for `active`.
    pub fn error(self) -> Option<(StatusCode, &'static str)> {
        Some(match self {
            Self::Active => return None,
            Self::NoService => (StatusCode::NOT_FOUND, "no_service"),
            Self::NoTeam => (StatusCode::NOT_FOUND, "no_team"),
            Self::ChannelNotFound => (StatusCode::NOT_FOUND, "channel_not_found"),
            Self::ChannelIsArchived => (StatusCode::GONE, "channel_is_archived"),
            Self::ActionProhibited => (StatusCode::FORBIDDEN, "action_prohibited"),
            Self::PostingToGeneralChannelDenied => {
                (StatusCode::FORBIDDEN, "posting_to_general_channel_denied")
            }
            Self::InvalidToken => (StatusCode::FORBIDDEN, "invalid_token"),
            Self::RollupError => (StatusCode::INTERNAL_SERVER_ERROR, "rollup_error"),
        })
    }
}

/// A message content problem, named by Slack's error string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentError {
    InvalidPayload,
    NoText,
    InvalidBlocks,
    TooManyAttachments,
}

impl ContentError {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload",
            Self::NoText => "no_text",
            Self::InvalidBlocks => "invalid_blocks",
            Self::TooManyAttachments => "too_many_attachments",
        }
    }
}

/// Parses a webhook body: JSON, or the legacy form `payload=<json>`.
pub fn parse_body(
    body: &[u8],
    is_form: bool,
) -> Result<serde_json::Map<String, Value>, ContentError> {
    let json = if is_form {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())
            .ok_or(ContentError::InvalidPayload)?
            .into_bytes()
    } else {
        body.to_vec()
    };
    match serde_json::from_slice(&json) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ContentError::InvalidPayload),
    }
}

/// Checks a message's content (`text`, `blocks`, `attachments`) as both the webhook and
/// `chat.postMessage` do.
pub fn check_content(msg: &serde_json::Map<String, Value>) -> Result<(), ContentError> {
    let text = match msg.get("text") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ContentError::InvalidPayload),
    };
    let blocks = match msg.get("blocks") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(blocks)) => blocks.as_slice(),
        Some(_) => return Err(ContentError::InvalidBlocks),
    };
    if blocks.len() > MAX_BLOCKS || !blocks.iter().all(valid_block) {
        return Err(ContentError::InvalidBlocks);
    }
    let attachments = match msg.get("attachments") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(ContentError::InvalidPayload),
    };
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ContentError::TooManyAttachments);
    }
    if text.trim().is_empty() && blocks.is_empty() && attachments.is_empty() {
        return Err(ContentError::NoText);
    }
    Ok(())
}

fn valid_block(block: &Value) -> bool {
    let Some(kind) = block.get("type").and_then(Value::as_str) else {
        return false;
    };
    if kind == "section"
        && let Some(text) = block.pointer("/text/text").and_then(Value::as_str)
    {
        return text.chars().count() <= MAX_SECTION_TEXT_CHARS;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<(), ContentError> {
        check_content(v.as_object().unwrap())
    }

    #[test]
    fn content_rules() {
        assert_eq!(check(json!({"text": "hi"})), Ok(()));
        assert_eq!(check(json!({"blocks": [{"type": "divider"}]})), Ok(()));
        assert_eq!(check(json!({"text": "  "})), Err(ContentError::NoText));
        assert_eq!(check(json!({"text": 3})), Err(ContentError::InvalidPayload));
        assert_eq!(
            check(json!({"blocks": [{"no": "type"}]})),
            Err(ContentError::InvalidBlocks)
        );
        let section =
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3001)}});
        assert_eq!(
            check(json!({"blocks": [section]})),
            Err(ContentError::InvalidBlocks)
        );
        let blocks: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        assert_eq!(
            check(json!({"blocks": blocks})),
            Err(ContentError::InvalidBlocks)
        );
        let atts: Vec<Value> = (0..101).map(|_| json!({"text": "a"})).collect();
        assert_eq!(
            check(json!({"attachments": atts})),
            Err(ContentError::TooManyAttachments)
        );
    }

    #[test]
    fn legacy_form_payload_parses() {
        let body = b"payload=%7B%22text%22%3A%22hi%22%7D";
        assert_eq!(parse_body(body, true).unwrap()["text"], "hi");
        assert_eq!(
            parse_body(b"text=hi", true),
            Err(ContentError::InvalidPayload)
        );
        assert_eq!(parse_body(b"[1]", false), Err(ContentError::InvalidPayload));
    }
}
