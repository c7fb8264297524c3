//! The operator's offer end to end: a declaration that offers only
//! text-to-image and llm with GPU preferences (acceptance 1), a price cap
//! that keeps a dearer orchestrator out of every job (acceptance 2), and
//! `GET /v1/capabilities` / `GET /admin/pricing` over emulated orchestrators
//! with different GPUs, prices and warm/cold models.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use mesh_core::{OrchestratorId, Pipeline};
use serde_json::{Value, json};
use simulations::emulator::{
    EmulatedOrchestrator, Fleet, LatencySpec, ModelSpec, OrchestratorSpec, PriceSpec,
};
use tests::{API_KEY, Gateway, GatewayConfig, JobAnswer, expect_error};

const GPU_FAST: &str = "NVIDIA GeForce RTX 4090";
const GPU_SLOW: &str = "NVIDIA A10G";
const COLD_MODEL: &str = "example/cold-llm";

fn id(orchestrator: &EmulatedOrchestrator) -> String {
    OrchestratorId::parse(orchestrator.url())
        .expect("emulator URLs parse")
        .to_string()
}

fn spec(name: &str, gpu: &str, models: Vec<ModelSpec>) -> OrchestratorSpec {
    let mut spec = OrchestratorSpec::new(name, models);
    spec.gpu_name = gpu.to_owned();
    // Equal, clearly measurable latency: the GPU preference decides.
    spec.latency = LatencySpec::fixed_ms(30);
    spec
}

async fn get_json(gateway: &Gateway, url: &str, key: bool) -> anyhow::Result<(u16, Value)> {
    let mut request = gateway.client().get(url);
    if key {
        request = request.bearer_auth(API_KEY);
    }
    let response = request.send().await.context("GET")?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

fn model<'a>(report: &'a Value, pipeline: &str, model_id: &str) -> Option<&'a Value> {
    report["pipelines"]
        .as_array()?
        .iter()
        .find(|p| p["pipeline"] == pipeline)?["models"]
        .as_array()?
        .iter()
        .find(|m| m["model_id"] == model_id)
}

#[tokio::test]
async fn only_declared_pipelines_are_offered_and_routing_follows_gpu_preferences()
-> anyhow::Result<()> {
    let fleet = Fleet::start_all(vec![
        spec(
            "fast",
            GPU_FAST,
            vec![
                ModelSpec::new(Pipeline::TextToImage).capacity(8),
                ModelSpec::new(Pipeline::Llm).capacity(8),
            ],
        ),
        spec(
            "slow",
            GPU_SLOW,
            vec![
                ModelSpec::new(Pipeline::TextToImage).capacity(8),
                ModelSpec::new(Pipeline::Llm).capacity(8),
                ModelSpec::new(Pipeline::Upscale).capacity(8),
            ],
        ),
        spec("cold", GPU_FAST, {
            let mut cold = ModelSpec::with_model(Pipeline::Llm, COLD_MODEL).capacity(2);
            cold.warm = false;
            vec![cold]
        }),
    ])
    .await?;
    let (fast, slow) = (&fleet.orchestrators()[0], &fleet.orchestrators()[1]);
    let toml = GatewayConfig::new(fleet.urls()).toml()
        + r#"
[[offer]]
pipeline = "text-to-image"
gpu_preferred = ["4090"]

[[offer]]
pipeline = "llm"
gpu_excluded = ["a10g"]
"#;
    let gateway = Gateway::start_toml(&toml).await?;
    gateway.wait_ready().await?;
    gateway.wait_capable(Pipeline::TextToImage, 2).await?;
    gateway.wait_capable(Pipeline::Llm, 2).await?;
    gateway
        .wait_capable_model(Pipeline::Llm, COLD_MODEL, 1)
        .await?;

    // Not declared: 404 even though an orchestrator serves it.
    let answer = expect_error(
        gateway.post("/upscale").send().await?,
        404,
        "pipeline_not_offered",
    )
    .await?;
    ensure!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("upscale") && m.contains("not offered")),
        "{}",
        answer.body
    );
    expect_error(
        gateway.post("/audio-to-text").send().await?,
        404,
        "pipeline_not_offered",
    )
    .await?;

    // text-to-image prefers the 4090 (scores 20 % better at equal latency).
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..40 {
        let answer = JobAnswer::read(
            gateway
                .post_json("/text-to-image", &json!({"prompt": format!("cat {i}")}))
                .send()
                .await?,
        )
        .await?;
        ensure!(
            answer.status == 200,
            "text-to-image {}: {}",
            answer.status,
            answer.body
        );
        *served
            .entry(answer.orchestrator.unwrap_or_default())
            .or_default() += 1;
    }
    let on_fast = served.get(&id(fast)).copied().unwrap_or(0);
    ensure!(
        on_fast >= 34,
        "the 4090 served only {on_fast}/40: {served:?}"
    );

    // llm excludes the A10G: never used.
    for i in 0..20 {
        let body =
            json!({"messages": [{"role": "user", "content": format!("hi {i}")}], "max_tokens": 3});
        let answer = JobAnswer::read(gateway.post_json("/llm", &body).send().await?).await?;
        ensure!(
            answer.status == 200,
            "llm {}: {}",
            answer.status,
            answer.body
        );
        ensure!(
            answer.orchestrator.as_deref() == Some(id(fast).as_str()),
            "llm went to {:?} (slow = {})",
            answer.orchestrator,
            id(slow)
        );
    }

    // /v1/capabilities: authenticated; only declared pipelines; warm/cold.
    let url = format!("{}/v1/capabilities", gateway.url());
    let (status, _) = get_json(&gateway, &url, false).await?;
    ensure!(status == 401, "without a key: {status}");
    let (status, report) = get_json(&gateway, &url, true).await?;
    ensure!(status == 200, "capabilities: {status} {report}");
    ensure!(report["region"] == "local", "{report}");
    let pipelines: Vec<&str> = report["pipelines"]
        .as_array()
        .context("pipelines")?
        .iter()
        .filter_map(|p| p["pipeline"].as_str())
        .collect();
    ensure!(pipelines == ["text-to-image", "llm"], "{pipelines:?}");
    let t2i = model(
        &report,
        "text-to-image",
        Pipeline::TextToImage.default_model_id(),
    )
    .context("text-to-image default model")?;
    ensure!(
        t2i["state"] == "warm" && t2i["warm"] == 2 && t2i["cold"] == 0,
        "{t2i}"
    );
    let regions = t2i["regions"].as_array().context("regions")?;
    ensure!(
        regions
            .iter()
            .map(|r| r["warm"].as_u64().unwrap_or(0))
            .sum::<u64>()
            == 2,
        "{t2i}"
    );
    let llm = model(&report, "llm", Pipeline::Llm.default_model_id()).context("llm model")?;
    ensure!(
        llm["state"] == "warm" && llm["warm"] == 1,
        "A10G excluded: {llm}"
    );
    let cold = model(&report, "llm", COLD_MODEL).context("cold model")?;
    ensure!(
        cold["state"] == "cold" && cold["warm"] == 0 && cold["cold"] == 1,
        "{cold}"
    );

    // The admin report says why the A10G is not used for llm.
    let admin = format!("{}/admin/pricing", gateway.node().admin_url());
    let (status, pricing) = get_json(&gateway, &admin, false).await?;
    ensure!(status == 200, "admin pricing: {status}");
    let row = pricing["capabilities"]
        .as_array()
        .context("rows")?
        .iter()
        .find(|r| r["pipeline"] == "llm" && r["model_id"] == Pipeline::Llm.default_model_id())
        .context("llm row")?;
    ensure!(
        row["filtered"]["gpu_excluded"] == 1 && row["usable"] == 1,
        "{row}"
    );
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_orchestrator_above_the_price_cap_is_never_used() -> anyhow::Result<()> {
    // The dear one is also the faster one: without the cap it would win.
    let mut dear = OrchestratorSpec::new(
        "dear",
        vec![ModelSpec::new(Pipeline::TextToImage).capacity(16)],
    );
    dear.price = Some(PriceSpec {
        price_per_unit: 2_001,
        pixels_per_unit: 2,
    });
    let mut cheap = dear.clone();
    cheap.name = "cheap".into();
    cheap.latency = LatencySpec::fixed_ms(20);
    cheap.price = Some(PriceSpec {
        price_per_unit: 1_000,
        pixels_per_unit: 1,
    });
    let fleet = Fleet::start_all(vec![dear, cheap]).await?;
    let (dear, cheap) = (&fleet.orchestrators()[0], &fleet.orchestrators()[1]);
    // 1000 wei per unit: the cheap one is exactly at the cap, the dear one
    // (1000.5) just above it.
    let toml = GatewayConfig::new(fleet.urls()).toml()
        + r#"
[pricing]
max_price_per_unit = "1"
max_price_per_capability = '{"capabilities_prices":[{"pipeline":"text-to-image","model_id":"default","price_per_unit":1000,"pixels_per_unit":1,"currency":"WEI"}]}'
"#;
    let gateway = Gateway::start_toml(&toml).await?;
    gateway.wait_ready().await?;
    gateway.wait_capable(Pipeline::TextToImage, 2).await?;
    // 60 requests, 8 at a time: below the cheap orchestrator's capacity of
    // 16, so every one must be served by it (the only one under the cap).
    let requests = 60;
    let mut tasks = Vec::new();
    for i in 0..requests {
        let request = gateway.post_json("/text-to-image", &json!({"prompt": format!("p{i}")}));
        tasks.push(async move { JobAnswer::read(request.send().await?).await });
    }
    let mut answers = Vec::new();
    let mut tasks = tasks.into_iter();
    loop {
        let batch: Vec<_> = tasks.by_ref().take(8).map(tokio::spawn).collect();
        if batch.is_empty() {
            break;
        }
        for task in batch {
            answers.push(task.await);
        }
    }
    for task in answers {
        let answer = task??;
        ensure!(answer.status == 200, "{}: {}", answer.status, answer.body);
        ensure!(
            answer.orchestrator.as_deref() == Some(id(cheap).as_str()),
            "served by {:?}, the dear one is {}",
            answer.orchestrator,
            id(dear)
        );
    }
    ensure!(
        dear.stats().jobs_served + dear.stats().jobs_rejected == 0,
        "the dear orchestrator got jobs: {:?}",
        dear.stats()
    );
    let (status, pricing) = get_json(
        &gateway,
        &format!("{}/admin/pricing", gateway.node().admin_url()),
        false,
    )
    .await?;
    ensure!(status == 200);
    let row = &pricing["capabilities"][0];
    ensure!(
        row["cap_wei"]["price_per_unit"] == 1000
            && row["cap_source"] == "pipeline_default"
            && row["filtered"]["over_price"] == 1
            && row["usable"] == 1,
        "{pricing}"
    );
    let metrics = gateway
        .client()
        .get(format!("{}/metrics", gateway.node().admin_url()))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.lines().any(|l| l
            .starts_with("gatemesh_routing_filtered_orchestrators_total{reason=\"price_cap\"}")
            && l.ends_with(&format!(" {requests}"))),
        "price-cap filter metric missing"
    );
    gateway.shutdown().await;
    Ok(())
}
