//! The audit writer: events are queued without blocking, chained, and written in batches off the
//! hot path. [`AuditWriter::flush`] waits until everything queued so far is stored (used on
//! graceful shutdown and by tests).

use latchkey_vault::audit::{self, AuditEvent, AuditRecord, AuditSink, Verification};
use latchkey_vault::store::{Store, StoreResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Chain id used by a single node.
pub const MAIN_CHAIN: &str = "main";
const BATCH: usize = 2048;
/// How long the writer waits for more events before writing a batch.
const LINGER: Duration = Duration::from_millis(20);

enum Msg {
    /// An event and when it was queued.
    Event(Box<AuditEvent>, Instant),
    Flush(oneshot::Sender<()>),
}

/// Queue figures shared by the handles and the writer task.
#[derive(Default)]
struct Gauges {
    depth: AtomicU64,
    lag_us: AtomicU64,
}

/// A cloneable handle that queues events for the writer task.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::UnboundedSender<Msg>,
    gauges: Arc<Gauges>,
}

impl AuditSink for AuditWriter {
    fn record(&self, event: AuditEvent) {
        self.gauges.depth.fetch_add(1, Ordering::Relaxed);
        if self
            .tx
            .send(Msg::Event(Box::new(event), Instant::now()))
            .is_err()
        {
            self.gauges.depth.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("audit writer has stopped; event dropped");
        }
    }

    fn queue_depth(&self) -> Option<u64> {
        Some(self.gauges.depth.load(Ordering::Relaxed))
    }

    fn lag_seconds(&self) -> Option<f64> {
        Some(self.gauges.lag_us.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

impl AuditWriter {
    /// Starts the writer task for `chain` on the current tokio runtime.
    pub async fn start(store: Arc<dyn Store>, chain: &str) -> StoreResult<Self> {
        let head = store.audit_head(chain).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let gauges = Arc::new(Gauges::default());
        tokio::spawn(run(store, chain.to_string(), head, rx, gauges.clone()));
        Ok(AuditWriter { tx, gauges })
    }

    /// Waits until every event queued before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    chain: String,
    mut head: audit::ChainHead,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    gauges: Arc<Gauges>,
) {
    let mut pending: Vec<AuditRecord> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut lingered = false;
        loop {
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Event(e, queued) => {
                        oldest.get_or_insert(queued);
                        pending.push(head.append(&chain, *e));
                    }
                    Msg::Flush(w) => waiters.push(w),
                }
                if pending.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // Linger once before writing, unless someone waits for a flush or the batch is
            // full: under load this turns thousands of one-row transactions (and as many
            // cross-thread wake-ups from the gateway) into a few large ones. While the task
            // sleeps it is not polling the channel, so senders do not wake it at all.
            if lingered || !waiters.is_empty() || pending.len() >= BATCH {
                break;
            }
            lingered = true;
            tokio::time::sleep(LINGER).await;
            next = rx.try_recv().ok();
            if next.is_none() {
                break;
            }
        }
        // Write the batch; on failure keep the rows (already chained) and retry, so nothing
        // is lost and the chain stays contiguous.
        let mut backoff = Duration::from_millis(50);
        while !pending.is_empty() {
            match store.append_audit(&pending).await {
                Ok(()) => {
                    gauges
                        .depth
                        .fetch_sub(pending.len() as u64, Ordering::Relaxed);
                    if let Some(t) = oldest.take() {
                        gauges
                            .lag_us
                            .store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    pending.clear();
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = pending.len(), "audit write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Verifies every chain in the store, page by page.
pub async fn verify_all(store: &dyn Store) -> StoreResult<Vec<Verification>> {
    let mut out = Vec::new();
    for chain in store.audit_chains().await? {
        let mut rows = Vec::new();
        let mut after = 0;
        loop {
            let page = store.audit_rows(&chain, after, 5_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let done = page.len() < 5_000;
            rows.extend(page);
            if done {
                break;
            }
        }
        out.push(audit::verify(&chain, &rows));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_vault::store::SqliteStore;

    #[tokio::test]
    async fn writes_in_order_and_flushes() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let w = AuditWriter::start(store.clone(), MAIN_CHAIN).await.unwrap();
        for i in 0..1000 {
            w.record(AuditEvent::now(
                "default",
                "system",
                "t",
                &i.to_string(),
                "ok",
            ));
        }
        w.flush().await;
        assert_eq!(w.queue_depth(), Some(0));
        assert!(w.lag_seconds().is_some_and(|l| l < 5.0));
        let v = verify_all(store.as_ref()).await.unwrap();
        assert_eq!(v.len(), 1);
        assert!(v[0].ok);
        assert_eq!(v[0].rows, 1000);
        // A new writer continues the same chain.
        let w2 = AuditWriter::start(store.clone(), MAIN_CHAIN).await.unwrap();
        w2.record(AuditEvent::now("default", "system", "t", "again", "ok"));
        w2.flush().await;
        let v = verify_all(store.as_ref()).await.unwrap();
        assert!(v[0].ok);
        assert_eq!(v[0].rows, 1001);
    }
}
