//! Network namespaces for the scenarios that cut links between zones (S4): a private *hub*
//! namespace the harness runs in, one namespace per zone joined to the hub by a veth pair,
//! and an nftables chain in the hub that partitions a zone from the others.
//!
//! ```text
//!  hub: the harness's threads; emulators, exporter and datasource proxies on 10.77.0.1
//!   ├─ hub-z1 10.77.1.1/24 ══ eth0 10.77.1.2/24   zone a: node 1 and its workers
//!   ├─ hub-z2 10.77.2.1/24 ══ eth0 10.77.2.2/24   zone b
//!   └─ hub-z3 10.77.3.1/24 ══ eth0 10.77.3.2/24   zone c    (each zone: default via .1)
//! ```
//!
//! Zone-to-zone packets are forwarded by the hub (`ip_forward` is per namespace), so one
//! forward chain there decides which zones reach each other; zone-to-hub traffic (providers,
//! datasource, the harness's own API calls and log recorder) never crosses it. A partition
//! drops packets (no RST): established connections stall, as on a real network.
//!
//! Latency between zones (the kernel here has no `tc netem`) comes from a userspace proxy in
//! the hub ([`super::latency`]): [`ZoneNet::route_through`] adds NAT rules to a second table
//! in the hub that send a zone's new inter-zone TCP connections to the proxy instead of
//! forwarding them. Such connections no longer cross the forward chain, so [`ZoneNet::partition`]
//! refuses to run once any zone is routed (it could not cut them).
//!
//! Nothing here touches the root network namespace. [`enter_private_hub`] moves the calling
//! thread into a fresh namespace (Linux namespaces are per thread; threads and processes
//! created afterwards inherit it), and every `ip`/`nft` command runs from inside it. Zone
//! processes start under `ip netns exec` (which execs, so the pid stays the process's own).
//! Names are `tocsin-chaos-PID-K-…`: unique per run, and those of dead processes are removed
//! when the next hub is made.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::error::HarnessError;

/// The hub's address on its loopback, reachable from every zone through its default route.
pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Nodes' gRPC port inside their zone's namespace (private to it: a fixed port cannot clash).
pub const NODE_GRPC_PORT: u16 = 7000;
/// Nodes' HTTP port inside their zone's namespace.
pub const NODE_HTTP_PORT: u16 = 7001;
/// Prefix of every namespace this module names.
const PREFIX: &str = "tocsin-chaos";
/// The nftables table and chain (in the hub) that hold the partition rules.
const TABLE: &str = "tocsin_chaos";
const CHAIN: &str = "partition";
/// The nftables table and chain (in the hub) that DNAT zones' inter-zone TCP to a latency
/// proxy ([`ZoneNet::route_through`]); created by the first routing, deleted with the zones.
const NAT_TABLE: &str = "tocsin_chaos_nat";
const NAT_CHAIN: &str = "prerouting";
/// Deadline of one `ip`/`nft` command (they are local netlink calls; this only bounds a
/// wedged one).
const TOOL_DEADLINE: Duration = Duration::from_secs(10);
/// Most zones (one /24 each under 10.77.0.0/16, `.0` being the hub's).
const MAX_ZONES: usize = 254;

/// Hubs made by this process (names stay unique when one process runs several scenarios).
static NEXT_HUB: AtomicU32 = AtomicU32::new(0);

/// The private namespace the calling thread entered. Dropping it removes the namespace's
/// name; the namespace itself lives on while a thread or process is in it.
#[derive(Debug)]
pub struct Hub {
    name: String,
    prefix: String,
}

/// Moves the calling thread into a fresh network namespace (the hub), brings its loopback up
/// with [`HUB_IP`] on it, and turns on forwarding there. Call it before the tokio runtime
/// (or any thread that will start processes) exists: only threads created afterwards inherit
/// the namespace. Needs root (or `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`) and iproute2.
pub fn enter_private_hub() -> Result<Hub, HarnessError> {
    remove_stale()?;
    let prefix = format!(
        "{PREFIX}-{}-{}",
        std::process::id(),
        NEXT_HUB.fetch_add(1, Ordering::Relaxed)
    );
    let name = format!("{prefix}-hub");
    run_blocking("ip", &["netns", "add", &name])?;
    let hub = Hub { name, prefix };
    enter_netns(&hub.path())?;
    run_blocking("ip", &["link", "set", "lo", "up"])?;
    run_blocking("ip", &["addr", "add", &format!("{HUB_IP}/32"), "dev", "lo"])?;
    // Per namespace and per thread: this is the hub's switch, not the host's.
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    std::fs::write(forward, "1").map_err(|e| HarnessError::io(forward, e))?;
    Ok(hub)
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_netns(path: &Path) -> Result<(), HarnessError> {
    let file = std::fs::File::open(path).map_err(|e| HarnessError::io(path, e))?;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|e| {
        HarnessError::Tool {
            command: format!("setns({})", path.display()),
            reason: e.to_string(),
        }
    })
}

impl Hub {
    fn path(&self) -> std::path::PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Fails unless the calling thread is in this hub (a runtime built before
    /// [`enter_private_hub`] would run the harness in the host's namespace).
    fn check_current(&self) -> Result<(), HarnessError> {
        let id = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| (m.dev(), m.ino()))
                .map_err(|e| HarnessError::io(p, e))
        };
        if id(&self.path())? == id(Path::new("/proc/thread-self/ns/net"))? {
            return Ok(());
        }
        Err(HarnessError::Tool {
            command: "entering the hub namespace".into(),
            reason: format!(
                "this thread is not in {}: call enter_private_hub before building the runtime",
                self.name
            ),
        })
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Err(err) = run_blocking("ip", &["netns", "delete", &self.name]) {
            tracing::warn!(%err, "removing the hub namespace's name");
        }
    }
}

/// One zone's namespace.
#[derive(Debug)]
struct ZoneNs {
    zone: String,
    /// `ip netns` name.
    name: String,
    /// Third octet of its subnet (10.77.N.0/24).
    n: usize,
}

/// The zones' namespaces, joined to the hub, and the partition switch. Dropping it deletes
/// the namespaces (their processes should be gone by then).
#[derive(Debug)]
pub struct ZoneNet {
    zones: Vec<ZoneNs>,
    /// Set once the namespaces were deleted.
    removed: Mutex<bool>,
    /// Zones whose inter-zone TCP goes through a latency proxy ([`ZoneNet::route_through`]),
    /// in the order they were routed (the order their NAT rules are matched in).
    routed: Mutex<Vec<Routed>>,
}

/// One zone's routing through a latency proxy.
#[derive(Debug, Clone, Copy)]
struct Routed {
    /// Third octet of the zone's subnet.
    n: usize,
    /// The proxy's port on [`HUB_IP`].
    port: u16,
}

impl ZoneNet {
    /// Creates one namespace per zone inside `hub` (the calling thread must be in it), each
    /// joined by a veth pair, and the empty partition chain. Fails naming the package when
    /// `ip` or `nft` is missing.
    pub async fn create(hub: &Hub, zones: &[String]) -> Result<Self, HarnessError> {
        hub.check_current()?;
        if zones.len() > MAX_ZONES {
            return Err(HarnessError::Tool {
                command: "creating zone namespaces".into(),
                reason: format!("{} zones (at most {MAX_ZONES})", zones.len()),
            });
        }
        let mut net = Self {
            zones: Vec::new(),
            removed: Mutex::new(false),
            routed: Mutex::new(Vec::new()),
        };
        for (i, zone) in zones.iter().enumerate() {
            let n = i + 1;
            let ns = format!("{}-zone{n}", hub.prefix);
            run("ip", &["netns", "add", &ns], None).await?;
            net.zones.push(ZoneNs {
                zone: zone.clone(),
                name: ns.clone(),
                n,
            });
            let veth = format!("hub-z{n}");
            // The hub is this process's own: a `hub-zN` in it is left from an earlier run
            // whose zone namespace the kernel has not freed yet (a deleted namespace goes,
            // with its veth pair, only once nothing holds it). Remove it or the add fails.
            // The kernel may free it meanwhile, so a failed delete is no error: a veth still
            // in the way fails the add below, naming it.
            let _ = run("ip", &["link", "del", &veth], None).await;
            let hub_addr = format!("10.77.{n}.1");
            let steps: [&[&str]; 7] = [
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
                &["addr", "add", &format!("{hub_addr}/24"), "dev", &veth],
                &["link", "set", &veth, "up"],
                &["-n", &ns, "link", "set", "lo", "up"],
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("10.77.{n}.2/24"),
                    "dev",
                    "eth0",
                ],
                &["-n", &ns, "link", "set", "eth0", "up"],
                &["-n", &ns, "route", "add", "default", "via", &hub_addr],
            ];
            for args in steps {
                run("ip", args, None).await?;
            }
        }
        let table = format!(
            "table inet {TABLE} {{\n  chain {CHAIN} {{\n    type filter hook forward priority 0; policy accept;\n  }}\n}}\n"
        );
        run("nft", &["-f", "-"], Some(table)).await?;
        Ok(net)
    }

    fn zone(&self, zone: &str) -> Result<&ZoneNs, HarnessError> {
        self.zones
            .iter()
            .find(|z| z.zone == zone)
            .ok_or_else(|| HarnessError::Tool {
                command: "finding a zone namespace".into(),
                reason: format!("no namespace for zone `{zone}`"),
            })
    }

    /// The address of `zone`'s processes.
    pub fn zone_ip(&self, zone: &str) -> Result<Ipv4Addr, HarnessError> {
        let n = u8::try_from(self.zone(zone)?.n).unwrap_or(u8::MAX);
        Ok(Ipv4Addr::new(10, 77, n, 2))
    }

    /// The `ip netns` name of `zone`'s namespace.
    pub fn netns_of(&self, zone: &str) -> Result<String, HarnessError> {
        Ok(self.zone(zone)?.name.clone())
    }

    /// Drops every forwarded packet between `zone` and the other zones, both ways (replacing
    /// any partition in force). Traffic to and from the hub is untouched. Refused once any
    /// zone is routed through a latency proxy ([`ZoneNet::route_through`]): those
    /// connections end in the hub instead of crossing its forward chain, so the cut would
    /// silently miss them.
    pub async fn partition(&self, zone: &str) -> Result<(), HarnessError> {
        let routed = self.routed_lock().len();
        if routed > 0 {
            return Err(HarnessError::Tool {
                command: "partitioning".into(),
                reason: format!(
                    "{routed} zone(s) are routed through a latency proxy, whose connections \
                     a partition cannot cut: partition and latency do not combine in one run"
                ),
            });
        }
        let cut = format!("10.77.{}.0/24", self.zone(zone)?.n);
        let others: Vec<String> = self
            .zones
            .iter()
            .filter(|z| z.zone != zone)
            .map(|z| format!("10.77.{}.0/24", z.n))
            .collect();
        if others.is_empty() {
            return Err(HarnessError::Tool {
                command: "partitioning".into(),
                reason: format!("zone `{zone}` is the only zone"),
            });
        }
        let others = others.join(", ");
        let rules = format!(
            "flush chain inet {TABLE} {CHAIN}\n\
             add rule inet {TABLE} {CHAIN} ip saddr {cut} ip daddr {{ {others} }} counter drop\n\
             add rule inet {TABLE} {CHAIN} ip saddr {{ {others} }} ip daddr {cut} counter drop\n"
        );
        run("nft", &["-f", "-"], Some(rules)).await.map(drop)
    }

    /// Sends `zone`'s new inter-zone TCP connections, both those it opens and those opened
    /// to it, to the latency proxy listening on [`HUB_IP`]`:proxy_port` (the proxy reads the
    /// original destination with `SO_ORIGINAL_DST` and dials it from the hub). Traffic
    /// between the zone and the hub, UDP and ICMP, are untouched.
    ///
    /// Two nftables rules in the hub's `ip tocsin_chaos_nat prerouting` chain (type nat, hook
    /// prerouting, priority dstnat), appended in call order:
    ///
    /// ```text
    /// iifname "hub-zN" ip daddr { OTHER ZONES' /24s } fib daddr type != local
    ///     meta l4proto tcp counter dnat to 10.77.0.1:PORT
    /// iifname { OTHER ZONES' VETHS } ip daddr 10.77.N.0/24 fib daddr type != local
    ///     meta l4proto tcp counter dnat to 10.77.0.1:PORT
    /// ```
    ///
    /// The first matching rule decides, so a connection between two routed zones passes one
    /// proxy only: the one of the zone routed first (give every zone the same proxy, as
    /// [`super::latency::LatencyLinks`] does, and the question does not arise). The proxy's
    /// own connections leave the hub through the output hook and are not caught again.
    ///
    /// DNAT applies to new connections only (conntrack keeps an established one on its
    /// path), so route before the zones' processes start; raise the delay later. Fails for
    /// an unknown zone or one already routed.
    pub async fn route_through(&self, zone: &str, proxy_port: u16) -> Result<(), HarnessError> {
        let z = self.zone(zone)?;
        {
            // Claimed before the rules go in, so two concurrent calls cannot both add them.
            let mut routed = self.routed_lock();
            if routed.iter().any(|r| r.n == z.n) {
                return Err(HarnessError::Tool {
                    command: "routing a zone through a latency proxy".into(),
                    reason: format!("zone `{zone}` is already routed"),
                });
            }
            routed.push(Routed {
                n: z.n,
                port: proxy_port,
            });
        }
        let others: Vec<&ZoneNs> = self.zones.iter().filter(|o| o.n != z.n).collect();
        if !others.is_empty() {
            let subnets: Vec<String> = others
                .iter()
                .map(|o| format!("10.77.{}.0/24", o.n))
                .collect();
            let veths: Vec<String> = others.iter().map(|o| format!("\"hub-z{}\"", o.n)).collect();
            let (subnets, veths) = (subnets.join(", "), veths.join(", "));
            let n = z.n;
            let to = format!(
                "fib daddr type != local meta l4proto tcp counter dnat to {HUB_IP}:{proxy_port}"
            );
            let rules = format!(
                "add table ip {NAT_TABLE}\n\
                 add chain ip {NAT_TABLE} {NAT_CHAIN} {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
                 add rule ip {NAT_TABLE} {NAT_CHAIN} iifname \"hub-z{n}\" ip daddr {{ {subnets} }} {to}\n\
                 add rule ip {NAT_TABLE} {NAT_CHAIN} iifname {{ {veths} }} ip daddr 10.77.{n}.0/24 {to}\n"
            );
            if let Err(err) = run("nft", &["-f", "-"], Some(rules)).await {
                self.routed_lock().retain(|r| r.n != z.n);
                return Err(err);
            }
        }
        Ok(())
    }

    /// The proxy port `zone` is routed through, if it is.
    pub fn routed_port(&self, zone: &str) -> Result<Option<u16>, HarnessError> {
        let n = self.zone(zone)?.n;
        Ok(self.routed_lock().iter().find(|r| r.n == n).map(|r| r.port))
    }

    /// Moves the calling thread into `zone`'s namespace, for a dedicated thread that plays a
    /// zone's client or server in a test (a zone's processes start under `ip netns exec`
    /// instead). Never call it on a runtime's thread: that thread would stay in the zone.
    pub fn enter_zone(&self, zone: &str) -> Result<(), HarnessError> {
        enter_netns(&Path::new("/run/netns").join(&self.zone(zone)?.name))
    }

    /// Removes the partition; returns how many packets it dropped (proof that it cut
    /// something).
    pub async fn heal(&self) -> Result<u64, HarnessError> {
        let listing = run("nft", &["list", "chain", "inet", TABLE, CHAIN], None).await?;
        run("nft", &["flush", "chain", "inet", TABLE, CHAIN], None).await?;
        Ok(dropped_packets(&listing))
    }

    /// Deletes the zones' namespaces (idempotent; also done on drop).
    pub async fn remove(&self) {
        let names: Vec<String> = {
            let mut removed = self.lock();
            if *removed {
                return;
            }
            *removed = true;
            self.zones.iter().map(|z| z.name.clone()).collect()
        };
        for name in names {
            if let Err(err) = run("ip", &["netns", "delete", &name], None).await {
                tracing::warn!(%err, "deleting a zone namespace");
            }
        }
        let routed = !self.routed_lock().is_empty();
        if routed && let Err(err) = run("nft", &["delete", "table", "ip", NAT_TABLE], None).await {
            tracing::warn!(%err, "deleting the latency routing table");
        }
    }

    fn routed_lock(&self) -> std::sync::MutexGuard<'_, Vec<Routed>> {
        self.routed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.removed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for ZoneNet {
    fn drop(&mut self) {
        if std::mem::replace(&mut *self.lock(), true) {
            return;
        }
        for z in &self.zones {
            if let Err(err) = run_blocking("ip", &["netns", "delete", &z.name]) {
                tracing::warn!(%err, "deleting a zone namespace");
            }
        }
        // A later run in the same hub must not inherit DNAT rules to a proxy that is gone.
        let routed = !self.routed_lock().is_empty();
        if routed && let Err(err) = run_blocking("nft", &["delete", "table", "ip", NAT_TABLE]) {
            tracing::warn!(%err, "deleting the latency routing table");
        }
    }
}

/// Sum of the `counter packets N` of an `nft list chain` output.
fn dropped_packets(listing: &str) -> u64 {
    let words: Vec<&str> = listing.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "packets")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}

/// Where a run's processes live and how the harness reaches them.
#[derive(Debug, Clone, Default)]
pub enum Network {
    /// Everything on the loopback of the harness's namespace, ports from the OS.
    #[default]
    Loopback,
    /// One namespace per zone behind the hub (see the module docs).
    Namespaced(std::sync::Arc<ZoneNet>),
}

impl Network {
    /// The address the harness's own servers (emulators, exporter, proxies) listen on and
    /// the cluster reaches them at.
    pub fn host_ip(&self) -> IpAddr {
        match self {
            Network::Loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Network::Namespaced(_) => IpAddr::V4(HUB_IP),
        }
    }

    /// The zone namespace a process of `zone` runs in (`None` on loopback).
    pub fn netns_of(&self, zone: &str) -> Result<Option<String>, HarnessError> {
        match self {
            Network::Loopback => Ok(None),
            Network::Namespaced(net) => net.netns_of(zone).map(Some),
        }
    }

    /// The zone namespaces, if any.
    pub fn zones(&self) -> Option<&ZoneNet> {
        match self {
            Network::Loopback => None,
            Network::Namespaced(net) => Some(net),
        }
    }
}

/// Binds `IP:0` for one of the harness's servers.
pub(crate) async fn bind_host(ip: IpAddr, what: &'static str) -> Result<TcpListener, HarnessError> {
    TcpListener::bind((ip, 0))
        .await
        .map_err(|source| HarnessError::Bind { what, source })
}

/// Deletes the namespaces of hubs whose process is gone (a run that was killed).
fn remove_stale() -> Result<(), HarnessError> {
    let listing = run_blocking("ip", &["netns", "list"])?;
    for name in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = stale_owner(name) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(netns = name, pid, "deleting a stale chaos namespace");
            if let Err(err) = run_blocking("ip", &["netns", "delete", name]) {
                tracing::warn!(%err, "deleting a stale chaos namespace");
            }
        }
    }
    Ok(())
}

/// The pid in a `tocsin-chaos-PID-K-…` name.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    rest.split('-').next()?.parse().ok()
}

fn missing(tool: &'static str) -> HarnessError {
    HarnessError::ToolMissing {
        tool,
        package: if tool == "nft" {
            "nftables"
        } else {
            "iproute2"
        },
    }
}

fn spawn_error(tool: &'static str, command: &str, e: std::io::Error) -> HarnessError {
    if e.kind() == std::io::ErrorKind::NotFound {
        missing(tool)
    } else {
        HarnessError::Tool {
            command: command.into(),
            reason: e.to_string(),
        }
    }
}

fn finish(command: String, out: std::process::Output) -> Result<String, HarnessError> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(HarnessError::Tool {
        command,
        reason: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Runs `tool ARGS` (feeding `stdin`), bounded by [`TOOL_DEADLINE`]; returns its stdout.
async fn run(
    tool: &'static str,
    args: &[&str],
    stdin: Option<String>,
) -> Result<String, HarnessError> {
    let command = format!("{tool} {}", args.join(" "));
    let mut child = tokio::process::Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_error(tool, &command, e))?;
    let io_error = |e: std::io::Error| HarnessError::Tool {
        command: command.clone(),
        reason: e.to_string(),
    };
    let done = async {
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.map_err(io_error)?;
        }
        child.wait_with_output().await.map_err(io_error)
    };
    let out = tokio::time::timeout(TOOL_DEADLINE, done)
        .await
        .map_err(|_| HarnessError::Tool {
            command: command.clone(),
            reason: format!("no answer within {TOOL_DEADLINE:?}"),
        })??;
    finish(command, out)
}

/// [`run`] for the places without a runtime (entering the hub, drops). These are local
/// netlink calls that return at once; they are not given a deadline.
fn run_blocking(tool: &'static str, args: &[&str]) -> Result<String, HarnessError> {
    let command = format!("{tool} {}", args.join(" "));
    let out = std::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| spawn_error(tool, &command, e))?;
    finish(command, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_stale_names_parse() {
        let listing = "table inet tocsin_chaos {\n chain partition {\n  ip saddr 10.77.2.0/24 ip daddr { 10.77.1.0/24, 10.77.3.0/24 } counter packets 12 bytes 900 drop\n  ip saddr { 10.77.1.0/24, 10.77.3.0/24 } ip daddr 10.77.2.0/24 counter packets 30 bytes 2000 drop\n }\n}\n";
        assert_eq!(dropped_packets(listing), 42);
        assert_eq!(dropped_packets("table inet t { }"), 0);
        assert_eq!(stale_owner("tocsin-chaos-4242-0-zone2"), Some(4242));
        assert_eq!(stale_owner("tocsin-chaos-4242-1-hub"), Some(4242));
        assert_eq!(stale_owner("tocsin-dev"), None);
        assert_eq!(stale_owner("other-1-2"), None);
    }
}
