//! The routing tree: which routes (and so receivers, grouping and timers) an alert goes to,
//! and the group key each route puts it under — both exactly as Alertmanager's
//! `dispatch/route.go` and `dispatch.go` compute them.
//!
//! Inheritance (`NewRoute`): a child starts from its parent's options and overrides what it
//! sets; `mute_time_intervals`/`active_time_intervals` are *not* inherited. Matching
//! (`Route.Match`): depth first, left to right; a matching child stops the scan of its
//! siblings unless it has `continue: true`; a node none of whose children match is itself the
//! match. The group key is `{route key}:{group labels}` where the route key is the `/`-joined
//! `Matchers.String()` of the path from the root (`{}/{severity="page"}`) and the group labels
//! print like Go's `model.LabelSet.String()` (`{alertname="X", cluster="a"}`).

use std::collections::BTreeMap;
use std::time::Duration;

use tocsin_state::model::{NotificationKey, ShardId, ShardLayout};

use super::config::{
    DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, GroupBy, RouteConfig,
};
use super::matchers::Matchers;
use super::time_interval::TimeInterval;

/// The options in effect at a route (after inheritance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOpts {
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait between notifications about a changed group.
    pub group_interval: Duration,
    /// Wait before repeating an unchanged notification.
    pub repeat_interval: Duration,
    /// Muted while any of these intervals holds.
    pub mute_time_intervals: Vec<String>,
    /// If non-empty, muted unless one of these intervals holds.
    pub active_time_intervals: Vec<String>,
}

impl RouteOpts {
    /// Whether notifications of this route are muted at `now_ms` by its time intervals.
    pub fn muted_at(&self, intervals: &BTreeMap<String, Vec<TimeInterval>>, now_ms: i64) -> bool {
        let holds = |name: &String| {
            intervals
                .get(name)
                .is_some_and(|tis| tis.iter().any(|t| t.contains(now_ms)))
        };
        self.mute_time_intervals.iter().any(holds)
            || (!self.active_time_intervals.is_empty()
                && !self.active_time_intervals.iter().any(holds))
    }
}

/// Index of a node in its [`RouteTree`] (pre-order: the root is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub usize);

/// One node of the tree.
#[derive(Clone, Debug)]
pub struct RouteNode {
    /// This node's id.
    pub id: RouteId,
    /// Parent, `None` for the root.
    pub parent: Option<RouteId>,
    /// Alertmanager's `Route.Key()`: `{}/{a="b"}/...`.
    pub key: String,
    /// This node's own matchers.
    pub matchers: Matchers,
    /// `continue`.
    pub continue_matching: bool,
    /// Options after inheritance.
    pub opts: RouteOpts,
    children: Vec<RouteId>,
}

impl RouteNode {
    /// Child ids in order.
    pub fn children(&self) -> &[RouteId] {
        &self.children
    }

    /// The labels of `labels` this route groups by (absent labels are left out).
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.opts.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => labels
                .iter()
                .filter(|(k, _)| names.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Alertmanager's group key of `labels` under this route.
    pub fn group_key(&self, labels: &BTreeMap<String, String>) -> String {
        format!(
            "{}:{}",
            self.key,
            format_label_set(&self.group_labels(labels))
        )
    }

    /// The notification stream (receiver, group key) of `labels` under this route.
    pub fn notification_key(&self, labels: &BTreeMap<String, String>) -> NotificationKey {
        NotificationKey {
            receiver: self.opts.receiver.clone(),
            group_key: self.group_key(labels),
        }
    }
}

/// The notify shard that owns a notification stream: a stable hash of (receiver, group key),
/// so every node computes the same owner.
pub fn notify_shard(layout: &ShardLayout, key: &NotificationKey) -> ShardId {
    layout.notify_shard(key)
}

/// The routing tree with inheritance resolved.
#[derive(Clone, Debug)]
pub struct RouteTree {
    nodes: Vec<RouteNode>,
}

impl RouteTree {
    /// Builds the tree from the configured root (whose receiver the loader checked).
    pub fn new(root: &RouteConfig) -> Self {
        let defaults = RouteOpts {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        };
        let mut tree = Self { nodes: Vec::new() };
        tree.add(root, None, &defaults);
        tree
    }

    fn add(&mut self, cr: &RouteConfig, parent: Option<RouteId>, inherited: &RouteOpts) -> RouteId {
        let mut opts = inherited.clone();
        if let Some(r) = &cr.receiver {
            opts.receiver = r.clone();
        }
        if let Some(g) = &cr.group_by {
            opts.group_by = g.clone();
        }
        opts.group_wait = cr.group_wait.unwrap_or(opts.group_wait);
        opts.group_interval = cr.group_interval.unwrap_or(opts.group_interval);
        opts.repeat_interval = cr.repeat_interval.unwrap_or(opts.repeat_interval);
        opts.mute_time_intervals = cr.mute_time_intervals.clone();
        opts.active_time_intervals = cr.active_time_intervals.clone();
        let id = RouteId(self.nodes.len());
        let key = match parent {
            Some(p) => format!("{}/{}", self.nodes[p.0].key, cr.matchers),
            None => cr.matchers.to_string(),
        };
        self.nodes.push(RouteNode {
            id,
            parent,
            key,
            matchers: cr.matchers.clone(),
            continue_matching: cr.continue_matching,
            opts: opts.clone(),
            children: Vec::new(),
        });
        for child in &cr.routes {
            let c = self.add(child, Some(id), &opts);
            self.nodes[id.0].children.push(c);
        }
        id
    }

    /// The root node.
    pub fn root(&self) -> &RouteNode {
        &self.nodes[0]
    }

    /// A node by id.
    pub fn node(&self, id: RouteId) -> &RouteNode {
        &self.nodes[id.0]
    }

    /// Every node, pre-order.
    pub fn nodes(&self) -> &[RouteNode] {
        &self.nodes
    }

    /// The routes `labels` goes to, in tree order (never empty: the root catches all).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> Vec<&RouteNode> {
        let mut out = Vec::new();
        self.match_into(RouteId(0), labels, &mut out);
        out
    }

    fn match_into<'a>(
        &'a self,
        id: RouteId,
        labels: &BTreeMap<String, String>,
        out: &mut Vec<&'a RouteNode>,
    ) -> bool {
        let node = &self.nodes[id.0];
        if !node.matchers.matches(labels) {
            return false;
        }
        let before = out.len();
        for &c in &node.children {
            if self.match_into(c, labels, out) && !self.nodes[c.0].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(node);
        }
        true
    }

    /// The receivers `labels` goes to, in order (what `amtool config routes test` prints).
    pub fn receivers(&self, labels: &BTreeMap<String, String>) -> Vec<&str> {
        self.matches(labels)
            .into_iter()
            .map(|n| n.opts.receiver.as_str())
            .collect()
    }
}

/// Go's `model.LabelSet.String()`: `{a="1", b="2"}`, names sorted, values `%q`-quoted.
pub fn format_label_set(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's `strconv.Quote` for the characters label values contain.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
