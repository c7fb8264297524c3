//! Random bytes as JSON and multipart bodies: the router never panics, always
//! answers with a status and `x-request-id`, and only ever hands the runner a
//! job whose spec is complete and well formed.

use std::sync::{Arc, Mutex};

use api::ports::{
    Authenticator, Caller, JobOutput, JobRunner, MediaObject, MediaStore, Readiness,
    ReadinessReport, RequestContext,
};
use api::{ApiConfig, PublicState, public_router};
use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use mesh_core::{Attribution, JobBody, JobError, JobSpec, OrchestratorId, Pipeline};
use proptest::prelude::*;
use tower::ServiceExt;

struct RecordingRunner(Mutex<Vec<JobSpec>>);

impl JobRunner for RecordingRunner {
    fn run(
        &self,
        job: JobSpec,
        _context: RequestContext,
    ) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        self.0.lock().expect("lock").push(job);
        async {
            Ok(JobOutput::Complete {
                attribution: Attribution {
                    orchestrator: OrchestratorId::parse("127.0.0.1:9000").expect("id"),
                    region: None,
                    attempts: 1,
                },
                body: Bytes::from_static(b"{}"),
            })
        }
        .boxed()
    }
}

struct NoMedia;
impl MediaStore for NoMedia {
    fn get(&self, _id: &str) -> Option<MediaObject> {
        None
    }
}

struct Ready;
impl Readiness for Ready {
    fn readiness(&self) -> ReadinessReport {
        ReadinessReport {
            ready: true,
            reasons: vec![],
        }
    }
}

struct AnyKey;
impl Authenticator for AnyKey {
    fn authenticate(&self, _bearer_key: &str) -> Option<Caller> {
        Some(Caller {
            tenant: "t".into(),
            tier: "default".into(),
        })
    }
}

/// What every spec handed to the runner must satisfy.
fn assert_valid_spec(spec: &JobSpec) {
    assert!(!spec.model_id.is_empty());
    match &spec.body {
        JobBody::Json(bytes) => {
            let value: serde_json::Value = serde_json::from_slice(bytes).expect("valid JSON");
            let model_field = if spec.pipeline == Pipeline::Llm {
                "model"
            } else {
                "model_id"
            };
            assert_eq!(value[model_field], spec.model_id.as_str());
            if spec.pipeline == Pipeline::Llm {
                assert!(value["messages"].as_array().is_some_and(|m| !m.is_empty()));
                assert_eq!(value["max_tokens"].as_u64(), Some(spec.units));
            }
        }
        JobBody::Multipart(parts) => {
            let models: Vec<_> = parts.iter().filter(|p| p.name == "model_id").collect();
            assert_eq!(models.len(), 1);
            assert_eq!(models[0].data, spec.model_id.as_bytes());
        }
    }
}

/// A random JSON value of a few shapes, small enough to stay readable.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-3i64..600).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            (inner.clone(), inner)
                .prop_map(|(role, content)| json!([{"role": role, "content": content}])),
        ]
    })
}

/// JSON objects made of the fields the pipelines read, with random values:
/// these get past the parser often, so the runner-side property is exercised.
fn structured_json() -> impl Strategy<Value = Vec<u8>> {
    const NAMES: [&str; 12] = [
        "prompt",
        "model_id",
        "model",
        "height",
        "width",
        "num_images_per_prompt",
        "messages",
        "max_tokens",
        "stream",
        "text",
        "seed",
        "safety_check",
    ];
    proptest::collection::vec((0usize..NAMES.len(), json_value()), 0..8).prop_map(|fields| {
        let object: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(index, value)| (NAMES[index].to_owned(), value))
            .collect();
        serde_json::to_vec(&object).expect("serializable")
    })
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        structured_json(),
        proptest::collection::vec(any::<u8>(), 0..512),
        // JSON-ish text built from JSON tokens, to get past the first byte.
        proptest::collection::vec(
            prop_oneof![
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("[".to_owned()),
                Just("]".to_owned()),
                Just(",".to_owned()),
                Just(":".to_owned()),
                Just("\"prompt\"".to_owned()),
                Just("\"messages\"".to_owned()),
                Just("\"role\"".to_owned()),
                Just("\"content\"".to_owned()),
                Just("\"max_tokens\"".to_owned()),
                Just("\"model\"".to_owned()),
                Just("\"model_id\"".to_owned()),
                Just("\"height\"".to_owned()),
                Just("-1".to_owned()),
                Just("1e400".to_owned()),
                Just("null".to_owned()),
                Just("true".to_owned()),
                "[a-z]{0,4}".prop_map(|s| format!("\"{s}\"")),
                any::<i64>().prop_map(|n| n.to_string()),
            ],
            0..40,
        )
        .prop_map(|tokens| tokens.concat().into_bytes()),
        // Multipart-ish text around the boundary the request declares.
        proptest::collection::vec(
            prop_oneof![
                Just("--B\r\n".to_owned()),
                Just("--B--\r\n".to_owned()),
                Just(
                    "Content-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n".to_owned()
                ),
                Just("Content-Disposition: form-data; name=\"prompt\"\r\n".to_owned()),
                Just("Content-Disposition: form-data; name=\"model_id\"\r\n".to_owned()),
                Just("\r\n".to_owned()),
                Just("\u{89}PNG\r\n\u{1a}\n\0\0\0\rIHDR\0\0\0\x05\0\0\0\x05".to_owned()),
                "[ -~]{0,8}".prop_map(|s| s),
            ],
            0..24,
        )
        .prop_map(|tokens| tokens.concat().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bodies_never_panic_nor_reach_the_runner_invalid(
        body in body_strategy(),
        pipeline_index in 0usize..9,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let runner = Arc::new(RecordingRunner(Mutex::new(Vec::new())));
        let router = public_router(PublicState {
            jobs: runner.clone(),
            media: Arc::new(NoMedia),
            readiness: Arc::new(Ready),
            authenticator: Arc::new(AnyKey),
            billing: Arc::new(api::NoBilling),
            admission: Arc::new(api::Unlimited),
            config: ApiConfig::default(),
            capabilities: None,
        });
        let pipeline = Pipeline::BATCH[pipeline_index];
        let content_type = match pipeline.body_kind() {
            mesh_core::BodyKind::Json => "application/json",
            mesh_core::BodyKind::Multipart => "multipart/form-data; boundary=B",
        };
        let request = Request::post(format!("/{pipeline}"))
            .header("authorization", "Bearer k")
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        let response = runtime
            .block_on(router.oneshot(request))
            .expect("infallible");
        prop_assert!(response.headers().contains_key("x-request-id"));
        let status = response.status().as_u16();
        prop_assert!(matches!(status, 200 | 400 | 422), "status {}", status);
        let calls = runner.0.lock().expect("lock");
        prop_assert_eq!(calls.len(), usize::from(status == 200));
        for spec in calls.iter() {
            prop_assert_eq!(spec.pipeline, pipeline);
            assert_valid_spec(spec);
        }
    }
}
