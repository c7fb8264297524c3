//! What gatemesh charges applications: rate cards, the units a request is
//! priced in, quotes, and the usage record every job leaves behind.
//!
//! Money charged to applications is an integer count of **nano-USD**
//! (1e-9 USD) in a `u64`; names carry the unit (`*_nano_usd`). Configured
//! prices are decimal strings (`"0.0025"`) parsed exactly by [`parse_usd`];
//! more precision than a nano-USD is an error. No floating point anywhere.
//!
//! ## Units
//! A [`RateCard`] prices one (pipeline, model, tier) in one [`BillingUnit`].
//! The number of units is a pure function of the *request* ([`RequestFacts`],
//! which the API extracts from the validated body), so the quote for a
//! request ([`RateCards::quote`]) is exactly what running it costs:
//!
//! | unit | pipelines | units of one request |
//! |---|---|---|
//! | `run` | every pipeline | 1 |
//! | `frame` | text-to-image, image-to-image | `num_images_per_prompt` (default 1) |
//! | `frame` | upscale | 1 (one output image) |
//! | `frame` | image-to-video | 25 (the frame count go-livepeer fixes) |
//! | `second` | audio-to-text | duration of the uploaded WAV file, rounded up to whole seconds |
//! | `second` | image-to-video | seconds of video: ⌈25 / `fps`⌉ (`fps` default 6) |
//! | `gpu_minute` | every pipeline | declared `timeout_seconds` (GPU-seconds reserved, rounded up to whole seconds); the price is per 60 of them |
//!
//! ## Rounding
//! `cost_nano_usd = ⌈units × price_per_unit_nano_usd ÷ scale⌉` where `scale`
//! is 60 for `gpu_minute` and 1 otherwise, computed once per request in
//! 128 bits and rounded up to the next nano-USD. A cost above `u64::MAX`
//! nano-USD is an error ([`BillingError::Overflow`]), never a wrap or a panic.
//!
//! ## Lookup
//! For a caller of tier `T` asking for model `M` of pipeline `P`, the first
//! card found among (P, M, T), (P, `default`, T), (P, M, `default`),
//! (P, `default`, `default`) applies. With none, the job is free: the quote
//! says `unit: null`, cost 0 (operators who charge list every pipeline).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pipeline::Pipeline;

/// Nano-USD in one USD.
pub const NANO_USD_PER_USD: u64 = 1_000_000_000;
/// The model and tier name that matches any model or tier.
pub const DEFAULT: &str = "default";
/// Frames of one image-to-video job (fixed in go-livepeer and ai-runner).
pub const IMAGE_TO_VIDEO_FRAMES: u64 = 25;
/// `fps` of image-to-video when the request names none (ai-runner default).
pub const DEFAULT_IMAGE_TO_VIDEO_FPS: u64 = 6;
/// Longest GPU time one request may declare: a day. Bounds the charge a
/// typo can cause.
pub const MAX_DECLARED_GPU_SECONDS: u64 = 86_400;
/// Most rate cards in one configuration; pipelines × models × tiers of a
/// real deployment is in the hundreds.
pub const MAX_RATE_CARDS: usize = 4096;
/// GPU-seconds per GPU-minute.
const SECONDS_PER_MINUTE: u64 = 60;

/// The four units operators price in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingUnit {
    /// Images or video frames produced.
    Frame,
    /// Seconds of audio or video.
    Second,
    /// One inference run.
    Run,
    /// A minute of reserved GPU time (bring-your-own-container style work).
    GpuMinute,
}

impl BillingUnit {
    /// Every unit.
    pub const ALL: [Self; 4] = [Self::Frame, Self::Second, Self::Run, Self::GpuMinute];

    /// The name in configuration and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Frame => "frame",
            Self::Second => "second",
            Self::Run => "run",
            Self::GpuMinute => "gpu_minute",
        }
    }

    /// How many counted units make one priced unit (60 GPU-seconds make a
    /// GPU-minute; 1 otherwise).
    pub const fn scale(self) -> u64 {
        match self {
            Self::GpuMinute => SECONDS_PER_MINUTE,
            _ => 1,
        }
    }

    /// Whether requests of `pipeline` can be counted in this unit.
    pub const fn applies_to(self, pipeline: Pipeline) -> bool {
        match self {
            Self::Run | Self::GpuMinute => pipeline.is_batch(),
            Self::Frame => matches!(
                pipeline,
                Pipeline::TextToImage
                    | Pipeline::ImageToImage
                    | Pipeline::Upscale
                    | Pipeline::ImageToVideo
            ),
            Self::Second => matches!(pipeline, Pipeline::AudioToText | Pipeline::ImageToVideo),
        }
    }
}

impl fmt::Display for BillingUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a price or a quote cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BillingError {
    /// A configured USD amount is not a plain non-negative decimal.
    #[error("invalid USD amount {0:?}: expected a decimal such as \"0.0025\"")]
    InvalidAmount(String),
    /// A configured USD amount has digits below one nano-USD.
    #[error("USD amount {0:?} is more precise than 1e-9 USD")]
    TooPrecise(String),
    /// A configured USD amount does not fit in `u64` nano-USD.
    #[error("USD amount {0:?} is too large")]
    AmountTooLarge(String),
    /// A rate card names a unit its pipeline cannot be counted in.
    #[error("pipeline {pipeline} cannot be priced per {unit}")]
    UnitNotApplicable {
        /// The pipeline.
        pipeline: Pipeline,
        /// The unit.
        unit: BillingUnit,
    },
    /// Two rate cards for the same (pipeline, model, tier).
    #[error("more than one rate card for {pipeline} model {model_id} tier {tier}")]
    DuplicateCard {
        /// The pipeline.
        pipeline: Pipeline,
        /// The model.
        model_id: String,
        /// The tier.
        tier: String,
    },
    /// More rate cards than [`MAX_RATE_CARDS`].
    #[error("more than {MAX_RATE_CARDS} rate cards")]
    TooManyCards,
    /// The request lacks what its unit is counted from.
    #[error("{pipeline} is priced per {unit}: {reason}")]
    MissingFact {
        /// The pipeline.
        pipeline: Pipeline,
        /// The unit.
        unit: BillingUnit,
        /// What is missing, for the client.
        reason: &'static str,
    },
    /// The cost does not fit in `u64` nano-USD.
    #[error("the cost of this request does not fit in 64 bits of nano-USD")]
    Overflow,
}

/// Parses a decimal USD amount (`"0.0025"`, `"12"`, `"1.5"`) into nano-USD,
/// exactly. Signs, exponents, blanks and more than nine decimals are refused.
pub fn parse_usd(text: &str) -> Result<u64, BillingError> {
    let invalid = || BillingError::InvalidAmount(text.to_owned());
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(invalid());
    }
    if text.contains('.') && fraction.is_empty() {
        return Err(invalid());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 9 {
        return Err(BillingError::TooPrecise(text.to_owned()));
    }
    let too_large = || BillingError::AmountTooLarge(text.to_owned());
    let whole: u64 = whole.trim_start_matches('0').parse::<u64>().or_else(|_| {
        if whole.trim_start_matches('0').is_empty() {
            Ok(0)
        } else {
            Err(too_large())
        }
    })?;
    let mut nanos: u64 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        nanos += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    whole
        .checked_mul(NANO_USD_PER_USD)
        .and_then(|w| w.checked_add(nanos))
        .ok_or_else(too_large)
}

/// Formats nano-USD as a decimal USD string with nine decimals
/// (`2500000` → `"0.002500000"`).
pub fn format_usd(nano_usd: u64) -> String {
    format!(
        "{}.{:09}",
        nano_usd / NANO_USD_PER_USD,
        nano_usd % NANO_USD_PER_USD
    )
}

/// What a request says that units are counted from; the API extracts these
/// from the validated request (after its defaults are filled in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// `num_images_per_prompt` (text-to-image, image-to-image; default 1).
    pub images: Option<u64>,
    /// `fps` of image-to-video (default [`DEFAULT_IMAGE_TO_VIDEO_FPS`]).
    pub video_fps: Option<u64>,
    /// Duration of the uploaded audio in milliseconds (audio-to-text), when
    /// the upload is a WAV file whose header we can read.
    pub audio_ms: Option<u64>,
    /// Declared GPU time in whole seconds (`timeout_seconds`, rounded up).
    pub gpu_seconds: Option<u64>,
}

/// How many `unit`s a request of `pipeline` with `facts` counts (see the
/// module table). Counted units of `gpu_minute` are GPU-seconds.
pub fn count_units(
    pipeline: Pipeline,
    unit: BillingUnit,
    facts: &RequestFacts,
) -> Result<u64, BillingError> {
    if !unit.applies_to(pipeline) {
        return Err(BillingError::UnitNotApplicable { pipeline, unit });
    }
    let missing = |reason| BillingError::MissingFact {
        pipeline,
        unit,
        reason,
    };
    Ok(match (unit, pipeline) {
        (BillingUnit::Run, _) => 1,
        (BillingUnit::Frame, Pipeline::TextToImage | Pipeline::ImageToImage) => {
            facts.images.unwrap_or(1)
        }
        (BillingUnit::Frame, Pipeline::ImageToVideo) => IMAGE_TO_VIDEO_FRAMES,
        (BillingUnit::Frame, _) => 1,
        (BillingUnit::Second, Pipeline::ImageToVideo) => {
            let fps = facts.video_fps.unwrap_or(DEFAULT_IMAGE_TO_VIDEO_FPS);
            if fps == 0 {
                return Err(missing("fps must be at least 1"));
            }
            IMAGE_TO_VIDEO_FRAMES.div_ceil(fps)
        }
        (BillingUnit::Second, _) => {
            let ms = facts
                .audio_ms
                .ok_or_else(|| missing("the audio duration must be readable: upload a WAV file"))?;
            ms.div_ceil(1000)
        }
        (BillingUnit::GpuMinute, _) => {
            let seconds = facts
                .gpu_seconds
                .ok_or_else(|| missing("declare the GPU time in timeout_seconds"))?;
            if seconds == 0 || seconds > MAX_DECLARED_GPU_SECONDS {
                return Err(missing("timeout_seconds must be between 1 and 86400"));
            }
            seconds
        }
    })
}

/// `⌈units × price ÷ scale⌉` nano-USD, or [`BillingError::Overflow`].
pub fn cost_nano_usd(
    unit: BillingUnit,
    units: u64,
    price_per_unit_nano_usd: u64,
) -> Result<u64, BillingError> {
    let product = u128::from(units) * u128::from(price_per_unit_nano_usd);
    let cost = product.div_ceil(u128::from(unit.scale()));
    u64::try_from(cost).map_err(|_| BillingError::Overflow)
}

/// One price: what one unit of (pipeline, model, tier) costs an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCard {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model, or `default` for every model without its own card.
    pub model_id: String,
    /// The tier, or `default` for every tier without its own card.
    pub tier: String,
    /// The unit.
    pub unit: BillingUnit,
    /// Nano-USD per unit (per GPU-minute for `gpu_minute`).
    pub price_per_unit_nano_usd: u64,
}

/// A validated set of rate cards, indexed for lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateCards {
    by_key: BTreeMap<(Pipeline, String, String), RateCard>,
}

impl RateCards {
    /// Checks the cards (units fit their pipelines, one card per key, at most
    /// [`MAX_RATE_CARDS`]) and indexes them.
    pub fn new(cards: Vec<RateCard>) -> Result<Self, BillingError> {
        if cards.len() > MAX_RATE_CARDS {
            return Err(BillingError::TooManyCards);
        }
        let mut by_key = BTreeMap::new();
        for card in cards {
            if !card.unit.applies_to(card.pipeline) {
                return Err(BillingError::UnitNotApplicable {
                    pipeline: card.pipeline,
                    unit: card.unit,
                });
            }
            let key = (card.pipeline, card.model_id.clone(), card.tier.clone());
            if by_key.contains_key(&key) {
                return Err(BillingError::DuplicateCard {
                    pipeline: card.pipeline,
                    model_id: card.model_id,
                    tier: card.tier,
                });
            }
            by_key.insert(key, card);
        }
        Ok(Self { by_key })
    }

    /// Every card, ordered by pipeline, model, tier (for listings such as
    /// the marketplace offering).
    pub fn cards(&self) -> Vec<RateCard> {
        self.by_key.values().cloned().collect()
    }

    /// The card that prices (pipeline, model) for `tier` (module docs:
    /// exact model before `default`, exact tier before `default`).
    pub fn lookup(&self, pipeline: Pipeline, model_id: &str, tier: &str) -> Option<&RateCard> {
        let keys = [
            (model_id, tier),
            (DEFAULT, tier),
            (model_id, DEFAULT),
            (DEFAULT, DEFAULT),
        ];
        keys.into_iter().find_map(|(model, tier)| {
            self.by_key
                .get(&(pipeline, model.to_owned(), tier.to_owned()))
        })
    }

    /// Prices one request.
    pub fn quote(
        &self,
        pipeline: Pipeline,
        model_id: &str,
        tier: &str,
        facts: &RequestFacts,
    ) -> Result<Quote, BillingError> {
        let Some(card) = self.lookup(pipeline, model_id, tier) else {
            return Ok(Quote {
                pipeline,
                model_id: model_id.to_owned(),
                tier: tier.to_owned(),
                unit: None,
                units: 0,
                price_per_unit_nano_usd: 0,
                cost_nano_usd: 0,
            });
        };
        let units = count_units(pipeline, card.unit, facts)?;
        let cost = cost_nano_usd(card.unit, units, card.price_per_unit_nano_usd)?;
        Ok(Quote {
            pipeline,
            model_id: model_id.to_owned(),
            tier: tier.to_owned(),
            unit: Some(card.unit),
            units,
            price_per_unit_nano_usd: card.price_per_unit_nano_usd,
            cost_nano_usd: cost,
        })
    }
}

/// The price of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model (defaulted as the job runs it).
    pub model_id: String,
    /// The caller's tier.
    pub tier: String,
    /// The unit of the card that applied; `None` when no card applies (free).
    pub unit: Option<BillingUnit>,
    /// Units counted (GPU-seconds for `gpu_minute`).
    pub units: u64,
    /// The card's price per unit.
    pub price_per_unit_nano_usd: u64,
    /// What the request costs.
    pub cost_nano_usd: u64,
}

/// How a job ended, as recorded in its usage record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageOutcome {
    /// The client got 200 and is charged.
    Ok,
    /// The client's request was rejected (not charged).
    ClientError,
    /// Orchestrators failed or none could serve it (not charged).
    UpstreamError,
    /// The gateway failed (not charged).
    InternalError,
}

impl UsageOutcome {
    /// The name in JSON and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::UpstreamError => "upstream_error",
            Self::InternalError => "internal_error",
        }
    }
}

/// Wei as a decimal string in JSON (a `u128` does not fit a JSON number
/// that every reader parses exactly).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wei(pub u128);

impl Serialize for Wei {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Wei {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<u128>()
            .map(Wei)
            .map_err(|_| serde::de::Error::custom("wei must be a decimal integer string"))
    }
}

/// One job's usage: what was charged and what was paid. Written by the
/// node that took the client's request (never by a node a job was
/// forwarded to), once per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Position in the writing node's log (assigned when appended; 0 before).
    #[serde(default)]
    pub seq: u64,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// The caller's tenant.
    pub tenant: String,
    /// The caller's tier.
    pub tier: String,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model.
    pub model_id: String,
    /// The charged unit; `None` when no rate card applied.
    pub unit: Option<BillingUnit>,
    /// Units charged.
    pub units: u64,
    /// Price per unit charged.
    pub price_per_unit_nano_usd: u64,
    /// What the application is charged (0 unless `outcome` is `ok`).
    pub cost_nano_usd: u64,
    /// Units the orchestrator prices in (protocol §2.2: pixels, ms, tokens…).
    pub orchestrator_units: u64,
    /// The name of those units (`output_pixels`, `max_tokens`, …).
    pub orchestrator_unit: String,
    /// The orchestrator's price per unit in wei as `num/den`, when known.
    pub orchestrator_price_wei_per_unit: Option<String>,
    /// Wei paid to the orchestrator: ⌈orchestrator_units × price⌉; 0
    /// offchain or when the price is unknown.
    pub orchestrator_paid_wei: Wei,
    /// Region of the node that ran the job.
    pub region: Option<String>,
    /// The node that wrote the record (the one the client called).
    pub node: String,
    /// The orchestrator that served it, when one did.
    pub orchestrator: Option<String>,
    /// Time from accepting the request to the result (or stream start).
    pub latency_ms: u64,
    /// How it ended.
    pub outcome: UsageOutcome,
    /// When the record was made, unix milliseconds.
    pub unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn card(
        pipeline: Pipeline,
        model: &str,
        tier: &str,
        unit: BillingUnit,
        price: u64,
    ) -> RateCard {
        RateCard {
            pipeline,
            model_id: model.into(),
            tier: tier.into(),
            unit,
            price_per_unit_nano_usd: price,
        }
    }

    #[test]
    fn usd_parses_exactly() {
        assert_eq!(parse_usd("0.0025"), Ok(2_500_000));
        assert_eq!(parse_usd("12"), Ok(12_000_000_000));
        assert_eq!(parse_usd("0.000000001"), Ok(1));
        assert_eq!(parse_usd("1.50000000000"), Ok(1_500_000_000));
        assert_eq!(parse_usd("007.1"), Ok(7_100_000_000));
        assert!(matches!(
            parse_usd("0.0000000001"),
            Err(BillingError::TooPrecise(_))
        ));
        for bad in ["", ".5", "5.", "-1", "1e3", "0x10", " 1", "1,5", "1.2.3"] {
            assert!(
                matches!(parse_usd(bad), Err(BillingError::InvalidAmount(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_usd("18446744074"),
            Err(BillingError::AmountTooLarge(_))
        ));
        assert_eq!(format_usd(2_500_000), "0.002500000");
        assert_eq!(format_usd(12_000_000_001), "12.000000001");
    }

    #[test]
    fn units_follow_the_table() {
        let facts = RequestFacts {
            images: Some(3),
            video_fps: Some(7),
            audio_ms: Some(2_001),
            gpu_seconds: Some(90),
        };
        let count = |p, u| count_units(p, u, &facts);
        assert_eq!(count(Pipeline::TextToImage, BillingUnit::Frame), Ok(3));
        assert_eq!(count(Pipeline::Upscale, BillingUnit::Frame), Ok(1));
        assert_eq!(count(Pipeline::ImageToVideo, BillingUnit::Frame), Ok(25));
        assert_eq!(count(Pipeline::ImageToVideo, BillingUnit::Second), Ok(4));
        assert_eq!(count(Pipeline::AudioToText, BillingUnit::Second), Ok(3));
        assert_eq!(count(Pipeline::Llm, BillingUnit::Run), Ok(1));
        assert_eq!(count(Pipeline::Llm, BillingUnit::GpuMinute), Ok(90));
        assert!(matches!(
            count(Pipeline::Llm, BillingUnit::Frame),
            Err(BillingError::UnitNotApplicable { .. })
        ));
        let none = RequestFacts::default();
        assert!(matches!(
            count_units(Pipeline::AudioToText, BillingUnit::Second, &none),
            Err(BillingError::MissingFact { .. })
        ));
        assert!(matches!(
            count_units(Pipeline::Llm, BillingUnit::GpuMinute, &none),
            Err(BillingError::MissingFact { .. })
        ));
        assert_eq!(
            count_units(Pipeline::TextToImage, BillingUnit::Frame, &none),
            Ok(1)
        );
    }

    #[test]
    fn lookup_prefers_model_then_tier() {
        let cards = RateCards::new(vec![
            card(Pipeline::Llm, DEFAULT, DEFAULT, BillingUnit::Run, 1),
            card(Pipeline::Llm, "m", DEFAULT, BillingUnit::Run, 2),
            card(Pipeline::Llm, DEFAULT, "pro", BillingUnit::Run, 3),
            card(Pipeline::Llm, "m", "pro", BillingUnit::Run, 4),
        ])
        .unwrap();
        let price = |model, tier| {
            cards
                .lookup(Pipeline::Llm, model, tier)
                .map(|c| c.price_per_unit_nano_usd)
        };
        assert_eq!(price("m", "pro"), Some(4));
        assert_eq!(price("x", "pro"), Some(3));
        assert_eq!(price("m", "free"), Some(2));
        assert_eq!(price("x", "free"), Some(1));
        assert_eq!(cards.lookup(Pipeline::Upscale, "m", "pro"), None);
        let free = cards
            .quote(Pipeline::Upscale, "m", "pro", &RequestFacts::default())
            .unwrap();
        assert_eq!((free.unit, free.cost_nano_usd), (None, 0));
    }

    #[test]
    fn bad_card_sets_are_refused() {
        assert!(matches!(
            RateCards::new(vec![card(
                Pipeline::Llm,
                DEFAULT,
                DEFAULT,
                BillingUnit::Frame,
                1
            )]),
            Err(BillingError::UnitNotApplicable { .. })
        ));
        assert!(matches!(
            RateCards::new(vec![
                card(Pipeline::Llm, DEFAULT, DEFAULT, BillingUnit::Run, 1),
                card(Pipeline::Llm, DEFAULT, DEFAULT, BillingUnit::GpuMinute, 1),
            ]),
            Err(BillingError::DuplicateCard { .. })
        ));
    }

    #[test]
    fn gpu_minutes_round_up_once() {
        // 90 GPU-seconds at 0.01 USD per GPU-minute = 0.015 USD.
        assert_eq!(
            cost_nano_usd(BillingUnit::GpuMinute, 90, 10_000_000),
            Ok(15_000_000)
        );
        // 1 GPU-second at 1 nano-USD per minute rounds up to 1 nano-USD.
        assert_eq!(cost_nano_usd(BillingUnit::GpuMinute, 1, 1), Ok(1));
        assert_eq!(
            cost_nano_usd(BillingUnit::Frame, u64::MAX, 2),
            Err(BillingError::Overflow)
        );
    }

    #[test]
    fn usage_records_keep_wei_as_strings() {
        let record = UsageRecord {
            seq: 7,
            request_id: "r".into(),
            tenant: "t".into(),
            tier: DEFAULT.into(),
            pipeline: Pipeline::Llm,
            model_id: "m".into(),
            unit: Some(BillingUnit::Run),
            units: 1,
            price_per_unit_nano_usd: 5,
            cost_nano_usd: 5,
            orchestrator_units: 256,
            orchestrator_unit: "max_tokens".into(),
            orchestrator_price_wei_per_unit: Some("3/1".into()),
            orchestrator_paid_wei: Wei(u128::MAX),
            region: Some("fra".into()),
            node: "fra-1".into(),
            orchestrator: Some("127.0.0.1:1".into()),
            latency_ms: 12,
            outcome: UsageOutcome::Ok,
            unix_ms: 1,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(&format!("\"orchestrator_paid_wei\":\"{}\"", u128::MAX)));
        assert!(json.contains("\"unit\":\"run\""));
        let back: UsageRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }

    fn any_pipeline() -> impl Strategy<Value = Pipeline> {
        prop::sample::select(Pipeline::BATCH.to_vec())
    }

    fn any_unit() -> impl Strategy<Value = BillingUnit> {
        prop::sample::select(BillingUnit::ALL.to_vec())
    }

    proptest! {
        /// A quote is the charge: the same cards and facts give the same
        /// cost, the cost is ⌈units × price ÷ scale⌉ exactly, and nothing
        /// panics, whatever the numbers.
        #[test]
        fn quote_is_exact_and_never_panics(
            pipeline in any_pipeline(),
            unit in any_unit(),
            price in any::<u64>(),
            images in proptest::option::of(any::<u64>()),
            fps in proptest::option::of(any::<u64>()),
            audio_ms in proptest::option::of(any::<u64>()),
            gpu_seconds in proptest::option::of(any::<u64>()),
        ) {
            let facts = RequestFacts { images, video_fps: fps, audio_ms, gpu_seconds };
            let Ok(cards) = RateCards::new(vec![card(pipeline, DEFAULT, DEFAULT, unit, price)]) else {
                prop_assert!(!unit.applies_to(pipeline));
                return Ok(());
            };
            let first = cards.quote(pipeline, "any", "any", &facts);
            let second = cards.quote(pipeline, "any", "any", &facts);
            prop_assert_eq!(&first, &second);
            if let Ok(quote) = first {
                let exact = u128::from(quote.units) * u128::from(price);
                let scale = u128::from(unit.scale());
                let cost = u128::from(quote.cost_nano_usd);
                prop_assert!(cost * scale >= exact);
                prop_assert!(cost * scale < exact + scale);
            }
        }

        /// Parsing and formatting round-trip every amount.
        #[test]
        fn usd_round_trips(nano in any::<u64>()) {
            prop_assert_eq!(parse_usd(&format_usd(nano)), Ok(nano));
        }
    }
}
