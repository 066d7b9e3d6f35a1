//! The limits configured on one scope ([`Limits`]), and the dollar ↔ micro-dollar conversion
//! every budget goes through.

use serde::{Deserialize, Serialize};

use super::scope::LimitKind;

/// Micro-dollars in one US dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Largest budget [`Limits::validate`] accepts, in US dollars. Far above any real budget; it
/// exists so a typo (or an exponent) cannot silently mean "unlimited", and so every accepted
/// budget fits in `u64` micro-dollars with room to add to it.
pub const MAX_BUDGET_USD: f64 = 1e9;

/// Converts US dollars to whole micro-dollars, rounding to the nearest one.
///
/// Total, so it never panics on configuration input: negative amounts and NaN become 0, and
/// amounts too large for `u64` become `u64::MAX`. For a budget, 0 means "nothing allowed", so an
/// invalid budget that slipped past [`Limits::validate`] fails closed.
///
/// ```
/// use latchkey_policy::limits::usd_to_micros;
/// assert_eq!(usd_to_micros(5.0), 5_000_000);
/// assert_eq!(usd_to_micros(0.1), 100_000); // not 100_000.000_000_000_01
/// assert_eq!(usd_to_micros(-1.0), 0);
/// ```
pub fn usd_to_micros(usd: f64) -> u64 {
    // `as` from f64 saturates and maps NaN to 0, which is exactly the clamping wanted here.
    (usd * MICROS_PER_USD as f64).round() as u64
}

/// Converts micro-dollars to US dollars (for display and APIs; never for bookkeeping).
///
/// ```
/// use latchkey_policy::limits::micros_to_usd;
/// assert_eq!(micros_to_usd(2_500_000), 2.5);
/// ```
pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / MICROS_PER_USD as f64
}

/// Rate limits and budgets of one scope (a proxy key, a workload or a tenant). Every field is
/// optional; `None` means "no limit of this kind". A limit of 0 is valid and allows nothing.
///
/// Budgets are configured in US dollars (what people write) and enforced in integer
/// micro-dollars (what adds up exactly): see [`Limits::budget_daily_micros`].
///
/// ```
/// use latchkey_policy::limits::Limits;
/// let limits: Limits = toml::from_str("rpm = 60\nbudget_daily_usd = 5.0").unwrap();
/// assert_eq!(limits.rpm, Some(60));
/// assert_eq!(limits.budget_daily_micros(), Some(5_000_000));
/// assert!(limits.validate().is_ok());
/// // Only the configured fields are written back.
/// assert_eq!(serde_json::to_string(&limits).unwrap(), r#"{"rpm":60,"budget_daily_usd":5.0}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute (sliding 60-second window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute, input plus output (sliding 60-second window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Spend per UTC calendar day, in US dollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_daily_usd: Option<f64>,
    /// Spend per UTC calendar month, in US dollars.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_monthly_usd: Option<f64>,
}

impl Limits {
    /// True when no limit of any kind is configured.
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.budget_daily_usd.is_none()
            && self.budget_monthly_usd.is_none()
    }

    /// Checks the budgets: each must be a finite, non-negative number of dollars no larger than
    /// [`MAX_BUDGET_USD`]. Counts (`rpm`, `tpm`) are always valid; 0 means "nothing allowed".
    ///
    /// Call it where limits enter the system (config load, admin API), so a bad number is
    /// reported to a person instead of being clamped by [`usd_to_micros`].
    pub fn validate(&self) -> Result<(), LimitsError> {
        check_budget("budget_daily_usd", self.budget_daily_usd)?;
        check_budget("budget_monthly_usd", self.budget_monthly_usd)
    }

    /// The daily budget in micro-dollars (see [`usd_to_micros`] for rounding and clamping).
    pub fn budget_daily_micros(&self) -> Option<u64> {
        self.budget_daily_usd.map(usd_to_micros)
    }

    /// The monthly budget in micro-dollars (see [`usd_to_micros`] for rounding and clamping).
    pub fn budget_monthly_micros(&self) -> Option<u64> {
        self.budget_monthly_usd.map(usd_to_micros)
    }

    /// The limit of `kind` in its own unit (requests, tokens or micro-dollars), if configured.
    pub fn limit(&self, kind: LimitKind) -> Option<u64> {
        match kind {
            LimitKind::Requests => self.rpm,
            LimitKind::Tokens => self.tpm,
            LimitKind::DailySpend => self.budget_daily_micros(),
            LimitKind::MonthlySpend => self.budget_monthly_micros(),
        }
    }
}

fn check_budget(field: &'static str, value: Option<f64>) -> Result<(), LimitsError> {
    let Some(value) = value else { return Ok(()) };
    if !value.is_finite() {
        Err(LimitsError::NotFinite { field, value })
    } else if value < 0.0 {
        Err(LimitsError::Negative { field, value })
    } else if value > MAX_BUDGET_USD {
        Err(LimitsError::TooLarge { field, value })
    } else {
        Ok(())
    }
}

/// Why [`Limits::validate`] rejected a configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsError {
    /// The budget is NaN or infinite.
    #[error("{field} must be a finite number of US dollars, got {value}")]
    NotFinite {
        /// The offending field, as spelled in configuration.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// The budget is below zero.
    #[error("{field} must not be negative, got {value}")]
    Negative {
        /// The offending field, as spelled in configuration.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// The budget is above [`MAX_BUDGET_USD`].
    #[error("{field} must be at most {max} US dollars, got {value}", max = MAX_BUDGET_USD)]
    TooLarge {
        /// The offending field, as spelled in configuration.
        field: &'static str,
        /// The value given.
        value: f64,
    },
}
