//! Usage metering: read token usage out of the provider's response while it streams to the
//! client, then settle the request's budget reservation and feed token velocity.
//!
//! Chunks are passed on unchanged and at once; the meter parses SSE events and AWS event-stream
//! frames as they go by (holding at most one incomplete event or frame), and keeps a bounded copy
//! of a plain JSON body to read its `usage` at the end. See [`latchkey_policy::usage`].

use crate::limits::Reserved;
use crate::resolve::ResolvedKey;
use crate::state::GatewayState;
use latchkey_policy::usage::{
    Usage, UsageMeter, BEDROCK_INPUT_TOKENS_HEADER, BEDROCK_OUTPUT_TOKENS_HEADER,
};
use pingora::http::ResponseHeader;
use std::sync::Arc;

/// A budget reservation waiting for the response.
#[derive(Debug)]
pub struct Charge {
    /// What the counters recorded.
    pub reserved: Reserved,
    /// The worst case that was reserved: tokens and micro-dollars.
    pub worst_tokens: u64,
    /// See `worst_tokens`.
    pub worst_cost_micros: u64,
}

/// The meter of one response.
pub struct Metering {
    meter: UsageMeter,
    /// Usage the provider reported in headers (Bedrock `InvokeModel`).
    from_headers: Option<Usage>,
    /// The provider answered 2xx (only successful responses are billed).
    success: bool,
}

impl Metering {
    /// Starts metering a response, given its header.
    pub fn start(resp: &ResponseHeader) -> Self {
        let header = |name: &str| resp.headers.get(name).and_then(|v| v.to_str().ok());
        Metering {
            meter: UsageMeter::new(header("content-type")),
            from_headers: Usage::from_bedrock_headers(
                header(BEDROCK_INPUT_TOKENS_HEADER),
                header(BEDROCK_OUTPUT_TOKENS_HEADER),
            ),
            success: resp.status.is_success(),
        }
    }

    /// Sees one chunk of the body on its way to the client.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.success && self.from_headers.is_none() {
            self.meter.feed(chunk);
        }
    }

    /// The usage found once the body is complete, and whether the meter may have missed some
    /// (an over-long event dropped, a frame cut off, a body beyond the copy limit).
    fn finish(&mut self) -> (Option<Usage>, bool) {
        if self.from_headers.is_some() {
            return (self.from_headers, false);
        }
        let usage = self.meter.finish();
        (usage, self.meter.incomplete())
    }
}

/// What a finished request used and cost.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// Metered usage (`None`: the response reported none).
    pub usage: Option<Usage>,
    /// Tokens charged to the limits.
    pub tokens: u64,
    /// Micro-dollars charged to the budgets.
    pub cost_micros: u64,
    /// Charged at the reserved worst case because a successful response reported no usage.
    pub estimated: bool,
}

/// Settles a request: its reservation (if any) gets the metered usage; a successful response
/// without readable usage keeps its worst case (never under-count a budget); a failed or refused
/// one costs nothing. Also feeds token velocity and the usage metrics.
pub async fn settle(
    state: &Arc<GatewayState>,
    key: Option<&ResolvedKey>,
    provider: &str,
    model: Option<&str>,
    metering: Option<Metering>,
    charge: Option<Charge>,
) -> Option<Settled> {
    let (usage, incomplete, success) = match metering {
        Some(mut m) => {
            let (usage, incomplete) = m.finish();
            (usage, incomplete, m.success)
        }
        None => (None, false, false),
    };
    let (mut tokens, mut cost_micros, mut estimated) = match (&usage, &charge) {
        (Some(u), _) => (
            u.total(),
            state.prices.cost_micros(provider, model.unwrap_or(""), *u),
            false,
        ),
        (None, Some(c)) if success => (c.worst_tokens, c.worst_cost_micros, true),
        (None, _) => (0, 0, false),
    };
    if let (true, Some(c)) = (incomplete, &charge) {
        // The meter may have missed usage: never charge less than the worst case.
        if c.worst_cost_micros > cost_micros || c.worst_tokens > tokens {
            tokens = tokens.max(c.worst_tokens);
            cost_micros = cost_micros.max(c.worst_cost_micros);
            estimated = true;
        }
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    if let Some(c) = charge {
        state
            .counters
            .settle(c.reserved, tokens, cost_micros, now_ms)
            .await;
    } else if usage.is_none() {
        return None;
    }
    if let Some(u) = &usage {
        state.metrics.usage(
            provider,
            u.input_tokens,
            u.output_tokens,
            cost_micros as f64 / 1_000_000.0,
        );
        if let Some(key) = key {
            crate::velocity::observe_tokens(state, key, u.total(), now_ms / 1000).await;
        }
    }
    if estimated {
        tracing::debug!(
            provider,
            "a successful response reported no usage; charged the reserved worst case"
        );
    }
    Some(Settled {
        usage,
        tokens,
        cost_micros,
        estimated,
    })
}
