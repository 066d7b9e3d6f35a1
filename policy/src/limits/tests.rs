//! Behaviour of the ledger as the gateway relies on it, plus property tests.

use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use proptest::prelude::*;

use super::calendar::{self, Clock};
use super::*;

/// 2024-03-14T00:00:00Z, an ordinary mid-month day.
const MAR_14_2024: i64 = 1_710_374_400_000;
const SEC: i64 = 1_000;
const HOUR: i64 = 3_600 * SEC;
const DAY: i64 = 24 * HOUR;

fn key(limits: &Limits) -> Scope<'_> {
    Scope::new(ScopeKind::Key, "t1/key_a", limits)
}

fn tenant(limits: &Limits) -> Scope<'_> {
    Scope::new(ScopeKind::Tenant, "t1", limits)
}

fn rpm(n: u64) -> Limits {
    Limits {
        rpm: Some(n),
        ..Limits::default()
    }
}

fn tpm(n: u64) -> Limits {
    Limits {
        tpm: Some(n),
        ..Limits::default()
    }
}

fn daily(usd: f64) -> Limits {
    Limits {
        budget_daily_usd: Some(usd),
        ..Limits::default()
    }
}

fn monthly(usd: f64) -> Limits {
    Limits {
        budget_monthly_usd: Some(usd),
        ..Limits::default()
    }
}

fn free() -> Ask {
    Ask::new(0, 0)
}

fn expect_grant(result: Result<Grant, Exceeded>) -> Grant {
    match result {
        Ok(grant) => grant,
        Err(exceeded) => panic!("expected a grant, got: {exceeded}"),
    }
}

/// Asserts a grant and keeps its reservation unsettled (its worst case stays counted).
fn admit(result: Result<Grant, Exceeded>) {
    let _unsettled = expect_grant(result);
}

fn expect_refusal(result: Result<Grant, Exceeded>) -> Exceeded {
    match result {
        Ok(grant) => panic!("expected a refusal, got {grant:?}"),
        Err(exceeded) => exceeded,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests per minute

#[test]
fn rpm_window_slides_one_second_at_a_time() {
    let limits = rpm(60);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    for s in 0..60 {
        let grant = expect_grant(ledger.reserve(&scopes, free(), MAR_14_2024 + s * SEC));
        assert_eq!(grant.headroom[0].remaining, 59 - s as u64);
    }

    // Still inside second 59: all 60 requests count.
    let refused = expect_refusal(ledger.reserve(&scopes, free(), MAR_14_2024 + 59_500));
    assert_eq!(refused.kind, LimitKind::Requests);
    assert_eq!(refused.code(), "rate_limited");
    assert_eq!((refused.limit, refused.used, refused.asked), (60, 60, 1));
    assert_eq!(refused.retry_after_secs, 1); // second 0 leaves at t = 60 s
    assert!(!refused.never_fits);
    assert_eq!(
        refused.to_string(),
        "key limit of 60 requests per minute reached; retry in 1s"
    );

    // At t = 60 s the requests of second 0 have left the window.
    admit(ledger.reserve(&scopes, free(), MAR_14_2024 + 60 * SEC));
    let refused = expect_refusal(ledger.reserve(&scopes, free(), MAR_14_2024 + 60 * SEC));
    assert_eq!(refused.retry_after_secs, 1); // now second 1 must leave
    assert_eq!(
        ledger.usage("t1/key_a", MAR_14_2024 + 60 * SEC).requests,
        60
    );
}

#[test]
fn rpm_retry_after_waits_for_the_oldest_requests() {
    let limits = rpm(10);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    for _ in 0..4 {
        admit(ledger.reserve(&scopes, free(), MAR_14_2024 + 5 * SEC));
    }
    for _ in 0..6 {
        admit(ledger.reserve(&scopes, free(), MAR_14_2024 + 30 * SEC));
    }
    let at = MAR_14_2024 + 45 * SEC + 250;
    let refused = expect_refusal(ledger.reserve(&scopes, free(), at));
    // The 4 requests of second 5 leave at 65 s: 20 s after second 45.
    assert_eq!(refused.retry_after_secs, 20);
    let headroom = ledger.headroom(&scopes, at);
    assert_eq!(headroom[0].remaining, 0);
    assert_eq!(headroom[0].reset_secs, 20);
    expect_refusal(ledger.reserve(&scopes, free(), at + 19 * SEC));
    admit(ledger.reserve(&scopes, free(), at + 20 * SEC));
}

// ---------------------------------------------------------------------------------------------
// Tokens per minute

#[test]
fn tpm_reserves_worst_case_and_settle_corrects_it() {
    let limits = tpm(1_000);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    let t = MAR_14_2024;

    let first = expect_grant(ledger.reserve(&scopes, Ask::new(600, 0), t));
    assert_eq!(first.headroom[0].remaining, 400);
    assert_eq!(first.reservation.tokens(), 600);

    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(600, 0), t + 500));
    assert_eq!(refused.kind, LimitKind::Tokens);
    assert_eq!((refused.used, refused.asked), (600, 600));
    assert_eq!(refused.retry_after_secs, 60);
    assert_eq!(
        refused.to_string(),
        "key limit of 1000 tokens per minute has 400 left, fewer than the 600 this request \
         may use; retry in 1m"
    );

    // The first request used only 200 tokens: the other 400 come back at once.
    ledger.settle(first.reservation, 200, 0, t + 2 * SEC);
    assert_eq!(ledger.usage("t1/key_a", t + 2 * SEC).tokens, 200);
    let second = expect_grant(ledger.reserve(&scopes, Ask::new(600, 0), t + 3 * SEC));
    assert_eq!(second.headroom[0].remaining, 200);

    // A provider reporting more than the worst case is charged in full.
    ledger.settle(second.reservation, 900, 0, t + 4 * SEC);
    assert_eq!(ledger.usage("t1/key_a", t + 4 * SEC).tokens, 1_100);
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(0, 0), t + 4 * SEC));
    assert_eq!(
        refused.to_string(),
        "key limit of 1000 tokens per minute reached; retry in 56s"
    );
    assert_eq!(ledger.headroom(&scopes, t + 4 * SEC)[0].remaining, 0);

    // The 200 tokens of second 0 leave at 60 s, the 900 of second 3 at 63 s.
    assert_eq!(ledger.usage("t1/key_a", t + 60 * SEC).tokens, 900);
    assert_eq!(ledger.usage("t1/key_a", t + 63 * SEC).tokens, 0);
    // Requests are never un-counted by a settle.
    assert_eq!(ledger.usage("t1/key_a", t + 4 * SEC).requests, 2);
}

#[test]
fn tpm_settle_after_the_bucket_left_changes_nothing() {
    let limits = tpm(1_000);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    let grant = expect_grant(ledger.reserve(&scopes, Ask::new(100, 0), MAR_14_2024));
    admit(ledger.reserve(&scopes, Ask::new(50, 0), MAR_14_2024 + 30 * SEC));
    // A long stream finishes 70 s later and used more than reserved: the past is not re-charged
    // to the present.
    ledger.settle(grant.reservation, 5_000, 0, MAR_14_2024 + 70 * SEC);
    assert_eq!(ledger.usage("t1/key_a", MAR_14_2024 + 70 * SEC).tokens, 50);
}

#[test]
fn ask_larger_than_the_limit_never_fits() {
    let limits = tpm(4_096);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(8_192, 0), MAR_14_2024));
    assert_eq!(refused.kind, LimitKind::Tokens);
    assert!(refused.never_fits);
    assert_eq!(refused.retry_after_secs, 60);
    assert_eq!(
        refused.to_string(),
        "request may use up to 8192 tokens, more than the key limit of 4096 tokens per minute"
    );

    let limits = daily(1.0);
    let scopes = [key(&limits)];
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(1, 1_500_000), MAR_14_2024));
    assert!(refused.never_fits);
    assert_eq!(refused.code(), "budget_exceeded");
    assert_eq!(
        refused.to_string(),
        "request may cost up to $1.50, more than the key budget of $1.00 per day"
    );
    assert!(ledger.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Budgets and the calendar

#[test]
fn daily_budget_resets_at_utc_midnight() {
    let limits = daily(1.0);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    let before_midnight = MAR_14_2024 + DAY - 500; // 23:59:59.500
    admit(ledger.reserve(&scopes, Ask::new(0, 600_000), before_midnight - HOUR));
    admit(ledger.reserve(&scopes, Ask::new(0, 400_000), before_midnight));

    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(0, 1), before_midnight));
    assert_eq!(refused.kind, LimitKind::DailySpend);
    assert_eq!((refused.limit, refused.used), (1_000_000, 1_000_000));
    assert_eq!(refused.retry_after_secs, 1);
    assert_eq!(
        refused.to_string(),
        "key budget of $1.00 per day is spent; resets in 1s"
    );

    let midnight = MAR_14_2024 + DAY;
    let grant = expect_grant(ledger.reserve(&scopes, Ask::new(0, 250_000), midnight));
    assert_eq!(grant.headroom[0].remaining, 750_000);
    assert_eq!(grant.headroom[0].reset_secs, 86_400);
    let usage = ledger.usage("t1/key_a", midnight);
    assert_eq!(usage.daily_spend_micros, 250_000);
    assert_eq!(usage.monthly_spend_micros, 1_250_000);
}

#[test]
fn spend_message_shows_what_is_left_and_when_it_resets() {
    let limits = daily(5.0);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    let at = MAR_14_2024 + 20 * HOUR + 47 * 60 * SEC; // 20:47:00, 3h13m before midnight
    admit(ledger.reserve(&scopes, Ask::new(0, 4_900_000), at));
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(0, 250_000), at + 30 * SEC));
    assert_eq!(refused.retry_after_secs, 3 * 3_600 + 12 * 60 + 30);
    assert_eq!(
        refused.to_string(),
        "key budget of $5.00 per day has $0.10 left, less than the $0.25 this request may \
         cost; resets in 3h12m"
    );
    // What is left still serves a smaller request.
    admit(ledger.reserve(&scopes, Ask::new(0, 100_000), at + 30 * SEC));
    let refused = expect_refusal(ledger.reserve(&scopes, free(), at + 30 * SEC));
    assert_eq!(
        refused.to_string(),
        "key budget of $5.00 per day is spent; resets in 3h12m"
    );
}

#[test]
fn late_settle_across_midnight_corrects_yesterday_only() {
    let limits = Limits {
        budget_daily_usd: Some(1.0),
        budget_monthly_usd: Some(10.0),
        ..Limits::default()
    };
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    let evening = MAR_14_2024 + DAY - 10 * SEC;
    let grant = expect_grant(ledger.reserve(&scopes, Ask::new(0, 1_000_000), evening));
    let morning = MAR_14_2024 + DAY + 5 * SEC;
    admit(ledger.reserve(&scopes, Ask::new(0, 200_000), morning));
    ledger.settle(grant.reservation, 0, 300_000, morning + SEC);
    let usage = ledger.usage("t1/key_a", morning + SEC);
    assert_eq!(usage.daily_spend_micros, 200_000); // today untouched
    assert_eq!(usage.monthly_spend_micros, 500_000); // same month: corrected
}

#[test]
fn monthly_budget_resets_on_the_first() {
    // (instant that spends the whole budget, first instant of the next month), in ms.
    let cases = [
        // Leap year: February has 29 days.
        (1_709_208_000_000, 1_709_251_200_000), // 2024-02-29T12:00 -> 2024-03-01
        // Common year: February has 28 days.
        (1_677_628_740_000, 1_677_628_800_000), // 2023-02-28T23:59 -> 2023-03-01
        // December to January of the next year.
        (1_704_063_600_000, 1_704_067_200_000), // 2023-12-31T23:00 -> 2024-01-01
        // A 30-day month.
        (1_714_435_200_000, 1_714_521_600_000), // 2024-04-30T00:00 -> 2024-05-01
    ];
    let limits = monthly(10.0);
    let scopes = [tenant(&limits)];
    for (spend_at, next_month) in cases {
        let mut ledger = Ledger::new();
        admit(ledger.reserve(&scopes, Ask::new(0, 10_000_000), spend_at));
        let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(0, 1), spend_at + SEC));
        assert_eq!(refused.kind, LimitKind::MonthlySpend);
        assert_eq!(refused.scope, ScopeKind::Tenant);
        let expected = u64::try_from((next_month - spend_at - SEC) / SEC).unwrap();
        assert_eq!(refused.retry_after_secs, expected, "spent at {spend_at}");
        expect_refusal(ledger.reserve(&scopes, Ask::new(0, 1), next_month - 1));
        admit(ledger.reserve(&scopes, Ask::new(0, 1), next_month));
    }
}

#[test]
fn calendar_knows_month_boundaries() {
    assert_eq!(calendar::days_from_civil(1970, 1, 1), 0);
    assert_eq!(calendar::civil_from_days(0), (1970, 1, 1));
    assert_eq!(calendar::days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(calendar::civil_from_days(-1), (1969, 12, 31));
    assert_eq!(calendar::civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(calendar::civil_from_days(47_541), (2100, 3, 1)); // 2100 is not a leap year
    assert_eq!(calendar::civil_from_days(47_540), (2100, 2, 28));

    let clock = Clock::at(1_709_208_000_000); // 2024-02-29T12:00Z
    assert_eq!(calendar::month_start_ms(clock.month), 1_706_745_600_000); // 2024-02-01
    assert_eq!(clock.secs_to_next_month(), 12 * 3_600);
    assert_eq!(clock.secs_to_next_day(), 12 * 3_600);
    let clock = Clock::at(-1); // 1969-12-31T23:59:59.999Z
    assert_eq!((clock.sec, clock.day), (-1, -1));
    assert_eq!(clock.secs_to_next_month(), 1);
    // Extremes of the i64 range do not overflow.
    let _ = Clock::at(i64::MAX).secs_to_next_month();
    let _ = Clock::at(i64::MIN).secs_to_next_month();
}

// ---------------------------------------------------------------------------------------------
// Several scopes

#[test]
fn reserve_is_atomic_across_scopes() {
    let key_limits = rpm(100);
    let tenant_limits = daily(1.0);
    let other_key = Limits::default();
    let mut ledger = Ledger::new();
    // Another key of the tenant spends the tenant's whole day.
    let other = [
        Scope::new(ScopeKind::Key, "t1/key_b", &other_key),
        tenant(&tenant_limits),
    ];
    admit(ledger.reserve(&other, Ask::new(10, 1_000_000), MAR_14_2024));

    let scopes = [key(&key_limits), tenant(&tenant_limits)];
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(10, 5), MAR_14_2024 + SEC));
    assert_eq!(refused.scope, ScopeKind::Tenant);
    assert_eq!(refused.scope_id, "t1");
    assert_eq!(refused.kind, LimitKind::DailySpend);
    // The key scope passed its own check but recorded nothing.
    assert_eq!(
        ledger.usage("t1/key_a", MAR_14_2024 + SEC),
        Usage::default()
    );
    assert_eq!(ledger.usage("t1", MAR_14_2024 + SEC).requests, 1);
    assert_eq!(ledger.len(), 2);
}

#[test]
fn first_failure_is_reported_in_scope_then_kind_order() {
    let key_limits = Limits {
        rpm: Some(1),
        tpm: Some(100),
        budget_daily_usd: Some(1.0),
        budget_monthly_usd: Some(1.0),
    };
    let tenant_limits = key_limits.clone();
    let mut ledger = Ledger::new();
    let scopes = [key(&key_limits), tenant(&tenant_limits)];
    admit(ledger.reserve(&scopes, Ask::new(100, 1_000_000), MAR_14_2024));

    // Every limit of both scopes is now full: the key's requests come first ...
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(1, 1), MAR_14_2024));
    assert_eq!(
        (refused.scope, refused.kind),
        (ScopeKind::Key, LimitKind::Requests)
    );
    // ... unless the tenant is given first.
    let reversed = [tenant(&tenant_limits), key(&key_limits)];
    let refused = expect_refusal(ledger.reserve(&reversed, Ask::new(1, 1), MAR_14_2024));
    assert_eq!(
        (refused.scope, refused.kind),
        (ScopeKind::Tenant, LimitKind::Requests)
    );

    // A minute later requests and tokens have left the window; the spends remain.
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(1, 1), MAR_14_2024 + 60 * SEC));
    assert_eq!(
        (refused.scope, refused.kind),
        (ScopeKind::Key, LimitKind::DailySpend)
    );
    // The next day only the monthly budget is left to refuse.
    let refused = expect_refusal(ledger.reserve(&scopes, Ask::new(1, 1), MAR_14_2024 + DAY));
    assert_eq!(
        (refused.scope, refused.kind),
        (ScopeKind::Key, LimitKind::MonthlySpend)
    );

    // Within one scope, tokens are checked before spend.
    let limits = Limits {
        tpm: Some(10),
        budget_daily_usd: Some(0.01),
        ..Limits::default()
    };
    let refused =
        expect_refusal(Ledger::new().reserve(&[key(&limits)], Ask::new(11, 20_000), MAR_14_2024));
    assert_eq!(refused.kind, LimitKind::Tokens);
}

#[test]
fn a_scope_given_twice_is_counted_once() {
    let limits = rpm(2);
    let scopes = [key(&limits), key(&limits)];
    let mut ledger = Ledger::new();
    let grant = expect_grant(ledger.reserve(&scopes, Ask::new(5, 7), MAR_14_2024));
    assert_eq!(
        grant.reservation.scope_ids().collect::<Vec<_>>(),
        ["t1/key_a"]
    );
    assert_eq!(ledger.usage("t1/key_a", MAR_14_2024).requests, 1);
    ledger.settle(grant.reservation, 3, 2, MAR_14_2024);
    let usage = ledger.usage("t1/key_a", MAR_14_2024);
    assert_eq!((usage.tokens, usage.daily_spend_micros), (3, 2));
    admit(ledger.reserve(&scopes, free(), MAR_14_2024));
    expect_refusal(ledger.reserve(&scopes, free(), MAR_14_2024));
}

#[test]
fn zero_limits_refuse_everything() {
    let zeros = [rpm(0), tpm(0), daily(0.0), monthly(0.0)];
    let kinds = LimitKind::ALL;
    let mut ledger = Ledger::new();
    for (limits, kind) in zeros.iter().zip(kinds) {
        let refused = expect_refusal(ledger.reserve(&[key(limits)], free(), MAR_14_2024));
        assert_eq!(refused.kind, kind);
        assert!(refused.never_fits);
        assert!(
            refused.to_string().ends_with("allows no requests"),
            "{refused}"
        );
    }
    assert!(ledger.is_empty());
    // A budget that is spent exactly also refuses requests priced at 0.
    let limits = daily(1.0);
    admit(ledger.reserve(&[key(&limits)], Ask::new(0, 1_000_000), MAR_14_2024));
    expect_refusal(ledger.reserve(&[key(&limits)], free(), MAR_14_2024));
}

#[test]
fn scopes_without_limits_are_tracked_but_never_refuse() {
    let none = Limits::default();
    let mut ledger = Ledger::new();
    let grant = expect_grant(ledger.reserve(&[key(&none)], Ask::new(1, 1), MAR_14_2024));
    assert!(grant.headroom.is_empty());
    assert_eq!(ledger.usage("t1/key_a", MAR_14_2024).requests, 1);
}

// ---------------------------------------------------------------------------------------------
// Headroom, time, sweep

#[test]
fn headroom_lists_every_configured_limit() {
    let key_limits = Limits {
        rpm: Some(10),
        budget_daily_usd: Some(2.0),
        ..Limits::default()
    };
    let tenant_limits = Limits {
        tpm: Some(1_000),
        budget_monthly_usd: Some(100.0),
        ..Limits::default()
    };
    let scopes = [key(&key_limits), tenant(&tenant_limits)];
    let mut ledger = Ledger::new();
    let at = MAR_14_2024 + 12 * HOUR;

    let before = ledger.headroom(&scopes, at);
    assert_eq!(before[0].reset_secs, 0); // nothing counted yet
    assert!(ledger.is_empty(), "headroom is read-only");

    let grant = expect_grant(ledger.reserve(&scopes, Ask::new(300, 500_000), at));
    let summary: Vec<_> = grant
        .headroom
        .iter()
        .map(|h| (h.scope, h.kind, h.limit, h.remaining, h.reset_secs))
        .collect();
    assert_eq!(
        summary,
        [
            (ScopeKind::Key, LimitKind::Requests, 10, 9, 60),
            (
                ScopeKind::Key,
                LimitKind::DailySpend,
                2_000_000,
                1_500_000,
                12 * 3_600
            ),
            (ScopeKind::Tenant, LimitKind::Tokens, 1_000, 700, 60),
            (
                ScopeKind::Tenant,
                LimitKind::MonthlySpend,
                100_000_000,
                99_500_000,
                18 * 86_400 - 12 * 3_600, // until 2024-04-01
            ),
        ]
    );
    assert_eq!(ledger.headroom(&scopes, at), grant.headroom);
    assert_eq!(ledger.headroom(&scopes, at + 10 * SEC)[0].reset_secs, 50);
}

#[test]
fn time_never_runs_backwards() {
    let limits = rpm(1);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    admit(ledger.reserve(&scopes, free(), MAR_14_2024 + 100 * SEC));
    // A caller whose clock read is 90 s older is treated as "now", not as a fresh minute.
    let refused = expect_refusal(ledger.reserve(&scopes, free(), MAR_14_2024 + 10 * SEC));
    assert_eq!(refused.retry_after_secs, 60);
}

#[test]
fn sweep_forgets_idle_scopes_only() {
    let limits = Limits::default();
    let mut ledger = Ledger::new();
    let at = MAR_14_2024;
    let scope = |id| Scope::new(ScopeKind::Key, id, &limits);
    // Idle after a minute: a free request.
    admit(ledger.reserve(&[scope("t1/idle")], Ask::new(10, 0), at));
    // Spent money this month: kept until the month ends.
    let paid = expect_grant(ledger.reserve(&[scope("t1/paid")], Ask::new(10, 5), at));
    ledger.settle(paid.reservation, 10, 3, at + SEC);
    // Reserved money and then used none: nothing left to remember.
    let refunded = expect_grant(ledger.reserve(&[scope("t1/refunded")], Ask::new(0, 5), at));
    ledger.settle(refunded.reservation, 0, 0, at + SEC);
    // Active in the last minute.
    admit(ledger.reserve(&[scope("t1/active")], free(), at + 30 * SEC));
    assert_eq!(ledger.len(), 4);

    ledger.sweep(at + 30 * SEC);
    assert_eq!(ledger.len(), 4, "everything counted in the last minute");
    ledger.sweep(at + 61 * SEC);
    assert_eq!(ledger.len(), 2);
    assert_eq!(
        ledger.usage("t1/paid", at + 61 * SEC).monthly_spend_micros,
        3
    );
    assert_eq!(ledger.usage("t1/active", at + 61 * SEC).requests, 1);
    ledger.sweep(at + 2 * DAY);
    assert_eq!(ledger.len(), 1);
    ledger.sweep(at + 20 * DAY); // April
    assert!(ledger.is_empty());
}

#[test]
fn settle_after_sweep_still_charges_actual_cost() {
    let limits = daily(1.0);
    let scopes = [key(&limits)];
    let mut ledger = Ledger::new();
    // The caller could not price the request (cost 0) and it streamed for two minutes.
    let grant = expect_grant(ledger.reserve(&scopes, Ask::new(100, 0), MAR_14_2024));
    ledger.sweep(MAR_14_2024 + 61 * SEC);
    assert!(ledger.is_empty());
    ledger.settle(grant.reservation, 100, 400_000, MAR_14_2024 + 120 * SEC);
    let usage = ledger.usage("t1/key_a", MAR_14_2024 + 120 * SEC);
    assert_eq!(usage.daily_spend_micros, 400_000);
    assert_eq!(usage.tokens, 0);
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[test]
fn concurrent_reservations_never_exceed_the_budget() {
    const THREADS: usize = 50;
    const ASK: u64 = 100_000; // $0.10: exactly 10 fit in $1.00
    let now = MAR_14_2024 + 9 * HOUR;
    let ledger = Arc::new(Mutex::new(Ledger::new()));
    let limits = Arc::new(daily(1.0));
    let barrier = Arc::new(Barrier::new(THREADS));

    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (ledger, limits, barrier) = (ledger.clone(), limits.clone(), barrier.clone());
            thread::spawn(move || {
                let scopes = [key(&limits)];
                barrier.wait();
                let result = ledger
                    .lock()
                    .unwrap()
                    .reserve(&scopes, Ask::new(50, ASK), now);
                // Hold the reservation, like a request in flight.
                result.ok().map(|grant| (i, grant.reservation))
            })
        })
        .collect();
    let held: Vec<(usize, Reservation)> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(held.len(), 10);

    let mut ledger = Arc::try_unwrap(ledger).unwrap().into_inner().unwrap();
    let scopes = [key(&limits)];
    expect_refusal(ledger.reserve(&scopes, Ask::new(50, ASK), now));

    // Each request actually cost between $0.05 and $0.0545.
    let mut actual_total = 0;
    for (i, reservation) in held {
        let actual = 50_000 + 500 * i as u64 % 5_000;
        actual_total += actual;
        ledger.settle(reservation, 40, actual, now + SEC);
    }
    assert_eq!(
        ledger.usage("t1/key_a", now + SEC).daily_spend_micros,
        actual_total
    );

    // What the settles gave back is available again, up to the cap.
    let mut granted = 0;
    while ledger
        .reserve(&scopes, Ask::new(50, ASK), now + 2 * SEC)
        .is_ok()
    {
        granted += 1;
    }
    assert_eq!(granted, (1_000_000 - actual_total) / ASK);
    assert!(ledger.usage("t1/key_a", now + 2 * SEC).daily_spend_micros <= 1_000_000);
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn limits_serde_and_validation() {
    let limits: Limits =
        serde_json::from_str(r#"{"tpm": 5000, "budget_monthly_usd": 20}"#).expect("valid limits");
    assert_eq!(limits.tpm, Some(5_000));
    assert_eq!(limits.budget_monthly_micros(), Some(20_000_000));
    assert!(!limits.is_empty());
    assert!(Limits::default().is_empty());
    assert_eq!(serde_json::to_string(&Limits::default()).unwrap(), "{}");
    assert!(serde_json::from_str::<Limits>(r#"{"rpn": 5}"#).is_err());

    assert_eq!(daily(1e9).validate(), Ok(()));
    assert_eq!(daily(0.0).validate(), Ok(()));
    assert_eq!(rpm(0).validate(), Ok(()));
    let err = daily(-1.0).validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "budget_daily_usd must not be negative, got -1"
    );
    assert!(matches!(
        monthly(f64::NAN).validate(),
        Err(LimitsError::NotFinite {
            field: "budget_monthly_usd",
            ..
        })
    ));
    assert!(matches!(
        daily(f64::INFINITY).validate(),
        Err(LimitsError::NotFinite { .. })
    ));
    assert!(matches!(
        monthly(1.5e9).validate(),
        Err(LimitsError::TooLarge { .. })
    ));
}

#[test]
fn dollar_conversion_rounds_and_clamps() {
    assert_eq!(usd_to_micros(1e9), 1_000_000_000_000_000);
    assert_eq!(usd_to_micros(0.000_000_4), 0);
    assert_eq!(usd_to_micros(0.000_000_6), 1);
    assert_eq!(usd_to_micros(f64::NAN), 0);
    assert_eq!(usd_to_micros(f64::INFINITY), u64::MAX);
    assert_eq!(micros_to_usd(1), 0.000_001);
    // Invalid budgets that skip validation fail closed.
    assert_eq!(daily(f64::NAN).budget_daily_micros(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// Properties

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        scope: usize,
        tokens: u64,
        cost: u64,
    },
    Settle {
        index: usize,
        tokens_pct: u64,
        cost_pct: u64,
    },
    Advance {
        ms: i64,
    },
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, 0u64..400, 0u64..400_000)
            .prop_map(|(scope, tokens, cost)| Op::Reserve { scope, tokens, cost }),
        3 => (any::<usize>(), 0u64..=100, 0u64..=100)
            .prop_map(|(index, tokens_pct, cost_pct)| Op::Settle { index, tokens_pct, cost_pct }),
        2 => prop_oneof![0i64..5_000, 0i64..90_000, 0i64..2 * DAY]
            .prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Sweep),
    ]
}

proptest! {
    #[test]
    fn caps_hold_when_actual_never_exceeds_reserved(
        start in MAR_14_2024 - 20 * DAY..MAR_14_2024 + 20 * DAY,
        key_rpm in 1u64..20,
        key_tpm in 100u64..2_000,
        key_daily in 0.1f64..2.0,
        tenant_monthly in 1.0f64..6.0,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let key_a = Limits {
            rpm: Some(key_rpm),
            tpm: Some(key_tpm),
            budget_daily_usd: Some(key_daily),
            ..Limits::default()
        };
        let key_b = Limits { budget_daily_usd: Some(key_daily / 2.0), ..Limits::default() };
        let tenant_limits = Limits {
            budget_monthly_usd: Some(tenant_monthly),
            ..Limits::default()
        };
        let scopes = [
            [Scope::new(ScopeKind::Key, "t1/a", &key_a), tenant(&tenant_limits)],
            [Scope::new(ScopeKind::Key, "t1/b", &key_b), tenant(&tenant_limits)],
            [tenant(&tenant_limits), Scope::new(ScopeKind::Workload, "t1/w", &key_b)],
        ];
        let mut ledger = Ledger::new();
        let mut held: Vec<Reservation> = Vec::new();
        let mut now = start;
        for op in ops {
            match op {
                Op::Reserve { scope, tokens, cost } => {
                    if let Ok(grant) = ledger.reserve(&scopes[scope], Ask::new(tokens, cost), now) {
                        held.push(grant.reservation);
                    }
                }
                Op::Settle { index, tokens_pct, cost_pct } if !held.is_empty() => {
                    let reservation = held.swap_remove(index % held.len());
                    let tokens = reservation.tokens() * tokens_pct / 100;
                    let cost = reservation.cost_micros() * cost_pct / 100;
                    ledger.settle(reservation, tokens, cost, now);
                }
                Op::Settle { .. } => {}
                Op::Advance { ms } => now += ms,
                Op::Sweep => ledger.sweep(now),
            }
            for group in &scopes {
                for scope in group {
                    let usage = ledger.usage(scope.id, now);
                    for kind in LimitKind::ALL {
                        if let Some(limit) = scope.limits.limit(kind) {
                            prop_assert!(
                                usage.get(kind) <= limit,
                                "{} {kind}: {} > {limit}", scope.id, usage.get(kind)
                            );
                        }
                    }
                }
            }
            for headroom in ledger.headroom(&scopes[0], now) {
                prop_assert!(headroom.remaining <= headroom.limit);
            }
        }
    }

    #[test]
    fn retry_after_is_the_smallest_wait_that_fits(
        use_tokens in any::<bool>(),
        limit in 1u64..50,
        history in proptest::collection::vec((0i64..3_000, 0u64..20), 0..80),
        ask in 0u64..50,
        offset in 0i64..1_000,
    ) {
        let limits = if use_tokens { tpm(limit) } else { rpm(limit) };
        let scopes = [key(&limits)];
        let mut ledger = Ledger::new();
        let mut now = MAR_14_2024;
        for (gap, tokens) in history {
            now += gap;
            let _ = ledger.reserve(&scopes, Ask::new(tokens, 0), now);
        }
        now += offset;
        let ask = Ask::new(ask, 0);
        if let Err(refused) = ledger.reserve(&scopes, ask, now) {
            let wait = i64::try_from(refused.retry_after_secs).unwrap();
            prop_assert!((1..=60).contains(&wait));
            if refused.never_fits {
                prop_assert!(ask.amount(refused.kind).max(1) > limit);
            } else {
                prop_assert!(ledger.clone().reserve(&scopes, ask, now + wait * SEC).is_ok());
                if wait > 1 {
                    let early = ledger.clone().reserve(&scopes, ask, now + (wait - 1) * SEC);
                    prop_assert!(early.is_err());
                }
            }
        }
    }

    #[test]
    fn civil_dates_round_trip(days in -1_000_000i64..1_000_000) {
        let (year, month, day) = calendar::civil_from_days(days);
        prop_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
        prop_assert_eq!(calendar::days_from_civil(year, month, day), days);
        // The month of a day starts on or before it and the next one starts after it.
        let this = calendar::month_of_day(days);
        prop_assert!(calendar::month_start_ms(this) <= calendar::day_start_ms(days));
        prop_assert!(calendar::month_start_ms(this + 1) > calendar::day_start_ms(days));
    }
}
