//! UTC calendar arithmetic for budget periods: which day and month a Unix-millisecond instant
//! falls in, and how long until the next one starts.
//!
//! Days and months are counted as plain integers (days since 1970-01-01, months since year 0) so
//! a budget period is one `i64` and comparing periods is an integer compare. The civil-date
//! conversions are Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms: exact for
//! the proleptic Gregorian calendar over the whole `i64` millisecond range, no tables, no
//! dependency (chrono would work too, but its API is fallible where this math is total).

/// Milliseconds in a second.
pub(crate) const MS_PER_SEC: i64 = 1_000;
/// Milliseconds in a UTC day (no leap seconds in Unix time).
pub(crate) const MS_PER_DAY: i64 = 86_400_000;

/// Days from 1970-01-01 to the civil date `year-month-day` (proleptic Gregorian, UTC).
///
/// `month` is 1..=12 and `day` 1..=31; other values give a date counted past the month's end,
/// which only tests would pass.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    // Count years from March, so the leap day is the last day of the "year".
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400); // 0..=399
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date `(year, month 1..=12, day 1..=31)` of day number `days` since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction, so the narrowing casts are lossless.
    (year, month as u32, day as u32)
}

/// Day number (since 1970-01-01 UTC) of the instant `ms`.
pub(crate) fn day_index(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY)
}

/// Month number (`year * 12 + month - 1`) of the day `day`.
pub(crate) fn month_of_day(day: i64) -> i64 {
    let (year, month, _) = civil_from_days(day);
    year * 12 + i64::from(month) - 1
}

/// First millisecond of day `day`.
pub(crate) fn day_start_ms(day: i64) -> i64 {
    day.saturating_mul(MS_PER_DAY)
}

/// First millisecond of month `month` (as numbered by [`month_of_day`]).
pub(crate) fn month_start_ms(month: i64) -> i64 {
    let year = month.div_euclid(12);
    // rem_euclid(12) is 0..=11, so the cast is lossless.
    let month = month.rem_euclid(12) as u32 + 1;
    day_start_ms(days_from_civil(year, month, 1))
}

/// Whole seconds from `now_ms` until `boundary_ms`, rounded up and at least 1, so "retry after"
/// never tells a client to come back before the boundary (nor "now", which would spin).
pub(crate) fn secs_until(boundary_ms: i64, now_ms: i64) -> u64 {
    let ms = u64::try_from(boundary_ms.saturating_sub(now_ms)).unwrap_or(0);
    ms.div_ceil(1_000).max(1)
}

/// Where one instant falls: its second (for the rate windows), day and month (for budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// The instant, Unix epoch milliseconds.
    pub(crate) now_ms: i64,
    /// Unix second containing `now_ms`.
    pub(crate) sec: i64,
    /// Day number containing `now_ms`.
    pub(crate) day: i64,
    /// Month number containing `now_ms`.
    pub(crate) month: i64,
}

impl Clock {
    /// Splits `now_ms` into second, day and month.
    pub(crate) fn at(now_ms: i64) -> Self {
        let day = day_index(now_ms);
        Self {
            now_ms,
            sec: now_ms.div_euclid(MS_PER_SEC),
            day,
            month: month_of_day(day),
        }
    }

    /// Seconds until the next 00:00 UTC (at least 1).
    pub(crate) fn secs_to_next_day(&self) -> u64 {
        secs_until(day_start_ms(self.day.saturating_add(1)), self.now_ms)
    }

    /// Seconds until 00:00 UTC on the 1st of next month (at least 1).
    pub(crate) fn secs_to_next_month(&self) -> u64 {
        secs_until(month_start_ms(self.month.saturating_add(1)), self.now_ms)
    }
}
