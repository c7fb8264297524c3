//! The orchestrator emulator against a hand-built client over real loopback
//! sockets: gRPC GetOrchestrator, batch jobs, credentials, capacity,
//! restart, LLM streaming and crashes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use livepeer::proto;
use mesh_core::{CapabilitySet, Pipeline};
use prost::Message as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use simulations::emulator::{
    AI_WORKER_AUTHORIZATION, EmulatedOrchestrator, Emulator, Fleet, LatencySpec, ModelSpec,
    OrchestratorSpec, PriceSpec, media,
};
use tokio::net::{TcpSocket, TcpStream};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const T2I_MODEL: &str = "stabilityai/sdxl-turbo";
/// Bound on every wait in these tests.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------- a minimal client: TLS that accepts any certificate, h2 or HTTP/1.1 ----------

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H2,
    H1,
}

/// One request on a fresh connection; returns the response and the server certificate.
async fn send(
    addr: SocketAddr,
    from: Option<SocketAddr>,
    protocol: Proto,
    request: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, Vec<u8>), String> {
    let tcp = match from {
        Some(local) => {
            let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket.bind(local).map_err(|e| e.to_string())?;
            socket.connect(addr).await.map_err(|e| e.to_string())?
        }
        None => TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
    };
    let alpn: &[u8] = if protocol == Proto::H2 {
        b"h2"
    } else {
        b"http/1.1"
    };
    let connector = tokio_rustls::TlsConnector::from(client_config(alpn));
    let name = ServerName::try_from(addr.ip().to_string()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or("no peer certificate")?;
    let response = match protocol {
        Proto::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?
        }
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    Ok((response, cert))
}

async fn body_bytes(response: Response<Incoming>) -> Bytes {
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

async fn body_text(response: Response<Incoming>) -> String {
    String::from_utf8(body_bytes(response).await.to_vec()).expect("utf-8 body")
}

/// Unary gRPC `GetOrchestrator` with hand-made framing.
async fn get_orchestrator(
    orch: &EmulatedOrchestrator,
    caps: Option<proto::Capabilities>,
) -> proto::OrchestratorInfo {
    let message = proto::OrchestratorRequest {
        address: vec![0; 20],
        capabilities: caps,
        ..Default::default()
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let request = Request::post(format!("{}/net.Orchestrator/GetOrchestrator", orch.url()))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(framed)))
        .expect("request");
    let (response, _) = send(orch.address(), None, Proto::H2, request)
        .await
        .expect("grpc call");
    assert_eq!(response.status(), StatusCode::OK);
    let collected = response.into_body().collect().await.expect("grpc body");
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(status.as_deref(), Some("0"), "grpc-status");
    let bytes = collected.to_bytes();
    assert!(bytes.len() >= 5 && bytes[0] == 0, "uncompressed gRPC frame");
    proto::OrchestratorInfo::decode(&bytes[5..]).expect("OrchestratorInfo")
}

/// The capabilities go-livepeer's gateway sends for one job.
fn job_caps(pipeline: Pipeline, model: &str) -> proto::Capabilities {
    let capability = pipeline.capability().0;
    let model_constraint = proto::capabilities::capability_constraints::ModelConstraint::default();
    proto::Capabilities {
        bitstring: CapabilitySet::for_pipeline(pipeline).words().to_vec(),
        capacities: HashMap::from([(capability, 1)]),
        constraints: Some(proto::capabilities::Constraints {
            min_version: String::new(),
            per_capability: HashMap::from([(
                capability,
                proto::capabilities::CapabilityConstraints {
                    models: HashMap::from([(model.to_owned(), model_constraint)]),
                },
            )]),
        }),
        ..Default::default()
    }
}

fn segment_header(token: &proto::AuthToken, pipeline: Pipeline, model: &str) -> String {
    let seg = proto::SegData {
        manifest_id: format!("{}_{model}", pipeline.capability().0).into_bytes(),
        capabilities: Some(job_caps(pipeline, model)),
        auth_token: Some(token.clone()),
        profiles: b"invalid".to_vec(),
        ..Default::default()
    };
    BASE64.encode(seg.encode_to_vec())
}

struct Job<'a> {
    orch: &'a EmulatedOrchestrator,
    pipeline: Pipeline,
    segment: Option<String>,
    payment: &'a str,
    authorization: bool,
    content_type: String,
    body: Vec<u8>,
    protocol: Proto,
    from: Option<SocketAddr>,
}

impl<'a> Job<'a> {
    fn json(
        orch: &'a EmulatedOrchestrator,
        pipeline: Pipeline,
        token: &proto::AuthToken,
        model: &str,
        body: Value,
    ) -> Self {
        Self {
            orch,
            pipeline,
            segment: Some(segment_header(token, pipeline, model)),
            payment: "",
            authorization: true,
            content_type: "application/json".into(),
            body: body.to_string().into_bytes(),
            protocol: Proto::H2,
            from: None,
        }
    }

    fn multipart(
        orch: &'a EmulatedOrchestrator,
        pipeline: Pipeline,
        token: &proto::AuthToken,
        model: &str,
        fields: &[(&str, &str)],
        file: (&str, &[u8]),
    ) -> Self {
        let boundary = "emulator-test-boundary";
        let mut body = Vec::new();
        for (name, value) in fields.iter().chain([("model_id", model)].iter()) {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                file.0
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.1);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Self {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            body,
            ..Self::json(orch, pipeline, token, model, Value::Null)
        }
    }

    async fn send(self) -> Result<Response<Incoming>, String> {
        let mut builder = Request::post(format!("{}/{}", self.orch.url(), self.pipeline))
            .header(header::CONTENT_TYPE, self.content_type)
            .header("Livepeer-Payment", self.payment);
        if let Some(segment) = self.segment {
            builder = builder.header("Livepeer-Segment", segment);
        }
        if self.authorization {
            builder = builder.header(header::AUTHORIZATION, AI_WORKER_AUTHORIZATION);
        }
        let request = builder
            .body(Full::new(Bytes::from(self.body)))
            .expect("request");
        send(self.orch.address(), self.from, self.protocol, request)
            .await
            .map(|(response, _)| response)
    }

    async fn status_and_text(self) -> (StatusCode, String) {
        let response = self.send().await.expect("response");
        (response.status(), body_text(response).await)
    }
}

async fn get_url(orch: &EmulatedOrchestrator, url: &str) -> (StatusCode, String, Bytes) {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (response, _) = send(orch.address(), None, Proto::H1, request)
        .await
        .expect("download");
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (response.status(), content_type, body_bytes(response).await)
}

fn t2i_spec(name: &str, capacity: u32) -> OrchestratorSpec {
    let mut spec = OrchestratorSpec::new(
        name,
        vec![ModelSpec::new(Pipeline::TextToImage).capacity(capacity)],
    );
    spec.gpu_name = "Emulated GPU 9000".into();
    spec
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn prompt(text: &str) -> Value {
    serde_json::json!({"model_id": T2I_MODEL, "prompt": text, "width": 64, "height": 64})
}

// ---------- tests ----------

#[tokio::test]
async fn get_orchestrator_advertises_capabilities_hardware_and_a_fresh_token() {
    let orch = Emulator::start(t2i_spec("grpc", 3)).await.expect("start");
    let info = get_orchestrator(&orch, None).await;

    assert_eq!(info.transcoder, orch.url());
    assert_eq!(info.address, vec![0u8; 20]);
    assert!(
        info.ticket_params.is_none() && info.price_info.is_none(),
        "offchain"
    );
    let caps = info.capabilities.expect("capabilities");
    assert_eq!(caps.bitstring.first().copied(), Some(0xC005FFF));
    assert_eq!(caps.version, "0.9.1");
    let model = &caps.constraints.expect("constraints").per_capability[&27].models[T2I_MODEL];
    assert!(model.warm);
    assert_eq!(
        (
            model.capacity,
            model.runner_version.as_str(),
            model.capacity_in_use
        ),
        (3, "0.14.1", 0)
    );

    let token = info.auth_token.expect("auth token");
    assert_eq!(token.token.len(), 32, "HMAC-SHA256");
    assert!(!token.session_id.is_empty());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now + 1_790..=now + 1_810).contains(&token.expiration),
        "expires in 30 min"
    );

    assert_eq!(info.hardware.len(), 1);
    assert_eq!(info.hardware[0].pipeline, "text-to-image");
    let gpu = &info.hardware[0].gpu_info["0"];
    assert_eq!(
        (gpu.name.as_str(), gpu.major, gpu.minor),
        ("Emulated GPU 9000", 8, 9)
    );
    assert!(info.capabilities_prices.is_empty(), "no price configured");

    // With capabilities in the request: no hardware; still no price (free).
    let info = get_orchestrator(&orch, Some(job_caps(Pipeline::TextToImage, T2I_MODEL))).await;
    assert!(info.hardware.is_empty() && info.price_info.is_none());
    assert_eq!(orch.stats().get_orchestrator_calls, 2);
}

#[tokio::test]
async fn prices_are_listed_per_model_and_summed_for_requests() {
    let mut spec = t2i_spec("priced", 1);
    spec.price = Some(PriceSpec {
        price_per_unit: 5,
        pixels_per_unit: 2,
    });
    let orch = Emulator::start(spec).await.expect("start");
    let info = get_orchestrator(&orch, None).await;
    assert_eq!(info.capabilities_prices.len(), 1);
    let listed = &info.capabilities_prices[0];
    assert_eq!(
        (
            listed.price_per_unit,
            listed.pixels_per_unit,
            listed.capability
        ),
        (5, 2, 27)
    );
    assert_eq!(listed.constraint, T2I_MODEL);
    let info = get_orchestrator(&orch, Some(job_caps(Pipeline::TextToImage, T2I_MODEL))).await;
    let price = info.price_info.expect("price for requested capabilities");
    assert_eq!((price.price_per_unit, price.pixels_per_unit), (5, 2));
}

#[tokio::test]
async fn text_to_image_returns_a_downloadable_png() {
    let orch = Emulator::start(t2i_spec("t2i", 2)).await.expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");

    let response = Job::json(
        &orch,
        Pipeline::TextToImage,
        &token,
        T2I_MODEL,
        prompt("a cat"),
    )
    .send()
    .await
    .expect("job");
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = serde_json::from_slice(&body_bytes(response).await).expect("json");
    let url = json["images"][0]["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("{}/stream/", orch.url())), "{url}");
    assert_eq!(json["images"][0]["nsfw"], Value::Bool(false));
    let (status, content_type, png) = get_url(&orch, &url).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "image/png")
    );
    assert!(png.starts_with(PNG_SIGNATURE));

    // Without the AI-worker Authorization header: inline data URL (legacy gateways).
    let mut legacy = Job::json(
        &orch,
        Pipeline::TextToImage,
        &token,
        T2I_MODEL,
        prompt("a dog"),
    );
    legacy.authorization = false;
    legacy.protocol = Proto::H1;
    let (status, text) = legacy.status_and_text().await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_str(&text).expect("json");
    let data_url = json["images"][0]["url"].as_str().expect("url");
    let encoded = data_url
        .strip_prefix("data:image/png;base64,")
        .expect("data url");
    assert!(
        BASE64
            .decode(encoded)
            .expect("base64")
            .starts_with(PNG_SIGNATURE)
    );

    let (status, _, _) = get_url(&orch, &format!("{}/stream/nope/missing.png", orch.url())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(orch.stats().jobs_served, 2);
}

#[tokio::test]
async fn bad_credentials_and_bodies_are_refused_in_go_livepeer_order() {
    let orch = Emulator::start(t2i_spec("refuse", 1)).await.expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    let job = || {
        Job::json(
            &orch,
            Pipeline::TextToImage,
            &token,
            T2I_MODEL,
            prompt("a cat"),
        )
    };

    let mut bad_payment = job();
    bad_payment.payment = "%%%";
    assert_eq!(
        bad_payment.status_and_text().await.0,
        StatusCode::PAYMENT_REQUIRED
    );

    let mut missing = job();
    missing.segment = None;
    assert_eq!(
        missing.status_and_text().await,
        (StatusCode::FORBIDDEN, "missing auth token\n".into())
    );

    let mut garbage = job();
    garbage.segment = Some("not base64!".into());
    assert_eq!(garbage.status_and_text().await.0, StatusCode::FORBIDDEN);

    let mut forged_token = token.clone();
    forged_token.expiration += 60;
    let forged = Job::json(
        &orch,
        Pipeline::TextToImage,
        &forged_token,
        T2I_MODEL,
        prompt("a cat"),
    );
    assert_eq!(
        forged.status_and_text().await,
        (StatusCode::FORBIDDEN, "invalid auth token\n".into())
    );

    let mut wrong_caps = job();
    wrong_caps.segment = Some(segment_header(&token, Pipeline::Llm, "some-llm"));
    assert_eq!(
        wrong_caps.status_and_text().await,
        (StatusCode::FORBIDDEN, "incompatible capabilities\n".into())
    );

    let mut bad_body = job();
    bad_body.body = b"{not json".to_vec();
    assert_eq!(bad_body.status_and_text().await.0, StatusCode::BAD_REQUEST);

    let (status, text) = Job::json(
        &orch,
        Pipeline::TextToImage,
        &token,
        T2I_MODEL,
        prompt("please reject-me"),
    )
    .status_and_text()
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        text.starts_with("text-to-image container returned 400: "),
        "{text}"
    );

    // A model the segment does not constrain but the orchestrator does not serve: 503.
    let mut unknown_model = job();
    unknown_model.body = serde_json::json!({"model_id": "other/model", "prompt": "x"})
        .to_string()
        .into_bytes();
    unknown_model.segment = Some(
        BASE64.encode(
            proto::SegData {
                auth_token: Some(token.clone()),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    );
    assert_eq!(
        unknown_model.status_and_text().await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "insufficient capacity\n".into()
        )
    );

    let stats = orch.stats();
    assert_eq!(
        (
            stats.rejected_payment,
            stats.rejected_credentials,
            stats.rejected_bad_request,
            stats.failed,
            stats.rejected_capacity
        ),
        (1, 4, 1, 1, 1)
    );
    assert_eq!((stats.jobs_rejected, stats.jobs_served), (8, 0));
}

#[tokio::test]
async fn a_job_beyond_capacity_gets_503_and_capacity_comes_back() {
    let orch = Emulator::start(t2i_spec("capacity", 1))
        .await
        .expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    orch.set_latency(LatencySpec::fixed_ms(60_000));

    let first = {
        let job = Job::json(
            &orch,
            Pipeline::TextToImage,
            &token,
            T2I_MODEL,
            prompt("slow"),
        );
        let (addr, request) = (orch.address(), build(job));
        tokio::spawn(async move {
            send(addr, None, Proto::H2, request)
                .await
                .map(|(r, _)| r.status())
        })
    };
    wait_until("the first job to hold capacity", || {
        orch.stats().in_flight == 1
    })
    .await;

    let second = Job::json(
        &orch,
        Pipeline::TextToImage,
        &token,
        T2I_MODEL,
        prompt("fast"),
    )
    .send()
    .await
    .expect("response");
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let content_type = second.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(body_text(second).await, "insufficient capacity\n");

    // The client gives up: the emulator must release the slot.
    first.abort();
    wait_until("capacity to be released", || orch.stats().in_flight == 0).await;
    orch.set_latency(LatencySpec::fixed_ms(0));
    let (status, _) = Job::json(
        &orch,
        Pipeline::TextToImage,
        &token,
        T2I_MODEL,
        prompt("again"),
    )
    .status_and_text()
    .await;
    assert_eq!(status, StatusCode::OK);
}

fn build(job: Job<'_>) -> Request<Full<Bytes>> {
    Request::post(format!("{}/{}", job.orch.url(), job.pipeline))
        .header(header::CONTENT_TYPE, job.content_type)
        .header("Livepeer-Payment", job.payment)
        .header("Livepeer-Segment", job.segment.unwrap_or_default())
        .header(header::AUTHORIZATION, AI_WORKER_AUTHORIZATION)
        .body(Full::new(Bytes::from(job.body)))
        .expect("request")
}

#[tokio::test]
async fn restart_keeps_the_port_but_changes_certificate_and_secret() {
    let orch = Emulator::start(t2i_spec("restart", 1))
        .await
        .expect("start");
    let old_token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    let (_, old_cert) = send(
        orch.address(),
        None,
        Proto::H1,
        Request::get(format!("{}/stream/x/y", orch.url()))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await
    .expect("connect");
    assert_eq!(Some(old_cert.clone()), orch.cert_der());
    let address = orch.address();

    orch.restart().await.expect("restart");
    assert_eq!(orch.address(), address);
    let info = get_orchestrator(&orch, None).await;
    let (_, new_cert) = send(
        orch.address(),
        None,
        Proto::H1,
        Request::get(format!("{}/stream/x/y", orch.url()))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await
    .expect("connect");
    assert_ne!(old_cert, new_cert, "a restart generates a new certificate");

    let (status, text) = Job::json(
        &orch,
        Pipeline::TextToImage,
        &old_token,
        T2I_MODEL,
        prompt("a cat"),
    )
    .status_and_text()
    .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::FORBIDDEN, "invalid auth token\n")
    );
    let new_token = info.auth_token.expect("token");
    let (status, _) = Job::json(
        &orch,
        Pipeline::TextToImage,
        &new_token,
        T2I_MODEL,
        prompt("a cat"),
    )
    .status_and_text()
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(orch.stats().restarts, 1);
}

fn llm_body(max_tokens: u32, stream: bool) -> Value {
    serde_json::json!({
        "model": "meta-llama/llama-3.1-8B-Instruct",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

fn llm_spec(name: &str) -> OrchestratorSpec {
    OrchestratorSpec::new(name, vec![ModelSpec::new(Pipeline::Llm).capacity(2)])
}

#[tokio::test]
async fn llm_stream_flushes_each_chunk_and_ends_with_a_finish_reason() {
    let mut spec = llm_spec("llm");
    // The last chunk of a 4-token answer cannot exist before 3 × 30 s have passed.
    spec.inter_token_delay_ms = 30_000;
    let orch = Emulator::start(spec).await.expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    let model = "meta-llama/llama-3.1-8B-Instruct";

    let response = Job::json(&orch, Pipeline::Llm, &token, model, llm_body(4, true))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("first chunk arrives long before the last is produced")
        .expect("frame")
        .expect("frame ok")
        .into_data()
        .expect("data frame");
    let first = std::str::from_utf8(&first).expect("utf-8");
    let json: Value =
        serde_json::from_str(first.strip_prefix("data: ").expect("SSE data").trim()).expect("json");
    assert_eq!(json["choices"][0]["finish_reason"], Value::Null);
    assert!(
        json["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    drop(body);
    wait_until("the abandoned stream to release capacity", || {
        orch.stats().in_flight == 0
    })
    .await;

    orch.set_inter_token_delay(Duration::from_millis(1));
    let (status, text) = Job::json(&orch, Pipeline::Llm, &token, model, llm_body(3, true))
        .status_and_text()
        .await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3);
    assert!(!text.contains("[DONE]"));
    let last: Value =
        serde_json::from_str(events[2].strip_prefix("data: ").expect("data")).expect("json");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"]["completion_tokens"], 3);

    // Non-streaming answer, and the max_tokens requirement.
    let (status, text) = Job::json(&orch, Pipeline::Llm, &token, model, llm_body(5, false))
        .status_and_text()
        .await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["choices"][0]["message"]["role"], "assistant");
    assert_eq!(json["usage"]["completion_tokens"], 5);
    let mut no_max = llm_body(1, false);
    no_max.as_object_mut().expect("object").remove("max_tokens");
    assert_eq!(
        Job::json(&orch, Pipeline::Llm, &token, model, no_max)
            .status_and_text()
            .await,
        (StatusCode::BAD_REQUEST, "MaxTokens not specified\n".into())
    );
}

#[tokio::test]
async fn crash_aborts_in_flight_jobs_and_refuses_connections() {
    let orch = Emulator::start(t2i_spec("crash", 1)).await.expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    orch.set_latency(LatencySpec::fixed_ms(60_000));
    let in_flight = {
        let request = build(Job::json(
            &orch,
            Pipeline::TextToImage,
            &token,
            T2I_MODEL,
            prompt("slow"),
        ));
        let addr = orch.address();
        tokio::spawn(async move {
            match send(addr, None, Proto::H2, request).await {
                Ok((response, _)) => response
                    .into_body()
                    .collect()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error),
            }
        })
    };
    wait_until("the job to start", || orch.stats().in_flight == 1).await;

    orch.crash().await;
    assert!(!orch.is_running());
    assert_eq!(
        orch.stats().in_flight,
        0,
        "in-flight work is gone after crash()"
    );
    let outcome = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("client notices")
        .expect("join");
    assert!(
        outcome.is_err(),
        "the in-flight request must fail, got {outcome:?}"
    );
    let refused = TcpStream::connect(orch.address())
        .await
        .expect_err("port closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn every_pipeline_answers_with_valid_output() {
    let mut models: Vec<ModelSpec> = Pipeline::ALL.into_iter().map(ModelSpec::new).collect();
    models.iter_mut().for_each(|m| m.capacity = 2);
    let orch = Emulator::start(OrchestratorSpec::new("all", models))
        .await
        .expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    let png = media::png_image(1);
    let model = |p: Pipeline| p.default_model_id();
    let ok_json = |pair: (StatusCode, String)| -> Value {
        assert_eq!(pair.0, StatusCode::OK, "{}", pair.1);
        serde_json::from_str(&pair.1).expect("json")
    };

    let p = Pipeline::ImageToImage;
    let json = ok_json(
        Job::multipart(
            &orch,
            p,
            &token,
            model(p),
            &[("prompt", "x")],
            ("image", &png),
        )
        .status_and_text()
        .await,
    );
    let (_, ct, bytes) = get_url(&orch, json["images"][0]["url"].as_str().expect("url")).await;
    assert!(ct == "image/png" && bytes.starts_with(PNG_SIGNATURE));

    let p = Pipeline::Upscale;
    ok_json(
        Job::multipart(
            &orch,
            p,
            &token,
            model(p),
            &[("prompt", "x")],
            ("image", &png),
        )
        .status_and_text()
        .await,
    );
    let (status, _) = Job::multipart(
        &orch,
        p,
        &token,
        model(p),
        &[("prompt", "x")],
        ("image", b"not an image"),
    )
    .status_and_text()
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let p = Pipeline::ImageToVideo;
    let json = ok_json(
        Job::multipart(&orch, p, &token, model(p), &[], ("image", &png))
            .status_and_text()
            .await,
    );
    let (_, ct, mp4) = get_url(&orch, json["images"][0]["url"].as_str().expect("url")).await;
    assert_eq!((ct.as_str(), &mp4[4..8]), ("video/mp4", b"ftyp".as_slice()));

    let p = Pipeline::AudioToText;
    let wav = media::wav_audio(2_000);
    let json = ok_json(
        Job::multipart(&orch, p, &token, model(p), &[], ("audio", &wav))
            .status_and_text()
            .await,
    );
    assert_eq!(json["chunks"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        json["chunks"][0]["timestamp"],
        serde_json::json!([0.0, 1.0])
    );
    let short = media::wav_audio(300);
    let (status, _) = Job::multipart(&orch, p, &token, model(p), &[], ("audio", &short))
        .status_and_text()
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let p = Pipeline::SegmentAnything2;
    let json = ok_json(
        Job::multipart(&orch, p, &token, model(p), &[], ("image", &png))
            .status_and_text()
            .await,
    );
    assert!(json["masks"].is_string() && json["scores"].is_string() && json["logits"].is_string());

    let p = Pipeline::ImageToText;
    let json = ok_json(
        Job::multipart(
            &orch,
            p,
            &token,
            model(p),
            &[("prompt", "what")],
            ("image", &png),
        )
        .status_and_text()
        .await,
    );
    assert!(json["text"].is_string());

    let p = Pipeline::TextToSpeech;
    let body = serde_json::json!({"model_id": model(p), "text": "hello world"});
    let json = ok_json(
        Job::json(&orch, p, &token, model(p), body)
            .status_and_text()
            .await,
    );
    let (_, ct, wav) = get_url(&orch, json["audio"]["url"].as_str().expect("url")).await;
    assert_eq!(ct, "audio/wav");
    assert!(media::wav_duration_ms(&wav).is_ok_and(|ms| ms >= 1_000));

    let p = Pipeline::LiveVideoToVideo;
    let body = serde_json::json!({"model_id": model(p), "params": {}, "stream_id": "s1", "gateway_request_id": "g1"});
    let json = ok_json(
        Job::json(&orch, p, &token, model(p), body)
            .status_and_text()
            .await,
    );
    let mid = json["manifest_id"].as_str().expect("manifest id");
    assert_eq!(
        json["subscribe_url"],
        format!("{}/ai/trickle/{mid}-out", orch.url())
    );
    assert!(json["control_url"].is_string() && json["events_url"].is_string());
}

#[tokio::test]
async fn callers_from_a_far_region_wait_longer() {
    let mut spec = t2i_spec("regions", 1);
    spec.region_latency_ms = BTreeMap::from([("127.0.0.2".parse().expect("ip"), 300)]);
    let orch = Emulator::start(spec).await.expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    let mut far = Job::json(
        &orch,
        Pipeline::TextToImage,
        &token,
        T2I_MODEL,
        prompt("far"),
    );
    far.from = Some("127.0.0.2:0".parse().expect("addr"));
    let started = tokio::time::Instant::now();
    assert_eq!(far.status_and_text().await.0, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "region delay applied"
    );
}

#[tokio::test]
async fn injected_errors_follow_the_error_rate() {
    let mut spec = t2i_spec("errors", 4);
    spec.error_rate = 1.0;
    let orch = Emulator::start(spec).await.expect("start");
    let token = get_orchestrator(&orch, None)
        .await
        .auth_token
        .expect("token");
    let (status, text) = Job::json(&orch, Pipeline::TextToImage, &token, T2I_MODEL, prompt("x"))
        .status_and_text()
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !text.contains("returned 400"),
        "injected errors are not runner rejections: {text}"
    );
    orch.set_error_rate(0.0);
    let (status, _) = Job::json(&orch, Pipeline::TextToImage, &token, T2I_MODEL, prompt("x"))
        .status_and_text()
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_fleet_starts_distinct_orchestrators_and_plaintext_mode_speaks_h2c() {
    let mut template = t2i_spec("fleet", 1);
    template.plaintext = true;
    let fleet = Fleet::start(&template, 3).await.expect("fleet");
    let urls = fleet.urls();
    assert_eq!(urls.len(), 3);
    assert!(urls.iter().all(|u| u.starts_with("http://127.0.0.1:")));
    let mut unique = urls.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3);

    // gRPC over h2c (prior knowledge) to the second one.
    let orch = fleet.get(1).expect("orchestrator");
    assert_eq!(orch.name(), "fleet-1");
    assert!(orch.cert_der().is_none());
    let tcp = TcpStream::connect(orch.address()).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c");
    tokio::spawn(conn);
    let message = proto::OrchestratorRequest::default().encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let request = Request::post(format!("{}/net.Orchestrator/GetOrchestrator", orch.url()))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(framed)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let bytes = body_bytes(response).await;
    let info = proto::OrchestratorInfo::decode(&bytes[5..]).expect("info");
    assert_eq!(info.transcoder, orch.url());
}

#[tokio::test]
async fn dropping_the_handle_stops_serving() {
    let orch = Emulator::start(t2i_spec("dropped", 1))
        .await
        .expect("start");
    let address = orch.address();
    get_orchestrator(&orch, None).await;
    drop(orch);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while TcpStream::connect(address).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "port still open after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `livepeer-direct` against `url`; returns its exit status and stdout.
async fn livepeer_direct(url: &str) -> (std::process::ExitStatus, String, String) {
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_livepeer-direct"))
            .args(["--orchestrator", url, "--pipeline", "llm"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("livepeer-direct finished in time")
    .expect("livepeer-direct ran");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn livepeer_direct_prints_headers_a_plain_client_can_submit_with() {
    let orch = Emulator::start(llm_spec("direct")).await.expect("emulator");
    let (status, stdout, stderr) = livepeer_direct(orch.url()).await;
    assert!(status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let headers: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|line| line.split_once(": "))
        .collect();
    let job_url = lines
        .iter()
        .find_map(|line| line.strip_prefix("URL "))
        .expect("a URL line");
    assert_eq!(job_url, format!("{}/llm", orch.url()));

    let post = |with_credentials: bool| {
        let mut request = Request::post(job_url).header(header::CONTENT_TYPE, "application/json");
        if with_credentials {
            for (name, value) in &headers {
                request = request.header(*name, *value);
            }
        }
        request
            .body(Full::new(Bytes::from(llm_body(4, false).to_string())))
            .expect("request")
    };
    // With the printed headers the orchestrator runs the job.
    let (response, _) = send(orch.address(), None, Proto::H1, post(true))
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = serde_json::from_slice(&body_bytes(response).await).expect("json");
    assert!(
        answer["choices"][0]["message"]["content"].is_string(),
        "{answer}"
    );
    // Without them it refuses: the headers are what made the difference.
    let (response, _) = send(orch.address(), None, Proto::H1, post(false))
        .await
        .expect("sent");
    assert!(response.status().is_client_error(), "{}", response.status());
}

#[tokio::test]
async fn livepeer_direct_fails_clearly_when_the_orchestrator_is_down() {
    let orch = Emulator::start(llm_spec("gone")).await.expect("emulator");
    let url = orch.url().to_owned();
    orch.crash().await;
    let (status, stdout, stderr) = livepeer_direct(&url).await;
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("GetOrchestrator"), "{stderr}");
}
