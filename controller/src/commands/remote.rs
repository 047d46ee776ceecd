//! The remote verbs: `volctl -n NODE status|version|apply-config|reset|reboot`.
//! The nodes are called at once (at most `--parallel`); the output names
//! each, in the order given; a node that is down or refuses is reported and
//! the others still run.

use super::{apply_config, reset};
use crate::cli::output::{out, outln, Output};
use crate::cli::remote::RemoteArgs;
use crate::cli::{Command, Exit};
use anyhow::{bail, Context, Result};
use controller::node::status::BootStatus;
use node_api::client::{Credentials, Remote};
use node_api::proto;

/// Nodes called at once when `--parallel` does not say.
pub const NODES_AT_ONCE: usize = 32;

/// Runs `command` on every node of `remote`: at most `--parallel` at once,
/// each node's answer printed in the order the nodes were given.
pub fn exec(command: Command, remote: &RemoteArgs) -> Result<Exit> {
    use futures_util::StreamExt;
    let call = Call::from_command(command, remote)?;
    let rt = crate::cli::prelude::runtime()?;
    let timeout = remote.timeout();
    let at_once = remote.parallel.unwrap_or(NODES_AT_ONCE).max(1);
    let mut seen = Seen::default();
    rt.block_on(async {
        let mut answers = futures_util::stream::iter(&remote.nodes)
            .map(|node| {
                let call = &call;
                async move { (node, call.run(node, timeout).await) }
            })
            .buffered(at_once);
        while let Some((node, answer)) = answers.next().await {
            seen.take(&call, node, answer)?;
        }
        anyhow::Ok(())
    })?;
    seen.finish(&call, remote.nodes.len())
}

/// What the nodes answered so far.
#[derive(Default)]
struct Seen {
    failed: usize,
    changes: bool,
    json: serde_json::Map<String, serde_json::Value>,
}

impl Seen {
    /// Prints a node's answer (text at once, JSON at the end) or its error.
    fn take(&mut self, call: &Call, node: &str, answer: Result<Answer>) -> Result<()> {
        match answer {
            Ok(out) => {
                self.changes |= out.plans_changes();
                match call.output {
                    Output::Json => {
                        self.json.insert(node.to_string(), out.json);
                    }
                    Output::Text => out!("NODE {node}\n{}", out.text)?,
                }
            }
            Err(e) => {
                self.failed += 1;
                eprintln!("error: {}", crate::cli::report(&e));
            }
        }
        Ok(())
    }

    /// Prints the JSON (one node: its document as the local verb prints it;
    /// several: by node); the exit code.
    fn finish(self, call: &Call, nodes: usize) -> Result<Exit> {
        if call.output == Output::Json && !self.json.is_empty() {
            let doc = if nodes == 1 {
                self.json
                    .into_iter()
                    .next()
                    .map(|(_, v)| v)
                    .unwrap_or_default()
            } else {
                serde_json::Value::Object(self.json)
            };
            outln!("{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Ok(if self.failed > 0 {
            Exit::Failure
        } else if call.detailed_exitcode && self.changes {
            Exit::ChangesPlanned
        } else {
            Exit::Success
        })
    }
}

/// What one node answered.
struct Answer {
    json: serde_json::Value,
    text: String,
}

impl Answer {
    /// Whether it is a plan that changes something.
    fn plans_changes(&self) -> bool {
        self.json["plan"]["actions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    }
}

enum Verb {
    Version,
    Status,
    Apply(proto::ApplyConfigRequest),
    Reset(proto::ResetRequest),
    Reboot,
    Unlock(proto::UnlockRequest),
    Plan(proto::PlanRequest),
    FetchRecoveryKey(proto::FetchRecoveryKeyRequest),
    TpmAllow(proto::TpmAllowRequest),
}

struct Call {
    verb: Verb,
    creds: Credentials,
    output: Output,
    /// `plan --detailed-exitcode`: exit 2 when a node's plan changes something.
    detailed_exitcode: bool,
}

impl Call {
    fn from_command(command: Command, remote: &RemoteArgs) -> Result<Call> {
        let mut detailed = false;
        let (verb, output, creds) = match command {
            Command::Version(a) => (Verb::Version, a.output, remote.credentials()?),
            Command::Status(a) if a.volume.is_some() => {
                bail!("`status --volume` runs on the node itself (it is what the node's volctl-volume@ units run); `volctl -n NODE status` shows every volume")
            }
            Command::Status(a) => (Verb::Status, a.output, remote.credentials()?),
            Command::Plan(a) => {
                let req = proto::PlanRequest {
                    volume: a.target.volume.clone(),
                };
                detailed = a.detailed_exitcode;
                (Verb::Plan(req), a.target.output, remote.credentials()?)
            }
            Command::Reboot(_) => (Verb::Reboot, Output::Text, remote.credentials()?),
            Command::Unlock(a) => {
                let creds = remote.credentials()?;
                let passphrase = super::unlock::read_passphrase(&a.volume)?;
                let req = proto::UnlockRequest {
                    volume: a.volume.clone(),
                    passphrase: passphrase.to_vec(),
                };
                (Verb::Unlock(req), Output::Text, creds)
            }
            Command::Reset(a) => (Verb::Reset(reset_request(&a)), Output::Text, remote.credentials()?),
            Command::RecoveryKey(super::recovery_key::Args::Fetch(a)) => {
                let req = proto::FetchRecoveryKeyRequest { volume: a.volume };
                (Verb::FetchRecoveryKey(req), Output::Text, remote.credentials()?)
            }
            Command::Tpm(super::tpm::Args::Allow(a)) => {
                let req = proto::TpmAllowRequest {
                    volume: a.target.volume.clone(),
                    pcrs: a.pcrs.iter().map(|(n, v)| (*n, hex::encode(v))).collect(),
                    dry_run: a.dry_run,
                };
                (Verb::TpmAllow(req), a.target.output, remote.credentials()?)
            }
            Command::ApplyConfig(a) => {
                let creds = if a.insecure {
                    remote.maintenance(a.fingerprint.as_deref())?
                } else {
                    remote.credentials()?
                };
                (Verb::Apply(apply_request(&a)?), a.output, creds)
            }
            other => bail!("`{}` runs on the node itself; the remote verbs are status, version, plan, apply-config, reset, reboot, unlock, recovery-key fetch and tpm allow", verb_name(&other)),
        };
        Ok(Call {
            verb,
            creds,
            output,
            detailed_exitcode: detailed,
        })
    }

    async fn run(&self, node: &str, timeout: std::time::Duration) -> Result<Answer> {
        let mut r = Remote::connect(node, &self.creds, timeout).await?;
        if let (node_api::client::Trust::Unverified, Some(fp)) =
            (&self.creds.trust, &r.fingerprint())
        {
            eprintln!("{}: certificate SHA-256 fingerprint {fp} (not verified; pass --fingerprint to pin it)", r.node);
        }
        for w in r.expiry_warnings() {
            eprintln!("warning: {}: {w}", r.node);
        }
        match &self.verb {
            Verb::Version => version(&mut r).await,
            Verb::Status => status(&mut r).await,
            Verb::Apply(a) => {
                let (c, req) = r.call(a.clone());
                let rep = c.apply_config(req).await.map_err(|s| r.failed(&s))?;
                let rep = rep.into_inner();
                Ok(Answer::report(&rep.report_json, rep.report_text))
            }
            Verb::Plan(p) => {
                let (c, req) = r.call(p.clone());
                let rep = c.plan(req).await.map_err(|s| r.failed(&s))?.into_inner();
                Ok(Answer::report(&rep.outcome_json, rep.outcome_text))
            }
            Verb::TpmAllow(t) => {
                let (c, req) = r.call(t.clone());
                let rep = c
                    .tpm_allow(req)
                    .await
                    .map_err(|s| r.failed(&s))?
                    .into_inner();
                Ok(Answer::report(&rep.outcome_json, rep.outcome_text))
            }
            Verb::Reset(a) => reset(&mut r, a).await,
            Verb::Unlock(u) => unlock(&mut r, u).await,
            Verb::FetchRecoveryKey(f) => fetch_recovery_key(&mut r, f).await,
            Verb::Reboot => {
                let (c, req) = r.call(proto::RebootRequest {});
                c.reboot(req).await.map_err(|s| r.failed(&s))?;
                Ok(Answer {
                    json: serde_json::json!({"rebooting": true}),
                    text: "rebooting\n".into(),
                })
            }
        }
    }
}

impl Answer {
    /// A report the node sent as JSON and as text.
    fn report(json: &str, text: String) -> Answer {
        Answer {
            json: serde_json::from_str(json).unwrap_or_default(),
            text,
        }
    }
}

async fn version(r: &mut Remote) -> Result<Answer> {
    let (c, req) = r.call(proto::VersionRequest {});
    let v = c.version(req).await.map_err(|s| r.failed(&s))?.into_inner();
    let mode = if v.maintenance {
        " (maintenance mode)"
    } else {
        ""
    };
    Ok(Answer {
        json: serde_json::json!({"version": v.version, "maintenance": v.maintenance}),
        text: format!("volctl {}{mode}\n", v.version),
    })
}

async fn status(r: &mut Remote) -> Result<Answer> {
    let (c, req) = r.call(proto::StatusRequest {});
    let s = c.status(req).await.map_err(|s| r.failed(&s))?.into_inner();
    let status: BootStatus = serde_json::from_str(&s.status_json)
        .context("the node sent a status this volctl cannot read")?;
    Ok(Answer {
        json: serde_json::to_value(&status)?,
        text: status.table(),
    })
}

async fn reset(r: &mut Remote, a: &proto::ResetRequest) -> Result<Answer> {
    let (c, req) = r.call(a.clone());
    let rep = c.reset(req).await.map_err(|s| r.failed(&s))?.into_inner();
    let mut text: String = rep.steps.iter().map(|s| format!("{s}\n")).collect();
    if rep.rebooting {
        text.push_str("rebooting\n");
    }
    Ok(Answer {
        json: serde_json::json!({"steps": rep.steps, "rebooting": rep.rebooting}),
        text,
    })
}

async fn unlock(r: &mut Remote, u: &proto::UnlockRequest) -> Result<Answer> {
    let (c, req) = r.call(u.clone());
    c.unlock(req).await.map_err(|s| r.failed(&s))?;
    Ok(Answer {
        json: serde_json::json!({"delivered": u.volume}),
        text: format!(
            "delivered to the boot asking for {}; `volctl -n {} status` shows whether it opened\n",
            u.volume, r.node
        ),
    })
}

async fn fetch_recovery_key(r: &mut Remote, f: &proto::FetchRecoveryKeyRequest) -> Result<Answer> {
    let (c, req) = r.call(f.clone());
    let rep = c
        .fetch_recovery_key(req)
        .await
        .map_err(|s| r.failed(&s))?
        .into_inner();
    let text = super::recovery_key::fetched_text(
        &f.volume,
        rep.keys.iter().map(|k| (k.slot, k.key.as_bytes())),
    );
    Ok(Answer {
        json: serde_json::json!({"volume": f.volume, "fetched": rep.keys.len()}),
        text: text.to_string(),
    })
}

/// The verb as it is typed (`KmsServer` → `kms-server`).
pub fn verb_name(c: &Command) -> String {
    let variant = format!("{c:?}");
    let name = variant.split(['(', ' ', '{']).next().unwrap_or_default();
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn apply_request(a: &apply_config::Args) -> Result<proto::ApplyConfigRequest> {
    let files = a
        .files
        .iter()
        .map(|p| {
            let content =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(proto::ConfigFile {
                name: p.display().to_string(),
                content,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mode = match a.mode {
        apply_config::ModeArg::Auto => proto::ApplyMode::Auto,
        apply_config::ModeArg::Staged => proto::ApplyMode::Staged,
        apply_config::ModeArg::Reboot => proto::ApplyMode::Reboot,
        apply_config::ModeArg::NoReboot => proto::ApplyMode::NoReboot,
    };
    Ok(proto::ApplyConfigRequest {
        files,
        mode: mode.into(),
        dry_run: a.dry_run,
    })
}

fn reset_request(a: &reset::Args) -> proto::ResetRequest {
    let wipe = match a.wipe_mode {
        reset::WipeArg::Fast => proto::WipeMode::Fast,
        reset::WipeArg::Full => proto::WipeMode::Full,
    };
    proto::ResetRequest {
        labels: a.system_labels_to_wipe.clone(),
        wipe_mode: wipe.into(),
        reboot: a.reboot,
    }
}
