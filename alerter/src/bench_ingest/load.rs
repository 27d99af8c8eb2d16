//! The remote-write load: the generated samples as request bodies in the shape Prometheus's
//! own sender produces, and sending them to a receiver the way its queue manager does.
//!
//! Prometheus's remote-write queue batches the newest samples of many series into one request
//! (`max_samples_per_send`, 500 by default in 2.x), so a request carries one sample of each of
//! its series, and the series are spread over shards that each send their requests one at a
//! time, which keeps every series' samples in order. The bodies here are the same: for every
//! 15 s step, one request per batch of `series_per_request` series; batch `b` always goes
//! through shard `b mod in_flight`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::{INTERVAL_MS, IngestBenchOptions};
use crate::bench_eval;
use crate::datasource::embedded::remote_write::{self, DecodedSeries};

/// The data of one run, generated once and sent identically to both stores.
pub(super) struct Workload {
    /// Remote-write bodies, step by step: `bodies[step * batches + batch]`.
    pub bodies: Vec<Bytes>,
    /// Batches of series per step.
    pub batches: usize,
    /// Samples in total.
    pub samples: usize,
    /// Time of the newest sample (ms): the queries' evaluation time.
    pub end_ms: i64,
}

impl Workload {
    /// [`bench_eval`]'s dataset, one sample every [`INTERVAL_MS`] ending at `now_ms` (rounded
    /// down to the second), encoded as remote-write 1.0 requests.
    pub fn generate(opts: &IngestBenchOptions, now_ms: i64) -> Self {
        let end_ms = now_ms - now_ms.rem_euclid(1000);
        let steps = opts.samples_per_series as i64;
        let start_ms = end_ms - (steps - 1) * INTERVAL_MS;
        let data = bench_eval::dataset(opts.series);
        let batches = data.len().div_ceil(opts.series_per_request);
        let mut bodies = Vec::with_capacity(batches * opts.samples_per_series);
        let mut request: Vec<DecodedSeries> = Vec::with_capacity(opts.series_per_request);
        for step in 0..steps {
            let t = start_ms + step * INTERVAL_MS;
            for batch in data.chunks(opts.series_per_request) {
                request.clear();
                request.extend(batch.iter().map(|(labels, shape)| {
                    (labels.clone(), vec![(t, shape.value(step, INTERVAL_MS))])
                }));
                bodies.push(Bytes::from(remote_write::encode(&request)));
            }
        }
        Self {
            bodies,
            batches,
            samples: data.len() * opts.samples_per_series,
            end_ms,
        }
    }

    /// Total size of the bodies.
    pub fn body_bytes(&self) -> usize {
        self.bodies.iter().map(Bytes::len).sum()
    }

    /// The bodies shard `shard` of `shards` sends, in order.
    fn shard(&self, shard: usize, shards: usize) -> impl Iterator<Item = &Bytes> {
        self.bodies
            .iter()
            .enumerate()
            .filter(move |(i, _)| (i % self.batches) % shards == shard)
            .map(|(_, b)| b)
    }
}

/// Sends every body to `url` through `shards` shards (each one request at a time); returns
/// the wall time from the first request to the last answer. Any answer but 2xx fails the run
/// (a receiver that refused samples would make every later figure meaningless).
pub(super) async fn post_all(
    client: &reqwest::Client,
    url: &Url,
    work: &Workload,
    shards: usize,
) -> Result<Duration, String> {
    let started = Instant::now();
    let sends = (0..shards).map(|shard| async move {
        for body in work.shard(shard, shards) {
            post_one(client, url, body.clone()).await?;
        }
        Ok::<(), String>(())
    });
    futures::future::try_join_all(sends).await?;
    Ok(started.elapsed())
}

async fn post_one(client: &reqwest::Client, url: &Url, body: Bytes) -> Result<(), String> {
    let resp = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/x-protobuf")
        .header(CONTENT_ENCODING, "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("remote write to {url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(format!(
        "remote write to {url}: HTTP {status}: {}",
        text.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_is_recent_step_by_step_and_decodes_back() {
        let mut opts = IngestBenchOptions::new(std::path::PathBuf::from("/nonexistent"));
        opts.series = 30;
        opts.samples_per_series = 25;
        opts.series_per_request = 7;
        let now = 1_800_000_000_123;
        let w = Workload::generate(&opts, now);
        assert_eq!(w.samples, 30 * 25);
        assert_eq!((w.batches, w.bodies.len()), (5, 5 * 25));
        assert_eq!(w.end_ms, 1_800_000_000_000);
        let decode = |b: &Bytes| remote_write::decode(b, 1 << 24, 1 << 26).unwrap();
        let first = decode(&w.bodies[0]);
        assert_eq!(first.len(), 7);
        assert!(first.iter().all(|(_, s)| s.len() == 1));
        let last = decode(&w.bodies[w.bodies.len() - 1]);
        assert_eq!(last.len(), 2, "30 = 4 × 7 + 2");
        assert_eq!(last[0].1[0].0, w.end_ms);
        // Shards split the batches, and one series' samples stay in one shard, in order.
        let shard0: Vec<_> = w.shard(0, 2).map(decode).collect();
        let shard1 = w.shard(1, 2).count();
        assert_eq!((shard0.len(), shard1), (3 * 25, 2 * 25));
        let times: Vec<i64> = shard0
            .iter()
            .filter(|r| r[0].0 == first[0].0)
            .map(|r| r[0].1[0].0)
            .collect();
        assert_eq!(times.len(), 25);
        assert!(times.windows(2).all(|p| p[1] - p[0] == INTERVAL_MS));
    }
}
