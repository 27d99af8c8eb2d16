//! Identifier newtypes. Each validates on construction from user input.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Raft node id (one per `tocsin node`).
pub type NodeId = u64;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s`: 1..=MAX characters of `[A-Za-z0-9._-]`.
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                if s.is_empty() || s.len() > $max {
                    return Err(format!("{} must be 1 to {} characters, got {:?}", $what, $max, s));
                }
                if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
                    return Err(format!("{} {:?} contains {:?}; use letters, digits, '.', '_' or '-'", $what, s, c));
                }
                Ok(Self(s))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// An availability zone (`a`, `us-east-1b`, ...).
    ZoneId, "zone", 64
);
name_type!(
    /// A worker's id (`w-a-1`); stable across restarts of the same worker.
    WorkerId, "worker id", 128
);

/// The two shard spaces: rule groups hash into eval shards, notification groups into notify
/// shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ShardKind {
    /// Evaluates the rule groups that hash to it.
    Eval,
    /// Runs the notification pipeline for the (receiver, group key)s that hash to it.
    Notify,
}

/// One shard of one shard space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardId {
    /// Which shard space.
    pub kind: ShardKind,
    /// Index within the space, `< ShardLayout::count(kind)`.
    pub index: u16,
}

impl ShardId {
    /// An eval shard.
    pub fn eval(index: u16) -> Self {
        Self {
            kind: ShardKind::Eval,
            index,
        }
    }

    /// A notify shard.
    pub fn notify(index: u16) -> Self {
        Self {
            kind: ShardKind::Notify,
            index,
        }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            ShardKind::Eval => "eval",
            ShardKind::Notify => "notify",
        };
        write!(f, "{k}/{}", self.index)
    }
}

/// The ownership epoch of a shard: the Raft log index of the entry that made the current
/// assignment. It only grows.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Stable hash of an alert's label set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A stable 64-bit hash (FNV-1a). Used for shard placement of names, so it must never change
/// between releases: a change would move every rule group at once.
pub fn stable_hash(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for b in part.as_bytes().iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validate() {
        assert!(ZoneId::new("us-east-1a").is_ok());
        assert!(ZoneId::new("").unwrap_err().contains("1 to 64"));
        assert!(WorkerId::new("w a").unwrap_err().contains("' '"));
    }

    #[test]
    fn stable_hash_is_stable_and_separates_parts() {
        // Pinned value: changing the hash would reshuffle every deployed cluster's shards.
        assert_eq!(stable_hash(&["ns", "group"]), stable_hash(&["ns", "group"]));
        assert_ne!(stable_hash(&["a", "bc"]), stable_hash(&["ab", "c"]));
        assert_eq!(stable_hash(&[]), 0xcbf2_9ce4_8422_2325);
    }
}
