//! `alertmanager.yml` as written: serde types with source positions, unknown keys rejected.
//! [`super::validate`] turns them into the typed [`super::Config`].

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

mod receivers;

pub(crate) use receivers::*;

pub(crate) type S<T> = Spanned<T>;
pub(crate) type OS = Option<S<String>>;
pub(crate) type OList<T> = Option<Vec<S<T>>>;

/// Top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub global: Option<S<RawGlobal>>,
    #[serde(default)]
    pub route: Option<S<RawRoute>>,
    #[serde(default)]
    pub inhibit_rules: OList<RawInhibitRule>,
    #[serde(default)]
    pub receivers: OList<RawReceiver>,
    #[serde(default)]
    pub templates: OList<String>,
    #[serde(default)]
    pub mute_time_intervals: OList<RawNamedInterval>,
    #[serde(default)]
    pub time_intervals: OList<RawNamedInterval>,
}

/// `global:`. Settings of receiver types Tocsin does not support are accepted and ignored (they
/// configure nothing unless such a receiver is used, which is refused).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the ignored settings are read only to be accepted
pub(crate) struct RawGlobal {
    #[serde(default)]
    pub resolve_timeout: OS,
    #[serde(default)]
    pub http_config: Option<S<RawHttpConfig>>,
    #[serde(default)]
    pub smtp_from: OS,
    #[serde(default)]
    pub smtp_hello: OS,
    #[serde(default)]
    pub smtp_smarthost: OS,
    #[serde(default)]
    pub smtp_auth_username: OS,
    #[serde(default)]
    pub smtp_auth_password: OS,
    #[serde(default)]
    pub smtp_auth_password_file: OS,
    #[serde(default)]
    pub smtp_auth_secret: OS,
    #[serde(default)]
    pub smtp_auth_identity: OS,
    #[serde(default)]
    pub smtp_require_tls: Option<S<bool>>,
    #[serde(default)]
    pub smtp_tls_config: Option<S<RawTlsConfig>>,
    #[serde(default)]
    pub slack_api_url: OS,
    #[serde(default)]
    pub slack_api_url_file: OS,
    #[serde(default)]
    pub pagerduty_url: OS,
    #[serde(default)]
    pub opsgenie_api_url: OS,
    #[serde(default)]
    pub opsgenie_api_key: OS,
    #[serde(default)]
    pub opsgenie_api_key_file: OS,
    #[serde(default)]
    pub wechat_api_url: Option<IgnoredAny>,
    #[serde(default)]
    pub wechat_api_secret: Option<IgnoredAny>,
    #[serde(default)]
    pub wechat_api_corp_id: Option<IgnoredAny>,
    #[serde(default)]
    pub victorops_api_url: Option<IgnoredAny>,
    #[serde(default)]
    pub victorops_api_key: Option<IgnoredAny>,
    #[serde(default)]
    pub victorops_api_key_file: Option<IgnoredAny>,
    #[serde(default)]
    pub telegram_api_url: Option<IgnoredAny>,
    #[serde(default)]
    pub webex_api_url: Option<IgnoredAny>,
}

/// prometheus/common `HTTPClientConfig` (the parts Tocsin implements).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpConfig {
    #[serde(default)]
    pub basic_auth: Option<S<RawBasicAuth>>,
    #[serde(default)]
    pub authorization: Option<S<RawAuthorization>>,
    #[serde(default)]
    pub bearer_token: OS,
    #[serde(default)]
    pub bearer_token_file: OS,
    #[serde(default)]
    pub oauth2: Option<S<IgnoredAny>>,
    #[serde(default)]
    pub tls_config: Option<S<RawTlsConfig>>,
    #[serde(default)]
    pub proxy_url: OS,
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    #[serde(default)]
    pub enable_http2: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBasicAuth {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthorization {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTlsConfig {
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    #[serde(default)]
    pub min_version: OS,
}

/// A routing-tree node.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub receiver: OS,
    #[serde(default)]
    pub group_by: OList<String>,
    #[serde(default, rename = "continue")]
    pub continue_: Option<S<bool>>,
    #[serde(default, rename = "match")]
    pub match_eq: Option<PairList>,
    #[serde(default)]
    pub match_re: Option<PairList>,
    #[serde(default)]
    pub matchers: OList<String>,
    #[serde(default)]
    pub mute_time_intervals: OList<String>,
    #[serde(default)]
    pub active_time_intervals: OList<String>,
    #[serde(default)]
    pub group_wait: OS,
    #[serde(default)]
    pub group_interval: OS,
    #[serde(default)]
    pub repeat_interval: OS,
    #[serde(default)]
    pub routes: OList<RawRoute>,
}

/// An `inhibit_rules[]` entry.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInhibitRule {
    #[serde(default)]
    pub name: OS,
    #[serde(default)]
    pub source_match: Option<PairList>,
    #[serde(default)]
    pub source_match_re: Option<PairList>,
    #[serde(default)]
    pub source_matchers: OList<String>,
    #[serde(default)]
    pub target_match: Option<PairList>,
    #[serde(default)]
    pub target_match_re: Option<PairList>,
    #[serde(default)]
    pub target_matchers: OList<String>,
    #[serde(default)]
    pub equal: OList<String>,
}

/// A `time_intervals[]` / `mute_time_intervals[]` entry.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNamedInterval {
    #[serde(default)]
    pub name: OS,
    #[serde(default)]
    pub time_intervals: OList<RawTimeInterval>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeInterval {
    #[serde(default)]
    pub times: OList<RawTimes>,
    #[serde(default)]
    pub weekdays: OList<String>,
    #[serde(default)]
    pub days_of_month: OList<String>,
    #[serde(default)]
    pub months: OList<String>,
    #[serde(default)]
    pub years: OList<String>,
    #[serde(default)]
    pub location: OS,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimes {
    #[serde(default)]
    pub start_time: OS,
    #[serde(default)]
    pub end_time: OS,
}

/// A `map[string]string` in source order with each key's and value's position.
#[derive(Debug, Default)]
pub(crate) struct PairList(pub Vec<(S<String>, S<String>)>);

impl<'de> Deserialize<'de> for PairList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PairList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings to strings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<PairList, E> {
                Ok(PairList::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<PairList, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<S<String>, Option<S<String>>>()? {
                    let v = v.unwrap_or_else(|| S::new(String::new(), k.referenced, k.defined));
                    out.push((k, v));
                }
                Ok(PairList(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A position-tagged generic YAML tree, used only to name the path of a serde error.
#[derive(Debug)]
pub(crate) enum Node {
    Scalar,
    Seq(Vec<S<Node>>),
    Map(Vec<(S<String>, S<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = s.next_element::<S<Node>>()? {
                    out.push(n);
                }
                Ok(Node::Seq(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<S<String>>()? {
                    out.push((k, m.next_value::<S<Node>>()?));
                }
                Ok(Node::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn before_or_at(a: &serde_saphyr::Location, line: u64, column: u64) -> bool {
    (a.line(), a.column()) <= (line, column)
}

/// The dotted path of the deepest node that starts at or before `(line, column)`.
pub(crate) fn path_at(root: &Node, line: u64, column: u64) -> String {
    let mut path = String::new();
    let mut node = root;
    loop {
        match node {
            Node::Scalar => return path,
            Node::Seq(items) => {
                let Some((i, item)) = items
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, n)| before_or_at(&n.referenced, line, column))
                else {
                    return path;
                };
                path.push_str(&format!("[{i}]"));
                node = &item.value;
            }
            Node::Map(entries) => {
                let Some((k, v)) = entries
                    .iter()
                    .rev()
                    .find(|(k, _)| before_or_at(&k.referenced, line, column))
                else {
                    return path;
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&k.value);
                if !before_or_at(&v.referenced, line, column) {
                    return path;
                }
                node = &v.value;
            }
        }
    }
}
