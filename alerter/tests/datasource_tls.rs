//! The Prometheus HTTP client over TLS against a real Prometheus (the Debian package) serving
//! `https` with a certificate from a test CA and requiring client certificates (mutual TLS),
//! configured with `--web.config.file`. Certificates come from the real `openssl` program.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{ChildGuard, find_binary, free_port};
use tocsin_alerter::datasource::prometheus::RawTlsConfig;
use tocsin_alerter::datasource::{
    Datasource, Fault, InstantQuery, PrometheusClient, RawPrometheusConfig,
};
use tocsin_alerter::promql::Value;

/// Bound on waiting for Prometheus to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(find_binary("openssl", "openssl"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tocsin-test-ca",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN=tocsin-test-{name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

struct TlsPrometheus {
    dir: tempfile::TempDir,
    child: ChildGuard,
    url: String,
}

impl TlsPrometheus {
    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn tls(&self, ca: bool, client_cert: bool, insecure: bool) -> RawTlsConfig {
        RawTlsConfig {
            ca_file: ca.then(|| self.path("ca.pem")),
            cert_file: client_cert.then(|| self.path("client.pem")),
            key_file: client_cert.then(|| self.path("client.key")),
            insecure_skip_verify: insecure,
        }
    }

    fn client(&self, tls: RawTlsConfig) -> PrometheusClient {
        let raw = RawPrometheusConfig {
            tls: Some(tls),
            ..RawPrometheusConfig::with_url(self.url.clone())
        };
        PrometheusClient::new(raw.validate().expect("valid config")).expect("client")
    }

    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        certificates(dir.path());
        let web = dir.path().join("web.yml");
        std::fs::write(
            &web,
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        )
        .expect("write web config");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(find_binary("prometheus", "prometheus"))
            .current_dir(dir.path())
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.config.file={}", web.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn prometheus");
        let mut p = Self {
            dir,
            child: ChildGuard(child),
            url: format!("https://127.0.0.1:{port}"),
        };
        // Ready when a fully configured client gets an answer.
        let client = p.client(p.tls(true, true, false));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if client.instant(&query()).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = p.child.0.try_wait() {
                panic!("prometheus exited early ({status}):\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not serve https:\n{}",
                p.log()
            );
            // Bounded polling interval while waiting for the readiness condition.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("prometheus.log")).unwrap_or_default()
    }
}

fn query() -> InstantQuery {
    InstantQuery {
        expr: "vector(7)".into(),
        ts_ms: 1_710_028_800_000,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_private_ca_queries_and_each_missing_piece_is_a_datasource_fault() {
    let p = TlsPrometheus::start().await;
    // CA and client certificate: answers.
    let answer = p
        .client(p.tls(true, true, false))
        .instant(&query())
        .await
        .expect("query over mutual TLS");
    let Value::Vector(v) = answer.value else {
        panic!("not a vector: {:?}", answer.value);
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].v, 7.0);

    // No client certificate: the server refuses the handshake.
    let err = p
        .client(p.tls(true, false, false))
        .instant(&query())
        .await
        .unwrap_err();
    // TLS 1.3: the refusal arrives as an alert or as the connection closing, whichever the
    // client reads first.
    assert_eq!(err.fault(), Fault::Datasource, "{err}");

    // The system's roots do not know the test CA: the server is not trusted.
    let err = p
        .client(p.tls(false, true, false))
        .instant(&query())
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Datasource, "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // Skipping verification trusts any server (the client certificate still goes out).
    p.client(p.tls(false, true, true))
        .instant(&query())
        .await
        .expect("insecure_skip_verify");
}
