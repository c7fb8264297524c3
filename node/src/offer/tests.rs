//! Acceptance checks of the price caps (go-livepeer documents loaded
//! unchanged), the declaration's lookup rules, and the price feed keeping
//! its last good value.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use mesh_core::{Pipeline, WeiPrice};
use num_bigint::BigInt;
use num_rational::BigRational;

use super::*;
use crate::config::NodeConfig;

/// go-livepeer's v1 on-chain gateway docs (`ai/gateways/onchain.mdx`), as published.
const DOCS_V1_ONCHAIN: &str = r#"{
  "capabilities_prices": [
    { "pipeline": "image-to-image", "model_id": "ByteDance/SDXL-Lightning", "price_per_unit": 1700000, "pixels_per_unit": 1 },
    { "pipeline": "text-to-image", "model_id": "stabilityai/stable-diffusion-3-medium-diffusers", "price_per_unit": 4768371, "pixels_per_unit": 1 },
    { "pipeline": "upscale", "model_id": "default", "price_per_unit": 4768371 },
    { "pipeline": "image-to-video", "price_per_unit": 3390842, "pixels_per_unit": 1 },
    { "pipeline": "audio-to-text", "price_per_unit": 12882811 }
  ]
}"#;

/// The v2 docs' gateway pricing file (currency spelled `WEI`).
const DOCS_V2_PRICING: &str = r#"{
  "capabilities_prices": [
    {
      "pipeline": "text-to-image",
      "model_id": "stabilityai/sd-turbo",
      "price_per_unit": 1000,
      "pixels_per_unit": 1,
      "currency": "WEI"
    },
    {
      "pipeline": "image-to-video",
      "model_id": "default",
      "price_per_unit": 2000,
      "pixels_per_unit": 3,
      "currency": "WEI"
    },
    {
      "pipeline": "upscale",
      "model_id": "default",
      "price_per_unit": 1200,
      "pixels_per_unit": 1,
      "currency": "WEI"
    }
  ]
}"#;

/// The TOML parsed without the start-up validation, so tests can hand the
/// policy compiler configurations it must refuse.
fn config(extra: &str) -> NodeConfig {
    toml::from_str::<NodeConfig>(&format!(
        r#"
[node]
name = "fra-1"
region = "fra"
[http]
listen_addr = "127.0.0.1:0"
[admin]
listen_addr = "127.0.0.1:0"
{extra}
"#
    ))
    .expect("the test config parses")
}

fn price(n: i64, d: i64) -> Option<WeiPrice> {
    Some(WeiPrice::new(n, d).unwrap())
}

fn rat(n: i64, d: i64) -> BigRational {
    BigRational::new(BigInt::from(n), BigInt::from(d))
}

#[test]
fn go_livepeer_v1_docs_example_yields_the_documented_caps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maxPricePerCapability.json");
    std::fs::write(&path, DOCS_V1_ONCHAIN).unwrap();
    let policy = Policy::compile(&config(&format!(
        "[pricing]\nmax_price_per_unit = \"1000\"\nmax_price_per_capability = {:?}\n",
        path.display().to_string()
    )))
    .unwrap();
    let cap = |p, m: &str| policy.cap(p, m, None).wei;
    assert_eq!(
        cap(Pipeline::ImageToImage, "ByteDance/SDXL-Lightning"),
        price(1_700_000, 1)
    );
    // Another image-to-image model has no entry and no default: global cap.
    assert_eq!(
        cap(Pipeline::ImageToImage, "timbrooks/instruct-pix2pix"),
        price(1000, 1)
    );
    assert_eq!(
        cap(
            Pipeline::TextToImage,
            "stabilityai/stable-diffusion-3-medium-diffusers"
        ),
        price(4_768_371, 1)
    );
    // Missing pixels_per_unit falls back to the global pixels_per_unit (1).
    assert_eq!(cap(Pipeline::Upscale, "any/model"), price(4_768_371, 1));
    // Missing model_id means "default": every model of the pipeline.
    assert_eq!(
        cap(Pipeline::ImageToVideo, "stabilityai/svd"),
        price(3_390_842, 1)
    );
    assert_eq!(
        cap(Pipeline::AudioToText, "openai/whisper-large-v3"),
        price(12_882_811, 1)
    );
    assert_eq!(cap(Pipeline::Llm, "meta-llama/x"), price(1000, 1));
    let (_, source) = policy
        .cap(Pipeline::Upscale, "x", None)
        .source
        .map(|s| ((), s))
        .unwrap();
    assert_eq!(source, caps::CapSource::PipelineDefault);
}

#[test]
fn go_livepeer_v2_docs_example_inline_and_its_exact_rationals() {
    let policy = Policy::compile(&config(&format!(
        "[pricing]\nmax_price_per_capability = '''{DOCS_V2_PRICING}'''\n"
    )))
    .unwrap();
    let cap = |p, m: &str| policy.cap(p, m, None).wei;
    assert_eq!(
        cap(Pipeline::TextToImage, "stabilityai/sd-turbo"),
        price(1000, 1)
    );
    // No global cap: another text-to-image model may cost anything.
    assert_eq!(cap(Pipeline::TextToImage, "other/model"), None);
    // 2000 wei per 3 units, exactly (an orchestrator at 667/1 is above it).
    assert_eq!(cap(Pipeline::ImageToVideo, "x"), price(2000, 3));
    assert!(WeiPrice::new(667, 1).unwrap() > cap(Pipeline::ImageToVideo, "x").unwrap());
    assert_eq!(cap(Pipeline::Upscale, "x"), price(1200, 1));
}

#[test]
fn usd_caps_convert_at_a_fixed_rate_and_fail_closed_without_one() {
    let text = r#"{"capabilities_prices":[
        {"pipeline":"llm","model_id":"default","price_per_unit":0.5,"pixels_per_unit":1000000,"currency":"USD"},
        {"pipeline":"text-to-image","price_per_unit":"0.0000000000012","currency":"usd"}]}"#;
    let policy = Policy::compile(&config(&format!(
        "[pricing]\neth_usd = \"2500\"\nmax_price_per_unit = \"0.000000000001USD\"\npixels_per_unit = 1\nmax_price_per_capability = '''{text}'''\n"
    )))
    .unwrap();
    let rate = rat(2500, 1);
    // 0.5 USD per 1e6 units at 2500 USD/ETH = 2e-10 ETH = 200,000,000 wei per unit.
    assert_eq!(
        policy.cap(Pipeline::Llm, "m", Some(&rate)).wei,
        price(200_000_000, 1)
    );
    // 1.2e-12 USD per unit = 4.8e-16 ETH = 480 wei.
    assert_eq!(
        policy.cap(Pipeline::TextToImage, "m", Some(&rate)).wei,
        price(480, 1)
    );
    // The global cap: 1e-12 USD = 400 wei.
    assert_eq!(
        policy.cap(Pipeline::Upscale, "m", Some(&rate)).wei,
        price(400, 1)
    );
    // No rate known: fail closed (only free orchestrators).
    let unknown = policy.cap(Pipeline::Llm, "m", None);
    assert!(unknown.rate_missing);
    assert_eq!(unknown.wei, Some(WeiPrice::FREE));
    // A USD cap with neither a rate nor a feed does not start.
    let error =
        Policy::compile(&config("[pricing]\nmax_price_per_unit = \"0.5USD\"\n")).unwrap_err();
    assert!(error.contains("eth_usd"), "{error}");
}

#[test]
fn declarations_pick_the_model_entry_then_the_pipeline_entry_and_respect_regions() {
    let policy = Policy::compile(&config(
        r#"
[[offer]]
pipeline = "text-to-image"
models = ["fast/model"]
gpu_preferred = ["4090"]
allow_cold = false
tier_pools = { premium = "gold" }

[[offer]]
pipeline = "text-to-image"
gpu_excluded = ["T4"]
latency_budget_ms = 800
over_budget = "never"
failover_regions = ["lax"]

[[offer]]
pipeline = "llm"
regions = ["sin"]

[pools]
gold = ["orch-1.example:8935"]
"#,
    ))
    .unwrap();
    assert!(policy.offers_pipeline(Pipeline::TextToImage));
    assert!(
        !policy.offers_pipeline(Pipeline::Llm),
        "llm is only offered in sin"
    );
    assert!(!policy.offers_pipeline(Pipeline::Upscale));
    let fast = policy
        .requirements(Pipeline::TextToImage, "fast/model", "premium", None)
        .unwrap();
    assert_eq!(fast.gpu_preferred, vec!["4090".to_owned()]);
    assert!(!fast.allow_cold);
    assert_eq!(fast.pool.as_deref().map(<[_]>::len), Some(1));
    let free = policy
        .requirements(Pipeline::TextToImage, "fast/model", "default", None)
        .unwrap();
    assert!(free.pool.is_none());
    let other = policy
        .requirements(Pipeline::TextToImage, "other/model", "premium", None)
        .unwrap();
    assert_eq!(other.gpu_excluded, vec!["T4".to_owned()]);
    assert!(other.pool.is_none());
    assert_eq!(
        other.latency_budget.map(|b| (b.max_ms, b.over_budget)),
        Some((800.0, mesh_core::route::OverBudget::Never))
    );
    let regions: Vec<String> = other
        .allowed_regions
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(regions, vec!["fra", "lax"]);
    // Unknown pool names are refused at start.
    let error = Policy::compile(&config(
        "[[offer]]\npipeline = \"llm\"\ntier_pools = { gold = \"nope\" }\n",
    ))
    .unwrap_err();
    assert!(error.contains("unknown pool"), "{error}");
    // Without declarations, everything in [api] pipelines is offered.
    let open = Policy::compile(&config("")).unwrap();
    assert!(open.offers_pipeline(Pipeline::Upscale));
    assert!(open.rules(Pipeline::Llm, "anything").is_some());
    assert_eq!(open.offered_models(Pipeline::Llm), None);
}

/// A tiny price feed on 127.0.0.1: mode 0 answers a good rate, 1 answers
/// 500, 2 answers JSON without the number.
async fn feed_server(mode: Arc<AtomicU8>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/price",
        axum::routing::get(move || {
            let mode = mode.clone();
            async move {
                match mode.load(Ordering::SeqCst) {
                    0 => (StatusCode::OK, r#"{"ethereum":{"usd":3012.45}}"#).into_response(),
                    1 => (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
                    _ => (StatusCode::OK, r#"{"ethereum":{}}"#).into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/price"), task)
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_price_feed_keeps_its_last_good_value_when_it_fails() {
    // Node::start installs the process's one crypto provider; this test
    // runs the feed client without a node.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mode = Arc::new(AtomicU8::new(0));
    let (url, server) = feed_server(mode.clone()).await;
    let metrics = api::Metrics::new();
    let offering = Offering::new(
        &config(&format!(
            "[pricing]\nmax_price_per_unit = \"0.000000000001USD\"\neth_usd = \"2000\"\nprice_feed_url = {url:?}\nprice_feed_refresh_ms = 1000\n"
        )),
        metrics.clone(),
    )
    .unwrap();
    // Before the feed answers, the fixed rate applies: 1e-12 USD at 2000 = 500 wei.
    assert_eq!(
        offering
            .requirements(Pipeline::Llm, "m", "default")
            .unwrap()
            .max_price,
        price(500, 1)
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let feed = tokio::spawn(run_price_feed(offering.clone(), stop_rx));
    let good = rat(301_245, 100);
    wait_for("the first feed value", || {
        offering.usd_per_eth() == Some(good.clone())
    })
    .await;
    let report = offering.rate_report(unix_ms());
    assert_eq!(report.source, "feed");
    assert_eq!(report.usd_per_eth.as_deref(), Some("3012.45"));
    assert!(!report.stale);

    mode.store(1, Ordering::SeqCst);
    wait_for("a failed read", || {
        offering.rate_report(unix_ms()).failures_total >= 1
    })
    .await;
    assert_eq!(
        offering.usd_per_eth(),
        Some(good.clone()),
        "the last good rate is kept"
    );
    let report = offering.rate_report(unix_ms());
    assert!(
        report
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("500")),
        "{report:?}"
    );

    mode.store(2, Ordering::SeqCst);
    wait_for("a malformed answer", || {
        offering.rate_report(unix_ms()).failures_total >= 2
    })
    .await;
    assert_eq!(offering.usd_per_eth(), Some(good));
    assert!(
        metrics
            .encode()
            .contains("gatemesh_pricing_feed_failures_total 2"),
        "{}",
        metrics.encode()
    );
    // 1e-12 USD at 3012.45 USD/ETH = 10^6/3012.45 wei, exactly (compared
    // as rationals: the cap may be held in lowest terms).
    let cap = offering
        .requirements(Pipeline::Llm, "m", "default")
        .unwrap()
        .max_price
        .expect("a cap");
    assert_eq!(
        cap.cmp(&price(100_000_000, 301_245).expect("price")),
        std::cmp::Ordering::Equal,
        "{cap:?}"
    );

    mode.store(0, Ordering::SeqCst);
    wait_for("recovery", || {
        offering.rate_report(unix_ms()).last_error.is_none()
    })
    .await;
    let _ = stop_tx.send(true);
    let _ = feed.await;
    server.abort();
}

#[test]
fn apply_swaps_the_policy_and_keeps_the_old_one_on_error() {
    let offering = Offering::new(&config(""), api::Metrics::new()).unwrap();
    assert!(offering.policy().offers_pipeline(Pipeline::Upscale));
    offering
        .apply(&config("[[offer]]\npipeline = \"llm\"\n"))
        .unwrap();
    assert!(!offering.policy().offers_pipeline(Pipeline::Upscale));
    assert!(offering.policy().offers_pipeline(Pipeline::Llm));
    let mut bad = config("");
    bad.pricing.max_price_per_unit = Some("nonsense".into());
    assert!(offering.apply(&bad).is_err());
    assert!(
        offering.policy().offers_pipeline(Pipeline::Llm),
        "the old policy stays"
    );
}
