//! Acceptance 3 of issue 6: for each of the four units (frame, second, run,
//! GPU-minute) the quote for a request equals the cost charged when the same
//! request runs end to end (a gateway in front of an emulated orchestrator),
//! and the usage records sum exactly to the charged totals. Also: tiers pick
//! their own card, a stream is charged when it starts, rate cards swap at run
//! time, and an unpriceable request is refused before it runs.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use mesh_core::Pipeline;
use mesh_core::billing::{RateCard, RateCards, UsageRecord};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use simulations::emulator::Emulator;
use simulations::emulator::media::{png_image, wav_audio};
use tests::{API_KEY, Gateway, GatewayConfig, all_pipelines_spec};

const PRO_KEY: &str = "pro-key-0123456789abcdef";
const COST_HEADER: &str = "x-gatemesh-cost-nano-usd";

fn toml(orchestrator: &str, usage_dir: &std::path::Path) -> String {
    let mut text = GatewayConfig::new(vec![orchestrator.to_owned()]).toml();
    text.push_str(&format!(
        r#"
[[keys]]
key = "{PRO_KEY}"
tenant = "bigco"
tier = "pro"

[[rate_cards]]
pipeline = "text-to-image"
unit = "frame"
price_usd = "0.0025"

[[rate_cards]]
pipeline = "audio-to-text"
unit = "second"
price_usd = "0.000123457"

[[rate_cards]]
pipeline = "llm"
unit = "run"
price_usd = "0.0004"

[[rate_cards]]
pipeline = "llm"
tier = "pro"
unit = "run"
price_usd = "0.0003"

[[rate_cards]]
pipeline = "text-to-speech"
unit = "gpu_minute"
price_usd = "0.0123"

[usage]
dir = {dir:?}
"#,
        dir = usage_dir.display().to_string(),
    ));
    text
}

/// One request both quoted and run.
enum Body {
    Json(Value),
    Form(fn() -> Form),
}

struct Case {
    pipeline: &'static str,
    key: &'static str,
    body: Body,
    unit: &'static str,
    units: u64,
    cost_nano_usd: u64,
}

fn audio_form() -> Form {
    Form::new().part(
        "audio",
        Part::bytes(wav_audio(2_500))
            .file_name("speech.wav")
            .mime_str("audio/wav")
            .expect("static mime"),
    )
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            pipeline: "text-to-image",
            key: API_KEY,
            body: Body::Json(json!({"prompt": "a lighthouse", "num_images_per_prompt": 3})),
            unit: "frame",
            units: 3,
            cost_nano_usd: 7_500_000,
        },
        Case {
            // 2.5 s of audio rounds up to 3 s: ⌈3 × 123457⌉.
            pipeline: "audio-to-text",
            key: API_KEY,
            body: Body::Form(audio_form),
            unit: "second",
            units: 3,
            cost_nano_usd: 370_371,
        },
        Case {
            pipeline: "llm",
            key: API_KEY,
            body: Body::Json(
                json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}),
            ),
            unit: "run",
            units: 1,
            cost_nano_usd: 400_000,
        },
        Case {
            // The pro tier has its own llm card.
            pipeline: "llm",
            key: PRO_KEY,
            body: Body::Json(
                json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": true}),
            ),
            unit: "run",
            units: 1,
            cost_nano_usd: 300_000,
        },
        Case {
            // 61.2 GPU-seconds round up to 62: ⌈62 × 12_300_000 ÷ 60⌉ = 12_710_000.
            pipeline: "text-to-speech",
            key: API_KEY,
            body: Body::Json(json!({"text": "hello", "timeout_seconds": 61.2})),
            unit: "gpu_minute",
            units: 62,
            cost_nano_usd: 12_710_000,
        },
    ]
}

async fn quote(gateway: &Gateway, case: &Case) -> anyhow::Result<Value> {
    let client = gateway.client();
    let request = match &case.body {
        Body::Json(body) => client
            .post(format!("{}/v1/quote", gateway.url()))
            .json(&json!({"pipeline": case.pipeline, "request": body})),
        Body::Form(form) => client
            .post(format!("{}/v1/quote/{}", gateway.url(), case.pipeline))
            .multipart(form()),
    };
    let response = request.bearer_auth(case.key).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status == 200, "quote of {}: {status} {body}", case.pipeline);
    Ok(body)
}

/// Runs the job; returns (request id, cost header).
async fn run(gateway: &Gateway, case: &Case) -> anyhow::Result<(String, u64)> {
    let client = gateway.client();
    let url = format!("{}/{}", gateway.url(), case.pipeline);
    let request = match &case.body {
        Body::Json(body) => client.post(url).json(body),
        Body::Form(form) => client.post(url).multipart(form()),
    };
    let response = request.bearer_auth(case.key).send().await?;
    let status = response.status();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .context("x-request-id")?
        .to_owned();
    let cost = response
        .headers()
        .get(COST_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let text = response.text().await?;
    ensure!(status == 200, "{}: {status} {text}", case.pipeline);
    Ok((id, cost.with_context(|| format!("{COST_HEADER} missing"))?))
}

async fn usage_records(gateway: &Gateway, query: &str) -> anyhow::Result<Vec<UsageRecord>> {
    let response = gateway
        .client()
        .get(format!("{}/admin/usage{query}", gateway.node().admin_url()))
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "/admin/usage: {}",
        response.status()
    );
    let text = response.text().await?;
    text.lines()
        .map(|line| serde_json::from_str(line).context("a usage record line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_equal_charges_in_every_unit_and_records_sum_to_them() -> anyhow::Result<()> {
    let orchestrator = Emulator::start(all_pipelines_spec("all", 8)).await?;
    let dir = tempfile::tempdir()?;
    let gateway = Gateway::start_toml(&toml(orchestrator.url(), dir.path())).await?;
    gateway.wait_ready().await?;
    for pipeline in [
        Pipeline::TextToImage,
        Pipeline::AudioToText,
        Pipeline::Llm,
        Pipeline::TextToSpeech,
    ] {
        gateway.wait_capable(pipeline, 1).await?;
    }

    let mut charged: BTreeMap<String, u64> = BTreeMap::new();
    let mut units_seen = std::collections::BTreeSet::new();
    // Each case twice: quotes are stable, and records sum over many jobs.
    for round in 0..2 {
        for case in cases() {
            let quote = quote(&gateway, &case).await?;
            ensure!(
                quote["unit"] == case.unit
                    && quote["units"] == case.units
                    && quote["cost_nano_usd"] == case.cost_nano_usd,
                "quote of {} ({}): {quote}",
                case.pipeline,
                case.unit
            );
            let (id, cost) = run(&gateway, &case).await?;
            ensure!(
                cost == case.cost_nano_usd,
                "round {round}: {} charged {cost}, quoted {}",
                case.pipeline,
                case.cost_nano_usd
            );
            ensure!(charged.insert(id, cost).is_none(), "request id reused");
            units_seen.insert(case.unit);
        }
    }
    ensure!(
        units_seen.len() == 4,
        "every unit exercised: {units_seen:?}"
    );

    // The log holds one record per request, with the charged cost.
    let records = usage_records(&gateway, "").await?;
    let mut by_id: BTreeMap<String, &UsageRecord> = BTreeMap::new();
    for record in &records {
        ensure!(
            by_id.insert(record.request_id.clone(), record).is_none(),
            "request {} recorded twice",
            record.request_id
        );
    }
    ensure!(records.len() == charged.len(), "{} records", records.len());
    for (id, cost) in &charged {
        let record = by_id
            .get(id)
            .with_context(|| format!("no record of {id}"))?;
        ensure!(record.cost_nano_usd == *cost, "{id}: {record:?}");
        ensure!(record.outcome.as_str() == "ok" && record.node == "e2e-1");
        ensure!(record.orchestrator.as_deref() == Some(orchestrator.url()));
    }
    let total: u64 = charged.values().sum();
    ensure!(
        records.iter().map(|r| r.cost_nano_usd).sum::<u64>() == total,
        "records sum to the charged total"
    );
    ensure!(total == 2 * cases().iter().map(|c| c.cost_nano_usd).sum::<u64>());

    // Filters: the pro tenant's records only.
    let pro = usage_records(&gateway, "?tenant=bigco&pipeline=llm").await?;
    ensure!(
        pro.len() == 2
            && pro
                .iter()
                .all(|r| r.tier == "pro" && r.cost_nano_usd == 300_000)
    );

    // The per-tenant charge metric agrees.
    let metrics = gateway
        .client()
        .get(format!("{}/metrics", gateway.node().admin_url()))
        .send()
        .await?
        .text()
        .await?;
    let bigco = metrics
        .lines()
        .find(|l| l.starts_with("gatemesh_tenant_charged_nano_usd_total{tenant=\"bigco\"}"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("charged metric of bigco")?;
    ensure!(bigco == "600000", "{bigco}");

    // Per-second pricing needs a readable duration: refused before running.
    let mp3 = Form::new().part(
        "audio",
        Part::bytes(b"ID3\x03not a wav".to_vec())
            .file_name("a.mp3")
            .mime_str("audio/mpeg")?,
    );
    let response = gateway.post("/audio-to-text").multipart(mp3).send().await?;
    ensure!(response.status() == 422, "{}", response.status());
    // GPU-minute pricing needs the declared time.
    let response = gateway
        .post_json("/text-to-speech", &json!({"text": "x"}))
        .send()
        .await?;
    ensure!(response.status() == 422, "{}", response.status());

    // Rate cards swap at run time.
    gateway.node().usage().apply(RateCards::new(vec![RateCard {
        pipeline: Pipeline::TextToImage,
        model_id: "default".into(),
        tier: "default".into(),
        unit: mesh_core::billing::BillingUnit::Run,
        price_per_unit_nano_usd: 42,
    }])?);
    let case = &cases()[0];
    ensure!(quote(&gateway, case).await?["cost_nano_usd"] == 42);
    ensure!(run(&gateway, case).await?.1 == 42);
    // llm is free now: no card.
    let case = &cases()[2];
    let free = quote(&gateway, case).await?;
    ensure!(
        free["unit"].is_null() && free["cost_nano_usd"] == 0,
        "{free}"
    );
    ensure!(run(&gateway, case).await?.1 == 0);
    ensure!(gateway.node().usage().rate_cards().len() == 1);

    gateway.shutdown().await;
    drop(orchestrator);
    Ok(())
}

#[tokio::test]
async fn quote_validates_like_a_job() -> anyhow::Result<()> {
    let orchestrator = Emulator::start(all_pipelines_spec("all", 2)).await?;
    let dir = tempfile::tempdir()?;
    let gateway = Gateway::start_toml(&toml(orchestrator.url(), dir.path())).await?;
    let url = format!("{}/v1/quote", gateway.url());
    let client = gateway.client();
    let body = json!({"pipeline": "text-to-image", "request": {"prompt": "x"}});
    let unauthenticated = client.post(&url).json(&body).send().await?;
    ensure!(unauthenticated.status() == 401);
    let missing_prompt = client
        .post(&url)
        .bearer_auth(API_KEY)
        .json(&json!({"pipeline": "text-to-image", "request": {}}))
        .send()
        .await?;
    ensure!(missing_prompt.status() == 422);
    let multipart_by_json = client
        .post(&url)
        .bearer_auth(API_KEY)
        .json(&json!({"pipeline": "upscale", "request": {}}))
        .send()
        .await?;
    ensure!(multipart_by_json.status() == 422);
    let unknown = client
        .post(format!("{url}/text-to-music"))
        .bearer_auth(API_KEY)
        .json(&json!({}))
        .send()
        .await?;
    ensure!(unknown.status() == 404);
    let image = Form::new().text("prompt", "sharper").part(
        "image",
        Part::bytes(png_image(3))
            .file_name("i.png")
            .mime_str("image/png")?,
    );
    let upscale = client
        .post(format!("{url}/upscale"))
        .bearer_auth(API_KEY)
        .multipart(image)
        .send()
        .await?;
    ensure!(upscale.status() == 200);
    let answer: Value = upscale.json().await?;
    ensure!(
        answer["unit"].is_null() && answer["cost_usd"] == "0.000000000",
        "{answer}"
    );
    gateway.shutdown().await;
    Ok(())
}
