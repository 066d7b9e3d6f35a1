//! # latchkey-policy
//!
//! Pure decision logic: given facts about a proxy key and a request, decide whether it may pass.
//! No I/O, no clocks read here (the caller passes `now`), so every rule is unit-testable and
//! fuzzable. Later stages (locks, policies, budgets) join this crate as sibling modules.

pub mod access;
pub mod limits;
pub mod locks;
pub mod pii;
pub mod ratelimit;
pub mod resilience;
pub mod rules;
pub mod scrub;
pub mod usage;
