//! The client against a minimal in-process orchestrator on 127.0.0.1: gRPC
//! and HTTP on one port, over TLS with a fresh self-signed certificate (as
//! go-livepeer) and over plaintext h2c (`http://`, go-livepeer v0.9+).
//! The full emulator lives in `simulations`; this checks only the client.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use livepeer::credentials::decode_header;
use livepeer::proto::orchestrator_server::{Orchestrator, OrchestratorServer};
use livepeer::{
    AiResponse, ClientOptions, ErrorClass, Offchain, OrchestratorClient, OrchestratorError,
    Session, job_capabilities, proto,
};
use mesh_core::{FormPart, JobBody, JobSpec, OrchestratorId, Pipeline};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfake";

/// What the fake orchestrator saw.
#[derive(Default)]
struct Seen {
    requests: Vec<proto::OrchestratorRequest>,
    grpc_versions: Vec<http::Version>,
}

#[derive(Clone)]
struct FakeOrchestrator {
    base_url: String,
    seen: Arc<Mutex<Seen>>,
    /// The SSE handler takes its second chunk from here.
    llm_chunks: Arc<tokio::sync::Mutex<Option<mpsc::Receiver<Bytes>>>>,
}

#[tonic::async_trait]
impl Orchestrator for FakeOrchestrator {
    async fn get_orchestrator(
        &self,
        request: tonic::Request<proto::OrchestratorRequest>,
    ) -> Result<tonic::Response<proto::OrchestratorInfo>, tonic::Status> {
        let request = request.into_inner();
        let with_caps = request.capabilities.is_some();
        self.seen.lock().unwrap().requests.push(request);
        let mut capabilities = job_capabilities(Pipeline::TextToImage, "sdxl");
        capabilities.version = "0.9.1".into();
        let mut info = proto::OrchestratorInfo {
            transcoder: format!("{}/", self.base_url),
            address: vec![0; 20],
            capabilities: Some(capabilities),
            auth_token: Some(proto::AuthToken {
                token: vec![7; 32],
                session_id: "fake-session".into(),
                expiration: i64::MAX / 2,
            }),
            ..Default::default()
        };
        if !with_caps {
            info.capabilities_prices = vec![proto::PriceInfo {
                price_per_unit: 0,
                pixels_per_unit: 1,
                capability: 27,
                constraint: "sdxl".into(),
            }];
            info.hardware = vec![proto::HardwareInformation {
                pipeline: "text-to-image".into(),
                model_id: "sdxl".into(),
                gpu_info: HashMap::from([(
                    "0".into(),
                    proto::GpuComputeInfo {
                        id: "0".into(),
                        name: "Fake GPU".into(),
                        ..Default::default()
                    },
                )]),
            }];
        }
        Ok(tonic::Response::new(info))
    }

    async fn ping(
        &self,
        request: tonic::Request<proto::PingPong>,
    ) -> Result<tonic::Response<proto::PingPong>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

type Body = tonic::body::Body;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    response
}

impl FakeOrchestrator {
    async fn handle(self, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if is_grpc {
            self.seen
                .lock()
                .unwrap()
                .grpc_versions
                .push(request.version());
            let mut grpc = OrchestratorServer::new(self.clone());
            use tonic::codegen::Service as _;
            return Ok(grpc
                .call(request)
                .await
                .unwrap_or_else(|never| match never {}));
        }
        let path = request.uri().path().to_owned();
        if request.method() == http::Method::GET {
            return Ok(match path.as_str() {
                "/stream/a.png" => {
                    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(PNG))));
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, "image/png".parse().unwrap());
                    response
                }
                "/big" => Response::new(Body::new(Full::new(Bytes::from(vec![0u8; 1000])))),
                _ => text(StatusCode::NOT_FOUND, "not found"),
            });
        }
        // Check the credentials as an offchain orchestrator does (403 on failure).
        let headers = request.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let segment = header("Livepeer-Segment")
            .and_then(|value| decode_header::<proto::SegData>(&value).ok());
        let credentials_ok = header("Authorization").as_deref() == Some("Livepeer-AI-Worker-1.0")
            && header("Livepeer-Payment").as_deref() == Some("")
            && segment.is_some_and(|s| {
                s.auth_token.is_some_and(|t| t.session_id == "fake-session")
                    && s.manifest_id.ends_with(b"_sdxl")
            });
        if !credentials_ok {
            return Ok(text(StatusCode::FORBIDDEN, "invalid auth token"));
        }
        let content_type = header("content-type").unwrap_or_default();
        let body = request
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Ok(match path.as_str() {
            "/text-to-image" if content_type == "application/json" && body.starts_with(b"{") => {
                let json = format!(
                    r#"{{"images":[{{"url":"{}/stream/a.png","seed":1,"nsfw":false}}]}}"#,
                    self.base_url
                );
                Response::new(Body::new(Full::new(Bytes::from(json))))
            }
            "/image-to-image"
                if content_type.starts_with("multipart/form-data; boundary=")
                    && body.windows(PNG.len()).any(|w| w == PNG) =>
            {
                text(StatusCode::OK, r#"{"images":[]}"#)
            }
            "/llm" => {
                let Some(mut rest) = self.llm_chunks.lock().await.take() else {
                    return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "llm used twice"));
                };
                let (sender, receiver) = mpsc::channel::<Bytes>(4);
                sender
                    .send(Bytes::from_static(b"data: {\"n\":1}\n\n"))
                    .await
                    .unwrap();
                tokio::spawn(async move {
                    if let Some(chunk) = rest.recv().await {
                        let _ = sender.send(chunk).await;
                    }
                });
                let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
                    let chunk = receiver.recv().await?;
                    Some((Ok::<_, Infallible>(Frame::data(chunk)), receiver))
                });
                let mut response = Response::new(Body::new(StreamBody::new(stream)));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    "text/event-stream".parse().unwrap(),
                );
                response
            }
            "/upscale" => text(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity\n"),
            _ => text(StatusCode::BAD_REQUEST, "bad request"),
        })
    }
}

struct Running {
    id: OrchestratorId,
    seen: Arc<Mutex<Seen>>,
    llm: mpsc::Sender<Bytes>,
}

/// Starts the fake on 127.0.0.1:0, with TLS (fresh self-signed certificate)
/// or plaintext. Its tasks end with the test's runtime.
async fn start(tls: bool) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let scheme = if tls { "https" } else { "http" };
    let (llm, llm_receiver) = mpsc::channel(1);
    let fake = FakeOrchestrator {
        base_url: format!("{scheme}://{address}"),
        seen: Arc::default(),
        llm_chunks: Arc::new(tokio::sync::Mutex::new(Some(llm_receiver))),
    };
    let seen = fake.seen.clone();
    let acceptor = tls.then(|| {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let fake = fake.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| fake.clone().handle(request));
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    Running {
        id: OrchestratorId::parse(&format!("{scheme}://{address}")).unwrap(),
        seen,
        llm,
    }
}

fn job(pipeline: Pipeline, body: JobBody) -> JobSpec {
    JobSpec {
        pipeline,
        model_id: "sdxl".into(),
        body,
        stream: false,
        units: 1,
    }
}

async fn submit_json(client: &OrchestratorClient, session: &Session) -> Bytes {
    let job = job(
        Pipeline::TextToImage,
        JobBody::Json(br#"{"prompt":"a cat"}"#.to_vec()),
    );
    match client
        .submit(session, &job, &Offchain, BOUND)
        .await
        .unwrap()
    {
        AiResponse::Json(body) => body,
        other => panic!("expected JSON, got {other:?}"),
    }
}

#[tokio::test]
async fn talks_to_a_tls_orchestrator_with_a_self_signed_certificate() {
    let orchestrator = start(true).await;
    let client = OrchestratorClient::with_options(ClientOptions::default()).unwrap();

    // Discovery: no capabilities, so prices and GPUs come back.
    let session = client
        .get_orchestrator(&orchestrator.id, None, BOUND)
        .await
        .unwrap();
    assert_eq!(session.transcoder, orchestrator.id.as_str());
    assert_eq!(session.info.prices.len(), 1);
    assert_eq!(
        session
            .info
            .gpu_names(Pipeline::TextToImage, "sdxl")
            .collect::<Vec<_>>(),
        vec!["Fake GPU"]
    );
    assert_eq!(session.info.capabilities.version, "0.9.1");
    assert!(!session.needs_refresh(0));

    // Session for a job: the request carries the job capabilities offchain.
    let caps = job_capabilities(Pipeline::TextToImage, "sdxl");
    let session = client
        .get_orchestrator(&orchestrator.id, Some(caps.clone()), BOUND)
        .await
        .unwrap();
    {
        let seen = orchestrator.seen.lock().unwrap();
        assert_eq!(seen.requests.len(), 2);
        assert_eq!(seen.requests[0].address, vec![0; 20]);
        assert_eq!(seen.requests[0].capabilities, None);
        assert_eq!(seen.requests[1].capabilities, Some(caps));
        assert!(
            seen.grpc_versions
                .iter()
                .all(|v| *v == http::Version::HTTP_2)
        );
    }

    // JSON job, then download the result it points at.
    let body = submit_json(&client, &session).await;
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let url = reply["images"][0]["url"].as_str().unwrap();
    let (content_type, media) = client.fetch_media(url, 1 << 20, BOUND).await.unwrap();
    assert_eq!((content_type.as_str(), &media[..]), ("image/png", PNG));
    let too_big = client
        .fetch_media(&format!("{}/big", orchestrator.id), 10, BOUND)
        .await
        .unwrap_err();
    assert_eq!(too_big, OrchestratorError::BodyTooLarge { limit_bytes: 10 });

    // Multipart job.
    let image = FormPart {
        name: "image".into(),
        file_name: Some("cat.png".into()),
        content_type: Some("image/png".into()),
        data: PNG.to_vec(),
    };
    let prompt = FormPart {
        name: "prompt".into(),
        file_name: None,
        content_type: None,
        data: b"a cat".to_vec(),
    };
    let multipart = job(
        Pipeline::ImageToImage,
        JobBody::Multipart(vec![image, prompt]),
    );
    let response = client
        .submit(&session, &multipart, &Offchain, BOUND)
        .await
        .unwrap();
    assert!(matches!(response, AiResponse::Json(ref body) if &body[..] == br#"{"images":[]}"#));

    // Orchestrator errors classify per §2.5.
    let capped = job(Pipeline::Upscale, JobBody::Json(b"{}".to_vec()));
    let error = client
        .submit(&session, &capped, &Offchain, BOUND)
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::TryAnother, "{error}");
    let mut stale = session.clone();
    stale.auth_token = Some(proto::AuthToken::default());
    let json = job(Pipeline::TextToImage, JobBody::Json(b"{}".to_vec()));
    let error = client
        .submit(&stale, &json, &Offchain, BOUND)
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::RefreshAndRetrySame, "{error}");
}

#[tokio::test]
async fn event_streams_arrive_chunk_by_chunk() {
    let orchestrator = start(true).await;
    let client = OrchestratorClient::new().unwrap();
    let session = client
        .get_orchestrator(&orchestrator.id, None, BOUND)
        .await
        .unwrap();
    let llm = job(
        Pipeline::Llm,
        JobBody::Json(br#"{"stream":true,"max_tokens":8}"#.to_vec()),
    );
    let AiResponse::Stream(mut stream) = client
        .submit(&session, &llm, &Offchain, BOUND)
        .await
        .unwrap()
    else {
        panic!("expected a stream");
    };
    // The first chunk arrives while the orchestrator still holds the second.
    let first = timeout(BOUND, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: {\"n\":1}\n\n");
    orchestrator
        .llm
        .send(Bytes::from_static(b"data: {\"n\":2}\n\n"))
        .await
        .unwrap();
    let second = timeout(BOUND, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&second[..], b"data: {\"n\":2}\n\n");
    let end = timeout(BOUND, stream.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn talks_to_a_plaintext_h2c_orchestrator() {
    let orchestrator = start(false).await;
    assert!(orchestrator.id.is_plaintext());
    let client = OrchestratorClient::new().unwrap();
    let caps = job_capabilities(Pipeline::TextToImage, "sdxl");
    let session = client
        .get_orchestrator(&orchestrator.id, Some(caps), BOUND)
        .await
        .unwrap();
    assert_eq!(session.transcoder, orchestrator.id.as_str());
    assert_eq!(
        orchestrator.seen.lock().unwrap().grpc_versions,
        vec![http::Version::HTTP_2]
    );
    let body = submit_json(&client, &session).await;
    assert!(body.starts_with(b"{\"images\""));
}

#[tokio::test]
async fn a_silent_orchestrator_times_out() {
    // Accepts TCP but never speaks TLS.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let held = listener.accept().await;
        let _ = stopped.await;
        drop(held);
    });
    let client = OrchestratorClient::new().unwrap();
    let id = OrchestratorId::parse(&address.to_string()).unwrap();
    let error = client
        .get_orchestrator(&id, None, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(error, OrchestratorError::Timeout { timeout_ms: 300 });
    assert_eq!(error.class(), ErrorClass::Failed);
}
