//! `livepeer-direct`: prints the headers that let a plain HTTP client (curl,
//! wrk, a reverse proxy) submit a batch AI job straight to an orchestrator,
//! as a gateway would: it calls `GetOrchestrator` once (offchain identity)
//! and builds the `Livepeer-Segment` credentials with the auth token from
//! the reply (valid for the orchestrator's token lifetime, 30 minutes in
//! go-livepeer). One `Name: value` line per header, then the job URL on the
//! last line prefixed with `URL `.
//!
//! Used by `scripts/bench-hop` to measure the orchestrator directly and
//! behind HAProxy and nginx, against gatemesh in front of the same one.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use livepeer::client::{AI_WORKER_AUTHORIZATION, OrchestratorClient, SEGMENT_HEADER};
use livepeer::credentials::{Offchain, job_capabilities};
use mesh_core::job::{JobBody, JobSpec};
use mesh_core::{OrchestratorId, Pipeline};

/// Print the headers for submitting a job directly to an orchestrator.
#[derive(Debug, Parser)]
#[command(name = "livepeer-direct", version)]
struct Args {
    /// The orchestrator's service URL (`https://host:port`).
    #[arg(long)]
    orchestrator: String,
    /// The pipeline of the job.
    #[arg(long, default_value = "llm")]
    pipeline: Pipeline,
    /// The model; default: the pipeline's default model.
    #[arg(long)]
    model: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let id = OrchestratorId::parse(&args.orchestrator)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.orchestrator))?;
    let model_id = args
        .model
        .unwrap_or_else(|| args.pipeline.default_model_id().to_owned());
    let client = OrchestratorClient::new().context("building the orchestrator client")?;
    let session = client
        .get_orchestrator(
            &id,
            Some(job_capabilities(args.pipeline, &model_id)),
            Duration::from_secs(5),
        )
        .await
        .with_context(|| format!("GetOrchestrator {}", id.as_str()))?;
    let job = JobSpec {
        pipeline: args.pipeline,
        model_id,
        body: JobBody::Json(b"{}".to_vec()),
        stream: false,
        units: 0,
    };
    let headers = Offchain::headers(&session, &job).context("building the credentials")?;
    println!("{SEGMENT_HEADER}: {}", headers.segment);
    println!("Authorization: {AI_WORKER_AUTHORIZATION}");
    println!("URL {}/{}", session.transcoder, args.pipeline.as_str());
    Ok(())
}
