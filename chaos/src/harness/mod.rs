//! The chaos harness (issue #7): runs a real Tocsin cluster from the built `tocsin` binary,
//! drives a scripted workload through it, injects the faults of SCENARIOS.md, and checks
//! what the provider emulators received against an independent oracle and the store's own
//! committed log.
//!
//! # Layout
//!
//! - [`process`]: one child process (spawn, SIGKILL, SIGSTOP/SIGCONT, SIGTERM), optionally
//!   inside a zone's network namespace.
//! - [`cluster`]: the launcher (one node per zone, workers per zone, data dirs, loopback
//!   ports from the OS or zone namespaces, `cluster.json`) and the cluster's HTTP API as the
//!   harness uses it.
//! - [`netns`]: the private hub namespace, one namespace per zone joined to it by veth
//!   pairs, and the nftables partition switch (S4).
//! - [`cluster_file`]: `cluster.json` (shared with `tocsin dev`) and `kill-zone`.
//! - [`ports`]: loopback ports for processes told their address in advance, from outside
//!   the ephemeral range.
//! - [`proxy`]: an in-process TCP proxy with an off switch (the workers' datasource link).
//! - [`workload`]: the seeded metric script, the exporter the nodes scrape, the rules and
//!   the `alertmanager.yml`.
//! - [`oracle`]: the notifications a perfect system would send, from the script alone.
//! - [`recorder`]: the store's committed log as it is applied (watch from index 0).
//! - [`checker`]: deliveries vs the oracle, and the log (fencing audit, evaluation gaps,
//!   detection and reassignment times): the figures.
//! - [`faults`]: each scenario's seeded plan and its execution.
//! - [`partition`]: S4's cut, what it observes on both sides, the heal, its criteria.
//! - [`gray`]: the gray failures (S5–S8): a sick but living zone, what the balancer made of
//!   it, the criteria.
//! - [`steal`]: the workers' `/proc/stat`-format files, and steal time per zone (S7).
//! - [`redis`]: S13's `redis-server`, its outage, and the rate-limit checks.
//! - [`latency`]: a transparent delaying proxy between zones (S5, S6, S8).
//! - [`scenario`]: scenario ids, [`scenario::run`], pass criteria.
//! - [`report`]: the JSON report and the terminal table.
//! - [`timeline`]: the run as an SVG (evaluations, expected and received notifications,
//!   faults).
//!
//! One seed drives the topology (workers per zone), the workload and the fault plan; every
//! report carries the command that replays it.

pub mod checker;
pub mod cluster;
pub mod cluster_file;
pub mod error;
pub mod faults;
pub mod gray;
pub mod latency;
pub mod netns;
pub mod oracle;
pub mod partition;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod recorder;
pub mod redis;
pub mod report;
pub mod scenario;
pub mod steal;
pub mod timeline;
pub mod workload;

pub use error::HarnessError;
pub use report::Report;
pub use scenario::{RunConfig, ScenarioId, run};
