//! Raw → typed, with Alertmanager's (`amtool check-config`) checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_saphyr::Location;

use super::raw::{self, PairList, RawConfig, S};
use super::receivers::{Secret, SecretSource};
use super::{Config, ConfigErrorKind, Ctx, GlobalConfig, GroupBy, RouteConfig};
use super::{http, integrations};
use crate::notify::deliver::text::TemplateLibrary;
use crate::notify::inhibit::InhibitRule;
use crate::notify::matchers::{MatchOp, Matcher, Matchers, is_valid_label_name};
use crate::notify::time_interval::{self as ti, TimeInterval};
use crate::rules::duration::parse_duration;

pub(super) fn validate(ctx: &mut Ctx, raw: RawConfig) -> Option<Config> {
    let global = global(ctx, raw.global.as_ref());
    let mut receivers = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in raw.receivers.iter().flatten().enumerate() {
        let path = format!("receivers[{i}]");
        let Some(rcv) = integrations::receiver(ctx, &path, r, &global) else {
            continue;
        };
        if !names.insert(rcv.name.clone()) {
            let loc = r.value.name.as_ref().map_or(r.referenced, |n| n.referenced);
            ctx.err(
                format!("{path}.name"),
                &loc,
                ConfigErrorKind::DuplicateReceiver(rcv.name.clone()),
            );
        }
        receivers.push(rcv);
    }
    let mut time_intervals = BTreeMap::new();
    for (field, list) in [
        ("mute_time_intervals", &raw.mute_time_intervals),
        ("time_intervals", &raw.time_intervals),
    ] {
        for (i, t) in list.iter().flatten().enumerate() {
            let path = format!("{field}[{i}]");
            if let Some((name, set)) = named_interval(ctx, &path, t)
                && time_intervals.insert(name.clone(), set).is_some()
            {
                ctx.err(
                    format!("{path}.name"),
                    &t.referenced,
                    ConfigErrorKind::DuplicateTimeInterval(name),
                );
            }
        }
    }
    let inhibit_rules = raw
        .inhibit_rules
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| inhibit_rule(ctx, &format!("inhibit_rules[{i}]"), r))
        .collect();
    let Some(root) = raw.route.as_ref() else {
        ctx.err(
            "route",
            &Location::UNKNOWN,
            ConfigErrorKind::Invalid("no routes provided".into()),
        );
        return None;
    };
    let route = route(ctx, "route", root);
    let rv = &root.value;
    let root_err = |ctx: &mut Ctx, m: &str| {
        ctx.err(
            "route",
            &root.referenced,
            ConfigErrorKind::Invalid(m.into()),
        );
    };
    if route.receiver.as_deref().unwrap_or("").is_empty() {
        root_err(ctx, "root route must specify a default receiver");
    }
    if !route.matchers.is_empty() || rv.match_eq.is_some() || rv.match_re.is_some() {
        root_err(ctx, "root route must not have any matchers");
    }
    if !route.mute_time_intervals.is_empty() {
        root_err(ctx, "root route must not have any mute time intervals");
    }
    if !route.active_time_intervals.is_empty() {
        root_err(ctx, "root route must not have any active time intervals");
    }
    if route.continue_matching {
        root_err(ctx, "cannot have continue in root route");
    }
    check_references(ctx, "route", root, &names, &time_intervals);
    Some(Config {
        global,
        route,
        receivers,
        inhibit_rules,
        time_intervals,
        templates: raw
            .templates
            .iter()
            .flatten()
            .map(|t| t.value.clone())
            .collect(),
        library: TemplateLibrary::defaults(),
    })
}

fn secret_of(v: &Option<S<String>>) -> Option<SecretSource> {
    v.as_ref()
        .filter(|x| !x.value.is_empty())
        .map(|x| SecretSource::Inline(Secret::new(&x.value)))
}

fn global(ctx: &mut Ctx, raw: Option<&S<raw::RawGlobal>>) -> GlobalConfig {
    let mut g = GlobalConfig::default();
    let Some(r) = raw else {
        return g;
    };
    let v = &r.value;
    if let Some(d) = duration(ctx, "global.resolve_timeout", &v.resolve_timeout) {
        g.resolve_timeout = d;
    }
    let default_http = g.http_config.clone();
    g.http_config = http::http_config(ctx, "global", v.http_config.as_ref(), &default_http);
    let str_of = |x: &Option<S<String>>| x.as_ref().map(|s| s.value.clone());
    if let Some(h) = &v.smtp_smarthost {
        if !h.value.is_empty()
            && let Err(e) = super::email::check_host_port(&h.value)
        {
            ctx.err(
                "global.smtp_smarthost",
                &h.referenced,
                ConfigErrorKind::Invalid(e),
            );
        }
        g.smtp.smarthost = h.value.clone();
    }
    g.smtp.from = str_of(&v.smtp_from).unwrap_or_default();
    if let Some(h) = str_of(&v.smtp_hello) {
        g.smtp.hello = h;
    }
    g.smtp.auth_username = str_of(&v.smtp_auth_username).unwrap_or_default();
    g.smtp.auth_password = http::inline_or_file(
        ctx,
        "global",
        &v.smtp_auth_password,
        &v.smtp_auth_password_file,
        ("smtp_auth_password", "smtp_auth_password_file"),
    );
    g.smtp.auth_secret = secret_of(&v.smtp_auth_secret).map(|s| match s {
        SecretSource::Inline(s) => s,
        SecretSource::File(f) => Secret::new(f),
    });
    g.smtp.auth_identity = str_of(&v.smtp_auth_identity).unwrap_or_default();
    if let Some(t) = &v.smtp_require_tls {
        g.smtp.require_tls = t.value;
    }
    g.smtp.tls = http::tls(v.smtp_tls_config.as_ref());
    if let Some(u) = &v.slack_api_url {
        http::url_field(ctx, "global", "slack_api_url", &Some(u.clone()));
    }
    g.slack_api_url = http::inline_or_file(
        ctx,
        "global",
        &v.slack_api_url,
        &v.slack_api_url_file,
        ("slack_api_url", "slack_api_url_file"),
    );
    if let Some(u) = http::url_field(ctx, "global", "pagerduty_url", &v.pagerduty_url) {
        g.pagerduty_url = u;
    }
    if let Some(u) = http::url_field(ctx, "global", "opsgenie_api_url", &v.opsgenie_api_url) {
        g.opsgenie_api_url = u;
    }
    g.opsgenie_api_key = http::inline_or_file(
        ctx,
        "global",
        &v.opsgenie_api_key,
        &v.opsgenie_api_key_file,
        ("opsgenie_api_key", "opsgenie_api_key_file"),
    );
    g
}

fn duration(ctx: &mut Ctx, path: &str, v: &Option<S<String>>) -> Option<Duration> {
    let v = v.as_ref()?;
    match parse_duration(&v.value) {
        Ok(d) => Some(d),
        Err(e) => {
            ctx.err(
                path,
                &v.referenced,
                ConfigErrorKind::Duration(e.to_string()),
            );
            None
        }
    }
}

/// `match` / `match_re` maps (equality or regex) into matchers.
fn map_matchers(ctx: &mut Ctx, path: &str, map: &Option<PairList>, op: MatchOp) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (k, v) in map.iter().flat_map(|m| m.0.iter()) {
        match Matcher::new(op, &k.value, &v.value) {
            Ok(m) => out.push(m),
            Err(e) => ctx.err(format!("{path}.{}", k.value), &k.referenced, e.into()),
        }
    }
    out
}

/// A `matchers` list: each entry may hold several comma-separated matchers.
fn list_matchers(ctx: &mut Ctx, path: &str, list: &Option<Vec<S<String>>>) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (i, m) in list.iter().flatten().enumerate() {
        match Matchers::parse(&m.value) {
            Ok(ms) => out.extend(ms.as_slice().iter().cloned()),
            Err(e) => ctx.err(format!("{path}[{i}]"), &m.referenced, e.into()),
        }
    }
    out
}

fn route(ctx: &mut Ctx, path: &str, r: &S<raw::RawRoute>) -> RouteConfig {
    let v = &r.value;
    let mut matchers = map_matchers(ctx, &format!("{path}.match"), &v.match_eq, MatchOp::Equal);
    // Alertmanager builds `match_re` matchers from the compiled regex's source, which is the
    // anchored `^(?:re)$`: that is what appears in its route keys, so we do the same.
    let mut re = map_matchers(
        ctx,
        &format!("{path}.match_re"),
        &v.match_re,
        MatchOp::Regex,
    );
    for m in &mut re {
        *m = Matcher::new(MatchOp::Regex, m.name(), &format!("^(?:{})$", m.value()))
            .expect("an anchored valid regex stays valid");
    }
    matchers.extend(re);
    matchers.extend(list_matchers(ctx, &format!("{path}.matchers"), &v.matchers));
    let group_by = v.group_by.as_ref().and_then(|list| {
        let mut all = false;
        let mut labels: Vec<String> = Vec::new();
        for (i, l) in list.iter().enumerate() {
            let lp = format!("{path}.group_by[{i}]");
            if l.value == "..." {
                all = true;
            } else if !is_valid_label_name(&l.value) {
                ctx.err(
                    lp,
                    &l.referenced,
                    ConfigErrorKind::Invalid(format!(
                        "invalid label name {:?} in group_by list",
                        l.value
                    )),
                );
            } else if labels.contains(&l.value) {
                ctx.err(
                    lp,
                    &l.referenced,
                    ConfigErrorKind::Invalid(format!("duplicated label {:?} in group_by", l.value)),
                );
            } else {
                labels.push(l.value.clone());
            }
        }
        if all && !labels.is_empty() {
            ctx.err(
                format!("{path}.group_by"),
                &r.referenced,
                ConfigErrorKind::Invalid(
                    "cannot have wildcard group_by (`...`) and other other labels at the same time"
                        .into(),
                ),
            );
        }
        // As in Alertmanager, `group_by: []` leaves the parent's grouping in place.
        match (all, labels.is_empty()) {
            (true, _) => Some(GroupBy::All),
            (false, true) => None,
            (false, false) => Some(GroupBy::Labels(labels)),
        }
    });
    let group_interval = duration(ctx, &format!("{path}.group_interval"), &v.group_interval);
    let repeat_interval = duration(ctx, &format!("{path}.repeat_interval"), &v.repeat_interval);
    for (field, d, raw) in [
        ("group_interval", group_interval, &v.group_interval),
        ("repeat_interval", repeat_interval, &v.repeat_interval),
    ] {
        if d == Some(Duration::ZERO) {
            let loc = raw.as_ref().map_or(r.referenced, |x| x.referenced);
            ctx.err(
                format!("{path}.{field}"),
                &loc,
                ConfigErrorKind::Invalid(format!("{field} cannot be zero")),
            );
        }
    }
    let names = |l: &Option<Vec<S<String>>>| -> Vec<String> {
        l.iter().flatten().map(|s| s.value.clone()).collect()
    };
    RouteConfig {
        receiver: v
            .receiver
            .as_ref()
            .map(|r| r.value.clone())
            .filter(|r| !r.is_empty()),
        group_by,
        matchers: Matchers::new(matchers),
        continue_matching: v.continue_.as_ref().is_some_and(|c| c.value),
        group_wait: duration(ctx, &format!("{path}.group_wait"), &v.group_wait),
        group_interval,
        repeat_interval,
        mute_time_intervals: names(&v.mute_time_intervals),
        active_time_intervals: names(&v.active_time_intervals),
        routes: v
            .routes
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| route(ctx, &format!("{path}.routes[{i}]"), c))
            .collect(),
    }
}

fn check_references(
    ctx: &mut Ctx,
    path: &str,
    r: &S<raw::RawRoute>,
    receivers: &BTreeSet<String>,
    intervals: &BTreeMap<String, Vec<TimeInterval>>,
) {
    let v = &r.value;
    if let Some(rc) = v.receiver.as_ref().filter(|x| !x.value.is_empty())
        && !receivers.contains(&rc.value)
    {
        ctx.err(
            format!("{path}.receiver"),
            &rc.referenced,
            ConfigErrorKind::UndefinedReceiver(rc.value.clone()),
        );
    }
    for (field, list) in [
        ("mute_time_intervals", &v.mute_time_intervals),
        ("active_time_intervals", &v.active_time_intervals),
    ] {
        for (i, n) in list.iter().flatten().enumerate() {
            if !intervals.contains_key(&n.value) {
                ctx.err(
                    format!("{path}.{field}[{i}]"),
                    &n.referenced,
                    ConfigErrorKind::UndefinedTimeInterval(n.value.clone()),
                );
            }
        }
    }
    for (i, c) in v.routes.iter().flatten().enumerate() {
        check_references(ctx, &format!("{path}.routes[{i}]"), c, receivers, intervals);
    }
}

fn inhibit_rule(ctx: &mut Ctx, path: &str, r: &S<raw::RawInhibitRule>) -> InhibitRule {
    let v = &r.value;
    let side = |ctx: &mut Ctx, side: &str, eq: &Option<PairList>, re: &Option<PairList>, ms| {
        let mut out = map_matchers(ctx, &format!("{path}.{side}_match"), eq, MatchOp::Equal);
        out.extend(map_matchers(
            ctx,
            &format!("{path}.{side}_match_re"),
            re,
            MatchOp::Regex,
        ));
        out.extend(list_matchers(ctx, &format!("{path}.{side}_matchers"), ms));
        Matchers::new(out)
    };
    let source = side(
        ctx,
        "source",
        &v.source_match,
        &v.source_match_re,
        &v.source_matchers,
    );
    let target = side(
        ctx,
        "target",
        &v.target_match,
        &v.target_match_re,
        &v.target_matchers,
    );
    let mut equal = Vec::new();
    for (i, e) in v.equal.iter().flatten().enumerate() {
        if is_valid_label_name(&e.value) {
            equal.push(e.value.clone());
        } else {
            ctx.err(
                format!("{path}.equal[{i}]"),
                &e.referenced,
                ConfigErrorKind::Invalid(format!("{:?} is not a valid label name", e.value)),
            );
        }
    }
    InhibitRule {
        name: v.name.as_ref().map(|n| n.value.clone()),
        source,
        target,
        equal,
    }
}

fn named_interval(
    ctx: &mut Ctx,
    path: &str,
    t: &S<raw::RawNamedInterval>,
) -> Option<(String, Vec<TimeInterval>)> {
    let name = match &t.value.name {
        Some(n) if !n.value.is_empty() => n.value.clone(),
        _ => {
            ctx.err(
                format!("{path}.name"),
                &t.referenced,
                ConfigErrorKind::Invalid("missing name in time interval".into()),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, r) in t.value.time_intervals.iter().flatten().enumerate() {
        out.push(time_interval(
            ctx,
            &format!("{path}.time_intervals[{i}]"),
            r,
        ));
    }
    Some((name, out))
}

fn time_interval(ctx: &mut Ctx, path: &str, r: &S<raw::RawTimeInterval>) -> TimeInterval {
    let v = &r.value;
    let mut out = TimeInterval::default();
    for (i, t) in v.times.iter().flatten().enumerate() {
        let (s, e) = (&t.value.start_time, &t.value.end_time);
        let get = |x: &Option<S<String>>| x.as_ref().map_or("", |x| x.value.as_str()).to_owned();
        match ti::parse_time_range(&get(s), &get(e)) {
            Ok(tr) => out.times.push(tr),
            Err(m) => ctx.err(
                format!("{path}.times[{i}]"),
                &t.referenced,
                ConfigErrorKind::Invalid(m),
            ),
        }
    }
    type Parse = fn(&str) -> Result<ti::InclusiveRange, String>;
    type Field<'a> = (&'a str, &'a Option<Vec<S<String>>>, Parse);
    let lists: [Field<'_>; 4] = [
        ("weekdays", &v.weekdays, ti::parse_weekdays),
        ("days_of_month", &v.days_of_month, ti::parse_days_of_month),
        ("months", &v.months, ti::parse_months),
        ("years", &v.years, ti::parse_years),
    ];
    for (field, list, parse) in lists {
        for (i, x) in list.iter().flatten().enumerate() {
            match parse(&x.value) {
                Ok(range) => match field {
                    "weekdays" => out.weekdays.push(range),
                    "days_of_month" => out.days_of_month.push(range),
                    "months" => out.months.push(range),
                    _ => out.years.push(range),
                },
                Err(m) => ctx.err(
                    format!("{path}.{field}[{i}]"),
                    &x.referenced,
                    ConfigErrorKind::Invalid(m),
                ),
            }
        }
    }
    if let Some(l) = &v.location {
        match ti::parse_location(&l.value) {
            Ok(off) => out.utc_offset_secs = off,
            Err(m) => ctx.err(
                format!("{path}.location"),
                &l.referenced,
                ConfigErrorKind::Unsupported(m),
            ),
        }
    }
    out
}
