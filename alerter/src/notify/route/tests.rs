use std::collections::BTreeMap;

use super::*;
use crate::notify::config::load;

fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const TREE: &str = r#"
route:
  receiver: default
  group_by: [alertname]
  group_wait: 20s
  routes:
    - matchers: [severity="page"]
      receiver: pager
      continue: true
      group_by: [alertname, cluster]
    - matchers: ['team=~"db|infra"']
      receiver: db
      repeat_interval: 1h
      routes:
        - match: {env: prod}
          receiver: db-prod
          group_by: ['...']
        - receiver: db-other
          group_by: []
    - matchers: [team="web"]
      receiver: web
receivers:
  - name: default
  - name: pager
  - name: db
  - name: db-prod
  - name: db-other
  - name: web
"#;

fn tree() -> RouteTree {
    RouteTree::new(&load(TREE).unwrap().route)
}

#[test]
fn continue_fans_out_and_first_match_stops() {
    let t = tree();
    assert_eq!(
        t.receivers(&l(&[("severity", "page"), ("team", "db"), ("env", "prod")])),
        ["pager", "db-prod"]
    );
    assert_eq!(t.receivers(&l(&[("team", "db")])), ["db-other"]);
    // Without continue on `db`, `web` is never reached for an alert matching both.
    assert_eq!(t.receivers(&l(&[("team", "infra")])), ["db-other"]);
    assert_eq!(t.receivers(&l(&[("team", "web")])), ["web"]);
    assert_eq!(t.receivers(&l(&[("x", "y")])), ["default"]);
    // A matching `continue` route still counts as a match: the root is not added.
    assert_eq!(t.receivers(&l(&[("severity", "page")])), ["pager"]);
}

#[test]
fn options_inherit_except_time_intervals() {
    let t = tree();
    let m = t.matches(&l(&[("team", "db"), ("env", "prod")]));
    let n = m[0];
    assert_eq!(n.opts.receiver, "db-prod");
    assert_eq!(n.opts.group_wait, Duration::from_secs(20));
    assert_eq!(n.opts.repeat_interval, Duration::from_secs(3600));
    assert_eq!(n.opts.group_interval, Duration::from_secs(300));
    assert_eq!(n.opts.group_by, GroupBy::All);
    // `group_by: []` inherits the parent's grouping, as in Alertmanager.
    let other = t.matches(&l(&[("team", "db")]))[0];
    assert_eq!(
        other.opts.group_by,
        GroupBy::Labels(vec!["alertname".into()])
    );
}

#[test]
fn group_keys_match_alertmanager() {
    let t = tree();
    let labels = l(&[
        ("alertname", "Down"),
        ("cluster", "eu\"1"),
        ("severity", "page"),
        ("team", "db"),
        ("env", "prod"),
    ]);
    let m = t.matches(&labels);
    assert_eq!(m[0].key, r#"{}/{severity="page"}"#);
    assert_eq!(
        m[0].group_key(&labels),
        r#"{}/{severity="page"}:{alertname="Down", cluster="eu\"1"}"#
    );
    assert_eq!(m[1].key, r#"{}/{team=~"db|infra"}/{env="prod"}"#);
    assert_eq!(
        m[1].group_key(&labels),
        r#"{}/{team=~"db|infra"}/{env="prod"}:{alertname="Down", cluster="eu\"1", env="prod", severity="page", team="db"}"#
    );
    // A group_by label the alert lacks is left out, not empty.
    let root = t.root();
    assert_eq!(root.group_key(&l(&[("x", "1")])), "{}:{}");
    let key = m[0].notification_key(&labels);
    assert_eq!(key.receiver, "pager");
    let layout = ShardLayout::default();
    assert_eq!(
        notify_shard(&layout, &key),
        notify_shard(&layout, &key.clone())
    );
}

#[test]
fn time_interval_muting() {
    let c = load(
        "route:\n  receiver: r\n  routes:\n    - receiver: r\n      matchers: [a=b]\n      mute_time_intervals: [weekend]\n    - receiver: r\n      active_time_intervals: [weekend]\ntime_intervals:\n  - name: weekend\n    time_intervals: [{weekdays: [saturday, sunday]}]\nreceivers:\n  - name: r\n",
    )
    .unwrap();
    let t = RouteTree::new(&c.route);
    let saturday_ms = 1_710_585_000_000; // 2024-03-16 10:30 UTC
    let monday_ms = saturday_ms + 2 * 86_400_000;
    let muted = &t.matches(&l(&[("a", "b")]))[0].opts;
    let active = &t.matches(&l(&[("a", "c")]))[0].opts;
    assert!(muted.muted_at(&c.time_intervals, saturday_ms));
    assert!(!muted.muted_at(&c.time_intervals, monday_ms));
    assert!(!active.muted_at(&c.time_intervals, saturday_ms));
    assert!(active.muted_at(&c.time_intervals, monday_ms));
}

#[test]
fn go_quoting() {
    assert_eq!(go_quote("a\tb\u{1}é"), "\"a\\tb\\x01é\"");
}
