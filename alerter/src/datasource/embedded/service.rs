//! [`EmbeddedStore`]: the embedded store as a service — the shared [`MetricStore`], the query
//! path (engine behind a [`QueryGate`]), ingestion (scrape loops, remote write), retention, and
//! the optional on-disk log.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::EmbeddedDatasource;
use super::config::EmbeddedStoreConfig;
use super::ingest::{Ingest, IngestStats, WriteSummary};
use super::remote_write::RemoteWriteError;
use super::scrape::{self, ScrapeConfig};
use super::store::MetricStore;
use super::wal::{ReplayReport, Wal, WalError};
use crate::datasource::{Datasource, DatasourceError, GateConfig, QueryGate};
use crate::promql::{Engine, EngineOptions};

/// How often retention runs: chunks expire at chunk granularity anyway.
const RETENTION_PERIOD: Duration = Duration::from_secs(60);

/// The embedded store service.
#[derive(Debug)]
pub struct EmbeddedStore {
    cfg: EmbeddedStoreConfig,
    ingest: Arc<Ingest>,
    datasource: Arc<QueryGate>,
}

/// Wall-clock milliseconds since the Unix epoch: the one place the embedded store reads the
/// clock (scrape timestamps, default query time, retention).
#[allow(clippy::disallowed_methods)]
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl EmbeddedStore {
    /// An empty in-memory store with `cfg`'s limits (history is lost on restart).
    pub fn new(cfg: EmbeddedStoreConfig) -> Arc<Self> {
        let store = MetricStore::new(cfg.series_max, cfg.retention_ms);
        Self::assemble(cfg, store, None)
    }

    /// A store that keeps its history in the on-disk log in `dir`: replays it (which blocks:
    /// call this before serving, or from a blocking context), then logs new samples.
    pub fn open(
        cfg: EmbeddedStoreConfig,
        dir: &Path,
    ) -> Result<(Arc<Self>, ReplayReport), WalError> {
        let mut store = MetricStore::new(cfg.series_max, cfg.retention_ms);
        let (wal, report) = Wal::open(dir, &mut store, cfg.wal_segment_bytes_max)?;
        Ok((Self::assemble(cfg, store, Some(wal)), report))
    }

    fn assemble(cfg: EmbeddedStoreConfig, store: MetricStore, wal: Option<Wal>) -> Arc<Self> {
        let store = Arc::new(RwLock::new(store));
        let engine = Arc::new(Engine::new(EngineOptions {
            max_samples: cfg.query_samples_max,
            ..EngineOptions::default()
        }));
        let inner = Arc::new(EmbeddedDatasource::new(engine, Arc::clone(&store)));
        let datasource = Arc::new(QueryGate::new(
            inner,
            GateConfig {
                max_concurrent: cfg.query_concurrency_max,
                max_timeout: Duration::from_millis(cfg.query_timeout_ms),
            },
        ));
        let ingest = Ingest::new(store, wal).with_series_cache_max(cfg.series_max);
        Arc::new(Self {
            cfg,
            ingest: Arc::new(ingest),
            datasource,
        })
    }

    /// The limits.
    pub fn config(&self) -> &EmbeddedStoreConfig {
        &self.cfg
    }

    /// The in-process datasource (for workers in this process).
    pub fn datasource(&self) -> &QueryGate {
        &self.datasource
    }

    /// A shared handle on the in-process datasource.
    pub fn datasource_handle(&self) -> Arc<dyn Datasource> {
        Arc::clone(&self.datasource) as Arc<dyn Datasource>
    }

    /// The shared data.
    pub fn store(&self) -> &Arc<RwLock<MetricStore>> {
        self.ingest.store()
    }

    /// Ingestion counters.
    pub fn stats(&self) -> &IngestStats {
        self.ingest.stats()
    }

    /// The on-disk log, when the store was [`open`](Self::open)ed with one.
    pub fn wal(&self) -> Option<&Wal> {
        self.ingest.wal()
    }

    /// The HTTP API router.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        super::api::router(Arc::clone(self))
    }

    /// A query's deadline: its `timeout` parameter capped by the configured maximum.
    pub(crate) fn query_timeout(
        &self,
        p: &impl QueryTimeoutParam,
    ) -> Result<Duration, DatasourceError> {
        let max = Duration::from_millis(self.cfg.query_timeout_ms);
        Ok(p.timeout()?.map_or(max, |t| t.min(max)))
    }

    /// Decodes and stores one remote-write body.
    pub fn remote_write(&self, body: &[u8]) -> Result<WriteSummary, RemoteWriteError> {
        self.ingest
            .remote_write(
                body,
                self.cfg.write_body_bytes_max,
                self.cfg.write_decoded_bytes_max,
            )
            .inspect_err(|_| self.ingest.record_write_refused())
    }

    /// Starts one scrape loop per target of every job in `tasks`; each stops (marking its
    /// series stale) when `cancel` fires.
    pub fn spawn_scrapers(
        &self,
        jobs: &[ScrapeConfig],
        http: &reqwest::Client,
        cancel: &CancellationToken,
        tasks: &mut JoinSet<()>,
    ) {
        for job in jobs {
            for target in &job.targets {
                tasks.spawn(scrape::run_target(
                    http.clone(),
                    Arc::clone(&self.ingest),
                    target.clone(),
                    job.clone(),
                    cancel.child_token(),
                ));
            }
        }
    }

    /// Applies retention now: drops expired chunks, and log segments wholly past retention.
    pub fn apply_retention(&self, now_ms: i64) -> usize {
        let dropped = self
            .store()
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply_retention(now_ms);
        if let Some(wal) = self.ingest.wal() {
            wal.drop_before(now_ms.saturating_sub(self.cfg.retention_ms));
        }
        dropped
    }

    /// Starts the retention task in `tasks`.
    pub fn spawn_retention(self: &Arc<Self>, cancel: &CancellationToken, tasks: &mut JoinSet<()>) {
        let svc = Arc::clone(self);
        let cancel = cancel.child_token();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(RETENTION_PERIOD);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let dropped = svc.apply_retention(now_ms());
                tracing::debug!(dropped, "retention applied");
            }
        });
    }
}

/// Access to a request's `timeout` parameter (kept abstract so the API's parameter type stays
/// private to it).
pub(crate) trait QueryTimeoutParam {
    /// The parsed `timeout`, if given.
    fn timeout(&self) -> Result<Option<Duration>, DatasourceError>;
}
