//! The rule file as written: serde types with source positions, unknown keys rejected.
//! Validation turns these into the typed [`super::RuleFile`].

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// Top level: `groups:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub(crate) groups: Option<Vec<Spanned<RawGroup>>>,
}

/// One `groups[]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    #[serde(default)]
    pub(crate) name: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) interval: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) query_offset: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) limit: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) labels: Option<PairList>,
    #[serde(default)]
    pub(crate) rules: Option<Vec<Spanned<RawRule>>>,
}

/// One `rules[]` entry (alerting or recording; validation decides).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(default)]
    pub(crate) record: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) alert: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) expr: Option<Spanned<String>>,
    #[serde(default, rename = "for")]
    pub(crate) for_: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) keep_firing_for: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) labels: Option<PairList>,
    #[serde(default)]
    pub(crate) annotations: Option<PairList>,
}

/// A `map[string]string` kept in source order with each key's and value's position.
#[derive(Debug, Default)]
pub(crate) struct PairList(pub(crate) Vec<(Spanned<String>, Spanned<String>)>);

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
                while let Some((k, v)) =
                    m.next_entry::<Spanned<String>, Option<Spanned<String>>>()?
                {
                    let v =
                        v.unwrap_or_else(|| Spanned::new(String::new(), k.referenced, k.defined));
                    out.push((k, v));
                }
                Ok(PairList(out))
            }
        }
        d.deserialize_map(V)
    }
}
