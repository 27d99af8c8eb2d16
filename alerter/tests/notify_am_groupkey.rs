//! Group keys checked against a real Alertmanager (Debian `prometheus-alertmanager`): it runs
//! with a webhook receiver pointed at this test, alerts are posted with `amtool alert add`, and
//! the `groupKey` and `receiver` of every webhook payload must equal what our routing tree
//! computes for the same labels. Fails (does not skip) when Alertmanager is missing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::free_port;

use tocsin_alerter::notify::config::load;
use tocsin_alerter::notify::route::RouteTree;

const DEADLINE: Duration = Duration::from_secs(30);

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

/// Reads one HTTP request, answers 200, returns its body.
fn serve_one(mut s: TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(h) = text.find("\r\n\r\n") {
            let len = text[..h]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if data.len() >= h + 4 + len {
                break;
            }
        }
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&data).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn group_keys_equal_alertmanagers() {
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let config_text = format!(
        r#"
route:
  receiver: default
  group_by: [alertname, cluster]
  group_wait: 0s
  group_interval: 1s
  routes:
    - match_re: {{service: 'mysql|postgres'}}
      receiver: db
      continue: true
    - matchers: ['severity="page"', 'team=~"a|b"']
      receiver: pager
      group_by: ['...']
receivers:
  - name: default
    webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/default'}}]
  - name: db
    webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/db'}}]
  - name: pager
    webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/pager'}}]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("alertmanager.yml");
    std::fs::write(&config_path, &config_text).unwrap();
    let am_port = free_port();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "prometheus-alertmanager is not installed; install it with \
             `apt-get install -y prometheus-alertmanager`",
        );
    let _am = KillOnDrop(child);
    let start = Instant::now();
    while !ready(am_port) {
        assert!(start.elapsed() < DEADLINE, "alertmanager not ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    let alerts: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("alertname", "Down"),
            ("cluster", "eu\"1"),
            ("service", "mysql"),
        ],
        vec![("alertname", "Down"), ("cluster", "us"), ("service", "web")],
        vec![
            ("alertname", "Slow"),
            ("severity", "page"),
            ("team", "a"),
            ("x", "é\t"),
        ],
        // `continue` on the db route: this one reaches db and pager.
        vec![
            ("alertname", "Lag"),
            ("service", "postgres"),
            ("severity", "page"),
            ("team", "b"),
        ],
    ];
    for labels in &alerts {
        let status = Command::new("amtool")
            .args(["alert", "add"])
            .arg(format!("--alertmanager.url=http://127.0.0.1:{am_port}"))
            .args(labels.iter().map(|(k, v)| {
                // amtool parses labels as matchers: quote and escape the value.
                format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
            }))
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "amtool alert add: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    let tree = RouteTree::new(&load(&config_text).unwrap().route);
    let mut want = BTreeSet::new();
    for labels in &alerts {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for r in tree.matches(&labels) {
            let k = r.notification_key(&labels);
            want.insert((k.receiver, k.group_key));
        }
    }
    assert_eq!(want.len(), 5, "{want:?}");

    hook.set_nonblocking(true).unwrap();
    let mut got = BTreeSet::new();
    while !want.is_subset(&got) {
        assert!(
            start.elapsed() < DEADLINE,
            "missing webhooks; want {want:?}, got {got:?}"
        );
        match hook.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                let body: serde_json::Value = serde_json::from_str(&serve_one(s)).unwrap();
                got.insert((
                    body["receiver"].as_str().unwrap().to_owned(),
                    body["groupKey"].as_str().unwrap().to_owned(),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    assert_eq!(got, want);
}
