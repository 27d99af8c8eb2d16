//! `chat.postMessage` / `chat.update` state (providers.md §2.2), pure: the channel directory
//! and the posted messages, keyed by `(channel id, ts)`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A channel's condition, as a test sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    #[default]
    Active,
    /// `is_archived`.
    Archived,
    /// `channel_not_found`.
    NotFound,
    /// `not_in_channel`.
    NotInChannel,
}

/// A message as stored, with the updates applied to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub channel: String,
    pub ts: String,
    pub text: String,
    #[serde(default)]
    pub blocks: Value,
    #[serde(default)]
    pub attachments: Value,
    #[serde(default)]
    pub thread_ts: Option<String>,
    #[serde(default)]
    pub metadata: Value,
    pub posted_ms: i64,
    /// Every `chat.update` applied, oldest first (the message fields hold the latest).
    #[serde(default)]
    pub updates: Vec<MessageUpdate>,
}

/// One `chat.update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageUpdate {
    pub time_ms: i64,
    pub text: String,
}

/// Channels and messages.
#[derive(Debug, Default)]
pub struct Workspace {
    /// Channel name (without `#`) → id.
    ids: HashMap<String, String>,
    states: HashMap<String, ChannelState>,
    messages: BTreeMap<(String, String), StoredMessage>,
    next_ts: u64,
}

impl Workspace {
    /// The id of a channel given by id or name, creating one for a new name.
    pub fn channel_id(&mut self, channel: &str) -> String {
        if looks_like_id(channel) {
            return channel.to_owned();
        }
        let name = channel.trim_start_matches('#').to_owned();
        let next = self.ids.len() + 1;
        self.ids
            .entry(name)
            .or_insert_with(|| format!("C{next:08X}"))
            .clone()
    }

    /// Sets a channel's state (by id or name).
    pub fn set_state(&mut self, channel: &str, state: ChannelState) {
        let id = self.channel_id(channel);
        self.states.insert(id, state);
    }

    /// A channel's state (by id).
    pub fn state(&self, id: &str) -> ChannelState {
        self.states.get(id).copied().unwrap_or_default()
    }

    /// A fresh `ts`, unique within the workspace: `<unix secs>.<6 digits>`.
    pub fn next_ts(&mut self, now_ms: i64) -> String {
        self.next_ts += 1;
        format!(
            "{}.{:06}",
            now_ms.div_euclid(1000),
            self.next_ts % 1_000_000
        )
    }

    pub fn insert(&mut self, message: StoredMessage) {
        self.messages
            .insert((message.channel.clone(), message.ts.clone()), message);
    }

    /// Applies an update; `None` when no such message exists.
    pub fn update(
        &mut self,
        channel: &str,
        ts: &str,
        msg: &serde_json::Map<String, Value>,
        now_ms: i64,
    ) -> Option<&StoredMessage> {
        let stored = self
            .messages
            .get_mut(&(channel.to_owned(), ts.to_owned()))?;
        let text = msg.get("text").and_then(Value::as_str).unwrap_or_default();
        stored.text = text.to_owned();
        if let Some(blocks) = msg.get("blocks") {
            stored.blocks = blocks.clone();
        }
        if let Some(attachments) = msg.get("attachments") {
            stored.attachments = attachments.clone();
        }
        stored.updates.push(MessageUpdate {
            time_ms: now_ms,
            text: text.to_owned(),
        });
        Some(stored)
    }

    /// Every message, by channel then ts.
    pub fn messages(&self) -> Vec<StoredMessage> {
        self.messages.values().cloned().collect()
    }
}

fn looks_like_id(channel: &str) -> bool {
    channel.len() >= 9
        && channel.starts_with(['C', 'G', 'D'])
        && channel
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_stable_ids_and_ts_are_unique() {
        let mut ws = Workspace::default();
        let a = ws.channel_id("#alerts");
        assert_eq!(ws.channel_id("alerts"), a);
        assert_ne!(ws.channel_id("#other"), a);
        assert_eq!(ws.channel_id("C0123456789"), "C0123456789");
        let t1 = ws.next_ts(1_700_000_000_123);
        let t2 = ws.next_ts(1_700_000_000_123);
        assert_ne!(t1, t2);
        assert!(t1.starts_with("1700000000."));
    }
}
