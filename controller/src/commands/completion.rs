//! `volctl completion SHELL`: the shell's completion script, made from the
//! command line's own definition (the Debian package installs the bash,
//! zsh and fish ones where those shells look).

use crate::cli::{Cli, Exit};
use anyhow::Result;
use clap::CommandFactory;

/// More help.
pub const HELP: &str = "\
Examples:
  volctl completion bash > /usr/share/bash-completion/completions/volctl
  volctl completion zsh > /usr/share/zsh/vendor-completions/_volctl
  volctl completion fish > /usr/share/fish/vendor_completions.d/volctl.fish";

/// `volctl completion` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script.
pub fn exec(args: Args) -> Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "volctl", &mut std::io::stdout());
    Ok(Exit::Success)
}
