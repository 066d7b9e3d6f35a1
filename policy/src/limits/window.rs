//! The sliding 60-second window behind `rpm` and `tpm`: one bucket per Unix second.
//!
//! At second `cur` the window holds the buckets of seconds `cur - 59 ..= cur`, so counts are
//! exact to one second: a request made at 12:00:00.900 stops counting at 12:01:00.000. The 60
//! buckets are a ring indexed by `second mod 60`, each tagged with the second it holds; a bucket
//! whose tag is older than the window is stale and is reset when its slot is next written. So the
//! window costs a fixed ~1.4 KiB, never allocates, and every query is one pass over 60 slots.

/// Length of the window in seconds.
pub(crate) const WINDOW_SECS: i64 = 60;
/// [`WINDOW_SECS`] as the retry delay for asks that can never fit.
pub(crate) const WINDOW_SECS_U64: u64 = WINDOW_SECS as u64;

/// Which count of a bucket a query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Measure {
    /// Requests made in the second.
    Requests,
    /// Tokens reserved (then settled) in the second.
    Tokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    /// The Unix second this bucket counts; `i64::MIN` when never used.
    second: i64,
    requests: u64,
    tokens: u64,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        second: i64::MIN,
        requests: 0,
        tokens: 0,
    };

    fn get(&self, measure: Measure) -> u64 {
        match measure {
            Measure::Requests => self.requests,
            Measure::Tokens => self.tokens,
        }
    }
}

/// Per-second request and token counts over the last 60 seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    buckets: [Bucket; WINDOW_SECS as usize],
}

/// Ring slot of a second.
fn slot(second: i64) -> usize {
    // rem_euclid(60) is 0..=59, so the cast is lossless.
    second.rem_euclid(WINDOW_SECS) as usize
}

/// Oldest second still inside the window at second `cur`.
fn oldest(cur: i64) -> i64 {
    cur.saturating_sub(WINDOW_SECS - 1)
}

impl Window {
    /// An empty window.
    pub(crate) fn new() -> Self {
        Self {
            buckets: [Bucket::EMPTY; WINDOW_SECS as usize],
        }
    }

    /// The live bucket of `second` as seen at `cur`, if it holds anything.
    fn live(&self, second: i64, cur: i64) -> Option<&Bucket> {
        let bucket = &self.buckets[slot(second)];
        (bucket.second == second && second >= oldest(cur) && second <= cur).then_some(bucket)
    }

    /// Live buckets at `cur`, oldest first.
    fn live_buckets(&self, cur: i64) -> impl Iterator<Item = (i64, &Bucket)> {
        (oldest(cur)..=cur).filter_map(move |second| self.live(second, cur).map(|b| (second, b)))
    }

    /// Requests and tokens counted in the window at second `cur`.
    pub(crate) fn usage(&self, cur: i64) -> (u64, u64) {
        self.live_buckets(cur)
            .fold((0, 0), |(requests, tokens), (_, b)| {
                (
                    requests.saturating_add(b.requests),
                    tokens.saturating_add(b.tokens),
                )
            })
    }

    /// Counts `requests` and `tokens` in the bucket of second `cur`.
    pub(crate) fn record(&mut self, cur: i64, requests: u64, tokens: u64) {
        let bucket = &mut self.buckets[slot(cur)];
        if bucket.second != cur {
            // The slot still holds a second that left the window 60 s (or more) ago: reuse it.
            *bucket = Bucket {
                second: cur,
                requests: 0,
                tokens: 0,
            };
        }
        bucket.requests = bucket.requests.saturating_add(requests);
        bucket.tokens = bucket.tokens.saturating_add(tokens);
    }

    /// Replaces `reserved` tokens counted in second `second` by `actual`, if that bucket is still
    /// in the window at `cur`. Once it has left, the tokens no longer count anyway, and adding
    /// the difference to a later second would charge the present for the past.
    pub(crate) fn settle_tokens(&mut self, cur: i64, second: i64, reserved: u64, actual: u64) {
        if self.live(second, cur).is_none() {
            return;
        }
        let bucket = &mut self.buckets[slot(second)];
        bucket.tokens = bucket
            .tokens
            .saturating_sub(reserved)
            .saturating_add(actual);
    }

    /// Smallest number of whole seconds after `cur` at which buckets holding at least `excess`
    /// of `measure` have left the window, or `None` if everything in it is less than `excess`.
    pub(crate) fn secs_until_freed(&self, cur: i64, measure: Measure, excess: u64) -> Option<u64> {
        let mut freed = 0u64;
        for (second, bucket) in self.live_buckets(cur) {
            freed = freed.saturating_add(bucket.get(measure));
            if freed >= excess {
                return Some(secs_until_leaves(second, cur));
            }
        }
        None
    }

    /// Seconds after `cur` until the oldest counted `measure` leaves the window (when the
    /// remaining allowance next grows), or 0 if nothing is counted.
    pub(crate) fn secs_until_next_release(&self, cur: i64, measure: Measure) -> u64 {
        self.live_buckets(cur)
            .find(|(_, bucket)| bucket.get(measure) > 0)
            .map_or(0, |(second, _)| secs_until_leaves(second, cur))
    }

    /// True when nothing is counted in the window at `cur`.
    pub(crate) fn is_idle(&self, cur: i64) -> bool {
        self.live_buckets(cur)
            .all(|(_, b)| b.requests == 0 && b.tokens == 0)
    }
}

/// Seconds from `cur` until the bucket of live second `second` leaves the window: 1..=60.
fn secs_until_leaves(second: i64, cur: i64) -> u64 {
    let secs = second.saturating_add(WINDOW_SECS).saturating_sub(cur);
    u64::try_from(secs).unwrap_or(WINDOW_SECS_U64)
}
