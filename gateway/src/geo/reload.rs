//! Reloading a [`GeoDb`] when its file changes.
//!
//! The reloader polls the file's metadata (length, modification and change times, and on Unix
//! the device and inode) instead of subscribing to file system events. Polling needs no extra
//! dependency (inotify/kqueue/FSEvents would need the `notify` crate and its platform
//! backends), works the same on every platform and on network or container-mounted volumes
//! where events are unreliable, survives the file being replaced by rename (which is how
//! `geoipupdate` and [`MmdbWriter::write_to`](super::writer::MmdbWriter::write_to) update it,
//! and which orphans an inotify watch on the old inode), and costs one `stat` per interval.
//! GeoIP databases change weekly at most, so a 30 s delay is of no consequence.

use std::fs::{self, File, Metadata};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use maxminddb::Reader;

use super::{GeoDb, GeoError};

/// The shortest polling interval [`GeoDb::spawn_reloader`] uses; shorter ones are raised to it.
pub(super) const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(10);

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    unix: (u64, u64, i64, i64),
}

impl Fingerprint {
    fn of(metadata: &Metadata) -> Fingerprint {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Fingerprint {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            unix: (
                metadata.dev(),
                metadata.ino(),
                metadata.ctime(),
                metadata.ctime_nsec(),
            ),
        }
    }
}

/// What the reloader last saw of the file. Guarded by a mutex that also serializes reloads;
/// lookups never touch it.
#[derive(Debug)]
pub(super) struct ReloadState {
    /// The version last loaded or last rejected; a rejected one is not tried again (nor
    /// warned about again) until the file changes.
    seen: Option<Fingerprint>,
    /// Whether the file's absence has been reported, so it is reported once.
    missing_reported: bool,
}

impl ReloadState {
    pub(super) fn loaded(fingerprint: Fingerprint) -> ReloadState {
        ReloadState {
            seen: Some(fingerprint),
            missing_reported: false,
        }
    }
}

/// Reads and verifies the database at `path`. The fingerprint comes from the open file, so it
/// describes the bytes read even if the path is replaced meanwhile.
pub(super) fn load(path: &Path) -> Result<(Reader<Vec<u8>>, Fingerprint), GeoError> {
    let io_error = |source| GeoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |source| GeoError::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    let mut buf = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut buf).map_err(io_error)?;
    let reader = Reader::from_source(buf).map_err(invalid)?;
    // from_source checks the metadata only; verify walks the tree and the records, so that a
    // damaged file is refused here rather than found out one lookup at a time.
    reader.verify().map_err(invalid)?;
    Ok((reader, Fingerprint::of(&metadata)))
}

impl GeoDb {
    /// Starts a Tokio task that checks the file every `interval` (normally
    /// [`DEFAULT_RELOAD_INTERVAL`](super::DEFAULT_RELOAD_INTERVAL)) and, when it has changed,
    /// reads and verifies it on a blocking thread and swaps it in atomically: lookups already
    /// under way finish on the old copy, later ones see the new one, and
    /// [`generation`](Self::generation) goes up by one.
    ///
    /// A new file that cannot be read or is not a valid database is reported with
    /// `tracing::warn!` and the copy in use is kept; it is tried again when the file changes
    /// again. The task holds a weak reference and ends once the `GeoDb` is dropped (or when
    /// the returned handle is aborted).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like [`tokio::spawn`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use latchkey_gateway::geo::{writer::MmdbWriter, GeoDb, DEFAULT_RELOAD_INTERVAL};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("geo.mmdb");
    /// MmdbWriter::new("Internal-Geo").insert("10.0.0.0/8".parse()?, "US", None)?.write_to(&path)?;
    ///
    /// let db = Arc::new(GeoDb::open(&path)?);
    /// let reloader = db.spawn_reloader(DEFAULT_RELOAD_INTERVAL);
    /// // ... the file is replaced; within 30 s lookups answer from the new copy ...
    /// reloader.abort();
    /// # Ok(())
    /// # }
    /// ```
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let db = Arc::downgrade(self);
        let interval = interval.max(MIN_RELOAD_INTERVAL);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(db) = db.upgrade() else { break };
                let path = db.path.clone();
                match tokio::task::spawn_blocking(move || db.reload_if_changed()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(
                        path = %path.display(),
                        %error,
                        "GeoIP database reload failed; keeping the database in use"
                    ),
                    Err(error) => tracing::warn!(
                        path = %path.display(),
                        %error,
                        "GeoIP database reload did not complete; keeping the database in use"
                    ),
                }
            }
        })
    }

    /// Reads, verifies and swaps in the file now, changed or not (blocking I/O). On error the
    /// copy in use is kept.
    pub fn reload_now(&self) -> Result<(), GeoError> {
        let mut state = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let (reader, fingerprint) = load(&self.path)?;
        self.swap_in(&mut state, reader, fingerprint);
        Ok(())
    }

    /// One poll: reloads if the file's fingerprint differs from the version last seen.
    /// `Ok(true)` if a new copy was swapped in, `Ok(false)` if nothing changed; an error once
    /// per changed (or vanished) file that could not be loaded.
    pub(super) fn reload_if_changed(&self) -> Result<bool, GeoError> {
        let mut state = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let current = match fs::metadata(&self.path) {
            Ok(metadata) => Fingerprint::of(&metadata),
            Err(source) => {
                if state.missing_reported {
                    return Ok(false);
                }
                state.missing_reported = true;
                return Err(GeoError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        state.missing_reported = false;
        if state.seen == Some(current) {
            return Ok(false);
        }
        state.seen = Some(current);
        let (reader, fingerprint) = load(&self.path)?;
        self.swap_in(&mut state, reader, fingerprint);
        Ok(true)
    }

    fn swap_in(&self, state: &mut ReloadState, reader: Reader<Vec<u8>>, fingerprint: Fingerprint) {
        let database_type = reader.metadata().database_type.clone();
        let build_epoch = reader.metadata().build_epoch;
        self.reader.store(Arc::new(reader));
        state.seen = Some(fingerprint);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(
            path = %self.path.display(),
            database_type,
            build_epoch,
            generation,
            "GeoIP database loaded"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::super::tests::{found, ip, write_db};
    use super::super::{GeoDb, GeoError, GeoLookupResult};

    const POLL: Duration = Duration::from_millis(100);

    /// Waits (up to 10 s) until `done` holds.
    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_reloader_swaps_in_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        write_db(&path, &[("203.0.113.0/24", "US", Some("Austin"))]);
        let db = Arc::new(GeoDb::open(&path).unwrap());
        let reloader = db.spawn_reloader(POLL);
        assert_eq!(db.lookup(ip("203.0.113.5")), found("US", Some("Austin")));

        // Replaced by rename, as MmdbWriter::write_to and geoipupdate do.
        write_db(&path, &[("203.0.113.0/24", "DE", Some("Hamburg"))]);
        wait_until("generation 1", || db.generation() == 1).await;
        assert_eq!(db.lookup(ip("203.0.113.5")), found("DE", Some("Hamburg")));

        // Nothing changes while the file does not.
        tokio::time::sleep(POLL * 4).await;
        assert_eq!(db.generation(), 1);

        // Rewritten in place (same inode). The pause lets the coarse file system clock tick,
        // so that the modification time differs.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut w = crate::geo::writer::MmdbWriter::new("GeoLite2-City");
        w.insert("203.0.113.0/24".parse().unwrap(), "FR", None)
            .unwrap();
        std::fs::write(&path, w.to_bytes()).unwrap();
        wait_until("generation 2", || db.generation() == 2).await;
        assert_eq!(db.lookup(ip("203.0.113.5")), found("FR", None));
        reloader.abort();
    }

    #[tokio::test]
    async fn a_broken_file_keeps_the_old_data_until_a_good_one_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        write_db(&path, &[("10.0.0.0/8", "US", None)]);
        let db = Arc::new(GeoDb::open(&path).unwrap());
        let reloader = db.spawn_reloader(POLL);

        // Corrupt: a truncated copy, then garbage.
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        tokio::time::sleep(POLL * 4).await;
        std::fs::write(&path, b"not a database at all").unwrap();
        tokio::time::sleep(POLL * 4).await;
        assert_eq!(db.generation(), 0);
        assert_eq!(db.lookup(ip("10.1.1.1")), found("US", None));

        // Missing for a while: still the old data.
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(POLL * 4).await;
        assert_eq!(db.generation(), 0);
        assert_eq!(db.lookup(ip("10.1.1.1")), found("US", None));

        // A good file again.
        write_db(&path, &[("10.0.0.0/8", "CA", None)]);
        wait_until("generation 1", || db.generation() == 1).await;
        assert_eq!(db.lookup(ip("10.1.1.1")), found("CA", None));
        reloader.abort();
    }

    #[test]
    fn polling_reports_each_broken_version_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        write_db(&path, &[("10.0.0.0/8", "US", None)]);
        let db = GeoDb::open(&path).unwrap();
        assert!(!db.reload_if_changed().unwrap());

        std::fs::write(&path, b"garbage").unwrap();
        let err = db.reload_if_changed().unwrap_err();
        assert!(matches!(err, GeoError::Invalid { .. }), "{err:?}");
        assert!(
            !db.reload_if_changed().unwrap(),
            "the same broken file is not retried"
        );

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(db.reload_if_changed(), Err(GeoError::Io { .. })));
        assert!(
            !db.reload_if_changed().unwrap(),
            "a missing file is reported once"
        );

        write_db(&path, &[("10.0.0.0/8", "MX", None)]);
        assert!(db.reload_if_changed().unwrap());
        assert_eq!(db.generation(), 1);
        assert_eq!(db.lookup(ip("10.0.0.1")), found("MX", None));
    }

    #[test]
    fn reload_now_swaps_or_keeps_the_old_copy_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        write_db(&path, &[("10.0.0.0/8", "US", None)]);
        let db = GeoDb::open(&path).unwrap();

        db.reload_now().unwrap();
        assert_eq!(
            db.generation(),
            1,
            "reload_now reloads even an unchanged file"
        );

        std::fs::write(&path, b"garbage").unwrap();
        let err = db.reload_now().unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert_eq!(db.generation(), 1);
        assert_eq!(db.lookup(ip("10.0.0.1")), found("US", None));

        write_db(&path, &[("10.0.0.0/8", "BR", None)]);
        db.reload_now().unwrap();
        assert_eq!(db.generation(), 2);
        assert_eq!(db.lookup(ip("10.0.0.1")), found("BR", None));
        assert_eq!(db.lookup(ip("11.0.0.1")), GeoLookupResult::NotFound);
    }

    #[tokio::test]
    async fn the_reloader_ends_when_the_database_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        write_db(&path, &[("10.0.0.0/8", "US", None)]);
        let db = Arc::new(GeoDb::open(&path).unwrap());
        let reloader = db.spawn_reloader(Duration::ZERO); // raised to the minimum interval
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(db);
        tokio::time::timeout(Duration::from_secs(5), reloader)
            .await
            .expect("the reloader ends")
            .expect("the reloader does not panic");
    }
}
