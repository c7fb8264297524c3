//! Tenant limits at the HTTP edge, with fake ports: a request over a limit
//! gets 429 with `Retry-After` and the limit named, never reaches the runner,
//! and an admitted request's slot is released when its response is done;
//! `/admin/keys` answers and is guarded by the admin token.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use api::admin::keys::{CreatedKey, KeyAdmin, KeyRow, NewKey};
use api::admin::{AdminError, AdminState, EventRing};
use api::ports::{
    Admission, AdmissionPermit, Authenticator, Caller, JobOutput, JobRunner, LimitExceeded,
    MediaObject, MediaStore, Readiness, ReadinessReport, RequestContext,
};
use api::{ApiConfig, Metrics, PublicState, admin_router_with_keys, public_router};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use mesh_core::tenancy::LimitKind;
use mesh_core::{Attribution, JobError, JobSpec, OrchestratorId, Pipeline};
use serde_json::Value;
use tower::ServiceExt;

const KEY: &str = "sk-test";

struct Runner(AtomicUsize);
impl JobRunner for Runner {
    fn run(
        &self,
        _job: JobSpec,
        _context: RequestContext,
    ) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(JobOutput::Complete {
                attribution: Attribution {
                    orchestrator: OrchestratorId::parse("https://127.0.0.1:9001").expect("id"),
                    region: None,
                    attempts: 1,
                },
                body: bytes::Bytes::from_static(b"{\"images\":[]}"),
            })
        })
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
            reasons: Vec::new(),
        }
    }
}
struct Auth;
impl Authenticator for Auth {
    fn authenticate(&self, key: &str) -> Option<Caller> {
        (key == KEY).then(|| Caller {
            tenant: "acme".into(),
            tier: "default".into(),
        })
    }
}

/// Admits `allowed` requests, then refuses with `limit`; counts live slots.
struct Budget {
    allowed: AtomicUsize,
    live: Arc<AtomicUsize>,
    limit: LimitKind,
}
impl Admission for Budget {
    fn admit(&self, caller: &Caller, _: Pipeline) -> Result<AdmissionPermit, LimitExceeded> {
        assert_eq!(caller.tenant, "acme");
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(LimitExceeded {
                limit: self.limit,
                retry_after_secs: 17,
            });
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        let live = self.live.clone();
        Ok(AdmissionPermit::new(move || {
            live.fetch_sub(1, Ordering::SeqCst);
        }))
    }
}

fn job() -> Request<Body> {
    Request::post("/text-to-image")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"prompt":"a cat"}"#))
        .expect("request")
}

async fn send(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn over_a_limit_answers_429_and_never_runs_the_job() {
    for limit in LimitKind::ALL {
        let runner = Arc::new(Runner(AtomicUsize::new(0)));
        let live = Arc::new(AtomicUsize::new(0));
        let router = public_router(PublicState {
            jobs: runner.clone(),
            media: Arc::new(NoMedia),
            readiness: Arc::new(Ready),
            authenticator: Arc::new(Auth),
            admission: Arc::new(Budget {
                allowed: AtomicUsize::new(2),
                live: live.clone(),
                limit,
            }),
            config: ApiConfig::default(),
            billing: Arc::new(api::NoBilling),
            capabilities: None,
        });
        for _ in 0..2 {
            let (status, _, _) = send(&router, job()).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(
            live.load(Ordering::SeqCst),
            0,
            "slots end with the response"
        );
        let (status, headers, body) = send(&router, job()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "17");
        assert_eq!(body["error"]["code"], "tenant_limit_exceeded");
        assert_eq!(body["error"]["limit"], limit.as_str());
        assert_eq!(body["error"]["retry_after_secs"], 17);
        assert!(headers.contains_key("x-request-id"));
        assert_eq!(runner.0.load(Ordering::SeqCst), 2);
    }
}

#[derive(Default)]
struct FakeKeys(Mutex<Vec<KeyRow>>);
impl KeyAdmin for FakeKeys {
    fn list(&self) -> Vec<KeyRow> {
        self.0.lock().expect("lock").clone()
    }
    fn create(&self, request: NewKey) -> Result<CreatedKey, AdminError> {
        if request.tenant.contains(' ') {
            return Err(AdminError::InvalidKey("tenant".into()));
        }
        let row = KeyRow {
            id: format!("{:064x}", self.0.lock().expect("lock").len() + 1),
            tenant: request.tenant,
            tier: request.tier.unwrap_or_else(|| "default".into()),
            source: "runtime",
            revoked: false,
        };
        self.0.lock().expect("lock").push(row.clone());
        Ok(CreatedKey {
            row,
            key: request.key.is_none().then(|| "generated".to_owned()),
        })
    }
    fn revoke(&self, id: &str) -> Result<KeyRow, AdminError> {
        let mut rows = self.0.lock().expect("lock");
        let row = rows
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| AdminError::KeyNotFound(id.into()))?;
        row.revoked = true;
        Ok(row.clone())
    }
}

struct NoCluster;
impl api::admin::ClusterAdmin for NoCluster {
    fn cluster(&self) -> api::admin::ClusterReport {
        api::admin::ClusterReport {
            node: mesh_core::NodeId::new("n").expect("id"),
            region: mesh_core::RegionId::new("r").expect("id"),
            members: Vec::new(),
        }
    }
    fn view(&self) -> mesh_core::ViewSnapshot {
        mesh_core::View::new(
            mesh_core::NodeId::new("n").expect("id"),
            mesh_core::RegionId::new("r").expect("id"),
            5_000,
        )
        .snapshot(0)
    }
    fn block(&self, _: OrchestratorId) -> Result<(), AdminError> {
        Ok(())
    }
    fn unblock(&self, _: &OrchestratorId) -> Result<(), AdminError> {
        Ok(())
    }
}

fn admin(token: Option<&str>) -> (Router, Arc<FakeKeys>) {
    let keys = Arc::new(FakeKeys::default());
    let router = admin_router_with_keys(
        AdminState {
            cluster: Arc::new(NoCluster),
            events: Arc::new(EventRing::default()),
            metrics: Metrics::new(),
            token: token.map(str::to_owned),
            offer: None,
            usage: None,
        },
        keys.clone(),
    );
    (router, keys)
}

fn keys_request(method: &str, path: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::from(body.to_owned())).expect("request")
}

#[tokio::test]
async fn keys_routes_create_list_and_revoke() {
    let (router, _) = admin(None);
    let (status, _, created) = send(
        &router,
        keys_request(
            "POST",
            "/admin/keys",
            r#"{"tenant":"acme","tier":"gold"}"#,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["tier"], "gold");
    assert_eq!(created["key"], "generated");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, _, list) = send(&router, keys_request("GET", "/admin/keys", "", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["keys"][0]["id"], id.as_str());
    assert!(
        list["keys"][0].get("key").is_none(),
        "listings never show keys"
    );
    let path = format!("/admin/keys/{id}");
    let (status, _, revoked) = send(&router, keys_request("DELETE", &path, "", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revoked["revoked"], true);
    let (status, _, body) = send(
        &router,
        keys_request("DELETE", "/admin/keys/nope", "", None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "key_not_found");
    for bad in [r#"{"tenant":"a b"}"#, r#"{"tenant":"a","x":1}"#, "not json"] {
        let (status, _, body) = send(&router, keys_request("POST", "/admin/keys", bad, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], "invalid_key_request", "{bad}");
    }
}

#[tokio::test]
async fn the_admin_token_guards_the_keys_routes_too() {
    let token = "admin-token-0123456789";
    let (router, keys) = admin(Some(token));
    for (method, path, body) in [
        ("GET", "/admin/keys", ""),
        ("POST", "/admin/keys", r#"{"tenant":"acme"}"#),
        ("DELETE", "/admin/keys/00", ""),
        ("GET", "/admin/cluster", ""),
        ("GET", "/metrics", ""),
    ] {
        for wrong in [None, Some("admin-token-012345678X")] {
            let (status, _, body) = send(&router, keys_request(method, path, body, wrong)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(body["error"]["code"], "invalid_admin_token");
        }
    }
    assert!(
        keys.list().is_empty(),
        "unauthorized creates never reach the port"
    );
    let (status, _, _) = send(
        &router,
        keys_request("POST", "/admin/keys", r#"{"tenant":"acme"}"#, Some(token)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}
