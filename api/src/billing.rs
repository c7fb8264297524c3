//! Charging applications, on the API side: the facts a request is priced
//! from, the quote answer, the cost header and the usage record of each job.
//!
//! The rules (units per pipeline, rounding, rate-card lookup) are
//! `mesh_core::billing`'s; this module only reads the validated request.
//! A quote (`POST /v1/quote`) and a job go through the same parsing
//! ([`crate::validate`]) and the same [`request_facts`], so the quote for a
//! request is the cost charged when it runs (unless the rate cards change
//! in between).
//!
//! ## When a job is charged and recorded
//! - The cost is computed before the job runs (a request that cannot be
//!   priced answers 422 and never reaches an orchestrator).
//! - A job that succeeds writes its usage record, **waits until the record is
//!   durable**, and only then answers 200 with [`COST_HEADER`]. For `/llm`
//!   streams the record is written when the first chunk has arrived, before
//!   the 200 head is sent: the cost is known from the request (`max_tokens`).
//! - If the record cannot be kept (log queue full, disk error), the client
//!   gets 503 `usage_log_unavailable` and is not charged.
//! - A job that fails after reaching the runner writes a record with its
//!   outcome and cost 0 (best effort; failures are never charged).

use bytes::Bytes;
use mesh_core::billing::{BillingError, RequestFacts, UsageRecord, Wei, format_usd};
use mesh_core::{JobBody, JobSpec, Pipeline};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, FieldIssue};
use crate::ports::JobUsage;
use crate::probe;

/// Response header with what the job cost the caller, in nano-USD (1e-9 USD).
pub const COST_HEADER: &str = "x-gatemesh-cost-nano-usd";
/// The request field that declares GPU time for `gpu_minute` pricing.
pub const GPU_SECONDS_FIELD: &str = "timeout_seconds";
/// Records `GET /admin/usage` returns when the request names no limit.
pub const DEFAULT_EXPORT_LIMIT: usize = 1_000;
/// Most records one `GET /admin/usage` returns (page with `after_seq`).
pub const MAX_EXPORT_LIMIT: usize = 100_000;

/// Reads what the request's units are counted from. The job is already
/// validated and completed with defaults, so only the billing-specific
/// field (`timeout_seconds`) can still be malformed (422).
pub fn request_facts(job: &JobSpec) -> Result<RequestFacts, ApiError> {
    let mut facts = RequestFacts::default();
    let gpu_seconds = match &job.body {
        JobBody::Json(bytes) => {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            facts.images = value.get("num_images_per_prompt").and_then(Value::as_u64);
            match value.get(GPU_SECONDS_FIELD) {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => return Err(bad_gpu_seconds()),
            }
        }
        JobBody::Multipart(parts) => {
            let text = |name: &str| {
                parts
                    .iter()
                    .find(|p| p.name == name)
                    .and_then(|p| std::str::from_utf8(&p.data).ok())
                    .map(|s| s.trim().to_owned())
            };
            facts.images = text("num_images_per_prompt").and_then(|s| s.parse().ok());
            facts.video_fps = text("fps").and_then(|s| s.parse().ok());
            if job.pipeline == Pipeline::AudioToText {
                facts.audio_ms = parts
                    .iter()
                    .find(|p| p.name == "audio")
                    .and_then(|p| probe::wav_duration_ms(&p.data));
            }
            text(GPU_SECONDS_FIELD)
        }
    };
    if let Some(text) = gpu_seconds {
        facts.gpu_seconds = Some(ceil_seconds(&text).ok_or_else(bad_gpu_seconds)?);
    }
    Ok(facts)
}

fn bad_gpu_seconds() -> ApiError {
    ApiError::Validation(vec![FieldIssue::new(
        GPU_SECONDS_FIELD,
        "value_error",
        "Input should be a positive number of seconds",
    )])
}

/// `"90"` → 90, `"1.2"` → 2, `"3.000"` → 3; exponents, signs and junk are
/// refused. Decimal arithmetic, no floats.
fn ceil_seconds(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || whole.len() > 12 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let up = u64::from(fraction.bytes().any(|b| b != b'0'));
    whole.checked_add(up)
}

/// A billing error as the client sees it: a request we cannot price is a
/// validation problem (422) naming what is missing.
pub fn billing_error(error: BillingError) -> ApiError {
    let field = match &error {
        BillingError::MissingFact {
            pipeline: Pipeline::AudioToText,
            ..
        } => "audio",
        BillingError::MissingFact { .. } => GPU_SECONDS_FIELD,
        _ => "body",
    };
    ApiError::Validation(vec![FieldIssue::new(
        field,
        "value_error",
        error.to_string(),
    )])
}

/// The answer of `POST /v1/quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteAnswer {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model the job would run (defaulted).
    pub model_id: String,
    /// The caller's tier.
    pub tier: String,
    /// `frame`, `second`, `run`, `gpu_minute`, or null when no rate card
    /// applies (free).
    pub unit: Option<mesh_core::billing::BillingUnit>,
    /// Units counted (GPU-seconds for `gpu_minute`).
    pub units: u64,
    /// Price per unit (per GPU-minute for `gpu_minute`).
    pub price_per_unit_nano_usd: u64,
    /// The cost, nano-USD.
    pub cost_nano_usd: u64,
    /// The cost as a decimal USD string with nine decimals.
    pub cost_usd: String,
}

impl From<mesh_core::billing::Quote> for QuoteAnswer {
    fn from(quote: mesh_core::billing::Quote) -> Self {
        Self {
            cost_usd: format_usd(quote.cost_nano_usd),
            pipeline: quote.pipeline,
            model_id: quote.model_id,
            tier: quote.tier,
            unit: quote.unit,
            units: quote.units,
            price_per_unit_nano_usd: quote.price_per_unit_nano_usd,
            cost_nano_usd: quote.cost_nano_usd,
        }
    }
}

/// The usage record of `usage` as written by node `node`, without what only
/// the node knows (the orchestrator's price: unknown, 0 wei paid).
pub fn record_without_node(usage: JobUsage, node: &str) -> UsageRecord {
    let charged = usage.outcome == mesh_core::billing::UsageOutcome::Ok;
    UsageRecord {
        seq: 0,
        request_id: usage.request_id,
        tenant: usage.caller.tenant,
        tier: usage.caller.tier,
        pipeline: usage.pipeline,
        model_id: usage.model_id,
        unit: usage.quote.unit,
        units: usage.quote.units,
        price_per_unit_nano_usd: usage.quote.price_per_unit_nano_usd,
        cost_nano_usd: if charged {
            usage.quote.cost_nano_usd
        } else {
            0
        },
        orchestrator_units: usage.orchestrator_units,
        orchestrator_unit: price_unit_name(usage.pipeline).to_owned(),
        orchestrator_price_wei_per_unit: None,
        orchestrator_paid_wei: Wei(0),
        region: usage
            .attribution
            .as_ref()
            .and_then(|a| a.region.as_ref().map(|r| r.to_string())),
        node: node.to_owned(),
        orchestrator: usage
            .attribution
            .as_ref()
            .map(|a| a.orchestrator.to_string()),
        latency_ms: usage.latency_ms,
        outcome: usage.outcome,
        unix_ms: unix_ms(),
    }
}

/// The protocol unit name of a pipeline (`output_pixels`, `max_tokens`, …).
pub fn price_unit_name(pipeline: Pipeline) -> &'static str {
    use mesh_core::PriceUnit;
    match pipeline.price_unit() {
        PriceUnit::OutputPixels => "output_pixels",
        PriceUnit::InputPixels => "input_pixels",
        PriceUnit::VideoPixels => "video_pixels",
        PriceUnit::AudioMilliseconds => "audio_milliseconds",
        PriceUnit::MaxTokens => "max_tokens",
        PriceUnit::Characters => "characters",
        PriceUnit::LivePixels => "live_pixels",
    }
}

/// Records as JSON lines (`application/x-ndjson`).
pub fn json_lines(records: &[UsageRecord]) -> Bytes {
    let mut out = Vec::new();
    for record in records {
        if serde_json::to_writer(&mut out, record).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixtures;
    use crate::validate::{job_from_json, job_from_parts};
    use mesh_core::FormPart;

    #[test]
    fn facts_come_from_the_completed_request() {
        let job = job_from_json(
            Pipeline::TextToImage,
            br#"{"prompt":"a","num_images_per_prompt":3,"timeout_seconds":1.5}"#,
        )
        .unwrap();
        let facts = request_facts(&job).unwrap();
        assert_eq!(facts.images, Some(3));
        assert_eq!(facts.gpu_seconds, Some(2));

        let audio = FormPart {
            name: "audio".into(),
            file_name: Some("a.wav".into()),
            content_type: Some("audio/wav".into()),
            data: fixtures::wav(8000, 8000 * 2 + 8),
        };
        let job = job_from_parts(Pipeline::AudioToText, vec![audio]).unwrap();
        assert_eq!(request_facts(&job).unwrap().audio_ms, Some(2001));

        let job = job_from_json(
            Pipeline::Llm,
            br#"{"messages":[{"role":"u","content":"c"}],"timeout_seconds":"x"}"#,
        )
        .unwrap();
        assert!(matches!(request_facts(&job), Err(ApiError::Validation(_))));
        let parts = vec![
            FormPart {
                name: "image".into(),
                file_name: Some("i.png".into()),
                content_type: Some("image/png".into()),
                data: fixtures::png_header(4, 4),
            },
            FormPart::text("fps", "7"),
            FormPart::text("timeout_seconds", "-1"),
        ];
        let job = job_from_parts(Pipeline::ImageToVideo, parts).unwrap();
        assert!(matches!(request_facts(&job), Err(ApiError::Validation(_))));
    }

    #[test]
    fn seconds_round_up_without_floats() {
        assert_eq!(ceil_seconds("90"), Some(90));
        assert_eq!(ceil_seconds("1.2"), Some(2));
        assert_eq!(ceil_seconds("3.000"), Some(3));
        for bad in ["", "-1", "1e3", ".5", "1.2.3", "9999999999999"] {
            assert_eq!(ceil_seconds(bad), None, "{bad}");
        }
    }
}
