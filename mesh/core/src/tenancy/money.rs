//! Money as an integer count of nano-USD (1e-9 USD) in a `u64` (enough for
//! 18 billion USD). Config values are exact decimal strings such as `"50"`
//! or `"0.25"`; parsing is exact (no floating point), and more than nine
//! decimals is an error rather than a silent rounding.

/// Nano-USD in one USD.
pub const NANO_USD_PER_USD: u64 = 1_000_000_000;
/// Most decimals a USD amount may carry (nano-USD resolution).
const MAX_DECIMALS: usize = 9;

/// A USD string that is not an exact, non-negative amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not `<digits>[.<digits>]`.
    #[error("{0:?} is not a USD amount: write digits with an optional '.' and up to 9 decimals")]
    Malformed(String),
    /// More than nine decimals.
    #[error("{0:?} has more than 9 decimals (nano-USD is the smallest unit)")]
    TooPrecise(String),
    /// Does not fit in a u64 of nano-USD.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses `"50"`, `"0.25"`, `"1_000.5"` (underscores are ignored) into
/// nano-USD.
pub fn parse_usd_nano(text: &str) -> Result<u64, MoneyError> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_').collect();
    let malformed = || MoneyError::Malformed(text.to_owned());
    let (whole, fraction) = match cleaned.split_once('.') {
        Some((w, f)) => (w, f),
        None => (cleaned.as_str(), ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(malformed());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    if cleaned.contains('.') && fraction.is_empty() {
        return Err(malformed());
    }
    if fraction.len() > MAX_DECIMALS {
        return Err(MoneyError::TooPrecise(text.to_owned()));
    }
    let too_large = || MoneyError::TooLarge(text.to_owned());
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut nanos: u64 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        let place = 10u64.pow((MAX_DECIMALS - 1 - i) as u32);
        nanos += u64::from(digit - b'0') * place;
    }
    whole
        .checked_mul(NANO_USD_PER_USD)
        .and_then(|w| w.checked_add(nanos))
        .ok_or_else(too_large)
}

/// Formats nano-USD as an exact decimal USD string without trailing zeros
/// (`250_000_000` → `"0.25"`).
pub fn format_usd(nano_usd: u64) -> String {
    let whole = nano_usd / NANO_USD_PER_USD;
    let fraction = nano_usd % NANO_USD_PER_USD;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(parse_usd_nano("50"), Ok(50 * NANO_USD_PER_USD));
        assert_eq!(parse_usd_nano("0.25"), Ok(250_000_000));
        assert_eq!(parse_usd_nano(".5"), Ok(500_000_000));
        assert_eq!(parse_usd_nano("1_000.000000001"), Ok(1_000_000_000_001));
        assert_eq!(parse_usd_nano("0"), Ok(0));
        for bad in ["", ".", "1.", "-1", "1e3", "0.1.2", "abc", " 1 2"] {
            assert!(parse_usd_nano(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_usd_nano("0.0000000001"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            parse_usd_nano("99999999999999999999"),
            Err(MoneyError::TooLarge(_))
        ));
        assert!(matches!(
            parse_usd_nano("18446744074"),
            Err(MoneyError::TooLarge(_))
        ));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["50", "0.25", "1000.000000001", "0"] {
            assert_eq!(format_usd(parse_usd_nano(text).unwrap()), text);
        }
    }
}
