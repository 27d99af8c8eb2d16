//! The `tocsin-chaos emulators --dir DIR` binary: writes emulators.json with every emulator's
//! loopback address, each serves `GET /requests`, and SIGTERM stops it cleanly.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{client, wait_until};
use tocsin_chaos::set::{MANIFEST_FILE, ManifestEntry};
use tocsin_chaos::{FaultMode, FaultSpec};

#[tokio::test]
async fn emulators_subcommand_writes_the_manifest_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin-chaos"))
        .args(["emulators", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let manifest = dir.path().join(MANIFEST_FILE);
    wait_until(
        || std::future::ready(manifest.exists()),
        Duration::from_secs(20),
        "emulators.json written",
    )
    .await;
    let entries: Vec<ManifestEntry> =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["pagerduty", "slack", "twilio", "vonage", "webhook", "smtp"]
    );
    for entry in &entries {
        assert!(entry.http.ip().is_loopback());
        let resp = client()
            .get(format!("http://{}/requests", entry.http))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", entry.kind);
        assert_eq!(resp.text().await.unwrap(), "[]");
    }
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(raw[0]["kind"], "pagerduty");
    assert!(raw[0]["http"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(raw[5]["smtp"].is_string());

    // The typed remote client, as the harness uses it.
    let entries = tocsin_chaos::remote::read_manifest(dir.path()).unwrap();
    let pd = tocsin_chaos::remote::RemoteEmulator::new(entries[0].http).unwrap();
    pd.set_faults(&FaultSpec::new(FaultMode::Error5xx).count(1))
        .await
        .unwrap();
    let trigger = serde_json::json!({
        "routing_key": "0123456789abcdef0123456789abcdef", "event_action": "trigger",
        "dedup_key": "k", "payload": {"summary": "s", "source": "h", "severity": "info"},
    });
    for expected in [503, 202] {
        let resp = client()
            .post(format!("http://{}/v2/enqueue", entries[0].http))
            .json(&trigger)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
    }
    let log = pd.requests().await.unwrap();
    assert_eq!(
        log.iter().map(|r| r.answer.status).collect::<Vec<_>>(),
        [503, 202]
    );
    assert_eq!(
        pd.pagerduty_incidents().await.unwrap().per_dedup_key()["k"],
        1
    );
    pd.clear_requests().await.unwrap();
    pd.clear_faults().await.unwrap();
    assert!(pd.requests().await.unwrap().is_empty());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
