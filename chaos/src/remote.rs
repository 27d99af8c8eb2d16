//! A typed client for emulators running in another process (started by
//! `tocsin-chaos emulators`, `tocsin dev` or the harness): read their logs and incident
//! tables, set their faults. Every call has a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::emulator::faults::FaultSpec;
use crate::emulator::log::RecordedRequest;
use crate::error::ChaosError;
use crate::pagerduty::incidents::IncidentsView;
use crate::set::{MANIFEST_FILE, ManifestEntry};

/// Deadline for every call: the emulators are local, so anything slower is a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `DIR/emulators.json`.
pub fn read_manifest(dir: &Path) -> Result<Vec<ManifestEntry>, ChaosError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|err| ChaosError::ReadManifest {
        path: path.clone(),
        reason: err.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|err| ChaosError::ReadManifest {
        path,
        reason: err.to_string(),
    })
}

/// One remote emulator's HTTP control surface.
#[derive(Debug, Clone)]
pub struct RemoteEmulator {
    base: String,
    http: reqwest::Client,
}

impl RemoteEmulator {
    /// A client for the emulator serving HTTP at `addr`.
    pub fn new(addr: SocketAddr) -> Result<Self, ChaosError> {
        let base = format!("http://{addr}");
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|err| remote_error("BUILD", &base, &err))?;
        Ok(Self { base, http })
    }

    /// Every request the emulator recorded.
    pub async fn requests(&self) -> Result<Vec<RecordedRequest>, ChaosError> {
        self.get_json("/requests").await
    }

    /// Clears the emulator's request log.
    pub async fn clear_requests(&self) -> Result<(), ChaosError> {
        self.send(
            "DELETE",
            self.http.delete(self.url("/requests")),
            "/requests",
        )
        .await
    }

    /// Sets the fault switch.
    pub async fn set_faults(&self, spec: &FaultSpec) -> Result<(), ChaosError> {
        self.send(
            "PUT",
            self.http.put(self.url("/faults")).json(spec),
            "/faults",
        )
        .await
    }

    /// Back to `ok`.
    pub async fn clear_faults(&self) -> Result<(), ChaosError> {
        self.send("DELETE", self.http.delete(self.url("/faults")), "/faults")
            .await
    }

    /// The PagerDuty emulator's incident table.
    pub async fn pagerduty_incidents(&self) -> Result<IncidentsView, ChaosError> {
        self.get_json("/incidents").await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ChaosError> {
        let url = self.url(path);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| remote_error("GET", &url, &err))?;
        response
            .json()
            .await
            .map_err(|err| remote_error("GET", &url, &err))
    }

    async fn send(
        &self,
        method: &'static str,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<(), ChaosError> {
        request
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map(drop)
            .map_err(|err| remote_error(method, &self.url(path), &err))
    }
}

fn remote_error(method: &'static str, url: &str, err: &reqwest::Error) -> ChaosError {
    ChaosError::Remote {
        method,
        url: url.to_owned(),
        reason: err.to_string(),
    }
}
