//! Remote unlock: while the boot asks for typed keys, the node API is up
//! for admins (its certificate, key and client CA come from STATE's `api/`
//! folder, so STATE itself must open unattended), and `volctl -n NODE
//! unlock --volume V` answers the question alongside the console and the
//! ask-password agents. The window closes when the last typed volume is
//! done.

use super::BootOptions;
use crate::node::ask::any::AnyOf;
use crate::node::ask::remote::{RemoteAnswers, RemoteAsker};
use crate::serve::{self, ServerIdentity};
use providers::ask::AskerHandle;
use providers::ProviderEnv;
use std::path::Path;
use std::sync::Arc;

/// An open window: remote answers arrive here until it is dropped.
pub(super) struct Window {
    answers: RemoteAnswers,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Opens the window, when the boot may listen and STATE holds the API's
/// certificate; why not is logged.
pub(super) async fn window(opts: &BootOptions, state: &Path) -> Option<Window> {
    let addr = opts.api_listen?;
    let id = match ServerIdentity::from_state(state)? {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!("no remote unlock: {e}");
            return None;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("no remote unlock: cannot listen on {addr}: {e}");
            return None;
        }
    };
    let node = opts.node_context();
    let answers = RemoteAnswers::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    if let Err(e) = serve::serve_unlock(listener, id, node, answers.clone(), shutdown) {
        tracing::warn!("no remote unlock: {e}");
        return None;
    }
    eprintln!("waiting for typed keys; also answered by `volctl -n <this node>:{} unlock --volume VOLUME`", addr.port());
    Some(Window {
        answers,
        _stop: stop,
    })
}

/// `env`, asking on the node API too when the window is open.
pub(super) fn with_remote(env: &ProviderEnv, window: Option<&Window>) -> ProviderEnv {
    let mut env = env.clone();
    if let Some(w) = window {
        let remote = AskerHandle(Arc::new(RemoteAsker(w.answers.clone())));
        let channels = env.asker.take().into_iter().chain([remote]).collect();
        env.asker = Some(AskerHandle(Arc::new(AnyOf(channels))));
    }
    env
}
