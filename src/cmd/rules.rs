//! `tocsin rules …`: work with Prometheus rule files (check, test, apply, list).

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value as J;

/// Rule-file subcommands.
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Validate rule files like `promtool check rules`: prints `SUCCESS: N rules found` per
    /// file or every error (file, line:column, group, rule, what is wrong); exits 1 on any error.
    Check {
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run `promtool test rules` unit-test files unchanged; output and exit status match
    /// promtool's.
    Test {
        /// Unit-test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate and apply rule files to the cluster: each file replaces its namespace (the
    /// file name without extension, or --namespace). A file with any error changes nothing.
    Apply {
        /// Rule files to apply.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Namespace to use (only with a single file).
        #[arg(long)]
        namespace: Option<String>,
        /// HTTP address of any node.
        #[arg(long, default_value = "http://127.0.0.1:9101")]
        server: String,
    },
    /// List the cluster's committed rule set.
    List {
        /// HTTP address of any node.
        #[arg(long, default_value = "http://127.0.0.1:9101")]
        server: String,
        /// Print the raw JSON of `GET /api/v1/rules`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a rules subcommand; returns the exit code.
pub async fn run(cmd: RulesCommand) -> i32 {
    match cmd {
        RulesCommand::Check { files } => {
            let report = tocsin_alerter::rules::check_files(&files);
            print!("{report}");
            if report.success() { 0 } else { 1 }
        }
        RulesCommand::Test { files } => {
            let report = tokio::task::spawn_blocking(move || {
                tocsin_alerter::unittest::run_files(
                    &files,
                    &tocsin_alerter::unittest::UnitTestOptions::default(),
                )
            })
            .await;
            let Ok(report) = report else {
                eprintln!("tocsin: the rule tests crashed");
                return 1;
            };
            use std::io::Write;
            for (stream, text) in report.chunks() {
                let _ = match stream {
                    tocsin_alerter::unittest::Stream::Stdout => {
                        std::io::stdout().write_all(text.as_bytes())
                    }
                    tocsin_alerter::unittest::Stream::Stderr => {
                        std::io::stderr().write_all(text.as_bytes())
                    }
                };
            }
            if report.success() { 0 } else { 1 }
        }
        RulesCommand::Apply {
            files,
            namespace,
            server,
        } => apply(files, namespace, &server).await,
        RulesCommand::List { server, json } => list(&server, json).await,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client builds")
}

async fn apply(files: Vec<PathBuf>, namespace: Option<String>, server: &str) -> i32 {
    if namespace.is_some() && files.len() > 1 {
        eprintln!(
            "tocsin: --namespace applies to a single file; got {} files",
            files.len()
        );
        return 2;
    }
    let client = http();
    let mut failed = false;
    for file in files {
        let ns = namespace.clone().unwrap_or_else(|| {
            file.file_stem()
                .map_or_else(|| "default".into(), |s| s.to_string_lossy().into_owned())
        });
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                failed = true;
                continue;
            }
        };
        let url = format!("{}/api/v1/rules/{ns}", server.trim_end_matches('/'));
        match client.put(&url).body(text).send().await {
            Err(e) => {
                eprintln!("tocsin: cannot reach {url}: {e}");
                return 1;
            }
            Ok(r) => {
                let ok = r.status().is_success();
                let body: J = r.json().await.unwrap_or(J::Null);
                if ok {
                    println!(
                        "{}: applied as namespace {ns:?}: {} groups, {} rules (rule set version {})",
                        file.display(),
                        body["groups"],
                        body["rules"],
                        body["version"]
                    );
                } else {
                    failed = true;
                    eprintln!(
                        "{}: {}",
                        file.display(),
                        body["error"].as_str().unwrap_or("refused")
                    );
                    for e in body["errors"].as_array().into_iter().flatten() {
                        eprintln!("  {}", e["message"].as_str().unwrap_or_default());
                    }
                }
            }
        }
    }
    i32::from(failed)
}

async fn list(server: &str, raw: bool) -> i32 {
    let url = format!("{}/api/v1/rules", server.trim_end_matches('/'));
    let body: J = match http().get(&url).send().await {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(J::Null),
        Ok(r) => {
            eprintln!("tocsin: {url}: HTTP {}", r.status());
            return 1;
        }
        Err(e) => {
            eprintln!("tocsin: cannot reach {url}: {e}");
            return 1;
        }
    };
    if raw {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return 0;
    }
    println!("rule set version {}", body["version"]);
    for ns in body["namespaces"].as_array().into_iter().flatten() {
        println!("namespace {}", ns["name"].as_str().unwrap_or_default());
        for g in ns["groups"].as_array().into_iter().flatten() {
            println!(
                "  group {} (every {}, eval shard {})",
                g["name"].as_str().unwrap_or_default(),
                g["interval"].as_str().unwrap_or_default(),
                g["eval_shard"]
            );
            for r in g["rules"].as_array().into_iter().flatten() {
                println!(
                    "    {:<9} {:<32} {}",
                    r["type"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default(),
                    r["expr"].as_str().unwrap_or_default()
                );
            }
        }
    }
    0
}
