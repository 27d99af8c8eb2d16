//! Email over SMTP (lettre, rustls with ring): implicit TLS when the smarthost port is 465,
//! STARTTLS required when `require_tls` (Alertmanager's default), otherwise STARTTLS when the
//! server offers it; PLAIN or LOGIN auth when `auth_username` is set. The `Message-Id` is a
//! hash of (group key, receiver, unit, seq) at the sender's domain, the same on every resend,
//! so a mail system that deduplicates by it drops the duplicate (most thread it).
//! Subject, To, From and the other headers are templated. Not supported: CRAM-MD5
//! (`auth_secret`) and TLS client certificates; they are refused when the channel is built.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::build::{BuildCtx, BuildError, secret};
use super::channel::{
    Channel, Delivery, SendFuture, SendOutcome, for_integration, stable_hash_hex,
};
use super::text::{Renderer, TextTemplate};
use crate::notify::config::EmailConfig;

/// The port on which SMTP starts with TLS (RFC 8314).
const IMPLICIT_TLS_PORT: u16 = 465;

/// One `email_configs` entry.
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    smarthost: String,
    unit: usize,
    send_resolved: bool,
    headers: Vec<(String, TextTemplate)>,
    html: TextTemplate,
    text: TextTemplate,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("smarthost", &self.smarthost)
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// Builds the channel of the integration at `path`.
    pub fn new(ctx: &BuildCtx<'_>, path: &str, c: &EmailConfig) -> Result<Self, BuildError> {
        let invalid = |field: &str, message: String| BuildError::Invalid {
            path: format!("{path}.{field}"),
            message,
        };
        if c.auth_secret.is_some() {
            return Err(invalid(
                "auth_secret",
                "CRAM-MD5 is not supported by Tocsin; use auth_password (PLAIN or LOGIN)".into(),
            ));
        }
        if c.tls.cert_file.is_some() || c.tls.key_file.is_some() {
            return Err(invalid(
                "tls_config",
                "TLS client certificates are not supported for email".into(),
            ));
        }
        let (host, port) = c
            .smarthost
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| invalid("smarthost", format!("not host:port: {}", c.smarthost)))?;
        let server_name = c.tls.server_name.clone().unwrap_or_else(|| host.to_owned());
        let mut tls = TlsParameters::builder(server_name)
            .dangerous_accept_invalid_certs(c.tls.insecure_skip_verify);
        if let Some(ca) = &c.tls.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| invalid("tls_config.ca_file", format!("cannot read {ca}: {e}")))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| invalid("tls_config.ca_file", e.to_string()))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| invalid("tls_config", e.to_string()))?;
        let tls = if port == IMPLICIT_TLS_PORT {
            Tls::Wrapper(tls)
        } else if c.require_tls {
            Tls::Required(tls)
        } else {
            Tls::Opportunistic(tls)
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .hello_name(ClientId::Domain(c.hello.clone()))
            .timeout(Some(ctx.opts.request_timeout));
        if !c.auth_username.is_empty() {
            let password = match &c.auth_password {
                Some(p) => secret(path, "auth_password", p)?,
                None => String::new(),
            };
            b = b
                .credentials(Credentials::new(c.auth_username.clone(), password))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let t = |f: &str, s: &str| TextTemplate::new(&format!("{path}.{f}"), s, ctx.library);
        Ok(Self {
            transport: b.build(),
            smarthost: c.smarthost.clone(),
            unit: ctx.unit,
            send_resolved: c.send_resolved,
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), t(&format!("headers.{k}"), v)))
                .collect(),
            html: t("html", &c.html),
            text: t("text", &c.text),
        })
    }

    /// The message for `d`; `Err` is the permanent reason (template or address error).
    fn message(&self, d: &Delivery) -> Result<Option<(Message, String)>, String> {
        let Some(data) = for_integration(&d.data, self.send_resolved) else {
            return Ok(None);
        };
        let r = Renderer::new(&data);
        let mut rendered = Vec::new();
        for (name, t) in &self.headers {
            rendered.push((name.as_str(), r.render(t)?));
        }
        let get = |n: &str| {
            rendered
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let from: Mailbox = get("From")
            .parse()
            .map_err(|e| format!("email From {:?}: {e}", get("From")))?;
        let to: Mailboxes = get("To")
            .parse()
            .map_err(|e| format!("email To {:?}: {e}", get("To")))?;
        let id = message_id(d, self.unit, from.email.domain());
        let mut b = Message::builder()
            .from(from)
            .subject(get("Subject"))
            .message_id(Some(id.clone()));
        for m in to {
            b = b.to(m);
        }
        let html = r.render(&self.html)?;
        let text = r.render(&self.text)?;
        let built = match (text.is_empty(), html.is_empty()) {
            (false, false) => b.multipart(MultiPart::alternative_plain_html(text, html)),
            (false, true) => b.singlepart(SinglePart::plain(text)),
            _ => b.singlepart(SinglePart::html(html)),
        };
        let mut msg = built.map_err(|e| format!("email: {e}"))?;
        for (name, value) in rendered {
            if matches!(name, "From" | "To" | "Subject") {
                continue;
            }
            let name = HeaderName::new_from_ascii(name.to_owned())
                .map_err(|e| format!("email header {name:?}: {e}"))?;
            msg.headers_mut().insert_raw(HeaderValue::new(name, value));
        }
        Ok(Some((msg, id)))
    }

    async fn send_one(&self, d: &Delivery) -> SendOutcome {
        let (msg, id) = match self.message(d) {
            Ok(Some(m)) => m,
            Ok(None) => return SendOutcome::Skipped,
            Err(reason) => return SendOutcome::Permanent { reason },
        };
        match self.transport.send(msg).await {
            Ok(_) => SendOutcome::Delivered {
                provider_id: Some(id),
            },
            Err(e) if e.is_permanent() => SendOutcome::Permanent {
                reason: format!("smtp {}: {e}", self.smarthost),
            },
            Err(e) => SendOutcome::Retry {
                retry_after: None,
                reason: format!("smtp {}: {e}", self.smarthost),
            },
        }
    }
}

/// The stable `Message-Id` of one outbox entry of unit `unit`: `<hash@domain>`.
pub fn message_id(d: &Delivery, unit: usize, domain: &str) -> String {
    let h = stable_hash_hex(&[
        &d.key.group_key,
        &d.key.receiver,
        &unit.to_string(),
        &d.seq.to_string(),
    ]);
    format!("<{}@{domain}>", &h[..32])
}

impl Channel for EmailChannel {
    fn kind(&self) -> &'static str {
        "email"
    }
    fn idempotent(&self) -> bool {
        true
    }
    fn rate_key(&self) -> Option<String> {
        None
    }
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.send_one(delivery))
    }
}
