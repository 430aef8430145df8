//! Refunds and chargebacks (issue 6, section 4 item 2): a purchase Revio takes back after its
//! deposit was credited reverses the deposit on the ledger exactly once; what the wallet can no
//! longer cover is recorded as a shortfall that restricts the wallet (no debit, no hold) until a
//! later credit covers it. A refund of a deposit that was never credited moves nothing.
//!
//! Every scenario goes through the Revio sandbox, the webhook pipeline and SQS, as in production,
//! and ends with the ledger audit.

use purse::domain::ids::{TransactionId, UserId};
use purse::ledger::store::{self, LedgerError};
use purse::ledger::{AccountId, NewHold, NewTransaction, Side, SystemAccount, TransactionType};
use purse::money::{Amount, Currency};
use purse::service::cases::{self, CaseKind, ResolveAction, ResolveInput};
use purse::service::settlement::{self, Outcome};
use purse::store::item::ItemExt;
use purse_tests::{eventually, Sandbox, TestApp};
use rust_decimal::Decimal;
use serde_json::{json, Value};

async fn deposit(app: &TestApp, token: &str, amount: &str) -> (String, String) {
    let key = format!("key-{}", ulid::Ulid::new());
    let r = app.post_with("/v1/deposits", &json!({"amount": amount}), Some(token), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.json["id"].as_str().unwrap().to_owned(), r.json["reference"].as_str().unwrap().to_owned())
}

/// A deposit of `amount`, paid at Revio and credited by its webhook; (transaction id, purchase id).
async fn paid_deposit(app: &TestApp, sandbox: &Sandbox, token: &str, amount: &str) -> (String, String) {
    let (txn, purchase) = deposit(app, token, amount).await;
    sandbox.pay(&purchase).await;
    wait_for_status(app, token, &txn, "COMPLETED").await;
    (txn, purchase)
}

async fn transaction(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/v1/transactions/{id}"), Some(token)).await.json
}

async fn wait_for_status(app: &TestApp, token: &str, id: &str, want: &str) {
    eventually(20, &format!("deposit {id} to become {want}"), || async {
        (transaction(app, token, id).await["status"] == want).then_some(())
    })
    .await;
}

/// What Revio's dashboard (or the payer's bank) does to a purchase: `refund`, `chargeback`.
async fn sandbox_action(sandbox: &Sandbox, purchase: &str, action: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/purchases/{purchase}/{action}", sandbox.base))
        .json(&json!({}))
        .send()
        .await
        .expect("sandbox reachable");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "sandbox {action} {purchase}: {status} {body}");
    body
}

async fn webhook_log(app: &TestApp, admin: &str, txn: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/admin/transactions/{txn}/webhooks"), Some(admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["deliveries"].as_array().unwrap().clone()
}

/// Waits until at least `at_least` deliveries of `event_type` are logged for `txn` and every
/// delivery of the transaction is processed; returns the log.
async fn processed_log(app: &TestApp, admin: &str, txn: &str, event_type: &str, at_least: usize) -> Vec<Value> {
    eventually(30, &format!("{at_least} {event_type} deliveries of {txn} to be processed"), || async {
        let log = webhook_log(app, admin, txn).await;
        let seen = log.iter().filter(|d| d["event_type"] == event_type).count();
        let done = seen >= at_least && log.iter().all(|d| d["outcome"] != "QUEUED");
        done.then_some(log)
    })
    .await
}

/// The user's movements of one type, newest first, as the API lists them.
async fn history_of_type(app: &TestApp, token: &str, kind: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/transactions?type={kind}&limit=100"), Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().unwrap().clone()
}

fn coins(text: &str) -> Amount {
    Amount::parse(text, Currency::Coin).unwrap()
}

fn user_id(user: &str) -> UserId {
    UserId::parse(user).unwrap()
}

/// Spending from the wallet: a game fee to the platform.
fn game_fee(user: &str, amount: &str) -> NewTransaction {
    let id = user_id(user);
    NewTransaction {
        id: TransactionId::generate(),
        user_id: id.clone(),
        kind: TransactionType::GameFee,
        amount: coins(amount),
        currency: Currency::Coin,
        debit: Side::Account(AccountId::wallet(&id)),
        credit: Side::System(SystemAccount::PlatformRevenue),
        description: "game fee".into(),
        reference: None,
    }
}

/// Reserving money on the wallet: a withdrawal.
fn withdrawal_hold(user: &str, amount: &str) -> NewHold {
    NewHold {
        id: TransactionId::generate(),
        user_id: user_id(user),
        kind: TransactionType::Withdrawal,
        amount: coins(amount),
        currency: Currency::Coin,
        credit: Side::System(SystemAccount::RevioClearing),
        description: "withdrawal".into(),
        reference: None,
    }
}

/// The wallet's `shortfall` attribute: what a reversal left uncovered (`None`: not restricted).
async fn shortfall_of(app: &TestApp, user: &str) -> Option<Decimal> {
    let key = store::account_key(&AccountId::wallet(&user_id(user)));
    let item = purse::store::get_item(&app.table, key).await.unwrap().expect("wallet exists");
    item.contains_key("shortfall").then(|| item.decimal("shortfall").unwrap())
}

/// What all users owe together: minus the receivables account's balance over every shard.
async fn owed_to_receivables(app: &TestApp) -> Decimal {
    let mut total = Decimal::ZERO;
    for shard in 0..purse::ledger::SYSTEM_ACCOUNT_SHARDS {
        let id = AccountId::system(SystemAccount::Receivables, shard);
        if let Some(a) = store::get_account(&app.table, &id).await.unwrap() {
            total -= a.balance;
        }
    }
    total
}

async fn is_restricted(app: &TestApp, user: &str) -> bool {
    store::restricted_wallets(&app.table, 100).await.unwrap().contains(&user_id(user))
}

#[tokio::test]
async fn a_refund_of_a_credited_deposit_reverses_it_exactly_once() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let revio = app.revio_client().await;
    let (user, token) = app.user_token().await;
    let (txn, purchase) = paid_deposit(&app, &sandbox, &token, "50.00").await;
    assert_eq!(app.wallet_of(&user).await, ("50.00".into(), "50.00".into(), "0.00".into()));

    // The refund's webhook races ten settlements of the same purchase (reconciliation, retries).
    sandbox_action(&sandbox, &purchase, "refund").await;
    let direct = futures::future::join_all((0..10).map(|_| settlement::settle_purchase(&app.table, &revio, &purchase)))
        .await
        .into_iter()
        .map(|o| o.expect("settles"))
        .collect::<Vec<_>>();
    assert!(direct.iter().all(|o| matches!(o, Outcome::Reversed(_) | Outcome::AlreadyReversed(_))), "{direct:?}");
    eventually(20, "the wallet to be emptied by the refund", || async {
        (app.wallet_of(&user).await.0 == "0.00").then_some(())
    })
    .await;

    let codes = sandbox.deliver(&purchase, json!({"times": 10, "concurrent": true})).await;
    assert_eq!(codes, vec![Some(200); 10], "every redelivery is acknowledged");
    let admin = app.admin_token().await;
    let log = processed_log(&app, &admin, &txn, "purchase.refunded", 11).await;

    let by_webhook = log.iter().filter(|d| d["outcome"] == "REVERSED").count();
    let by_settlement = direct.iter().filter(|o| matches!(o, Outcome::Reversed(_))).count();
    assert_eq!(by_webhook + by_settlement, 1, "reversed once in all: {direct:?} {log:#?}");
    assert_eq!(app.wallet_of(&user).await, ("0.00".into(), "0.00".into(), "0.00".into()));
    let reversals = history_of_type(&app, &token, "REVERSAL").await;
    assert_eq!(reversals.len(), 1, "{reversals:#?}");
    assert_eq!(reversals[0]["amount"], "50.00");
    assert_eq!(reversals[0]["direction"], "debit");
    assert_eq!(reversals[0]["status"], "COMPLETED");
    assert_eq!(reversals[0]["reference"], txn.as_str(), "the reversal names the deposit it reverses");
    assert_eq!(transaction(&app, &token, &txn).await["status"], "COMPLETED", "the deposit itself stays as it was");
    assert_eq!(shortfall_of(&app, &user).await, None, "the wallet covered it all: not restricted");
    assert_eq!(owed_to_receivables(&app).await, Decimal::ZERO);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_chargeback_the_wallet_cannot_cover_records_the_shortfall_and_restricts_the_wallet_until_covered() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let revio = app.revio_client().await;
    let (user, token) = app.user_token().await;
    let (_, purchase) = paid_deposit(&app, &sandbox, &token, "50.00").await;
    store::transfer(&app.table, &game_fee(&user, "30.00")).await.expect("the wallet may spend");
    assert_eq!(app.wallet_of(&user).await.0, "20.00");

    sandbox_action(&sandbox, &purchase, "chargeback").await;
    eventually(20, "the chargeback to be applied", || async { shortfall_of(&app, &user).await }).await;
    assert_eq!(app.wallet_of(&user).await, ("0.00".into(), "0.00".into(), "0.00".into()));
    assert_eq!(shortfall_of(&app, &user).await, Some(Decimal::new(3000, 2)));
    assert_eq!(owed_to_receivables(&app).await, Decimal::new(3000, 2), "the 30.00 is owed");
    assert!(is_restricted(&app, &user).await, "listed among restricted wallets");
    app.assert_ledger_balanced().await;
    let reversals = history_of_type(&app, &token, "REVERSAL").await;
    assert!(reversals.iter().any(|r| r["amount"] == "20.00" && r["direction"] == "debit"), "{reversals:#?}");
    assert!(
        reversals.iter().any(|r| r["amount"] == "30.00" && r["direction"] == "none"),
        "the uncovered part is owed, not taken from the wallet: {reversals:#?}"
    );

    let refused = store::transfer(&app.table, &game_fee(&user, "1.00")).await;
    assert!(matches!(refused, Err(LedgerError::WalletRestricted)), "{refused:?}");
    let refused = store::hold(&app.table, &withdrawal_hold(&user, "1.00")).await;
    assert!(matches!(refused, Err(LedgerError::WalletRestricted)), "{refused:?}");

    // New money arrives: the wallet may be credited, but it stays restricted while it owes,
    // even with enough available to pay for the debit.
    paid_deposit(&app, &sandbox, &token, "40.00").await;
    assert_eq!(app.wallet_of(&user).await, ("40.00".into(), "40.00".into(), "0.00".into()));
    let refused = store::transfer(&app.table, &game_fee(&user, "5.00")).await;
    assert!(matches!(refused, Err(LedgerError::WalletRestricted)), "{refused:?}");
    let refused = store::hold(&app.table, &withdrawal_hold(&user, "5.00")).await;
    assert!(matches!(refused, Err(LedgerError::WalletRestricted)), "{refused:?}");
    assert_eq!(app.wallet_of(&user).await.0, "40.00", "nothing moved");
    app.assert_ledger_balanced().await;

    // Reconciliation covers the shortfall from the new money and lifts the restriction.
    let report =
        settlement::reconcile_pending_deposits(&app.table, &revio, super::deposits::reconcile_now()).await.unwrap();
    assert_eq!(report.shortfalls_recovered, 1, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(app.wallet_of(&user).await, ("10.00".into(), "10.00".into(), "0.00".into()));
    assert_eq!(shortfall_of(&app, &user).await, None);
    assert!(!is_restricted(&app, &user).await);
    assert_eq!(owed_to_receivables(&app).await, Decimal::ZERO, "nothing is owed any more");
    app.assert_ledger_balanced().await;

    store::transfer(&app.table, &game_fee(&user, "5.00")).await.expect("spending works again");
    store::hold(&app.table, &withdrawal_hold(&user, "1.00")).await.expect("holds work again");
    assert_eq!(app.wallet_of(&user).await, ("5.00".into(), "4.00".into(), "1.00".into()));
    // A second pass finds nothing more to recover.
    let again =
        settlement::reconcile_pending_deposits(&app.table, &revio, super::deposits::reconcile_now()).await.unwrap();
    assert_eq!((again.shortfalls_recovered, again.errors), (0, 0), "{again:?}");
    app.assert_ledger_balanced().await;
}

/// A deposit we failed whose payment Revio still collected (say the expiry failed it while the
/// payer was paying): settlement opens a `PAID_AFTER_FAILED` case, whose id this is.
async fn paid_after_failed(app: &TestApp, sandbox: &Sandbox, token: &str, amount: &str) -> (String, String, String) {
    let (txn, purchase) = deposit(app, token, amount).await;
    store::fail(&app.table, &TransactionId::parse(&txn).unwrap(), "expired").await.unwrap();
    sandbox.pay(&purchase).await;
    let case_id = cases::case_id(CaseKind::PaidAfterFailed, &purchase);
    eventually(20, "the paid-after-failed case to be opened", || async {
        cases::get(&app.table, &case_id).await.unwrap().filter(|c| c.status == "OPEN").map(|_| ())
    })
    .await;
    (txn, purchase, case_id)
}

#[tokio::test]
async fn a_refund_after_the_deposit_failed_changes_nothing() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let revio = app.revio_client().await;
    let (user, token) = app.user_token().await;
    let (txn, purchase, case_id) = paid_after_failed(&app, &sandbox, &token, "30.00").await;

    // The operator gives the money back: Revio refunds and announces it with a webhook.
    let input = ResolveInput { action: ResolveAction::Refund, reason: "payer asked; deposit had expired".into() };
    let case = cases::resolve(&app.table, &revio, &case_id, &input, "operator:test").await.expect("resolves");
    assert_eq!(case.status, "RESOLVED");
    let admin = app.admin_token().await;
    let log = processed_log(&app, &admin, &txn, "purchase.refunded", 1).await;
    let refunds: Vec<_> = log.iter().filter(|d| d["event_type"] == "purchase.refunded").collect();
    assert_eq!(refunds[0]["outcome"], "ALREADY_FAILED", "{log:#?}");

    // Again, through every path: redeliveries and a direct settlement.
    let codes = sandbox.deliver(&purchase, json!({"times": 5, "concurrent": true})).await;
    assert_eq!(codes, vec![Some(200); 5]);
    processed_log(&app, &admin, &txn, "purchase.refunded", 6).await;
    let outcome = settlement::settle_purchase(&app.table, &revio, &purchase).await.unwrap();
    assert!(matches!(outcome, Outcome::AlreadyFailed(_)), "{outcome:?}");

    let view = transaction(&app, &token, &txn).await;
    assert_eq!((view["status"].as_str(), view["failure_reason"].as_str()), (Some("FAILED"), Some("expired")));
    assert_eq!(app.wallet_of(&user).await, ("0.00".into(), "0.00".into(), "0.00".into()));
    assert!(history_of_type(&app, &token, "REVERSAL").await.is_empty());
    assert_eq!(shortfall_of(&app, &user).await, None);
    assert_eq!(owed_to_receivables(&app).await, Decimal::ZERO);
    assert!(cases::list_open(&app.table, 100).await.unwrap().is_empty(), "no case left open");
    app.assert_ledger_balanced().await;
}

/// Fails on today's code: settlement finds the purchase's FAILED deposit and stops there, so the
/// operator's credit (a DEPOSIT movement of its own, referencing the purchase) is never reversed.
#[tokio::test]
async fn a_chargeback_of_a_payment_an_operator_credited_takes_the_credit_back() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let revio = app.revio_client().await;
    let (user, token) = app.user_token().await;
    let (_, purchase, case_id) = paid_after_failed(&app, &sandbox, &token, "30.00").await;
    let input = ResolveInput { action: ResolveAction::Credit, reason: "paid in good faith".into() };
    cases::resolve(&app.table, &revio, &case_id, &input, "operator:test").await.expect("resolves");
    assert_eq!(app.wallet_of(&user).await.0, "30.00");

    sandbox_action(&sandbox, &purchase, "chargeback").await;
    eventually(20, "the chargeback to take the credit back", || async {
        (app.wallet_of(&user).await.0 == "0.00").then_some(())
    })
    .await;
    assert_eq!(history_of_type(&app, &token, "REVERSAL").await.len(), 1);
    app.assert_ledger_balanced().await;
}
