//! Our side: the embedded store served over HTTP on loopback as a node serves it, and the
//! in-process ingest rates per CPU-second.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use reqwest::Url;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cpu;
use super::load::Workload;
use crate::datasource::embedded::store::StoreStats;
use crate::datasource::embedded::{
    EmbeddedStore, EmbeddedStoreConfig, Ingest, MetricStore, remote_write,
};

/// Name of the server runtime's threads (at most 15 bytes: the kernel keeps no more), so
/// their CPU time can be told from the clients'.
const SERVER_THREADS: &str = "bench-store-srv";
/// Name of the on-disk log's writer thread (see `embedded::wal`).
const WAL_THREAD: &str = "embedded-wal";
/// How long the server gets to finish its connections when stopped.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Idle blocking-pool threads of the server runtime are kept this long, so none exits (and
/// takes its CPU time out of the sum) during a run.
const THREAD_KEEP_ALIVE: Duration = Duration::from_secs(3600);

/// Our embedded store with its on-disk log (a node's default), its router served on a
/// loopback port by a runtime of its own with as many workers as the machine has cores (a
/// node's runtime). Stopped on drop.
pub(super) struct Server {
    runtime: Option<Runtime>,
    store: Arc<EmbeddedStore>,
    base: Url,
    cancel: CancellationToken,
    served: Option<JoinHandle<()>>,
}

impl Server {
    /// Opens a fresh store logging to `wal_dir` (emptied first) and serves it.
    pub fn start(wal_dir: &Path) -> Result<Self, String> {
        if wal_dir.exists() {
            std::fs::remove_dir_all(wal_dir)
                .map_err(|e| format!("clear {}: {e}", wal_dir.display()))?;
        }
        std::fs::create_dir_all(wal_dir)
            .map_err(|e| format!("create {}: {e}", wal_dir.display()))?;
        let (store, _) = EmbeddedStore::open(EmbeddedStoreConfig::default(), wal_dir)
            .map_err(|e| format!("open our store: {e}"))?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(SERVER_THREADS)
            .thread_keep_alive(THREAD_KEEP_ALIVE)
            .enable_all()
            .build()
            .map_err(|e| format!("server runtime: {e}"))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("bind our store's port: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("our store's port: {e}"))?;
        let base = base_url(addr)?;
        let router = store.router();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let served = runtime.spawn(async move {
            let served = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => axum::serve(l, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "bench: our store's HTTP server failed");
            }
        });
        Ok(Self {
            runtime: Some(runtime),
            store,
            base,
            cancel,
            served: Some(served),
        })
    }

    /// `http://ADDR/` of the query API.
    pub fn base_url(&self) -> Url {
        self.base.clone()
    }

    /// The remote-write endpoint.
    pub fn write_url(&self) -> Url {
        let mut u = self.base_url();
        u.set_path("/api/v1/write");
        u
    }

    /// The served store.
    pub fn store(&self) -> &EmbeddedStore {
        &self.store
    }

    /// Totals of the served store.
    pub fn store_stats(&self) -> StoreStats {
        self.store
            .store()
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stats()
    }

    /// Batches the on-disk log dropped because its writer fell behind.
    pub fn wal_dropped(&self) -> u64 {
        self.store.wal().map_or(0, |w| w.dropped_batches())
    }

    /// CPU time so far of the server side: the runtime's threads and the log's writer (ns).
    pub fn cpu_ns(&self) -> u64 {
        cpu::named_threads_ns(SERVER_THREADS) + cpu::named_threads_ns(WAL_THREAD)
    }

    /// Runs `work` on the server's runtime (the scrape loops run where a node runs them).
    pub fn spawn<F>(&self, work: F) -> Result<JoinHandle<F::Output>, String>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .map(|rt| rt.spawn(work))
            .ok_or_else(|| "our store's server is stopped".to_string())
    }

    /// Stops serving (bounded by [`STOP_GRACE`]) and shuts the runtime down.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(STOP_GRACE, served).await;
        }
        // `Drop` shuts the runtime down.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(rt) = self.runtime.take() {
            // Dropping a runtime inside another runtime's context would panic; this does not.
            rt.shutdown_background();
        }
    }
}

/// `http://ADDR/`.
pub(super) fn base_url(addr: SocketAddr) -> Result<Url, String> {
    Url::parse(&format!("http://{addr}/")).map_err(|e| format!("URL of {addr}: {e}"))
}

/// Samples per CPU-second of one thread.
pub(super) struct InProcess {
    /// Decoded requests through [`Ingest::append_series`] (memory only); each body is decoded
    /// outside the timed spans.
    pub append: f64,
    /// Every body through [`EmbeddedStore::remote_write`]: decode + append (memory only).
    pub decode_append: f64,
}

/// Both in-process rates, each into a fresh store, on the calling thread (call it from a
/// blocking context: it takes a second or more of CPU).
pub(super) fn in_process(work: &Workload) -> Result<InProcess, String> {
    let cfg = EmbeddedStoreConfig::default();
    let ingest = Ingest::new(Arc::new(RwLock::new(MetricStore::default())), None);
    let (mut append_ns, mut refused) = (0, 0);
    for body in &work.bodies {
        let series =
            remote_write::decode(body, cfg.write_body_bytes_max, cfg.write_decoded_bytes_max)
                .map_err(|e| format!("in-process decode: {e}"))?;
        let before = cpu::thread_ns();
        refused += ingest
            .append_series(series.iter().map(|(l, s)| (l, s.as_slice())))
            .refused;
        append_ns += cpu::thread_ns().saturating_sub(before);
    }
    if refused > 0 {
        return Err(format!("in-process append refused {refused} samples"));
    }
    drop(ingest);
    let store = EmbeddedStore::new(cfg);
    let before = cpu::thread_ns();
    for body in &work.bodies {
        let summary = store
            .remote_write(body)
            .map_err(|e| format!("in-process remote write: {e}"))?;
        refused += summary.refused;
    }
    let decode_ns = cpu::thread_ns().saturating_sub(before);
    if refused > 0 {
        return Err(format!("in-process remote write refused {refused} samples"));
    }
    let per_sec = |ns: u64| work.samples as f64 / (ns.max(1) as f64 / 1e9);
    Ok(InProcess {
        append: per_sec(append_ns),
        decode_append: per_sec(decode_ns),
    })
}
