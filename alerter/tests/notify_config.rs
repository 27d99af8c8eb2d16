//! Loads realistic `alertmanager.yml` files using every supported feature and checks what the
//! loader made of them: routing, grouping options, receivers with defaults, inhibition and
//! time intervals.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tocsin_alerter::notify::config::{
    ConfigErrorKind, GroupBy, Integration, PagerDutyKey, SecretSource, SmsSender, load, load_file,
};
use tocsin_alerter::notify::inhibit::{FiringAlert, Inhibitor};
use tocsin_alerter::notify::route::RouteTree;
use tocsin_state::model::Fingerprint;

fn read(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/notify")
            .join(name),
    )
    .unwrap()
}

fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn realistic_alertmanager_config_loads() {
    // As `tocsin notify check` reads it: its templates pattern matches no file here.
    let c = load_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/notify/corpus/good_full.yml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.global.resolve_timeout, Duration::from_secs(600));
    assert_eq!(c.templates, ["/etc/alertmanager/templates/*.tmpl"]);
    assert_eq!(c.receivers.len(), 9);
    assert_eq!(c.inhibit_rules.len(), 2);
    assert_eq!(
        c.time_intervals.keys().collect::<Vec<_>>(),
        ["business-hours", "holidays", "weekends"]
    );

    let tree = RouteTree::new(&c.route);
    let page_db = l(&[
        ("alertname", "Down"),
        ("severity", "page"),
        ("service", "db"),
        ("env", "prod"),
    ]);
    let routes = tree.matches(&page_db);
    let names: Vec<&str> = routes.iter().map(|r| r.opts.receiver.as_str()).collect();
    assert_eq!(names, ["pager", "team-db"]);
    assert_eq!(routes[0].opts.group_wait, Duration::from_secs(10));
    assert_eq!(
        routes[0].opts.repeat_interval,
        Duration::from_secs(3 * 3600)
    );
    assert_eq!(
        routes[1].opts.group_by,
        GroupBy::Labels(vec!["alertname".into(), "instance".into()])
    );
    let audit = tree.matches(&l(&[("kind", "audit"), ("x", "1")]));
    assert_eq!(audit[0].opts.group_by, GroupBy::All);
    assert_eq!(
        audit[0].group_key(&l(&[("kind", "audit"), ("x", "1")])),
        r#"{}/{kind="audit"}:{kind="audit", x="1"}"#
    );
    let crit = tree.matches(&l(&[("service", "db"), ("severity", "critical")]));
    assert_eq!(crit[0].opts.receiver, "team-db-pager");
    assert_eq!(crit[0].opts.repeat_interval, Duration::from_secs(3600));
    let mail = tree.matches(&l(&[("service", "mysql")]));
    assert_eq!(mail[0].opts.receiver, "team-db-mail");
    assert_eq!(mail[0].opts.mute_time_intervals, ["weekends"]);

    let Integration::PagerDuty(pd) = &c.receiver("pager").unwrap().integrations[0] else {
        panic!("pager is PagerDuty");
    };
    assert!(matches!(pd.key, PagerDutyKey::Routing(_)));
    assert!(pd.send_resolved);
    assert_eq!(pd.details.len(), 5, "custom detail plus the four defaults");
    let Integration::PagerDuty(v1) = &c.receiver("team-db-pager").unwrap().integrations[0] else {
        panic!("PagerDuty");
    };
    assert!(matches!(v1.key, PagerDutyKey::Service(_)));
    let Integration::Slack(slack) = &c.receiver("team-db").unwrap().integrations[0] else {
        panic!("Slack");
    };
    assert!(matches!(&slack.api_url, SecretSource::Inline(u) if u.expose().contains("T000")));
    assert_eq!(slack.actions.len(), 1);
    let Integration::Email(mail) = &c.receiver("team-db-mail").unwrap().integrations[0] else {
        panic!("email");
    };
    assert_eq!(mail.smarthost, "mail.example.org:25");
    assert_eq!(mail.from, "alertmanager@example.org");
    assert!(!mail.require_tls);
    // `ops` and `sns-topic` are webhooks: Tocsin refuses Opsgenie and SNS receivers (see
    // `opsgenie_and_sns_are_refused_by_path`).
    assert!(matches!(
        &c.receiver("ops").unwrap().integrations[0],
        Integration::Webhook(_)
    ));

    // Inhibition with `equal`, from the file's first rule.
    let ih = Inhibitor::new(c.inhibit_rules.clone());
    let src = l(&[
        ("alertname", "Down"),
        ("cluster", "a"),
        ("severity", "critical"),
    ]);
    let firing = [FiringAlert {
        fingerprint: Fingerprint(7),
        labels: &src,
    }];
    let tgt = l(&[
        ("alertname", "Down"),
        ("cluster", "a"),
        ("severity", "warning"),
    ]);
    assert_eq!(ih.mutes(&tgt, &firing), Some((0, Fingerprint(7))));
    // Second rule: ClusterDown inhibits everything in its cluster, but not itself.
    let down = l(&[("alertname", "ClusterDown"), ("cluster", "b")]);
    let firing = [FiringAlert {
        fingerprint: Fingerprint(8),
        labels: &down,
    }];
    assert_eq!(
        ih.mutes(&l(&[("alertname", "X"), ("cluster", "b")]), &firing),
        Some((1, Fingerprint(8)))
    );
    assert_eq!(ih.mutes(&down, &firing), None);

    // Business hours: 2024-03-15 is a Friday.
    assert!(c.in_time_interval("business-hours", 1_710_498_600_000));
    assert!(!c.in_time_interval("business-hours", 1_710_585_000_000));
}

#[test]
fn tocsin_sms_receivers_load() {
    let c = load(&read("tocsin_full.yml")).unwrap_or_else(|e| panic!("{e}"));
    let chain = c.receiver("sms-chain").unwrap();
    let kinds: Vec<&str> = chain.integrations.iter().map(Integration::kind).collect();
    assert_eq!(kinds, ["twilio", "vonage"]);
    let Integration::Twilio(t) = &chain.integrations[0] else {
        panic!("twilio");
    };
    assert_eq!(t.to, ["+15550002222", "+15550003333"]);
    assert_eq!(t.sender, SmsSender::From("+15550001111".into()));
    assert_eq!(t.api_url, "https://api.twilio.com");
    assert!(!t.send_resolved);
    let Integration::Vonage(v) = &chain.integrations[1] else {
        panic!("vonage");
    };
    assert_eq!(
        v.api_secret,
        SecretSource::File("/etc/tocsin/vonage-secret".into())
    );
    let oncall = c.receiver("oncall").unwrap();
    assert!(oncall.send_resolved());
    let Integration::Twilio(t) = &oncall.integrations[1] else {
        panic!("twilio");
    };
    assert_eq!(t.sender, SmsSender::MessagingService("MG123".into()));
}

#[test]
fn twilio_errors_name_the_field() {
    let e = load(
        "route:\n  receiver: s\nreceivers:\n  - name: s\n    twilio_configs:\n      - account_sid: AC1\n        from: '+1'\n        to: []\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("receivers[0].twilio_configs[0].auth_token"),
        "{e}"
    );
    assert!(e.contains("receivers[0].twilio_configs[0].to"), "{e}");
}

/// Opsgenie and SNS parse (as in Alertmanager) but are refused: Tocsin has no channel for
/// them, and says what to use instead, naming the integration.
#[test]
fn opsgenie_and_sns_are_refused_by_path() {
    let yaml = "route:\n  receiver: a\nreceivers:\n- name: a\n  webhook_configs: [{url: 'http://x'}]\n- name: b\n  opsgenie_configs: [{api_key: k}]\n- name: c\n  sns_configs: [{phone_number: '+15550001111'}]\n";
    let errors = load(yaml).unwrap_err().0;
    let got: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            assert!(matches!(e.kind, ConfigErrorKind::Unsupported(_)), "{e}");
            (e.path.clone(), e.kind.to_string())
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "receivers[1].opsgenie_configs[0]".to_owned(),
                "Opsgenie delivery is not supported by Tocsin; use pagerduty_configs or webhook_configs"
                    .to_owned()
            ),
            (
                "receivers[2].sns_configs[0]".to_owned(),
                "SNS delivery is not supported by Tocsin; use twilio_configs or vonage_configs"
                    .to_owned()
            ),
        ]
    );
}
