//! Every emulator at once, on loopback ports, and the `emulators.json` manifest that tells
//! `tocsin dev`, the chaos harness and people where they are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::emulator::EmulatorKind;
use crate::error::ChaosError;
use crate::pagerduty::{PagerDuty, PagerDutyConfig};
use crate::slack::{Slack, SlackConfig};
use crate::smtp::SmtpSink;
use crate::twilio::{Twilio, TwilioConfig};
use crate::vonage::{Vonage, VonageConfig};
use crate::webhook::WebhookSink;

/// The manifest's file name inside the run directory.
pub const MANIFEST_FILE: &str = "emulators.json";

/// One line of `emulators.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub kind: EmulatorKind,
    /// The HTTP address (provider API and `GET /requests`).
    pub http: SocketAddr,
    /// The SMTP address (the `smtp` sink only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SocketAddr>,
}

/// All emulators, each with its default configuration.
#[derive(Debug)]
pub struct EmulatorSet {
    pub pagerduty: PagerDuty,
    pub slack: Slack,
    pub twilio: Twilio,
    pub vonage: Vonage,
    pub webhook: WebhookSink,
    pub smtp: SmtpSink,
}

impl EmulatorSet {
    /// Starts every emulator on `127.0.0.1:0`; all stop when `shutdown` fires.
    pub async fn start_local(shutdown: &CancellationToken) -> Result<Self, ChaosError> {
        Ok(Self {
            pagerduty: PagerDuty::start_local(PagerDutyConfig::default(), shutdown).await?,
            slack: Slack::start_local(SlackConfig::default(), shutdown).await?,
            twilio: Twilio::start_local(TwilioConfig::default(), shutdown).await?,
            vonage: Vonage::start_local(VonageConfig::default(), shutdown).await?,
            webhook: WebhookSink::start_local(shutdown).await?,
            smtp: SmtpSink::start_local(shutdown).await?,
        })
    }

    /// The manifest entries, one per emulator.
    pub fn manifest(&self) -> Vec<ManifestEntry> {
        let http = |kind, addr| ManifestEntry {
            kind,
            http: addr,
            smtp: None,
        };
        vec![
            http(EmulatorKind::Pagerduty, self.pagerduty.emulator().addr()),
            http(EmulatorKind::Slack, self.slack.emulator().addr()),
            http(EmulatorKind::Twilio, self.twilio.emulator().addr()),
            http(EmulatorKind::Vonage, self.vonage.emulator().addr()),
            http(EmulatorKind::Webhook, self.webhook.emulator().addr()),
            ManifestEntry {
                kind: EmulatorKind::Smtp,
                http: self.smtp.emulator().addr(),
                smtp: Some(self.smtp.smtp_addr()),
            },
        ]
    }

    /// Writes `DIR/emulators.json` (via a temporary file and a rename, so a reader never
    /// sees half a manifest); returns its path.
    pub fn write_manifest(&self, dir: &Path) -> Result<PathBuf, ChaosError> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(&self.manifest()).unwrap_or_default();
        let io = |source| ChaosError::WriteManifest {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    /// Stops every emulator and waits for them.
    pub async fn shutdown(self) {
        self.pagerduty.shutdown().await;
        self.slack.shutdown().await;
        self.twilio.shutdown().await;
        self.vonage.shutdown().await;
        self.webhook.shutdown().await;
        self.smtp.shutdown().await;
    }
}
