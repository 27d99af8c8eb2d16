//! The latency links between zone namespaces (`harness::latency`), end to end: a private hub,
//! three zone namespaces, the hub's real nftables DNAT, and plain blocking sockets on
//! threads that live in the zones' namespaces (a zone's client and echo server). Needs root,
//! iproute2 and nftables (`scripts/test.sh` installs the packages); without them it fails
//! saying what to install, it never skips.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tocsin_chaos::harness::latency::{LatencyLinks, LinksStats};
use tocsin_chaos::harness::netns::{self, HUB_IP, ZoneNet};
use tokio_util::sync::CancellationToken;

/// Round trips per measurement (the median of them is judged).
const ROUND_TRIPS: usize = 15;
/// Bytes per round trip.
const MESSAGE: usize = 64;
/// A round trip with nothing added: well under a millisecond between namespaces; the bound
/// leaves room for a loaded 2-core machine.
const FAST: Duration = Duration::from_millis(25);
/// The round trip the test adds to zone b.
const ADDED: Duration = Duration::from_millis(100);
/// How far above the added round trip a measured median may be (timer granularity, the
/// base round trip, scheduling).
const SLACK: Duration = Duration::from_millis(50);
/// Bound on every blocking read, so a broken proxy fails the test instead of hanging it.
const IO_DEADLINE: Duration = Duration::from_secs(10);
/// The bulk transfer through a 100 ms link. Pipelined it takes about one round trip plus
/// the copy (a quarter second); a queue of one chunk (16 KiB) per direction would take
/// about 5 s, one chunk per one-way delay 256 × 50 ms = 12.8 s.
const BULK_BYTES: usize = 4 * 1024 * 1024;
const BULK_DEADLINE: Duration = Duration::from_millis(1500);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An echo server for one connection, on a thread in `zone`'s namespace (the calling
/// thread's, the hub, when `None`). Its channel says how many bytes it echoed once the
/// client half-closed.
struct Echo {
    addr: SocketAddr,
    done: mpsc::Receiver<u64>,
}

fn echo(net: &Arc<ZoneNet>, zone: Option<&'static str>, ip: Ipv4Addr) -> Echo {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let net = net.clone();
    std::thread::spawn(move || {
        let bound = (|| {
            if let Some(zone) = zone {
                net.enter_zone(zone).map_err(|e| e.to_string())?;
            }
            TcpListener::bind((ip, 0)).map_err(|e| e.to_string())
        })();
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                let _ = addr_tx.send(Err(e));
                return;
            }
        };
        let _ = addr_tx.send(listener.local_addr().map_err(|e| e.to_string()));
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        conn.set_read_timeout(Some(IO_DEADLINE))
            .expect("read timeout");
        conn.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; 64 * 1024];
        let mut echoed = 0u64;
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    conn.write_all(&buf[..n]).expect("echo write");
                    echoed += n as u64;
                }
                Err(e) => panic!("echo read on {ip}: {e}"),
            }
        }
        conn.shutdown(Shutdown::Write).expect("echo half-close");
        let _ = done_tx.send(echoed);
    });
    let addr = addr_rx
        .recv_timeout(IO_DEADLINE)
        .expect("echo server started")
        .unwrap_or_else(|e| panic!("echo server in {zone:?}: {e}"));
    Echo { addr, done }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect_timeout(&addr, IO_DEADLINE)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    conn.set_read_timeout(Some(IO_DEADLINE))
        .expect("read timeout");
    conn.set_nodelay(true).expect("nodelay");
    conn
}

/// `ROUND_TRIPS` round trips on `conn`, each checked byte for byte; sorted.
fn round_trips(conn: &mut TcpStream) -> Vec<Duration> {
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    let mut back = [0u8; MESSAGE];
    for i in 0..ROUND_TRIPS {
        let msg: Vec<u8> = (0..MESSAGE).map(|j| (i * 31 + j) as u8).collect();
        let t = Instant::now();
        conn.write_all(&msg).expect("write");
        conn.read_exact(&mut back)
            .expect("echo within the deadline");
        rtts.push(t.elapsed());
        assert_eq!(back[..], msg[..], "round trip {i} came back altered");
    }
    rtts.sort();
    rtts
}

fn median(rtts: &[Duration]) -> Duration {
    rtts[rtts.len() / 2]
}

/// Sends `BULK_BYTES` and reads them back concurrently; the time to the last byte.
fn bulk(conn: &mut TcpStream) -> Duration {
    let pattern = |i: usize| (i % 251) as u8;
    let mut writer = conn.try_clone().expect("clone");
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let data: Vec<u8> = (0..BULK_BYTES).map(pattern).collect();
            writer.write_all(&data).expect("bulk write");
        });
        let mut back = vec![0u8; BULK_BYTES];
        conn.read_exact(&mut back)
            .expect("bulk echo within the deadline");
        let bad = back.iter().enumerate().position(|(i, b)| *b != pattern(i));
        assert_eq!(bad, None, "bulk echo reordered or altered");
    });
    t.elapsed()
}

fn zone_stats<'a>(
    stats: &'a LinksStats,
    zone: &str,
) -> &'a tocsin_chaos::harness::latency::LinkStats {
    stats
        .zones
        .iter()
        .find(|z| z.zone == zone)
        .expect("zone in stats")
}

/// What zone a's client does: round trips to b, c and the hub while the test moves the
/// delays.
fn zone_a_script(net: &ZoneNet, links: &LatencyLinks, [b, c, hub]: [Echo; 3]) {
    net.enter_zone("a").expect("entering zone a");
    let set = |zone: &str, rtt_ms: u64, jitter_ms: u64| {
        links
            .set(
                zone,
                Duration::from_millis(rtt_ms),
                Duration::from_millis(jitter_ms),
            )
            .expect("set");
    };
    let mut to_b = connect(b.addr);

    let idle = round_trips(&mut to_b);
    println!("a→b, nothing added: median {:.2} ms", ms(median(&idle)));
    assert!(median(&idle) < FAST, "a→b without delay: {idle:?}");
    let s = links.stats();
    assert_eq!(
        s.proxy.accepted, 1,
        "the connection went through the proxy: {s:?}"
    );
    assert_eq!(s.proxy.open, 1, "{s:?}");
    let counted = |z| zone_stats(&s, z).connections;
    assert_eq!(
        (counted("a"), counted("b"), counted("c")),
        (1, 1, 0),
        "{s:?}"
    );

    // The same, already open connection.
    set("b", 100, 0);
    let slow = round_trips(&mut to_b);
    println!(
        "a→b, b +100 ms: median {:.2} ms, min {:.2} ms",
        ms(median(&slow)),
        ms(slow[0])
    );
    assert!(
        slow[0] >= ADDED,
        "every round trip carries the delay: {slow:?}"
    );
    assert!(median(&slow) < ADDED + SLACK, "{slow:?}");

    set("b", 0, 0);
    let again = round_trips(&mut to_b);
    println!("a→b, back to 0: median {:.2} ms", ms(median(&again)));
    assert!(
        median(&again) < FAST,
        "a→b after the delay was taken off: {again:?}"
    );

    set("b", 100, 40);
    let jittery = round_trips(&mut to_b);
    let (lo, hi) = (jittery[0], jittery[ROUND_TRIPS - 1]);
    println!("a→b, b +100 ms ± 40: {:.2}..{:.2} ms", ms(lo), ms(hi));
    assert!(lo >= ADDED, "jitter only adds: {jittery:?}");
    assert!(
        hi < ADDED + Duration::from_millis(40) + SLACK,
        "{jittery:?}"
    );
    assert!(
        hi - lo >= Duration::from_millis(5),
        "the jitter varies: {jittery:?}"
    );

    // Both ends' delays add up.
    set("a", 50, 0);
    set("b", 100, 0);
    let both = round_trips(&mut to_b);
    println!(
        "a→b, a +50 ms, b +100 ms: median {:.2} ms",
        ms(median(&both))
    );
    let sum = Duration::from_millis(150);
    assert!(both[0] >= sum && median(&both) < sum + SLACK, "{both:?}");

    // Zone to hub never passes the proxy, whatever the zone's delay.
    let mut to_hub = connect(hub.addr);
    let local = round_trips(&mut to_hub);
    println!("a→hub, a +50 ms: median {:.2} ms", ms(median(&local)));
    assert!(median(&local) < FAST, "a→hub is not delayed: {local:?}");
    assert_eq!(
        links.stats().proxy.accepted,
        1,
        "a→hub did not go through the proxy"
    );

    // A new connection to a zone at zero gets a's delay only.
    let mut to_c = connect(c.addr);
    let ac = round_trips(&mut to_c);
    println!("a→c, a +50 ms: median {:.2} ms", ms(median(&ac)));
    let half = Duration::from_millis(50);
    assert!(ac[0] >= half && median(&ac) < half + SLACK, "{ac:?}");
    assert_eq!(links.stats().proxy.accepted, 2);

    // A delay costs latency, not throughput: reading goes on while chunks wait.
    set("a", 0, 0);
    let took = bulk(&mut to_b);
    println!(
        "a→b, b +100 ms: {BULK_BYTES} bytes echoed in {:.0} ms",
        ms(took)
    );
    assert!(
        took < BULK_DEADLINE,
        "bulk through a 100 ms link took {took:?}"
    );

    // Half-close travels through the proxy: the server sees the end of stream, ends its
    // side, and the client reads the end of stream.
    for (conn, echo) in [(&mut to_b, b), (&mut to_c, c), (&mut to_hub, hub)] {
        conn.shutdown(Shutdown::Write).expect("half-close");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest)
            .expect("end of stream within the deadline");
        assert!(rest.is_empty(), "nothing after the last echo");
        echo.done
            .recv_timeout(IO_DEADLINE)
            .expect("server saw the end of stream");
    }
}

#[test]
fn latency_links_delay_inter_zone_round_trips_on_open_connections() {
    let hub = netns::enter_private_hub().unwrap_or_else(|e| {
        panic!(
            "entering a private network namespace (needs root; apt-get install iproute2 \
             nftables): {e}"
        )
    });
    // Built after entering the hub: its threads (the proxy's) are in it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let zones: Vec<String> = ["a", "b", "c"].map(String::from).into();
    let net = Arc::new(
        runtime
            .block_on(ZoneNet::create(&hub, &zones))
            .unwrap_or_else(|e| panic!("creating zone namespaces (needs iproute2, nftables): {e}")),
    );
    let stop = CancellationToken::new();
    let links = runtime
        .block_on(LatencyLinks::start(&net, &zones, &stop))
        .unwrap_or_else(|e| panic!("installing the latency links: {e}"));
    assert_eq!(
        net.routed_port("b").expect("zone b"),
        Some(links.proxy().port())
    );

    let b = echo(&net, Some("b"), net.zone_ip("b").expect("b"));
    let c = echo(&net, Some("c"), net.zone_ip("c").expect("c"));
    let at_hub = echo(&net, None, HUB_IP);
    std::thread::scope(|s| {
        let script = s.spawn(|| zone_a_script(&net, &links, [b, c, at_hub]));
        if let Err(panic) = script.join() {
            std::panic::resume_unwind(panic);
        }
    });

    let s = links.stats();
    println!("{}", serde_json::to_string(&s).expect("stats as JSON"));
    let b_link = zone_stats(&s, "b");
    assert!(b_link.bytes >= 2 * BULK_BYTES as u64, "{s:?}");
    assert_eq!((s.proxy.accepted, s.proxy.failed), (2, 0), "{s:?}");
    assert_eq!(
        s.proxy.bytes_upstream, s.proxy.bytes_downstream,
        "echoed both ways"
    );

    // A partition could not cut the proxied connections: it is refused.
    let refused = runtime.block_on(net.partition("b"));
    assert!(refused.is_err(), "partition with latency links installed");

    runtime.block_on(links.shutdown());
    runtime.block_on(net.remove());
    drop(runtime);
    drop(hub);
}
