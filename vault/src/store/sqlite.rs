//! The embedded store: one SQLite file in WAL mode.
//!
//! rusqlite is synchronous, so every call runs on tokio's blocking pool. The hot path never
//! waits on it: the gateway reads through in-process caches.

use super::{Store, StoreError, StoreResult};
use crate::audit::{AuditEvent, AuditRecord, ChainHead};
use crate::envelope::Sealed;
use crate::model::{
    AdminToken, Credential, Incident, KeyRecord, KeyStatus, LockdownEntry, ModelEntry,
    PolicyRecord, Provider, ScopeLimits,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::{Arc, Mutex};

const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // 2: key locks. The auto-bind address and the sealed signing secret get columns of their
    // own (a compare-and-set on bound_ip; the secret never enters the JSON body). Lockdown
    // switches use '' for "every provider" so (tenant, provider) can be a primary key.
    r#"
ALTER TABLE keys ADD COLUMN bound_ip TEXT;
ALTER TABLE keys ADD COLUMN signing_ciphertext BLOB;
ALTER TABLE keys ADD COLUMN signing_nonce BLOB;
ALTER TABLE keys ADD COLUMN signing_wrapped_key BLOB;
ALTER TABLE keys ADD COLUMN signing_key_nonce BLOB;
CREATE TABLE lockdowns (
    tenant TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT '',
    reason TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (tenant, provider)
);
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(id),
    key_id TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at TEXT NOT NULL,
    resolved_at TEXT
);
CREATE INDEX incidents_by_tenant ON incidents (tenant);
"#,
    // 3: policies and limits. Documents and limits are JSON bodies like providers; a key names
    // its policy inside its own JSON body, the tenant default is a column of the tenant.
    r#"
CREATE TABLE policies (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE scope_limits (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    scope TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, scope)
);
ALTER TABLE tenants ADD COLUMN default_policy TEXT;
"#,
    // 4: the model registry of the OpenAI-compatible `/v1` endpoint.
    r#"
CREATE TABLE models (
    tenant TEXT NOT NULL REFERENCES tenants(id),
    alias TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, alias)
);
"#,
];

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

/// The JSON `body` column of every row a `SELECT body … WHERE tenant = ?1` query returns,
/// decoded.
fn json_bodies<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    tenant: &str,
) -> StoreResult<Vec<T>> {
    let mut st = c.prepare(sql).map_err(db)?;
    let bodies = st
        .query_map([tenant], |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).map_err(corrupt))
        .collect()
}

const CRED_COLS: &str = "id, tenant, provider, label, workloads, version, created_at";

/// Key records are stored as JSON beside their indexed hash, so new key fields (locks, limits)
/// need no schema change. The hash, the auto-bind address and the sealed signing secret live
/// only in their own columns.
const KEY_COLS: &str = "body, hash, bound_ip, signing_ciphertext, signing_nonce, signing_wrapped_key, signing_key_nonce";

struct KeyRow {
    body: String,
    hash: String,
    bound_ip: Option<String>,
    signing: [Option<Vec<u8>>; 4],
}

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        body: r.get(0)?,
        hash: r.get(1)?,
        bound_ip: r.get(2)?,
        signing: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
    })
}

fn key_from_body(row: KeyRow) -> StoreResult<KeyRecord> {
    let mut rec: KeyRecord = serde_json::from_str(&row.body).map_err(corrupt)?;
    rec.hash = row.hash;
    rec.bound_ip = row.bound_ip;
    rec.signing = match row.signing {
        [Some(ciphertext), Some(nonce), Some(wrapped_key), Some(key_nonce)] => Some(Sealed {
            ciphertext,
            nonce,
            wrapped_key,
            key_nonce,
        }),
        [None, None, None, None] => None,
        _ => return Err(corrupt("key row has a partial signing secret")),
    };
    Ok(rec)
}

fn key_body(k: &KeyRecord) -> StoreResult<String> {
    let mut v = serde_json::to_value(k).map_err(corrupt)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("bound_ip");
    }
    serde_json::to_string(&v).map_err(corrupt)
}

/// The four signing columns of a key (all NULL when it has no secret).
fn signing_cols(k: &KeyRecord) -> [Option<Vec<u8>>; 4] {
    match &k.signing {
        Some(s) => [
            Some(s.ciphertext.clone()),
            Some(s.nonce.clone()),
            Some(s.wrapped_key.clone()),
            Some(s.key_nonce.clone()),
        ],
        None => [None, None, None, None],
    }
}

fn get_key_tx(c: &Connection, tenant: &str, id: &str) -> StoreResult<Option<KeyRecord>> {
    c.query_row(
        &format!("SELECT {KEY_COLS} FROM keys WHERE tenant = ?1 AND id = ?2"),
        [tenant, id],
        key_from_row,
    )
    .optional()
    .map_err(db)?
    .map(key_from_body)
    .transpose()
}

fn opt_ts(s: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

type IncidentRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
);

fn incident_from_row(r: &Row<'_>) -> rusqlite::Result<IncidentRow> {
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

fn incident(row: IncidentRow) -> StoreResult<Incident> {
    let (id, tenant, key_id, kind, detail, created_at, resolved_at) = row;
    Ok(Incident {
        id,
        tenant,
        key_id,
        kind,
        detail,
        created_at: parse_ts(&created_at)?,
        resolved_at: opt_ts(resolved_at)?,
    })
}

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<(String, i64, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn audit_record(row: (String, i64, String, String, String)) -> StoreResult<AuditRecord> {
    let (chain, seq, prev_hash, hash, event_json) = row;
    let event: AuditEvent = serde_json::from_str(&event_json).map_err(corrupt)?;
    Ok(AuditRecord {
        chain,
        seq,
        prev_hash,
        hash,
        event,
        event_json,
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
            json_bodies(
                c,
                "SELECT body FROM providers WHERE tenant = ?1 ORDER BY id",
                &tenant,
            )
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
        let bound_ip = key.bound_ip.clone();
        let [sc, sn, sw, sk] = signing_cols(key);
        self.with(move |c| {
            c.execute(
                "INSERT INTO keys (id, tenant, hash, body, bound_ip, signing_ciphertext, signing_nonce, signing_wrapped_key, signing_key_nonce) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![id, tenant, hash, body, bound_ip, sc, sn, sw, sk],
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
                &format!("SELECT {KEY_COLS} FROM keys WHERE hash = ?1"),
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
        self.with(move |c| get_key_tx(c, &tenant, &id)).await
    }

    async fn list_keys(&self, tenant: &str) -> StoreResult<Vec<KeyRecord>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {KEY_COLS} FROM keys WHERE tenant = ?1 ORDER BY rowid"
                ))
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
        let key = key.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            let Some(current) = get_key_tx(&tx, &key.tenant, &key.id)? else {
                return Ok(());
            };
            // Fields owned by their own calls are kept as stored.
            let mut next = key;
            next.status = current.status;
            next.revoked_at = current.revoked_at;
            next.suspended_reason = current.suspended_reason;
            let body = key_body(&next)?;
            let [sc, sn, sw, sk] = signing_cols(&next);
            tx.execute(
                "UPDATE keys SET body = ?1, signing_ciphertext = ?2, signing_nonce = ?3, signing_wrapped_key = ?4, signing_key_nonce = ?5 WHERE tenant = ?6 AND id = ?7",
                params![body, sc, sn, sw, sk, next.tenant, next.id],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn bind_key_ip(&self, tenant: &str, id: &str, ip: &str) -> StoreResult<Option<String>> {
        let (tenant, id, ip) = (tenant.to_string(), id.to_string(), ip.to_string());
        self.with(move |c| {
            // One statement is the compare-and-set; the read after it sees the winner.
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                "UPDATE keys SET bound_ip = ?3 WHERE tenant = ?1 AND id = ?2 AND bound_ip IS NULL",
                params![tenant, id, ip],
            )
            .map_err(db)?;
            let bound: Option<Option<String>> = tx
                .query_row(
                    "SELECT bound_ip FROM keys WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(bound.flatten())
        })
        .await
    }

    async fn set_key_bound_ip(
        &self,
        tenant: &str,
        id: &str,
        ip: Option<&str>,
    ) -> StoreResult<Option<KeyRecord>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let ip = ip.map(str::to_string);
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            let n = tx
                .execute(
                    "UPDATE keys SET bound_ip = ?3 WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id, ip],
                )
                .map_err(db)?;
            let rec = if n == 0 {
                None
            } else {
                get_key_tx(&tx, &tenant, &id)?
            };
            tx.commit().map_err(db)?;
            Ok(rec)
        })
        .await
    }

    async fn set_key_status(
        &self,
        tenant: &str,
        id: &str,
        status: KeyStatus,
        reason: Option<&str>,
    ) -> StoreResult<Option<KeyRecord>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let reason = reason.map(str::to_string);
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            let Some(mut rec) = get_key_tx(&tx, &tenant, &id)? else {
                return Ok(None);
            };
            let now = Utc::now();
            match (rec.status, status) {
                (KeyStatus::Revoked, KeyStatus::Revoked) => return Ok(Some(rec)),
                (KeyStatus::Revoked, _) => {
                    return Err(StoreError::Conflict(format!(
                        "key {id} is revoked; a revoked key cannot be reinstated or suspended"
                    )))
                }
                (_, KeyStatus::Revoked) => rec.revoked_at = Some(now),
                (_, KeyStatus::Suspended) => rec.suspended_reason = reason,
                (_, KeyStatus::Active) => rec.suspended_reason = None,
            }
            rec.status = status;
            rec.updated_at = Some(now);
            tx.execute(
                "UPDATE keys SET body = ?1 WHERE tenant = ?2 AND id = ?3",
                params![key_body(&rec)?, tenant, id],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(rec))
        })
        .await
    }

    async fn list_lockdowns(&self) -> StoreResult<Vec<LockdownEntry>> {
        self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT tenant, provider, reason, created_at, created_by FROM lockdowns ORDER BY tenant, provider",
                )
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(tenant, provider, reason, created_at, created_by)| {
                    Ok(LockdownEntry {
                        tenant,
                        provider: (!provider.is_empty()).then_some(provider),
                        reason,
                        created_at: parse_ts(&created_at)?,
                        created_by,
                    })
                })
                .collect()
        })
        .await
    }

    async fn set_lockdown(&self, entry: &LockdownEntry) -> StoreResult<()> {
        let e = entry.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO lockdowns (tenant, provider, reason, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(tenant, provider) DO UPDATE SET reason = excluded.reason, created_by = excluded.created_by",
                params![
                    e.tenant,
                    e.provider.unwrap_or_default(),
                    e.reason,
                    ts(&e.created_at),
                    e.created_by
                ],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn clear_lockdown(&self, tenant: &str, provider: Option<&str>) -> StoreResult<bool> {
        let tenant = tenant.to_string();
        let provider = provider.unwrap_or_default().to_string();
        self.with(move |c| {
            c.execute(
                "DELETE FROM lockdowns WHERE tenant = ?1 AND provider = ?2",
                [tenant, provider],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn insert_incident(&self, incident: &Incident) -> StoreResult<()> {
        let i = incident.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO incidents (id, tenant, key_id, kind, detail, created_at, resolved_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    i.id,
                    i.tenant,
                    i.key_id,
                    i.kind,
                    i.detail,
                    ts(&i.created_at),
                    i.resolved_at.as_ref().map(ts)
                ],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn list_incidents(&self, tenant: &str, limit: i64) -> StoreResult<Vec<Incident>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let mut st = c
                .prepare(
                    "SELECT id, tenant, key_id, kind, detail, created_at, resolved_at FROM incidents WHERE tenant = ?1 ORDER BY rowid DESC LIMIT ?2",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![tenant, limit], incident_from_row)
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            rows.into_iter().map(incident).collect()
        })
        .await
    }

    async fn resolve_incident(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let now = ts(&Utc::now());
        self.with(move |c| {
            c.execute(
                "UPDATE incidents SET resolved_at = COALESCE(resolved_at, ?3) WHERE tenant = ?1 AND id = ?2",
                params![tenant, id, now],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn list_policies(&self, tenant: &str) -> StoreResult<Vec<PolicyRecord>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            json_bodies(
                c,
                "SELECT body FROM policies WHERE tenant = ?1 ORDER BY name",
                &tenant,
            )
        })
        .await
    }

    async fn get_policy(&self, tenant: &str, name: &str) -> StoreResult<Option<PolicyRecord>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with(move |c| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM policies WHERE tenant = ?1 AND name = ?2",
                    [tenant, name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            body.map(|b| serde_json::from_str(&b).map_err(corrupt))
                .transpose()
        })
        .await
    }

    async fn put_policy(&self, policy: &PolicyRecord) -> StoreResult<()> {
        let (tenant, name) = (policy.tenant.clone(), policy.name.clone());
        let body = serde_json::to_string(policy).map_err(corrupt)?;
        self.with(move |c| {
            c.execute(
                "INSERT INTO policies (tenant, name, body) VALUES (?1, ?2, ?3) ON CONFLICT(tenant, name) DO UPDATE SET body = excluded.body",
                [tenant, name, body],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn delete_policy(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            let default: Option<String> = tx
                .query_row(
                    "SELECT default_policy FROM tenants WHERE id = ?1",
                    [&tenant],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .flatten();
            if default.as_deref() == Some(name.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "policy {name:?} is the tenant's default policy"
                )));
            }
            let users: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM keys WHERE tenant = ?1 AND json_extract(body, '$.policy') = ?2 AND json_extract(body, '$.status') != 'revoked'",
                    [&tenant, &name],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if users > 0 {
                return Err(StoreError::Conflict(format!(
                    "policy {name:?} is attached to {users} key(s)"
                )));
            }
            let n = tx
                .execute(
                    "DELETE FROM policies WHERE tenant = ?1 AND name = ?2",
                    [&tenant, &name],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn tenant_policy(&self, tenant: &str) -> StoreResult<Option<String>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT default_policy FROM tenants WHERE id = ?1",
                [tenant],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(db)
        })
        .await
    }

    async fn set_tenant_policy(&self, tenant: &str, name: Option<&str>) -> StoreResult<()> {
        let tenant = tenant.to_string();
        let name = name.map(str::to_string);
        self.with(move |c| {
            c.execute(
                "UPDATE tenants SET default_policy = ?2 WHERE id = ?1",
                params![tenant, name],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn list_scope_limits(&self, tenant: &str) -> StoreResult<Vec<ScopeLimits>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            json_bodies(
                c,
                "SELECT body FROM scope_limits WHERE tenant = ?1 ORDER BY scope",
                &tenant,
            )
        })
        .await
    }

    async fn put_scope_limits(&self, limits: &ScopeLimits) -> StoreResult<()> {
        let (tenant, scope) = (limits.tenant.clone(), limits.scope.clone());
        let body = serde_json::to_string(limits).map_err(corrupt)?;
        self.with(move |c| {
            c.execute(
                "INSERT INTO scope_limits (tenant, scope, body) VALUES (?1, ?2, ?3) ON CONFLICT(tenant, scope) DO UPDATE SET body = excluded.body",
                [tenant, scope, body],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn delete_scope_limits(&self, tenant: &str, scope: &str) -> StoreResult<bool> {
        let (tenant, scope) = (tenant.to_string(), scope.to_string());
        self.with(move |c| {
            c.execute(
                "DELETE FROM scope_limits WHERE tenant = ?1 AND scope = ?2",
                [tenant, scope],
            )
            .map(|n| n > 0)
            .map_err(db)
        })
        .await
    }

    async fn list_models(&self, tenant: &str) -> StoreResult<Vec<ModelEntry>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            json_bodies(
                c,
                "SELECT body FROM models WHERE tenant = ?1 ORDER BY alias",
                &tenant,
            )
        })
        .await
    }

    async fn put_model(&self, entry: &ModelEntry) -> StoreResult<()> {
        let (tenant, alias) = (entry.tenant.clone(), entry.alias.clone());
        let body = serde_json::to_string(entry).map_err(corrupt)?;
        self.with(move |c| {
            c.execute(
                "INSERT INTO models (tenant, alias, body) VALUES (?1, ?2, ?3) ON CONFLICT(tenant, alias) DO UPDATE SET body = excluded.body",
                [tenant, alias, body],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
    }

    async fn delete_model(&self, tenant: &str, alias: &str) -> StoreResult<bool> {
        let (tenant, alias) = (tenant.to_string(), alias.to_string());
        self.with(move |c| {
            c.execute(
                "DELETE FROM models WHERE tenant = ?1 AND alias = ?2",
                [tenant, alias],
            )
            .map(|n| n > 0)
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
                    .prepare_cached(
                        "INSERT INTO audit (chain, seq, prev_hash, hash, tenant, event) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(db)?;
                for r in &rows {
                    let owned;
                    let event = if r.event_json.is_empty() {
                        owned = serde_json::to_string(&r.event).map_err(corrupt)?;
                        &owned
                    } else {
                        &r.event_json
                    };
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

    fn key(id: &str, hash: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            tenant: "default".into(),
            name: "agent".into(),
            hash: hash.into(),
            prefix: "lk_x…".into(),
            providers: vec!["openai".into()],
            workload: None,
            models: vec![],
            expires_at: None,
            status: KeyStatus::Active,
            created_at: Utc::now(),
            revoked_at: None,
            locks: serde_json::Value::Null,
            bound_ip: None,
            signing: None,
            suspended_reason: None,
            updated_at: None,
            policy: None,
            limits: serde_json::Value::Null,
        }
    }

    fn policy(name: &str, doc: &str) -> PolicyRecord {
        PolicyRecord {
            tenant: "default".into(),
            name: name.into(),
            document: doc.into(),
            fingerprint: "f".repeat(64),
            mode: "enforce".into(),
            rules: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            updated_by: "admin:adm_x".into(),
        }
    }

    #[tokio::test]
    async fn policies_upsert_attach_and_refuse_deleting_one_in_use() {
        let s = SqliteStore::in_memory().unwrap();
        s.put_policy(&policy("agents", "v1")).await.unwrap();
        s.put_policy(&policy("agents", "v2")).await.unwrap();
        s.put_policy(&policy("ci", "c")).await.unwrap();
        let all = s.list_policies("default").await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "agents");
        assert_eq!(all[0].document, "v2");
        assert!(s.get_policy("other", "agents").await.unwrap().is_none());

        // Attached to a key: deleting it is a conflict and changes nothing.
        let mut k = key("key_p", "hp");
        k.policy = Some("agents".into());
        s.insert_key(&k).await.unwrap();
        assert!(matches!(
            s.delete_policy("default", "agents").await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.key_by_hash("hp")
                .await
                .unwrap()
                .unwrap()
                .policy
                .as_deref(),
            Some("agents")
        );

        // The tenant default: same protection.
        assert_eq!(s.tenant_policy("default").await.unwrap(), None);
        s.set_tenant_policy("default", Some("ci")).await.unwrap();
        assert_eq!(
            s.tenant_policy("default").await.unwrap().as_deref(),
            Some("ci")
        );
        assert!(matches!(
            s.delete_policy("default", "ci").await,
            Err(StoreError::Conflict(_))
        ));
        s.set_tenant_policy("default", None).await.unwrap();
        assert!(s.delete_policy("default", "ci").await.unwrap());
        assert!(!s.delete_policy("default", "ci").await.unwrap());
        assert!(s.get_policy("default", "agents").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn model_registry_round_trip() {
        let s = SqliteStore::in_memory().unwrap();
        let mut e = ModelEntry {
            tenant: "default".into(),
            alias: "fast".into(),
            provider: "groq".into(),
            model: "llama-3.1-8b-instant".into(),
            updated_at: Utc::now(),
        };
        s.put_model(&e).await.unwrap();
        e.model = "llama-3.3-70b-versatile".into();
        s.put_model(&e).await.unwrap();
        assert_eq!(s.list_models("default").await.unwrap(), vec![e]);
        assert!(s.list_models("other").await.unwrap().is_empty());
        assert!(s.delete_model("default", "fast").await.unwrap());
        assert!(!s.delete_model("default", "fast").await.unwrap());
    }

    #[tokio::test]
    async fn scope_limits_round_trip() {
        let s = SqliteStore::in_memory().unwrap();
        let mut l = ScopeLimits {
            tenant: "default".into(),
            scope: "workload:ci".into(),
            limits: serde_json::json!({"rpm": 10}),
            updated_at: Utc::now(),
        };
        s.put_scope_limits(&l).await.unwrap();
        l.limits = serde_json::json!({"rpm": 20});
        s.put_scope_limits(&l).await.unwrap();
        let all = s.list_scope_limits("default").await.unwrap();
        assert_eq!(all, vec![l]);
        assert!(s
            .delete_scope_limits("default", "workload:ci")
            .await
            .unwrap());
        assert!(!s
            .delete_scope_limits("default", "workload:ci")
            .await
            .unwrap());
        assert!(s.list_scope_limits("default").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn keys_round_trip_and_update() {
        let s = SqliteStore::in_memory().unwrap();
        let mut k = key("key_1", "abc");
        s.insert_key(&k).await.unwrap();
        assert_eq!(s.key_by_hash("abc").await.unwrap().unwrap(), k);
        k.name = "renamed".into();
        k.locks = serde_json::json!({"signed": false, "device_hash": "ab"});
        s.update_key(&k).await.unwrap();
        assert_eq!(s.get_key("default", "key_1").await.unwrap().unwrap(), k);
        s.set_key_status("default", "key_1", KeyStatus::Revoked, None)
            .await
            .unwrap();
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
    async fn rows_written_before_the_locks_migration_still_load() {
        let s = SqliteStore::in_memory().unwrap();
        // The body exactly as the first release wrote it: no locks fields.
        let old = r#"{"id":"key_old","tenant":"default","name":"n","prefix":"lk_x…","providers":["*"],"workload":null,"models":[],"expires_at":null,"status":"active","created_at":"2024-01-01T00:00:00.000Z","revoked_at":null}"#;
        s.with(move |c| {
            c.execute(
                "INSERT INTO keys (id, tenant, hash, body) VALUES ('key_old', 'default', 'h_old', ?1)",
                [old],
            )
            .map(|_| ())
            .map_err(db)
        })
        .await
        .unwrap();
        let k = s.key_by_hash("h_old").await.unwrap().unwrap();
        assert_eq!(k.locks, serde_json::Value::Null);
        assert_eq!(k.bound_ip, None);
        assert_eq!(k.signing, None);
        assert_eq!(k.status, KeyStatus::Active);
    }

    #[tokio::test]
    async fn migrations_apply_once_and_upgrade_a_v1_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            // A database at user_version 1, as the first release left it.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch("PRAGMA user_version = 1").unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        s.insert_key(&key("key_1", "h1")).await.unwrap();
        assert_eq!(
            s.bind_key_ip("default", "key_1", "192.0.2.1")
                .await
                .unwrap(),
            Some("192.0.2.1".into())
        );
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        let v: i64 = s
            .with(|c| {
                c.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        assert_eq!(
            s.get_key("default", "key_1")
                .await
                .unwrap()
                .unwrap()
                .bound_ip,
            Some("192.0.2.1".into())
        );
    }

    #[tokio::test]
    async fn signing_secret_lives_in_its_own_columns_and_never_in_the_body() {
        let s = SqliteStore::in_memory().unwrap();
        let root = RootKey::from_bytes([5; 32]);
        let mut k = key("key_s", "hs");
        let b = Binding {
            tenant: "default",
            credential: "key_s",
            version: 0,
        };
        k.signing = Some(seal(&root, &b, &SecretString::new("lksig_abc".into())));
        s.insert_key(&k).await.unwrap();
        let back = s.key_by_hash("hs").await.unwrap().unwrap();
        assert_eq!(back.signing, k.signing);
        let opened = crate::envelope::open(&root, &b, back.signing.as_ref().unwrap()).unwrap();
        assert_eq!(opened.expose(), "lksig_abc");
        let body: String = s
            .with(|c| {
                c.query_row("SELECT body FROM keys WHERE id = 'key_s'", [], |r| r.get(0))
                    .map_err(db)
            })
            .await
            .unwrap();
        assert!(!body.contains("signing"), "{body}");
        assert!(!body.contains("bound_ip"), "{body}");
        // update_key with signing None removes the secret.
        let mut off = back.clone();
        off.signing = None;
        s.update_key(&off).await.unwrap();
        assert_eq!(
            s.get_key("default", "key_s")
                .await
                .unwrap()
                .unwrap()
                .signing,
            None
        );
        // …and a record as loaded keeps it.
        s.update_key(&back).await.unwrap();
        assert_eq!(
            s.get_key("default", "key_s")
                .await
                .unwrap()
                .unwrap()
                .signing,
            k.signing
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_auto_binds_leave_exactly_one_winner() {
        let s = Arc::new(SqliteStore::in_memory().unwrap());
        s.insert_key(&key("key_b", "hb")).await.unwrap();
        for round in 0..20 {
            s.set_key_bound_ip("default", "key_b", None).await.unwrap();
            let ips: Vec<String> = (0..8).map(|i| format!("198.51.100.{i}")).collect();
            let tasks: Vec<_> = ips
                .iter()
                .map(|ip| {
                    let (s, ip) = (s.clone(), ip.clone());
                    tokio::spawn(async move { s.bind_key_ip("default", "key_b", &ip).await })
                })
                .collect();
            let mut seen = Vec::new();
            for t in tasks {
                seen.push(t.await.unwrap().unwrap().unwrap());
            }
            let winner = seen[0].clone();
            assert!(seen.iter().all(|w| w == &winner), "round {round}: {seen:?}");
            assert!(ips.contains(&winner));
            assert_eq!(
                s.get_key("default", "key_b")
                    .await
                    .unwrap()
                    .unwrap()
                    .bound_ip,
                Some(winner)
            );
        }
        // Two calls with different addresses: the second sees the first's binding.
        s.set_key_bound_ip("default", "key_b", None).await.unwrap();
        let (a, b) = tokio::join!(
            s.bind_key_ip("default", "key_b", "203.0.113.1"),
            s.bind_key_ip("default", "key_b", "2001:db8::1")
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        assert_eq!(a, b);
        assert!(a == "203.0.113.1" || a == "2001:db8::1");
        assert_eq!(
            s.bind_key_ip("default", "nope", "203.0.113.1")
                .await
                .unwrap(),
            None
        );
        // An explicit lock overwrites; unbind clears.
        let r = s
            .set_key_bound_ip("default", "key_b", Some("192.0.2.7"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.bound_ip.as_deref(), Some("192.0.2.7"));
        assert!(s
            .set_key_bound_ip("default", "nope", None)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn update_key_never_undoes_a_binding_or_a_suspension() {
        let s = SqliteStore::in_memory().unwrap();
        s.insert_key(&key("key_r", "hr")).await.unwrap();
        // An admin loads the key…
        let mut stale = s.get_key("default", "key_r").await.unwrap().unwrap();
        // …meanwhile the gateway binds and suspends it…
        s.bind_key_ip("default", "key_r", "192.0.2.9")
            .await
            .unwrap();
        s.set_key_status("default", "key_r", KeyStatus::Suspended, Some("velocity"))
            .await
            .unwrap();
        // …and the admin writes the stale record back with a new name.
        stale.name = "new name".into();
        s.update_key(&stale).await.unwrap();
        let now = s.get_key("default", "key_r").await.unwrap().unwrap();
        assert_eq!(now.name, "new name");
        assert_eq!(now.bound_ip.as_deref(), Some("192.0.2.9"));
        assert_eq!(now.status, KeyStatus::Suspended);
        assert_eq!(now.suspended_reason.as_deref(), Some("velocity"));
    }

    #[tokio::test]
    async fn status_transitions_never_unrevoke() {
        let s = SqliteStore::in_memory().unwrap();
        s.insert_key(&key("key_t", "ht")).await.unwrap();
        let r = s
            .set_key_status("default", "key_t", KeyStatus::Suspended, Some("spike"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, KeyStatus::Suspended);
        assert_eq!(r.suspended_reason.as_deref(), Some("spike"));
        assert!(r.updated_at.is_some());
        // Suspending again updates the reason.
        let r = s
            .set_key_status("default", "key_t", KeyStatus::Suspended, Some("manual"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.suspended_reason.as_deref(), Some("manual"));
        let r = s
            .set_key_status("default", "key_t", KeyStatus::Active, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, KeyStatus::Active);
        assert_eq!(r.suspended_reason, None);
        let r = s
            .set_key_status("default", "key_t", KeyStatus::Revoked, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, KeyStatus::Revoked);
        let revoked_at = r.revoked_at.unwrap();
        for st in [KeyStatus::Active, KeyStatus::Suspended] {
            assert!(matches!(
                s.set_key_status("default", "key_t", st, None).await,
                Err(StoreError::Conflict(_))
            ));
        }
        // Revoking again is a no-op that keeps the first time.
        let r = s
            .set_key_status("default", "key_t", KeyStatus::Revoked, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.revoked_at, Some(revoked_at));
        assert_eq!(
            s.get_key("default", "key_t").await.unwrap().unwrap().status,
            KeyStatus::Revoked
        );
        assert!(s
            .set_key_status("default", "nope", KeyStatus::Active, None)
            .await
            .unwrap()
            .is_none());
        // Another tenant cannot touch it.
        assert!(s
            .set_key_status("other", "key_t", KeyStatus::Active, None)
            .await
            .unwrap()
            .is_none());
    }

    fn lockdown(tenant: &str, provider: Option<&str>, reason: &str) -> LockdownEntry {
        LockdownEntry {
            tenant: tenant.into(),
            provider: provider.map(str::to_string),
            reason: Some(reason.into()),
            created_at: Utc::now(),
            created_by: "admin:adm_1".into(),
        }
    }

    #[tokio::test]
    async fn lockdowns_upsert_and_clear_by_exact_scope() {
        let s = SqliteStore::in_memory().unwrap();
        assert!(s.list_lockdowns().await.unwrap().is_empty());
        let first = lockdown("*", None, "breach");
        s.set_lockdown(&first).await.unwrap();
        let mut again = lockdown("*", None, "still a breach");
        again.created_at = first.created_at + chrono::Duration::seconds(60);
        s.set_lockdown(&again).await.unwrap();
        s.set_lockdown(&lockdown("default", None, "t"))
            .await
            .unwrap();
        s.set_lockdown(&lockdown("default", Some("openai"), "p"))
            .await
            .unwrap();
        s.set_lockdown(&lockdown("default", Some("openai"), "p"))
            .await
            .unwrap();
        let all = s.list_lockdowns().await.unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        let global = all.iter().find(|e| e.tenant == "*").unwrap();
        assert_eq!(global.reason.as_deref(), Some("still a breach"));
        assert_eq!(global.provider, None);
        assert_eq!(ts(&global.created_at), ts(&first.created_at));
        assert!(all
            .iter()
            .any(|e| e.tenant == "default" && e.provider.as_deref() == Some("openai")));
        // Clearing the provider switch leaves the tenant-wide one.
        assert!(s.clear_lockdown("default", Some("openai")).await.unwrap());
        assert!(!s.clear_lockdown("default", Some("openai")).await.unwrap());
        assert!(!s
            .clear_lockdown("default", Some("anthropic"))
            .await
            .unwrap());
        let all = s.list_lockdowns().await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(s.clear_lockdown("default", None).await.unwrap());
        assert!(s.clear_lockdown("*", None).await.unwrap());
        assert!(s.list_lockdowns().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn incidents_list_newest_first_and_resolve() {
        let s = SqliteStore::in_memory().unwrap();
        let a = Incident::new("default", Some("key_1"), "velocity", r#"{"n":1}"#.into());
        let b = Incident::new("default", None, "manual", "{}".into());
        assert!(a.id.starts_with("inc_"));
        s.insert_incident(&a).await.unwrap();
        s.insert_incident(&b).await.unwrap();
        let list = s.list_incidents("default", 10).await.unwrap();
        assert_eq!(
            list.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            [b.id.as_str(), a.id.as_str()]
        );
        assert_eq!(list[1].key_id.as_deref(), Some("key_1"));
        assert_eq!(list[1].detail, r#"{"n":1}"#);
        assert_eq!(s.list_incidents("default", 1).await.unwrap().len(), 1);
        assert!(s.list_incidents("other", 10).await.unwrap().is_empty());
        assert!(s.resolve_incident("default", &a.id).await.unwrap());
        let first = s.list_incidents("default", 10).await.unwrap()[1]
            .resolved_at
            .unwrap();
        assert!(s.resolve_incident("default", &a.id).await.unwrap());
        assert_eq!(
            s.list_incidents("default", 10).await.unwrap()[1].resolved_at,
            Some(first)
        );
        assert!(!s.resolve_incident("default", "inc_nope").await.unwrap());
        assert!(!s.resolve_incident("other", &a.id).await.unwrap());
        assert!(s.list_incidents("default", 10).await.unwrap()[0]
            .resolved_at
            .is_none());
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
