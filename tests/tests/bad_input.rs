//! Bad input from clients and from orchestrators gets a clear status and
//! the JSON error envelope (with `x-request-id`), and never takes the node
//! down: after each batch, `/healthz` answers 200 and a valid job succeeds.

use std::net::Ipv4Addr;

use anyhow::{Context, ensure};
use mesh_core::Pipeline;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use simulations::emulator::media::png_image;
use simulations::emulator::{
    EmulatedOrchestrator, Emulator, ModelSpec, OrchestratorSpec, REJECT_WORD,
};
use tests::hostile::{Bystander, HostileOrchestrator, InfoReply, JobReply};
use tests::{API_KEY, Gateway, GatewayConfig, expect_error, wait_until};

/// Small on purpose, so the 413 case needs only a few KB.
const MAX_JSON_BODY_BYTES: usize = 4_096;

/// After the bad inputs: the process is healthy and still serves jobs.
async fn still_serving(gateway: &Gateway) -> anyhow::Result<()> {
    let health = gateway.get("/healthz").send().await?;
    ensure!(
        health.status() == 200,
        "/healthz answered {}",
        health.status()
    );
    gateway
        .check_text_to_image("a valid job after the bad ones")
        .await
        .context("a valid job after the bad inputs")?;
    Ok(())
}

/// One bad request: its name, the request, and the status and code expected.
struct Case {
    name: &'static str,
    request: reqwest::RequestBuilder,
    status: u16,
    code: &'static str,
}

/// Sends every case with its own `x-request-id`, checks each, and reports
/// every failing case at once.
async fn run_cases(cases: Vec<Case>) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for case in cases {
        let request_id = format!("e2e-{}", case.name);
        let outcome = async {
            let response = case
                .request
                .header("x-request-id", &request_id)
                .send()
                .await
                .context("the request could not be sent")?;
            let answer = expect_error(response, case.status, case.code).await?;
            ensure!(
                answer.request_id.as_deref() == Some(request_id.as_str()),
                "x-request-id {:?} is not the one sent",
                answer.request_id
            );
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            failures.push(format!("{}: {error:#}", case.name));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

fn png_form() -> Form {
    Form::new().text("prompt", "x").part(
        "image",
        Part::bytes(png_image(3))
            .file_name("in.png")
            .mime_str("image/png")
            .expect("static mime type"),
    )
}

async fn text_to_image_orchestrator() -> anyhow::Result<EmulatedOrchestrator> {
    Ok(Emulator::start(OrchestratorSpec::new(
        "good",
        vec![ModelSpec::new(Pipeline::TextToImage).capacity(4)],
    ))
    .await?)
}

#[tokio::test]
async fn bad_client_input_gets_json_errors_and_the_node_survives() -> anyhow::Result<()> {
    let orchestrator = text_to_image_orchestrator().await?;
    let offered: Vec<String> = Pipeline::BATCH
        .into_iter()
        .filter(|p| *p != Pipeline::Upscale)
        .map(|p| format!("{:?}", p.as_str()))
        .collect();
    let config = GatewayConfig::new(vec![orchestrator.url().to_owned()])
        .api(format!("max_json_body_bytes = {MAX_JSON_BODY_BYTES}"))
        .api(format!("pipelines = [{}]", offered.join(", ")));
    let gateway = Gateway::start(&config).await?;
    gateway.wait_ready().await?;
    let client = gateway.client();
    let url = |path: &str| format!("{}{path}", gateway.url());
    let prompt = json!({"prompt": "a cat"});
    let oversized = json!({"prompt": "x".repeat(MAX_JSON_BODY_BYTES * 2)});
    let oversized_bytes = serde_json::to_vec(&oversized)?;
    let streamed_chunks: Vec<Result<Vec<u8>, std::io::Error>> = oversized_bytes
        .chunks(1_024)
        .map(|c| Ok(c.to_vec()))
        .collect();

    let cases = vec![
        Case {
            name: "no-key",
            request: client.post(url("/text-to-image")).json(&prompt),
            status: 401,
            code: "missing_api_key",
        },
        Case {
            name: "wrong-key",
            request: client
                .post(url("/text-to-image"))
                .bearer_auth("not-the-right-key-0123456789")
                .json(&prompt),
            status: 401,
            code: "invalid_api_key",
        },
        Case {
            name: "not-bearer",
            request: client
                .post(url("/text-to-image"))
                .basic_auth("user", Some(API_KEY))
                .json(&prompt),
            status: 401,
            code: "missing_api_key",
        },
        Case {
            name: "malformed-json",
            request: gateway
                .post("/text-to-image")
                .header("content-type", "application/json")
                .body("{\"prompt\": \"unterminated"),
            status: 400,
            code: "malformed_json",
        },
        Case {
            name: "json-not-an-object",
            request: gateway
                .post("/text-to-image")
                .header("content-type", "application/json")
                .body("[1, 2, 3]"),
            status: 422,
            code: "validation_failed",
        },
        Case {
            name: "missing-prompt",
            request: gateway.post_json("/text-to-image", &json!({"seed": 1})),
            status: 422,
            code: "validation_failed",
        },
        Case {
            name: "wrong-content-type",
            request: gateway
                .post("/text-to-image")
                .header("content-type", "text/plain")
                .body("a cat"),
            status: 415,
            code: "unsupported_media_type",
        },
        Case {
            name: "json-to-a-multipart-pipeline",
            request: gateway.post_json("/image-to-image", &prompt),
            status: 415,
            code: "unsupported_media_type",
        },
        Case {
            name: "malformed-multipart",
            request: gateway
                .post("/image-to-image")
                .header("content-type", "multipart/form-data; boundary=XYZ")
                .body("--XYZ\r\nthis is not a part"),
            status: 400,
            code: "malformed_multipart",
        },
        Case {
            name: "oversized-declared",
            request: gateway.post_json("/text-to-image", &oversized),
            status: 413,
            code: "body_too_large",
        },
        Case {
            name: "oversized-streamed",
            request: gateway
                .post("/text-to-image")
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    streamed_chunks,
                ))),
            status: 413,
            code: "body_too_large",
        },
        Case {
            name: "unknown-path",
            request: gateway.post_json("/text-to-everything", &prompt),
            status: 404,
            code: "not_found",
        },
        Case {
            name: "wrong-method",
            request: gateway.get("/text-to-image"),
            status: 405,
            code: "method_not_allowed",
        },
        Case {
            name: "pipeline-not-offered",
            request: gateway.post("/upscale").multipart(png_form()),
            status: 404,
            code: "pipeline_not_offered",
        },
        Case {
            name: "live-video-not-offered",
            request: gateway.post_json("/live-video-to-video", &json!({"stream_id": "s"})),
            status: 404,
            code: "pipeline_not_offered",
        },
        Case {
            name: "unknown-model",
            request: gateway.post_json(
                "/text-to-image",
                &json!({"prompt": "a cat", "model_id": "nobody/serves-this"}),
            ),
            status: 503,
            code: "no_capable_orchestrator",
        },
        Case {
            name: "pipeline-nobody-serves",
            request: gateway.post("/image-to-image").multipart(png_form()),
            status: 503,
            code: "no_capable_orchestrator",
        },
        Case {
            name: "runner-rejection",
            request: gateway.post_json(
                "/text-to-image",
                &json!({"prompt": format!("please {REJECT_WORD} now")}),
            ),
            status: 400,
            code: "rejected_by_runner",
        },
        Case {
            name: "unknown-media",
            request: gateway.get("/media/0123456789abcdef0123456789abcdef"),
            status: 404,
            code: "media_not_found",
        },
    ];
    let result = run_cases(cases).await;
    // Whatever failed above, the node must still be up.
    still_serving(&gateway).await?;
    result?;
    let stats = orchestrator.stats();
    ensure!(
        stats.failed >= 1,
        "the runner rejection never reached the orchestrator: {stats:?}"
    );
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn garbage_get_orchestrator_replies_are_survived() -> anyhow::Result<()> {
    // The hostile servers are the only would-be text-to-image providers; the
    // emulator serves only /llm, so the node is ready and can prove it lives.
    let protobuf = HostileOrchestrator::info(InfoReply::GarbageProtobuf).await?;
    let framing = HostileOrchestrator::info(InfoReply::GarbageFraming).await?;
    let llm = Emulator::start(OrchestratorSpec::new(
        "llm-only",
        vec![ModelSpec::new(Pipeline::Llm).capacity(2)],
    ))
    .await?;
    let gateway = Gateway::start_ready(vec![
        protobuf.url().to_owned(),
        framing.url().to_owned(),
        llm.url().to_owned(),
    ])
    .await?;
    // Two rounds each: the node kept polling after the first garbage.
    wait_until(
        "two GetOrchestrator calls on each hostile server",
        tests::WAIT_DEADLINE,
        || {
            let calls = (protobuf.calls(), framing.calls());
            async move { calls.0 >= 2 && calls.1 >= 2 }
        },
    )
    .await?;

    let response = gateway
        .post_json("/text-to-image", &json!({"prompt": "a cat"}))
        .send()
        .await?;
    expect_error(response, 503, "no_capable_orchestrator").await?;

    let health = gateway.get("/healthz").send().await?;
    ensure!(health.status() == 200);
    let response = gateway
        .post_json(
            "/llm",
            &json!({"messages": [{"role": "user", "content": "still there?"}], "max_tokens": 3}),
        )
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "llm after garbage: {}",
        response.status()
    );
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn garbage_job_answers_get_503_and_are_survived() -> anyhow::Result<()> {
    let good = text_to_image_orchestrator().await?;
    let variants = [
        ("hostile/not-json", JobReply::NotJson),
        ("hostile/truncated", JobReply::TruncatedBody),
        ("hostile/not-http", JobReply::NotHttp),
    ];
    // Each variant: a job server writing garbage, and a GetOrchestrator
    // server advertising one model whose jobs go there.
    let mut hostiles = Vec::new();
    for (model, reply) in variants {
        let jobs = HostileOrchestrator::jobs(reply.clone()).await?;
        let info = HostileOrchestrator::info(InfoReply::Advertise {
            transcoder: jobs.url().to_owned(),
            pipeline: Pipeline::TextToImage,
            model: model.to_owned(),
        })
        .await?;
        hostiles.push((model, reply, info, jobs));
    }
    let mut orchestrators = vec![good.url().to_owned()];
    orchestrators.extend(hostiles.iter().map(|(_, _, info, _)| info.url().to_owned()));
    let gateway = Gateway::start_ready(orchestrators).await?;
    for (model, ..) in &hostiles {
        gateway
            .wait_capable_model(Pipeline::TextToImage, model, 1)
            .await?;
    }

    let mut failures = Vec::new();
    for (model, reply, _info, jobs) in &hostiles {
        let outcome = async {
            let response = gateway
                .post_json(
                    "/text-to-image",
                    &json!({"prompt": "a cat", "model_id": model}),
                )
                .send()
                .await?;
            expect_error(response, 503, "attempts_exhausted").await?;
            ensure!(
                jobs.calls() >= 1,
                "the job never reached the hostile server"
            );
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = outcome {
            failures.push(format!("{reply:?}: {error:#}"));
        }
    }
    still_serving(&gateway).await?;
    ensure!(
        failures.is_empty(),
        "garbage job answers:\n{}",
        failures.join("\n")
    );
    gateway.shutdown().await;
    Ok(())
}

/// One text-to-image job for `model`, served only by a fake orchestrator
/// whose answer puts the image at `image_url`, beside a good orchestrator
/// for other models. The job must fail with 503 `attempts_exhausted`, after
/// which the node must still serve; the error text and the fake's job server
/// (for its call count) are returned.
async fn job_with_image_at(
    model: &str,
    image_url: String,
) -> anyhow::Result<(String, HostileOrchestrator)> {
    let good = text_to_image_orchestrator().await?;
    let jobs = HostileOrchestrator::jobs(JobReply::ImageAt(image_url)).await?;
    let info = HostileOrchestrator::info(InfoReply::Advertise {
        transcoder: jobs.url().to_owned(),
        pipeline: Pipeline::TextToImage,
        model: model.to_owned(),
    })
    .await?;
    let gateway = Gateway::start_ready(vec![good.url().to_owned(), info.url().to_owned()]).await?;
    gateway
        .wait_capable_model(Pipeline::TextToImage, model, 1)
        .await?;
    let response = gateway
        .post_json(
            "/text-to-image",
            &json!({"prompt": "a cat", "model_id": model}),
        )
        .send()
        .await?;
    let answer = expect_error(response, 503, "attempts_exhausted").await?;
    still_serving(&gateway).await?;
    gateway.shutdown().await;
    Ok((String::from_utf8_lossy(&answer.raw).into_owned(), jobs))
}

#[tokio::test]
async fn a_result_on_another_host_is_not_fetched() -> anyhow::Result<()> {
    // An orchestrator answers with an image "at" another loopback address,
    // standing in for cloud metadata or the private network: the gateway
    // must not connect there, and the client must not get those bytes.
    let bystander = Bystander::start(Ipv4Addr::new(127, 0, 0, 2)).await?;
    let (text, jobs) = job_with_image_at(
        "hostile/elsewhere",
        format!("{}/latest/meta-data/secret.png", bystander.url()),
    )
    .await?;
    ensure!(
        text.contains("not on the orchestrator's host"),
        "the error does not say why: {text}"
    );
    ensure!(
        jobs.calls() >= 1,
        "the job never reached the hostile server"
    );
    ensure!(
        bystander.connections() == 0,
        "the gateway connected to the other host {} time(s)",
        bystander.connections()
    );
    Ok(())
}

#[tokio::test]
async fn a_result_that_cannot_be_downloaded_is_a_bad_answer_named_as_such() -> anyhow::Result<()> {
    // The result is on the orchestrator's own host, at a port nobody
    // listens on: the job went through, its result did not.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let (text, _) = job_with_image_at(
        "hostile/lost-result",
        format!("https://127.0.0.1:{closed_port}/stream/x.png"),
    )
    .await?;
    ensure!(
        text.contains("fetching the result") && text.contains(&closed_port.to_string()),
        "the error does not say the result could not be fetched: {text}"
    );
    ensure!(
        !text.contains("cannot connect to the orchestrator"),
        "blamed on reaching the orchestrator: {text}"
    );
    Ok(())
}
