//! The node API's calls, each the local verb's library code behind a role
//! check: readers may read (version, status), admins may also change
//! (apply-config, reset, reboot). Changes run one at a time. A refused call
//! changes nothing.

use super::NodeContext;
use crate::apply::{self, ApplyError, ApplyMode, ApplyOptions};
use crate::node::ask::remote::RemoteAnswers;
use crate::node::paths::run_dir;
use crate::node::recovery_held::{FetchError, HeldKeys};
use crate::node::status::BootStatus;
use crate::reset::{self, WipeMode};
use node_api::auth::Authenticator;
use node_api::proto::{self, node_server::Node};
use providers::Passphrase;
use std::time::Duration;
use tls::identity::Role;
use tonic::{Request, Response, Status};

/// Who the service answers.
enum Callers {
    /// Authenticated callers, by role.
    Authenticated(Authenticator),
    /// A boot waiting in maintenance mode (why it waits): anyone may read
    /// the status and version and deliver a config; nothing else.
    Maintenance(String),
}

/// The node's side of `volctl.node.v1.Node`.
pub struct NodeService {
    callers: Callers,
    node: NodeContext,
    /// Questions of a boot asking for typed keys (only while it asks).
    unlock: Option<RemoteAnswers>,
    /// One change at a time (apply, reset).
    changing: tokio::sync::Mutex<()>,
}

impl NodeService {
    /// A service acting on `node` for the callers `auth` admits.
    pub fn new(auth: Authenticator, node: NodeContext) -> Self {
        NodeService {
            callers: Callers::Authenticated(auth),
            node,
            unlock: None,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The same, also answering the typed-key questions of a boot.
    pub fn answering(mut self, answers: RemoteAnswers) -> Self {
        self.unlock = Some(answers);
        self
    }

    /// The maintenance face of a boot waiting for a config (`reason`):
    /// unauthenticated, it only takes a config for that boot.
    pub fn maintenance(node: NodeContext, reason: &str) -> Self {
        NodeService {
            callers: Callers::Maintenance(reason.to_string()),
            node,
            unlock: None,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// Admits the call: by role, or in maintenance mode when `open` (the
    /// calls maintenance mode serves).
    fn admit<T>(
        &self,
        req: &Request<T>,
        need: Role,
        what: &str,
        open: bool,
    ) -> Result<String, Status> {
        match &self.callers {
            Callers::Authenticated(auth) => auth.require(req, need, what).map(|c| c.name),
            Callers::Maintenance(_) if open => Ok("maintenance client".into()),
            Callers::Maintenance(_) => {
                tracing::warn!(call = what, "refused in maintenance mode");
                Err(Status::failed_precondition(format!(
                    "the node is in maintenance mode: it takes `apply-config --insecure`, status and version, not {what}"
                )))
            }
        }
    }

    /// Reboots after the answer has left (the caller sees the call succeed).
    fn reboot_soon(&self) {
        let command = self.node.reboot_command.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tracing::warn!(%command, "rebooting as asked over the node API");
            if let Err(e) =
                tokio::task::spawn_blocking(move || crate::node::reboot::reboot(&command)).await
            {
                tracing::error!("reboot task failed: {e}");
            }
        });
    }

    fn status(&self) -> Result<BootStatus, Status> {
        BootStatus::load(&self.node.status_file).map_err(|e| {
            Status::unavailable(format!(
                "cannot read the boot status {}: {e} (has `volctl boot` run?)",
                self.node.status_file.display()
            ))
        })
    }
}

impl NodeService {
    /// `volctl plan` for `volume` on the node: its device from the status,
    /// its config from STATE; read-only.
    async fn plan_volume(&self, volume: &str) -> Result<crate::converge::Outcome, Status> {
        use crate::converge::{converge, Mode};
        let (spec, env, dev) = self.volume_at_hand(volume, Mode::DryRun)?;
        converge(&spec, dev, &env, Mode::DryRun)
            .await
            .map_err(|e| Status::failed_precondition(format!("{volume}: {e}")))
    }

    /// `volctl tpm allow` for `volume` on the node (see [`Self::plan_volume`]).
    async fn allow_tpm_values(
        &self,
        volume: &str,
        changes: &providers::tpm::policy::PcrValues,
        mode: crate::converge::Mode,
    ) -> Result<crate::converge::Outcome, Status> {
        let (spec, env, dev) = self.volume_at_hand(volume, mode)?;
        crate::converge::allow_tpm_values(&spec, dev, &env, mode, changes)
            .await
            .map_err(|e| Status::failed_precondition(format!("{volume}: {e}")))
    }

    /// `volume`'s spec from the config on STATE, the node's key sources, and
    /// its device (from the boot's status) opened for `mode`.
    fn volume_at_hand(
        &self,
        volume: &str,
        mode: crate::converge::Mode,
    ) -> Result<
        (
            crate::volume::VolumeSpec,
            providers::ProviderEnv,
            std::sync::Arc<dyn crate::device::LuksDevice>,
        ),
        Status,
    > {
        let status = self.status()?;
        let state = apply::state_mount(&status).map_err(|e| Status::unavailable(e.to_string()))?;
        let v = status
            .volumes
            .iter()
            .find(|v| v.name == volume || v.label == volume)
            .ok_or_else(|| Status::not_found(format!("the node has no volume `{volume}`")))?;
        let device = v.device.clone().ok_or_else(|| {
            Status::failed_precondition(format!("{volume} has no device ({})", v.phase))
        })?;
        let (docs, _) =
            crate::node::config_files::load(&[state.join(crate::node::paths::CONFIG_FILE)])
                .map_err(|e| Status::failed_precondition(format!("STATE's config: {e}")))?;
        let spec = crate::volume::VolumeSpec::from_documents(&docs, volume)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let env = apply::node_env(
            &state,
            self.node.node_uuid.clone(),
            self.node.kms.clone(),
            self.node.tpm.clone(),
        );
        let dev = crate::converge::open_device(&spec, std::path::Path::new(&device), mode)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok((spec, env, dev))
    }
}

/// A request's PCR values (number → 64 hex digits), checked.
fn pcr_values(
    pcrs: &std::collections::HashMap<u32, String>,
) -> Result<providers::tpm::policy::PcrValues, Status> {
    let mut values = providers::tpm::policy::PcrValues::default();
    for (&pcr, hex_value) in pcrs {
        let value = providers::tpm::policy::digest_from_hex(hex_value)
            .filter(|_| pcr <= api_types::encryption::MAX_PCR)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "PCR {pcr}: a PCR is 0–23 and its value 64 hex digits"
                ))
            })?;
        values.0.insert(pcr, value);
    }
    if values.0.is_empty() {
        return Err(Status::invalid_argument("no PCR value given"));
    }
    Ok(values)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("reports serialise")
}

fn apply_mode(m: i32) -> Result<ApplyMode, Status> {
    Ok(match proto::ApplyMode::try_from(m) {
        Ok(proto::ApplyMode::Auto) => ApplyMode::Auto,
        Ok(proto::ApplyMode::Staged) => ApplyMode::Staged,
        Ok(proto::ApplyMode::Reboot) => ApplyMode::Reboot,
        Ok(proto::ApplyMode::NoReboot) => ApplyMode::NoReboot,
        Err(_) => return Err(Status::invalid_argument(format!("unknown apply mode {m}"))),
    })
}

/// The files as the client named them, in a private directory, so that
/// diagnostics name them as the admin knows them.
fn stage_files(
    files: &[proto::ConfigFile],
) -> Result<(tempfile::TempDir, Vec<std::path::PathBuf>), Status> {
    if files.is_empty() {
        return Err(Status::invalid_argument("no config file given"));
    }
    let dir = tempfile::tempdir().map_err(|e| Status::internal(e.to_string()))?;
    let mut paths = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let base = std::path::Path::new(&f.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("config-{i}.yaml"));
        let sub = dir.path().join(i.to_string());
        std::fs::create_dir(&sub).map_err(|e| Status::internal(e.to_string()))?;
        let p = sub.join(base);
        std::fs::write(&p, &f.content).map_err(|e| Status::internal(e.to_string()))?;
        paths.push(p);
    }
    Ok((dir, paths))
}

fn apply_status(e: ApplyError) -> Status {
    match e {
        ApplyError::Invalid(_) | ApplyError::Refused(_) | ApplyError::NeedsReboot(_) => {
            Status::failed_precondition(e.to_string())
        }
        ApplyError::NoStatus { .. } | ApplyError::StateNotMounted => {
            Status::unavailable(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn version(
        &self,
        req: Request<proto::VersionRequest>,
    ) -> Result<Response<proto::VersionResponse>, Status> {
        self.admit(&req, Role::Reader, "version", true)?;
        Ok(Response::new(proto::VersionResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            maintenance: matches!(self.callers, Callers::Maintenance(_)),
        }))
    }

    async fn status(
        &self,
        req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        self.admit(&req, Role::Reader, "status", true)?;
        let status = match &self.callers {
            Callers::Maintenance(reason) => BootStatus {
                config_source: "none yet: maintenance mode".into(),
                problems: vec![format!("waiting for a config: {reason}")],
                ..BootStatus::default()
            },
            Callers::Authenticated(_) => self.status()?,
        };
        Ok(Response::new(proto::StatusResponse {
            status_json: json(&status),
        }))
    }

    async fn plan(
        &self,
        req: Request<proto::PlanRequest>,
    ) -> Result<Response<proto::PlanResponse>, Status> {
        self.admit(&req, Role::Reader, "plan", false)?;
        let volume = req.into_inner().volume;
        let outcome = self.plan_volume(&volume).await?;
        Ok(Response::new(proto::PlanResponse {
            outcome_json: json(&outcome),
            outcome_text: crate::render::outcome_text(&outcome),
            changes: !outcome.plan.is_empty(),
        }))
    }

    async fn apply_config(
        &self,
        req: Request<proto::ApplyConfigRequest>,
    ) -> Result<Response<proto::ApplyConfigResponse>, Status> {
        let caller = self.admit(&req, Role::Admin, "apply-config", true)?;
        let r = req.into_inner();
        let (_dir, files) = stage_files(&r.files)?;
        let maintenance = matches!(self.callers, Callers::Maintenance(_));
        if maintenance {
            // Checked here, so the admin sees what is wrong with it.
            crate::node::config_files::load(&files).map_err(|e| {
                Status::failed_precondition(format!(
                    "the config is invalid; nothing was delivered:\n{e}"
                ))
            })?;
        }
        let opts = ApplyOptions {
            files,
            mode: apply_mode(r.mode)?,
            dry_run: r.dry_run,
            insecure: maintenance,
            node: NodeContext {
                // The server reboots itself, once the answer has left.
                reboot_command: "true".into(),
                ..self.node.clone()
            },
        };
        let _one = self.changing.lock().await;
        let report = apply::apply(&opts).await.map_err(apply_status)?;
        tracing::info!(%caller, mode = %report.mode, dry_run = r.dry_run, "config applied");
        if report.reboot_requested {
            self.reboot_soon();
        }
        Ok(Response::new(proto::ApplyConfigResponse {
            report_json: json(&report),
            report_text: apply::outcome_text(&report, maintenance),
        }))
    }

    async fn reset(
        &self,
        req: Request<proto::ResetRequest>,
    ) -> Result<Response<proto::ResetResponse>, Status> {
        let caller = self.admit(&req, Role::Admin, "reset", false)?;
        let r = req.into_inner();
        if r.labels.is_empty() {
            return Err(Status::invalid_argument("no label to wipe"));
        }
        let mode = match proto::WipeMode::try_from(r.wipe_mode) {
            Ok(proto::WipeMode::Full) => WipeMode::Full,
            _ => WipeMode::Fast,
        };
        let _one = self.changing.lock().await;
        let mut status = BootStatus::load(&self.node.status_file).ok();
        let disks = crate::node::disks::given_or_system(&self.node.disks);
        let busy = reset::WhenBusy::for_reset(r.reboot);
        let steps = reset::reset(
            &crate::host::RealHost,
            &r.labels,
            &disks,
            status.as_mut(),
            mode,
            busy,
        )
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        if let Some(st) = status {
            st.save(&self.node.status_file)
                .map_err(|e| Status::internal(format!("writing the status: {e}")))?;
        }
        tracing::warn!(%caller, labels = ?r.labels, "wiped");
        if r.reboot {
            self.reboot_soon();
        }
        Ok(Response::new(proto::ResetResponse {
            steps,
            rebooting: r.reboot,
        }))
    }

    async fn unlock(
        &self,
        req: Request<proto::UnlockRequest>,
    ) -> Result<Response<proto::UnlockResponse>, Status> {
        let caller = self.admit(&req, Role::Admin, "unlock", false)?;
        let r = req.into_inner();
        let Some(answers) = &self.unlock else {
            return Err(Status::failed_precondition(
                "no boot is asking for a key on this node (unlock reaches a boot while a volume is waiting-for-key)",
            ));
        };
        if !answers.answer(&r.volume, Passphrase::new(r.passphrase)) {
            let waiting = answers.waiting();
            return Err(Status::not_found(format!(
                "no question waits for `{}`{}",
                r.volume,
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!(" (waiting: {})", waiting.join(", "))
                }
            )));
        }
        tracing::info!(%caller, volume = %r.volume, "typed key delivered over the node API");
        Ok(Response::new(proto::UnlockResponse {}))
    }

    async fn tpm_allow(
        &self,
        req: Request<proto::TpmAllowRequest>,
    ) -> Result<Response<proto::TpmAllowResponse>, Status> {
        let caller = self.admit(&req, Role::Admin, "tpm allow", false)?;
        let r = req.into_inner();
        let changes = pcr_values(&r.pcrs)?;
        let mode = crate::converge::Mode::dry_run_if(r.dry_run);
        let outcome = self.allow_tpm_values(&r.volume, &changes, mode).await?;
        if !r.dry_run {
            tracing::warn!(%caller, volume = %r.volume, pcrs = ?changes.pcrs(), "TPM keys allowed PCR values ahead of an update");
        }
        Ok(Response::new(proto::TpmAllowResponse {
            outcome_json: json(&outcome),
            outcome_text: crate::render::outcome_text(&outcome),
        }))
    }

    async fn fetch_recovery_key(
        &self,
        req: Request<proto::FetchRecoveryKeyRequest>,
    ) -> Result<Response<proto::FetchRecoveryKeyResponse>, Status> {
        let caller = self.admit(&req, Role::Admin, "recovery-key fetch", false)?;
        let volume = req.into_inner().volume;
        let held = HeldKeys::in_run_dir(&run_dir(&self.node.status_file));
        let v = volume.clone();
        let keys = tokio::task::spawn_blocking(move || held.fetch(&v))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e {
                FetchError::NothingHeld(_) => Status::not_found(e.to_string()),
                FetchError::BadName(_) => Status::invalid_argument(e.to_string()),
                other => Status::internal(other.to_string()),
            })?;
        tracing::warn!(%caller, %volume, "held recovery key handed out (once)");
        Ok(Response::new(proto::FetchRecoveryKeyResponse {
            keys: keys
                .into_iter()
                .map(|k| proto::HeldRecoveryKey {
                    slot: k.slot.get(),
                    key: String::from_utf8_lossy(k.key.expose()).into_owned(),
                })
                .collect(),
        }))
    }

    async fn reboot(
        &self,
        req: Request<proto::RebootRequest>,
    ) -> Result<Response<proto::RebootResponse>, Status> {
        self.admit(&req, Role::Admin, "reboot", false)?;
        self.reboot_soon();
        Ok(Response::new(proto::RebootResponse {}))
    }
}
