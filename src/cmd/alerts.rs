//! `tocsin alerts`: the cluster's alert instances.

use std::time::Duration;

use clap::Args;

use crate::http::alerts::AlertView;

/// Flags of `tocsin alerts`.
#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// HTTP address of any node.
    #[arg(long, default_value = "http://127.0.0.1:9101")]
    server: String,
    /// Only `pending`, `firing` or `resolved` alerts.
    #[arg(long)]
    state: Option<String>,
    /// Print the raw JSON of `GET /api/v1/alerts`.
    #[arg(long)]
    json: bool,
}

/// Prints the alerts; exit 1 if the node cannot answer.
pub async fn run(args: AlertsArgs) -> i32 {
    let mut url = format!("{}/api/v1/alerts", args.server.trim_end_matches('/'));
    if let Some(s) = &args.state {
        url.push_str(&format!("?state={s}"));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds");
    let resp = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tocsin: cannot reach {url}: {e}");
            return 1;
        }
    };
    if !resp.status().is_success() {
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        eprintln!(
            "tocsin: {}",
            body["error"].as_str().unwrap_or("request refused")
        );
        return 1;
    }
    let alerts: Vec<AlertView> = match resp.json().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tocsin: {url} answered something that is not an alert list: {e}");
            return 1;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&alerts).unwrap_or_default()
        );
        return 0;
    }
    if alerts.is_empty() {
        println!("no alerts");
    }
    for a in &alerts {
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "{:<9} {:<28} {{{}}} value={} group={}/{} worker={} zone={}",
            a.state,
            a.rule,
            labels.join(", "),
            a.value,
            a.namespace,
            a.group,
            a.worker.as_deref().unwrap_or("-"),
            a.zone.as_deref().unwrap_or("-"),
        );
    }
    0
}
