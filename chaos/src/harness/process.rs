//! One `tocsin` child process the harness launched: its role, zone, arguments and log, and
//! the signals a scenario sends it (SIGKILL, SIGSTOP, SIGCONT, SIGTERM). A process of a
//! namespaced run starts under `ip netns exec ZONE_NS` (which execs: the pid is the
//! process's own, so the signals reach it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use super::error::HarnessError;

/// How long a process gets to exit after SIGTERM before it is killed.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long reaping a SIGKILLed process may take.
const REAP_DEADLINE: Duration = Duration::from_secs(5);

/// What a process is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A `tocsin node` (Raft voter, embedded datasource, HTTP API).
    Node,
    /// A `tocsin worker`.
    Worker,
}

impl Role {
    /// The name used in `cluster.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Worker => "worker",
        }
    }
}

/// A launched (or launchable) `tocsin` process. Dropping it kills the child.
#[derive(Debug)]
pub struct Proc {
    /// Node id (as text) or worker id.
    pub id: String,
    /// Node or worker.
    pub role: Role,
    /// The zone it belongs to.
    pub zone: String,
    /// gRPC address (nodes).
    pub grpc: String,
    /// HTTP address (nodes).
    pub http: String,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    /// The network namespace it runs in (`None`: the harness's own).
    netns: Option<String>,
    child: Option<Child>,
    stopped: bool,
}

impl Proc {
    /// A process that runs `binary ARGS` with output appended to `log` once started.
    pub fn new(
        role: Role,
        id: &str,
        zone: &str,
        binary: &Path,
        args: Vec<String>,
        log: PathBuf,
    ) -> Self {
        Self {
            id: id.into(),
            role,
            zone: zone.into(),
            grpc: String::new(),
            http: String::new(),
            binary: binary.to_path_buf(),
            args,
            log,
            netns: None,
            child: None,
            stopped: false,
        }
    }

    /// Runs the process inside the network namespace `netns` (an `ip netns` name).
    pub fn in_netns(mut self, netns: Option<String>) -> Self {
        self.netns = netns;
        self
    }

    /// A short name for messages: `node 2 (zone b)`.
    pub fn name(&self) -> String {
        format!("{} {} (zone {})", self.role.as_str(), self.id, self.zone)
    }

    /// Starts (or restarts) the process with its recorded arguments.
    pub fn start(&mut self) -> Result<(), HarnessError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::io(&self.log, e))?;
        let err_file = file
            .try_clone()
            .map_err(|e| HarnessError::io(&self.log, e))?;
        let mut command = match &self.netns {
            None => Command::new(&self.binary),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.as_str()]).arg(&self.binary);
                c
            }
        };
        let child = command
            .args(&self.args)
            .env("TOCSIN_LOG", "info,openraft=warn")
            .stdout(file)
            .stderr(err_file)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| match &self.netns {
                Some(_) if source.kind() == std::io::ErrorKind::NotFound => {
                    HarnessError::ToolMissing {
                        tool: "ip",
                        package: "iproute2",
                    }
                }
                _ => HarnessError::Spawn {
                    what: self.name(),
                    source,
                },
            })?;
        self.child = Some(child);
        self.stopped = false;
        Ok(())
    }

    /// Whether a child is running (started and not killed by the harness).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The OS process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGKILL and reap (bounded). A process that is not running is left alone.
    pub async fn kill(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().map_err(|e| HarnessError::Signal {
                signal: "SIGKILL",
                what: self.name(),
                pid: child.id().unwrap_or(0),
                reason: e.to_string(),
            })?;
            // Reaping is bounded; a zombie that outlives it is reaped when `child` drops.
            let _ = tokio::time::timeout(REAP_DEADLINE, child.wait()).await;
        }
        self.stopped = false;
        Ok(())
    }

    /// SIGSTOP (the process keeps its sockets but stops answering).
    pub fn pause(&mut self) -> Result<(), HarnessError> {
        self.signal(Signal::STOP, "SIGSTOP")?;
        self.stopped = true;
        Ok(())
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&mut self) -> Result<(), HarnessError> {
        self.signal(Signal::CONT, "SIGCONT")?;
        self.stopped = false;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`TERM_GRACE`].
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        if self.stopped {
            self.resume()?;
        }
        if self.child.is_none() {
            return Ok(());
        }
        self.signal(Signal::TERM, "SIGTERM")?;
        if let Some(child) = self.child.as_mut()
            && tokio::time::timeout(TERM_GRACE, child.wait()).await.is_ok()
        {
            self.child = None;
            return Ok(());
        }
        self.kill().await
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: Signal, name: &'static str) -> Result<(), HarnessError> {
        let pid = self.pid().ok_or_else(|| HarnessError::Signal {
            signal: name,
            what: self.name(),
            pid: 0,
            reason: "not running".into(),
        })?;
        send_signal(pid, sig).map_err(|reason| HarnessError::Signal {
            signal: name,
            what: self.name(),
            pid,
            reason,
        })
    }
}

/// Sends `sig` to process `pid`.
pub fn send_signal(pid: u32, sig: Signal) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    let pid = Pid::from_raw(raw).ok_or_else(|| format!("pid {raw} is not a process id"))?;
    rustix::process::kill_process(pid, sig).map_err(|e| e.to_string())
}
