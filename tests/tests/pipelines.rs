//! Each of the nine batch pipelines round-trips client → gateway (HTTPS) →
//! emulated orchestrator (TLS, real protocol) → gateway → client, with the
//! bodies of the published gateway OpenAPI; media URLs in results are
//! rewritten to the gateway and download as real media. `/llm` streams are
//! relayed chunk by chunk, not buffered.

use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use simulations::emulator::media::{png_image, wav_audio};
use simulations::emulator::{EmulatedOrchestrator, Emulator};
use tests::{
    Gateway, JobAnswer, all_pipelines_spec, check_images, check_mp4, check_png, check_wav,
};

/// One orchestrator serving every batch pipeline and a ready gateway in front of it.
async fn setup() -> anyhow::Result<(EmulatedOrchestrator, Gateway)> {
    let orchestrator = Emulator::start(all_pipelines_spec("all", 4)).await?;
    let gateway = Gateway::start_ready(vec![orchestrator.url().to_owned()]).await?;
    Ok((orchestrator, gateway))
}

/// A 200 JSON answer served by `orchestrator` in one attempt.
async fn ok_answer(
    response: reqwest::Response,
    orchestrator: &EmulatedOrchestrator,
) -> anyhow::Result<JobAnswer> {
    let answer = JobAnswer::read(response).await?;
    ensure!(
        answer.status == 200,
        "expected 200, got {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.raw)
    );
    ensure!(
        answer
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/json")),
        "content type {:?}",
        answer.content_type
    );
    ensure!(answer.request_id.is_some(), "no x-request-id");
    ensure!(
        answer.orchestrator.as_deref() == Some(orchestrator.url()),
        "x-gatemesh-orchestrator {:?}, expected {}",
        answer.orchestrator,
        orchestrator.url()
    );
    ensure!(answer.attempts == Some(1), "attempts {:?}", answer.attempts);
    Ok(answer)
}

fn png_part() -> Part {
    Part::bytes(png_image(7))
        .file_name("input.png")
        .mime_str("image/png")
        .expect("static mime type")
}

async fn multipart_images(path: &str, count: usize) -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let form = Form::new()
        .text("prompt", "make it brighter")
        .part("image", png_part());
    let response = gateway.post(path).multipart(form).send().await?;
    let answer = ok_answer(response, &orchestrator).await?;
    for url in check_images(&answer.body, count)? {
        check_png(&gateway.download(&url).await?)?;
    }
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn text_to_image_returns_pngs_served_by_the_gateway() -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let body = json!({"prompt": "a lighthouse at dusk", "num_images_per_prompt": 2, "seed": 42});
    let response = gateway.post_json("/text-to-image", &body).send().await?;
    let answer = ok_answer(response, &orchestrator).await?;
    let urls = check_images(&answer.body, 2)?;
    ensure!(answer.body["images"][0]["seed"] == 42, "{}", answer.body);
    ensure!(urls[0] != urls[1], "two images share a URL: {urls:?}");
    for url in urls {
        check_png(&gateway.download(&url).await?)?;
    }
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn image_to_image_returns_pngs() -> anyhow::Result<()> {
    multipart_images("/image-to-image", 1).await
}

#[tokio::test]
async fn upscale_returns_pngs() -> anyhow::Result<()> {
    multipart_images("/upscale", 1).await
}

#[tokio::test]
async fn image_to_video_returns_an_mp4() -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let form = Form::new().part("image", png_part());
    let response = gateway
        .post("/image-to-video")
        .multipart(form)
        .send()
        .await?;
    let answer = ok_answer(response, &orchestrator).await?;
    let urls = check_images(&answer.body, 1)?;
    check_mp4(&gateway.download(&urls[0]).await?)?;
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn audio_to_text_returns_a_transcript() -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let audio = Part::bytes(wav_audio(2_000))
        .file_name("speech.wav")
        .mime_str("audio/wav")?;
    let form = Form::new().part("audio", audio);
    let response = gateway
        .post("/audio-to-text")
        .multipart(form)
        .send()
        .await?;
    let answer = ok_answer(response, &orchestrator).await?;
    let text = answer.body["text"].as_str().context("text")?;
    ensure!(!text.is_empty(), "empty transcript");
    let chunks = answer.body["chunks"].as_array().context("chunks")?;
    ensure!(chunks.len() == 2, "2 s of audio, chunks: {}", answer.body);
    for chunk in chunks {
        ensure!(chunk["timestamp"].as_array().is_some_and(|t| t.len() == 2));
        ensure!(chunk["text"].is_string());
    }
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn segment_anything_2_returns_masks() -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let form = Form::new()
        .text("point_coords", "[[10, 20]]")
        .text("point_labels", "[1]")
        .part("image", png_part());
    let response = gateway
        .post("/segment-anything-2")
        .multipart(form)
        .send()
        .await?;
    let answer = ok_answer(response, &orchestrator).await?;
    for key in ["masks", "scores", "logits"] {
        ensure!(
            answer.body[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key} missing in {}",
            answer.body
        );
    }
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn image_to_text_returns_a_caption() -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let form = Form::new()
        .text("prompt", "what is this?")
        .part("image", png_part());
    let response = gateway
        .post("/image-to-text")
        .multipart(form)
        .send()
        .await?;
    let answer = ok_answer(response, &orchestrator).await?;
    ensure!(
        answer.body["text"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        answer.body
    );
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn text_to_speech_returns_a_wav() -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let body = json!({"text": "hello from the end-to-end tests"});
    let response = gateway.post_json("/text-to-speech", &body).send().await?;
    let answer = ok_answer(response, &orchestrator).await?;
    let url = answer.body["audio"]["url"]
        .as_str()
        .with_context(|| format!("audio.url missing in {}", answer.body))?;
    check_wav(&gateway.download(url).await?)?;
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn llm_returns_a_completion() -> anyhow::Result<()> {
    let (orchestrator, gateway) = setup().await?;
    let body = json!({"messages": [{"role": "user", "content": "say something"}], "max_tokens": 5});
    let response = gateway.post_json("/llm", &body).send().await?;
    let answer = ok_answer(response, &orchestrator).await?;
    let choice = &answer.body["choices"][0];
    ensure!(choice["finish_reason"] == "stop", "{}", answer.body);
    let content = choice["message"]["content"].as_str().context("content")?;
    ensure!(
        content.split_whitespace().count() == 5,
        "max_tokens 5: {content:?}"
    );
    ensure!(
        answer.body["usage"]["completion_tokens"] == 5,
        "{}",
        answer.body
    );
    gateway.shutdown().await;
    Ok(())
}

/// Reads SSE events (`data: …` blocks) from a streaming response.
struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    /// The next event's JSON, or `None` at the end of the stream.
    async fn next(&mut self) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(event).context("SSE event is not UTF-8")?;
                let data: String = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Ok(Some(
                    serde_json::from_str(&data)
                        .with_context(|| format!("SSE data is not JSON: {data:?}"))?,
                ));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => {
                    ensure!(
                        self.buffer.iter().all(u8::is_ascii_whitespace),
                        "stream ended inside an event: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    );
                    return Ok(None);
                }
            }
        }
    }
}

#[tokio::test]
async fn llm_stream_delivers_the_first_chunk_before_the_last_is_produced() -> anyhow::Result<()> {
    const TOKENS: usize = 12;
    let (orchestrator, gateway) = setup().await?;
    orchestrator.set_inter_token_delay(Duration::from_millis(150));
    let body = json!({
        "messages": [{"role": "user", "content": "stream please"}],
        "max_tokens": TOKENS,
        "stream": true,
    });
    let response = gateway.post_json("/llm", &body).send().await?;
    ensure!(response.status() == 200, "status {}", response.status());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        content_type.starts_with("text/event-stream"),
        "content type {content_type:?}"
    );
    ensure!(
        response.headers().get("x-gatemesh-orchestrator").is_some(),
        "no x-gatemesh-orchestrator on the stream"
    );
    let mut events = SseReader {
        response,
        buffer: Vec::new(),
    };

    let first = events.next().await?.context("the stream has no event")?;
    // At this moment the orchestrator is still producing: the stream holds
    // its capacity slot, and the remaining tokens are ~150 ms apart.
    let in_flight = orchestrator.stats().in_flight;
    ensure!(
        in_flight == 1,
        "the first chunk arrived only after the orchestrator finished (in_flight = {in_flight}): the gateway buffers the stream"
    );
    ensure!(
        first["choices"][0]["finish_reason"].is_null(),
        "the first chunk is already the last: {first}"
    );

    let mut count = 1;
    let mut content = first["choices"][0]["delta"]["content"]
        .as_str()
        .context("delta.content")?
        .to_owned();
    let mut last = first;
    while let Some(event) = events.next().await? {
        count += 1;
        content.push_str(
            event["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or(""),
        );
        last = event;
    }
    ensure!(count == TOKENS, "expected {TOKENS} chunks, got {count}");
    ensure!(
        last["choices"][0]["finish_reason"] == "stop",
        "the last chunk has no finish_reason: {last}"
    );
    ensure!(
        content.split_whitespace().count() == TOKENS,
        "content {content:?}"
    );
    gateway.shutdown().await;
    Ok(())
}
