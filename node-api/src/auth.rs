//! Who may call what. A caller is known by its client certificate (signed
//! by the node's client CA; its Organization is its role) or by the API
//! key (compared in constant time; it stands for the admin). A call the
//! caller's role does not allow is refused before anything is done, with a
//! clear error for the client and a log line on the node.

use subtle::ConstantTimeEq;
use tls::identity::{common_name, role_of, Role};
use tls::listener::PeerInfo;
use tonic::{Request, Status};
use zeroize::Zeroizing;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What it may do.
    pub role: Role,
    /// Who it is, for log lines (certificate CN, or `api-key`).
    pub name: String,
}

/// The node's rules for callers.
#[derive(Default)]
pub struct Authenticator {
    api_key: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The shortest API key accepted (bytes of text; `volctl gen` makes 43).
pub const MIN_API_KEY: usize = 22;

impl Authenticator {
    /// Callers with certificates only.
    pub fn certificates() -> Self {
        Authenticator { api_key: None }
    }

    /// Callers with certificates, or the API key (at least 128 bits of
    /// base64: 22 characters).
    pub fn with_api_key(key: Zeroizing<Vec<u8>>) -> Result<Self, String> {
        let trimmed = Zeroizing::new(key.trim_ascii().to_vec());
        if trimmed.len() < MIN_API_KEY {
            return Err(format!(
                "the API key has {} characters; at least {MIN_API_KEY} (128 bits) are needed",
                trimmed.len()
            ));
        }
        Ok(Authenticator {
            api_key: Some(trimmed),
        })
    }

    /// Who made the request, or why it is refused.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        if let Some(v) = req.metadata().get("authorization") {
            let presented = v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            return match &self.api_key {
                Some(key) if bool::from(key.as_slice().ct_eq(presented.as_bytes())) => Ok(Caller {
                    role: Role::Admin,
                    name: "api-key".into(),
                }),
                Some(_) => Err(Status::unauthenticated("wrong API key")),
                None => Err(Status::unauthenticated(
                    "this node takes no API key (it authenticates callers by client certificate)",
                )),
            };
        }
        let leaf = PeerInfo::of(req).and_then(|p| p.certs.first().cloned());
        let Some(leaf) = leaf else {
            return Err(Status::unauthenticated(
                "no client certificate and no API key",
            ));
        };
        let name = common_name(&leaf).unwrap_or_else(|| "(no CN)".into());
        match role_of(&leaf) {
            Some(role) => Ok(Caller { role, name }),
            None => Err(Status::permission_denied(format!(
                "the client certificate of `{name}` names no role (O=admin or O=reader)"
            ))),
        }
    }

    /// The caller, if its role is at least `need`.
    pub fn require<T>(&self, req: &Request<T>, need: Role, what: &str) -> Result<Caller, Status> {
        let peer = PeerInfo::of(req).and_then(|p| p.tcp.remote_addr);
        let caller = self.caller(req).inspect_err(|s| {
            tracing::warn!(?peer, call = what, "refused: {}", s.message());
        })?;
        if caller.role < need {
            tracing::warn!(?peer, call = what, caller = %caller.name, role = %caller.role, "refused: role too low");
            return Err(Status::permission_denied(format!(
                "{what} needs the {need} role; `{}` has {}",
                caller.name, caller.role
            )));
        }
        tracing::info!(?peer, call = what, caller = %caller.name, role = %caller.role, "allowed");
        Ok(caller)
    }
}
