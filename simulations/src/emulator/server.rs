//! One listening incarnation of an emulated orchestrator: a fresh self-signed
//! certificate, the accept loop, and the per-request dispatch between gRPC
//! (HTTP/2 + `application/grpc*`) and the HTTP routes, as go-livepeer's
//! `ServeHTTP` does. Every task of an incarnation is tracked and cancellable,
//! so `crash` behaves like `kill -9` and nothing outlives the owner.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::EmulatorError;
use super::grpc::GrpcOrchestrator;
use super::http::{PeerAddr, router};
use super::state::Shared;

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pending connections the kernel queues for us.
const LISTEN_BACKLOG: u32 = 1024;

/// A self-signed ECDSA P-256 certificate for `host` (regenerated on every start,
/// like go-livepeer's `getCert`), and the rustls config serving it with ALPN
/// `h2` and `http/1.1`.
pub(crate) fn tls_config(
    host: &str,
) -> Result<(Arc<rustls::ServerConfig>, Vec<u8>), EmulatorError> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let cert_der = cert.der().to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), cert_der))
}

/// Binds `addr` with `SO_REUSEADDR`, so a restart can take the same port
/// while old connections sit in TIME_WAIT.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running incarnation; dropping it cancels every task.
#[derive(Debug)]
pub(crate) struct Incarnation {
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// DER of the certificate served (None in plaintext mode).
    pub(crate) cert_der: Option<Vec<u8>>,
}

impl Drop for Incarnation {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Incarnation {
    /// Starts serving on `listener`.
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        listener: TcpListener,
        tls: Option<(Arc<rustls::ServerConfig>, Vec<u8>)>,
    ) -> Self {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (acceptor, cert_der) = match tls {
            Some((config, der)) => (Some(TlsAcceptor::from(config)), Some(der)),
            None => (None, None),
        };
        let executor = TrackedExecutor {
            cancel: cancel.clone(),
            tracker: tracker.clone(),
        };
        executor.spawn(accept_loop(shared, listener, acceptor, executor.clone()));
        Self {
            cancel,
            tracker,
            cert_der,
        }
    }

    /// Stops accepting, aborts every connection and in-flight request, and
    /// waits until all of them are gone (the port is closed on return).
    pub(crate) async fn kill(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Spawns tasks that end when the incarnation is cancelled; used for the
/// accept loop, connections, and hyper's per-stream HTTP/2 tasks.
#[derive(Debug, Clone)]
struct TrackedExecutor {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl TrackedExecutor {
    fn spawn<F>(&self, future: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                _ = future => {}
            }
        });
    }
}

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.spawn(future);
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    executor: TrackedExecutor,
) {
    let grpc = tonic::service::Routes::new(GrpcOrchestrator::server(Arc::clone(&shared))).prepare();
    let http = router(Arc::clone(&shared));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(orchestrator = %shared.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = hyper::service::service_fn({
            let (grpc, http) = (grpc.clone(), http.clone());
            move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                let (grpc, http) = (grpc.clone(), http.clone());
                async move {
                    let response = if is_grpc(&request) {
                        grpc.oneshot(request).await.map(|r| r.map(Body::new))
                    } else {
                        http.oneshot(request).await
                    };
                    Ok::<Response<Body>, Infallible>(
                        response.unwrap_or_else(|never| match never {}),
                    )
                }
            }
        });
        let acceptor = acceptor.clone();
        let conn_executor = executor.clone();
        let name = shared.name.clone();
        executor.spawn(async move {
            let mut builder = auto::Builder::new(conn_executor);
            builder.http2().timer(TokioTimer::new());
            let served = match acceptor {
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => builder.serve_connection(TokioIo::new(tls), service).await,
                    Ok(Err(error)) => {
                        tracing::debug!(orchestrator = %name, %peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                None => builder.serve_connection(TokioIo::new(tcp), service).await,
            };
            if let Err(error) = served {
                tracing::debug!(orchestrator = %name, %peer, %error, "connection ended with an error");
            }
        });
    }
}

/// go-livepeer's dispatch rule: HTTP/2 with a gRPC content type goes to gRPC.
fn is_grpc<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_2
        && request
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}
