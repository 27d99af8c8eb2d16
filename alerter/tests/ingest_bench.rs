//! Runs the ingest benchmark end to end at a tiny size against a real Prometheus (Debian's
//! 2.42): every figure must be reported with a sane value — rates positive, both stores
//! holding the same samples, every query returning series (the run itself fails when the two
//! return different numbers). No timing is asserted.

mod support;

use std::collections::BTreeMap;

use tocsin_alerter::bench_ingest::{IngestBenchOptions, run};

/// The figures of one output, by name.
fn figures(out: &str) -> BTreeMap<String, f64> {
    out.lines()
        .map(|l| {
            let (name, rest) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("not `name: value unit`: {l:?}"));
            let value = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no numeric value in {l:?}"));
            (name.to_string(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ingest_compares_with_real_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = IngestBenchOptions::new(dir.path().to_path_buf());
    opts.prometheus = support::find_binary("prometheus", "prometheus");
    opts.series = 200;
    opts.samples_per_series = 30;
    opts.series_per_request = 50;
    opts.in_flight = 2;
    opts.iterations = 2;
    opts.scrapes = 2;
    let out = run(opts)
        .await
        .unwrap_or_else(|e| panic!("bench failed: {e}"));
    println!("{out}");
    let f = figures(&out);
    let get = |name: &str| {
        *f.get(name)
            .unwrap_or_else(|| panic!("missing {name} in:\n{out}"))
    };
    assert_eq!(get("data.samples"), 200.0 * 30.0);
    for positive in [
        "in_process.append_samples_per_cpu_sec",
        "in_process.decode_append_samples_per_cpu_sec",
        "remote_write.ours_samples_per_sec",
        "remote_write.prometheus_samples_per_sec",
        "remote_write.ratio_ours_over_prometheus",
        "remote_write.ours_server_samples_per_cpu_sec",
        "remote_write.prometheus_samples_per_cpu_sec",
        "bytes.ours_chunk_bytes_per_sample",
        "bytes.prometheus_chunk_bytes_per_sample",
        "scrape.ours_scrape_duration_median",
        "scrape.ours_cycle_median",
        "scrape.prometheus_scrape_duration_median",
        "scrape.ours_samples_per_sec",
        "scrape.prometheus_samples_per_sec",
        "scrape.ratio_ours_over_prometheus",
    ] {
        let v = get(positive);
        assert!(v.is_finite() && v > 0.0, "{positive} = {v} in:\n{out}");
    }
    // Gorilla chunks of regular 15 s samples: well under the 16 bytes of a raw sample.
    for bytes in [
        "bytes.ours_chunk_bytes_per_sample",
        "bytes.prometheus_chunk_bytes_per_sample",
    ] {
        assert!(get(bytes) < 16.0, "{bytes} in:\n{out}");
    }
    assert_eq!(get("scrape.series"), 200.0);
    for name in [
        "rate_threshold",
        "sum_rate_by_job",
        "histogram_p99",
        "selector",
    ] {
        assert!(get(&format!("query.{name}.series")) > 0.0, "{name}:\n{out}");
        for figure in [
            "ours_median",
            "prometheus_median",
            "ratio_ours_over_prometheus",
            "ours_in_process_median",
        ] {
            let v = get(&format!("query.{name}.{figure}"));
            assert!(
                v.is_finite() && v > 0.0,
                "query.{name}.{figure} = {v}:\n{out}"
            );
        }
    }
    assert_eq!(get("remote_write.ours_wal_dropped_batches"), 0.0);
}
