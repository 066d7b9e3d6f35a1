//! A minimal writer for the [MaxMind DB] (`.mmdb`) format.
//!
//! [`MmdbWriter`] builds a small GeoIP2-City-shaped database: every network maps to a record
//!
//! ```json
//! {"country": {"iso_code": "US"}, "city": {"names": {"en": "San Francisco"}}}
//! ```
//!
//! (`city` is left out when no city is given). That is exactly what [`GeoDb`](super::GeoDb)
//! reads, and what other MaxMind DB readers read as a GeoIP2 City or Country record. Operators
//! use it to build a small custom database for internal ranges; the test suite uses it to make
//! fixtures that the real `maxminddb` reader then checks.
//!
//! What is written:
//!
//! * an IPv6 search tree (`ip_version` 6). IPv4 networks go in the IPv4-compatible `::/96`
//!   subtree, where MaxMind's readers look IPv4 addresses up. The IPv4-mapped `::ffff:0:0/96`
//!   range is *not* aliased to that subtree; [`GeoDb::lookup`](super::GeoDb::lookup) maps such
//!   addresses to IPv4 before it looks them up.
//! * the smallest record size (24, 28 or 32 bits) that can address every node and record.
//! * a data section in which every distinct record is stored once and repeated strings
//!   (map keys, city names) are replaced by pointers to their first copy.
//! * metadata with `binary_format_major_version` 2, `binary_format_minor_version` 0,
//!   `database_type`, `languages` `["en"]`, an English `description`, `build_epoch`,
//!   `ip_version`, `node_count` and `record_size`.
//!
//! Networks may overlap: the most specific network wins for the addresses it covers, whatever
//! the order of the inserts. Inserting the same network twice keeps the later record. An IPv6
//! network that covers `::/96` (for example `::/0`) also covers all IPv4 addresses, as in any
//! MaxMind IPv6 database, and more specific IPv4 networks still win over it.
//!
//! [MaxMind DB]: https://maxmind.github.io/MaxMind-DB/

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

/// The longest accepted city name, in bytes of UTF-8.
pub const MAX_CITY_NAME_LEN: usize = 1024;

/// The database type written when [`MmdbWriter::new`] is given an empty one: readers that
/// verify a database (as [`GeoDb`](super::GeoDb) does) reject an empty `database_type`.
pub const DEFAULT_DATABASE_TYPE: &str = "Latchkey-Geo";

const DEFAULT_DESCRIPTION: &str = "Latchkey custom geo database";
const DATA_SECTION_SEPARATOR: [u8; 16] = [0; 16];
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

// Type numbers of the MaxMind DB data section encoding.
const TYPE_POINTER: u8 = 1;
const TYPE_UTF8_STRING: u8 = 2;
const TYPE_DOUBLE: u8 = 3;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_UINT64: u8 = 9;
const TYPE_ARRAY: u8 = 11;
const TYPE_BOOLEAN: u8 = 14;

/// Why a network could not be added to an [`MmdbWriter`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MmdbWriteError {
    /// The country code is not two ASCII letters (ISO 3166-1 alpha-2).
    #[error("invalid country ISO code {0:?}: expected two ASCII letters (ISO 3166-1 alpha-2)")]
    InvalidCountryCode(String),
    /// The city name is empty or longer than [`MAX_CITY_NAME_LEN`] bytes.
    #[error("invalid city name: must be 1 to {MAX_CITY_NAME_LEN} bytes, got {0} bytes")]
    InvalidCityName(usize),
    /// The database would no longer fit the format's 32-bit search tree records.
    #[error("the database would exceed the MaxMind DB format's 32-bit record limit")]
    TooLarge,
}

/// A value of the MaxMind DB data section, as far as this writer needs them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
    #[cfg_attr(not(test), allow(dead_code))]
    Bool(bool),
    /// An IEEE 754 double, kept as its bits so that values can be hashed.
    #[cfg_attr(not(test), allow(dead_code))]
    Double(u64),
}

impl Value {
    fn str(s: &str) -> Value {
        Value::Str(s.to_owned())
    }

    fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }
}

/// Builds a MaxMind DB file that maps networks to a country and, optionally, a city.
///
/// # Example
///
/// ```
/// use latchkey_gateway::geo::writer::MmdbWriter;
/// use latchkey_gateway::geo::GeoDb;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("internal.mmdb");
///
/// let mut writer = MmdbWriter::new("Internal-Geo");
/// writer.insert("10.0.0.0/8".parse()?, "US", None)?;
/// writer.insert("10.20.0.0/16".parse()?, "de", Some("Berlin"))?; // more specific wins
/// writer.insert("2001:db8::/32".parse()?, "FR", Some("Paris"))?;
/// writer.write_to(&path)?;
///
/// let db = GeoDb::open(&path)?;
/// assert_eq!(db.lookup("10.1.2.3".parse()?).country().unwrap(), "US");
/// assert_eq!(db.lookup("10.20.2.3".parse()?).city(), Some("Berlin"));
/// assert_eq!(db.lookup("2001:db8::1".parse()?).country().unwrap(), "FR");
/// assert!(!db.lookup("192.0.2.1".parse()?).is_found());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MmdbWriter {
    database_type: String,
    description: String,
    build_epoch: Option<u64>,
    /// Networks keyed by (prefix length in the IPv6 tree, network address as an IPv6 integer).
    /// The key order is ascending prefix length, the order in which the tree is built so that
    /// more specific networks are laid over less specific ones.
    networks: BTreeMap<(u8, u128), Entry>,
    /// Upper bound of the search tree's node count: one root plus one node per prefix bit.
    node_bound: u64,
    /// Upper bound of the data section's length: the sum of each record's own encoding.
    data_bound: u64,
    /// Forces a record size (tests only exercise all three).
    #[cfg(test)]
    record_size: Option<u16>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    encoded_len: u64,
}

impl MmdbWriter {
    /// An empty database of the given `database_type` (for example `"GeoLite2-City"` or
    /// `"Internal-Geo"`). An empty type becomes [`DEFAULT_DATABASE_TYPE`].
    pub fn new(database_type: &str) -> MmdbWriter {
        let database_type = if database_type.is_empty() {
            DEFAULT_DATABASE_TYPE
        } else {
            database_type
        };
        MmdbWriter {
            database_type: database_type.to_owned(),
            description: DEFAULT_DESCRIPTION.to_owned(),
            build_epoch: None,
            networks: BTreeMap::new(),
            node_bound: 1,
            data_bound: 0,
            #[cfg(test)]
            record_size: None,
        }
    }

    /// Sets the English `description` written in the metadata (ignored if empty).
    pub fn set_description(&mut self, description: &str) -> &mut MmdbWriter {
        if !description.is_empty() {
            self.description = description.to_owned();
        }
        self
    }

    /// Sets the `build_epoch` (seconds since the Unix epoch) written in the metadata. Without
    /// it, the time of [`to_bytes`](Self::to_bytes) is written; setting it makes the output
    /// reproducible.
    pub fn set_build_epoch(&mut self, epoch: u64) -> &mut MmdbWriter {
        self.build_epoch = Some(epoch);
        self
    }

    /// Maps `net` to `country_iso` (two ASCII letters, stored upper-case) and, if given, the
    /// English city name `city_en`.
    ///
    /// Host bits of `net` are ignored (`10.1.2.3/8` is `10.0.0.0/8`). Overlapping networks are
    /// allowed: the most specific one wins; inserting a network again replaces its record.
    pub fn insert(
        &mut self,
        net: IpNet,
        country_iso: &str,
        city_en: Option<&str>,
    ) -> Result<&mut MmdbWriter, MmdbWriteError> {
        let iso = match country_iso.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                country_iso.to_ascii_uppercase()
            }
            _ => return Err(MmdbWriteError::InvalidCountryCode(country_iso.to_owned())),
        };
        let mut record = vec![(
            "country".to_owned(),
            Value::map([("iso_code", Value::Str(iso))]),
        )];
        if let Some(city) = city_en {
            if city.is_empty() || city.len() > MAX_CITY_NAME_LEN {
                return Err(MmdbWriteError::InvalidCityName(city.len()));
            }
            record.push((
                "city".to_owned(),
                Value::map([("names", Value::map([("en", Value::str(city))]))]),
            ));
        }
        self.insert_value(net, Value::Map(record))?;
        Ok(self)
    }

    /// Maps `net` to an arbitrary record. Callers bound string lengths (a string's size must
    /// fit the format's 24-bit size field); the total size is checked here.
    pub(crate) fn insert_value(&mut self, net: IpNet, value: Value) -> Result<(), MmdbWriteError> {
        let key = tree_key(net);
        let mut standalone = Encoder::new(false);
        standalone.value(&value);
        let encoded_len = standalone.buf.len() as u64;

        let (node_bound, data_bound) = match self.networks.get(&key) {
            Some(old) => (self.node_bound, self.data_bound - old.encoded_len),
            None => (self.node_bound + u64::from(key.0), self.data_bound),
        };
        let data_bound = data_bound + encoded_len;
        // Every search tree record is a node number (< node_count), the empty marker
        // (node_count) or node_count + 16 + a data offset (< data length), and data pointers
        // are data offsets: all of them fit 32 bits while this holds.
        if node_bound + DATA_SECTION_SEPARATOR.len() as u64 + data_bound > u64::from(u32::MAX) {
            return Err(MmdbWriteError::TooLarge);
        }
        self.node_bound = node_bound;
        self.data_bound = data_bound;
        self.networks.insert(key, Entry { value, encoded_len });
        Ok(())
    }

    /// How many distinct networks have been inserted.
    pub fn len(&self) -> usize {
        self.networks.len()
    }

    /// Whether no network has been inserted (such a database is valid and finds nothing).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The complete `.mmdb` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (nodes, values) = self.build_tree();
        // Data section: each distinct record once, repeated strings as pointers.
        let mut data = Encoder::new(true);
        let offsets: Vec<u64> = values
            .iter()
            .map(|value| {
                let offset = data.buf.len() as u64;
                data.value(value);
                offset
            })
            .collect();
        self.assemble(&nodes, &offsets, &data.buf)
    }

    /// Search tree, separator, data section, metadata marker and metadata. `offsets` gives
    /// the data section offset of each record that a [`Slot::Data`] names.
    fn assemble(&self, nodes: &[[Slot; 2]], offsets: &[u64], data: &[u8]) -> Vec<u8> {
        let node_count = nodes.len() as u64;
        let separator_len = DATA_SECTION_SEPARATOR.len() as u64;
        let record_size = self.record_size_for(node_count + separator_len + data.len() as u64);
        let record_value = |slot: Slot| -> u64 {
            match slot {
                Slot::Empty => node_count,
                Slot::Node(n) => n as u64,
                Slot::Data(v) => node_count + separator_len + offsets[v],
            }
        };

        let tree_len = nodes.len() * usize::from(record_size) / 4;
        let mut out = Vec::with_capacity(tree_len + 16 + data.len() + 256);
        for [left, right] in nodes {
            // insert_value keeps every record value below 2^32, so the casts keep all bits.
            let (l, r) = (record_value(*left) as u32, record_value(*right) as u32);
            match record_size {
                24 => {
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                28 => {
                    // [left low 24 bits][left high 4 | right high 4][right low 24 bits]
                    out.extend_from_slice(&l.to_be_bytes()[1..]);
                    out.push((((l >> 24) & 0x0F) << 4) as u8 | ((r >> 24) & 0x0F) as u8);
                    out.extend_from_slice(&r.to_be_bytes()[1..]);
                }
                _ => {
                    out.extend_from_slice(&l.to_be_bytes());
                    out.extend_from_slice(&r.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&DATA_SECTION_SEPARATOR);
        out.extend_from_slice(data);
        out.extend_from_slice(METADATA_MARKER);

        let build_epoch = self.build_epoch.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        let metadata = Value::map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(build_epoch)),
            ("database_type", Value::str(&self.database_type)),
            (
                "description",
                Value::map([("en", Value::str(&self.description))]),
            ),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("node_count", Value::U32(node_count as u32)),
            ("record_size", Value::U16(record_size)),
        ]);
        let mut meta = Encoder::new(false);
        meta.value(&metadata);
        out.extend_from_slice(&meta.buf);
        out
    }

    /// Writes [`to_bytes`](Self::to_bytes) to `path` atomically: to a temporary file in the
    /// same directory, synced, then renamed over `path`. A process that watches `path` (such as
    /// [`GeoDb::spawn_reloader`](super::GeoDb::spawn_reloader)) never sees a half-written file.
    pub fn write_to(&self, path: impl AsRef<Path>) -> io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);

        let path = path.as_ref();
        let annotate = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file_name = path.file_name().ok_or_else(|| {
            annotate(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp_name = OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);

        let bytes = self.to_bytes();
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(annotate)
    }

    fn record_size_for(&self, max_record: u64) -> u16 {
        let fitting = if max_record < 1 << 24 {
            24
        } else if max_record < 1 << 28 {
            28
        } else {
            32
        };
        #[cfg(test)]
        if let Some(forced) = self.record_size {
            return forced.max(fitting);
        }
        fitting
    }

    /// Lays the networks, least specific first, over a binary trie and numbers the reachable
    /// nodes breadth-first from the root (node 0). Returns the nodes and the distinct records.
    fn build_tree(&self) -> (Vec<[Slot; 2]>, Vec<&Value>) {
        let mut values: Vec<&Value> = Vec::new();
        let mut value_index: HashMap<&Value, usize> = HashMap::new();
        let mut nodes: Vec<[Slot; 2]> = vec![[Slot::Empty; 2]];

        for (&(prefix, bits), entry) in &self.networks {
            let vi = *value_index.entry(&entry.value).or_insert_with(|| {
                values.push(&entry.value);
                values.len() - 1
            });
            if prefix == 0 {
                // ::/0 covers everything laid so far; it sorts first, so that is nothing.
                nodes[0] = [Slot::Data(vi); 2];
                continue;
            }
            let mut node = 0;
            for depth in 0..prefix {
                let bit = ((bits >> (127 - u32::from(depth))) & 1) as usize;
                if depth + 1 == prefix {
                    // Replaces whatever was there: only less specific data, given the order.
                    nodes[node][bit] = Slot::Data(vi);
                    break;
                }
                node = match nodes[node][bit] {
                    Slot::Node(child) => child,
                    slot => {
                        // Empty, or a less specific network's record that the new, more
                        // specific one splits: both halves keep it for now.
                        let fill = match slot {
                            Slot::Data(_) => slot,
                            _ => Slot::Empty,
                        };
                        nodes.push([fill; 2]);
                        let child = nodes.len() - 1;
                        nodes[node][bit] = Slot::Node(child);
                        child
                    }
                };
            }
        }

        // Breadth-first renumbering of the nodes reachable from the root.
        let mut new_index = vec![usize::MAX; nodes.len()];
        let mut order = Vec::with_capacity(nodes.len());
        let mut queue = VecDeque::from([0usize]);
        new_index[0] = 0;
        while let Some(old) = queue.pop_front() {
            order.push(old);
            for slot in nodes[old] {
                if let Slot::Node(child) = slot {
                    if new_index[child] == usize::MAX {
                        new_index[child] = order.len() + queue.len();
                        queue.push_back(child);
                    }
                }
            }
        }
        let renumbered = order
            .iter()
            .map(|&old| {
                nodes[old].map(|slot| match slot {
                    Slot::Node(child) => Slot::Node(new_index[child]),
                    other => other,
                })
            })
            .collect();
        (renumbered, values)
    }
}

/// One record of a search tree node while the tree is built.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// No network covers this half.
    Empty,
    /// Another node (an index into the node list).
    Node(usize),
    /// A record (an index into the distinct records).
    Data(usize),
}

/// The network's prefix length and address in the IPv6 tree: IPv4 networks live in `::/96`.
fn tree_key(net: IpNet) -> (u8, u128) {
    match net.trunc() {
        IpNet::V4(v4) => (v4.prefix_len() + 96, u128::from(u32::from(v4.network()))),
        IpNet::V6(v6) => (v6.prefix_len(), u128::from(v6.network())),
    }
}

/// Encodes values in the MaxMind DB data section format.
struct Encoder {
    buf: Vec<u8>,
    /// Offsets of strings already written in full, to point back to. `None` disables pointers
    /// (the metadata section and standalone size estimates).
    strings: Option<HashMap<String, u64>>,
}

impl Encoder {
    fn new(pointers: bool) -> Encoder {
        Encoder {
            buf: Vec::new(),
            strings: pointers.then(HashMap::new),
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Str(s) => self.string(s),
            Value::U16(n) => self.unsigned(TYPE_UINT16, u64::from(*n)),
            Value::U32(n) => self.unsigned(TYPE_UINT32, u64::from(*n)),
            Value::U64(n) => self.unsigned(TYPE_UINT64, *n),
            Value::Map(entries) => {
                self.control(TYPE_MAP, entries.len());
                for (key, value) in entries {
                    self.string(key);
                    self.value(value);
                }
            }
            Value::Array(items) => {
                self.control(TYPE_ARRAY, items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Bool(b) => self.control(TYPE_BOOLEAN, usize::from(*b)),
            Value::Double(bits) => {
                self.control(TYPE_DOUBLE, 8);
                self.buf.extend_from_slice(&bits.to_be_bytes());
            }
        }
    }

    /// A control byte: the type in the top three bits (0 and an extra byte for types above
    /// 7), the size in the low five bits, then up to three more size bytes.
    fn control(&mut self, type_num: u8, size: usize) {
        let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
            (size as u8, Vec::new())
        } else if size < 29 + 256 {
            (29, vec![(size - 29) as u8])
        } else if size < 285 + 65_536 {
            (30, ((size - 285) as u16).to_be_bytes().to_vec())
        } else {
            (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
        };
        if type_num <= 7 {
            self.buf.push((type_num << 5) | size_bits);
        } else {
            self.buf.push(size_bits);
            self.buf.push(type_num - 7);
        }
        self.buf.extend_from_slice(&extra);
    }

    /// An unsigned integer in as few big-endian bytes as it needs (zero has none).
    fn unsigned(&mut self, type_num: u8, n: u64) {
        let bytes = n.to_be_bytes();
        let skip = (n.leading_zeros() / 8) as usize;
        self.control(type_num, bytes.len() - skip);
        self.buf.extend_from_slice(&bytes[skip..]);
    }

    fn string(&mut self, s: &str) {
        if let Some(strings) = &mut self.strings {
            match strings.get(s) {
                Some(&offset) if pointer_len(offset) < string_len(s) => {
                    self.pointer(offset);
                    return;
                }
                Some(_) => {}
                None => {
                    strings.insert(s.to_owned(), self.buf.len() as u64);
                }
            }
        }
        self.control(TYPE_UTF8_STRING, s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A pointer to a data section offset, in the smallest of the four pointer sizes.
    fn pointer(&mut self, offset: u64) {
        let size = match offset {
            0..=2_047 => 0,
            2_048..=526_335 => 1,
            526_336..=134_744_063 => 2,
            _ => 3,
        };
        self.pointer_with_size(offset, size);
    }

    /// A pointer of the given size (0 to 3): 11, 19 and 27 bits with the offsets that the
    /// smaller sizes cover subtracted, or a plain 32-bit offset.
    fn pointer_with_size(&mut self, offset: u64, size: u8) {
        let (value, len) = match size {
            0 => (offset, 1),
            1 => (offset - 2_048, 2),
            2 => (offset - 526_336, 3),
            _ => (offset, 4),
        };
        let high = if size == 3 {
            0
        } else {
            ((value >> (8 * len)) & 0x07) as u8
        };
        self.buf.push((TYPE_POINTER << 5) | (size << 3) | high);
        let bytes = (value as u32).to_be_bytes();
        self.buf.extend_from_slice(&bytes[4 - len..]);
    }
}

/// The encoded length of a pointer to `offset`.
fn pointer_len(offset: u64) -> usize {
    match offset {
        0..=2_047 => 2,
        2_048..=526_335 => 3,
        526_336..=134_744_063 => 4,
        _ => 5,
    }
}

/// The encoded length of a UTF-8 string value.
fn string_len(s: &str) -> usize {
    let n = s.len();
    let size_bytes = match n {
        0..=28 => 0,
        29..=284 => 1,
        285..=65_820 => 2,
        _ => 3,
    };
    1 + size_bytes + n
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use maxminddb::{path, Reader};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn read(writer: &MmdbWriter) -> Reader<Vec<u8>> {
        let reader = Reader::from_source(writer.to_bytes()).expect("the reader accepts the file");
        reader.verify().expect("the file verifies");
        reader
    }

    /// (country, city) as the real reader decodes them.
    fn lookup(reader: &Reader<Vec<u8>>, addr: IpAddr) -> Option<(String, Option<String>)> {
        let result = reader.lookup(addr).expect("lookup");
        if !result.has_data() {
            return None;
        }
        let country: String = result
            .decode_path(&path!["country", "iso_code"])
            .expect("decode country")
            .expect("record has a country");
        let city: Option<String> = result
            .decode_path(&path!["city", "names", "en"])
            .expect("decode city");
        Some((country, city))
    }

    fn found(country: &str, city: Option<&str>) -> Option<(String, Option<String>)> {
        Some((country.to_owned(), city.map(str::to_owned)))
    }

    fn sample_writer() -> MmdbWriter {
        let mut w = MmdbWriter::new("Test-City");
        w.set_build_epoch(1_700_000_000);
        w.insert(net("10.0.0.0/8"), "US", None).unwrap();
        w.insert(net("10.1.0.0/16"), "de", Some("Berlin")).unwrap();
        w.insert(net("10.1.2.3/32"), "FR", Some("Paris")).unwrap();
        w.insert(net("192.0.2.0/24"), "JP", Some("Tokyo")).unwrap();
        w.insert(net("2001:db8::/32"), "GB", Some("London"))
            .unwrap();
        w.insert(net("2001:db8:1::/48"), "IE", Some("Dublin"))
            .unwrap();
        w
    }

    fn check_sample(reader: &Reader<Vec<u8>>) {
        assert_eq!(lookup(reader, ip("10.200.0.1")), found("US", None));
        assert_eq!(lookup(reader, ip("10.1.9.9")), found("DE", Some("Berlin")));
        assert_eq!(lookup(reader, ip("10.1.2.3")), found("FR", Some("Paris")));
        assert_eq!(lookup(reader, ip("10.1.2.4")), found("DE", Some("Berlin")));
        assert_eq!(
            lookup(reader, ip("192.0.2.255")),
            found("JP", Some("Tokyo"))
        );
        assert_eq!(
            lookup(reader, ip("2001:db8:ffff::1")),
            found("GB", Some("London"))
        );
        assert_eq!(
            lookup(reader, ip("2001:db8:1::1")),
            found("IE", Some("Dublin"))
        );
        assert_eq!(lookup(reader, ip("11.0.0.1")), None);
        assert_eq!(lookup(reader, ip("9.255.255.255")), None);
        assert_eq!(lookup(reader, ip("192.0.3.0")), None);
        assert_eq!(lookup(reader, ip("2001:db9::1")), None);
        // The IPv4 networks sit in ::/96 (IPv4-compatible addresses), as MaxMind puts them.
        assert_eq!(lookup(reader, ip("::10.1.2.3")), found("FR", Some("Paris")));

        let network = |addr: &str| reader.lookup(ip(addr)).unwrap().network().unwrap();
        assert_eq!(network("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(network("192.0.2.7").to_string(), "192.0.2.0/24");
        assert_eq!(network("2001:db8:1:2::").to_string(), "2001:db8:1::/48");
    }

    #[test]
    fn the_maxminddb_reader_reads_every_record_size() {
        for size in [24, 28, 32] {
            let mut w = sample_writer();
            w.record_size = Some(size);
            let reader = read(&w);
            let m = reader.metadata();
            assert_eq!(m.record_size, size);
            assert_eq!(m.ip_version, 6);
            assert_eq!(m.binary_format_major_version, 2);
            assert_eq!(m.binary_format_minor_version, 0);
            assert_eq!(m.build_epoch, 1_700_000_000);
            assert_eq!(m.database_type, "Test-City");
            assert_eq!(m.languages, vec!["en".to_owned()]);
            assert_eq!(
                m.description.get("en").map(String::as_str),
                Some(DEFAULT_DESCRIPTION)
            );
            assert_eq!(m.node_count as usize, w.build_tree().0.len());
            check_sample(&reader);
        }
    }

    #[test]
    fn records_have_the_geoip2_city_shape() {
        let reader = read(&sample_writer());
        let city: serde_json::Value = reader
            .lookup(ip("10.1.2.3"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(
            city,
            json!({"country": {"iso_code": "FR"}, "city": {"names": {"en": "Paris"}}})
        );
        let country_only: serde_json::Value = reader
            .lookup(ip("10.9.9.9"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(country_only, json!({"country": {"iso_code": "US"}}));
        // The crate's own GeoIP2 schema reads it too.
        let typed = reader.lookup(ip("10.1.2.3")).unwrap();
        let typed = typed.decode::<maxminddb::geoip2::City>().unwrap().unwrap();
        assert_eq!(typed.country.iso_code, Some("FR"));
        assert_eq!(typed.city.names.english, Some("Paris"));
    }

    #[test]
    fn more_specific_networks_win_whatever_the_insert_order() {
        let entries = [
            ("10.1.2.3/32", "FR", Some("Paris")),
            ("2001:db8:1::/48", "IE", Some("Dublin")),
            ("10.1.0.0/16", "DE", Some("Berlin")),
            ("192.0.2.0/24", "JP", Some("Tokyo")),
            ("2001:db8::/32", "GB", Some("London")),
            ("10.0.0.0/8", "US", None),
        ];
        let mut w = MmdbWriter::new("Test-City");
        w.set_build_epoch(1_700_000_000);
        for (n, c, city) in entries {
            w.insert(net(n), c, city).unwrap();
        }
        check_sample(&read(&w));
        // The output depends on the set of networks only.
        assert_eq!(w.to_bytes(), sample_writer().to_bytes());
    }

    #[test]
    fn inserting_a_network_again_replaces_its_record() {
        let mut w = MmdbWriter::new("Test");
        w.insert(net("10.0.0.0/8"), "US", Some("Boston")).unwrap();
        w.insert(net("10.9.9.9/8"), "CA", None).unwrap(); // host bits ignored: same network
        assert_eq!(w.len(), 1);
        let reader = read(&w);
        assert_eq!(lookup(&reader, ip("10.1.1.1")), found("CA", None));
    }

    #[test]
    fn a_default_route_covers_ipv4_and_ipv6_below_more_specific_networks() {
        let mut w = MmdbWriter::new("Test");
        w.insert(net("::/0"), "AQ", None).unwrap();
        w.insert(net("10.0.0.0/8"), "US", None).unwrap();
        w.insert(net("2001:db8::/32"), "GB", None).unwrap();
        let reader = read(&w);
        assert_eq!(lookup(&reader, ip("10.0.0.1")), found("US", None));
        assert_eq!(lookup(&reader, ip("11.0.0.1")), found("AQ", None));
        assert_eq!(lookup(&reader, ip("2001:db8::1")), found("GB", None));
        assert_eq!(lookup(&reader, ip("2a00::1")), found("AQ", None));

        let mut w = MmdbWriter::new("Test");
        w.insert(net("0.0.0.0/0"), "AQ", None).unwrap();
        let reader = read(&w);
        assert_eq!(lookup(&reader, ip("203.0.113.1")), found("AQ", None));
        assert_eq!(lookup(&reader, ip("2001:db8::1")), None);
    }

    #[test]
    fn an_empty_database_is_valid_and_finds_nothing() {
        let w = MmdbWriter::new("");
        assert!(w.is_empty());
        let reader = read(&w);
        assert_eq!(reader.metadata().database_type, DEFAULT_DATABASE_TYPE);
        assert_eq!(reader.metadata().node_count, 1);
        assert_eq!(lookup(&reader, ip("10.0.0.1")), None);
        assert_eq!(lookup(&reader, ip("2001:db8::1")), None);
    }

    #[test]
    fn bad_input_is_refused() {
        let mut w = MmdbWriter::new("Test");
        for bad in ["", "U", "USA", "U1", "Ü", "ÜS", " US"] {
            assert!(
                matches!(
                    w.insert(net("10.0.0.0/8"), bad, None),
                    Err(MmdbWriteError::InvalidCountryCode(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            w.insert(net("10.0.0.0/8"), "US", Some("")),
            Err(MmdbWriteError::InvalidCityName(0))
        ));
        let long = "x".repeat(MAX_CITY_NAME_LEN + 1);
        assert!(matches!(
            w.insert(net("10.0.0.0/8"), "US", Some(&long)),
            Err(MmdbWriteError::InvalidCityName(_))
        ));
        assert!(w.is_empty());
        let longest = "x".repeat(MAX_CITY_NAME_LEN);
        w.insert(net("10.0.0.0/8"), "US", Some(&longest)).unwrap();
        assert_eq!(
            lookup(&read(&w), ip("10.0.0.1")),
            found("US", Some(&longest))
        );
    }

    #[test]
    fn the_size_limit_is_enforced_before_it_is_reached() {
        let mut w = MmdbWriter::new("Test");
        w.data_bound = u64::from(u32::MAX) - 16 - 1 - 60;
        assert!(matches!(
            w.insert(net("10.0.0.0/8"), "US", Some("Some long enough city name")),
            Err(MmdbWriteError::TooLarge)
        ));
        assert!(w.is_empty());
    }

    #[test]
    fn every_encoding_size_and_type_reads_back() {
        let mut w = MmdbWriter::new("Test");
        let lengths = [
            0, 1, 28, 29, 30, 284, 285, 286, 65_820, 65_821, 65_822, 70_000,
        ];
        let strings: Vec<(String, Value)> = lengths
            .iter()
            .map(|&n| {
                (
                    format!("s{n}"),
                    Value::Str("é".repeat(n / 2) + &"a".repeat(n % 2)),
                )
            })
            .collect();
        let record = Value::Map(vec![
            ("strings".into(), Value::Map(strings)),
            (
                "u16".into(),
                Value::Array([0, 1, 255, 256, u16::MAX].map(Value::U16).to_vec()),
            ),
            (
                "u32".into(),
                Value::Array(
                    [0, 65_536, 16_777_215, 16_777_216, u32::MAX]
                        .map(Value::U32)
                        .to_vec(),
                ),
            ),
            (
                "u64".into(),
                Value::Array([0, 1 << 32, 1 << 56, u64::MAX].map(Value::U64).to_vec()),
            ),
            ("yes".into(), Value::Bool(true)),
            ("no".into(), Value::Bool(false)),
            ("latitude".into(), Value::Double(52.5244_f64.to_bits())),
            ("long_array".into(), Value::Array(vec![Value::U16(7); 300])),
            (
                "country".into(),
                Value::map([("iso_code", Value::str("NZ"))]),
            ),
        ]);
        w.insert_value(net("10.0.0.0/8"), record).unwrap();
        let reader = read(&w);
        let got: serde_json::Value = reader
            .lookup(ip("10.0.0.1"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        for &n in &lengths {
            let s = got["strings"][format!("s{n}")].as_str().unwrap();
            assert_eq!(s.len(), n / 2 * 2 + n % 2);
        }
        assert_eq!(got["u16"], json!([0, 1, 255, 256, 65535]));
        assert_eq!(
            got["u32"],
            json!([0, 65536, 16777215, 16777216, 4294967295u32])
        );
        assert_eq!(got["u64"], json!([0, 1u64 << 32, 1u64 << 56, u64::MAX]));
        assert_eq!(got["yes"], json!(true));
        assert_eq!(got["no"], json!(false));
        assert_eq!(got["latitude"], json!(52.5244));
        assert_eq!(got["long_array"].as_array().unwrap().len(), 300);
        assert_eq!(got["country"]["iso_code"], json!("NZ"));
    }

    #[test]
    fn build_epochs_of_every_width_read_back() {
        for epoch in [0, 1, 255, 256, 65_535, 1 << 24, 1 << 32, 1 << 40] {
            let mut w = MmdbWriter::new("Test");
            w.set_build_epoch(epoch);
            assert_eq!(read(&w).metadata().build_epoch, epoch);
        }
    }

    #[test]
    fn pointer_bytes_follow_the_spec() {
        let bytes = |offset, size| {
            let mut e = Encoder::new(false);
            e.pointer_with_size(offset, size);
            e.buf
        };
        // 001SSVVV, then the remaining bits big-endian; sizes 1 and 2 are biased.
        assert_eq!(bytes(0x3FF, 0), [0x23, 0xFF]);
        assert_eq!(bytes(2_048 + 0x5_2345, 1), [0x2D, 0x23, 0x45]);
        assert_eq!(bytes(526_336 + 0x512_3456, 2), [0x35, 0x12, 0x34, 0x56]);
        assert_eq!(bytes(0x89AB_CDEF, 3), [0x38, 0x89, 0xAB, 0xCD, 0xEF]);
        for offset in [0, 2_047, 2_048, 526_335, 526_336, 134_744_063, 134_744_064] {
            let mut e = Encoder::new(false);
            e.pointer(offset);
            assert_eq!(e.buf.len(), pointer_len(offset), "{offset}");
        }
    }

    #[test]
    fn the_reader_follows_pointers_of_every_size() {
        for size in 0..4u8 {
            // "US" at offset 0, then {"country": {"iso_code": <pointer to 0>}}.
            let mut data = Encoder::new(false);
            data.string("US");
            let record = data.buf.len() as u64;
            data.control(TYPE_MAP, 1);
            data.string("country");
            data.control(TYPE_MAP, 1);
            data.string("iso_code");
            // Sizes 1 and 2 cannot express offset 0: point at a copy placed far enough out.
            let target = match size {
                1 => 2_048,
                2 => 526_336,
                _ => 0,
            };
            data.pointer_with_size(target, size);
            let mut buf = data.buf;
            if target > 0 {
                buf.resize(target as usize, 0);
                buf.extend_from_slice(&[0x42, b'U', b'S']);
            }
            let w = MmdbWriter::new("Test");
            let bytes = w.assemble(&[[Slot::Data(0), Slot::Empty]], &[record], &buf);
            let reader = Reader::from_source(bytes).unwrap();
            let country: Option<String> = reader
                .lookup(ip("::1"))
                .unwrap()
                .decode_path(&path!["country", "iso_code"])
                .unwrap();
            assert_eq!(country.as_deref(), Some("US"), "pointer size {size}");
            assert_eq!(lookup(&reader, ip("8000::1")), None);
        }
    }

    #[test]
    fn records_above_24_bits_keep_their_high_nibbles() {
        // Two records far into the data section: the root's left record needs 25 bits and its
        // right one 26, so 28-bit records carry different high nibbles on each side.
        let record = |iso: &str| {
            let mut e = Encoder::new(false);
            e.value(&Value::map([(
                "country",
                Value::map([("iso_code", Value::str(iso))]),
            )]));
            e.buf
        };
        let (left, right) = (17_000_000u64, 34_000_000u64);
        let mut data = vec![0u8; right as usize];
        data[left as usize..][..record("NO").len()].copy_from_slice(&record("NO"));
        data.extend_from_slice(&record("SE"));
        for size in [28, 32] {
            let mut w = MmdbWriter::new("Test");
            w.record_size = Some(size);
            let bytes = w.assemble(&[[Slot::Data(0), Slot::Data(1)]], &[left, right], &data);
            let reader = Reader::from_source(bytes).unwrap();
            assert_eq!(reader.metadata().record_size, size);
            assert_eq!(lookup(&reader, ip("::1")), found("NO", None), "{size}");
            assert_eq!(lookup(&reader, ip("10.0.0.1")), found("NO", None), "{size}");
            assert_eq!(lookup(&reader, ip("8000::1")), found("SE", None), "{size}");
        }
    }

    #[test]
    fn repeated_strings_become_pointers_of_growing_size() {
        // Enough distinct cities to push their first copies past 526,336 bytes, each used again
        // by a second record at the end: pointers of sizes 0, 1 and 2 all occur.
        let n = 16_000u32;
        let city = |i: u32| format!("City number {i:05} of the test");
        let mut w = MmdbWriter::new("Test");
        for i in 0..n {
            let a = Ipv4Addr::from(0x0A00_0000 | (i << 8));
            let b = Ipv4Addr::from(0x0B00_0000 | (i << 8));
            w.insert(
                IpNet::V4(Ipv4Net::new(a, 24).unwrap()),
                "US",
                Some(&city(i)),
            )
            .unwrap();
            w.insert(
                IpNet::V4(Ipv4Net::new(b, 24).unwrap()),
                "CA",
                Some(&city(i)),
            )
            .unwrap();
        }
        let bytes = w.to_bytes();
        let reader = read(&w);
        let m = reader.metadata();
        let tree_len = m.node_count as usize * usize::from(m.record_size) / 4;
        let marker = bytes
            .windows(METADATA_MARKER.len())
            .rposition(|w| w == METADATA_MARKER);
        let data_len = marker.unwrap() - tree_len - 16;
        // The second half's records point back at cities whose first copies lie beyond
        // 526,336 bytes (a 4-byte pointer) and below 2,048 (a 2-byte one).
        assert!(data_len > 700_000, "{data_len}");
        assert!(
            data_len < 1_200_000,
            "cities and keys are shared: {data_len}"
        );
        for i in (0..n).step_by(97).chain([n - 1]) {
            let a = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (i << 8) | 7));
            let b = IpAddr::V4(Ipv4Addr::from(0x0B00_0000 | (i << 8) | 200));
            assert_eq!(lookup(&reader, a), found("US", Some(&city(i))));
            assert_eq!(lookup(&reader, b), found("CA", Some(&city(i))));
        }
    }

    #[test]
    fn write_to_replaces_the_file_atomically_and_names_the_path_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        sample_writer().write_to(&path).unwrap();
        let mut other = MmdbWriter::new("Other");
        other.insert(net("10.0.0.0/8"), "CA", None).unwrap();
        other.write_to(&path).unwrap();
        let reader = Reader::open_readfile(&path).unwrap();
        assert_eq!(reader.metadata().database_type, "Other");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![OsString::from("geo.mmdb")],
            "no temporary file is left"
        );

        let missing_dir = dir.path().join("no-such-dir").join("geo.mmdb");
        let err = other.write_to(&missing_dir).unwrap_err();
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        assert!(other.write_to("/").is_err());
    }

    // ---- the real reader as the oracle for random, overlapping networks ----

    #[derive(Debug, Clone)]
    struct Case {
        nets: Vec<(IpNet, &'static str, Option<&'static str>)>,
        probes: Vec<IpAddr>,
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        let v4 = (0u32..3, any::<u32>(), 0u8..=32).prop_map(|(top, low, len)| {
            let addr = Ipv4Addr::from(((10 + top) << 24) | (low >> 8));
            IpNet::V4(Ipv4Net::new(addr, len).unwrap().trunc())
        });
        let v6 = (any::<u32>(), 0u8..=128).prop_map(|(bits, len)| {
            let addr = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(bits) << 64) | 1);
            IpNet::V6(Ipv6Net::new(addr, len).unwrap().trunc())
        });
        let wide =
            (0u8..=96).prop_map(|len| IpNet::V6(Ipv6Net::new(Ipv6Addr::UNSPECIFIED, len).unwrap()));
        prop_oneof![6 => v4, 3 => v6, 1 => wide]
    }

    fn arb_case() -> impl Strategy<Value = Case> {
        let value = (
            prop::sample::select(vec!["US", "DE", "FR", "JP"]),
            prop::sample::select(vec![None, Some("Alpha"), Some("Beta")]),
        );
        let nets = prop::collection::vec((arb_net(), value), 0..40).prop_map(|v| {
            v.into_iter()
                .map(|(n, (c, city))| (n, c, city))
                .collect::<Vec<_>>()
        });
        let probes = prop::collection::vec(arb_net(), 0..20);
        (nets, probes).prop_map(|(nets, extra)| {
            let mut probes = Vec::new();
            for n in nets.iter().map(|(n, _, _)| *n).chain(extra) {
                probes.push(n.network());
                probes.push(n.broadcast());
                probes.push(bump(n.network(), -1));
                probes.push(bump(n.broadcast(), 1));
            }
            Case { nets, probes }
        })
    }

    fn bump(addr: IpAddr, delta: i8) -> IpAddr {
        match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                u32::from(a).wrapping_add_signed(delta.into()),
            )),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                u128::from(a).wrapping_add_signed(delta.into()),
            )),
        }
    }

    /// Longest-prefix match over the inserted networks, the last insert of a network winning.
    fn model(case: &Case, addr: IpAddr) -> Option<(String, Option<String>)> {
        let mut latest: HashMap<(u8, u128), (&str, Option<&str>)> = HashMap::new();
        for (n, c, city) in &case.nets {
            latest.insert(tree_key(*n), (c, *city));
        }
        let a = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        latest
            .iter()
            .filter(|((len, key), _)| *len == 0 || (a ^ key) >> (128 - u32::from(*len)) == 0)
            .max_by_key(|((len, _), _)| *len)
            .map(|(_, (c, city))| found(c, *city).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn the_reader_agrees_with_longest_prefix_match(case in arb_case()) {
            let mut w = MmdbWriter::new("Test");
            for (n, c, city) in &case.nets {
                w.insert(*n, c, *city).unwrap();
            }
            let reader = read(&w);
            for &addr in &case.probes {
                prop_assert_eq!(lookup(&reader, addr), model(&case, addr), "address {}", addr);
            }
        }
    }
}
