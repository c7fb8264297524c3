//! Fixed time windows in UTC: minute, day and calendar month, as indexes
//! (so counters of different nodes for the same window line up without
//! agreeing on anything but the clock) and the unix ms at which each ends.

/// Milliseconds in a minute.
pub const MINUTE_MS: u64 = 60_000;
/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Minutes since the unix epoch.
pub fn minute_index(now_ms: u64) -> u64 {
    now_ms / MINUTE_MS
}

/// When minute `index` ends (unix ms).
pub fn minute_end_ms(index: u64) -> u64 {
    index.saturating_add(1).saturating_mul(MINUTE_MS)
}

/// UTC days since the unix epoch.
pub fn day_index(now_ms: u64) -> u64 {
    now_ms / DAY_MS
}

/// When day `index` ends (unix ms).
pub fn day_end_ms(index: u64) -> u64 {
    index.saturating_add(1).saturating_mul(DAY_MS)
}

/// UTC calendar months since January 1970 (`year × 12 + month − 1` from 1970).
pub fn month_index(now_ms: u64) -> u64 {
    let (year, month, _) = civil_from_days(day_index(now_ms));
    (year - 1970) * 12 + (month - 1)
}

/// When month `index` ends: the first instant of the next month (unix ms).
pub fn month_end_ms(index: u64) -> u64 {
    let next = index.saturating_add(1);
    let (year, month) = (1970 + next / 12, next % 12 + 1);
    days_from_civil(year, month, 1).saturating_mul(DAY_MS)
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`, for non-negative days; proleptic
/// Gregorian, UTC).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (year ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_follow_the_calendar() {
        // 2024-02-29T12:00:00Z (leap day).
        let leap = 1_709_208_000_000;
        assert_eq!(civil_from_days(day_index(leap)), (2024, 2, 29));
        let index = month_index(leap);
        assert_eq!(index, (2024 - 1970) * 12 + 1);
        // 2024-03-01T00:00:00Z
        assert_eq!(month_end_ms(index), 1_709_251_200_000);
        assert_eq!(month_index(month_end_ms(index)), index + 1);
        assert_eq!(month_index(month_end_ms(index) - 1), index);
        // December rolls over into January of the next year.
        let december = (2023 - 1970) * 12 + 11;
        assert_eq!(month_end_ms(december), 1_704_067_200_000);
        for days in [0, 59, 365, 10_000, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn minute_and_day_windows() {
        assert_eq!(minute_index(119_999), 1);
        assert_eq!(minute_end_ms(1), 120_000);
        assert_eq!(day_end_ms(day_index(DAY_MS + 5)), 2 * DAY_MS);
    }
}
