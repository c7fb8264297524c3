//! The admin router driven through `tower::ServiceExt::oneshot` with fake
//! ports: cluster and view JSON, blocklist edits, events, stats, the token,
//! and the Prometheus exposition.

use crate::admin_common::*;
use api::admin::{AdminState, admin_router};
use api::metrics::{self, Metrics};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn send(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

async fn get_json(router: &Router, path: &str) -> Value {
    let (status, headers, body) = send(router, get_req(path)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("")),
        Some("application/json")
    );
    serde_json::from_slice(&body).expect("JSON body")
}

fn router() -> (Router, std::sync::Arc<FakeCluster>) {
    let cluster = FakeCluster::new();
    (admin_router(admin_state(cluster.clone(), None)), cluster)
}

fn row<'a>(orchestrators: &'a Value, id: &str) -> &'a Value {
    orchestrators["orchestrators"]
        .as_array()
        .expect("array")
        .iter()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing"))
}

#[tokio::test]
async fn cluster_lists_members_with_their_state() {
    let (router, _) = router();
    let body = get_json(&router, "/admin/cluster").await;
    assert_eq!(body["node"], "fra-1");
    assert_eq!(body["region"], "fra");
    let members = body["members"].as_array().expect("members");
    assert_eq!(members.len(), NODES.len());
    let sin = members
        .iter()
        .find(|m| m["node"] == "sin-1")
        .expect("sin-1");
    assert_eq!(sin["state"], "dead");
    assert_eq!(sin["region"], "sin");
    assert_eq!(sin["last_heard_ms_ago"], 9_800);
    assert_eq!(sin["is_self"], false);
    let me = members.iter().find(|m| m["is_self"] == true).expect("self");
    assert_eq!(me["node"], "fra-1");
    assert_eq!(me["last_heard_ms_ago"], Value::Null);
    assert_eq!(me["api_url"], "https://fra-1.gatemesh.example:8443");
    assert_eq!(me["load"], 3);
    assert_eq!(me["version"], "0.1.0");
    let suspect = members
        .iter()
        .find(|m| m["node"] == "lax-2")
        .expect("lax-2");
    assert_eq!(suspect["state"], "suspect");
}

#[tokio::test]
async fn orchestrators_show_the_merged_view() {
    let (router, _) = router();
    let body = get_json(&router, "/admin/orchestrators").await;
    assert_eq!(body["taken_at_ms"], NOW_MS);
    assert_eq!(body["snapshot_age_ms"], 0);
    assert_eq!(body["regions"], serde_json::json!(["fra", "lax", "sin"]));
    assert_eq!(body["blocked"], serde_json::json!([ORCH_BLOCKED]));
    assert_eq!(body["orchestrators"].as_array().expect("rows").len(), 4);

    let ok = row(&body, ORCH_OK);
    assert_eq!(ok["status"], "ok");
    assert_eq!(ok["blocked"], false);
    assert_eq!(ok["ejected_until_ms"], Value::Null);
    assert_eq!(ok["home_region"], "fra");
    let info = &ok["info"];
    assert_eq!(info["seen_ms_ago"], 2_000);
    assert!(
        info["gpus"]
            .as_array()
            .expect("gpus")
            .contains(&"NVIDIA GeForce RTX 4090".into())
    );
    let image = info["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["pipeline"] == "text-to-image")
        .expect("image model");
    assert_eq!(image["model_id"], IMAGE_MODEL);
    assert_eq!(image["warm"], true);
    assert_eq!(image["capacity"], 4);
    assert_eq!(image["price"]["wei"], 4_768);
    assert_eq!(image["price"]["wei_per_unit"], 4_768.0);
    assert_eq!(image["gpus"][0], "NVIDIA GeForce RTX 4090");
    let regions = ok["regions"].as_array().expect("regions");
    assert_eq!(regions.len(), 2, "observed from fra and lax");
    let fra = regions.iter().find(|r| r["region"] == "fra").expect("fra");
    assert_eq!(fra["observers"], 2);
    let fra_image = fra["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["pipeline"] == "text-to-image")
        .expect("fra image stats");
    let ewma = fra_image["latency_ewma_ms"].as_f64().expect("ewma");
    assert!((400.0..700.0).contains(&ewma), "ewma {ewma}");
    assert_eq!(fra_image["p50_ms"], 800, "bucket bound holding 420–570 ms");
    assert!(fra_image["successes"].as_f64().expect("successes") > 20.0);
    assert_eq!(fra_image["failures"], 0.0);
    let lax = regions.iter().find(|r| r["region"] == "lax").expect("lax");
    assert_eq!(lax["probe_rtt_ms"], 145.0);
    let observers = ok["observers"].as_array().expect("observers");
    let ages: Vec<(&str, u64)> = observers
        .iter()
        .map(|o| {
            (
                o["node"].as_str().expect("node"),
                o["age_ms"].as_u64().expect("age"),
            )
        })
        .collect();
    assert_eq!(ages, vec![("fra-1", 300), ("fra-2", 900), ("lax-1", 1_200)]);

    let ejected = row(&body, ORCH_EJECTED);
    assert_eq!(ejected["status"], "ejected");
    assert_eq!(ejected["ejected_until_ms"], 19_500);
    assert_eq!(ejected["ejected_by"], "lax-1");
    let lax1 = ejected["observers"]
        .as_array()
        .expect("observers")
        .iter()
        .find(|o| o["node"] == "lax-1")
        .expect("lax-1 record");
    assert_eq!(lax1["last_error"], "connect");
    assert_eq!(lax1["ejected_until_ms"], 19_500);

    let blocked = row(&body, ORCH_BLOCKED);
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["blocked"], true);
    assert_eq!(blocked["info"]["models"][0]["warm"], false);

    assert_eq!(row(&body, ORCH_DEGRADED)["status"], "degraded");
}

#[tokio::test]
async fn blocklist_edits_go_through_the_port() {
    let (router, cluster) = router();
    let listed = get_json(&router, "/admin/blocklist").await;
    assert_eq!(listed["blocked"], serde_json::json!([ORCH_BLOCKED]));

    let encoded = "https%3A%2F%2Forch-fra-a.example%3A8935";
    let (status, _, body) = send(
        &router,
        Request::put(format!("/admin/blocklist/{encoded}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["blocked"], serde_json::json!([ORCH_OK, ORCH_BLOCKED]));

    // A bare host:port is normalized like every other orchestrator address.
    let (status, _, _) = send(
        &router,
        Request::delete("/admin/blocklist/orch-sin-c.example")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cluster.calls(),
        vec![
            format!("block {ORCH_OK}"),
            format!("unblock {ORCH_BLOCKED}")
        ]
    );
    let listed = get_json(&router, "/admin/blocklist").await;
    assert_eq!(listed["blocked"], serde_json::json!([ORCH_OK]));
}

#[tokio::test]
async fn blocklist_errors_use_the_json_envelope() {
    let (router, cluster) = router();
    let (status, _, body) = send(
        &router,
        Request::put("/admin/blocklist/ftp%3A%2F%2Fnope")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "invalid_orchestrator");
    assert!(
        body["detail"]["msg"]
            .as_str()
            .expect("msg")
            .contains("ftp://nope")
    );
    assert!(
        cluster.calls().is_empty(),
        "invalid ids never reach the port"
    );

    let (status, _, body) = send(
        &router,
        Request::put("/admin/blocklist/https%3A%2F%2Ffull.example%3A8935")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "blocklist_full");

    let (status, _, body) = send(&router, get_req("/admin/nothing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _, _) = send(
        &router,
        Request::post("/admin/cluster")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_and_stats_are_json() {
    let cluster = FakeCluster::new();
    let state = admin_state(cluster, None);
    record_every_metric(&state.metrics);
    let router = admin_router(state);
    let events = get_json(&router, "/admin/events").await;
    assert_eq!(events["now_ms"], NOW_MS);
    let list = events["events"].as_array().expect("events");
    assert_eq!(list.len(), 5);
    assert_eq!(list[0]["kind"], "member_joined");
    let last = list.last().expect("last");
    assert_eq!(last["kind"], "failover_cross_region");
    assert_eq!(last["orchestrator"], ORCH_OK);
    assert_eq!(last["region"], "lax");

    let stats = get_json(&router, "/admin/stats").await;
    assert_eq!(stats["jobs_total"], 2);
    assert_eq!(stats["jobs_failed"], 1);
    assert_eq!(stats["jobs_in_flight"], 1);
    assert_eq!(stats["failovers"]["cross_region"], 1);
    assert_eq!(stats["retries"]["capacity"], 1);
    assert_eq!(stats["by_region"]["fra"]["jobs"], 2);
    let counts: u64 = stats["latency_counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| c.as_u64().expect("count"))
        .sum();
    assert_eq!(counts, 2);
}

#[tokio::test]
async fn token_guards_every_route() {
    let cluster = FakeCluster::new();
    let router = admin_router(admin_state(cluster.clone(), Some("s3cret+token")));
    for path in [
        "/admin/cluster",
        "/admin/orchestrators",
        "/admin/blocklist",
        "/admin/events",
        "/admin/stats",
        "/metrics",
        "/dashboard",
        "/admin/cluster?token=s3cret%2Btoken",
    ] {
        let (status, headers, body) = send(&router, get_req(path)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "invalid_admin_token", "{path}");
        assert!(body["detail"]["msg"].is_string());
    }
    let wrong = Request::put("/admin/blocklist/orch.example")
        .header(header::AUTHORIZATION, "Bearer s3cret+tokem")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&router, wrong).await.0, StatusCode::UNAUTHORIZED);
    assert!(
        cluster.calls().is_empty(),
        "unauthorized edits never reach the port"
    );

    let right = Request::get("/admin/cluster")
        .header(header::AUTHORIZATION, "Bearer s3cret+token")
        .body(Body::empty())
        .expect("request");
    let (status, headers, _) = send(&router, right).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let (status, _, body) = send(&router, get_req("/dashboard?token=s3cret%2Btoken")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("<html"));
}

#[tokio::test]
async fn metrics_expose_recorded_samples_and_the_view() {
    let cluster = FakeCluster::new();
    let state = admin_state(cluster, None);
    record_every_metric(&state.metrics);
    let router = admin_router(state);
    let (status, headers, body) = send(&router, get_req("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("")),
        Some(metrics::CONTENT_TYPE)
    );
    let text = String::from_utf8(body).expect("utf-8");
    for expected in [
        "# TYPE gatemesh_jobs_total counter",
        &format!(
            "gatemesh_jobs_total{{pipeline=\"text-to-image\",model=\"{IMAGE_MODEL}\",region=\"fra\",orchestrator=\"{ORCH_OK}\",outcome=\"success\"}} 1"
        ),
        "gatemesh_jobs_total{pipeline=\"llm\",model=\"meta-llama/llama-3.1-8B-Instruct\",region=\"fra\",orchestrator=\"none\",outcome=\"no_orchestrator\"} 1",
        "# TYPE gatemesh_job_duration_seconds histogram",
        "gatemesh_job_attempts_bucket{pipeline=\"text-to-image\",le=\"2\"} 1",
        "gatemesh_job_retries_total{reason=\"capacity\"} 1",
        "gatemesh_failovers_total{kind=\"cross_region\"} 1",
        "gatemesh_routing_latency_ratio_count 1",
        &format!("gatemesh_orchestrator_ejections_total{{orchestrator=\"{ORCH_EJECTED}\"}} 1"),
        &format!("gatemesh_orchestrator_flaps_total{{orchestrator=\"{ORCH_EJECTED}\"}} 1"),
        &format!("gatemesh_orchestrator_error_ratio{{orchestrator=\"{ORCH_OK}\"}} 0.0"),
        &format!(
            "gatemesh_orchestrator_capacity{{orchestrator=\"{ORCH_OK}\",pipeline=\"llm\",model=\"{LLM_MODEL}\"}} 8"
        ),
        &format!(
            "gatemesh_orchestrator_price_wei_per_unit{{orchestrator=\"{ORCH_OK}\",pipeline=\"text-to-image\",model=\"{IMAGE_MODEL}\"}} 4768.0"
        ),
        "gatemesh_mesh_members{state=\"dead\"} 1",
        "gatemesh_mesh_members{state=\"alive\"} 3",
        "gatemesh_mesh_gossip_bytes_total{direction=\"out\"} 1200",
        "gatemesh_mesh_view_staleness_seconds{origin=\"fra-1\"} 0.3",
        "gatemesh_mesh_forwards_total{direction=\"out\",outcome=\"success\"} 1",
        "gatemesh_tenant_requests_total{tenant=\"acme\"} 1",
        "gatemesh_tenant_limit_rejections_total{tenant=\"acme\",limit=\"requests_per_minute\"} 1",
        "gatemesh_http_requests_total{route=\"/text-to-image\",status=\"200\"} 1",
        "gatemesh_view_orchestrators{status=\"degraded\"} 1",
        "gatemesh_jobs_in_flight 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let degraded_age = text
        .lines()
        .find(|l| {
            l.starts_with("gatemesh_orchestrator_last_failure_age_seconds")
                && l.contains(ORCH_DEGRADED)
        })
        .expect("last failure age");
    assert!(degraded_age.ends_with(" 1.5"), "{degraded_age}");
}

#[tokio::test]
async fn model_labels_are_bounded() {
    let metrics = Metrics::new();
    for i in 0..(metrics::MAX_MODEL_LABELS + 50) {
        metrics.record_job(&metrics::JobSample {
            pipeline: mesh_core::Pipeline::Llm,
            model: &format!("random-model-{i}"),
            region: None,
            orchestrator: None,
            outcome: metrics::JobOutcome::NoOrchestrator,
            duration: std::time::Duration::from_millis(1),
            first_byte: None,
            attempts: 0,
        });
    }
    let text = metrics.encode();
    let series = text
        .lines()
        .filter(|l| l.starts_with("gatemesh_jobs_total{"))
        .count();
    assert_eq!(
        series,
        metrics::MAX_MODEL_LABELS + 1,
        "the rest fold into model=\"other\""
    );
    assert!(text.contains(
        "model=\"other\",region=\"none\",orchestrator=\"none\",outcome=\"no_orchestrator\"} 50"
    ));
}

#[tokio::test]
async fn http_middleware_counts_route_templates() {
    let metrics = Metrics::new();
    let app: Router = metrics::with_http_metrics(
        Router::new().route("/media/{id}", get(|| async { "bytes" })),
        metrics.clone(),
    );
    for path in ["/media/a", "/media/b", "/nope/secret-path"] {
        let _ = send(&app, get_req(path)).await;
    }
    let text = metrics.encode();
    assert!(
        text.contains("gatemesh_http_requests_total{route=\"/media/{id}\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("gatemesh_http_requests_total{route=\"unmatched\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(!text.contains("secret-path"));
}

#[test]
fn admin_state_debug_redacts_the_token() {
    let state: AdminState = admin_state(FakeCluster::new(), Some("hunter2"));
    let shown = format!("{state:?}");
    assert!(!shown.contains("hunter2") && shown.contains("redacted"));
}
