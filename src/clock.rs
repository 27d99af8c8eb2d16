//! The binary's one wall-clock read. Cores take `now` as a parameter; adapters call this.

/// Milliseconds since the Unix epoch.
#[allow(clippy::disallowed_methods)] // the audited wall-clock read
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
