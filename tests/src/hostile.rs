//! Fake orchestrators that misbehave on purpose, for the "nothing an
//! orchestrator sends may panic the node" tests. Both kinds listen on
//! `127.0.0.1:0` with a fresh self-signed certificate (rcgen, rustls/ring):
//!
//! - [`HostileOrchestrator::info`]: an HTTP/2 server answering
//!   `/net.Orchestrator/GetOrchestrator` with garbage ([`InfoReply`]), or with
//!   a valid reply that advertises a model and points `transcoder` elsewhere
//!   (at a [`HostileOrchestrator::jobs`] server).
//! - [`HostileOrchestrator::jobs`]: a raw TLS socket that reads one request
//!   head and writes canned bytes ([`JobReply`]): 200 with a non-JSON body, a
//!   truncated body, or bytes that are not HTTP at all.
//!
//! - [`Bystander`]: a TCP listener on another loopback address that only
//!   counts connections: a host an orchestrator must not make the gateway
//!   fetch from.
//!
//! Dropping the value stops the accept loop and every connection.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use livepeer::proto;
use mesh_core::Pipeline;
use prost::Message as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Most request-head bytes the raw server reads before answering.
const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;
/// How long the raw server waits for a request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the fake answers to `GetOrchestrator`.
#[derive(Debug, Clone)]
pub enum InfoReply {
    /// A well-framed gRPC message (flag 0, length) whose payload is not
    /// protobuf (an invalid wire type and an overlong varint), then
    /// `grpc-status: 0`.
    GarbageProtobuf,
    /// A body that is not gRPC framing at all (a length prefix far beyond the
    /// bytes sent), then `grpc-status: 0`.
    GarbageFraming,
    /// A valid `OrchestratorInfo` that offers `pipeline`/`model` (cold) and
    /// sends every job to `transcoder`.
    Advertise {
        /// Where jobs go (`https://host:port`).
        transcoder: String,
        /// The pipeline offered.
        pipeline: Pipeline,
        /// The model offered.
        model: String,
    },
}

/// What the raw job server writes after reading a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobReply {
    /// `200 OK`, `application/json`, a complete body that is not JSON.
    NotJson,
    /// `200 OK` declaring 4096 bytes, sending a few, then closing.
    TruncatedBody,
    /// Bytes that are not an HTTP response, then closing.
    NotHttp,
    /// `200 OK`, a text-to-image answer whose image is at this URL.
    ImageAt(String),
}

impl JobReply {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::ImageAt(url) => {
                let body = serde_json::json!({"images": [{"url": url, "seed": 1, "nsfw": false}]})
                    .to_string();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            Self::NotJson => {
                let body = "<html><body>definitely not JSON</body></html>";
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            Self::TruncatedBody => b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{\"images\":[{\"url\":"
                .to_vec(),
            Self::NotHttp => b"\x16\x03\x01\x00 this is not HTTP \xff\xfe\x00\r\n\r\n\xde\xad\xbe\xef".to_vec(),
        }
    }
}

/// A running fake orchestrator; dropping it stops it.
#[derive(Debug)]
pub struct HostileOrchestrator {
    url: String,
    calls: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for HostileOrchestrator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileOrchestrator {
    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests answered so far (gRPC calls, or job requests).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// An HTTP/2 (and HTTP/1.1) TLS server answering `GetOrchestrator` with `reply`.
    pub async fn info(reply: InfoReply) -> anyhow::Result<Self> {
        let (listener, acceptor, url) = listen(&[b"h2", b"http/1.1"]).await?;
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let reply = reply.clone();
                let counter = counter.clone();
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let reply = reply.clone();
                        let counter = counter.clone();
                        async move { Ok::<_, Infallible>(answer_info(&reply, &counter, request)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
                // Reap finished connections so the set stays small.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { url, calls, task })
    }

    /// A raw TLS server (ALPN `http/1.1`) that answers every request with `reply`.
    pub async fn jobs(reply: JobReply) -> anyhow::Result<Self> {
        let (listener, acceptor, url) = listen(&[b"http/1.1"]).await?;
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                let reply = reply.clone();
                connections.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    let read = tokio::time::timeout(READ_TIMEOUT, async {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n")
                            && head.len() < MAX_REQUEST_HEAD_BYTES
                        {
                            match tls.read(&mut buffer).await {
                                Ok(0) | Err(_) => return false,
                                Ok(n) => head.extend_from_slice(&buffer[..n]),
                            }
                        }
                        true
                    })
                    .await;
                    if read != Ok(true) {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.write_all(&reply.bytes()).await;
                    let _ = tls.flush().await;
                    let _ = tls.shutdown().await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { url, calls, task })
    }
}

/// A TCP listener that accepts, counts and drops connections.
#[derive(Debug)]
pub struct Bystander {
    url: String,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bystander {
    /// Listens on `ip`, port 0.
    pub async fn start(ip: Ipv4Addr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .with_context(|| format!("binding the bystander on {ip}"))?;
        let url = format!("https://{}", listener.local_addr()?);
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(_) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        Ok(Self {
            url,
            connections,
            task,
        })
    }

    /// `https://<ip>:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

type GrpcBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn answer_info(
    reply: &InfoReply,
    counter: &AtomicU64,
    request: Request<Incoming>,
) -> Response<GrpcBody> {
    let body = |frames: Vec<Frame<Bytes>>| {
        StreamBody::new(futures_util::stream::iter(
            frames.into_iter().map(Ok).collect::<Vec<_>>(),
        ))
    };
    if request.uri().path() != "/net.Orchestrator/GetOrchestrator" {
        let mut response = Response::new(body(vec![Frame::data(Bytes::from_static(
            b"404 page not found\n",
        ))]));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    }
    counter.fetch_add(1, Ordering::SeqCst);
    let data = match reply {
        InfoReply::GarbageProtobuf => {
            // Field 1 with wire type 7 (invalid), then an 11-byte varint.
            let payload: &[u8] = b"\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage";
            grpc_frame(payload)
        }
        InfoReply::GarbageFraming => {
            b"\x00\x7f\xff\xff\xffnot a grpc frame \xde\xad\xbe\xef".to_vec()
        }
        InfoReply::Advertise {
            transcoder,
            pipeline,
            model,
        } => {
            let mut capabilities = livepeer::job_capabilities(*pipeline, model);
            capabilities.version = "0.9.1".into();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let info = proto::OrchestratorInfo {
                transcoder: transcoder.clone(),
                capabilities: Some(capabilities),
                auth_token: Some(proto::AuthToken {
                    token: vec![7; 32],
                    session_id: "hostile".into(),
                    expiration: now + 3_600,
                }),
                ..Default::default()
            };
            grpc_frame(&info.encode_to_vec())
        }
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(body(vec![
        Frame::data(Bytes::from(data)),
        Frame::trailers(trailers),
    ]));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// gRPC length-prefixed message: flag 0, big-endian length, payload.
fn grpc_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Binds `127.0.0.1:0` and builds a TLS acceptor with a fresh self-signed
/// certificate and the given ALPN protocols.
async fn listen(alpn: &[&[u8]]) -> anyhow::Result<(TcpListener, TlsAcceptor, String)> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("binding the hostile orchestrator")?;
    let address = listener.local_addr()?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.self_signed(&key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((
        listener,
        TlsAcceptor::from(Arc::new(config)),
        format!("https://{address}"),
    ))
}
