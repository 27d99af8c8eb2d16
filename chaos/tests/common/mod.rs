//! Helpers shared by the emulator tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Every HTTP call in these tests is bounded by this.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A client with a deadline on every call and no connection reuse surprises.
pub fn client() -> reqwest::Client {
    tocsin_chaos::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()
        .expect("client")
}

/// Polls `cond` until it holds or `deadline` passes.
pub async fn wait_until<F, Fut>(mut cond: F, deadline: Duration, what: &str)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
