//! Rebooting the node: the configured command (`reboot` on a machine; the
//! VM suite and tests give their own), run through `sh -c`.

/// The reboot command failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed; reboot by hand")]
pub struct RebootError {
    /// The command.
    pub command: String,
}

/// Runs `command` to reboot the node.
pub fn reboot(command: &str) -> Result<(), RebootError> {
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(RebootError {
            command: command.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_runs_and_its_failure_is_reported() {
        assert!(super::reboot("true").is_ok());
        let e = super::reboot("exit 3").unwrap_err();
        assert_eq!(e.to_string(), "`exit 3` failed; reboot by hand");
    }
}
