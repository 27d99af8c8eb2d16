//! The notification pipeline's pure cores: configuration, routing, grouping, inhibition and
//! silences. No I/O, no clock: config text and events with an injected `now_ms` go in,
//! decisions come out; the async adapters (delivery, outbox, Raft) execute them.
//!
//! Layout:
//! - [`config`]: `alertmanager.yml` loaded unchanged and validated like `amtool check-config`,
//!   errors with field paths and positions; receivers with Alertmanager's defaults.
//! - [`matchers`]: label matchers (Alertmanager syntax, anchored regexes), shared by routes,
//!   inhibition and silences; converts to and from the replicated `SilenceMatcher`.
//! - [`time_interval`]: `time_intervals` evaluation (UTC and fixed offsets).
//! - [`route`]: the routing tree with inheritance, `continue`, Alertmanager's group keys and the
//!   notify shard of a stream.
//! - [`group`]: one stream's aggregation group — timers, dedup against the notification log,
//!   `send_resolved`, acks — resumable after a handoff.
//! - [`inhibit`], [`silence`]: muting decisions against the replicated alert set.
//! - [`deliver`]: the notification message, the channel interface, delivery units and the
//!   retry policy; the channels themselves (PagerDuty, Slack, SMS, webhook, email).
//! - [`dispatch`]: a notify-shard owner's groups: transitions routed in, muting applied at each
//!   tick, flushes out; resumable from the replicated alerts, log and acks.
//! - [`ratelimit`]: per-endpoint send limits (GCRA) shared by all workers through Redis, with a
//!   local share when Redis is away.
//!
//! Pipeline order (as Alertmanager's): route → group → at each tick, leave out alerts that are
//! inhibited, outside active / inside mute time intervals, or silenced → dedup against the log →
//! flush.

pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod group;
pub mod inhibit;
pub mod matchers;
pub mod ratelimit;
mod regex_compat;
pub mod route;
pub mod silence;
pub mod time_interval;
