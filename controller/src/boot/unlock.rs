//! Remote unlock: while the boot asks for typed keys, the node API is up
//! for admins (its certificate, key and client CA come from STATE's `api/`
//! folder, so STATE itself must open unattended), and `volctl -n NODE
//! unlock --volume V` answers the question alongside the console and the
//! ask-password agents. The window closes when the last typed volume is
//! done.

use super::windows::{self, WindowError};
use super::BootOptions;
use crate::node::ask::any::AnyOf;
use crate::node::ask::remote::{RemoteAnswers, RemoteAsker};
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
pub(super) fn window(opts: &BootOptions, state: &Path) -> Option<Window> {
    let api = opts.api.as_ref()?;
    let answers = RemoteAnswers::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opened = api.windows.unlock(
        api.addr,
        state,
        opts.node.clone(),
        answers.clone(),
        windows::on(stopped),
    );
    match opened {
        Ok(()) => {}
        Err(WindowError::NoIdentity) => return None,
        Err(e) => {
            tracing::warn!("no remote unlock: {e}");
            return None;
        }
    }
    eprintln!("waiting for typed keys; also answered by `volctl -n <this node>:{} unlock --volume VOLUME`", api.addr.port());
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
