//! Runs the evaluation benchmark end to end on a small dataset against a real Prometheus
//! (Debian's 2.42): both engines must return the same number of series for every
//! expression, and every figure must be reported.

use tocsin_alerter::bench_eval::{EXPRESSIONS, EvalBenchOptions, run};

#[test]
fn bench_eval_compares_with_real_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut opts = EvalBenchOptions::new(dir.path().to_path_buf());
    opts.series_counts = vec![1000];
    opts.iterations = 3;
    let out = run(opts).unwrap_or_else(|e| panic!("bench failed: {e}"));
    println!("{out}");
    for (name, _) in EXPRESSIONS {
        for figure in [
            "ours_median",
            "prometheus_median",
            "ratio_ours_over_prometheus",
        ] {
            assert!(
                out.contains(&format!("series_1000.{name}.{figure}: ")),
                "missing {name}.{figure} in:\n{out}"
            );
        }
    }
    assert!(out.contains("series_1000.chunked_store_bytes_per_sample: "));
}
