//! The per-target core (labels, `up`, staleness, the series cache) and config validation.

use std::collections::BTreeSet;

use super::*;
use crate::promql::is_stale;

fn target() -> Labels {
    Labels::from_pairs([("job", "node"), ("instance", "h:9100")])
}

/// A successful scrape of `body` (Prometheus text) at `ts`.
fn succeed(st: &mut TargetState, body: &str, ts: i64, d: Duration) -> Vec<Appendable> {
    let scraped = st
        .read(&target(), body, Format::PrometheusText, 100)
        .unwrap();
    st.on_success(&target(), scraped, ts, d)
}

fn find<'a>(out: &'a [Appendable], name: &str) -> Vec<&'a Appendable> {
    out.iter()
        .filter(|(l, _, _)| l.get("__name__") == name)
        .collect()
}

#[test]
fn vanished_series_get_staleness_markers() {
    let mut st = TargetState::default();
    let d = Duration::from_millis(5);
    let out = succeed(&mut st, "a 1\nb 1\n", 1_000, d);
    assert_eq!(out.len(), 5);
    assert_eq!(find(&out, "a")[0].0.get("job"), "node");
    assert_eq!(find(&out, "up")[0].2, 1.0);
    assert_eq!(find(&out, "scrape_duration_seconds")[0].2, 0.005);
    let out = succeed(&mut st, "a 1\n", 2_000, d);
    let b = find(&out, "b");
    assert_eq!(b.len(), 1);
    assert!(is_stale(b[0].2) && b[0].1 == 2_000);
    let out = st.on_failure(&target(), 3_000, d);
    assert!(is_stale(find(&out, "a")[0].2));
    assert_eq!(find(&out, "up")[0].2, 0.0);
    let out = st.on_stop(&target(), 4_000);
    assert!(
        find(&out, "a").is_empty(),
        "already stale after the failure"
    );
    assert!(is_stale(find(&out, "up")[0].2));
}

#[test]
fn conflicting_exposed_labels_are_kept_as_exported() {
    let mut st = TargetState::default();
    let out = succeed(&mut st, "a{job=\"other\"} 1\n", 1, Duration::ZERO);
    let l = &find(&out, "a")[0].0;
    assert_eq!(l.get("job"), "node");
    assert_eq!(l.get("exported_job"), "other");
}

#[test]
fn a_series_seen_before_reuses_its_labels_and_the_cache_follows_the_scrapes() {
    let mut st = TargetState::default();
    let d = Duration::ZERO;
    let first = succeed(&mut st, "a{x=\"1\"} 1\nb 2\n", 1, d);
    // Two texts of one series (labels reordered) and a repeated line: one sample each.
    let body = "a{x=\"1\"} 3\nb{} 4\nb 5\na{x=\"1\"} 6\n";
    let second = succeed(&mut st, body, 2, d);
    assert!(Labels::same_allocation(
        &find(&first, "a")[0].0,
        &find(&second, "a")[0].0
    ));
    assert_eq!(find(&second, "a").len(), 1);
    assert_eq!(find(&second, "a")[0].2, 3.0);
    assert_eq!(find(&second, "b").len(), 1);
    assert_eq!(find(&second, "b")[0].2, 4.0);
    assert_eq!(find(&second, "scrape_samples_scraped")[0].2, 2.0);
    assert_eq!((st.series.len(), st.texts.len()), (2, 3));
    // Texts and series not exposed any more are dropped once they are stale.
    let third = succeed(&mut st, "b 7\n", 3, d);
    assert!(is_stale(find(&third, "a")[0].2));
    assert_eq!(
        (st.series.len(), st.texts.len(), st.by_labels.len()),
        (1, 1, 1)
    );
    let fourth = succeed(&mut st, "b 8\na{x=\"1\"} 9\n", 4, d);
    assert!(find(&fourth, "a").iter().all(|s| s.2 == 9.0));
    assert!(find(&fourth, "b").iter().all(|s| s.2 == 8.0));
}

#[test]
fn two_lines_that_become_one_series_give_one_sample() {
    // `job` moves to `exported_job`, so both lines are one series once the target's
    // labels are applied: the first line's sample is kept (the store would refuse the
    // second at the same time anyway).
    let mut st = TargetState::default();
    let body = "c{job=\"o\"} 1\nc{exported_job=\"o\"} 2\n";
    let out = succeed(&mut st, body, 1, Duration::ZERO);
    assert_eq!(find(&out, "c").len(), 1);
    assert_eq!(find(&out, "c")[0].2, 1.0);
}

#[test]
fn a_failed_read_marks_the_last_successful_scrape_stale() {
    let mut st = TargetState::default();
    let d = Duration::ZERO;
    succeed(&mut st, "a 1\nb 1\n", 1, d);
    // Timestamped samples are not tracked; a bad line fails the whole body.
    let err = st
        .read(
            &target(),
            "c 1\nb 1 5\nx{y=1} 1\n",
            Format::PrometheusText,
            100,
        )
        .unwrap_err();
    assert!(
        matches!(err, ExpositionError::Syntax { line: 3, .. }),
        "{err}"
    );
    let out = st.on_failure(&target(), 2, d);
    let stale: Vec<&str> = out
        .iter()
        .filter(|s| is_stale(s.2))
        .map(|s| s.0.get("__name__"))
        .collect();
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert!(stale.contains(&"a") && stale.contains(&"b"));
    // Too many samples (duplicates do not count) fails the same way.
    succeed(&mut st, "a 1\n", 3, d);
    let flood = "a 1\na 2\nb 1\nc 1\n";
    assert!(st.read(&target(), flood, Format::PrometheusText, 3).is_ok());
    let err = st
        .read(&target(), flood, Format::PrometheusText, 2)
        .unwrap_err();
    assert_eq!(err, ExpositionError::TooManySamples { limit: 2 });
    let out = st.on_failure(&target(), 4, d);
    assert_eq!(out.iter().filter(|s| is_stale(s.2)).count(), 1);
    assert!(st.series.is_empty() && st.texts.is_empty());
}

/// The scrape path before the cache, as reference: every line parsed, target labels
/// applied, a set of the series exposed without timestamps.
fn reference(previous: &mut BTreeSet<Labels>, body: &str, ts: i64) -> Vec<(String, i64, u64)> {
    let exposed = exposition::parse(body, Format::PrometheusText, 100).unwrap();
    let mut out = Vec::new();
    let mut current = BTreeSet::new();
    for s in exposed {
        let labels = with_target_labels(&s.labels, &target());
        if s.t_ms.is_none() {
            current.insert(labels.clone());
        }
        out.push((labels.to_string(), s.t_ms.unwrap_or(ts), s.value.to_bits()));
    }
    for gone in previous.difference(&current) {
        out.push((gone.to_string(), ts, STALE_NAN.to_bits()));
    }
    *previous = current;
    out.sort();
    out
}

proptest::proptest! {
    /// Any sequence of bodies gives the samples the uncached path gives.
    #[test]
    fn cached_scrapes_give_the_uncached_samples(
        bodies in proptest::collection::vec(
            proptest::collection::vec((0usize..8, 0u8..3), 0..10), 1..6),
    ) {
        // Series texts, some denoting one series.
        const LINES: [&str; 8] = [
            "a", "a{}", "b{x=\"1\"}", "b{ x = \"1\" , }", "b{y=\"\",x=\"1\"}",
            "c{job=\"other\"}", "d{v=\"q\\\"}\"}", "e{instance=\"h:9100\"}",
        ];
        let mut st = TargetState::default();
        let mut previous = BTreeSet::new();
        for (i, lines) in bodies.iter().enumerate() {
            let ts = 1_000 * (i as i64 + 1);
            let body: String = lines
                .iter()
                .map(|(l, kind)| match kind {
                    0 => format!("{} {i}\n", LINES[*l]),
                    1 => format!("{} {i} {}\n", LINES[*l], ts - 1),
                    _ => format!("# HELP {} x\n", LINES[*l]),
                })
                .collect();
            let mut ours: Vec<_> = succeed(&mut st, &body, ts, Duration::ZERO)
                .into_iter()
                .filter(|(l, _, _)| !REPORT_METRICS.contains(&l.get("__name__")))
                .map(|(l, t, v)| (l.to_string(), t, v.to_bits()))
                .collect();
            ours.sort();
            let want = reference(&mut previous, &body, ts);
            proptest::prop_assert_eq!(ours, want, "body {:?}", body);
        }
    }
}

#[test]
fn config_validation_names_fields() {
    let raw = RawScrapeConfig {
        job_name: "node".into(),
        targets: vec!["127.0.0.1:9100".into()],
        metrics_path: default_metrics_path(),
        scrape_interval_ms: 1_000,
        scrape_timeout_ms: 500,
        body_size_limit_bytes: 1024,
        sample_limit: 10,
    };
    let cfg = raw.validate().unwrap();
    assert_eq!(cfg.targets[0].url.as_str(), "http://127.0.0.1:9100/metrics");
    assert_eq!(cfg.targets[0].labels.get("instance"), "127.0.0.1:9100");
    let field = |r: RawScrapeConfig| r.validate().unwrap_err().field;
    assert_eq!(
        field(RawScrapeConfig {
            scrape_timeout_ms: 2_000,
            ..raw.clone()
        }),
        "scrape_timeout_ms"
    );
    assert_eq!(
        field(RawScrapeConfig {
            targets: vec!["a b".into()],
            ..raw.clone()
        }),
        "targets[0]"
    );
    assert_eq!(
        field(RawScrapeConfig {
            sample_limit: 0,
            ..raw.clone()
        }),
        "sample_limit"
    );
    let err =
        serde_json::from_str::<RawScrapeConfig>(r#"{"job_name":"x","targets":[],"interval":1}"#)
            .unwrap_err();
    assert!(err.to_string().contains("interval"));
}
