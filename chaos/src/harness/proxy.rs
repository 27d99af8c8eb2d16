//! An in-process TCP proxy with an off switch: the workers reach their datasource through
//! one, so a scenario can take the datasource down (every open connection is cut, new ones
//! are refused) without touching the node that serves it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::error::HarnessError;
use super::netns::bind_host;

/// A running proxy. Dropping it stops accepting.
#[derive(Debug)]
pub struct TcpProxy {
    /// `HOST:PORT` clients connect to.
    pub addr: String,
    state: Arc<Mutex<Switch>>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct Switch {
    up: bool,
    /// Cancelled to cut every connection opened while up.
    conns: CancellationToken,
}

impl TcpProxy {
    /// Forwards a free port on `ip` (loopback, or the hub's address in a namespaced run) to
    /// `upstream` until `stop` fires.
    pub async fn start(
        upstream: String,
        ip: IpAddr,
        stop: &CancellationToken,
    ) -> Result<Self, HarnessError> {
        let listener = bind_host(ip, "a proxy").await?;
        let addr = listener
            .local_addr()
            .map_err(|source| HarnessError::Bind {
                what: "a proxy",
                source,
            })?
            .to_string();
        let state = Arc::new(Mutex::new(Switch {
            up: true,
            conns: stop.child_token(),
        }));
        let stop = stop.child_token();
        tokio::spawn(accept_loop(listener, upstream, state.clone(), stop.clone()));
        Ok(Self { addr, state, stop })
    }

    /// Takes the link down (cutting open connections) or brings it back.
    pub fn set_up(&self, up: bool) {
        let mut s = self.lock();
        if s.up && !up {
            s.conns.cancel();
            s.conns = self.stop.child_token();
        }
        s.up = up;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Switch> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    state: Arc<Mutex<Switch>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let cut = {
            let s = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.up.then(|| s.conns.clone())
        };
        // Down: the connection is dropped at once (the client sees a reset or EOF).
        let Some(cut) = cut else { continue };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::select! {
                () = cut.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
