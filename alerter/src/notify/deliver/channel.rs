//! The channel interface the outbox sends through, and the split of a receiver into delivery
//! units.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tocsin_state::model::NotificationKey;

use super::message::NotificationData;
use crate::notify::config::{Integration, Receiver};

/// One send of one outbox entry through one delivery unit.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The stream.
    pub key: NotificationKey,
    /// The outbox entry's sequence number in its stream (same for every unit).
    pub seq: u64,
    /// What to say.
    pub data: NotificationData,
    /// Attempts before this one (0 on the first send).
    pub attempt: u32,
    /// When the entry was enqueued (ms); the SMS fallback chain measures its deadline from it.
    pub enqueued_ms: i64,
    /// Wall-clock now (ms), so channels need no clock of their own.
    pub now_ms: i64,
    /// What the provider returned for this unit's last delivered notification of the stream
    /// (Slack's message `ts`, so a resolve can update the original message).
    pub previous_provider_id: Option<String>,
}

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted by the provider; `provider_id` is its reference (incident key, message id, ts).
    Delivered {
        /// The provider's reference, if it returned one.
        provider_id: Option<String>,
    },
    /// Nothing to send for this unit (for example a resolve to an integration without
    /// `send_resolved`); recorded as delivered.
    Skipped,
    /// Try again: 429 (no sooner than `retry_after`), 5xx, timeouts and transport errors.
    Retry {
        /// The provider's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// What happened, for logs and the outbox record.
        reason: String,
    },
    /// Will never succeed as is (other 4xx, invalid config): dead-lettered.
    Permanent {
        /// What happened.
        reason: String,
    },
}

/// A boxed send future.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendOutcome> + Send + 'a>>;

/// One delivery unit's sender.
pub trait Channel: Send + Sync + std::fmt::Debug {
    /// Short name for logs and metrics (`pagerduty`, `slack`, `sms`, ...).
    fn kind(&self) -> &'static str;
    /// Whether the provider deduplicates a resend of the same entry (PagerDuty `dedup_key`,
    /// webhook `Idempotency-Key`, email `Message-Id`): an in-doubt claim is resent at once.
    fn idempotent(&self) -> bool;
    /// Whether the provider has an acknowledge action (PagerDuty): after `tocsin ack`, the
    /// outbox sends this unit a notification whose data has status `acknowledged`. Channels
    /// without one never receive such a notification.
    fn acknowledges(&self) -> bool {
        false
    }
    /// The rate-limit key of the endpoint this unit sends to (shared across workers), if the
    /// provider limits per endpoint.
    fn rate_key(&self) -> Option<String> {
        None
    }
    /// One attempt. Never retries internally (except an SMS chain moving to its next provider)
    /// and never panics; every failure is an outcome.
    fn send<'a>(&'a self, delivery: &'a Delivery) -> SendFuture<'a>;
}

/// The delivery units of a receiver: every non-SMS integration alone, in order, then all SMS
/// integrations (Twilio, Vonage, SNS to a phone number) together as one fallback chain.
pub fn units(receiver: &Receiver) -> Vec<Vec<&Integration>> {
    let mut out: Vec<Vec<&Integration>> = Vec::new();
    let mut sms: Vec<&Integration> = Vec::new();
    for i in &receiver.integrations {
        if is_sms(i) {
            sms.push(i);
        } else {
            out.push(vec![i]);
        }
    }
    if !sms.is_empty() {
        out.push(sms);
    }
    out
}

/// Whether an integration sends SMS.
pub fn is_sms(i: &Integration) -> bool {
    match i {
        Integration::Twilio(_) | Integration::Vonage(_) => true,
        Integration::Sns(c) => matches!(c.target, crate::notify::config::SnsTarget::Phone(_)),
        _ => false,
    }
}

/// The longest provider answer quoted in an outcome's reason.
const MAX_REASON_BODY: usize = 512;

/// Lowercase hex SHA-256 of `parts` joined by NUL bytes: the stable key behind PagerDuty's
/// `dedup_key` (of the group key alone, exactly Alertmanager's), the webhook
/// `Idempotency-Key` and the email `Message-Id`. Stable across processes and versions.
pub fn stable_hash_hex(parts: &[&str]) -> String {
    let mut input = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            input.push(0);
        }
        input.extend_from_slice(p.as_bytes());
    }
    sha256(&input).iter().map(|b| format!("{b:02x}")).collect()
}

/// FIPS 180-4 SHA-256 (no crypto crate in this crate's tree; this is only a stable key, never
/// a security boundary).
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The data an integration sends: without resolved alerts when it does not `send_resolved`,
/// `None` when nothing is left (the send is [`SendOutcome::Skipped`]). Group-level fields
/// (common labels, status) are kept as the flush computed them, except `status`, which
/// becomes `firing` when resolved alerts are dropped.
pub fn for_integration(data: &NotificationData, send_resolved: bool) -> Option<NotificationData> {
    if send_resolved {
        return Some(data.clone());
    }
    let mut out = data.clone();
    out.alerts.retain(|a| a.status != "resolved");
    if out.alerts.is_empty() {
        return None;
    }
    out.status = "firing".into();
    Some(out)
}

/// A provider's `Retry-After` header in seconds (integer or decimal; HTTP dates are ignored
/// and the outbox's backoff applies).
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// `retry_after` (seconds) from a JSON error body such as Slack's
/// `{"retry_after":1,"ok":false,"error":"rate_limited"}`.
pub fn retry_after_body(body: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = v.get("retry_after")?.as_f64()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// At most [`MAX_REASON_BODY`] bytes of `body`, on a char boundary.
pub fn snippet(body: &str) -> &str {
    let body = body.trim();
    if body.len() <= MAX_REASON_BODY {
        return body;
    }
    let mut end = MAX_REASON_BODY;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// Classifies a non-2xx HTTP answer: 429 and 408 → retry (no sooner than the header's or the
/// body's `retry_after`), 5xx → retry, any other status → permanent.
pub fn classify_failure(
    provider: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> SendOutcome {
    let reason = format!("{provider} answered {status}: {}", snippet(body));
    match status {
        429 | 408 => SendOutcome::Retry {
            retry_after: retry_after_header(headers).or_else(|| retry_after_body(body)),
            reason,
        },
        500..=599 => SendOutcome::Retry {
            retry_after: retry_after_header(headers),
            reason,
        },
        _ => SendOutcome::Permanent { reason },
    }
}

/// A transport failure (connect, timeout, reset, unreadable answer): always retried; after
/// the request was written it is ambiguous, which only matters for non-idempotent channels.
pub fn transport_failure(provider: &str, err: &reqwest::Error) -> SendOutcome {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    SendOutcome::Retry {
        retry_after: None,
        reason: format!("{provider}: {what}: {err}"),
    }
}

/// The status, headers and body of an answer, or the transport failure.
pub async fn read_answer(
    provider: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<(u16, reqwest::header::HeaderMap, String), SendOutcome> {
    let resp = sent.map_err(|e| transport_failure(provider, &e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .text()
        .await
        .map_err(|e| transport_failure(provider, &e))?;
    Ok((status, headers, body))
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vectors() {
        assert_eq!(
            stable_hash_hex(&[""]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            stable_hash_hex(&["abc"]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = "a".repeat(1000);
        assert_eq!(stable_hash_hex(&[&long]).len(), 64);
        assert_ne!(stable_hash_hex(&["a", "b"]), stable_hash_hex(&["ab"]));
    }
}
