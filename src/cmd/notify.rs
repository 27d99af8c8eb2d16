//! `tocsin notify`, `tocsin silences` and `tocsin ack`: the notification config, silences and
//! acknowledgements, through any node's HTTP API.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value as J, json};
use tocsin_alerter::notify::deliver::message::rfc3339_ms;
use tocsin_alerter::notify::matchers::{MatchOp, Matchers};
use tocsin_alerter::rules::duration::parse_duration;

use crate::EXIT_USAGE;

/// `tocsin notify ...`.
#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Validate an `alertmanager.yml` locally (no server needed); exit 1 if invalid.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// Validate and replace the cluster's notification config.
    Apply {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// Print the cluster's notification config.
    Show {
        #[command(flatten)]
        server: Server,
    },
    /// List notification streams with their outbox state.
    Status {
        #[command(flatten)]
        server: Server,
    },
}

/// `tocsin silences ...`.
#[derive(Subcommand, Debug)]
pub enum SilencesCommand {
    /// Silence alerts matching every matcher, e.g. `alertname=DiskFull 'instance=~"db-.*"'`.
    Add {
        /// Matchers (Alertmanager syntax).
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, e.g. `2h`.
        #[arg(long, default_value = "1h")]
        duration: String,
        /// Who.
        #[arg(long, default_value_t = default_author())]
        author: String,
        /// Why.
        #[arg(long)]
        comment: String,
        #[command(flatten)]
        server: Server,
    },
    /// List silences.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Expire silences by id.
    Expire {
        /// Silence ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        server: Server,
    },
}

/// Flags of `tocsin ack`.
#[derive(Args, Debug)]
pub struct AckArgs {
    /// The group: its group key, or matchers on its group labels (`alertname=DiskFull`).
    group: String,
    /// Only this receiver's notifications.
    #[arg(long)]
    receiver: Option<String>,
    /// Who acknowledges.
    #[arg(long, default_value_t = default_author())]
    by: String,
    #[command(flatten)]
    server: Server,
}

/// The node to talk to.
#[derive(Args, Debug)]
pub struct Server {
    /// HTTP address of any node.
    #[arg(long, default_value = "http://127.0.0.1:9101")]
    server: String,
}

fn default_author() -> String {
    std::env::var("USER").unwrap_or_else(|_| "tocsin".into())
}

fn client() -> Result<reqwest::Client, i32> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| {
            eprintln!("tocsin: cannot build an HTTP client: {e}");
            crate::EXIT_FATAL
        })
}

/// Sends a request; prints the API's error and returns 1 on failure.
async fn call(req: reqwest::RequestBuilder, url: &str) -> Result<J, i32> {
    let resp = req.send().await.map_err(|e| {
        eprintln!("tocsin: cannot reach {url}: {e}");
        1
    })?;
    let ok = resp.status().is_success();
    let body: J = resp.json().await.unwrap_or_default();
    if !ok {
        eprintln!(
            "tocsin: {}",
            body["error"].as_str().unwrap_or("request refused")
        );
        for e in body["errors"].as_array().into_iter().flatten() {
            eprintln!("  {}", e["message"].as_str().unwrap_or(""));
        }
        return Err(1);
    }
    Ok(body)
}

fn url(s: &Server, path: &str) -> String {
    format!("{}{path}", s.server.trim_end_matches('/'))
}

/// `text` (the contents of `file`) with its `templates:` files, read relative to `file`.
fn with_template_files(file: &std::path::Path, text: String) -> Result<String, i32> {
    tocsin_alerter::notify::config::templates::with_files_from_disk(file, &text).map_err(|e| {
        eprintln!("tocsin: {}: {e}", file.display());
        EXIT_USAGE
    })
}

/// Runs `tocsin notify`.
pub async fn run_notify(c: NotifyCommand) -> i32 {
    match run_notify_inner(c).await {
        Ok(()) => 0,
        Err(code) => code,
    }
}

async fn run_notify_inner(c: NotifyCommand) -> Result<(), i32> {
    let read = |file: &PathBuf| {
        std::fs::read_to_string(file).map_err(|e| {
            eprintln!("tocsin: cannot read {}: {e}", file.display());
            EXIT_USAGE
        })
    };
    match c {
        NotifyCommand::Check { file } => {
            let text = with_template_files(&file, read(&file)?)?;
            match tocsin_alerter::notify::config::load(&text) {
                Ok(cfg) => {
                    println!(
                        "{}: SUCCESS: {} receivers, {} inhibit rules, {} templates defined",
                        file.display(),
                        cfg.receivers.len(),
                        cfg.inhibit_rules.len(),
                        cfg.library.defined_names().len()
                    );
                }
                Err(errors) => {
                    eprintln!("{}: FAILED:", file.display());
                    for e in &errors.0 {
                        eprintln!("  {e}");
                    }
                    return Err(1);
                }
            }
        }
        NotifyCommand::Apply { file, server } => {
            let text = with_template_files(&file, read(&file)?)?;
            let u = url(&server, "/api/v1/notify/config");
            let body = call(client()?.put(&u).body(text), &u).await?;
            println!("{}: applied as version {}", file.display(), body["version"]);
        }
        NotifyCommand::Show { server } => {
            let u = url(&server, "/api/v1/notify/config");
            let body = call(client()?.get(&u), &u).await?;
            match body["source"].as_str() {
                Some(s) if !s.is_empty() => print!("{s}"),
                _ => println!("# no notification config applied yet"),
            }
        }
        NotifyCommand::Status { server } => {
            let u = url(&server, "/api/v1/notifications");
            let body = call(client()?.get(&u), &u).await?;
            let streams = body["streams"].as_array().cloned().unwrap_or_default();
            if streams.is_empty() {
                println!("no notification streams");
            }
            for s in streams {
                println!(
                    "{} {}",
                    s["receiver"].as_str().unwrap_or(""),
                    s["group_key"].as_str().unwrap_or("")
                );
                for (i, u) in s["units"].as_array().into_iter().flatten().enumerate() {
                    let head = &u["head"];
                    let last = &u["last"];
                    println!(
                        "  unit {i}: head={} last={}{}",
                        if head.is_null() {
                            "-".to_string()
                        } else {
                            format!(
                                "{}#{} attempts={}",
                                head["state"].as_str().unwrap_or(""),
                                head["seq"],
                                head["attempts"]
                            )
                        },
                        if last.is_null() {
                            "-".to_string()
                        } else {
                            format!("{}#{}", last["state"].as_str().unwrap_or(""), last["seq"])
                        },
                        last["reason"]
                            .as_str()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default(),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Runs `tocsin silences`.
pub async fn run_silences(c: SilencesCommand) -> i32 {
    match run_silences_inner(c).await {
        Ok(()) => 0,
        Err(code) => code,
    }
}

async fn run_silences_inner(c: SilencesCommand) -> Result<(), i32> {
    match c {
        SilencesCommand::Add {
            matchers,
            duration,
            author,
            comment,
            server,
        } => {
            let d = parse_duration(&duration).map_err(|e| {
                eprintln!("tocsin: invalid --duration {duration:?}: {e}");
                EXIT_USAGE
            })?;
            let ms = Matchers::parse(&matchers.join(",")).map_err(|e| {
                eprintln!("tocsin: invalid matchers: {e}");
                EXIT_USAGE
            })?;
            let now = crate::clock::wall_ms();
            let body = json!({
                "matchers": ms.as_slice().iter().map(|m| {
                    let op = m.op();
                    json!({
                        "name": m.name(), "value": m.value(),
                        "isRegex": matches!(op, MatchOp::Regex | MatchOp::NotRegex),
                        "isEqual": matches!(op, MatchOp::Equal | MatchOp::Regex),
                    })
                }).collect::<Vec<_>>(),
                "startsAt": rfc3339_ms(now),
                "endsAt": rfc3339_ms(now + d.as_millis() as i64),
                "createdBy": author,
                "comment": comment,
            });
            let u = url(&server, "/api/v1/silences");
            let r = call(client()?.post(&u).json(&body), &u).await?;
            println!("{}", r["silenceID"].as_str().unwrap_or(""));
        }
        SilencesCommand::List { server } => {
            let u = url(&server, "/api/v1/silences");
            let r = call(client()?.get(&u), &u).await?;
            let list = r["silences"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no silences");
            }
            for s in list {
                let ms: Vec<String> = s["matchers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let op = match (m["isEqual"].as_bool(), m["isRegex"].as_bool()) {
                            (Some(false), Some(true)) => "!~",
                            (Some(false), _) => "!=",
                            (_, Some(true)) => "=~",
                            _ => "=",
                        };
                        format!(
                            "{}{op}{:?}",
                            m["name"].as_str().unwrap_or(""),
                            m["value"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                println!(
                    "{} {:<8} {{{}}} until {} by {}: {}",
                    s["id"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or(""),
                    ms.join(", "),
                    s["endsAt"].as_str().unwrap_or(""),
                    s["createdBy"].as_str().unwrap_or(""),
                    s["comment"].as_str().unwrap_or(""),
                );
            }
        }
        SilencesCommand::Expire { ids, server } => {
            let c = client()?;
            for id in ids {
                let u = url(&server, &format!("/api/v1/silences/{id}"));
                call(c.delete(&u), &u).await?;
                println!("expired {id}");
            }
        }
    }
    Ok(())
}

/// Runs `tocsin ack`.
pub async fn run_ack(a: AckArgs) -> i32 {
    let u = url(&a.server, "/api/v1/acks");
    let c = match client() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let body = json!({"group": a.group, "receiver": a.receiver, "by": a.by});
    match call(c.post(&u).json(&body), &u).await {
        Ok(r) => {
            for k in r["acknowledged"].as_array().into_iter().flatten() {
                println!(
                    "acknowledged {} {}",
                    k["receiver"].as_str().unwrap_or(""),
                    k["group_key"].as_str().unwrap_or("")
                );
            }
            0
        }
        Err(code) => code,
    }
}
