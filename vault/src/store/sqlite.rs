//! The embedded store: one SQLite file in WAL mode.
//!
//! rusqlite is synchronous, so every call runs on tokio's blocking pool. The hot path never
//! waits on it: the gateway reads through in-process caches.

use super::{Store, StoreError, StoreResult};
use crate::audit::{AuditEvent, AuditRecord, ChainHead};
use crate::envelope::Sealed;
use crate::model::{AdminToken, Credential, KeyRecord, Provider};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Arc, Mutex};

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
INSERT INTO tenants (id, name, created_at) VALUES ('default', 'Default', strftime('%Y-%m-%dT%H:%M:%fZ','now'));
CREATE TABLE providers (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    provider TEXT NOT NULL,
    label TEXT NOT NULL,
    workloads TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX credentials_by_provider ON credentials (tenant, provider);
CREATE TABLE credential_versions (
    credential_id TEXT NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    nonce BLOB NOT NULL,
    wrapped_key BLOB NOT NULL,
    key_nonce BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (credential_id, version)
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    hash TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE audit (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    tenant TEXT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_by_tenant ON audit (tenant);
"#];

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(ref f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        _ => StoreError::Db(e.to_string()),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(corrupt)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .map_err(db)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction().map_err(db)?;
            tx.execute_batch(m).map_err(db)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Db("store mutex poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task failed: {e}")))?
    }
}

fn credential_from_row(
    r: &Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String, i64, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

type CredRow = (String, String, String, String, String, i64, String);

fn credential(row: CredRow) -> StoreResult<Credential> {
    let (id, tenant, provider, label, workloads, version, created_at) = row;
    Ok(Credential {
        id,
        tenant,
        provider,
        label,
        workloads: serde_json::from_str(&workloads).map_err(corrupt)?,
        version,
        created_at: parse_ts(&created_at)?,
    })
}

const CRED_COLS: &str = "id, tenant, provider, label, workloads, version, created_at";

/// Key records are stored as JSON beside their indexed hash, so new key fields (locks, limits)
/// need no schema change. The hash lives only in its own column.
fn key_from_row(r: &Row<'_>) -> rusqlite::Result<(String, String)> {
    Ok((r.get(0)?, r.get(1)?))
}

fn key_from_body((body, hash): (String, String)) -> StoreResult<KeyRecord> {
    let mut rec: KeyRecord = serde_json::from_str(&body).map_err(corrupt)?;
    rec.hash = hash;
    Ok(rec)
}

fn key_body(k: &KeyRecord) -> StoreResult<String> {
    serde_json::to_string(k).map_err(corrupt)
}

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<(String, i64, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn audit_record(row: (String, i64, String, String, String)) -> StoreResult<AuditRecord> {
    let (chain, seq, prev_hash, hash, event) = row;
    let event: AuditEvent = serde_json::from_str(&event).map_err(corrupt)?;
    Ok(AuditRecord {
        chain,
        seq,
        prev_hash,
        hash,
        event,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
            .await
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_string();
        self.with(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(db)
        })
        .await
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn list_providers(&self, tenant: &str) -> StoreResult<Vec<Provider>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let mut st = c
                .prepare("SELECT body FROM providers WHERE tenant = ?1 ORDER BY id")
                .map_err(db)?;
            let bodies = st
                .query_map([tenant], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            bodies
                .iter()
                .map(|b| serde_json::from_str(b).map_err(corrupt))
                .collect()
        })
        .await
    }

    async fn put_provider(&self, tenant: &str, provider: &Provider) -> StoreResult<()> {
        let tenant = tenant.to_string();
        let id = provider.id.clone();
        let body = serde_json::to_string(provider).map_err(corrupt)?;
        self.with(move |c| {
            c.execute(
                "INSERT INTO providers (tenant, id, body) VALUES (?1, ?2, ?3) ON CONFLICT(tenant, id) DO UPDATE SET body = excluded.body",
                [tenant, id, body],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn delete_provider(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.with(move |c| {
            c.execute(
                "DELETE FROM providers WHERE tenant = ?1 AND id = ?2",
                [tenant, id],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn insert_credential(&self, cred: &Credential, sealed: &Sealed) -> StoreResult<()> {
        let cred = cred.clone();
        let sealed = sealed.clone();
        let workloads = serde_json::to_string(&cred.workloads).map_err(corrupt)?;
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                &format!("INSERT INTO credentials ({CRED_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    cred.id,
                    cred.tenant,
                    cred.provider,
                    cred.label,
                    workloads,
                    cred.version,
                    ts(&cred.created_at)
                ],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO credential_versions (credential_id, version, state, ciphertext, nonce, wrapped_key, key_nonce, created_at) VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6, ?7)",
                params![
                    cred.id,
                    cred.version,
                    sealed.ciphertext,
                    sealed.nonce,
                    sealed.wrapped_key,
                    sealed.key_nonce,
                    ts(&cred.created_at)
                ],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn list_credentials(&self, tenant: &str) -> StoreResult<Vec<Credential>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {CRED_COLS} FROM credentials WHERE tenant = ?1 ORDER BY created_at, id"
                ))
                .map_err(db)?;
            let rows = st
                .query_map([tenant], credential_from_row)
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter().map(credential).collect()
        })
        .await
    }

    async fn get_credential(&self, tenant: &str, id: &str) -> StoreResult<Option<Credential>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {CRED_COLS} FROM credentials WHERE tenant = ?1 AND id = ?2"),
                [tenant, id],
                credential_from_row,
            )
            .optional()
            .map_err(db)?
            .map(credential)
            .transpose()
        })
        .await
    }

    async fn delete_credential(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                "DELETE FROM credential_versions WHERE credential_id IN (SELECT id FROM credentials WHERE tenant = ?1 AND id = ?2)",
                [&tenant, &id],
            )
            .map_err(db)?;
            let n = tx
                .execute("DELETE FROM credentials WHERE tenant = ?1 AND id = ?2", [&tenant, &id])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn active_credential(
        &self,
        tenant: &str,
        provider: &str,
        workload: Option<&str>,
    ) -> StoreResult<Option<(Credential, Sealed)>> {
        let (tenant, provider) = (tenant.to_string(), provider.to_string());
        let workload = workload.map(str::to_string);
        self.with(move |c| {
            let mut st = c
                .prepare(
                    "SELECT c.id, c.tenant, c.provider, c.label, c.workloads, c.version, c.created_at,
                            v.ciphertext, v.nonce, v.wrapped_key, v.key_nonce
                     FROM credentials c JOIN credential_versions v
                       ON v.credential_id = c.id AND v.version = c.version AND v.state = 'active'
                     WHERE c.tenant = ?1 AND c.provider = ?2
                     ORDER BY c.created_at DESC, c.id DESC",
                )
                .map_err(db)?;
            let mut rows = st.query([tenant, provider]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let cred = credential(credential_from_row(r).map_err(db)?)?;
                let serves = match &workload {
                    None => true,
                    Some(w) => cred.workloads.iter().any(|x| x == w),
                };
                if serves {
                    let sealed = Sealed {
                        ciphertext: r.get(7).map_err(db)?,
                        nonce: r.get(8).map_err(db)?,
                        wrapped_key: r.get(9).map_err(db)?,
                        key_nonce: r.get(10).map_err(db)?,
                    };
                    return Ok(Some((cred, sealed)));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let (id, tenant, hash, body) = (
            key.id.clone(),
            key.tenant.clone(),
            key.hash.clone(),
            key_body(key)?,
        );
        self.with(move |c| {
            c.execute(
                "INSERT INTO keys (id, tenant, hash, body) VALUES (?1, ?2, ?3, ?4)",
                [id, tenant, hash, body],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn key_by_hash(&self, hash: &str) -> StoreResult<Option<KeyRecord>> {
        let hash = hash.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT body, hash FROM keys WHERE hash = ?1",
                [hash],
                key_from_row,
            )
            .optional()
            .map_err(db)?
            .map(key_from_body)
            .transpose()
        })
        .await
    }

    async fn get_key(&self, tenant: &str, id: &str) -> StoreResult<Option<KeyRecord>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.with(move |c| {
            c.query_row(
                "SELECT body, hash FROM keys WHERE tenant = ?1 AND id = ?2",
                [tenant, id],
                key_from_row,
            )
            .optional()
            .map_err(db)?
            .map(key_from_body)
            .transpose()
        })
        .await
    }

    async fn list_keys(&self, tenant: &str) -> StoreResult<Vec<KeyRecord>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let mut st = c
                .prepare("SELECT body, hash FROM keys WHERE tenant = ?1 ORDER BY rowid")
                .map_err(db)?;
            let bodies = st
                .query_map([tenant], key_from_row)
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            bodies.into_iter().map(key_from_body).collect()
        })
        .await
    }

    async fn update_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let (id, tenant, body) = (key.id.clone(), key.tenant.clone(), key_body(key)?);
        self.with(move |c| {
            c.execute(
                "UPDATE keys SET body = ?1 WHERE tenant = ?2 AND id = ?3",
                params![body, tenant, id],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn insert_admin_token(&self, token: &AdminToken) -> StoreResult<()> {
        let t = token.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO admin_tokens (id, tenant, name, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.id, t.tenant, t.name, t.hash, ts(&t.created_at)],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn admin_token_by_hash(&self, hash: &str) -> StoreResult<Option<AdminToken>> {
        let hash = hash.to_string();
        self.with(move |c| {
            let row = c
                .query_row(
                    "SELECT id, tenant, name, hash, created_at FROM admin_tokens WHERE hash = ?1",
                    [hash],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    },
                )
                .optional()
                .map_err(db)?;
            row.map(|(id, tenant, name, hash, created)| {
                Ok(AdminToken {
                    id,
                    tenant,
                    name,
                    hash,
                    created_at: parse_ts(&created)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn audit_head(&self, chain: &str) -> StoreResult<ChainHead> {
        let chain = chain.to_string();
        self.with(move |c| {
            let head = c
                .query_row(
                    "SELECT seq, hash FROM audit WHERE chain = ?1 ORDER BY seq DESC LIMIT 1",
                    [chain],
                    |r| {
                        Ok(ChainHead {
                            seq: r.get(0)?,
                            hash: r.get(1)?,
                        })
                    },
                )
                .optional()
                .map_err(db)?;
            Ok(head.unwrap_or_else(ChainHead::empty))
        })
        .await
    }

    async fn append_audit(&self, rows: &[AuditRecord]) -> StoreResult<()> {
        let rows = rows.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            {
                let mut st = tx
                    .prepare(
                        "INSERT INTO audit (chain, seq, prev_hash, hash, tenant, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(db)?;
                for r in &rows {
                    let event = serde_json::to_string(&r.event).map_err(corrupt)?;
                    st.execute(params![r.chain, r.seq, r.prev_hash, r.hash, r.event.tenant, event])
                        .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn audit_chains(&self) -> StoreResult<Vec<String>> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT DISTINCT chain FROM audit ORDER BY chain")
                .map_err(db)?;
            let chains = st
                .query_map([], |r| r.get(0))
                .map_err(db)?
                .collect::<Result<Vec<String>, _>>()
                .map_err(db)?;
            Ok(chains)
        })
        .await
    }

    async fn audit_rows(
        &self,
        chain: &str,
        after_seq: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>> {
        let chain = chain.to_string();
        // Stored order is rowid order: a reordering attack that swaps seq values shows up as a
        // sequence break because we do not sort by the (attacker-controlled) seq column.
        self.with(move |c| {
            let mut st = c
                .prepare(
                    "SELECT chain, seq, prev_hash, hash, event FROM audit WHERE chain = ?1 AND rowid > COALESCE((SELECT rowid FROM audit WHERE chain = ?1 AND seq = ?2), 0) ORDER BY rowid LIMIT ?3",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![chain, after_seq, limit], audit_from_row)
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter().map(audit_record).collect()
        })
        .await
    }

    async fn recent_audit(&self, tenant: &str, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let mut st = c
                .prepare(
                    "SELECT chain, seq, prev_hash, hash, event FROM audit WHERE tenant = ?1 ORDER BY rowid DESC LIMIT ?2",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![tenant, limit], audit_from_row)
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter().map(audit_record).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use crate::envelope::{seal, Binding};
    use crate::model::KeyStatus;
    use crate::rootkey::RootKey;
    use crate::SecretString;

    fn cred(id: &str, workloads: &[&str]) -> Credential {
        Credential {
            id: id.into(),
            tenant: "default".into(),
            provider: "openai".into(),
            label: "l".into(),
            workloads: workloads.iter().map(|s| s.to_string()).collect(),
            version: 1,
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn credentials_select_by_workload_and_delete() {
        let s = SqliteStore::in_memory().unwrap();
        let root = RootKey::from_bytes([3; 32]);
        let b = Binding {
            tenant: "default",
            credential: "cred_a",
            version: 1,
        };
        let sealed = seal(&root, &b, &SecretString::new("sk-a".into()));
        s.insert_credential(&cred("cred_a", &["production"]), &sealed)
            .await
            .unwrap();
        let (c, got) = s
            .active_credential("default", "openai", Some("production"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.id, "cred_a");
        assert_eq!(got, sealed);
        assert!(s
            .active_credential("default", "openai", Some("ci"))
            .await
            .unwrap()
            .is_none());
        assert!(s
            .active_credential("default", "anthropic", None)
            .await
            .unwrap()
            .is_none());
        assert!(s.delete_credential("default", "cred_a").await.unwrap());
        assert!(s
            .active_credential("default", "openai", None)
            .await
            .unwrap()
            .is_none());
        assert!(!s.delete_credential("default", "cred_a").await.unwrap());
    }

    #[tokio::test]
    async fn keys_round_trip_and_update() {
        let s = SqliteStore::in_memory().unwrap();
        let mut k = KeyRecord {
            id: "key_1".into(),
            tenant: "default".into(),
            name: "agent".into(),
            hash: "abc".into(),
            prefix: "lk_x…".into(),
            providers: vec!["openai".into()],
            workload: None,
            models: vec![],
            expires_at: None,
            status: KeyStatus::Active,
            created_at: Utc::now(),
            revoked_at: None,
        };
        s.insert_key(&k).await.unwrap();
        assert_eq!(s.key_by_hash("abc").await.unwrap().unwrap().id, "key_1");
        k.status = KeyStatus::Revoked;
        s.update_key(&k).await.unwrap();
        assert_eq!(
            s.get_key("default", "key_1").await.unwrap().unwrap().status,
            KeyStatus::Revoked
        );
        assert!(matches!(
            s.insert_key(&k).await,
            Err(StoreError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn audit_append_and_read_back_verifies() {
        let s = SqliteStore::in_memory().unwrap();
        let mut head = s.audit_head("main").await.unwrap();
        let rows: Vec<_> = (0..3)
            .map(|i| {
                head.append(
                    "main",
                    AuditEvent::now("default", "system", "t", &i.to_string(), "ok"),
                )
            })
            .collect();
        s.append_audit(&rows).await.unwrap();
        assert_eq!(s.audit_head("main").await.unwrap(), head);
        let back = s.audit_rows("main", 0, 100).await.unwrap();
        assert_eq!(back, rows);
        assert!(crate::audit::verify("main", &back).ok);
        assert_eq!(s.audit_rows("main", 2, 100).await.unwrap().len(), 1);
        assert_eq!(s.audit_chains().await.unwrap(), vec!["main".to_string()]);
    }
}
