//! Latency between zones (S5, S6, S8) without `tc netem`, which the test machines' kernel
//! lacks: a transparent TCP proxy in the hub that holds every chunk it forwards for an
//! adjustable time ([`LatencyProxy`]), and [`LatencyLinks`], which routes every zone's
//! inter-zone TCP through one and gives each zone its own added round trip.
//!
//! ```text
//!  zone a 10.77.1.2 ── SYN to 10.77.2.2:7000 ──▶ hub prerouting: dnat to 10.77.0.1:P
//!  proxy on 10.77.0.1:P: accept, SO_ORIGINAL_DST = 10.77.2.2:7000, dial it from the hub
//!  each direction: reader ──(due, chunk)──▶ bounded queue ──▶ writer, waits until `due`
//! ```
//!
//! A chunk read at `t` is written at `due = max(previous due, t + one_way)`, `one_way` being
//! half the added round trip plus a jitter drawn uniformly from `[0, jitter / 2]`: bytes are
//! never reordered, and the reader goes on reading while earlier chunks wait, so a delay
//! costs latency, not throughput (up to [`QUEUE_CHUNKS`] chunks in flight per direction). A
//! new delay applies at once to the connections already open (chunks already queued keep
//! their `due`). An end of stream travels like data: the writer half-closes its side when
//! the reader's end of stream comes due. A read or write error cuts the whole connection.
//!
//! What is not modelled: the handshake (the client's `connect` completes at the proxy at
//! once, so a refused or unreachable destination shows as a connection closed right after
//! it opened), resets (an error ends both sides with a FIN), and the client's address (the
//! dialled side sees the hub's address on its link, 10.77.M.1). UDP and ICMP are not
//! delayed, nor is anything between a zone and the hub.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::HarnessError;
use super::netns::{HUB_IP, ZoneNet, bind_host};

/// Bytes per read: one read is one timestamped chunk (the queue holds copies sized to what
/// was read, so small reads cost little memory).
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks in flight per direction of one connection. Bounds its memory at 4 MiB and its
/// throughput from below at `QUEUE_CHUNKS` reads per one-way delay (at 100 ms added round
/// trip and full reads, 80 MiB/s: far above what a cluster sends between zones).
pub const QUEUE_CHUNKS: usize = 256;
/// Connections open at once through one proxy: a chaos cluster opens tens; the cap bounds
/// memory and descriptors if something reconnects in a loop.
const MAX_CONNECTIONS: usize = 256;
/// Deadline of the dial to a connection's original destination (the zones are on veths in
/// the same machine: this only bounds a destination that drops SYNs).
const DIAL_DEADLINE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of descriptors), so the accept loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a proxy has carried, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStats {
    /// Connections accepted (every one the DNAT rules sent here).
    pub accepted: u64,
    /// Of those, dropped without forwarding: no original destination, the cap on open
    /// connections reached, or the dial failed.
    pub failed: u64,
    /// Connections being forwarded now.
    pub open: u64,
    /// Bytes written to the dialled side (client to server).
    pub bytes_upstream: u64,
    /// Bytes written back to the connecting side (server to client).
    pub bytes_downstream: u64,
}

/// One zone's link as [`LatencyLinks`] sees it, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    /// The zone.
    pub zone: String,
    /// Round trip added to its connections now, ms.
    pub added_rtt_ms: u64,
    /// Jitter added to its connections' round trips now (at most), ms.
    pub jitter_ms: u64,
    /// Connections with one end in the zone that went through the proxy.
    pub connections: u64,
    /// Bytes those connections carried, both directions.
    pub bytes: u64,
}

/// [`LatencyLinks::stats`]: the proxy's totals and each zone's share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinksStats {
    /// The shared proxy's totals.
    pub proxy: ProxyStats,
    /// One entry per zone, in the order the zones were given.
    pub zones: Vec<LinkStats>,
}

/// One adjustable delay and the traffic it applied to; shared by every connection it
/// applies to, so a change reaches open connections at their next chunk.
#[derive(Debug, Default)]
struct Link {
    rtt_ns: AtomicU64,
    jitter_ns: AtomicU64,
    connections: AtomicU64,
    bytes: AtomicU64,
}

impl Link {
    fn set(&self, added_rtt: Duration, jitter: Duration) {
        self.rtt_ns.store(nanos(added_rtt), Ordering::Relaxed);
        self.jitter_ns.store(nanos(jitter), Ordering::Relaxed);
    }

    fn stats(&self, zone: &str) -> LinkStats {
        let ms = |ns: u64| ns / 1_000_000;
        LinkStats {
            zone: zone.to_owned(),
            added_rtt_ms: ms(self.rtt_ns.load(Ordering::Relaxed)),
            jitter_ms: ms(self.jitter_ns.load(Ordering::Relaxed)),
            connections: self.connections.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The delays one direction of one connection adds up (the proxy's own and those of the
/// zones at its two ends), and its jitter's random source.
#[derive(Debug)]
struct Route {
    links: Vec<Arc<Link>>,
    rng: StdRng,
}

impl Route {
    /// This chunk's one-way delay: half the summed round trip, plus up to half the summed
    /// jitter.
    fn one_way(&mut self) -> Duration {
        let (rtt, jitter) = self.links.iter().fold((0u64, 0u64), |(r, j), l| {
            (
                r.saturating_add(l.rtt_ns.load(Ordering::Relaxed)),
                j.saturating_add(l.jitter_ns.load(Ordering::Relaxed)),
            )
        });
        let extra = match jitter / 2 {
            0 => 0,
            j => self.rng.random_range(0..=j),
        };
        Duration::from_nanos((rtt / 2).saturating_add(extra))
    }
}

/// The proxy's state shared with its tasks.
#[derive(Debug, Default)]
struct Shared {
    /// Applies to every connection ([`LatencyProxy::set`]).
    base: Arc<Link>,
    /// Per-zone links ([`LatencyLinks`]), by the zone's /24 (its first three octets); a
    /// connection gets those of the subnets at its two ends.
    zones: Mutex<Vec<([u8; 3], Arc<Link>)>>,
    /// Seeds each connection's jitter ([`LatencyProxy::set_seed`]).
    seed: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
    open: AtomicU64,
    bytes_upstream: AtomicU64,
    bytes_downstream: AtomicU64,
}

impl Shared {
    fn zone_link(&self, subnet: [u8; 3]) -> Arc<Link> {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, link)) = zones.iter().find(|(s, _)| *s == subnet) {
            return link.clone();
        }
        let link = Arc::new(Link::default());
        zones.push((subnet, link.clone()));
        link
    }

    /// The two directions' routes of connection number `index`, from `peer` to `dst`
    /// (counting the connection on its zones' links).
    fn routes(&self, index: u64, peer: SocketAddr, dst: SocketAddrV4) -> (Route, Route) {
        let mut links = vec![self.base.clone()];
        {
            let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
            let mut ends = vec![subnet(*dst.ip())];
            if let IpAddr::V4(ip) = peer.ip()
                && subnet(ip) != ends[0]
            {
                ends.push(subnet(ip));
            }
            for (_, link) in zones.iter().filter(|(s, _)| ends.contains(s)) {
                link.connections.fetch_add(1, Ordering::Relaxed);
                links.push(link.clone());
            }
        }
        let seed = self.seed.load(Ordering::Relaxed) ^ index.wrapping_mul(2);
        let route = |seed: u64| Route {
            links: links.clone(),
            rng: StdRng::seed_from_u64(seed),
        };
        (route(seed), route(seed ^ 1))
    }

    fn stats(&self) -> ProxyStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStats {
            accepted: get(&self.accepted),
            failed: get(&self.failed),
            open: get(&self.open),
            bytes_upstream: get(&self.bytes_upstream),
            bytes_downstream: get(&self.bytes_downstream),
        }
    }
}

fn subnet(ip: Ipv4Addr) -> [u8; 3] {
    let [a, b, c, _] = ip.octets();
    [a, b, c]
}

/// A running delaying proxy. Dropping it stops it (open connections are cut).
#[derive(Debug)]
pub struct LatencyProxy {
    addr: SocketAddrV4,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl LatencyProxy {
    /// Binds a free port on `ip` (the hub's [`HUB_IP`] for [`ZoneNet::route_through`], which
    /// DNATs there) and forwards every connection it accepts to the connection's original
    /// destination, delayed, until `stop` fires. Starts with no delay.
    pub async fn start(ip: Ipv4Addr, stop: &CancellationToken) -> Result<Self, HarnessError> {
        let listener = bind_host(IpAddr::V4(ip), "a latency proxy").await?;
        let port = listener
            .local_addr()
            .map_err(|source| HarnessError::Bind {
                what: "a latency proxy",
                source,
            })?
            .port();
        let addr = SocketAddrV4::new(ip, port);
        let shared = Arc::new(Shared::default());
        let stop = stop.child_token();
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(
            listener,
            addr,
            shared.clone(),
            stop.clone(),
            tasks.clone(),
        ));
        Ok(Self {
            addr,
            shared,
            stop,
            tasks,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Its port (what [`ZoneNet::route_through`] takes).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Adds `added_rtt` (half each way) and up to `jitter` to the round trip of every
    /// connection, open ones included; zero passes bytes straight through.
    pub fn set(&self, added_rtt: Duration, jitter: Duration) {
        self.shared.base.set(added_rtt, jitter);
    }

    /// Seeds the jitter of the connections accepted from now on (each connection's draws
    /// follow from the seed and its number; without a call, the seed is 0).
    pub fn set_seed(&self, seed: u64) {
        self.shared.seed.store(seed, Ordering::Relaxed);
    }

    /// What it carried so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Stops accepting, cuts every open connection and waits for their tasks to end (they
    /// all watch the stop token, so this is prompt).
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    own: SocketAddrV4,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (inbound, peer) = match accepted {
            Ok(a) => a,
            Err(err) => {
                tracing::warn!(%err, "latency proxy: accept failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let index = shared.accepted.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, cap = MAX_CONNECTIONS, "latency proxy: too many connections");
            continue;
        };
        // Connected to the proxy's own address (not DNAT'ed): dialling it would loop.
        let dst = match rustix::net::sockopt::ip_original_dst(&inbound) {
            Ok(dst) if dst != own => dst,
            other => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, ?other, "latency proxy: no original destination");
                continue;
            }
        };
        let (up, down) = shared.routes(index, peer, dst);
        tasks.spawn(serve(
            inbound,
            dst,
            [up, down],
            shared.clone(),
            stop.child_token(),
            permit,
        ));
    }
}

/// Counts a connection as open while it lives.
struct Open<'a>(&'a AtomicU64);

impl<'a> Open<'a> {
    fn new(open: &'a AtomicU64) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Dials `dst` and forwards both directions through their delay lines until both ended or
/// `cut` fires.
async fn serve(
    inbound: TcpStream,
    dst: SocketAddrV4,
    [up, down]: [Route; 2],
    shared: Arc<Shared>,
    cut: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let dialled = tokio::select! {
        () = cut.cancelled() => return,
        d = tokio::time::timeout(DIAL_DEADLINE, TcpStream::connect(dst)) => d,
    };
    let outbound = match dialled {
        Ok(Ok(s)) => s,
        Ok(Err(err)) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%dst, %err, "latency proxy: dial failed");
            return;
        }
        Err(_) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%dst, after = ?DIAL_DEADLINE, "latency proxy: dial timed out");
            return;
        }
    };
    let _open = Open::new(&shared.open);
    // The delay is the proxy's to add: Nagle would add its own on top.
    for s in [&inbound, &outbound] {
        if let Err(err) = s.set_nodelay(true) {
            tracing::debug!(%err, "latency proxy: TCP_NODELAY");
        }
    }
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::join!(
        pump(in_read, out_write, up, &shared.bytes_upstream, &cut),
        pump(out_read, in_write, down, &shared.bytes_downstream, &cut),
    );
}

/// One direction's delay line: the reader timestamps each chunk and queues it (going on
/// reading while earlier chunks wait); the writer writes each when it comes due. `None` is
/// the end of stream, which half-closes the write side.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut route: Route,
    bytes: &AtomicU64,
    cut: &CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Bytes>)>(QUEUE_CHUNKS);
    let links = route.links.clone();
    let read = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut due = Instant::now();
        loop {
            let read = tokio::select! {
                () = cut.cancelled() => return,
                r = from.read(&mut buf) => r,
            };
            let chunk = match read {
                Ok(0) => None,
                Ok(n) => Some(Bytes::copy_from_slice(&buf[..n])),
                Err(err) => {
                    tracing::debug!(%err, "latency proxy: read failed, cutting the connection");
                    cut.cancel();
                    return;
                }
            };
            // Never before an earlier chunk: a shorter delay must not reorder bytes.
            due = due.max(Instant::now() + route.one_way());
            let end = chunk.is_none();
            let sent = tokio::select! {
                () = cut.cancelled() => return,
                s = tx.send((due, chunk)) => s,
            };
            if end || sent.is_err() {
                return;
            }
        }
    };
    let write = async move {
        loop {
            let next = tokio::select! {
                () = cut.cancelled() => return,
                n = rx.recv() => n,
            };
            // The reader left without an end of stream: it was cut.
            let Some((due, chunk)) = next else { return };
            // Already due (no delay): the timer would round up to its next millisecond tick.
            if due > Instant::now() {
                tokio::select! {
                    () = cut.cancelled() => return,
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            let Some(chunk) = chunk else {
                if let Err(err) = to.shutdown().await {
                    tracing::debug!(%err, "latency proxy: half-close failed");
                }
                return;
            };
            let wrote = tokio::select! {
                () = cut.cancelled() => return,
                w = to.write_all(&chunk) => w,
            };
            if let Err(err) = wrote {
                tracing::debug!(%err, "latency proxy: write failed, cutting the connection");
                cut.cancel();
                return;
            }
            let n = chunk.len() as u64;
            bytes.fetch_add(n, Ordering::Relaxed);
            for link in &links {
                link.bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
    };
    tokio::join!(read, write);
}

/// Latency on every zone's links: one [`LatencyProxy`] on the hub's address, every zone's
/// inter-zone TCP routed through it ([`ZoneNet::route_through`]), and one adjustable delay
/// per zone. A connection between zones `x` and `y` gets the delays of both added up
/// (`set(x, 40 ms)` and `set(y, 60 ms)` make 100 ms between them, 40 ms between `x` and a
/// zone at zero), whichever end dialled; it passes the proxy once, since every zone's rules
/// send it to the same one. Traffic between a zone and the hub is never delayed.
///
/// Start it right after [`ZoneNet::create`], before any process runs: routing catches new
/// connections only. While it is installed, [`ZoneNet::partition`] refuses to cut.
#[derive(Debug)]
pub struct LatencyLinks {
    proxy: LatencyProxy,
    /// Each zone's delay, in the order given.
    zones: Vec<(String, Arc<Link>)>,
}

impl LatencyLinks {
    /// Starts the proxy and routes each of `zones` through it, every delay at zero.
    pub async fn start(
        net: &ZoneNet,
        zones: &[String],
        stop: &CancellationToken,
    ) -> Result<Self, HarnessError> {
        let proxy = LatencyProxy::start(HUB_IP, stop).await?;
        let mut links = Vec::with_capacity(zones.len());
        for zone in zones {
            let link = proxy.shared.zone_link(subnet(net.zone_ip(zone)?));
            net.route_through(zone, proxy.port()).await?;
            links.push((zone.clone(), link));
        }
        Ok(Self {
            proxy,
            zones: links,
        })
    }

    /// Adds `added_rtt` and up to `jitter` to the round trip of every connection between
    /// `zone` and another zone, open ones included; zero takes it off.
    pub fn set(
        &self,
        zone: &str,
        added_rtt: Duration,
        jitter: Duration,
    ) -> Result<(), HarnessError> {
        let (_, link) =
            self.zones
                .iter()
                .find(|(z, _)| z == zone)
                .ok_or_else(|| HarnessError::Tool {
                    command: "setting a zone's latency".into(),
                    reason: format!("zone `{zone}` has no latency link"),
                })?;
        link.set(added_rtt, jitter);
        Ok(())
    }

    /// The shared proxy (its totals, its seed).
    pub fn proxy(&self) -> &LatencyProxy {
        &self.proxy
    }

    /// The proxy's totals and each zone's delay and traffic.
    pub fn stats(&self) -> LinksStats {
        LinksStats {
            proxy: self.proxy.stats(),
            zones: self.zones.iter().map(|(z, l)| l.stats(z)).collect(),
        }
    }

    /// Stops the proxy ([`LatencyProxy::shutdown`]). The routing stays until the zones are
    /// removed; new inter-zone connections are then refused.
    pub async fn shutdown(self) {
        self.proxy.shutdown().await;
    }
}
