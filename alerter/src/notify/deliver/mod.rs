//! Delivery: what a notification says ([`message`]), how it reaches a provider ([`channel`]
//! and the channel implementations), and when a failed send is tried again ([`retry`]).
//!
//! The outbox (in the worker's notify loop) owns the protocol — enqueue, claim with the notify
//! shard's epoch, send, record delivered — and calls a [`channel::Channel`] for the send. A
//! channel never retries by itself: it classifies one attempt as delivered, retryable (with the
//! provider's `Retry-After` if it gave one) or permanent, and the outbox commits that outcome.
//!
//! A receiver's integrations are split into *delivery units* ([`channel::units`]): each
//! non-SMS integration is a unit of its own, and all SMS integrations of the receiver form one
//! unit, the fallback chain. Every unit has its own outbox slot, so a failing PagerDuty
//! integration is retried without resending the Slack message that already went out.
//!
//! Layout:
//! - [`channel`]: the [`channel::Channel`] trait, delivery units, and what every channel
//!   shares (classifying an HTTP answer, stable hashes for idempotency keys).
//! - [`build`]: a receiver's channels from the loaded config ([`build::channels`]); SNS and
//!   Opsgenie are refused there.
//! - [`text`]: notification text from Go templates, with Alertmanager's defaults.
//! - The channels: [`webhook`] (v4 JSON, `Idempotency-Key`), [`pagerduty`] (Events v2/v1,
//!   `dedup_key`), [`slack`] (incoming webhook or `chat.postMessage`/`chat.update`), [`sms`]
//!   (Twilio → Vonage fallback chain), [`email`] (SMTP via lettre, stable `Message-Id`).

pub mod build;
pub mod channel;
pub mod email;
pub mod message;
pub mod pagerduty;
pub mod retry;
pub mod slack;
pub mod sms;
pub mod text;
pub mod webhook;
