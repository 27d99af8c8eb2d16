//! SMTP sink through a hand-written SMTP conversation over TcpStream, and its HTTP
//! companion's request log; faults at the end of DATA.

mod common;

use std::time::Duration;

use common::client;
use tocsin_chaos::smtp::SmtpSink;
use tocsin_chaos::{FaultMode, FaultSpec, RecordedRequest};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

const READ_TIMEOUT: Duration = Duration::from_secs(5);

struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Conn {
    async fn open(sink: &SmtpSink) -> Self {
        let stream = TcpStream::connect(sink.smtp_addr()).await.unwrap();
        let (r, w) = stream.into_split();
        let mut conn = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        assert!(conn.reply().await.starts_with("220 "));
        conn
    }

    /// Reads one (possibly multi-line) reply; "" on EOF.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(READ_TIMEOUT, self.reader.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    async fn send_message(&mut self, message_id: &str) -> String {
        assert!(
            self.cmd("MAIL FROM:<alerts@tocsin.test>")
                .await
                .starts_with("250")
        );
        assert!(
            self.cmd("RCPT TO:<oncall@example.com>")
                .await
                .starts_with("250")
        );
        assert!(
            self.cmd("RCPT TO:<lead@example.com>")
                .await
                .starts_with("250")
        );
        assert!(self.cmd("DATA").await.starts_with("354"));
        let data = format!(
            "From: Tocsin <alerts@tocsin.test>\r\nTo: oncall@example.com\r\n\
             Subject: [FIRING:1] HighLatency\r\nMessage-Id: {message_id}\r\n\r\n\
             p99 > 1s\r\n.starts with a dot\r\n.\r\n"
        );
        // Dot-stuff the body line that starts with a dot (client duty).
        let data = data.replace("\r\n.starts", "\r\n..starts");
        self.writer.write_all(data.as_bytes()).await.unwrap();
        self.reply().await
    }
}

async fn http_log(sink: &SmtpSink) -> Vec<RecordedRequest> {
    client()
        .get(sink.emulator().url("/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_conversation_is_recorded_with_envelope_and_headers() {
    let stop = CancellationToken::new();
    let sink = SmtpSink::start_local(&stop).await.unwrap();
    let mut conn = Conn::open(&sink).await;
    let ehlo = conn.cmd("EHLO client.test").await;
    assert!(ehlo.starts_with("250-") && ehlo.contains("SIZE"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"));
    assert!(conn.cmd("NOOP").await.starts_with("250"));
    assert!(
        conn.cmd("DATA").await.starts_with("503"),
        "DATA before RCPT"
    );
    assert!(conn.send_message("<n-1@tocsin>").await.starts_with("250"));
    // RSET drops a half-built transaction.
    assert!(conn.cmd("MAIL FROM:<x@y>").await.starts_with("250"));
    assert!(conn.cmd("RSET").await.starts_with("250"));
    assert!(conn.cmd("RCPT TO:<z@y>").await.starts_with("503"));
    assert!(conn.cmd("QUIT").await.starts_with("221"));

    let mut helo = Conn::open(&sink).await;
    assert!(helo.cmd("HELO old.client").await.starts_with("250"));
    assert!(helo.send_message("<n-2@tocsin>").await.starts_with("250"));

    let log = http_log(&sink).await;
    assert_eq!(log, sink.emulator().requests());
    assert_eq!(log.len(), 2);
    let first = &log[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("DATA", "smtp")
    );
    assert_eq!(first.headers["message-id"], "<n-1@tocsin>");
    assert_eq!(first.headers["subject"], "[FIRING:1] HighLatency");
    assert_eq!(first.body, "p99 > 1s\r\n.starts with a dot\r\n");
    assert_eq!(first.details["mail_from"], "alerts@tocsin.test");
    assert_eq!(
        first.details["rcpt_to"],
        serde_json::json!(["oncall@example.com", "lead@example.com"])
    );
    assert_eq!(first.details["helo"], "client.test");
    assert_eq!(first.answer.status, 250);
    assert_eq!(log[1].details["helo"], "old.client");
}

#[tokio::test]
async fn faults_at_end_of_data() {
    let stop = CancellationToken::new();
    let sink = SmtpSink::start_local(&stop).await.unwrap();
    let faults = sink.emulator().faults();
    let mut conn = Conn::open(&sink).await;
    assert!(conn.cmd("EHLO c").await.starts_with("250"));

    faults
        .set(FaultSpec::new(FaultMode::Error5xx).count(1))
        .unwrap();
    assert!(conn.send_message("<a@t>").await.starts_with("554"));
    faults
        .set(FaultSpec::new(FaultMode::RateLimit).count(1))
        .unwrap();
    assert!(conn.send_message("<b@t>").await.starts_with("451"));
    assert!(conn.send_message("<c@t>").await.starts_with("250"));

    faults
        .set(FaultSpec::new(FaultMode::DropAfterProcessing).count(1))
        .unwrap();
    assert_eq!(
        conn.send_message("<d@t>").await,
        "",
        "closed without a reply"
    );

    let mut conn = Conn::open(&sink).await;
    assert!(conn.cmd("EHLO c").await.starts_with("250"));
    faults
        .set(FaultSpec::new(FaultMode::Hang).count(1))
        .unwrap();
    conn.writer
        .write_all(b"MAIL FROM:<a@t>\r\nRCPT TO:<b@t>\r\nDATA\r\n")
        .await
        .unwrap();
    for expected in ["250", "250", "354"] {
        assert!(conn.reply().await.starts_with(expected));
    }
    conn.writer
        .write_all(b"Message-Id: <e@t>\r\n\r\nheld\r\n.\r\n")
        .await
        .unwrap();
    let mut line = String::new();
    let held =
        tokio::time::timeout(Duration::from_millis(300), conn.reader.read_line(&mut line)).await;
    assert!(held.is_err(), "no reply while hanging, got {line:?}");
    common::wait_until(
        || std::future::ready(sink.emulator().requests().len() == 5),
        Duration::from_secs(5),
        "the held message is recorded",
    )
    .await;

    let log = sink.emulator().requests();
    let summary: Vec<_> = log
        .iter()
        .map(|r| {
            (
                r.headers["message-id"].as_str(),
                r.fault,
                r.processed,
                r.answer.delivered,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("<a@t>", FaultMode::Error5xx, false, true),
            ("<b@t>", FaultMode::RateLimit, false, true),
            ("<c@t>", FaultMode::Ok, true, true),
            ("<d@t>", FaultMode::DropAfterProcessing, true, false),
            ("<e@t>", FaultMode::Hang, true, false),
        ]
    );
    // Shutdown releases the held connection promptly.
    let started = std::time::Instant::now();
    sink.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
}
