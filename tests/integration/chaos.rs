//! The chaos suite: the money scenarios again, with the emulator failing as DynamoDB and SQS do
//! (`TransactionConflict`, throttling, 5xx, and writes applied whose answer was lost) on a
//! large fraction of requests. After each: no 500, every accepted request applied exactly once,
//! and the ledger audit clean.
//!
//! Faults are seeded: `PURSE_CHAOS_SEED=<n>` replays a run (`make chaos` picks a random seed
//! and prints it); every scenario prints its seed and what was injected.

use purse::domain::ids::{TransactionId, UserId};
use purse::ledger::store::{self, LedgerError};
use purse::ledger::{AccountId, NewHold, NewTransaction, Side, SystemAccount, TransactionType};
use purse::money::{Amount, Currency};
use purse::store::StoreError;
use purse_tests::{eventually, Sandbox, TestApp, TestResponse};
use serde_json::json;
use std::time::Duration;

/// At least 15 % of every DynamoDB request fails; a quarter of transactions.
const RATES: &str = "conflict=0.10,throttle=0.07,internal=0.04,lost_response=0.04";

fn seed(scenario: u64) -> u64 {
    std::env::var("PURSE_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7) + scenario
}

async fn chaos_on(app: &TestApp, scenario: u64) -> u64 {
    let seed = seed(scenario);
    eprintln!("chaos scenario {scenario}: faults {RATES},seed={seed} (replay: PURSE_CHAOS_SEED={})", seed - scenario);
    app.set_faults(&format!("{RATES},seed={seed}")).await;
    seed
}

/// Turns faults off, prints what was injected and the retries they caused, checks that every
/// kind of fault fired, and audits the ledger.
async fn chaos_off_and_audit(app: &TestApp, scenario: &str, before: (u64, u64, u64)) {
    app.faults_off().await;
    let report = app.fault_report().await;
    let (conflicts, transient, exhausted) = purse::retry::COUNTERS.snapshot();
    eprintln!(
        "chaos {scenario}: {} requests, injected {}, token replays {}; transaction retries (process-wide delta): \
         conflict {}, transient {}, gave up {}",
        report["requests"],
        report["injected"],
        report["token_replays"],
        conflicts - before.0,
        transient - before.1,
        exhausted - before.2
    );
    let injected: u64 = report["injected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(injected > 0, "{scenario}: no fault was injected: {report}");
    app.assert_ledger_balanced().await;
}

/// Sends until the answer is not "retry later" (503, or 409 while the first request with the
/// key runs), as a well-behaved client does; a 500 fails the test at once.
async fn until_answered<F, Fut>(what: &str, mut send: F) -> TestResponse
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResponse>,
{
    for _ in 0..60 {
        let r = send().await;
        assert_ne!(r.status, 500, "{what}: a 500 under faults: {}", r.text);
        let retry = r.status == 503 || r.code() == "idempotency_request_in_progress";
        if !retry {
            return r;
        }
        assert!(r.header("retry-after").is_some(), "{what}: {} without Retry-After", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: still unavailable after 60 tries");
}

fn coins(text: &str) -> Amount {
    Amount::parse(text, Currency::Coin).unwrap()
}

async fn funded_user(app: &TestApp, amount: &str) -> UserId {
    let (id, _) = app.user_token().await;
    let user = UserId::parse(&id).unwrap();
    let deposit = NewTransaction {
        id: TransactionId::generate(),
        user_id: user.clone(),
        kind: TransactionType::Deposit,
        amount: coins(amount),
        currency: Currency::Coin,
        debit: Side::System(SystemAccount::RevioClearing),
        credit: Side::Account(AccountId::wallet(&user)),
        description: "test".into(),
        reference: None,
    };
    store::record_pending(&app.table, &deposit, None).await.unwrap();
    store::post(&app.table, &deposit.id).await.unwrap();
    user
}

fn transient(e: &LedgerError) -> bool {
    matches!(e, LedgerError::Store(StoreError::Unavailable(_)))
}

#[tokio::test]
async fn concurrent_sign_ups_under_faults_create_each_account_once() {
    let app = TestApp::spawn().await;
    let before = purse::retry::COUNTERS.snapshot();
    chaos_on(&app, 1).await;
    let emails: Vec<String> = (0..12).map(|i| format!("chaos-{i}-{}@example.com", ulid::Ulid::new())).collect();
    let shared = format!("shared-{}@example.com", ulid::Ulid::new());
    let body = |email: &str| json!({"email": email, "password": "correct-horse-battery"});
    let distinct = futures::future::join_all(emails.iter().map(|e| {
        let app = &app;
        let b = body(e);
        async move { until_answered("sign-up", || app.post("/v1/auth/register", &b, None)).await }
    }));
    let same = futures::future::join_all((0..10).map(|_| {
        let app = &app;
        let b = body(&shared);
        async move { until_answered("same sign-up", || app.post("/v1/auth/register", &b, None)).await }
    }));
    let (distinct, same) = futures::join!(distinct, same);
    chaos_off_and_audit(&app, "sign-ups", before).await;
    for r in &distinct {
        // 201, or 409 when our own first attempt was applied but its answer was lost.
        assert!(r.status == 201 || r.code() == "email_taken", "{}", r.text);
    }
    assert!(same.iter().filter(|r| r.status == 201).count() <= 1, "{same:?}");
    assert!(same.iter().all(|r| r.status == 201 || r.code() == "email_taken"), "{same:?}");
    // Every account exists exactly once and signs in.
    for email in emails.iter().chain(std::iter::once(&shared)) {
        let r = app.post("/v1/auth/login", &body(email), None).await;
        assert_eq!(r.status, 200, "{email}: {}", r.text);
    }
}

#[tokio::test]
async fn concurrent_transfers_and_holds_under_faults_never_overdraw_and_apply_once() {
    let app = TestApp::spawn().await;
    let user = funded_user(&app, "100.00").await;
    let before = purse::retry::COUNTERS.snapshot();
    chaos_on(&app, 2).await;
    let fees: Vec<NewTransaction> = (0..15)
        .map(|_| NewTransaction {
            id: TransactionId::generate(),
            user_id: user.clone(),
            kind: TransactionType::GameFee,
            amount: coins("5.00"),
            currency: Currency::Coin,
            debit: Side::Account(AccountId::wallet(&user)),
            credit: Side::System(SystemAccount::PlatformRevenue),
            description: "fee".into(),
            reference: None,
        })
        .collect();
    let holds: Vec<NewHold> = (0..15)
        .map(|_| NewHold {
            id: TransactionId::generate(),
            user_id: user.clone(),
            kind: TransactionType::CallCharge,
            amount: coins("5.00"),
            currency: Currency::Coin,
            credit: Side::System(SystemAccount::PlatformRevenue),
            description: "call".into(),
            reference: None,
        })
        .collect();
    // A caller repeats a movement the store could not confirm; `Duplicate` then means "done".
    let transfers = futures::future::join_all(fees.iter().map(|f| async {
        loop {
            match store::transfer(&app.table, f).await {
                Ok(_) | Err(LedgerError::Duplicate) => return true,
                Err(LedgerError::InsufficientFunds) => return false,
                Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("transfer: {e}"),
            }
        }
    }));
    let held = futures::future::join_all(holds.iter().map(|h| async {
        loop {
            match store::hold(&app.table, h).await {
                Ok(_) | Err(LedgerError::Duplicate) => return true,
                Err(LedgerError::InsufficientFunds) => return false,
                Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("hold: {e}"),
            }
        }
    }));
    let (transfers, held) = futures::join!(transfers, held);
    // Half of the holds are then posted, the rest released, concurrently and repeated.
    let app_ref = &app;
    futures::future::join_all(holds.iter().zip(&held).enumerate().filter(|(_, (_, ok))| **ok).map(
        |(i, (h, _))| async move {
            let app = app_ref;
            loop {
                let r = if i % 2 == 0 {
                    store::post(&app.table, &h.id).await
                } else {
                    store::fail(&app.table, &h.id, "released").await
                };
                match r {
                    Ok(_) => return,
                    Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(e) => panic!("settle hold: {e}"),
                }
            }
        },
    ))
    .await;
    chaos_off_and_audit(&app, "transfers and holds", before).await;
    let applied = transfers.iter().filter(|t| **t).count() + held.iter().filter(|h| **h).count();
    assert_eq!(applied, 20, "100.00 covers exactly twenty movements of 5.00");
    let mut stored = 0;
    for id in fees.iter().map(|f| &f.id).chain(holds.iter().map(|h| &h.id)) {
        if store::get_transaction(&app.table, id).await.unwrap().is_some() {
            stored += 1;
        }
    }
    assert_eq!(stored, applied, "every movement that answered 'done' is stored once, no other");
    let (balance, available, held_now) = app.wallet_of(user.as_str()).await;
    assert_eq!(held_now, "0.00");
    assert_eq!(available, balance);
    let released = held.iter().enumerate().filter(|(i, ok)| **ok && i % 2 == 1).count();
    assert_eq!(balance, purse::money::format(rust_decimal::Decimal::from(released as i64 * 5), Currency::Coin));
}

async fn deposit(app: &TestApp, token: &str, amount: &str, key: &str) -> TestResponse {
    app.post_with("/v1/deposits", &json!({"amount": amount}), Some(token), &[("idempotency-key", key)]).await
}

#[tokio::test]
async fn fifty_requests_with_one_idempotency_key_under_faults_create_one_deposit() {
    let app = TestApp::spawn_serving().await;
    let (user, token) = app.user_token().await;
    let before = purse::retry::COUNTERS.snapshot();
    chaos_on(&app, 3).await;
    let key = ulid::Ulid::new().to_string();
    let answers =
        futures::future::join_all((0..50).map(|_| until_answered("deposit", || deposit(&app, &token, "25.00", &key))))
            .await;
    chaos_off_and_audit(&app, "one idempotency key", before).await;
    let ids: std::collections::BTreeSet<String> =
        answers.iter().map(|r| r.json["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(answers.iter().all(|r| r.status == 201), "{answers:?}");
    assert_eq!(ids.len(), 1, "one deposit for one key: {ids:?}");
    let history = app.get("/v1/transactions", Some(&token)).await;
    assert_eq!(history.json["items"].as_array().unwrap().len(), 1, "{}", history.text);
    let used =
        purse::ledger::Quota::used(&app.table, &format!("DEPCAP#{user}#{}", chrono::Utc::now().format("%Y-%m-%d")))
            .await
            .unwrap();
    assert_eq!(used, rust_decimal::Decimal::new(2500, 2), "the daily allowance is counted once");
}

async fn webhook_receiving_app() -> (TestApp, String) {
    let app = TestApp::spawn_serving().await;
    // Redeliver quickly: a message whose processing met a fault comes back in a second.
    let sqs = aws_sdk_sqs::Client::new(&app.aws);
    let queue = app.stack.get("RevioEventsQueue").unwrap().reference.clone();
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    let (_, token) = app.user_token().await;
    // A long poll already waiting keeps the visibility it started with: let it end first.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    (app, token)
}

/// Delivers a purchase's webhook `times` times at once, then again until one is accepted (as
/// Revio retries any answer but 2xx).
async fn deliver_until_accepted(sandbox: &Sandbox, purchase: &str, times: u32) {
    let codes = sandbox.deliver(purchase, json!({"times": times, "concurrent": true})).await;
    assert!(!codes.contains(&Some(500)), "a 500 under faults: {codes:?}");
    if codes.contains(&Some(200)) {
        return;
    }
    for _ in 0..30 {
        let codes = sandbox.deliver(purchase, json!({})).await;
        assert!(!codes.contains(&Some(500)), "a 500 under faults: {codes:?}");
        if codes.contains(&Some(200)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no delivery accepted");
}

#[tokio::test]
async fn fifty_concurrent_webhook_duplicates_under_faults_credit_once() {
    let _exclusive = purse_tests::SandboxFaults::take().await;
    let (app, token) = webhook_receiving_app().await;
    let sandbox = Sandbox::new();
    let key = ulid::Ulid::new().to_string();
    let r = until_answered("deposit", || deposit(&app, &token, "40.00", &key)).await;
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();
    let user = app.get("/v1/me", Some(&token)).await.json["id"].as_str().unwrap().to_owned();
    sandbox.faults(json!({"lose_webhooks": 1})).await;
    sandbox.pay(&purchase).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sandbox.faults(json!({"lose_webhooks": 0})).await;

    let before = purse::retry::COUNTERS.snapshot();
    chaos_on(&app, 4).await;
    deliver_until_accepted(&sandbox, &purchase, 50).await;
    eventually(60, "the deposit to be credited", || async {
        let r = app.get(&format!("/v1/transactions/{txn}"), Some(&token)).await;
        (r.json["status"] == "COMPLETED").then_some(())
    })
    .await;
    // Let any redelivered duplicates run under faults too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    chaos_off_and_audit(&app, "webhook duplicates", before).await;
    assert_eq!(app.wallet_of(&user).await.0, "40.00", "credited exactly once");
}

#[tokio::test]
async fn settlement_and_reconciliation_under_faults_credit_every_paid_deposit_once() {
    let _exclusive = purse_tests::SandboxFaults::take().await;
    let (app, token) = webhook_receiving_app().await;
    let sandbox = Sandbox::new();
    let user = app.get("/v1/me", Some(&token)).await.json["id"].as_str().unwrap().to_owned();
    let before = purse::retry::COUNTERS.snapshot();
    chaos_on(&app, 5).await;
    let mut deposits = Vec::new();
    for _ in 0..6 {
        let key = ulid::Ulid::new().to_string();
        let r = until_answered("deposit", || deposit(&app, &token, "10.00", &key)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        deposits.push((r.json["id"].as_str().unwrap().to_owned(), r.json["reference"].as_str().unwrap().to_owned()));
    }
    // Half are settled by their webhooks, half lose theirs and are left to reconciliation.
    for (i, (_, purchase)) in deposits.iter().enumerate() {
        sandbox.faults(json!({"lose_webhooks": if i % 2 == 0 { 0 } else { 1 }})).await;
        sandbox.pay(purchase).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sandbox.faults(json!({"lose_webhooks": 0})).await;
    let revio = app.revio_client().await;
    let config = super::deposits::reconcile_now();
    eventually(90, "every deposit to be credited", || async {
        // Reconciliation runs under the same faults; its errors are retried by the next run.
        let report = purse::service::settlement::reconcile_pending_deposits(&app.table, &revio, config).await;
        let mut done = 0;
        for (txn, _) in &deposits {
            let r = app.get(&format!("/v1/transactions/{txn}"), Some(&token)).await;
            assert_ne!(r.status, 500, "{}", r.text);
            if r.json["status"] == "COMPLETED" {
                done += 1;
            }
        }
        eprintln!("reconciliation under faults: {report:?}; {done} of {} credited", deposits.len());
        (done == deposits.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    chaos_off_and_audit(&app, "settlement and reconciliation", before).await;
    assert_eq!(app.wallet_of(&user).await.0, "60.00", "six deposits of 10.00, each credited once");
}

/// Not a test: a measurement for `docs/benchmarks.md` (run with
/// `tools/stack/with-stack.sh cargo test -p purse-tests --test integration chaos::added_latency -- --ignored --nocapture`).
/// Creates deposits one after another with faults off, then on, and prints the latency of each.
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn added_latency_per_request_at_the_chaos_fault_rate() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    let measure = |label: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let mut ms = Vec::new();
            for _ in 0..60 {
                let key = ulid::Ulid::new().to_string();
                let started = std::time::Instant::now();
                let r = until_answered("deposit", || deposit(app, &token, "10.00", &key)).await;
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(r.status, 201, "{}", r.text);
                let started = std::time::Instant::now();
                until_answered("wallet", || app.get("/v1/wallet", Some(&token))).await;
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            ms.sort_by(f64::total_cmp);
            let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q) as usize];
            eprintln!(
                "{label}: {} requests, median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
                ms.len(),
                pick(0.5),
                pick(0.95),
                pick(1.0)
            );
        }
    };
    measure("faults off").await;
    chaos_on(&app, 9).await;
    measure("faults on").await;
    app.faults_off().await;
    eprintln!("injected: {}", app.fault_report().await);
}

#[tokio::test]
async fn a_chargeback_and_a_case_credit_under_faults_each_apply_exactly_once() {
    let _exclusive = purse_tests::SandboxFaults::take().await;
    let (app, token) = webhook_receiving_app().await;
    let sandbox = Sandbox::new();
    let revio = app.revio_client().await;
    let admin = app.admin_token().await;
    let user = app.get("/v1/me", Some(&token)).await.json["id"].as_str().unwrap().to_owned();
    let uid = UserId::parse(&user).unwrap();
    // Faults off: a credited deposit of 50.00, 30.00 of it spent; and a deposit we failed whose
    // purchase the person then paid (a case for an operator).
    let key = ulid::Ulid::new().to_string();
    let first = deposit(&app, &token, "50.00", &key).await;
    let (txn, purchase) =
        (first.json["id"].as_str().unwrap().to_owned(), first.json["reference"].as_str().unwrap().to_owned());
    sandbox.pay(&purchase).await;
    eventually(30, "the deposit to be credited", || async {
        (app.get(&format!("/v1/transactions/{txn}"), Some(&token)).await.json["status"] == "COMPLETED").then_some(())
    })
    .await;
    let fee = NewTransaction {
        id: TransactionId::generate(),
        user_id: uid.clone(),
        kind: TransactionType::GameFee,
        amount: coins("30.00"),
        currency: Currency::Coin,
        debit: Side::Account(AccountId::wallet(&uid)),
        credit: Side::System(SystemAccount::PlatformRevenue),
        description: "fee".into(),
        reference: None,
    };
    store::transfer(&app.table, &fee).await.unwrap();
    let second = deposit(&app, &token, "20.00", &ulid::Ulid::new().to_string()).await;
    let (late, late_purchase) =
        (second.json["id"].as_str().unwrap().to_owned(), second.json["reference"].as_str().unwrap().to_owned());
    store::fail(&app.table, &TransactionId::parse(&late).unwrap(), "provider_unavailable").await.unwrap();

    let before = purse::retry::COUNTERS.snapshot();
    chaos_on(&app, 6).await;
    // The chargeback, settled by its webhook and by ten concurrent settlements besides.
    let charged = reqwest::Client::new()
        .post(format!("{}/_sandbox/purchases/{purchase}/chargeback", sandbox.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(charged.status().is_success());
    let outcomes = futures::future::join_all((0..10).map(|_| async {
        loop {
            match purse::service::settlement::settle_purchase(&app.table, &revio, &purchase).await {
                Ok(o) => return o,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }))
    .await;
    assert!(outcomes.iter().filter(|o| matches!(o, purse::service::settlement::Outcome::Reversed(_))).count() <= 1);
    // The late payment opens a case, which ten admins credit at once.
    sandbox.pay(&late_purchase).await;
    let case_id = eventually(60, "the case to open", || async {
        let r = until_answered("cases", || app.get("/v1/admin/cases", Some(&admin))).await;
        r.json["items"].as_array().and_then(|cases| {
            cases
                .iter()
                .find(|c| c["purchase_id"] == late_purchase.as_str())
                .map(|c| c["case_id"].as_str().unwrap().to_owned())
        })
    })
    .await;
    let path = format!("/v1/admin/cases/{case_id}/resolve");
    let body = json!({"action": "credit", "reason": "paid late, confirmed with Revio"});
    let answers =
        futures::future::join_all((0..10).map(|_| until_answered("resolve", || app.post(&path, &body, Some(&admin)))))
            .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    chaos_off_and_audit(&app, "chargeback and case credit", before).await;
    assert!(answers.iter().all(|r| r.status == 200 || r.code() == "case_already_resolved"), "{answers:?}");
    assert!(answers.iter().filter(|r| r.status == 200).count() >= 1);
    // 50 credited, 30 spent, 20 taken back by the chargeback (30 more owed), 20 credited by the
    // case: the wallet holds 20.00 and owes 30.00, once each.
    assert_eq!(app.wallet_of(&user).await.0, "20.00");
    let account =
        purse::store::get_item(&app.table, store::account_key(&AccountId::wallet(&uid))).await.unwrap().unwrap();
    assert_eq!(
        account.get("shortfall").and_then(|v| v.as_n().ok()).map(|n| n.parse::<rust_decimal::Decimal>().unwrap()),
        Some(rust_decimal::Decimal::new(3000, 2))
    );
}
