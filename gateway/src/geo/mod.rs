//! Geo lookup for per-key geo locks: which country (and city) an IP address is in.
//!
//! [`GeoDb`] reads a MaxMind DB (`.mmdb`) file, such as GeoLite2-City, GeoLite2-Country, or a
//! small custom database written with [`writer::MmdbWriter`]. Lookups read the database
//! through an [`ArcSwap`], so the hot path takes no lock; [`GeoDb::spawn_reloader`] swaps in a
//! new copy when the file changes and keeps the old one when the new file is broken.
//!
//! A lookup yields the country's ISO 3166-1 alpha-2 code (upper-case, from `country.iso_code`,
//! else `registered_country.iso_code`) and the English city name (`city.names.en`), if any.

mod reload;
pub mod writer;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use arc_swap::ArcSwap;
use maxminddb::Reader;
use serde::Deserialize;

/// How often [`GeoDb::spawn_reloader`] is meant to poll the file, unless configured otherwise.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// Why a geo database could not be opened or reloaded. The message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The file could not be read.
    #[error("cannot read GeoIP database {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a valid MaxMind DB.
    #[error("invalid GeoIP database {}: {source}", path.display())]
    Invalid {
        /// The database file.
        path: PathBuf,
        /// What the MaxMind DB reader found wrong.
        source: maxminddb::MaxMindDbError,
    },
}

/// An ISO 3166-1 alpha-2 country code: two upper-case ASCII letters, such as `US`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code for two ASCII letters in either case (`"us"` gives `US`); `None` otherwise.
    pub fn new(code: &str) -> Option<CountryCode> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }

    /// The code as a string, such as `"US"`.
    pub fn as_str(&self) -> &str {
        // Always two ASCII letters, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for CountryCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for CountryCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where an IP address is, as far as the database knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoLocation {
    /// The country (or, failing that, the country where the network is registered).
    pub country: CountryCode,
    /// The city's English name, when the database has one for the address.
    pub city: Option<String>,
}

/// The answer of [`GeoDb::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeoLookupResult {
    /// The address is in a network with a country.
    Found(GeoLocation),
    /// The database has no record for the address, or a record without a valid country code
    /// (such as an anonymous-proxy or satellite-provider record), or the address cannot be
    /// looked up in it (an IPv6 address in an IPv4-only database).
    NotFound,
}

impl GeoLookupResult {
    /// Whether a location was found.
    pub fn is_found(&self) -> bool {
        matches!(self, GeoLookupResult::Found(_))
    }

    /// The location, if found.
    pub fn location(&self) -> Option<&GeoLocation> {
        match self {
            GeoLookupResult::Found(location) => Some(location),
            GeoLookupResult::NotFound => None,
        }
    }

    /// The country code, if found.
    pub fn country(&self) -> Option<CountryCode> {
        self.location().map(|l| l.country)
    }

    /// The English city name, if found and known.
    pub fn city(&self) -> Option<&str> {
        self.location().and_then(|l| l.city.as_deref())
    }
}

/// A MaxMind DB file, read into memory, that can be swapped for a newer copy while in use.
///
/// [`open`](Self::open) reads and verifies the whole file (`maxminddb`'s `verify`, which walks
/// every network of the search tree and checks each record once; on a full GeoLite2-City file
/// that can take seconds), so call it at startup or on a blocking thread, never on a request
/// path. [`lookup`](Self::lookup) is cheap and takes no lock.
///
/// # Example
///
/// ```
/// use latchkey_gateway::geo::{writer::MmdbWriter, GeoDb, GeoLookupResult};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("geo.mmdb");
/// let mut writer = MmdbWriter::new("GeoLite2-City");
/// writer.insert("203.0.113.0/24".parse()?, "US", Some("San Francisco"))?;
/// writer.write_to(&path)?;
///
/// let db = GeoDb::open(&path)?;
/// let hit = db.lookup("203.0.113.9".parse()?);
/// assert_eq!(hit.country().unwrap(), "US");
/// assert_eq!(hit.city(), Some("San Francisco"));
/// assert_eq!(db.lookup("198.51.100.1".parse()?), GeoLookupResult::NotFound);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct GeoDb {
    path: PathBuf,
    reader: ArcSwap<Reader<Vec<u8>>>,
    generation: AtomicU64,
    reload: Mutex<reload::ReloadState>,
}

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("database_type", &self.database_type())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Reads and verifies the MaxMind DB at `path`.
    ///
    /// Fails with [`GeoError::Io`] if the file cannot be read and [`GeoError::Invalid`] if it
    /// is not a valid MaxMind DB; both name the path.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoDb, GeoError> {
        let path = path.as_ref().to_path_buf();
        let (reader, fingerprint) = reload::load(&path)?;
        Ok(GeoDb {
            reader: ArcSwap::from_pointee(reader),
            generation: AtomicU64::new(0),
            reload: Mutex::new(reload::ReloadState::loaded(fingerprint)),
            path,
        })
    }

    /// The country and English city name of `ip`.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, as a dual-stack listener reports IPv4
    /// clients) are looked up as the IPv4 address.
    pub fn lookup(&self, ip: IpAddr) -> GeoLookupResult {
        let reader = self.reader.load();
        match decode::<FullRecord<'_>>(&reader, ip) {
            Some(record) => {
                let country = record
                    .country
                    .and_then(|c| c.code())
                    .or_else(|| record.registered_country.and_then(|c| c.code()));
                match country {
                    Some(country) => GeoLookupResult::Found(GeoLocation {
                        country,
                        city: record
                            .city
                            .and_then(|c| c.names)
                            .and_then(|n| n.en)
                            .filter(|name| !name.is_empty())
                            .map(str::to_owned),
                    }),
                    None => GeoLookupResult::NotFound,
                }
            }
            None => GeoLookupResult::NotFound,
        }
    }

    /// Only the country of `ip`, as in [`lookup`](Self::lookup): decodes less and allocates
    /// nothing.
    pub fn lookup_country(&self, ip: IpAddr) -> Option<CountryCode> {
        let reader = self.reader.load();
        let record = decode::<CountryRecord<'_>>(&reader, ip)?;
        record
            .country
            .and_then(|c| c.code())
            .or_else(|| record.registered_country.and_then(|c| c.code()))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times a new copy of the file has been swapped in since [`open`](Self::open)
    /// (0 until the first reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The `database_type` of the copy in use, such as `"GeoLite2-City"`.
    pub fn database_type(&self) -> String {
        self.reader.load().metadata().database_type.clone()
    }
}

/// Looks `ip` up and decodes its record as `T`; `None` when there is no record or it cannot
/// be decoded (logged at debug level: lookups are per request).
fn decode<'a, T: Deserialize<'a>>(reader: &'a Reader<Vec<u8>>, ip: IpAddr) -> Option<T> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    let result = match reader.lookup(ip) {
        Ok(result) => result,
        Err(error) => {
            tracing::debug!(%ip, %error, "geo lookup failed");
            return None;
        }
    };
    match result.decode::<T>() {
        Ok(record) => record,
        Err(error) => {
            tracing::debug!(%ip, %error, "geo record could not be decoded");
            None
        }
    }
}

/// The fields of a GeoIP2 City or Country record that a lookup reads; serde skips the rest.
#[derive(Deserialize)]
struct FullRecord<'a> {
    #[serde(borrow)]
    country: Option<CountryField<'a>>,
    #[serde(borrow)]
    registered_country: Option<CountryField<'a>>,
    #[serde(borrow)]
    city: Option<CityField<'a>>,
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country: Option<CountryField<'a>>,
    #[serde(borrow)]
    registered_country: Option<CountryField<'a>>,
}

#[derive(Deserialize)]
struct CountryField<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

impl CountryField<'_> {
    fn code(&self) -> Option<CountryCode> {
        self.iso_code.and_then(CountryCode::new)
    }
}

#[derive(Deserialize)]
struct CityField<'a> {
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::Path;

    use super::writer::{MmdbWriter, Value};
    use super::*;

    pub(super) fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// Writes a database mapping each network to a country and optional city.
    pub(super) fn write_db(path: &Path, entries: &[(&str, &str, Option<&str>)]) {
        let mut w = MmdbWriter::new("GeoLite2-City");
        for (net, country, city) in entries {
            w.insert(net.parse().expect("test network"), country, *city)
                .expect("valid entry");
        }
        w.write_to(path).expect("write test database");
    }

    pub(super) fn found(country: &str, city: Option<&str>) -> GeoLookupResult {
        GeoLookupResult::Found(GeoLocation {
            country: CountryCode::new(country).expect("test country"),
            city: city.map(str::to_owned),
        })
    }

    #[test]
    fn lookups_answer_country_and_city_for_ipv4_and_ipv6() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("city.mmdb");
        write_db(
            &path,
            &[
                ("203.0.113.0/24", "us", Some("San Francisco")),
                ("203.0.113.128/25", "US", Some("Oakland")),
                ("198.51.100.0/24", "DE", None),
                ("2001:db8::/32", "FR", Some("Paris")),
                ("2001:db8:beef::/48", "GB", Some("London")),
            ],
        );
        let db = GeoDb::open(&path).unwrap();
        assert_eq!(db.generation(), 0);
        assert_eq!(db.path(), path);
        assert_eq!(db.database_type(), "GeoLite2-City");

        assert_eq!(
            db.lookup(ip("203.0.113.1")),
            found("US", Some("San Francisco"))
        );
        assert_eq!(db.lookup(ip("203.0.113.200")), found("US", Some("Oakland")));
        assert_eq!(db.lookup(ip("198.51.100.77")), found("DE", None));
        assert_eq!(db.lookup(ip("2001:db8::42")), found("FR", Some("Paris")));
        assert_eq!(
            db.lookup(ip("2001:db8:beef:1::")),
            found("GB", Some("London"))
        );
        // IPv4-mapped IPv6, as a dual-stack listener reports IPv4 peers.
        assert_eq!(
            db.lookup(ip("::ffff:203.0.113.1")),
            found("US", Some("San Francisco"))
        );

        for unknown in [
            "192.0.2.1",
            "203.0.112.255",
            "2001:db9::1",
            "::1",
            "0.0.0.0",
        ] {
            assert_eq!(
                db.lookup(ip(unknown)),
                GeoLookupResult::NotFound,
                "{unknown}"
            );
            assert_eq!(db.lookup_country(ip(unknown)), None, "{unknown}");
        }

        let hit = db.lookup(ip("203.0.113.1"));
        assert!(hit.is_found());
        assert_eq!(hit.country().unwrap(), "US");
        assert_eq!(hit.country().unwrap().to_string(), "US");
        assert_eq!(hit.city(), Some("San Francisco"));
        assert_eq!(db.lookup_country(ip("2001:db8::1")).unwrap(), "FR");
        assert_eq!(db.lookup_country(ip("::ffff:198.51.100.1")).unwrap(), "DE");
    }

    #[test]
    fn country_shaped_databases_have_no_city() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("country.mmdb");
        let mut w = MmdbWriter::new("GeoLite2-Country");
        w.insert("10.0.0.0/8".parse().unwrap(), "NL", None).unwrap();
        w.insert("2001:db8::/32".parse().unwrap(), "BE", None)
            .unwrap();
        w.write_to(&path).unwrap();
        let db = GeoDb::open(&path).unwrap();
        assert_eq!(db.database_type(), "GeoLite2-Country");
        assert_eq!(db.lookup(ip("10.1.2.3")), found("NL", None));
        assert_eq!(db.lookup(ip("2001:db8::1")), found("BE", None));
    }

    fn names(en: Option<&str>) -> Value {
        let mut names = vec![("de".to_owned(), Value::Str("Name".into()))];
        if let Some(en) = en {
            names.push(("en".to_owned(), Value::Str(en.into())));
        }
        Value::Map(names)
    }

    fn country(iso: &str, en: &str) -> Value {
        Value::Map(vec![
            ("geoname_id".into(), Value::U32(2_921_044)),
            ("is_in_european_union".into(), Value::Bool(true)),
            ("iso_code".into(), Value::Str(iso.into())),
            ("names".into(), names(Some(en))),
        ])
    }

    /// A record with every part of a GeoLite2-City record, minus the fields left out.
    fn city_record(skip: &[&str], iso: &str, city_en: Option<&str>) -> Value {
        let fields = vec![
            (
                "city",
                Value::Map(vec![
                    ("geoname_id".into(), Value::U32(2_950_159)),
                    ("names".into(), names(city_en)),
                ]),
            ),
            (
                "continent",
                Value::Map(vec![
                    ("code".into(), Value::Str("EU".into())),
                    ("geoname_id".into(), Value::U32(6_255_148)),
                    ("names".into(), names(Some("Europe"))),
                ]),
            ),
            ("country", country(iso, "Germany")),
            (
                "location",
                Value::Map(vec![
                    ("accuracy_radius".into(), Value::U16(200)),
                    ("latitude".into(), Value::Double(52.5244_f64.to_bits())),
                    ("longitude".into(), Value::Double(13.4105_f64.to_bits())),
                    ("time_zone".into(), Value::Str("Europe/Berlin".into())),
                ]),
            ),
            (
                "postal",
                Value::Map(vec![("code".into(), Value::Str("10178".into()))]),
            ),
            ("registered_country", country("NL", "Netherlands")),
            (
                "subdivisions",
                Value::Array(vec![Value::Map(vec![
                    ("iso_code".into(), Value::Str("BE".into())),
                    ("names".into(), names(Some("Land Berlin"))),
                ])]),
            ),
        ];
        Value::Map(
            fields
                .into_iter()
                .filter(|(k, _)| !skip.contains(k))
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    #[test]
    fn full_geolite2_city_records_are_read_and_fall_back_to_the_registered_country() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.mmdb");
        let mut w = MmdbWriter::new("GeoLite2-City");
        let entries = [
            ("10.0.0.0/24", city_record(&[], "de", Some("Berlin"))),
            (
                "10.0.1.0/24",
                city_record(&["country"], "DE", Some("Berlin")),
            ),
            ("10.0.2.0/24", city_record(&[], "DEU", None)),
            (
                "10.0.3.0/24",
                city_record(&["country", "registered_country"], "DE", Some("X")),
            ),
            ("10.0.4.0/24", city_record(&["city"], "AT", None)),
            ("10.0.5.0/24", city_record(&[], "AT", None)),
            ("10.0.6.0/24", city_record(&[], "AT", Some(""))),
            ("10.0.7.0/24", Value::Map(vec![])),
        ];
        for (net, record) in entries {
            w.insert_value(net.parse().unwrap(), record).unwrap();
        }
        w.write_to(&path).unwrap();
        let db = GeoDb::open(&path).unwrap();

        assert_eq!(db.lookup(ip("10.0.0.1")), found("DE", Some("Berlin")));
        // No country: the registered country.
        assert_eq!(db.lookup(ip("10.0.1.1")), found("NL", Some("Berlin")));
        assert_eq!(db.lookup_country(ip("10.0.1.1")).unwrap(), "NL");
        // A malformed country code: the registered country.
        assert_eq!(db.lookup(ip("10.0.2.1")), found("NL", None));
        // No country at all: not found, even with a city.
        assert_eq!(db.lookup(ip("10.0.3.1")), GeoLookupResult::NotFound);
        assert_eq!(db.lookup_country(ip("10.0.3.1")), None);
        assert_eq!(db.lookup(ip("10.0.4.1")), found("AT", None));
        // Names without English, and an empty English name, are no city.
        assert_eq!(db.lookup(ip("10.0.5.1")), found("AT", None));
        assert_eq!(db.lookup(ip("10.0.6.1")), found("AT", None));
        assert_eq!(db.lookup(ip("10.0.7.1")), GeoLookupResult::NotFound);
    }

    #[test]
    fn records_of_the_wrong_shape_are_not_found_rather_than_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.mmdb");
        let mut w = MmdbWriter::new("Odd");
        w.insert_value(
            "10.0.0.0/8".parse().unwrap(),
            Value::Str("not a map".into()),
        )
        .unwrap();
        let country_is_a_number = Value::Map(vec![("country".into(), Value::U32(7))]);
        w.insert_value("11.0.0.0/8".parse().unwrap(), country_is_a_number)
            .unwrap();
        w.write_to(&path).unwrap();
        let db = GeoDb::open(&path).unwrap();
        assert_eq!(db.lookup(ip("10.0.0.1")), GeoLookupResult::NotFound);
        assert_eq!(db.lookup(ip("11.0.0.1")), GeoLookupResult::NotFound);
        assert_eq!(db.lookup_country(ip("11.0.0.1")), None);
    }

    #[test]
    fn open_names_the_path_when_the_file_is_missing_or_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("does-not-exist.mmdb");
        let err = GeoDb::open(&missing).unwrap_err();
        assert!(matches!(err, GeoError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );

        let garbage = dir.path().join("garbage.mmdb");
        std::fs::write(&garbage, b"this is not a MaxMind DB").unwrap();
        let err = GeoDb::open(&garbage).unwrap_err();
        assert!(matches!(err, GeoError::Invalid { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&*garbage.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_search_tree_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.mmdb");
        write_db(
            &good,
            &[("10.0.0.0/8", "US", None), ("2001:db8::/32", "FR", None)],
        );
        let mut bytes = std::fs::read(&good).unwrap();
        // Point the root's left record (24-bit records here) far past the data section.
        bytes[..3].copy_from_slice(&[0xFF, 0xFF, 0xF0]);
        let bad = dir.path().join("bad.mmdb");
        std::fs::write(&bad, &bytes).unwrap();
        let err = GeoDb::open(&bad).unwrap_err();
        assert!(matches!(err, GeoError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn country_codes_are_two_letters_upper_case() {
        assert_eq!(CountryCode::new("us").unwrap().as_str(), "US");
        assert_eq!(CountryCode::new("Gb").unwrap(), "GB");
        for bad in ["", "U", "USA", "1A", "ÜS", "é"] {
            assert_eq!(CountryCode::new(bad), None, "{bad:?}");
        }
        assert_eq!(GeoLookupResult::NotFound.country(), None);
        assert_eq!(GeoLookupResult::NotFound.city(), None);
        assert!(!GeoLookupResult::NotFound.is_found());
    }

    #[test]
    fn lookups_are_consistent_under_concurrent_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.mmdb");
        write_db(&path, &[("10.0.0.0/8", "US", None)]);
        let db = std::sync::Arc::new(GeoDb::open(&path).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000u32 {
                        let addr = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | i << 4 | u32::from(t)));
                        assert_eq!(db.lookup_country(addr).unwrap(), "US");
                    }
                })
            })
            .collect();
        for _ in 0..5 {
            db.reload_now().unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(db.generation(), 5);
    }
}
