//! What a gateway proves to an orchestrator: the `GetOrchestrator` request,
//! the job capabilities, the segment credentials (`Livepeer-Segment`) and the
//! payment (`Livepeer-Payment`), protocol §1.4, §2.1, §3 and §4.3.
//!
//! Payments sit behind [`PaymentSource`] so that on-chain tickets or a remote
//! signer can replace [`Offchain`] without changing the client. The trait
//! returns a boxed future because a remote signer answers over the network.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::future::BoxFuture;
use mesh_core::{Capabilities, JobSpec, Pipeline};
use sha3::{Digest as _, Keccak256};

use crate::convert::capabilities_to_proto;
use crate::error::PaymentError;
use crate::proto;
use crate::session::Session;

/// The legacy `SegData.profiles` value go-livepeer sends for AI jobs.
pub const AI_SEGMENT_PROFILES: &[u8] = b"invalid";

/// The capabilities go-livepeer's AI gateway sends for one job: the default
/// set plus the pipeline bit, `capacities[cap] = 1` and the model named in
/// `constraints.PerCapability[cap].models` with `warm = false`.
pub fn job_capabilities(pipeline: Pipeline, model_id: &str) -> proto::Capabilities {
    capabilities_to_proto(&Capabilities::for_job(pipeline, model_id, false))
}

/// The orchestrator keys balances for batch AI by `"<capId>_<modelId>"`.
pub fn manifest_id(pipeline: Pipeline, model_id: &str) -> String {
    format!("{}_{model_id}", pipeline.capability().0)
}

/// The segment credentials for one batch AI job (protocol §2.1), unsigned
/// (`sig` empty, as offchain). A signing payment source fills `sig` itself.
pub fn segment_credentials(session: &Session, job: &JobSpec) -> proto::SegData {
    proto::SegData {
        manifest_id: manifest_id(job.pipeline, &job.model_id).into_bytes(),
        seq: 0,
        hash: Keccak256::digest([]).to_vec(),
        profiles: AI_SEGMENT_PROFILES.to_vec(),
        sig: Vec::new(),
        duration: 0,
        capabilities: Some(job_capabilities(job.pipeline, &job.model_id)),
        auth_token: session.auth_token.clone(),
        calc_perceptual_hash: false,
        storage: Vec::new(),
    }
}

/// A protobuf message as a header value: standard base64 with padding.
pub fn encode_header(message: &impl prost::Message) -> String {
    BASE64.encode(message.encode_to_vec())
}

/// Who the gateway is on the wire: its ETH address and its signature over
/// that address, both computed once at start-up (§1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayIdentity {
    /// 20-byte ETH address; zero offchain.
    pub address: [u8; 20],
    /// 65-byte signature over the checksummed address string; empty offchain.
    pub signature: Vec<u8>,
}

impl GatewayIdentity {
    /// The offchain identity: zero address, empty signature (§3).
    pub fn offchain() -> Self {
        Self {
            address: [0; 20],
            signature: Vec::new(),
        }
    }

    /// The `GetOrchestrator` request. `capabilities: None` asks for every
    /// capability's price (`capabilities_prices`) and the GPU list.
    pub fn orchestrator_request(
        &self,
        capabilities: Option<proto::Capabilities>,
    ) -> proto::OrchestratorRequest {
        proto::OrchestratorRequest {
            address: self.address.to_vec(),
            sig: self.signature.clone(),
            capabilities,
            ignore_capacity_check: false,
        }
    }
}

impl Default for GatewayIdentity {
    fn default() -> Self {
        Self::offchain()
    }
}

/// The two credential headers of one job submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentHeaders {
    /// `Livepeer-Segment`: base64 `SegData`.
    pub segment: String,
    /// `Livepeer-Payment`: base64 `Payment`, or empty offchain.
    pub payment: String,
}

/// Produces the credentials of one job submission. Implementations: offchain
/// today; on-chain tickets and a remote signer later.
pub trait PaymentSource: Send + Sync {
    /// Headers for submitting `job` on `session`. Called once per attempt,
    /// right before the request is sent.
    fn payment_headers<'a>(
        &'a self,
        session: &'a Session,
        job: &'a JobSpec,
    ) -> BoxFuture<'a, Result<PaymentHeaders, PaymentError>>;
}

/// Offchain payments (§3): unsigned segment credentials carrying the auth
/// token, and an empty `Livepeer-Payment`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offchain;

impl Offchain {
    /// The headers, computed synchronously.
    pub fn headers(session: &Session, job: &JobSpec) -> Result<PaymentHeaders, PaymentError> {
        if session.auth_token.is_none() {
            // The orchestrator answers 403 "missing auth token"; refresh first.
            return Err(PaymentError::SessionExpired);
        }
        Ok(PaymentHeaders {
            segment: encode_header(&segment_credentials(session, job)),
            payment: String::new(),
        })
    }
}

impl PaymentSource for Offchain {
    fn payment_headers<'a>(
        &'a self,
        session: &'a Session,
        job: &'a JobSpec,
    ) -> BoxFuture<'a, Result<PaymentHeaders, PaymentError>> {
        Box::pin(std::future::ready(Self::headers(session, job)))
    }
}

/// A credential header that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not standard base64.
    #[error("header is not base64: {0}")]
    Base64(String),
    /// Not the expected protobuf message.
    #[error("header is not a valid message: {0}")]
    Protobuf(String),
}

/// Decodes a credential header (`Livepeer-Segment` as [`proto::SegData`],
/// `Livepeer-Payment` as [`proto::Payment`]); the orchestrator side of
/// [`encode_header`], used by tests and the emulator.
pub fn decode_header<M: prost::Message + Default>(value: &str) -> Result<M, HeaderError> {
    let bytes = BASE64
        .decode(value.trim())
        .map_err(|error| HeaderError::Base64(error.to_string()))?;
    M::decode(bytes.as_slice()).map_err(|error| HeaderError::Protobuf(error.to_string()))
}

#[cfg(test)]
mod tests {
    use mesh_core::{JobBody, OrchestratorId, OrchestratorInfo};

    use super::*;

    fn session(token: bool) -> Session {
        Session {
            info: OrchestratorInfo {
                id: OrchestratorId::parse("127.0.0.1:1").unwrap(),
                transcoder: "https://127.0.0.1:1".into(),
                capabilities: Capabilities::default(),
                prices: Vec::new(),
                hardware: Vec::new(),
            },
            transcoder: "https://127.0.0.1:1".into(),
            auth_token: token.then(|| proto::AuthToken {
                token: vec![0xAB; 32],
                session_id: "sess".into(),
                expiration: 1_800,
            }),
            price: None,
            ticket_params: None,
            fetched_at_unix: 0,
        }
    }

    fn job() -> JobSpec {
        JobSpec {
            pipeline: Pipeline::TextToImage,
            model_id: "ByteDance/SDXL-Lightning".into(),
            body: JobBody::Json(b"{}".to_vec()),
            stream: false,
            units: 512 * 512,
        }
    }

    #[test]
    fn job_capabilities_match_go_livepeer() {
        let capabilities = job_capabilities(Pipeline::TextToImage, "m");
        assert_eq!(capabilities.bitstring, vec![0xC005FFF]);
        assert!(capabilities.mandatories.is_empty());
        assert_eq!(capabilities.capacities.len(), 1);
        assert_eq!(capabilities.capacities[&27], 1);
        let constraints = capabilities.constraints.unwrap();
        assert_eq!(constraints.min_version, "");
        let model = &constraints.per_capability[&27].models["m"];
        assert!(!model.warm);
        assert_eq!(model.capacity, 0);
    }

    #[test]
    fn segment_credentials_follow_the_protocol() {
        let data = segment_credentials(&session(true), &job());
        assert_eq!(data.manifest_id, b"27_ByteDance/SDXL-Lightning");
        assert_eq!(data.seq, 0);
        // keccak256("") — the Ethereum empty hash.
        assert_eq!(
            data.hash,
            [
                0xc5, 0xd2, 0x46, 0x01, 0x86, 0xf7, 0x23, 0x3c, 0x92, 0x7e, 0x7d, 0xb2, 0xdc, 0xc7,
                0x03, 0xc0, 0xe5, 0x00, 0xb6, 0x53, 0xca, 0x82, 0x27, 0x3b, 0x7b, 0xfa, 0xd8, 0x04,
                0x5d, 0x85, 0xa4, 0x70
            ]
        );
        assert_eq!(data.profiles, b"invalid");
        assert!(data.sig.is_empty());
        assert_eq!(data.duration, 0);
        assert_eq!(data.auth_token.unwrap().session_id, "sess");
        assert_eq!(
            data.capabilities,
            Some(job_capabilities(
                Pipeline::TextToImage,
                "ByteDance/SDXL-Lightning"
            ))
        );
    }

    #[test]
    fn offchain_headers_round_trip() {
        let headers = Offchain::headers(&session(true), &job()).unwrap();
        assert_eq!(headers.payment, "");
        assert!(
            headers
                .segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        );
        let decoded = decode_header::<proto::SegData>(&headers.segment).unwrap();
        assert_eq!(decoded, segment_credentials(&session(true), &job()));
        assert_eq!(
            Offchain::headers(&session(false), &job()),
            Err(PaymentError::SessionExpired)
        );
        assert!(decode_header::<proto::SegData>("%%%").is_err());
        assert!(decode_header::<proto::SegData>("/w==").is_err());
    }

    #[test]
    fn offchain_orchestrator_request() {
        let request = GatewayIdentity::offchain().orchestrator_request(None);
        assert_eq!(request.address, vec![0; 20]);
        assert!(request.sig.is_empty());
        assert!(request.capabilities.is_none());
        assert!(!request.ignore_capacity_check);
    }
}
