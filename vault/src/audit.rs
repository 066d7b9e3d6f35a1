//! Audit events and their SHA-256 hash chain.
//!
//! Each stored row carries `prev_hash` (the hash of the row before it in the same chain, or 64
//! zeros for the first) and `hash = SHA-256(canonical JSON of every other field)`. Editing a
//! row breaks its own hash; deleting or reordering rows breaks the `seq`/`prev_hash` links.
//! [`verify`] walks a chain and names the first broken link.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first row of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is placed in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditEvent {
    /// RFC 3339 time with milliseconds, UTC.
    pub ts: String,
    /// Tenant.
    pub tenant: String,
    /// Who: `key:key_…`, `admin:adm_…`, `system`.
    pub actor: String,
    /// What: `proxy.request`, `key.create`, `credential.create`, …
    pub action: String,
    /// On what: a key id, credential id, provider id or path.
    pub target: String,
    /// `allow`, `deny:<code>`, `ok`, `error`.
    pub decision: String,
    /// Provider namespace, when there is one.
    pub provider: Option<String>,
    /// HTTP status returned to the client.
    pub status: Option<i64>,
    /// Total latency in milliseconds.
    pub latency_ms: Option<i64>,
    /// Request id, when the event comes from a request.
    pub request_id: Option<String>,
    /// Extra non-secret detail (JSON object as text).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// A new event stamped with the current time.
    pub fn now(tenant: &str, actor: &str, action: &str, target: &str, decision: &str) -> Self {
        AuditEvent {
            ts: now_rfc3339(),
            tenant: tenant.into(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            decision: decision.into(),
            ..Default::default()
        }
    }
}

/// Current UTC time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where events go: implementations must not block (the gateway calls this on the hot path).
pub trait AuditSink: Send + Sync {
    /// Queues an event for the chain.
    fn record(&self, event: AuditEvent);

    /// Events queued and not yet stored (for metrics), if the sink keeps a queue.
    fn queue_depth(&self) -> Option<u64> {
        None
    }

    /// How long the oldest event of the last stored batch waited, in seconds (for metrics).
    fn lag_seconds(&self) -> Option<f64> {
        None
    }
}

/// A stored, chained audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Chain id (the node id in a fleet; `main` on a single node).
    pub chain: String,
    /// 1-based position in the chain.
    pub seq: i64,
    /// Hash of the previous row.
    pub prev_hash: String,
    /// Hash of this row.
    pub hash: String,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The event's JSON as hashed by [`ChainHead::append`], kept so the writer stores the very
    /// bytes it hashed without serializing twice. Rows read back carry the stored text; verification never trusts
    /// it and re-serializes `event`.
    #[serde(skip)]
    pub event_json: String,
}

#[derive(Serialize)]
struct Canonical<'a> {
    chain: &'a str,
    seq: i64,
    prev_hash: &'a str,
    event: &'a AuditEvent,
}

/// The hash of a row with these fields.
pub fn row_hash(chain: &str, seq: i64, prev_hash: &str, event: &AuditEvent) -> String {
    // Field order is fixed by the struct definitions, so the JSON is canonical.
    let json = serde_json::to_vec(&Canonical {
        chain,
        seq,
        prev_hash,
        event,
    })
    .expect("audit events serialize");
    crate::keyfmt::hex(&Sha256::digest(json))
}

/// [`row_hash`] given the event already serialized (`serde_json::to_string(event)`): builds the
/// same canonical bytes by concatenation, so the writer serializes each event once.
pub fn row_hash_json(chain: &str, seq: i64, prev_hash: &str, event_json: &str) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let canonical = format!(
        "{{\"chain\":{},\"seq\":{seq},\"prev_hash\":{},\"event\":{event_json}}}",
        quote(chain),
        quote(prev_hash)
    );
    crate::keyfmt::hex(&Sha256::digest(canonical.as_bytes()))
}

/// The head of a chain: the last row's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Last sequence number (0 when empty).
    pub seq: i64,
    /// Last hash ([`GENESIS`] when empty).
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn empty() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }

    /// Links `event` after this head and advances the head.
    pub fn append(&mut self, chain: &str, event: AuditEvent) -> AuditRecord {
        let seq = self.seq + 1;
        let event_json = serde_json::to_string(&event).expect("audit events serialize");
        let hash = row_hash_json(chain, seq, &self.hash, &event_json);
        let rec = AuditRecord {
            chain: chain.to_string(),
            seq,
            prev_hash: std::mem::replace(&mut self.hash, hash.clone()),
            hash,
            event,
            event_json,
        };
        self.seq = seq;
        rec
    }
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Chain id.
    pub chain: String,
    /// Rows checked.
    pub rows: i64,
    /// True when every link holds.
    pub ok: bool,
    /// The first broken link, when there is one.
    pub first_broken_seq: Option<i64>,
    /// Why it is broken.
    pub reason: Option<String>,
}

/// Verifies rows of one chain given in stored order (ascending row position).
pub fn verify(chain: &str, rows: &[AuditRecord]) -> Verification {
    let mut head = ChainHead::empty();
    let broken = |seq: i64, reason: String| Verification {
        chain: chain.to_string(),
        rows: rows.len() as i64,
        ok: false,
        first_broken_seq: Some(seq),
        reason: Some(reason),
    };
    for r in rows {
        let expected = head.seq + 1;
        if r.seq != expected {
            return broken(
                expected,
                format!(
                    "expected seq {expected}, found {} (row missing or reordered)",
                    r.seq
                ),
            );
        }
        if r.prev_hash != head.hash {
            return broken(r.seq, "prev_hash does not match the previous row".into());
        }
        let h = row_hash(&r.chain, r.seq, &r.prev_hash, &r.event);
        if h != r.hash {
            return broken(r.seq, "row content does not match its hash (edited)".into());
        }
        head = ChainHead {
            seq: r.seq,
            hash: r.hash.clone(),
        };
    }
    Verification {
        chain: chain.to_string(),
        rows: rows.len() as i64,
        ok: true,
        first_broken_seq: None,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_from_json_matches_hash_from_struct() {
        let mut e = AuditEvent::now(
            "t\"en",
            "key:k\\1",
            "proxy.request",
            "/p?q=\u{2028}é",
            "allow",
        );
        e.detail = Some("{\"a\":\"b\\n\"}".into());
        e.status = Some(200);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            row_hash("main\u{1}", 7, GENESIS, &e),
            row_hash_json("main\u{1}", 7, GENESIS, &json)
        );
        let mut head = ChainHead::empty();
        let rec = head.append("main", e.clone());
        assert_eq!(rec.hash, row_hash("main", 1, GENESIS, &e));
        assert_eq!(rec.event_json, json);
    }

    use super::*;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut head = ChainHead::empty();
        (0..n)
            .map(|i| {
                head.append(
                    "main",
                    AuditEvent::now("t", "system", "test", &format!("t{i}"), "ok"),
                )
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let v = verify("main", &chain(5));
        assert!(v.ok);
        assert_eq!(v.rows, 5);
        assert!(verify("main", &[]).ok);
    }

    #[test]
    fn edit_delete_reorder_are_detected() {
        let mut rows = chain(5);
        rows[2].event.decision = "deny".into();
        assert_eq!(verify("main", &rows).first_broken_seq, Some(3));

        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(verify("main", &rows).first_broken_seq, Some(2));

        let mut rows = chain(5);
        rows.swap(3, 4);
        assert_eq!(verify("main", &rows).first_broken_seq, Some(4));

        // Renumbering after a deletion still breaks the prev_hash link.
        let mut rows = chain(5);
        rows.remove(1);
        for (i, r) in rows.iter_mut().enumerate() {
            r.seq = i as i64 + 1;
        }
        assert!(!verify("main", &rows).ok);
    }
}
