//! Asking a person for a passphrase on this node: which way, in which
//! order (docs/appliance.md):
//!
//! 1. `VOLCTL_ASK_PASSWORD_DIR` set: the ask-password protocol in that
//!    directory (tests, and systems that keep agents elsewhere);
//! 2. a command run from a terminal (`converge`, `passphrase change`): that
//!    terminal, as `systemd-ask-password` does;
//! 3. `/run/systemd/ask-password` exists: the protocol, answered by
//!    `systemd-tty-ask-password-agent`, plymouth or any other agent;
//! 4. the console (standard input when it is a terminal).
//!
//! While the boot asks, the node API may answer too ([`remote`]; the first
//! answer on any channel wins, [`any`]).

mod agent;
mod announced;
pub mod any;
mod bounded;
mod cancel;
mod console;
pub mod remote;

pub use agent::AgentAsker;
pub use announced::Announced;
pub use bounded::bounded;
pub use console::ConsoleAsker;
use providers::ask::AskerHandle;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Overrides the ask-password directory.
pub const ASK_DIR_ENV: &str = "VOLCTL_ASK_PASSWORD_DIR";
/// systemd's ask-password directory.
pub const SYSTEMD_ASK_DIR: &str = "/run/systemd/ask-password";

/// Who runs the command: a person at a terminal, or the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A command typed by someone (ask on their terminal first).
    Person,
    /// `volctl boot` (ask the agents first).
    Boot,
}

/// The way to ask on this node, or `None` when nobody can be asked.
pub fn asker(caller: Caller) -> Option<AskerHandle> {
    if let Some(dir) = std::env::var_os(ASK_DIR_ENV) {
        return Some(agents(PathBuf::from(dir), caller));
    }
    let terminal = std::io::stdin().is_terminal();
    if caller == Caller::Person && terminal {
        return Some(handle(ConsoleAsker::stdin()));
    }
    if std::path::Path::new(SYSTEMD_ASK_DIR).is_dir() {
        return Some(agents(PathBuf::from(SYSTEMD_ASK_DIR), caller));
    }
    terminal.then(|| handle(ConsoleAsker::stdin()))
}

/// The ask-password agents watching `dir`. A command a person ran says on
/// stderr what it waits for (the boot has its console and its status).
fn agents(dir: PathBuf, caller: Caller) -> AskerHandle {
    let agents = AgentAsker::new(dir);
    match caller {
        Caller::Person => handle(Announced(agents)),
        Caller::Boot => handle(agents),
    }
}

fn handle(a: impl providers::ask::Asker + 'static) -> AskerHandle {
    AskerHandle(Arc::new(a))
}
