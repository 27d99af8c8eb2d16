use tocsin_state::model::{AlertState, GroupKey, Silence, SilenceMatcher};

use super::*;
use crate::notify::config::load;

const CONFIG: &str = r#"
route:
  receiver: team
  group_by: [cluster]
  group_wait: 30s
  group_interval: 5m
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [cluster]
receivers:
  - name: team
    webhook_configs:
      - url: 'http://hook.example.org/'
"#;

fn alert(fp: u64, name: &str, severity: &str, state: AlertState) -> AlertInstance {
    AlertInstance {
        fingerprint: Fingerprint(fp),
        group: GroupKey {
            namespace: "ns".into(),
            name: "g".into(),
        },
        rule: name.into(),
        labels: [
            ("alertname", name),
            ("cluster", "eu"),
            ("severity", severity),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        annotations: BTreeMap::new(),
        state,
        active_at_ms: 0,
        fired_at_ms: Some(0),
        resolved_at_ms: None,
        keep_firing_since_ms: None,
        value: 1.0,
    }
}

fn all(_: &NotificationKey) -> bool {
    true
}

#[test]
fn inhibited_and_silenced_alerts_are_left_out() {
    let mut d = Dispatcher::new(load(CONFIG).unwrap());
    let crit = alert(1, "Down", "critical", AlertState::Firing);
    let warn = alert(2, "Slow", "warning", AlertState::Firing);
    let info = alert(3, "Noisy", "info", AlertState::Firing);
    for a in [&crit, &warn, &info] {
        let keys = d.on_alert(a, &all, 0);
        assert_eq!(keys[0].group_key, r#"{}:{cluster="eu"}"#);
    }
    let inhibitor = Inhibitor::new(load(CONFIG).unwrap().inhibit_rules);
    let firing: Vec<FiringAlert<'_>> = [&crit, &warn, &info]
        .iter()
        .map(|a| FiringAlert {
            fingerprint: a.fingerprint,
            labels: &a.labels,
        })
        .collect();
    let (silencer, bad) = Silencer::new([Silence {
        id: "s1".into(),
        matchers: vec![SilenceMatcher {
            name: "alertname".into(),
            value: "Noisy".into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at_ms: 0,
        ends_at_ms: 3_600_000,
        created_by: "me".into(),
        comment: "".into(),
    }]);
    assert!(bad.is_empty());
    let mute = MuteState {
        inhibitor: &inhibitor,
        firing: &firing,
        silencer: &silencer,
    };
    assert_eq!(d.next_deadline(), Some(30_000));
    assert!(d.poll(29_999, &mute).is_empty());
    let f = d.poll(30_000, &mute);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].firing, [Fingerprint(1)]);
    let route = d.tree().root().id;
    assert_eq!(
        d.mute_reason(route, Fingerprint(2), &mute, 30_000),
        Some(MuteReason::Inhibited {
            rule: 0,
            by: Fingerprint(1)
        })
    );
    assert_eq!(
        d.mute_reason(route, Fingerprint(3), &mute, 30_000),
        Some(MuteReason::Silenced(vec!["s1".into()]))
    );

    // Handoff: the new owner resumes from the committed log and sends nothing new.
    let logs: BTreeMap<_, _> = [(f[0].key.clone(), f[0].log.clone())].into();
    let mut r = Dispatcher::resume(
        load(CONFIG).unwrap(),
        &[crit.clone(), warn.clone(), info.clone()],
        &logs,
        &BTreeMap::new(),
        &all,
        60_000,
    );
    assert_eq!(r.next_deadline(), Some(330_000));
    assert!(r.poll(330_000, &mute).is_empty());
    // Unowned streams are not kept.
    let none = Dispatcher::resume(
        load(CONFIG).unwrap(),
        &[crit],
        &logs,
        &BTreeMap::new(),
        &|_| false,
        60_000,
    );
    assert_eq!(none.next_deadline(), None);
}

#[test]
fn the_last_flush_of_a_group_keeps_its_route_after_the_stream_is_dropped() {
    let mut d = Dispatcher::new(load(CONFIG).unwrap());
    let mut down = alert(1, "Down", "critical", AlertState::Firing);
    d.on_alert(&down, &all, 0);
    let inhibitor = Inhibitor::new(Vec::new());
    let (silencer, _) = Silencer::new([]);
    let mute = MuteState {
        inhibitor: &inhibitor,
        firing: &[],
        silencer: &silencer,
    };
    let first = d.poll(30_000, &mute);
    let key = first[0].key.clone();
    let route = d.route(&key).expect("the stream is live");
    assert_eq!(first[0].route, Some(route));
    down.state = AlertState::Resolved;
    down.resolved_at_ms = Some(40_000);
    d.on_alert(&down, &all, 40_000);
    let deadline = d.next_deadline().expect("a resolve is due");
    let last = d.poll(deadline, &mute);
    assert!(last[0].resolve_only, "{last:?}");
    // The group went idle and its stream was dropped in that same poll: the flush itself
    // must still name the route (its group labels come from it).
    assert_eq!(d.route(&key), None);
    assert_eq!(last[0].route, Some(route));
}
