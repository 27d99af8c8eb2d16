//! Helpers shared by the alerter integration tests that run real external programs
//! (Prometheus, promtool, Redis, Alertmanager): find the binary or fail with the install
//! command, pick a free port, and kill the child however the test ends.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Child;

/// Finds `name` in /usr/bin or on PATH, or fails the test saying which Debian package
/// provides it (tests never skip).
pub fn find_binary(name: &str, package: &str) -> PathBuf {
    let fixed = Path::new("/usr/bin").join(name);
    if fixed.exists() {
        return fixed;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "`{name}` not found: this test runs the real program. Install it with `apt-get install {package}`."
    );
}

/// promtool, from Debian's `prometheus` package.
pub fn promtool() -> PathBuf {
    find_binary("promtool", "prometheus")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Kills and reaps a child process however the test ends.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP client (with the process's TLS provider installed first).
pub fn http() -> reqwest::Client {
    tocsin_proto::tls::install_crypto_provider();
    reqwest::Client::new()
}
