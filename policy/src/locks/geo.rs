//! Geo lock: a key may be used only from listed countries and/or cities.
//!
//! The lookup itself (a GeoIP database) is I/O and lives in the gateway; this module only decides.
//! It fails closed: a geo-locked key is refused when the location is unknown or when no database is
//! configured at all.

use serde::{Deserialize, Serialize};

use super::error::{quote, LockSpecError};
use super::Denial;

/// The geo lock stored on a proxy key. Both lists empty means no lock.
///
/// When both lists are non-empty, **both** must match (country AND city): the stricter reading, so
/// a mis-entered combination refuses rather than widens access.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GeoLock {
    /// Allowed ISO 3166-1 alpha-2 country codes, upper-case (`DE`, `US`).
    pub countries: Vec<String>,
    /// Allowed city names as the geo database spells them; compared case-insensitively.
    pub cities: Vec<String>,
}

/// What the geo database says about the client address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GeoFacts {
    /// ISO 3166-1 alpha-2 country code, if known.
    pub country: Option<String>,
    /// City name, if known.
    pub city: Option<String>,
}

/// The outcome of a geo lookup, as the gateway performed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoLookup {
    /// The address was found in the database.
    Found(GeoFacts),
    /// The database has no entry for the address (private ranges, new allocations, …).
    NotFound,
    /// No geo database is configured.
    NoDatabase,
}

impl GeoLock {
    /// Builds a lock from operator input: trims entries, drops empty ones, upper-cases and
    /// validates country codes (two ASCII letters).
    ///
    /// ```
    /// use latchkey_policy::locks::geo::GeoLock;
    /// let lock = GeoLock::new(&["de", " fr "], &["Berlin"]).unwrap();
    /// assert_eq!(lock.countries, ["DE", "FR"]);
    /// assert!(GeoLock::new(&["Germany"], &[]).is_err());
    /// ```
    pub fn new<S: AsRef<str>>(countries: &[S], cities: &[S]) -> Result<GeoLock, LockSpecError> {
        let countries = countries
            .iter()
            .map(|c| c.as_ref().trim())
            .filter(|c| !c.is_empty())
            .map(|c| {
                if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Ok(c.to_ascii_uppercase())
                } else {
                    Err(LockSpecError::InvalidCountry(quote(c)))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cities = cities
            .iter()
            .map(|c| c.as_ref().trim())
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        Ok(GeoLock { countries, cities })
    }

    /// True when the lock restricts nothing, so the caller can skip the geo lookup entirely.
    ///
    /// ```
    /// use latchkey_policy::locks::geo::GeoLock;
    /// assert!(GeoLock::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.countries.is_empty() && self.cities.is_empty()
    }
}

/// Checks a geo lookup against the key's geo lock. An empty lock passes without looking at
/// `lookup`.
///
/// ```
/// use latchkey_policy::locks::geo::{check_geo, GeoFacts, GeoLock, GeoLookup};
/// use latchkey_policy::locks::Denial;
/// let lock = GeoLock::new(&["DE"], &[]).unwrap();
/// let berlin = GeoLookup::Found(GeoFacts { country: Some("de".into()), city: Some("Berlin".into()) });
/// assert_eq!(check_geo(&lock, &berlin), Ok(()));
/// assert_eq!(check_geo(&lock, &GeoLookup::NotFound), Err(Denial::GeoBlocked));
/// assert_eq!(check_geo(&lock, &GeoLookup::NoDatabase), Err(Denial::GeoUnavailable));
/// ```
pub fn check_geo(lock: &GeoLock, lookup: &GeoLookup) -> Result<(), Denial> {
    if lock.is_empty() {
        return Ok(());
    }
    let facts = match lookup {
        GeoLookup::Found(facts) => facts,
        GeoLookup::NotFound => return Err(Denial::GeoBlocked),
        GeoLookup::NoDatabase => return Err(Denial::GeoUnavailable),
    };
    let country_ok = lock.countries.is_empty()
        || matches!(&facts.country, Some(c) if lock.countries.iter().any(|a| a.eq_ignore_ascii_case(c.trim())));
    let city_ok = lock.cities.is_empty()
        || matches!(&facts.city, Some(c) if lock.cities.iter().any(|a| same_city(a, c)));
    if country_ok && city_ok {
        Ok(())
    } else {
        Err(Denial::GeoBlocked)
    }
}

/// Case-insensitive (Unicode) comparison without allocating: `São Paulo` equals `SÃO PAULO`.
fn same_city(a: &str, b: &str) -> bool {
    a.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .eq(b.trim().chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(country: Option<&str>, city: Option<&str>) -> GeoLookup {
        GeoLookup::Found(GeoFacts {
            country: country.map(str::to_string),
            city: city.map(str::to_string),
        })
    }

    #[test]
    fn empty_lock_needs_no_lookup() {
        let lock = GeoLock::default();
        assert_eq!(check_geo(&lock, &GeoLookup::NoDatabase), Ok(()));
        assert_eq!(check_geo(&lock, &GeoLookup::NotFound), Ok(()));
    }

    #[test]
    fn country_match_and_mismatch() {
        let lock = GeoLock::new(&["DE", "at"], &[]).expect("lock");
        assert_eq!(check_geo(&lock, &found(Some("AT"), None)), Ok(()));
        assert_eq!(check_geo(&lock, &found(Some("de"), Some("Köln"))), Ok(()));
        assert_eq!(
            check_geo(&lock, &found(Some("US"), None)),
            Err(Denial::GeoBlocked)
        );
        assert_eq!(
            check_geo(&lock, &found(None, Some("Berlin"))),
            Err(Denial::GeoBlocked)
        );
    }

    #[test]
    fn city_match_is_case_insensitive() {
        let lock = GeoLock::new(&[], &["São Paulo"]).expect("lock");
        assert_eq!(
            check_geo(&lock, &found(Some("BR"), Some("SÃO PAULO"))),
            Ok(())
        );
        assert_eq!(
            check_geo(&lock, &found(Some("BR"), Some("Rio"))),
            Err(Denial::GeoBlocked)
        );
        assert_eq!(
            check_geo(&lock, &found(Some("BR"), None)),
            Err(Denial::GeoBlocked)
        );
    }

    #[test]
    fn country_and_city_both_required() {
        let lock = GeoLock::new(&["FR"], &["Paris"]).expect("lock");
        assert_eq!(check_geo(&lock, &found(Some("FR"), Some("paris"))), Ok(()));
        assert_eq!(
            check_geo(&lock, &found(Some("FR"), Some("Lyon"))),
            Err(Denial::GeoBlocked)
        );
        assert_eq!(
            check_geo(&lock, &found(Some("US"), Some("Paris"))),
            Err(Denial::GeoBlocked)
        );
    }

    #[test]
    fn fails_closed_without_data() {
        let lock = GeoLock::new(&["DE"], &[]).expect("lock");
        assert_eq!(
            check_geo(&lock, &GeoLookup::NotFound),
            Err(Denial::GeoBlocked)
        );
        assert_eq!(
            check_geo(&lock, &GeoLookup::NoDatabase),
            Err(Denial::GeoUnavailable)
        );
        assert_eq!(
            check_geo(&lock, &found(None, None)),
            Err(Denial::GeoBlocked)
        );
    }

    #[test]
    fn constructor_validates() {
        assert!(matches!(
            GeoLock::new(&["D"], &[]),
            Err(LockSpecError::InvalidCountry(_))
        ));
        assert!(matches!(
            GeoLock::new(&["D1"], &[]),
            Err(LockSpecError::InvalidCountry(_))
        ));
        let lock = GeoLock::new(&[" ", "us"], &["", " Austin "]).expect("lock");
        assert_eq!(lock.countries, ["US"]);
        assert_eq!(lock.cities, ["Austin"]);
    }

    #[test]
    fn older_json_loads() {
        let lock: GeoLock = serde_json::from_str(r#"{"countries":["DE"]}"#).expect("json");
        assert_eq!(lock.countries, ["DE"]);
        assert!(lock.cities.is_empty());
    }
}
