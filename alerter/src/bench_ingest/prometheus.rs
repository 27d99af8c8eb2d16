//! The real Prometheus of a run: a child process with its own TSDB and config in the work
//! dir, on a free loopback port, with the remote-write receiver, the admin API (snapshots)
//! and the lifecycle API (config reload) enabled; killed on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value as Json;

use super::cpu;
use super::ours::base_url;

/// Deadline for Prometheus to become ready after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between readiness polls.
const READY_POLL: Duration = Duration::from_millis(50);
/// Deadline of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The configuration until the scrape phase: no scrape jobs, so nothing but the benchmark's
/// own requests loads Prometheus.
const IDLE_CONFIG: &str = "global:\n  scrape_interval: 15s\n";

/// What a snapshot of Prometheus's head holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ChunkBytes {
    /// Samples (the blocks' `meta.json`).
    pub samples: u64,
    /// Chunks read from the chunk files (checked against `meta.json`).
    pub chunks: u64,
    /// Bytes of chunk data (the XOR encoding, its 2-byte sample count included; without the
    /// chunk files' per-chunk length, encoding byte and CRC).
    pub data_bytes: u64,
}

/// A running Prometheus.
pub(super) struct Prometheus {
    child: Child,
    base: Url,
    dir: PathBuf,
    tsdb: PathBuf,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `binary` with a fresh TSDB under `work_dir/prometheus` and waits until it is
    /// ready.
    pub async fn start(
        binary: &Path,
        work_dir: &Path,
        client: reqwest::Client,
    ) -> Result<Self, String> {
        let io = |what: &str, e: std::io::Error| format!("prometheus: {what}: {e}");
        let dir = work_dir.join("prometheus");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io("clear its old dir", e))?;
        }
        let tsdb = dir.join("tsdb");
        std::fs::create_dir_all(&tsdb).map_err(|e| io("create its TSDB dir", e))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, IDLE_CONFIG).map_err(|e| io("write its config", e))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| io("pick a port", e))?
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| io("log", e))?;
        let log2 = log.try_clone().map_err(|e| io("log", e))?;
        let child = Command::new(binary)
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--web.enable-admin-api")
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| io(&format!("start {}", binary.display()), e))?;
        let base = base_url(SocketAddr::from(([127, 0, 0, 1], port)))?;
        let mut prom = Self {
            child,
            base,
            dir,
            tsdb,
            client,
        };
        prom.wait_ready().await?;
        Ok(prom)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut ready = self.base.clone();
        ready.set_path("/-/ready");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "prometheus exited early ({status}); see {}",
                    self.dir.join("prometheus.log").display()
                ));
            }
            let probe = self
                .client
                .get(ready.clone())
                .timeout(PROBE_TIMEOUT)
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("prometheus not ready after {READY_TIMEOUT:?}"));
            }
            // Bounded polling: Prometheus offers nothing to wait on but its endpoint.
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// `http://ADDR/`.
    pub fn base_url(&self) -> Url {
        self.base.clone()
    }

    /// The remote-write receiver.
    pub fn write_url(&self) -> Url {
        let mut u = self.base.clone();
        u.set_path("/api/v1/write");
        u
    }

    /// CPU time of the whole Prometheus process so far (ns, 10 ms resolution).
    pub fn cpu_ns(&self) -> Result<u64, String> {
        cpu::process_ns(self.child.id())
            .ok_or_else(|| "cannot read Prometheus's CPU time from /proc".to_string())
    }

    /// Adds one scrape job (`job_name`, one target, `interval_ms`) and reloads the config.
    pub async fn scrape(
        &self,
        job_name: &str,
        target: SocketAddr,
        interval_ms: u64,
    ) -> Result<(), String> {
        let config = format!(
            "{IDLE_CONFIG}scrape_configs:\n  - job_name: {job_name}\n    scrape_interval: {interval_ms}ms\n    \
             scrape_timeout: {interval_ms}ms\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(self.dir.join("prometheus.yml"), config)
            .map_err(|e| format!("prometheus: write its config: {e}"))?;
        let mut reload = self.base.clone();
        reload.set_path("/-/reload");
        let resp = self
            .client
            .post(reload)
            .send()
            .await
            .map_err(|e| format!("prometheus: reload: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!(
                "prometheus: reload: HTTP {status}: {}",
                text.trim()
            ));
        }
        Ok(())
    }

    /// Snapshots the head (admin API) and reads the chunk data of the block it wrote; the
    /// snapshot is deleted afterwards.
    pub async fn chunk_bytes(&self) -> Result<ChunkBytes, String> {
        let mut url = self.base.clone();
        url.set_path("/api/v1/admin/tsdb/snapshot");
        let resp = self
            .client
            .post(url)
            .send()
            .await
            .map_err(|e| format!("prometheus: snapshot: {e}"))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("prometheus: snapshot: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "prometheus: snapshot: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let answer: Json = serde_json::from_slice(&body)
            .map_err(|e| format!("prometheus: snapshot answer: {e}"))?;
        let name = answer["data"]["name"]
            .as_str()
            .ok_or_else(|| format!("prometheus: snapshot answer without a name: {answer}"))?;
        let dir = self.tsdb.join("snapshots").join(name);
        let read = tokio::task::spawn_blocking(move || {
            let got = snapshot_chunk_bytes(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            got
        });
        read.await
            .map_err(|e| format!("prometheus: read snapshot: {e}"))?
    }
}

/// Sums what the blocks of a snapshot directory hold.
fn snapshot_chunk_bytes(dir: &Path) -> Result<ChunkBytes, String> {
    let io = |p: &Path, e: std::io::Error| format!("prometheus snapshot {}: {e}", p.display());
    let mut total = ChunkBytes::default();
    let mut blocks = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let block = entry.map_err(|e| io(dir, e))?.path();
        let meta_path = block.join("meta.json");
        if !meta_path.exists() {
            continue;
        }
        blocks += 1;
        let meta: Json = std::fs::read(&meta_path)
            .map_err(|e| io(&meta_path, e))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("{e}")))?;
        let stat = |name: &str| {
            meta["stats"][name]
                .as_u64()
                .ok_or_else(|| format!("{}: no stats.{name}", meta_path.display()))
        };
        let (samples, chunks_expected) = (stat("numSamples")?, stat("numChunks")?);
        let chunk_dir = block.join("chunks");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&chunk_dir)
            .map_err(|e| io(&chunk_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let (mut chunks, mut data) = (0, 0);
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| io(&f, e))?;
            let (c, d) = segment_chunks(&bytes).map_err(|e| format!("{}: {e}", f.display()))?;
            chunks += c;
            data += d;
        }
        if chunks != chunks_expected {
            return Err(format!(
                "{}: read {chunks} chunks, meta.json says {chunks_expected}",
                block.display()
            ));
        }
        total.samples += samples;
        total.chunks += chunks;
        total.data_bytes += data;
    }
    if blocks == 0 {
        return Err(format!("prometheus snapshot {}: no block", dir.display()));
    }
    Ok(total)
}

/// Chunks and chunk data bytes of one segment file of a block's `chunks/` directory (TSDB
/// format 1): an 8-byte header (magic `0x85BD40DD`, version, padding), then per chunk
/// `len uvarint | encoding u8 | data (len bytes) | CRC32 (4 bytes)`.
fn segment_chunks(b: &[u8]) -> Result<(u64, u64), String> {
    const MAGIC: [u8; 4] = [0x85, 0xBD, 0x40, 0xDD];
    const HEADER_BYTES: usize = 8;
    const ENCODING_BYTES: usize = 1;
    const CRC_BYTES: usize = 4;
    if b.len() < HEADER_BYTES || b[..4] != MAGIC {
        return Err("not a Prometheus chunk segment (bad magic)".into());
    }
    let (mut i, mut chunks, mut data) = (HEADER_BYTES, 0u64, 0u64);
    while i < b.len() {
        let (len, n) = uvarint(&b[i..]).ok_or("bad chunk length")?;
        let len = usize::try_from(len).map_err(|_| "chunk length overflows")?;
        let end = i
            .checked_add(n + ENCODING_BYTES + CRC_BYTES)
            .and_then(|e| e.checked_add(len))
            .filter(|e| *e <= b.len())
            .ok_or_else(|| format!("chunk at byte {i} runs past the end"))?;
        chunks += 1;
        data += len as u64;
        i = end;
    }
    Ok((chunks, data))
}

/// An unsigned LEB128 varint (Go's `binary.Uvarint`): the value and the bytes it took.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_segments_are_read_chunk_by_chunk() {
        let mut seg = vec![0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0];
        for len in [3usize, 200] {
            // 200 takes two varint bytes.
            if len < 0x80 {
                seg.push(len as u8);
            } else {
                seg.extend([(len as u8 & 0x7f) | 0x80, (len >> 7) as u8]);
            }
            seg.push(1); // XOR encoding
            seg.extend(std::iter::repeat_n(0xAB, len));
            seg.extend([0, 0, 0, 0]); // CRC
        }
        assert_eq!(segment_chunks(&seg), Ok((2, 203)));
        assert!(segment_chunks(&seg[..seg.len() - 1]).is_err());
        assert!(segment_chunks(b"garbage!").is_err());
        assert_eq!(uvarint(&[0xAC, 0x02]), Some((300, 2)));
    }
}
