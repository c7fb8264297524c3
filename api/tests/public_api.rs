//! The public router driven through `tower::ServiceExt::oneshot` with fake
//! ports: every pipeline's parsing, streaming, and every error path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::ports::{
    Authenticator, Caller, JobOutput, JobRunner, MediaObject, MediaStore, Readiness,
    ReadinessReport, RequestContext,
};
use api::probe::fixtures;
use api::{ApiConfig, PublicState, public_router};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use mesh_core::{
    Attribution, FormPart, JobBody, JobError, JobSpec, OrchestratorId, Pipeline, RegionId,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::ServiceExt;

const KEY: &str = "sk-test";

// ---------------------------------------------------------------------------
// Fakes

enum Behaviour {
    Complete(&'static str),
    Fail(JobError),
    Stream(mpsc::Receiver<Result<Bytes, JobError>>),
    Hang,
}

struct FakeRunner {
    calls: Mutex<Vec<(JobSpec, RequestContext)>>,
    behaviour: Mutex<Option<Behaviour>>,
}

impl FakeRunner {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Some(behaviour)),
        })
    }

    fn calls(&self) -> Vec<(JobSpec, RequestContext)> {
        self.calls.lock().expect("lock").clone()
    }
}

fn attribution() -> Attribution {
    Attribution {
        orchestrator: OrchestratorId::parse("https://127.0.0.1:9001").expect("valid id"),
        region: Some(RegionId::new("fra").expect("valid region")),
        attempts: 2,
    }
}

impl JobRunner for FakeRunner {
    fn run(
        &self,
        job: JobSpec,
        context: RequestContext,
    ) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        self.calls.lock().expect("lock").push((job, context));
        let behaviour = {
            let mut slot = self.behaviour.lock().expect("lock");
            match slot.as_ref() {
                Some(Behaviour::Complete(body)) => Some(Behaviour::Complete(body)),
                Some(Behaviour::Fail(error)) => Some(Behaviour::Fail(error.clone())),
                Some(Behaviour::Hang) => Some(Behaviour::Hang),
                Some(Behaviour::Stream(_)) | None => slot.take(),
            }
        };
        async move {
            match behaviour {
                Some(Behaviour::Complete(body)) => Ok(JobOutput::Complete {
                    attribution: attribution(),
                    body: Bytes::from_static(body.as_bytes()),
                }),
                Some(Behaviour::Fail(error)) => Err(error),
                Some(Behaviour::Stream(receiver)) => {
                    let chunks =
                        futures_util::stream::unfold(receiver, |mut receiver| async move {
                            receiver.recv().await.map(|item| (item, receiver))
                        });
                    Ok(JobOutput::Stream {
                        attribution: attribution(),
                        chunks: Box::pin(chunks),
                    })
                }
                Some(Behaviour::Hang) => std::future::pending().await,
                None => Err(JobError::Internal("fake stream already used".into())),
            }
        }
        .boxed()
    }
}

struct FakeMedia;
impl MediaStore for FakeMedia {
    fn get(&self, id: &str) -> Option<MediaObject> {
        (id == "abc123").then(|| MediaObject {
            content_type: "image/png".into(),
            bytes: Bytes::from_static(b"PNGDATA"),
        })
    }
}

struct FakeReadiness(bool);
impl Readiness for FakeReadiness {
    fn readiness(&self) -> ReadinessReport {
        ReadinessReport {
            ready: self.0,
            reasons: if self.0 {
                vec![]
            } else {
                vec!["no orchestrators discovered".into()]
            },
        }
    }
}

struct FakeAuth;
impl Authenticator for FakeAuth {
    fn authenticate(&self, bearer_key: &str) -> Option<Caller> {
        (bearer_key == KEY).then(|| Caller {
            tenant: "acme".into(),
            tier: "default".into(),
        })
    }
}

fn router_with(runner: Arc<FakeRunner>, config: ApiConfig, ready: bool) -> Router {
    public_router(PublicState {
        jobs: runner,
        media: Arc::new(FakeMedia),
        readiness: Arc::new(FakeReadiness(ready)),
        authenticator: Arc::new(FakeAuth),
        billing: Arc::new(api::NoBilling),
        admission: Arc::new(api::Unlimited),
        config,
        capabilities: None,
    })
}

fn router(runner: Arc<FakeRunner>) -> Router {
    router_with(runner, ApiConfig::default(), true)
}

// ---------------------------------------------------------------------------
// Request builders

fn json_request(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .header("host", "gw.example:8443")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

const BOUNDARY: &str = "XyZzY-boundary";

enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, Vec<u8>),
}

fn multipart_body(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            Part::File(name, file_name, data) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(data);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn multipart_request(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header("authorization", format!("Bearer {KEY}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .expect("request")
}

async fn send(router: Router, request: Request<Body>) -> Response<Body> {
    router.oneshot(request).await.expect("infallible")
}

async fn body_json(response: Response<Body>) -> Value {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

fn job_json(spec: &JobSpec) -> Value {
    match &spec.body {
        JobBody::Json(bytes) => serde_json::from_slice(bytes).expect("valid JSON"),
        JobBody::Multipart(_) => panic!("expected JSON body"),
    }
}

fn job_parts(spec: &JobSpec) -> &[FormPart] {
    match &spec.body {
        JobBody::Multipart(parts) => parts,
        JobBody::Json(_) => panic!("expected multipart body"),
    }
}

fn part<'a>(parts: &'a [FormPart], name: &str) -> &'a [u8] {
    &parts
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("part {name} missing"))
        .data
}

/// Asserts an error response: status, request id, both envelope shapes.
async fn assert_error(response: Response<Body>, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id on every response");
    assert!(!id.is_empty());
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let body = body_json(response).await;
    assert_eq!(body["error"]["code"], code, "body: {body}");
    let message = body["error"]["message"].as_str().expect("error.message");
    assert!(!message.is_empty());
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        assert!(
            body["detail"].is_array(),
            "422 detail is FastAPI's list: {body}"
        );
        assert!(body["detail"][0]["loc"].is_array());
        assert!(body["detail"][0]["msg"].is_string());
        assert!(body["detail"][0]["type"].is_string());
    } else {
        assert_eq!(
            body["detail"]["msg"], message,
            "detail.msg mirrors error.message"
        );
    }
    body
}

// ---------------------------------------------------------------------------
// The nine pipelines

const IMAGE_RESPONSE: &str = r#"{"images":[{"url":"https://gw/media/x","seed":1,"nsfw":false}]}"#;

#[tokio::test]
async fn text_to_image_fills_defaults_and_counts_output_pixels() {
    let runner = FakeRunner::new(Behaviour::Complete(IMAGE_RESPONSE));
    let response = send(
        router(runner.clone()),
        json_request(
            "/text-to-image",
            r#"{"prompt":"a cat","num_images_per_prompt":2,"seed":7}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-gatemesh-orchestrator"],
        "https://127.0.0.1:9001"
    );
    assert_eq!(response.headers()["x-gatemesh-region"], "fra");
    assert_eq!(response.headers()["x-gatemesh-attempts"], "2");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, IMAGE_RESPONSE.as_bytes());

    let calls = runner.calls();
    assert_eq!(calls.len(), 1);
    let (spec, context) = &calls[0];
    assert_eq!(spec.pipeline, Pipeline::TextToImage);
    assert_eq!(spec.model_id, "stabilityai/sdxl-turbo");
    assert_eq!(spec.units, 512 * 512 * 2);
    assert!(!spec.stream);
    let sent = job_json(spec);
    assert_eq!(sent["model_id"], "stabilityai/sdxl-turbo");
    assert_eq!(sent["prompt"], "a cat");
    assert_eq!(sent["height"], 512);
    assert_eq!(sent["width"], 512);
    assert_eq!(sent["seed"], 7);
    assert_eq!(context.public_base_url, "https://gw.example:8443");
    assert_eq!(context.caller.tenant, "acme");
    assert!(context.deadline <= Duration::from_secs(120));
    assert!(context.deadline > Duration::from_secs(110));
    assert!(!context.request_id.is_empty());
}

#[tokio::test]
async fn text_to_image_keeps_explicit_model_and_size() {
    let runner = FakeRunner::new(Behaviour::Complete(IMAGE_RESPONSE));
    let response = send(
        router(runner.clone()),
        json_request(
            "/text-to-image",
            r#"{"prompt":"x","model_id":"ByteDance/SDXL-Lightning","height":768,"width":1024}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "ByteDance/SDXL-Lightning");
    assert_eq!(spec.units, 768 * 1024);
}

#[tokio::test]
async fn image_to_image_counts_input_pixels_times_images() {
    let runner = FakeRunner::new(Behaviour::Complete(IMAGE_RESPONSE));
    let body = multipart_body(&[
        Part::Text("prompt", "make it blue"),
        Part::File("image", "in.png", fixtures::png_header(640, 480)),
        Part::Text("num_images_per_prompt", "3"),
        Part::Text("strength", "0.5"),
    ]);
    let response = send(
        router(runner.clone()),
        multipart_request("/image-to-image", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "stabilityai/sdxl-turbo");
    assert_eq!(spec.units, 640 * 480 * 3);
    let parts = job_parts(spec);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "prompt",
            "image",
            "num_images_per_prompt",
            "strength",
            "model_id"
        ]
    );
    assert_eq!(parts[1].file_name.as_deref(), Some("in.png"));
    assert_eq!(parts[1].data, fixtures::png_header(640, 480));
    assert_eq!(part(parts, "model_id"), b"stabilityai/sdxl-turbo");
}

#[tokio::test]
async fn image_to_video_prices_25_frames_of_the_output_size() {
    let runner = FakeRunner::new(Behaviour::Complete(IMAGE_RESPONSE));
    let body = multipart_body(&[
        Part::File("image", "in.jpg", fixtures::jpeg_header(300, 200)),
        Part::Text("model_id", "custom/svd"),
    ]);
    let response = send(
        router(runner.clone()),
        multipart_request("/image-to-video", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "custom/svd");
    assert_eq!(spec.units, 1024 * 576 * 25);
    let parts = job_parts(spec);
    assert_eq!(part(parts, "width"), b"1024");
    assert_eq!(part(parts, "height"), b"576");
    assert_eq!(part(parts, "model_id"), b"custom/svd");
}

#[tokio::test]
async fn upscale_counts_input_pixels() {
    let runner = FakeRunner::new(Behaviour::Complete(IMAGE_RESPONSE));
    let body = multipart_body(&[
        Part::Text("prompt", "sharper"),
        Part::File("image", "in.jpg", fixtures::jpeg_header(256, 128)),
        Part::Text("safety_check", "false"),
    ]);
    let response = send(router(runner.clone()), multipart_request("/upscale", body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "stabilityai/stable-diffusion-x4-upscaler");
    assert_eq!(spec.units, 256 * 128);
}

#[tokio::test]
async fn audio_to_text_counts_wav_milliseconds_and_zero_for_other_formats() {
    let runner = FakeRunner::new(Behaviour::Complete(r#"{"text":"hi","chunks":[]}"#));
    let wav = fixtures::wav(8000, 8000 * 4 + 17);
    let body = multipart_body(&[
        Part::File("audio", "a.wav", wav),
        Part::Text("return_timestamps", "word"),
    ]);
    let response = send(
        router(runner.clone()),
        multipart_request("/audio-to-text", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = multipart_body(&[Part::File("audio", "a.mp3", b"ID3\x04 mp3 bytes".to_vec())]);
    let response = send(
        router(runner.clone()),
        multipart_request("/audio-to-text", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let calls = runner.calls();
    assert_eq!(calls[0].0.units, 4000);
    assert_eq!(calls[0].0.model_id, "openai/whisper-large-v3");
    assert_eq!(part(job_parts(&calls[0].0), "return_timestamps"), b"word");
    assert_eq!(calls[1].0.units, 0);
}

#[tokio::test]
async fn segment_anything_2_counts_input_pixels() {
    let runner = FakeRunner::new(Behaviour::Complete(
        r#"{"masks":"[]","scores":"[]","logits":"[]"}"#,
    ));
    let body = multipart_body(&[
        Part::File("image", "in.png", fixtures::png_header(100, 50)),
        Part::Text("point_coords", "[[10,20]]"),
        Part::Text("multimask_output", "True"),
    ]);
    let response = send(
        router(runner.clone()),
        multipart_request("/segment-anything-2", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "facebook/sam2-hiera-large");
    assert_eq!(spec.units, 5000);
    assert_eq!(part(job_parts(spec), "point_coords"), b"[[10,20]]");
}

#[tokio::test]
async fn llm_defaults_max_tokens_and_model() {
    let runner = FakeRunner::new(Behaviour::Complete(
        r#"{"id":"1","model":"m","created":0,"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"choices":[]}"#,
    ));
    let response = send(
        router(runner.clone()),
        json_request("/llm", r#"{"messages":[{"role":"user","content":"hi"}]}"#),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "meta-llama/llama-3.1-8B-Instruct");
    assert_eq!(spec.units, 256);
    assert!(!spec.stream);
    let sent = job_json(spec);
    assert_eq!(sent["model"], "meta-llama/llama-3.1-8B-Instruct");
    assert_eq!(sent["max_tokens"], 256);
    assert_eq!(sent["stream"], false);
    assert!(
        sent.get("model_id").is_none(),
        "llm names its model `model`"
    );
}

#[tokio::test]
async fn image_to_text_counts_input_pixels() {
    let runner = FakeRunner::new(Behaviour::Complete(r#"{"text":"a cat"}"#));
    let body = multipart_body(&[
        Part::File("image", "in.png", fixtures::png_header(32, 32)),
        Part::Text("prompt", "describe"),
        Part::Text("model_id", ""),
    ]);
    let response = send(
        router(runner.clone()),
        multipart_request("/image-to-text", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "Salesforce/blip-image-captioning-large");
    assert_eq!(spec.units, 1024);
    let parts = job_parts(spec);
    assert_eq!(
        parts.len(),
        3,
        "empty model_id replaced in place, not appended"
    );
    assert_eq!(
        part(parts, "model_id"),
        b"Salesforce/blip-image-captioning-large"
    );
}

#[tokio::test]
async fn text_to_speech_counts_characters() {
    let runner = FakeRunner::new(Behaviour::Complete(
        r#"{"audio":{"url":"https://gw/media/a"}}"#,
    ));
    let response = send(
        router(runner.clone()),
        json_request(
            "/text-to-speech",
            r#"{"text":"héllo","description":"calm"}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (spec, _) = &runner.calls()[0];
    assert_eq!(spec.model_id, "parler-tts/parler-tts-large-v1");
    assert_eq!(spec.units, 5);
    assert_eq!(job_json(spec)["description"], "calm");
}

// ---------------------------------------------------------------------------
// Streaming

async fn next_data(body: &mut Body) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("frame within 5 s")?
            .expect("frame ok");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

#[tokio::test]
async fn llm_stream_relays_each_chunk_as_it_arrives() {
    let (sender, receiver) = mpsc::channel(4);
    let runner = FakeRunner::new(Behaviour::Stream(receiver));
    sender
        .send(Ok(Bytes::from_static(b"data: {\"n\":1}\n\n")))
        .await
        .expect("send");
    let response = send(
        router(runner.clone()),
        json_request(
            "/llm",
            r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":10}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-gatemesh-attempts"], "2");
    assert!(response.headers().contains_key("x-request-id"));
    let (spec, _) = &runner.calls()[0];
    assert!(spec.stream);
    assert_eq!(spec.units, 10);

    let mut body = response.into_body();
    // The first chunk reaches the client while the producer still holds
    // the last one back.
    assert_eq!(
        next_data(&mut body).await.as_deref(),
        Some(&b"data: {\"n\":1}\n\n"[..])
    );
    sender
        .send(Ok(Bytes::from_static(b"data: {\"n\":2}\n\n")))
        .await
        .expect("send");
    assert_eq!(
        next_data(&mut body).await.as_deref(),
        Some(&b"data: {\"n\":2}\n\n"[..])
    );
    drop(sender);
    assert_eq!(next_data(&mut body).await, None);
}

#[tokio::test]
async fn stream_error_after_first_chunk_ends_the_stream_cleanly() {
    let (sender, receiver) = mpsc::channel(4);
    let runner = FakeRunner::new(Behaviour::Stream(receiver));
    sender
        .send(Ok(Bytes::from_static(b"data: 1\n\n")))
        .await
        .expect("send");
    sender
        .send(Err(JobError::Internal("orchestrator went away".into())))
        .await
        .expect("send");
    sender
        .send(Ok(Bytes::from_static(b"data: never\n\n")))
        .await
        .expect("send");
    let response = send(
        router(runner),
        json_request(
            "/llm",
            r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("clean end")
        .to_bytes();
    assert_eq!(body, &b"data: 1\n\n"[..]);
}

#[tokio::test]
async fn stream_error_before_any_chunk_gets_an_error_status() {
    let (sender, receiver) = mpsc::channel(4);
    let runner = FakeRunner::new(Behaviour::Stream(receiver));
    sender
        .send(Err(JobError::AttemptsExhausted {
            attempts: 3,
            last_error: "boom".into(),
        }))
        .await
        .expect("send");
    let response = send(
        router(runner),
        json_request(
            "/llm",
            r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
    )
    .await;
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "attempts_exhausted",
    )
    .await;
}

// ---------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn missing_and_unknown_keys_get_401_with_www_authenticate() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let mut request = json_request("/text-to-image", r#"{"prompt":"x"}"#);
    request.headers_mut().remove("authorization");
    let response = send(router(runner.clone()), request).await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_api_key").await;

    let mut request = json_request("/text-to-image", r#"{"prompt":"x"}"#);
    request
        .headers_mut()
        .insert("authorization", "Bearer nope".parse().expect("header"));
    let response = send(router(runner.clone()), request).await;
    assert!(response.headers().contains_key("www-authenticate"));
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_api_key").await;

    let mut request = json_request("/text-to-image", r#"{"prompt":"x"}"#);
    request.headers_mut().insert(
        "authorization",
        format!("Basic {KEY}").parse().expect("header"),
    );
    let response = send(router(runner.clone()), request).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_api_key").await;
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let mut request = json_request("/text-to-image", r#"{"prompt":"x"}"#);
    request.headers_mut().insert(
        "authorization",
        format!("bearer {KEY}").parse().expect("header"),
    );
    assert_eq!(send(router(runner), request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let response = send(
        router(runner.clone()),
        json_request("/llm", r#"{"messages": ["#),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn wrong_content_type_gets_415() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let mut request = json_request("/text-to-image", r#"{"prompt":"x"}"#);
    request.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("header"),
    );
    let response = send(router(runner.clone()), request).await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // JSON sent to a multipart pipeline.
    let request = json_request("/image-to-text", r#"{"prompt":"x"}"#);
    let response = send(router(runner.clone()), request).await;
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn body_over_the_limit_gets_413_without_calling_the_runner() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let config = ApiConfig {
        max_json_body_bytes: 64,
        max_multipart_body_bytes: 128,
        ..ApiConfig::default()
    };
    let big = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(100));
    // Declared length over the limit.
    let mut request = json_request("/text-to-image", &big);
    request.headers_mut().insert(
        "content-length",
        big.len().to_string().parse().expect("header"),
    );
    let response = send(router_with(runner.clone(), config.clone(), true), request).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    // No declared length: the streamed body is cut at the limit.
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..3).map(|_| Ok(Bytes::from(big.clone()))).collect();
    let request = Request::post("/text-to-image")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .expect("request");
    let response = send(router_with(runner.clone(), config.clone(), true), request).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    let body = multipart_body(&[Part::File("image", "a.png", vec![0; 500])]);
    let response = send(
        router_with(runner.clone(), config, true),
        multipart_request("/image-to-text", body),
    )
    .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn validation_errors_get_422_naming_the_field() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let response = send(
        router(runner.clone()),
        json_request("/text-to-image", r#"{"height":"big"}"#),
    )
    .await;
    let body = assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "prompt"]));
    assert_eq!(body["detail"][0]["type"], "missing");
    assert_eq!(body["detail"][1]["loc"], json!(["body", "height"]));
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("body.prompt"), "{message}");

    let response = send(router(runner.clone()), json_request("/llm", r#"[1,2]"#)).await;
    assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let body = multipart_body(&[Part::Text("prompt", "no image")]);
    let response = send(
        router(runner.clone()),
        multipart_request("/image-to-image", body),
    )
    .await;
    let body = assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "image"]));

    let body = multipart_body(&[Part::File("image", "x.png", b"not an image".to_vec())]);
    let response = send(
        router(runner.clone()),
        multipart_request("/image-to-text", body),
    )
    .await;
    assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn unknown_path_and_wrong_method_get_json_404_and_405() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let response = send(
        router(runner.clone()),
        Request::get("/no/such/thing")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = send(
        router(runner.clone()),
        Request::get("/text-to-image")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = send(
        router(runner),
        Request::post("/healthz")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn pipelines_not_offered_get_404() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let config = ApiConfig {
        pipelines: [Pipeline::Llm].into_iter().collect(),
        ..ApiConfig::default()
    };
    let response = send(
        router_with(runner.clone(), config, true),
        json_request("/text-to-image", r#"{"prompt":"x"}"#),
    )
    .await;
    let body = assert_error(response, StatusCode::NOT_FOUND, "pipeline_not_offered").await;
    assert_eq!(
        body["error"]["message"],
        "pipeline text-to-image is not offered by this gateway"
    );
    let response = send(
        router(runner.clone()),
        json_request("/live-video-to-video", r#"{}"#),
    )
    .await;
    assert_error(response, StatusCode::NOT_FOUND, "pipeline_not_offered").await;
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn job_errors_map_to_statuses() {
    let cases = [
        (
            JobError::NoCapableOrchestrator {
                pipeline: Pipeline::TextToImage,
                model_id: "nope/model".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            "no_capable_orchestrator",
        ),
        (
            JobError::AttemptsExhausted {
                attempts: 4,
                last_error: "timeout".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            "attempts_exhausted",
        ),
        (
            JobError::RejectedByRunner("prompt too long".into()),
            StatusCode::BAD_REQUEST,
            "rejected_by_runner",
        ),
        (
            JobError::DeadlineExceeded { deadline_ms: 10 },
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
        ),
        (
            JobError::Draining,
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
        ),
        (
            JobError::Internal("secret database detail".into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
        ),
    ];
    for (error, status, code) in cases {
        let draining = error == JobError::Draining;
        let runner = FakeRunner::new(Behaviour::Fail(error));
        let response = send(
            router(runner),
            json_request("/text-to-image", r#"{"prompt":"x"}"#),
        )
        .await;
        if draining {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        let body = assert_error(response, status, code).await;
        if code == "internal" {
            assert_eq!(body["error"]["message"], "internal server error");
        }
        if code == "no_capable_orchestrator" {
            let message = body["error"]["message"].as_str().expect("message");
            assert!(message.contains("nope/model"), "{message}");
        }
    }
}

#[tokio::test]
async fn the_deadline_bounds_a_hanging_runner() {
    let runner = FakeRunner::new(Behaviour::Hang);
    let config = ApiConfig {
        request_deadline_ms: 50,
        ..ApiConfig::default()
    };
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        send(
            router_with(runner, config, true),
            json_request("/text-to-image", r#"{"prompt":"x"}"#),
        ),
    )
    .await
    .expect("answered within 10 s");
    assert_error(response, StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded").await;
}

#[tokio::test]
async fn hostile_multipart_gets_400_not_a_panic() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let bodies: Vec<(String, Vec<u8>)> = vec![
        // Boundary in the header does not match the body.
        (
            format!("multipart/form-data; boundary={BOUNDARY}"),
            b"--other\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--other--\r\n"
                .to_vec(),
        ),
        // Truncated in the middle of a part.
        (
            format!("multipart/form-data; boundary={BOUNDARY}"),
            multipart_body(&[Part::File("image", "a.png", fixtures::png_header(4, 4))])[..60]
                .to_vec(),
        ),
        // Garbage header block.
        (
            format!("multipart/form-data; boundary={BOUNDARY}"),
            format!("--{BOUNDARY}\r\n\x00\x01\x02 garbage\r\n").into_bytes(),
        ),
        // No boundary parameter at all.
        ("multipart/form-data".to_owned(), b"whatever".to_vec()),
        // A part without a name.
        (
            format!("multipart/form-data; boundary={BOUNDARY}"),
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
            )
            .into_bytes(),
        ),
    ];
    for (content_type, body) in bodies {
        let request = Request::post("/image-to-image")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", content_type.clone())
            .body(Body::from(body))
            .expect("request");
        let response = send(router(runner.clone()), request).await;
        assert_error(response, StatusCode::BAD_REQUEST, "malformed_multipart").await;
    }
    assert!(runner.calls().is_empty());
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let mut request = json_request("/text-to-image", r#"{"prompt":"x"}"#);
    request
        .headers_mut()
        .insert("x-request-id", "client-id_42".parse().expect("header"));
    let response = send(router(runner.clone()), request).await;
    assert_eq!(response.headers()["x-request-id"], "client-id_42");
    assert_eq!(runner.calls()[0].1.request_id, "client-id_42");

    for bad in [
        "has space".to_owned(),
        "x".repeat(129),
        "semi;colon".to_owned(),
    ] {
        let request = Request::get("/healthz")
            .header("x-request-id", bad.clone())
            .body(Body::empty())
            .expect("request");
        let response = send(router(runner.clone()), request).await;
        let id = response.headers()["x-request-id"].to_str().expect("ascii");
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36, "a UUID: {id}");
    }
}

#[tokio::test]
async fn configured_base_url_wins_over_host() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let config = ApiConfig {
        public_base_url: Some("https://cdn.example".into()),
        ..ApiConfig::default()
    };
    let response = send(
        router_with(runner.clone(), config, true),
        json_request("/text-to-image", r#"{"prompt":"x"}"#),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(runner.calls()[0].1.public_base_url, "https://cdn.example");
}

// ---------------------------------------------------------------------------
// Health and media

#[tokio::test]
async fn health_and_readiness() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let response = send(
        router(runner.clone()),
        Request::get("/healthz")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(body_json(response).await, json!({"status": "ok"}));

    let response = send(
        router(runner.clone()),
        Request::get("/readyz")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(response).await,
        json!({"ready": true, "reasons": []})
    );

    let response = send(
        router_with(runner, ApiConfig::default(), false),
        Request::get("/readyz")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body_json(response).await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["reasons"][0], "no orchestrators discovered");
}

#[tokio::test]
async fn media_is_served_without_a_key() {
    let runner = FakeRunner::new(Behaviour::Complete("{}"));
    let response = send(
        router(runner.clone()),
        Request::get("/media/abc123")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("max-age")
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, &b"PNGDATA"[..]);

    let response = send(
        router(runner),
        Request::get("/media/unknown")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_error(response, StatusCode::NOT_FOUND, "media_not_found").await;
}
