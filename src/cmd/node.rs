//! `tocsin node`: a Raft replica of the state store and its HTTP API.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::RawNodeConfig;
use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::{EXIT_FATAL, EXIT_USAGE};
use std::sync::{Arc, OnceLock};
use tocsin_state::client::StoreClient;

use tocsin_proto::pb::worker::balancer_server::BalancerServer;
use tocsin_state::node::{ExtraServices, StoreConfig, StoreNode};
use tonic::service::Routes;

use tocsin_alerter::datasource::embedded::EmbeddedStore;

use crate::balance::BalancerHandle;
use crate::balance::session::SessionService;

/// How long shutdown waits for in-flight work before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Flags of `tocsin node` (each may also come from `--config`; flags win).
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Raft node id (>= 1), unique in the cluster.
    #[arg(long)]
    id: Option<u64>,
    /// This node's availability zone.
    #[arg(long)]
    zone: Option<String>,
    /// Data directory (Raft log, snapshots, identity).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address for Raft, the store and workers [default: 127.0.0.1:7101].
    #[arg(long)]
    listen: Option<String>,
    /// HTTP listen address for the API, /metrics and health [default: 127.0.0.1:9101].
    #[arg(long)]
    http: Option<String>,
    /// An initial member, `ID=ZONE@HOST:PORT` (gRPC), optionally `,http=HOST:PORT`. Repeat
    /// for each member, this node included. Used only when the data dir is fresh.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Cluster name, recorded in the data dir [default: tocsin].
    #[arg(long)]
    cluster_name: Option<String>,
    /// Timing profile: `production` (heartbeat 200 ms, election 1-2 s) or `test`.
    #[arg(long)]
    profile: Option<String>,
    /// A TOML file with the same settings (see README: Configuration).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Runs the node until SIGTERM/SIGINT (exit 0) or a fatal Raft error (exit 3).
pub async fn run(args: NodeArgs) -> i32 {
    let file = match &args.config {
        Some(path) => match RawNodeConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tocsin: {e:#}");
                return EXIT_USAGE;
            }
        },
        None => RawNodeConfig::default(),
    };
    let flags = RawNodeConfig {
        id: args.id,
        zone: args.zone,
        data_dir: args.data_dir,
        listen: args.listen,
        http: args.http,
        peers: Some(args.peers),
        cluster_name: args.cluster_name,
        profile: args.profile,
        raft: None,
        batch: None,
        embedded: None,
    };
    let settings = match file.merge(flags).validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tocsin: invalid configuration: {e:#}");
            return EXIT_USAGE;
        }
    };
    let metrics = Metrics::new();
    let store_config = StoreConfig {
        id: settings.id,
        data_dir: settings.data_dir.clone(),
        peers: settings.peers.clone(),
        cluster_name: settings.cluster_name.clone(),
        timing: settings.timing.clone(),
        batch: settings.batch.clone(),
        observer: Some(metrics.store_observer()),
    };
    // Everything that can be checked is checked before a port is bound.
    if let Err(e) = store_config.validate() {
        eprintln!("tocsin: invalid configuration: {e}");
        return EXIT_USAGE;
    }
    let grpc = match TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tocsin: cannot listen on {} (listen): {e}", settings.listen);
            return 1;
        }
    };
    let http = match TcpListener::bind(settings.http).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tocsin: cannot listen on {} (http): {e}", settings.http);
            return 1;
        }
    };
    // The data dir first: everything else lives in it, so its error is the one to report.
    if let Err(e) = std::fs::create_dir_all(&settings.data_dir) {
        eprintln!("tocsin: data dir {}: {e}", settings.data_dir.display());
        return 1;
    }
    // The embedded metrics store: replay its on-disk log before serving anything.
    let embedded = match &settings.embedded.wal_dir {
        Some(dir) => match EmbeddedStore::open(settings.embedded.store.clone(), dir) {
            Ok((store, replay)) => {
                info!(dir = %dir.display(), replay = ?replay, "embedded store opened");
                store
            }
            Err(e) => {
                eprintln!(
                    "tocsin: cannot open the embedded store's log in {}: {e}",
                    dir.display()
                );
                return 1;
            }
        },
        None => EmbeddedStore::new(settings.embedded.store.clone()),
    };
    let cancel = CancellationToken::new();
    let fatal = CancellationToken::new();
    let tracker = TaskTracker::new();
    // The balancer's session service is served on the node's gRPC port; it needs the node
    // handle, which exists only inside `start_with`, so the handle comes back through a cell.
    let balancer_cell: Arc<OnceLock<Result<BalancerHandle, String>>> = Arc::default();
    let extra: ExtraServices = {
        let (cell, cfg, cancel, tracker) = (
            balancer_cell.clone(),
            settings.balancer.clone(),
            cancel.clone(),
            tracker.clone(),
        );
        Box::new(move |node: &StoreNode, routes: Routes| {
            let handle = BalancerHandle::new(node.clone(), cfg);
            let routes = match &handle {
                Ok(h) => routes.add_service(BalancerServer::new(SessionService::new(
                    h.clone(),
                    cancel,
                    tracker,
                ))),
                Err(_) => routes,
            };
            let _ = cell.set(handle);
            routes
        })
    };
    let node = match StoreNode::start_with(
        store_config,
        grpc,
        Default::default(),
        cancel.clone(),
        fatal.clone(),
        &tracker,
        Some(extra),
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tocsin: cannot start node {}: {e}", settings.id);
            cancel.cancel();
            return 1;
        }
    };
    let balancer = match balancer_cell.get() {
        Some(Ok(h)) => h.clone(),
        Some(Err(e)) => {
            eprintln!("tocsin: invalid balancer configuration: {e}");
            cancel.cancel();
            return EXIT_USAGE;
        }
        None => {
            eprintln!("tocsin: internal error: the balancer was not set up");
            cancel.cancel();
            return 1;
        }
    };
    tracker.spawn(balancer.clone().run(cancel.clone()));
    tracker.spawn(balancer.clone().confirm_quorum(cancel.clone()));
    {
        // Scrapers and retention run in a JoinSet owned by one tracked task.
        let mut tasks = tokio::task::JoinSet::new();
        let http_client = reqwest::Client::new();
        embedded.spawn_scrapers(&settings.embedded.scrape, &http_client, &cancel, &mut tasks);
        embedded.spawn_retention(&cancel, &mut tasks);
        let stop = cancel.clone();
        tracker.spawn(async move {
            stop.cancelled().await;
            tasks.shutdown().await;
        });
    }
    metrics.register_store(node.clone());
    metrics.register_balancer(balancer.clone());
    // This node first, then the other members: writes find the leader from here.
    let mut seeds = vec![settings.listen.to_string()];
    seeds.extend(
        settings
            .peers
            .iter()
            .filter(|(id, _)| **id != settings.id)
            .map(|(_, p)| p.grpc.clone()),
    );
    let client = match StoreClient::new(seeds) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tocsin: {e}");
            cancel.cancel();
            return 1;
        }
    };
    let app = router(AppState {
        node: node.clone(),
        metrics,
        client,
        balancer,
    })
    .merge(embedded.router());
    let http_cancel = cancel.clone();
    tracker.spawn(async move {
        let served = axum::serve(http, app)
            .with_graceful_shutdown(http_cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            error!(error = %e, "HTTP server failed");
        }
    });
    info!(id = settings.id, zone = %settings.zone, grpc = %settings.listen, http = %settings.http, "node started");

    let code = tokio::select! {
        () = shutdown_signal() => { info!("shutting down"); 0 }
        () = fatal.cancelled() => { error!("fatal Raft error; exiting so a supervisor restarts the node"); EXIT_FATAL }
    };
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "tasks still running after the grace period; exiting anyway");
    }
    code
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot install a SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
