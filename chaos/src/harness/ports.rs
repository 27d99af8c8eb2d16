//! Ports for processes that must be told their address before they start (a node's peers
//! list it; a restarted Redis comes back on the same port).
//!
//! Probing port 0 and handing the port to a child leaves a window in which the port is free.
//! Ports from the OS come from the ephemeral range, which every outgoing connection on the
//! machine draws its local port from too, so under a busy test suite another process's
//! connection can take the port in that window and the child fails to bind. [`reserve`]
//! picks from below the ephemeral range instead: no outgoing connection and no port-0
//! listener ever uses those ports, so only another `reserve` could collide, and it picks at
//! random from thousands.

use std::io;
use std::net::{IpAddr, TcpListener};

use rand::Rng;

/// The lowest port [`reserve`] picks.
const LOW: u16 = 10_000;

/// A port of `ip` that is free now and outside the ephemeral range (see the module docs).
/// Falls back to a port from the OS when the ephemeral range leaves no room below it.
pub fn reserve(ip: IpAddr) -> io::Result<u16> {
    let high = ephemeral_low().unwrap_or(32_768);
    if high > LOW + 1_000 {
        let mut rng = rand::rng();
        for _ in 0..64 {
            let port = rng.random_range(LOW..high);
            if TcpListener::bind((ip, port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_reserved_port_is_below_the_ephemeral_range_and_bindable() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let low = ephemeral_low().expect("Linux reports its ephemeral range");
        for _ in 0..20 {
            let port = reserve(ip).unwrap();
            assert!((LOW..low).contains(&port), "{port} not in {LOW}..{low}");
            TcpListener::bind((ip, port)).expect("the reserved port binds");
        }
    }
}
