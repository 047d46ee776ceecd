//! The admin service of a KMS with node records (`volctl kms nodes |
//! revoke | rotate | retire`): callers need a client certificate whose
//! Organization is `admin` (the server verifies it against `--client-ca`);
//! every call is logged with the caller's name, every change as an audit
//! line.

use crate::admin_proto::admin_client::AdminClient;
use crate::admin_proto::admin_server::Admin;
use crate::admin_proto::{
    AllowRequest, AllowResponse, Node, NodesRequest, NodesResponse, RegisterRequest,
    RegisterResponse, RetireRequest, RetireResponse, RevokeRequest, RevokeResponse, RotateRequest,
    RotateResponse,
};
use crate::client::{ClientError, ClientOptions, KmsClient};
use crate::fleet::{Fleet, FleetError};
use crate::listener::PeerInfo;
use std::sync::Arc;
use tls::identity::{common_name, role_of, Role};
use tonic::{Request, Response, Status};

/// The admin service over a fleet's records.
pub struct AdminService {
    fleet: Arc<Fleet>,
}

impl AdminService {
    /// The service for `fleet`.
    pub fn new(fleet: Arc<Fleet>) -> Self {
        AdminService { fleet }
    }
}

/// The caller's name when its certificate grants the admin role.
fn admin<T>(req: &Request<T>, call: &str) -> Result<String, Status> {
    let peer = crate::listener::remote_addr(req);
    let leaf = PeerInfo::of(req).and_then(|p| p.certs.first().cloned());
    let Some(leaf) = leaf else {
        tracing::warn!(?peer, call, "admin call refused: no client certificate");
        return Err(Status::unauthenticated(
            "admin calls need a client certificate with O=admin (and the server started with --client-ca)",
        ));
    };
    let name = common_name(&leaf).unwrap_or_else(|| "(no CN)".into());
    if role_of(&leaf) != Some(Role::Admin) {
        tracing::warn!(?peer, call, caller = %name, "admin call refused: not an admin certificate");
        return Err(Status::permission_denied(format!(
            "{call} needs the admin role; `{name}`'s certificate does not grant it"
        )));
    }
    Ok(name)
}

fn status(e: FleetError) -> Status {
    match e {
        FleetError::Refused(why) => Status::failed_precondition(why),
        FleetError::Store(e) => Status::unavailable(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

/// Runs a fleet change on a blocking thread (the store writes a file).
async fn blocking<T: Send + 'static>(
    fleet: &Arc<Fleet>,
    f: impl FnOnce(&Fleet) -> Result<T, FleetError> + Send + 'static,
) -> Result<T, Status> {
    let fleet = fleet.clone();
    tokio::task::spawn_blocking(move || f(&fleet))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn nodes(&self, req: Request<NodesRequest>) -> Result<Response<NodesResponse>, Status> {
        admin(&req, "nodes")?;
        let (nodes, current) = blocking(&self.fleet, |f| Ok((f.nodes()?, f.current()?))).await?;
        let nodes = nodes
            .into_iter()
            .map(|n| Node {
                uuid: n.uuid,
                state: n.state.to_string(),
                key_version: n.key_version.unwrap_or_default(),
                first_seen: n.first_seen,
                last_seen: n.last_seen,
                attestation_key: n
                    .attestation
                    .as_ref()
                    .map(|a| ak_fingerprint(&a.ak))
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(NodesResponse { nodes, current }))
    }

    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let caller = admin(&req, "register")?;
        let uuids = req.into_inner().node_uuids;
        if let Some(bad) = uuids.iter().find(|u| !crate::server::is_uuid(u)) {
            return Err(Status::invalid_argument(format!(
                "`{}` is not a UUID",
                bad.escape_debug().take(64).collect::<String>()
            )));
        }
        for uuid in uuids {
            let u = uuid.clone();
            blocking(&self.fleet, move |f| f.register(&u)).await?;
            tracing::warn!(audit = "register", node_uuid = %uuid, %caller, "node registered: it may enrol");
        }
        Ok(Response::new(RegisterResponse {}))
    }

    async fn revoke(
        &self,
        req: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let caller = admin(&req, "revoke")?;
        let uuid = req.into_inner().node_uuid;
        if !crate::server::is_uuid(&uuid) {
            return Err(Status::invalid_argument("node_uuid must be a UUID"));
        }
        let u = uuid.clone();
        blocking(&self.fleet, move |f| f.revoke(&u)).await?;
        tracing::warn!(audit = "revoke", node_uuid = %uuid, %caller, "node revoked: its keys are destroyed");
        Ok(Response::new(RevokeResponse {}))
    }

    async fn rotate(
        &self,
        req: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
        let caller = admin(&req, "rotate")?;
        let to = req.into_inner().to;
        let to = (!to.is_empty()).then_some(to);
        let (previous, current) = blocking(&self.fleet, move |f| {
            let previous = f.rotate(to.as_deref())?;
            Ok((previous, f.current()?))
        })
        .await?;
        tracing::warn!(audit = "rotate", %previous, %current, %caller, "master-key version rotated");
        Ok(Response::new(RotateResponse { previous, current }))
    }

    async fn allow(&self, req: Request<AllowRequest>) -> Result<Response<AllowResponse>, Status> {
        let caller = admin(&req, "allow")?;
        let req = req.into_inner();
        if !crate::server::is_uuid(&req.node_uuid) {
            return Err(Status::invalid_argument("node_uuid must be a UUID"));
        }
        if req.pcrs.values().any(|v| v.len() != 32) || req.pcrs.is_empty() {
            return Err(Status::invalid_argument(
                "give each PCR's SHA-256 value (32 bytes)",
            ));
        }
        let uuid = req.node_uuid.clone();
        let values: Vec<(u32, Vec<u8>)> = req.pcrs.into_iter().collect();
        let pcrs: Vec<u32> = values.iter().map(|(n, _)| *n).collect();
        blocking(&self.fleet, move |f| f.allow(&uuid, &values)).await?;
        tracing::warn!(audit = "allow", node_uuid = %req.node_uuid, ?pcrs, %caller, "PCR values allowed for the node's attestation");
        Ok(Response::new(AllowResponse {}))
    }

    async fn retire(
        &self,
        req: Request<RetireRequest>,
    ) -> Result<Response<RetireResponse>, Status> {
        let caller = admin(&req, "retire")?;
        let version = req.into_inner().version;
        let v = version.clone();
        blocking(&self.fleet, move |f| f.retire(&v)).await?;
        tracing::warn!(audit = "retire", %version, %caller, "master-key version retired: the node keys it wrapped are destroyed");
        Ok(Response::new(RetireResponse {}))
    }
}

/// The fingerprint of a recorded attestation key (base64 in the record).
fn ak_fingerprint(ak: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(ak)
        .unwrap_or_default();
    crate::attest::ak_fingerprint(&raw)
}

/// A client of the admin service at `server`.
pub async fn connect(
    server: &str,
    options: ClientOptions,
) -> Result<AdminClient<tonic::transport::Channel>, ClientError> {
    let ep = KmsClient::new(server, options).endpoint()?;
    let channel = ep.connect().await.map_err(|e| ClientError::Unreachable {
        endpoint: server.to_string(),
        attempts: 1,
        reason: e.to_string(),
    })?;
    Ok(AdminClient::new(channel))
}
