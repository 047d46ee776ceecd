//! Accepting connections for a network service, hardened: TLS 1.3 only,
//! a deadline on the TLS handshake, an idle timeout on every connection, a
//! lifetime on connections without a client certificate and a cap on
//! those from one address, a cap on open connections (below the process's
//! file-descriptor limit), and
//! a back-off, logged at most once a second, when the process still runs
//! out of file descriptors. A flood of idle or half-open connections
//! therefore neither starves real clients for long nor pins a core.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a connection may stay silent (no byte either way).
    pub idle_timeout: Duration,
    /// Open connections without a client certificate at most from one
    /// address: one unauthenticated peer cannot fill the cap and keep
    /// everyone else out.
    pub per_peer: usize,
    /// How long a connection that presented no client certificate may
    /// live, whatever it sends (an HTTP/2 PING is traffic too): longer
    /// than the longest call, which such a caller authenticates with an
    /// API key, or makes unauthenticated in maintenance mode.
    pub uncertified_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            per_peer: 16,
            uncertified_lifetime: Duration::from_secs(150),
        }
    }
}

/// Open connections by remote address.
#[derive(Default)]
struct PeerCounts(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl PeerCounts {
    /// A place for one more connection from `ip`, if it has fewer than
    /// `most` open.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, most: usize) -> Option<PeerSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= most.max(1) {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }
}

/// One connection's place in [`PeerCounts`], given back on drop.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: std::net::IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// 512, or fewer when the file-descriptor limit is lower (leaving 32 for
/// the process's own files).
pub fn default_max_connections() -> usize {
    // SAFETY: getrlimit only writes the struct it is given.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    nofile.saturating_sub(32).clamp(8, 512)
}

/// Which client certificates a TLS acceptor asks for.
#[derive(Debug, Clone, Copy)]
pub enum ClientCerts<'a> {
    /// None (anyone completes the handshake; authenticate otherwise).
    None,
    /// Required, from this CA (PEM).
    Required(&'a [u8]),
    /// Optional, but when given, from this CA (PEM): for services that
    /// also take an API key.
    Optional(&'a [u8]),
}

/// A TLS 1.3 acceptor from PEM material; with `client_ca_pem`, only clients
/// with a certificate from that CA complete the handshake. ALPN offers h2.
pub fn tls_acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<TlsAcceptor, String> {
    let clients = match client_ca_pem {
        Some(ca) => ClientCerts::Required(ca),
        None => ClientCerts::None,
    };
    tls_acceptor_with(cert_pem, key_pem, clients)
}

/// A TLS 1.3 acceptor from PEM material, asking for client certificates as
/// `clients` says. ALPN offers h2.
pub fn tls_acceptor_with(
    cert_pem: &[u8],
    key_pem: &[u8],
    clients: ClientCerts<'_>,
) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let (ca, optional) = match clients {
        ClientCerts::None => (None, false),
        ClientCerts::Required(ca) => (Some(ca), false),
        ClientCerts::Optional(ca) => (Some(ca), true),
    };
    let builder = match ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(c.map_err(|e| format!("client CA: {e}"))?)
                    .map_err(|e| format!("client CA: {e}"))?;
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if optional {
                verifier = verifier.allow_unauthenticated();
            }
            builder
                .with_client_cert_verifier(verifier.build().map_err(|e| format!("client CA: {e}"))?)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// The accepted connections of `listener`, as a stream for tonic's
/// `serve_with_incoming*`. Accepting runs in a task of its own until the
/// stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(accept_loop(listener, tls, limits, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let peers = Arc::new(PeerCounts::default());
    let mut last_warning: Option<Instant> = None;
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(&e, &mut last_warning).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        // gRPC answers are a few small writes (headers, data, trailers):
        // without this each waits for the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let (tls, tx, peers) = (tls.clone(), tx.clone(), peers.clone());
        tokio::spawn(async move {
            let held = (permit, peers);
            if let Some(conn) = establish(tcp, peer, tls, limits, held).await {
                let _ = tx.send(Ok(conn)).await;
            }
        });
    }
}

/// Out of file descriptors (or another accept error): back off instead of
/// spinning, and say so at most once a second.
async fn accept_failed(e: &io::Error, last_warning: &mut Option<Instant>) {
    let fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        tracing::warn!(error = %e, "accepting a connection failed; backing off");
        *last_warning = Some(Instant::now());
    }
    let pause = if fds { 100 } else { 10 };
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

/// Runs the TLS handshake (within its deadline) and wraps the connection.
async fn establish(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    (permit, peers): (OwnedSemaphorePermit, Arc<PeerCounts>),
) -> Option<Conn> {
    let mut info = PeerInfo {
        tcp: TcpConnectInfo {
            local_addr: tcp.local_addr().ok(),
            remote_addr: Some(peer),
        },
        certs: Arc::new(Vec::new()),
    };
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(acceptor) => {
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => {
                    let chain = s.get_ref().1.peer_certificates().unwrap_or_default();
                    info.certs = Arc::new(chain.iter().map(|c| c.to_vec()).collect());
                    Box::new(s)
                }
                Ok(Err(e)) => {
                    // A refused certificate (another CA, expired) ends here.
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    // Without a client certificate (API-key mode, maintenance, the unlock
    // face) nothing vouches for the caller yet: bounded per address and in
    // time. A certified connection was authenticated by the handshake.
    let (expires, peer_slot) = if info.certs.is_empty() {
        let Some(slot) = peers.take(peer.ip(), limits.per_peer) else {
            tracing::debug!(%peer, "refused: too many connections without a client certificate from this address");
            return None;
        };
        let end = Box::pin(tokio::time::sleep(limits.uncertified_lifetime));
        (Some(end), Some(slot))
    } else {
        (None, None)
    };
    Some(Conn {
        io,
        info,
        idle: limits.idle_timeout,
        deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        expires,
        _held: (permit, peer_slot),
    })
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Who is on the other end of an accepted connection: its address and the
/// certificate chain it presented (DER, leaf first; empty without client
/// authentication). Handlers find it in the request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Addresses.
    pub tcp: TcpConnectInfo,
    /// The client's certificate chain, leaf first.
    pub certs: Arc<Vec<Vec<u8>>>,
}

impl PeerInfo {
    /// The peer of a request served from [`incoming`].
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
        request.extensions().get::<PeerInfo>()
    }
}

/// The remote address of a request served from [`incoming`].
pub fn remote_addr<T>(request: &tonic::Request<T>) -> Option<SocketAddr> {
    PeerInfo::of(request).and_then(|p| p.tcp.remote_addr)
}

/// An accepted connection: closed when silent for the idle timeout, and
/// (without a client certificate) at the end of its lifetime; holds its
/// place under the connection cap and its peer's until dropped.
pub struct Conn {
    io: Box<dyn Io>,
    info: PeerInfo,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    expires: Option<Pin<Box<Sleep>>>,
    _held: (OwnedSemaphorePermit, Option<PeerSlot>),
}

impl Conn {
    /// Fails with `TimedOut` once the connection was silent too long; else
    /// pushes the deadline back when `progress` is true.
    fn watch(&mut self, cx: &mut Context<'_>, progress: bool) -> io::Result<()> {
        if let Some(end) = self.expires.as_mut() {
            if end.as_mut().poll(cx).is_ready() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection without a client certificate lived its time",
                ));
            }
        }
        if progress {
            let next = tokio::time::Instant::now() + self.idle;
            self.deadline.as_mut().reset(next);
            return Ok(());
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle too long",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

use std::future::Future;

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let progress = matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        match (r, self.watch(cx, progress)) {
            (Poll::Pending, Err(e)) => Poll::Ready(Err(e)),
            (r, _) => r,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        let progress = matches!(r, Poll::Ready(Ok(n)) if n > 0);
        match (r, self.watch(cx, progress)) {
            (Poll::Pending, Err(e)) => Poll::Ready(Err(e)),
            (r, _) => r,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}
