//! SMTP sink (providers.md §6, §8): a plain-text SMTP server on its own listener that records
//! every message (envelope, headers including `Message-Id`, body) into the same request-log
//! shape as the HTTP emulators, served by a companion HTTP listener (`GET /requests`,
//! `PUT /faults`).
//!
//! No TLS: `STARTTLS` and `AUTH` are not advertised and answer 502, so clients must be set
//! to plaintext without auth (lettre `builder_dangerous`; Alertmanager `require_tls: false`).
//!
//! Faults apply at the end of DATA: `error5xx` → `554 5.3.0` (permanent), `rate_limit` →
//! `451 4.7.1` (transient), `hang` → message recorded, no reply until the hold ends, then the
//! connection closes; `drop_after_processing` → message recorded, connection closed without
//! a reply.

pub mod session;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::wall_ms;
use crate::emulator::faults::Injected;
use crate::emulator::log::{RecordedAnswer, RecordedRequest};
use crate::emulator::{Core, Emulator, EmulatorKind, SHUTDOWN_GRACE, bind_loopback};
use crate::error::ChaosError;
use session::{MAX_LINE_BYTES, Message, Session, Step};

/// How long a connection may sit without sending a line (RFC 5321 suggests 5 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A running SMTP sink.
#[derive(Debug)]
pub struct SmtpSink {
    emulator: Emulator,
    smtp_addr: SocketAddr,
    smtp_task: Option<JoinHandle<()>>,
}

impl SmtpSink {
    /// Serves SMTP on `smtp` and the HTTP companion on `http` until `shutdown` fires or the
    /// handle is dropped.
    pub fn start(
        smtp: TcpListener,
        http: TcpListener,
        shutdown: &CancellationToken,
    ) -> Result<Self, ChaosError> {
        let core = Core::new(shutdown.child_token());
        let smtp_addr = smtp.local_addr().map_err(ChaosError::LocalAddr)?;
        let emulator = Emulator::spawn(EmulatorKind::Smtp, http, core.clone(), Router::new())?;
        let smtp_task = tokio::spawn(accept_loop(smtp, core));
        tracing::info!(%smtp_addr, "smtp sink listening");
        Ok(Self {
            emulator,
            smtp_addr,
            smtp_task: Some(smtp_task),
        })
    }

    /// Binds both listeners on `127.0.0.1:0` and starts.
    pub async fn start_local(shutdown: &CancellationToken) -> Result<Self, ChaosError> {
        let smtp = bind_loopback("smtp").await?;
        let http = bind_loopback("smtp http").await?;
        Self::start(smtp, http, shutdown)
    }

    /// The HTTP companion (log, faults).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The SMTP address.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp_addr
    }

    /// Stops both listeners and waits for them.
    pub async fn shutdown(mut self) {
        let task = self.smtp_task.take();
        self.emulator.shutdown().await;
        if let Some(task) = task
            && let Err(err) = task.await
        {
            tracing::warn!(%err, "smtp task failed");
        }
    }
}

async fn accept_loop(listener: TcpListener, core: Arc<Core>) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            () = core.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let core = core.clone();
                    connections.spawn(async move {
                        if let Err(err) = serve(stream, &core).await {
                            tracing::debug!(%err, "smtp connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(%err, "smtp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await;
}

/// One SMTP connection. Returns when the client quits, the fault closes it, or on shutdown.
async fn serve(stream: TcpStream, core: &Core) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut session = Session::default();
    write.write_all(Session::greeting().as_bytes()).await?;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX);
        let mut bounded = (&mut reader).take(limit);
        let read = tokio::select! {
            () = core.shutdown.cancelled() => {
                write.write_all(b"421 4.3.2 Service shutting down\r\n").await?;
                return Ok(());
            }
            read = tokio::time::timeout(
                IDLE_TIMEOUT,
                bounded.read_until(b'\n', &mut line),
            ) => read,
        };
        let n = match read {
            Ok(result) => result?,
            Err(_) => {
                write.write_all(b"421 4.4.2 Idle timeout\r\n").await?;
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            write.write_all(b"500 5.5.0 Line too long\r\n").await?;
            return Ok(());
        }
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(&line);
        match session.on_line(content) {
            Step::Continue => {}
            Step::Reply(reply) => write.write_all(reply.as_bytes()).await?,
            Step::Close(reply) => {
                write.write_all(reply.as_bytes()).await?;
                return Ok(());
            }
            Step::Message(message) => match deliver(core, &message) {
                Delivery::Reply(reply) => write.write_all(reply.as_bytes()).await?,
                Delivery::Hold(hold) => {
                    tokio::select! {
                        () = tokio::time::sleep(hold) => {}
                        () = core.shutdown.cancelled() => {}
                    }
                    return Ok(());
                }
                Delivery::Drop => return Ok(()),
            },
        }
    }
}

enum Delivery {
    Reply(String),
    Hold(Duration),
    Drop,
}

/// Applies the fault switch to a complete message, records it, and says how to answer.
fn deliver(core: &Core, message: &Message) -> Delivery {
    let injected = core.faults.take();
    let now_ms = wall_ms();
    let (code, text, processed) = match injected {
        Injected::ServerError { .. } => (554, "5.3.0 Transaction failed".to_owned(), false),
        Injected::RateLimited { .. } => {
            (451, "4.7.1 Too many messages, slow down".to_owned(), false)
        }
        _ => (250, format!("2.0.0 Ok: queued as {now_ms:X}"), true),
    };
    let delivered = !matches!(
        injected,
        Injected::Hang { .. } | Injected::DropAfterProcessing
    );
    let (headers, body) = message.split();
    let details = json!({
        "helo": message.helo,
        "mail_from": message.mail_from,
        "rcpt_to": message.rcpt_to,
        "message_id": headers.get("message-id"),
        "size": message.data.len(),
    });
    core.log.push(RecordedRequest {
        seq: 0,
        time_ms: now_ms,
        method: "DATA".into(),
        path: "smtp".into(),
        query: None,
        headers: headers.into_iter().collect::<BTreeMap<_, _>>(),
        body,
        fault: injected.mode(),
        processed,
        answer: RecordedAnswer {
            status: code,
            body: text.clone(),
            delivered,
            retry_after_s: None,
        },
        details,
    });
    match injected {
        Injected::Hang { hold } => Delivery::Hold(hold),
        Injected::DropAfterProcessing => Delivery::Drop,
        _ => Delivery::Reply(format!("{code} {text}\r\n")),
    }
}
