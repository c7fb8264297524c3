//! Cross-region forwarding of jobs over the mesh: the wire format of a
//! forwarded job and its answer, the sending side (used by the executor when
//! every orchestrator it may call failed) and the receiving side (the mesh's
//! forward handler, which runs the job here and streams the answer back).
//!
//! The answer is a head frame (served, streaming, or failed with a typed
//! [`JobError`]) followed by the body chunks. The deadline travels with the
//! request; the mesh refuses a request id it already ran, so a retried
//! forward never executes twice.

use std::time::Duration;

use api::{Caller, JobOutput, RequestContext};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use mesh::{ForwardRequest, HandlerError, ResponseStream};
use mesh_core::{Attribution, JobError, JobSpec};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::jobs::{Executor, Forwarding};

/// Format version of answer frames ([`ForwardHead`]); bumped on any change
/// of the struct.
const FORWARD_FORMAT_VERSION: u8 = 1;
/// Format version of forwarded jobs: 2 carries the caller's tenant and tier.
/// A receiver still reads version 1 (from a node not yet upgraded) as the
/// default tier; a node not yet upgraded refuses version 2, and the sender
/// then tries its next forwarding target or fails the job.
const FORWARDED_JOB_VERSION: u8 = 2;
/// Format version of forwarded jobs without a caller (before tiers travelled).
const FORWARDED_JOB_VERSION_WITHOUT_CALLER: u8 = 1;
/// Longest tenant or tier name a forwarded job may carry (both come from
/// the sender's key configuration and are a few words).
const MAX_CALLER_NAME_BYTES: usize = 256;
/// Largest complete (non-streamed) answer accepted from a peer; the same
/// bound the orchestrator client applies to JSON answers.
const MAX_FORWARDED_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A job as it crosses the mesh.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedJob {
    /// The job.
    pub job: JobSpec,
    /// The client's request id, for logs on both sides.
    pub request_id: String,
    /// Who sent it to the first node: the tier selects the orchestrator
    /// pool and rules on the node that runs it, as it would have here.
    pub caller: ForwardedCaller,
}

/// The caller of a forwarded job, as it crosses the mesh (its own struct so
/// that the wire format does not follow [`Caller`]'s fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedCaller {
    /// The tenant.
    pub tenant: String,
    /// The tenant's tier.
    pub tier: String,
}

impl From<&Caller> for ForwardedCaller {
    fn from(caller: &Caller) -> Self {
        Self {
            tenant: caller.tenant.clone(),
            tier: caller.tier.clone(),
        }
    }
}

impl From<ForwardedCaller> for Caller {
    fn from(caller: ForwardedCaller) -> Self {
        Self {
            tenant: caller.tenant,
            tier: caller.tier,
        }
    }
}

/// Version 1 of [`ForwardedJob`], without the caller.
#[derive(Debug, Deserialize)]
struct ForwardedJobV1 {
    job: JobSpec,
    request_id: String,
}

impl ForwardedJob {
    fn encode(&self) -> Result<Bytes, JobError> {
        encode_as(FORWARDED_JOB_VERSION, self)
    }

    /// Reads a forwarded job of either version; a version-1 job (from a
    /// node not yet upgraded) runs as `origin`'s job of the default tier.
    fn decode(bytes: &[u8], origin: &mesh_core::NodeId) -> Result<Self, String> {
        let forwarded = match bytes.split_first() {
            Some((&FORWARDED_JOB_VERSION, body)) => {
                postcard::from_bytes::<Self>(body).map_err(|e| e.to_string())?
            }
            Some((&FORWARDED_JOB_VERSION_WITHOUT_CALLER, body)) => {
                let old: ForwardedJobV1 = postcard::from_bytes(body).map_err(|e| e.to_string())?;
                Self {
                    job: old.job,
                    request_id: old.request_id,
                    caller: ForwardedCaller {
                        tenant: format!("node:{origin}"),
                        tier: "default".to_owned(),
                    },
                }
            }
            Some((version, _)) => return Err(format!("unknown forwarded job version {version}")),
            None => return Err("empty forward frame".into()),
        };
        for (what, name) in [
            ("tenant", &forwarded.caller.tenant),
            ("tier", &forwarded.caller.tier),
        ] {
            if name.len() > MAX_CALLER_NAME_BYTES {
                return Err(format!(
                    "{what} name of {} bytes (at most {MAX_CALLER_NAME_BYTES})",
                    name.len()
                ));
            }
        }
        Ok(forwarded)
    }
}

/// The first frame of the answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardHead {
    /// A complete answer follows.
    Complete(Attribution),
    /// A stream of chunks follows.
    Stream(Attribution),
    /// The job failed there.
    Failed(JobError),
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, JobError> {
    encode_as(FORWARD_FORMAT_VERSION, value)
}

fn encode_as<T: Serialize>(version: u8, value: &T) -> Result<Bytes, JobError> {
    let mut bytes = vec![version];
    let body = postcard::to_stdvec(value)
        .map_err(|e| JobError::Internal(format!("encoding a forwarded job: {e}")))?;
    bytes.extend_from_slice(&body);
    Ok(Bytes::from(bytes))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&FORWARD_FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| e.to_string())
        }
        Some((version, _)) => Err(format!("unknown forward format version {version}")),
        None => Err("empty forward frame".into()),
    }
}

impl Executor {
    /// Sends `job` to `node` over the mesh and relays its answer.
    pub(crate) async fn forward(
        &self,
        node: &mesh_core::NodeId,
        job: &JobSpec,
        context: &RequestContext,
        deadline: Instant,
    ) -> Result<JobOutput, JobError> {
        let unreachable = |reason: String| JobError::AttemptsExhausted {
            attempts: 0,
            last_error: reason,
        };
        let mesh = self
            .cluster()
            .mesh()
            .ok_or_else(|| unreachable("no mesh".into()))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let body = ForwardedJob {
            job: job.clone(),
            request_id: context.request_id.clone(),
            caller: ForwardedCaller::from(&context.caller),
        }
        .encode()?;
        let mut answer = mesh
            .forward(node, mesh::RequestId::random(), body, remaining)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let head = match answer.next().await {
            Some(Ok(frame)) => decode::<ForwardHead>(&frame).map_err(unreachable)?,
            Some(Err(error)) => return Err(unreachable(error.to_string())),
            None => {
                return Err(unreachable(
                    "peer closed the stream without an answer".into(),
                ));
            }
        };
        match head {
            ForwardHead::Failed(error) => Err(error),
            ForwardHead::Complete(attribution) => {
                let mut body = Vec::new();
                while let Some(chunk) = answer.next().await {
                    let chunk = chunk.map_err(|e| unreachable(e.to_string()))?;
                    if body.len() + chunk.len() > MAX_FORWARDED_BODY_BYTES {
                        return Err(unreachable("forwarded answer too large".into()));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(JobOutput::Complete {
                    attribution,
                    body: Bytes::from(body),
                })
            }
            ForwardHead::Stream(attribution) => Ok(JobOutput::Stream {
                attribution,
                chunks: answer
                    .map_err(|e| JobError::AttemptsExhausted {
                        attempts: 1,
                        last_error: e.to_string(),
                    })
                    .boxed(),
            }),
        }
    }
}

/// The mesh forward handler: runs forwarded jobs on this node (never
/// forwarding them again) and streams the answer back.
pub fn handler(
    executor: Executor,
    public_base_url: String,
) -> impl Fn(ForwardRequest) -> ResponseStream + Send + Sync + 'static {
    move |request: ForwardRequest| {
        let executor = executor.clone();
        let public_base_url = public_base_url.clone();
        let answer = async move {
            let head_only = |head: ForwardHead| match encode(&head) {
                Ok(bytes) => stream::iter(vec![Ok(bytes)]).boxed(),
                Err(error) => stream::iter(vec![Err(HandlerError(error.to_string()))]).boxed(),
            };
            let forwarded = match ForwardedJob::decode(&request.body, &request.origin.node) {
                Ok(job) => job,
                Err(error) => {
                    return stream::iter(vec![Err(HandlerError(format!(
                        "bad forwarded job: {error}"
                    )))])
                    .boxed();
                }
            };
            let deadline: Duration = request.deadline.saturating_duration_since(Instant::now());
            tracing::info!(
                request_id = %forwarded.request_id,
                origin = %request.origin.node,
                pipeline = %forwarded.job.pipeline,
                tenant = %forwarded.caller.tenant,
                tier = %forwarded.caller.tier,
                "running a forwarded job"
            );
            let context = RequestContext {
                request_id: forwarded.request_id,
                public_base_url,
                deadline,
                caller: forwarded.caller.into(),
            };
            match executor
                .execute_with(forwarded.job, context, Forwarding::Forbidden)
                .await
            {
                Err(error) => head_only(ForwardHead::Failed(error)),
                Ok(JobOutput::Complete { attribution, body }) => {
                    match encode(&ForwardHead::Complete(attribution)) {
                        Ok(head) => stream::iter(vec![Ok(head), Ok(body)]).boxed(),
                        Err(error) => {
                            stream::iter(vec![Err(HandlerError(error.to_string()))]).boxed()
                        }
                    }
                }
                Ok(JobOutput::Stream {
                    attribution,
                    chunks,
                }) => match encode(&ForwardHead::Stream(attribution)) {
                    Ok(head) => stream::once(async move { Ok(head) })
                        .chain(chunks.map_err(|e| HandlerError(e.to_string())))
                        .boxed(),
                    Err(error) => stream::iter(vec![Err(HandlerError(error.to_string()))]).boxed(),
                },
            }
        };
        Box::pin(stream::once(answer).flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::{JobBody, OrchestratorId, Pipeline};

    fn spec() -> JobSpec {
        JobSpec {
            pipeline: Pipeline::Llm,
            model_id: "m".into(),
            body: JobBody::Json(b"{}".to_vec()),
            stream: true,
            units: 256,
        }
    }

    fn origin() -> mesh_core::NodeId {
        mesh_core::NodeId::new("fra-1").unwrap()
    }

    /// What a node not yet upgraded sends: version 1, no caller.
    #[derive(Serialize)]
    struct OldForwardedJob {
        job: JobSpec,
        request_id: String,
    }

    #[test]
    fn a_version_1_job_runs_as_the_origin_nodes_default_tier() {
        let old = encode_as(
            1,
            &OldForwardedJob {
                job: spec(),
                request_id: "r0".into(),
            },
        )
        .unwrap();
        let back = ForwardedJob::decode(&old, &origin()).unwrap();
        assert_eq!(back.request_id, "r0");
        assert_eq!(back.job, spec());
        assert_eq!(
            back.caller,
            ForwardedCaller {
                tenant: "node:fra-1".into(),
                tier: "default".into()
            }
        );
    }

    #[test]
    fn an_overlong_tier_is_refused() {
        let job = ForwardedJob {
            job: spec(),
            request_id: "r2".into(),
            caller: ForwardedCaller {
                tenant: "acme".into(),
                tier: "t".repeat(MAX_CALLER_NAME_BYTES + 1),
            },
        };
        let error = ForwardedJob::decode(&job.encode().unwrap(), &origin()).unwrap_err();
        assert!(error.contains("tier name"), "{error}");
    }

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let job = ForwardedJob {
            job: spec(),
            request_id: "r1".into(),
            caller: ForwardedCaller {
                tenant: "acme".into(),
                tier: "premium".into(),
            },
        };
        let bytes = job.encode().unwrap();
        let back = ForwardedJob::decode(&bytes, &origin()).unwrap();
        assert_eq!(back.job, job.job);
        assert_eq!(back.caller, job.caller, "the tier must survive the trip");
        let head = encode(&ForwardHead::Complete(Attribution {
            orchestrator: OrchestratorId::parse("127.0.0.1:1").unwrap(),
            region: None,
            attempts: 2,
        }))
        .unwrap();
        assert!(
            matches!(decode::<ForwardHead>(&head), Ok(ForwardHead::Complete(a)) if a.attempts == 2)
        );
        assert!(ForwardedJob::decode(&[], &origin()).is_err());
        assert!(ForwardedJob::decode(&[3, 0], &origin()).is_err());
        assert!(ForwardedJob::decode(&bytes[..bytes.len() - 3], &origin()).is_err());
        assert!(decode::<ForwardHead>(&[]).is_err());
        assert!(decode::<ForwardHead>(&[9, 1, 2]).is_err());
        assert!(decode::<ForwardHead>(&[FORWARD_FORMAT_VERSION, 0xff, 0xff, 0xff]).is_err());
    }
}
