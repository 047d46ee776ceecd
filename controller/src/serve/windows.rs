//! The boot's API windows, served: `boot::windows::ApiWindows` implemented
//! by the node API server (the boot asks; it does not know the server).

use super::{serve_maintenance, serve_unlock, ServerIdentity};
use crate::boot::windows::{ApiWindows, Shutdown, WindowError};
use crate::node::ask::remote::RemoteAnswers;
use crate::node::context::NodeContext;
use std::net::SocketAddr;
use std::path::Path;

/// The node API server as the boot's windows.
pub struct BootWindows;

impl ApiWindows for BootWindows {
    fn maintenance(
        &self,
        addr: SocketAddr,
        node: NodeContext,
        reason: &str,
        shutdown: Shutdown,
    ) -> Result<String, WindowError> {
        let listener = bind(addr)?;
        serve_maintenance(listener, node, reason, shutdown)
            .map_err(|e| WindowError::Serve(Box::new(e)))
    }

    fn unlock(
        &self,
        addr: SocketAddr,
        state: &Path,
        node: NodeContext,
        answers: RemoteAnswers,
        shutdown: Shutdown,
    ) -> Result<(), WindowError> {
        let id = ServerIdentity::from_state(state)
            .ok_or(WindowError::NoIdentity)?
            .map_err(|e| WindowError::Serve(Box::new(e)))?;
        let listener = bind(addr)?;
        serve_unlock(listener, id, node, answers, shutdown)
            .map_err(|e| WindowError::Serve(Box::new(e)))
    }
}

/// Binds `addr` as `tokio::net::TcpListener::bind` does (address reuse on,
/// so a window reopens on the port another one just closed).
fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, WindowError> {
    let listen = |source| WindowError::Listen { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(listen)?;
    socket.set_reuseaddr(true).map_err(listen)?;
    socket.bind(addr).map_err(listen)?;
    socket.listen(1024).map_err(listen)
}
