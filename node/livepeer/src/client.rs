//! The orchestrator client: `GetOrchestrator` over gRPC, job submission and
//! result download over HTTP, all on one pooled hyper client.
//!
//! TLS orchestrators get ALPN `h2` (gRPC and HTTP share the connection).
//! Plaintext `http://` orchestrators (go-livepeer v0.9+ `-httpAddr`) speak
//! h2c, so gRPC to them goes through a second client that uses HTTP/2 with
//! prior knowledge; plain HTTP calls to them use HTTP/1.1.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mesh_core::{JobBody, JobSpec, OrchestratorId};
use tokio::time::{Instant, timeout_at};

use crate::credentials::{GatewayIdentity, PaymentSource};
use crate::error::{MAX_ERROR_BODY_BYTES, OrchestratorError, PaymentError, truncate_text};
use crate::media::{decode_data_uri, is_data_uri};
use crate::session::Session;
use crate::{multipart, proto, tls};

/// `Authorization` value that makes orchestrators return result URLs instead
/// of inline `data:` images (`protoVerAIWorker`).
pub const AI_WORKER_AUTHORIZATION: &str = "Livepeer-AI-Worker-1.0";
/// Segment credentials header.
pub const SEGMENT_HEADER: &str = "Livepeer-Segment";
/// Payment header.
pub const PAYMENT_HEADER: &str = "Livepeer-Payment";
/// Largest non-streamed job response we read (images come as URLs, so JSON
/// replies are small; SAM2 masks are the largest).
pub const MAX_JSON_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Largest `GetOrchestrator` reply we decode (tonic's default bound).
pub const MAX_ORCHESTRATOR_INFO_BYTES: usize = 4 * 1024 * 1024;
/// go-livepeer's download timeout for result media (`HTTPTimeout / 2`).
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_secs(4);

/// How the client connects. Defaults mirror go-livepeer's HTTP client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP connect bound (`common.HTTPDialTimeout`, 2 s).
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept (1 min, as go-livepeer).
    pub pool_idle_timeout: Duration,
    /// Largest non-streamed job response read.
    pub max_json_response_bytes: usize,
    /// Address and signature sent in `GetOrchestrator` (offchain by default).
    pub identity: GatewayIdentity,
    /// Source IP of outgoing connections (`None`: the OS picks). A node bound
    /// to one address of a multi-homed host calls orchestrators from it.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(60),
            max_json_response_bytes: MAX_JSON_RESPONSE_BYTES,
            identity: GatewayIdentity::offchain(),
            local_address: None,
        }
    }
}

/// A successful job response.
pub enum AiResponse {
    /// A complete JSON body.
    Json(Bytes),
    /// A `text/event-stream` body, yielded chunk by chunk as it arrives.
    Stream(BoxStream<'static, Result<Bytes, OrchestratorError>>),
}

impl fmt::Debug for AiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(body) => f.debug_tuple("Json").field(&body.len()).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

type HyperClient = Client<HttpsConnector<HttpConnector>, tonic::body::Body>;

/// Talks to orchestrators. Cheap to clone; clones share connection pools.
#[derive(Clone)]
pub struct OrchestratorClient {
    /// HTTPS (ALPN h2 or http/1.1) and plaintext HTTP/1.1.
    http: HyperClient,
    /// HTTP/2 with prior knowledge, for gRPC to `http://` orchestrators.
    h2c: HyperClient,
    options: Arc<ClientOptions>,
}

impl fmt::Debug for OrchestratorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorClient")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl OrchestratorClient {
    /// A client with [`ClientOptions::default`] (offchain, go-livepeer's
    /// timeouts). Fails only if the TLS provider cannot build a config (it
    /// always can with ring).
    pub fn new() -> Result<Self, rustls::Error> {
        Self::with_options(ClientOptions::default())
    }

    /// A client with the given options.
    pub fn with_options(options: ClientOptions) -> Result<Self, rustls::Error> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(options.connect_timeout));
        tcp.set_local_address(options.local_address);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::client_config_without_alpn()?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout);
        let http = builder.build(connector.clone());
        let h2c = builder.http2_only(true).build(connector);
        Ok(Self {
            http,
            h2c,
            options: Arc::new(options),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Calls `/net.Orchestrator/GetOrchestrator`. `capabilities: None` asks
    /// for every capability's price and the GPU list; `Some(job
    /// capabilities)` prices just those. Bounded by `timeout` in total.
    #[tracing::instrument(level = "debug", skip_all, fields(orchestrator = %id))]
    pub async fn get_orchestrator(
        &self,
        id: &OrchestratorId,
        capabilities: Option<proto::Capabilities>,
        timeout: Duration,
    ) -> Result<Session, OrchestratorError> {
        let deadline = Instant::now() + timeout;
        let origin: Uri = id
            .as_str()
            .parse()
            .map_err(|_| OrchestratorError::InvalidUrl {
                url: id.as_str().to_owned(),
                reason: "not a URI".into(),
            })?;
        let service = if id.is_plaintext() {
            self.h2c.clone()
        } else {
            self.http.clone()
        };
        let mut grpc = proto::orchestrator_client::OrchestratorClient::with_origin(service, origin)
            .max_decoding_message_size(MAX_ORCHESTRATOR_INFO_BYTES);
        let request = self.options.identity.orchestrator_request(capabilities);
        let reply = timeout_at(deadline, grpc.get_orchestrator(request))
            .await
            .map_err(|_| timeout_error(timeout))?
            .map_err(status_error)?
            .into_inner();
        Session::from_reply(id.clone(), &reply, unix_now())
    }

    /// `POST <transcoder>/<pipeline>` with the job's body and credentials.
    /// `timeout` bounds the whole exchange for JSON replies, and everything up
    /// to the response headers for `text/event-stream` replies (the caller
    /// bounds the stream).
    #[tracing::instrument(level = "debug", skip_all, fields(orchestrator = %session.info.id, pipeline = %job.pipeline))]
    pub async fn submit(
        &self,
        session: &Session,
        job: &JobSpec,
        payment: &dyn PaymentSource,
        timeout: Duration,
    ) -> Result<AiResponse, OrchestratorError> {
        let deadline = Instant::now() + timeout;
        let headers = timeout_at(deadline, payment.payment_headers(session, job))
            .await
            .map_err(|_| timeout_error(timeout))??;
        let url = format!("{}/{}", session.transcoder, job.pipeline.as_str());
        let uri = parse_http_uri(&url)?;
        let (content_type, body) = match &job.body {
            JobBody::Json(json) => ("application/json".to_owned(), Bytes::from(json.clone())),
            JobBody::Multipart(parts) => {
                let encoded = multipart::encode(parts);
                (encoded.content_type, Bytes::from(encoded.body))
            }
        };
        let mut request = Request::new(tonic::body::Body::new(Full::new(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let request_headers = request.headers_mut();
        request_headers.insert(SEGMENT_HEADER, credential_header(headers.segment)?);
        request_headers.insert(PAYMENT_HEADER, credential_header(headers.payment)?);
        request_headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static(AI_WORKER_AUTHORIZATION),
        );
        request_headers.insert(
            CONTENT_TYPE,
            HeaderValue::try_from(content_type).map_err(|_| {
                OrchestratorError::InvalidReply("multipart content type is not a header".into())
            })?,
        );

        let response = self.send(request, deadline, timeout).await?;
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        if is_stream {
            let stream = response
                .into_body()
                .into_data_stream()
                .map_err(|error| OrchestratorError::Transport(error_chain(&error)))
                // HTTP/2 may end a stream with an empty DATA frame.
                .try_filter(|chunk| std::future::ready(!chunk.is_empty()));
            return Ok(AiResponse::Stream(stream.boxed()));
        }
        let limit = self.options.max_json_response_bytes;
        let body = read_bounded(response.into_body(), limit, deadline, timeout).await?;
        Ok(AiResponse::Json(body))
    }

    /// Downloads a result (`GET url`, any certificate accepted) and returns
    /// its content type and bytes, refusing more than `max_bytes`. `data:`
    /// URIs are decoded without a network call. go-livepeer bounds this with
    /// [`DEFAULT_MEDIA_TIMEOUT`].
    pub async fn fetch_media(
        &self,
        url: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(String, Bytes), OrchestratorError> {
        if is_data_uri(url) {
            return decode_data_uri(url, max_bytes);
        }
        let deadline = Instant::now() + timeout;
        let mut request = Request::new(tonic::body::Body::empty());
        *request.uri_mut() = parse_http_uri(url)?;
        let response = self.send(request, deadline, timeout).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max_bytes as u64) {
            return Err(OrchestratorError::BodyTooLarge {
                limit_bytes: max_bytes,
            });
        }
        let body = read_bounded(response.into_body(), max_bytes, deadline, timeout).await?;
        Ok((content_type, body))
    }

    /// Sends a request and turns non-success statuses into
    /// [`OrchestratorError::Http`] with the (bounded) plain-text body.
    async fn send(
        &self,
        request: Request<tonic::body::Body>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Response<Incoming>, OrchestratorError> {
        let response = timeout_at(deadline, self.http.request(request))
            .await
            .map_err(|_| timeout_error(timeout))?
            .map_err(|error| {
                if error.is_connect() {
                    connect_error(&error)
                } else {
                    OrchestratorError::Transport(error_chain(&error))
                }
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        // An unreadable error body still classifies by status.
        let body = read_bounded_prefix(response.into_body(), MAX_ERROR_BODY_BYTES, deadline).await;
        tracing::debug!(status, body = %body, "orchestrator error response");
        Err(OrchestratorError::Http { status, body })
    }
}

/// Reads a whole body of at most `limit` bytes before `deadline`.
async fn read_bounded(
    body: Incoming,
    limit: usize,
    deadline: Instant,
    timeout: Duration,
) -> Result<Bytes, OrchestratorError> {
    let collected = timeout_at(deadline, Limited::new(body, limit).collect())
        .await
        .map_err(|_| timeout_error(timeout))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(OrchestratorError::BodyTooLarge { limit_bytes: limit })
        }
        Err(error) => Err(OrchestratorError::Transport(error_chain(error.as_ref()))),
    }
}

/// The first `limit` bytes of an error body as text, best effort: whatever
/// arrived before the deadline or a read error.
async fn read_bounded_prefix(body: Incoming, limit: usize, deadline: Instant) -> String {
    let mut collected = Vec::new();
    let mut stream = body.into_data_stream();
    while collected.len() < limit {
        match timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => collected.extend_from_slice(&chunk),
            _ => break,
        }
    }
    collected.truncate(limit);
    truncate_text(String::from_utf8_lossy(&collected).into_owned(), limit)
}

fn parse_http_uri(url: &str) -> Result<Uri, OrchestratorError> {
    let invalid = |reason: &str| OrchestratorError::InvalidUrl {
        url: truncate_text(url.to_owned(), 256),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a URI"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(invalid("must be an http(s) URL")),
    }
}

fn credential_header(value: String) -> Result<HeaderValue, OrchestratorError> {
    HeaderValue::try_from(value).map_err(|_| {
        OrchestratorError::Payment(PaymentError::Signer(
            "credential is not a valid header value".into(),
        ))
    })
}

/// A failed connection set-up: a timeout (nothing answered: host or path
/// down) is told apart from a refusal (the host answered: process gone).
fn connect_error(error: &(dyn std::error::Error + 'static)) -> OrchestratorError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return OrchestratorError::ConnectTimeout(error_chain(error));
        }
        source = current.source();
    }
    OrchestratorError::Connect(error_chain(error))
}

fn timeout_error(timeout: Duration) -> OrchestratorError {
    OrchestratorError::Timeout {
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Maps a gRPC status, telling connection failures apart.
fn status_error(status: tonic::Status) -> OrchestratorError {
    let mut source = std::error::Error::source(&status);
    while let Some(error) = source {
        if let Some(client_error) = error.downcast_ref::<hyper_util::client::legacy::Error>()
            && client_error.is_connect()
        {
            return connect_error(client_error);
        }
        source = error.source();
    }
    let mut message = status.message().to_owned();
    if let Some(source) = std::error::Error::source(&status) {
        message = format!("{message}: {}", error_chain(source));
    }
    OrchestratorError::Grpc {
        code: format!("{:?}", status.code()),
        message: truncate_text(message, MAX_ERROR_BODY_BYTES),
    }
}

/// An error and its sources, `outer: inner: innermost`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_fetched() {
        assert!(parse_http_uri("https://127.0.0.1:8935/stream/a.png").is_ok());
        assert!(parse_http_uri("http://[::1]:1/x").is_ok());
        for bad in [
            "file:///etc/passwd",
            "/relative",
            "",
            "ftp://h/x",
            "https:///x",
        ] {
            assert!(parse_http_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_report_their_bound() {
        assert_eq!(
            timeout_error(Duration::from_millis(2500)),
            OrchestratorError::Timeout { timeout_ms: 2500 }
        );
        assert!(unix_now() > 1_700_000_000);
    }

    #[tokio::test]
    async fn data_uris_need_no_network() {
        let client = OrchestratorClient::new().unwrap();
        let (media_type, data) = client
            .fetch_media("data:image/png;base64,AAE=", 10, DEFAULT_MEDIA_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(media_type, "image/png");
        assert_eq!(&data[..], &[0, 1]);
    }

    #[tokio::test]
    async fn unanswered_connections_are_connect_timeouts() {
        // A listener that never accepts, its accept queue filled: Linux drops
        // further SYNs, so a connect gets no answer at all — what a
        // powered-off host or a cut network path looks like.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let address = listener.local_addr().unwrap();
        // Backlog 0 queues one connection (Linux: backlog + 1). Connect until
        // one goes unanswered: the queue is full. Four tries leave room for
        // a kernel that rounds the backlog up.
        let mut fillers = Vec::new();
        let full = (0..4).any(|_| {
            match std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
                Ok(stream) => {
                    fillers.push(stream);
                    false
                }
                Err(_) => true,
            }
        });
        assert!(full, "the accept queue never filled");
        let client = OrchestratorClient::with_options(ClientOptions {
            connect_timeout: Duration::from_millis(300),
            ..ClientOptions::default()
        })
        .unwrap();
        let id = OrchestratorId::parse(&address.to_string()).unwrap();
        let error = client
            .get_orchestrator(&id, None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(error, OrchestratorError::ConnectTimeout(_)),
            "{error:?}"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = OrchestratorClient::new().unwrap();
        let id = OrchestratorId::parse(&format!("127.0.0.1:{port}")).unwrap();
        let error = client
            .get_orchestrator(&id, None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, OrchestratorError::Connect(_)), "{error:?}");
        let error = client
            .fetch_media(
                &format!("http://127.0.0.1:{port}/x"),
                10,
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, OrchestratorError::Connect(_)), "{error:?}");
    }
}
