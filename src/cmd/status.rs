//! `tocsin status`: a node's view of the cluster, for people (or `--json`).

use std::time::Duration;

use clap::Args;

use crate::http::status::Status;

/// Flags of `tocsin status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// HTTP address of any node.
    #[arg(long, default_value = "http://127.0.0.1:9101")]
    server: String,
    /// Print the raw JSON of `GET /api/v1/status`.
    #[arg(long)]
    json: bool,
}

/// Prints the status; exit 1 if the node cannot be reached.
pub async fn run(args: StatusArgs) -> i32 {
    let url = format!("{}/api/v1/status", args.server.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tocsin: {e}");
            return 1;
        }
    };
    let status: Status = match client
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
    {
        Ok(r) => match r.json().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tocsin: {url} answered something that is not a status document: {e}");
                return 1;
            }
        },
        Err(e) => {
            eprintln!("tocsin: cannot reach {url}: {e}");
            return 1;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        );
    } else {
        print!("{}", render(&status));
    }
    0
}

/// The human-readable rendering.
pub fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let leader = s
        .leader
        .map_or("none (election in progress?)".to_string(), |l| {
            format!("node {l}")
        });
    let _ = writeln!(
        out,
        "node {} (zone {}) — leader: {leader}, term {}, commit index {}",
        s.node.id, s.node.zone, s.term, s.commit_index
    );
    let _ = writeln!(out, "\nmembers:");
    let _ = writeln!(
        out,
        "  {:<4} {:<10} {:<22} {:<22} ROLE",
        "ID", "ZONE", "GRPC", "HTTP"
    );
    for m in &s.members {
        let role = if Some(m.id) == s.leader {
            "leader"
        } else if m.voter {
            "voter"
        } else {
            "learner"
        };
        let _ = writeln!(
            out,
            "  {:<4} {:<10} {:<22} {:<22} {role}",
            m.id, m.zone, m.grpc, m.http
        );
    }
    let _ = writeln!(out, "\nzones:");
    if s.zones.is_empty() {
        let _ = writeln!(out, "  (no zone health recorded yet)");
    }
    for z in &s.zones {
        let _ = writeln!(
            out,
            "  {:<10} {:<10} score {:.2} weight {:.2}",
            z.zone, z.state, z.score, z.weight
        );
    }
    let _ = writeln!(out, "\nworkers:");
    if s.workers.is_empty() {
        let _ = writeln!(out, "  (no workers registered)");
    }
    for w in &s.workers {
        let _ = writeln!(
            out,
            "  {:<16} zone {:<10} {} shards",
            w.id, w.zone, w.shards
        );
    }
    let _ = writeln!(
        out,
        "\nshards: {} eval + {} notify, {} assigned",
        s.shards.eval, s.shards.notify, s.shards.assigned
    );
    out
}
