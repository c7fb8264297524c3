//! Orchestrator failures are invisible to clients: a crash in the middle of
//! a run, a restart with a new certificate and auth secret, an orchestrator
//! answering `insufficient capacity`, and one answering 200 with a body that
//! is not JSON.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use mesh_core::Pipeline;
use serde_json::json;
use simulations::emulator::{Emulator, LatencySpec, ModelSpec, OrchestratorSpec};
use tests::{Gateway, GatewayConfig, JobAnswer, check_images, check_png, fleet, wait_until};

/// One `/text-to-image` request that must succeed with a PNG served by the gateway.
async fn text_to_image_ok(gateway: &Gateway, n: usize) -> anyhow::Result<JobAnswer> {
    let body = json!({ "prompt": format!("request {n}") });
    let response = gateway
        .post_json("/text-to-image", &body)
        .send()
        .await
        .with_context(|| format!("request {n} could not be sent"))?;
    let answer = JobAnswer::read(response).await?;
    ensure!(
        answer.status == 200,
        "request {n} answered {}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.raw)
    );
    let urls = check_images(&answer.body, 1).with_context(|| format!("request {n}"))?;
    check_png(&gateway.download(&urls[0]).await?).with_context(|| format!("request {n}"))?;
    Ok(answer)
}

#[tokio::test]
async fn a_crash_during_100_sequential_requests_loses_none() -> anyhow::Result<()> {
    const REQUESTS: usize = 100;
    const CRASH_AFTER: usize = 30;
    let fleet = fleet(Pipeline::TextToImage, 4, 3).await?;
    let gateway = Gateway::start_ready(fleet.urls()).await?;
    gateway.wait_capable(Pipeline::TextToImage, 3).await?;

    let mut crashed: Option<String> = None;
    let mut last_served_by = String::new();
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut attempts_after_crash: BTreeMap<u32, usize> = BTreeMap::new();
    for n in 0..REQUESTS {
        if n == CRASH_AFTER {
            // Crash the orchestrator that served the previous request, so the
            // one going down is known to be in use.
            let victim = last_served_by.clone();
            let orchestrator = fleet
                .orchestrators()
                .iter()
                .find(|o| o.url() == victim)
                .context("the victim is in the fleet")?;
            orchestrator.crash().await;
            ensure!(!orchestrator.is_running());
            crashed = Some(victim);
        }
        let answer = text_to_image_ok(&gateway, n).await?;
        let by = answer
            .orchestrator
            .clone()
            .with_context(|| format!("request {n} has no x-gatemesh-orchestrator"))?;
        if let Some(victim) = &crashed {
            ensure!(
                &by != victim,
                "request {n} claims to be served by the crashed orchestrator"
            );
            *attempts_after_crash
                .entry(answer.attempts.unwrap_or(0))
                .or_default() += 1;
        }
        *served.entry(by.clone()).or_default() += 1;
        last_served_by = by;
    }
    eprintln!(
        "served per orchestrator: {served:?}; attempts after the crash: {attempts_after_crash:?}"
    );
    ensure!(served.values().sum::<usize>() == REQUESTS);
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_orchestrator_restart_is_transparent() -> anyhow::Result<()> {
    // One orchestrator only: there is nowhere to fail over to, so every
    // request after the restart proves the gateway re-established the
    // connection (new certificate) and refreshed the session (new secret:
    // the old token gets 403).
    let orchestrator = Emulator::start(OrchestratorSpec::new(
        "restarting",
        vec![ModelSpec::new(Pipeline::TextToImage).capacity(4)],
    ))
    .await?;
    let gateway = Gateway::start_ready(vec![orchestrator.url().to_owned()]).await?;
    for n in 0..5 {
        text_to_image_ok(&gateway, n).await?;
    }
    let old_cert = orchestrator.cert_der();
    let before = orchestrator.stats();
    ensure!(before.rejected_credentials == 0, "{before:?}");

    for round in 0..2 {
        orchestrator.restart().await?;
        ensure!(
            orchestrator.cert_der() != old_cert,
            "restart kept the certificate"
        );
        for n in 0..10 {
            let answer = text_to_image_ok(&gateway, 100 * (round + 1) + n)
                .await
                .with_context(|| format!("after restart {}", round + 1))?;
            ensure!(
                answer.orchestrator.as_deref() == Some(orchestrator.url()),
                "{:?}",
                answer.orchestrator
            );
        }
    }
    let after = orchestrator.stats();
    eprintln!("orchestrator stats after two restarts: {after:?}");
    ensure!(after.restarts == 2, "{after:?}");
    ensure!(
        after.rejected_credentials >= 1,
        "the gateway never presented a token from before the restart (no 403 seen), so the \
         refresh-on-403 path was not exercised: {after:?}"
    );
    gateway.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn insufficient_capacity_sends_the_job_elsewhere() -> anyhow::Result<()> {
    // `busy`: warm, capacity 1, slow. `spare`: the same model, cold (so the
    // gateway prefers `busy` while it looks idle), capacity 4, fast.
    let busy = Emulator::start(OrchestratorSpec {
        latency: LatencySpec::fixed_ms(2_000),
        ..OrchestratorSpec::new(
            "busy",
            vec![ModelSpec::new(Pipeline::TextToImage).capacity(1)],
        )
    })
    .await?;
    let spare = Emulator::start(OrchestratorSpec::new(
        "spare",
        vec![ModelSpec {
            warm: false,
            ..ModelSpec::new(Pipeline::TextToImage).capacity(4)
        }],
    ))
    .await?;
    // A second gateway that knows only `busy` fills its one slot, so the
    // first gateway cannot know from its own in-flight count that it is full.
    let filler = Gateway::start_ready(vec![busy.url().to_owned()]).await?;
    let gateway = Gateway::start(&GatewayConfig::new(vec![
        busy.url().to_owned(),
        spare.url().to_owned(),
    ]))
    .await?;
    gateway.wait_ready().await?;
    gateway.wait_capable(Pipeline::TextToImage, 2).await?;

    let long_job = tokio::spawn(
        filler
            .post_json("/text-to-image", &json!({"prompt": "slow one"}))
            .send(),
    );
    wait_until(
        "the filler job to occupy the busy orchestrator",
        tests::WAIT_DEADLINE,
        || {
            let in_flight = busy.stats().in_flight;
            async move { in_flight == 1 }
        },
    )
    .await?;

    for n in 0..5 {
        let answer = text_to_image_ok(&gateway, n).await?;
        ensure!(
            answer.orchestrator.as_deref() == Some(spare.url()),
            "request {n} served by {:?} while busy was full",
            answer.orchestrator
        );
    }
    let busy_stats = busy.stats();
    ensure!(
        busy_stats.rejected_capacity >= 1,
        "no request was tried on the full orchestrator first, so `insufficient capacity` was \
         not exercised (does the gateway still prefer warm models?): {busy_stats:?}"
    );

    let long = JobAnswer::read(long_job.await??).await?;
    ensure!(
        long.status == 200,
        "the filler job failed: {}",
        String::from_utf8_lossy(&long.raw)
    );
    ensure!(long.orchestrator.as_deref() == Some(busy.url()));
    gateway.shutdown().await;
    filler.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_200_answer_that_is_not_json_is_retried_elsewhere() -> anyhow::Result<()> {
    // `broken`: warm, answers every job 200 with HTML in an
    // `application/json` body. `good`: the same models, cold, so the gateway
    // tries `broken` first while it knows nothing against it.
    let models = |warm: bool| {
        [Pipeline::Llm, Pipeline::TextToImage]
            .map(|pipeline| ModelSpec {
                warm,
                ..ModelSpec::new(pipeline).capacity(4)
            })
            .to_vec()
    };
    let broken = Emulator::start(OrchestratorSpec::new("broken", models(true))).await?;
    broken.set_broken_answers(true);
    let good = Emulator::start(OrchestratorSpec::new("good", models(false))).await?;
    let llm = json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4});

    // Alone, `broken` is a bad result the client hears about, not a 200.
    let alone = Gateway::start_ready(vec![broken.url().to_owned()]).await?;
    for (path, body) in [
        ("/llm", llm.clone()),
        ("/text-to-image", json!({"prompt": "alone"})),
    ] {
        let answer = JobAnswer::read(alone.post_json(path, &body).send().await?).await?;
        let text = String::from_utf8_lossy(&answer.raw);
        ensure!(
            answer.status >= 500 && text.contains("not JSON"),
            "{path} through the broken orchestrator alone answered {}: {text}",
            answer.status
        );
    }
    alone.shutdown().await;

    // With `good` beside it, every job is served, by `good`.
    let gateway = Gateway::start(&GatewayConfig::new(vec![
        broken.url().to_owned(),
        good.url().to_owned(),
    ]))
    .await?;
    gateway.wait_ready().await?;
    gateway.wait_capable(Pipeline::Llm, 2).await?;
    let tried_before = broken.stats().jobs_served;
    for n in 0..5 {
        let answer = JobAnswer::read(gateway.post_json("/llm", &llm).send().await?).await?;
        ensure!(
            answer.status == 200 && answer.orchestrator.as_deref() == Some(good.url()),
            "llm request {n} answered {} by {:?}: {}",
            answer.status,
            answer.orchestrator,
            String::from_utf8_lossy(&answer.raw)
        );
        ensure!(
            answer.body["choices"][0]["message"]["content"].is_string(),
            "llm request {n}: {}",
            answer.body
        );
        let answer = text_to_image_ok(&gateway, n).await?;
        ensure!(
            answer.orchestrator.as_deref() == Some(good.url()),
            "text-to-image request {n} served by {:?}",
            answer.orchestrator
        );
    }
    let broken_stats = broken.stats();
    ensure!(
        broken_stats.jobs_served > tried_before,
        "the broken orchestrator was never tried beside the good one, so the retry was not \
         exercised (does the gateway still prefer warm models?): {broken_stats:?}"
    );
    gateway.shutdown().await;
    Ok(())
}
