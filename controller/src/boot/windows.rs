//! The node API windows a boot opens while it waits for a person:
//! maintenance mode (a config) and typed keys (remote unlock). The boot
//! only asks for them through [`ApiWindows`]; `serve/` implements it from
//! above (`serve::BootWindows`), so the boot does not depend on the server.

use crate::node::ask::remote::RemoteAnswers;
use crate::node::context::NodeContext;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

/// Completes when the window must close.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a window did not open; the boot goes on with local answers only.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// STATE holds no node API certificate: no remote unlock (said nowhere:
    /// that node simply has no API).
    #[error("STATE holds no node API certificate")]
    NoIdentity,
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address asked for.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The server could not start (its TLS material, its callers).
    #[error(transparent)]
    Serve(Box<dyn std::error::Error + Send + Sync>),
}

/// Opens the boot's API windows; each serves until its [`Shutdown`].
pub trait ApiWindows: Send + Sync {
    /// The maintenance face on `addr` with a fresh self-signed certificate;
    /// returns that certificate's SHA-256 fingerprint once serving.
    fn maintenance(
        &self,
        addr: SocketAddr,
        node: NodeContext,
        reason: &str,
        shutdown: Shutdown,
    ) -> Result<String, WindowError>;

    /// The node API for admins on `addr`, with the identity STATE holds,
    /// whose `unlock` calls answer through `answers`.
    fn unlock(
        &self,
        addr: SocketAddr,
        state: &Path,
        node: NodeContext,
        answers: RemoteAnswers,
        shutdown: Shutdown,
    ) -> Result<(), WindowError>;
}

/// Where a boot serves its windows, and who serves them.
#[derive(Clone)]
pub struct ApiListen {
    /// The address both windows listen on.
    pub addr: SocketAddr,
    /// The server.
    pub windows: Arc<dyn ApiWindows>,
}

impl std::fmt::Debug for ApiListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiListen")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A shutdown future completing when `stopped` fires or its sender drops.
pub fn on(stopped: tokio::sync::oneshot::Receiver<()>) -> Shutdown {
    Box::pin(async move {
        let _ = stopped.await;
    })
}
