//! What we pay orchestrators: price caps in go-livepeer's formats, held as
//! exact rationals (never floating point) and turned into a
//! [`WeiPrice`] per (pipeline, model) when a job is routed.
//!
//! Two inputs, as go-livepeer's gateway takes them:
//! - the global cap, `-maxPricePerUnit` + `-pixelsPerUnit`: a string
//!   `<decimal>[currency]` (`"1200"`, `"0.02USD"`) and a positive integer;
//!   zero means no cap;
//! - `-maxPricePerCapability`: `{"capabilities_prices":[{"pipeline",
//!   "model_id", "price_per_unit", "pixels_per_unit", "currency"}]}`.
//!   A missing or empty `model_id` is `"default"` (every model of the
//!   pipeline); a missing or non-positive `pixels_per_unit` is the global
//!   `pixels_per_unit`; a missing or non-positive `price_per_unit` is the
//!   global cap (and the entry is ignored when there is none: any price);
//!   `currency` is `wei` (default), `eth` or `usd`, case-insensitive.
//!
//! Resolution for (pipeline, model): the model's own entry, else the
//! pipeline's `"default"` entry, else the global cap, else none (any price
//! is accepted). A cap is `price_per_unit / pixels_per_unit` in its currency
//! per unit; USD is converted to wei as `usd × 10^18 / (USD per ETH)`.

use std::collections::BTreeMap;

use mesh_core::{Pipeline, WeiPrice};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};
use serde::Deserialize;

/// Wei in one ether.
const WEI_PER_ETH_EXP: u32 = 18;
/// Longest decimal string accepted (digits and exponent): far beyond any
/// price, short enough that parsing is cheap.
const MAX_DECIMAL_LEN: usize = 64;
/// Largest decimal exponent accepted (`1e40` wei is more than all ether).
const MAX_EXPONENT: i64 = 40;
/// Most entries in a `maxPricePerCapability` document (a few per pipeline
/// and model in practice).
pub const MAX_CAPABILITY_PRICES: usize = 4_096;

/// A price cap that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// Not a non-negative decimal number.
    #[error("{0:?} is not a non-negative decimal number")]
    BadNumber(String),
    /// Not `<decimal>[currency]`.
    #[error("{0:?} is not a price: expected <decimal>[currency], e.g. 1200 or 0.02USD")]
    BadPrice(String),
    /// A currency other than wei, eth and usd.
    #[error("currency {0:?} is not supported (wei, eth or usd)")]
    BadCurrency(String),
    /// `pixels_per_unit` must be a positive integer.
    #[error("pixels_per_unit must be a positive integer, got {0}")]
    BadPixels(String),
    /// The JSON document does not parse.
    #[error("maxPricePerCapability JSON: {0}")]
    Json(String),
    /// A pipeline go-livepeer does not know (go-livepeer refuses to start).
    #[error("maxPricePerCapability: pipeline {0:?} is not a known pipeline")]
    BadPipeline(String),
    /// More entries than [`MAX_CAPABILITY_PRICES`].
    #[error("maxPricePerCapability has more than {MAX_CAPABILITY_PRICES} entries")]
    TooMany,
}

/// The unit a cap is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Currency {
    /// Wei (the default).
    Wei,
    /// Ether: × 10^18 wei.
    Eth,
    /// US dollars: converted with the ETH/USD rate.
    Usd,
}

impl Currency {
    /// `""`/`wei`, `eth`, `usd`, any case.
    pub fn parse(text: &str) -> Result<Self, CapError> {
        match text.to_ascii_lowercase().as_str() {
            "" | "wei" => Ok(Self::Wei),
            "eth" => Ok(Self::Eth),
            "usd" => Ok(Self::Usd),
            _ => Err(CapError::BadCurrency(text.chars().take(16).collect())),
        }
    }

    /// `WEI`, `ETH`, `USD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wei => "WEI",
            Self::Eth => "ETH",
            Self::Usd => "USD",
        }
    }
}

/// One cap: `price_per_unit / pixels_per_unit` `currency` per unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapPrice {
    /// The price of `pixels_per_unit` units.
    pub price_per_unit: BigRational,
    /// How many units that price buys (positive).
    pub pixels_per_unit: BigRational,
    /// What the price is written in.
    pub currency: Currency,
}

impl CapPrice {
    /// The cap in wei per unit, exactly. `None` when it is in USD and no
    /// ETH/USD rate is known.
    pub fn wei_per_unit(&self, usd_per_eth: Option<&BigRational>) -> Option<BigRational> {
        let per_unit = &self.price_per_unit / &self.pixels_per_unit;
        let wei_per_eth = BigRational::from_integer(BigInt::from(10u32).pow(WEI_PER_ETH_EXP));
        match self.currency {
            Currency::Wei => Some(per_unit),
            Currency::Eth => Some(per_unit * wei_per_eth),
            Currency::Usd => {
                let rate = usd_per_eth.filter(|r| r.is_positive())?;
                Some(per_unit * wei_per_eth / rate)
            }
        }
    }

    /// `"<price>/<pixels> <CURRENCY>"` for reports.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} {}",
            decimal_string(&self.price_per_unit),
            decimal_string(&self.pixels_per_unit),
            self.currency.as_str()
        )
    }
}

/// Where an effective cap came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSource {
    /// The model's own `maxPricePerCapability` entry.
    Model,
    /// The pipeline's `"default"` entry.
    PipelineDefault,
    /// The global `max_price_per_unit`.
    Global,
}

impl CapSource {
    /// JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::PipelineDefault => "pipeline_default",
            Self::Global => "global",
        }
    }
}

/// Every cap, resolved per (pipeline, model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapTable {
    /// `-maxPricePerUnit` / `-pixelsPerUnit`; `None` = no global cap.
    pub global: Option<CapPrice>,
    /// `-maxPricePerCapability` by (pipeline, model or `"default"`).
    pub per_capability: BTreeMap<(Pipeline, String), CapPrice>,
}

impl CapTable {
    /// Builds the table from the two go-livepeer inputs. `capabilities_json`
    /// is the `maxPricePerCapability` document (already read from its file).
    /// Returns the table and a line per ignored entry.
    pub fn build(
        max_price_per_unit: Option<&str>,
        pixels_per_unit: u64,
        capabilities_json: Option<&str>,
    ) -> Result<(Self, Vec<String>), CapError> {
        if pixels_per_unit == 0 {
            return Err(CapError::BadPixels("0".into()));
        }
        let global_pixels = BigRational::from_integer(BigInt::from(pixels_per_unit));
        let global = match max_price_per_unit {
            Some(text) => parse_global(text, &global_pixels)?,
            None => None,
        };
        let mut table = Self {
            global,
            per_capability: BTreeMap::new(),
        };
        let mut ignored = Vec::new();
        if let Some(json) = capabilities_json {
            for entry in parse_capability_prices(json)? {
                let pixels = match entry.pixels_per_unit {
                    Some(p) if p.is_positive() => p,
                    _ => global_pixels.clone(),
                };
                let cap = match entry.price_per_unit {
                    Some(p) if p.is_positive() => CapPrice {
                        price_per_unit: p,
                        pixels_per_unit: pixels,
                        currency: entry.currency,
                    },
                    _ => match &table.global {
                        Some(global) => CapPrice {
                            price_per_unit: global.price_per_unit.clone(),
                            pixels_per_unit: pixels,
                            currency: global.currency,
                        },
                        None => {
                            ignored.push(format!(
                                "{} {}: no positive price_per_unit and no global max_price_per_unit; any price is accepted",
                                entry.pipeline, entry.model_id
                            ));
                            continue;
                        }
                    },
                };
                table
                    .per_capability
                    .insert((entry.pipeline, entry.model_id), cap);
            }
        }
        Ok((table, ignored))
    }

    /// The cap for (pipeline, model) and where it came from; `None` = any
    /// price.
    pub fn resolve(&self, pipeline: Pipeline, model_id: &str) -> Option<(&CapPrice, CapSource)> {
        if let Some(cap) = self.per_capability.get(&(pipeline, model_id.to_owned())) {
            return Some((cap, CapSource::Model));
        }
        if let Some(cap) = self.per_capability.get(&(pipeline, "default".to_owned())) {
            return Some((cap, CapSource::PipelineDefault));
        }
        self.global.as_ref().map(|cap| (cap, CapSource::Global))
    }

    /// Whether any cap is in USD (and so needs an ETH/USD rate).
    pub fn needs_rate(&self) -> bool {
        self.global
            .iter()
            .chain(self.per_capability.values())
            .any(|c| c.currency == Currency::Usd)
    }
}

/// One parsed `capabilities_prices` entry, before defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityPriceEntry {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The model, `"default"` when absent or empty.
    pub model_id: String,
    /// As written, if present.
    pub price_per_unit: Option<BigRational>,
    /// As written, if present.
    pub pixels_per_unit: Option<BigRational>,
    /// As written (wei when absent).
    pub currency: Currency,
}

#[derive(Deserialize)]
struct RawDocument {
    capabilities_prices: Vec<RawEntry>,
}

/// Unknown fields are ignored, as go-livepeer does, so operators' files load unchanged.
#[derive(Deserialize)]
struct RawEntry {
    pipeline: String,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    price_per_unit: Option<serde_json::Value>,
    #[serde(default)]
    pixels_per_unit: Option<serde_json::Value>,
    #[serde(default)]
    currency: Option<String>,
}

/// Parses a go-livepeer `maxPricePerCapability` document. Numbers may be
/// JSON numbers (go-livepeer's form) or decimal strings (exact beyond 15
/// significant digits).
pub fn parse_capability_prices(json: &str) -> Result<Vec<CapabilityPriceEntry>, CapError> {
    let doc: RawDocument = serde_json::from_str(json).map_err(|e| CapError::Json(e.to_string()))?;
    if doc.capabilities_prices.len() > MAX_CAPABILITY_PRICES {
        return Err(CapError::TooMany);
    }
    doc.capabilities_prices
        .into_iter()
        .map(|raw| {
            let pipeline: Pipeline = raw
                .pipeline
                .parse()
                .map_err(|_| CapError::BadPipeline(raw.pipeline.chars().take(64).collect()))?;
            let model_id = match raw.model_id {
                Some(m) if !m.is_empty() => m,
                _ => "default".to_owned(),
            };
            Ok(CapabilityPriceEntry {
                pipeline,
                model_id,
                price_per_unit: raw.price_per_unit.as_ref().map(json_decimal).transpose()?,
                pixels_per_unit: raw.pixels_per_unit.as_ref().map(json_decimal).transpose()?,
                currency: Currency::parse(raw.currency.as_deref().unwrap_or(""))?,
            })
        })
        .collect()
}

/// A JSON number or decimal string as an exact rational. `null` is 0 (a
/// missing value).
fn json_decimal(value: &serde_json::Value) -> Result<BigRational, CapError> {
    match value {
        serde_json::Value::Number(n) => parse_decimal(&n.to_string()),
        serde_json::Value::String(s) => parse_decimal(s),
        serde_json::Value::Null => Ok(BigRational::zero()),
        other => Err(CapError::BadNumber(
            other.to_string().chars().take(32).collect(),
        )),
    }
}

/// `<decimal>[currency]` (go-livepeer `-maxPricePerUnit`); zero = no cap.
fn parse_global(text: &str, pixels: &BigRational) -> Result<Option<CapPrice>, CapError> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, currency) = text.split_at(split);
    if number.is_empty() {
        return Err(CapError::BadPrice(text.chars().take(32).collect()));
    }
    let price = parse_decimal(number).map_err(|_| CapError::BadPrice(text.into()))?;
    let currency = Currency::parse(currency)?;
    if price.is_zero() {
        return Ok(None);
    }
    Ok(Some(CapPrice {
        price_per_unit: price,
        pixels_per_unit: pixels.clone(),
        currency,
    }))
}

/// Parses `digits[.digits][e[+-]digits]` exactly. No sign: prices are never
/// negative.
pub fn parse_decimal(text: &str) -> Result<BigRational, CapError> {
    let bad = || CapError::BadNumber(text.chars().take(32).collect());
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_DECIMAL_LEN {
        return Err(bad());
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => {
            let exp: i64 = text[i + 1..].parse().map_err(|_| bad())?;
            (&text[..i], exp)
        }
        None => (text, 0),
    };
    if !(-MAX_EXPONENT..=MAX_EXPONENT).contains(&exponent) {
        return Err(bad());
    }
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let digits = format!("{int_part}{frac_part}");
    let numerator: BigInt = digits.parse().map_err(|_| bad())?;
    let scale = exponent - frac_part.len() as i64;
    let ten = BigInt::from(10u32);
    let value = if scale >= 0 {
        BigRational::from_integer(numerator * ten.pow(scale as u32))
    } else {
        BigRational::new(numerator, ten.pow((-scale) as u32))
    };
    Ok(value)
}

/// A positive rational as a short decimal for reports (up to 6 decimals,
/// rounded down; exact values are also reported as fractions).
pub fn decimal_string(value: &BigRational) -> String {
    let scale = BigInt::from(1_000_000u32);
    let scaled = (value * BigRational::from_integer(scale.clone()))
        .floor()
        .to_integer();
    let int = &scaled / &scale;
    let frac = (&scaled % &scale).to_u32().unwrap_or(0);
    if frac == 0 {
        int.to_string()
    } else {
        format!("{int}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}

/// An exact wei-per-unit rational as a [`WeiPrice`] (two `i64`s, the wire
/// form). Exact when numerator and denominator fit; otherwise rounded
/// *down* to the finest power-of-ten denominator that fits, so a cap never
/// admits a price above the configured one. Saturates at `i64::MAX` wei.
pub fn to_wei_price(value: &BigRational) -> WeiPrice {
    if !value.is_positive() {
        return WeiPrice::FREE;
    }
    if let (Some(n), Some(d)) = (value.numer().to_i64(), value.denom().to_i64())
        && let Ok(price) = WeiPrice::new(n, d)
    {
        return price;
    }
    let ten = BigInt::from(10u32);
    for exp in (0..=18u32).rev() {
        let denominator = ten.pow(exp);
        let numerator = (value * BigRational::from_integer(denominator.clone()))
            .floor()
            .to_integer();
        if let (Some(n), Some(d)) = (numerator.to_i64(), denominator.to_i64())
            && let Ok(price) = WeiPrice::new(n, d)
        {
            return price;
        }
    }
    WeiPrice::new(i64::MAX, 1).unwrap_or(WeiPrice::FREE)
}

/// Reads an ETH/USD rate from a price-feed body: the value at the RFC 6901
/// JSON `pointer` (e.g. `/ethereum/usd`), a JSON number or decimal string,
/// positive.
pub fn parse_rate(body: &[u8], pointer: &str) -> Result<BigRational, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let value = doc
        .pointer(pointer)
        .ok_or_else(|| format!("no value at JSON pointer {pointer:?}"))?;
    let rate = match value {
        serde_json::Value::Number(_) | serde_json::Value::String(_) => {
            json_decimal(value).map_err(|e| e.to_string())?
        }
        _ => return Err(format!("the value at {pointer:?} is not a number")),
    };
    if !rate.is_positive() {
        return Err("the ETH/USD rate must be positive".into());
    }
    Ok(rate)
}

/// `1` as a rational (for callers without `num_traits`).
pub fn one() -> BigRational {
    BigRational::one()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rat(n: i64, d: i64) -> BigRational {
        BigRational::new(BigInt::from(n), BigInt::from(d))
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("1200").unwrap(), rat(1200, 1));
        assert_eq!(parse_decimal("0.02").unwrap(), rat(1, 50));
        assert_eq!(parse_decimal("0.5e-3").unwrap(), rat(1, 2000));
        assert_eq!(parse_decimal("1e6").unwrap(), rat(1_000_000, 1));
        assert_eq!(parse_decimal("3012.45").unwrap(), rat(301_245, 100));
        assert_eq!(parse_decimal(".5").unwrap(), rat(1, 2));
        for bad in ["", "-1", "1.2.3", "abc", "1e999", "0x10", "1,5", "."] {
            assert!(parse_decimal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_global_cap_takes_go_livepeer_strings() {
        let (t, _) = CapTable::build(Some("1200"), 1, None).unwrap();
        assert_eq!(t.global.as_ref().unwrap().currency, Currency::Wei);
        let (t, _) = CapTable::build(Some("0.02USD"), 1_000_000, None).unwrap();
        let g = t.global.unwrap();
        assert_eq!(g.currency, Currency::Usd);
        assert_eq!(g.price_per_unit, rat(1, 50));
        assert_eq!(g.pixels_per_unit, rat(1_000_000, 1));
        let (t, _) = CapTable::build(Some("0"), 1, None).unwrap();
        assert!(t.global.is_none());
        assert!(CapTable::build(Some("USD"), 1, None).is_err());
        assert!(CapTable::build(Some("5GBP"), 1, None).is_err());
        assert!(CapTable::build(Some("5"), 0, None).is_err());
    }

    #[test]
    fn usd_converts_exactly_at_a_fixed_rate() {
        let cap = CapPrice {
            price_per_unit: rat(1, 2000), // 0.0005 USD
            pixels_per_unit: rat(1_000_000, 1),
            currency: Currency::Usd,
        };
        // 0.0005 USD / 1e6 units at 2500 USD/ETH = 2e-13 ETH = 200000 wei per unit.
        let wei = cap.wei_per_unit(Some(&rat(2500, 1))).unwrap();
        assert_eq!(wei, rat(200_000, 1));
        assert!(cap.wei_per_unit(None).is_none());
        assert_eq!(to_wei_price(&wei), WeiPrice::new(200_000, 1).unwrap());
    }

    #[test]
    fn wei_prices_that_do_not_fit_round_down() {
        let exact = to_wei_price(&rat(2469, 200));
        assert_eq!(exact, WeiPrice::new(2469, 200).unwrap());
        // 1/3 of a huge denominator: rounded down, never up.
        let big = BigRational::new(BigInt::from(1), BigInt::from(3u32) * BigInt::from(i64::MAX));
        let price = to_wei_price(&big);
        let back = BigRational::new(
            BigInt::from(price.per_unit()),
            BigInt::from(price.pixels_per_unit()),
        );
        assert!(back <= big);
        let huge = BigRational::from_integer(BigInt::from(i64::MAX) * 4);
        assert_eq!(to_wei_price(&huge).per_unit(), i64::MAX);
    }

    #[test]
    fn feed_bodies_are_read_at_the_pointer() {
        let body = br#"{"ethereum":{"usd":3012.45}}"#;
        assert_eq!(
            parse_rate(body, "/ethereum/usd").unwrap(),
            rat(301_245, 100)
        );
        let body = br#"{"data":{"rate":"2500.5"}}"#;
        assert_eq!(parse_rate(body, "/data/rate").unwrap(), rat(5001, 2));
        assert!(parse_rate(body, "/nope").is_err());
        assert!(parse_rate(b"not json", "/a").is_err());
        assert!(parse_rate(br#"{"a":0}"#, "/a").is_err());
        assert!(parse_rate(br#"{"a":{"b":1}}"#, "/a").is_err());
    }
}
