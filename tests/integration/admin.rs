//! Operators over the API: manual adjustments of a wallet (`POST /v1/admin/adjustments`, with
//! an Idempotency-Key and a reason, against the `adjustments` system account), the month's
//! adjustments (`GET /v1/admin/adjustments`), and looking a user up by id or e-mail
//! (`GET /v1/admin/users/{id}`). Administrators only. Every money test ends with the ledger
//! audit.

use purse::domain::ids::{TransactionId, UserId};
use purse::ledger::store as ledger;
use purse::ledger::{AccountId, NewHold, NewTransaction, Side, SystemAccount, TransactionType};
use purse::money::{Amount, Currency};
use purse::store::item::ItemExt;
use purse_tests::{TestApp, TestResponse};
use serde_json::{json, Value};
use std::time::Duration;

const ADJUSTMENTS: &str = "/v1/admin/adjustments";

/// A signed-in administrator: their user id and access token.
async fn admin(app: &TestApp) -> (String, String) {
    let (email, password, profile) = app.register().await;
    let id = profile["id"].as_str().unwrap().to_owned();
    let user_id = UserId::parse(&id).unwrap();
    purse::store::users::grant_role(&app.table, &user_id, purse::domain::user::Role::Admin).await.unwrap();
    let r = app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await;
    assert_eq!(r.status, 200, "admin login: {}", r.text);
    (id, r.json["access_token"].as_str().unwrap().to_owned())
}

fn body(user: &str, direction: &str, amount: &str, reason: &str) -> Value {
    json!({"user_id": user, "direction": direction, "amount": amount, "reason": reason})
}

fn fresh_key() -> String {
    format!("adj-{}", ulid::Ulid::new())
}

async fn adjust_with_key(app: &TestApp, token: &str, key: &str, body: &Value) -> TestResponse {
    app.post_with(ADJUSTMENTS, body, Some(token), &[("idempotency-key", key)]).await
}

async fn adjust(app: &TestApp, token: &str, body: &Value) -> TestResponse {
    adjust_with_key(app, token, &fresh_key(), body).await
}

/// The user's own history of adjustments, newest first, as they see it.
async fn adjustments_in_history(app: &TestApp, user_token: &str) -> Vec<Value> {
    let r = app.get("/v1/transactions?type=ADJUSTMENT", Some(user_token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().expect("items").clone()
}

async fn listed(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let r = app.get(&format!("{ADJUSTMENTS}{query}"), Some(admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().expect("items").clone()
}

/// Sends until the answer is not "retry later" (503, or 409 while the first request with the
/// key runs), as a well-behaved client does; a 500 fails the test at once.
async fn until_answered<F, Fut>(what: &str, mut send: F) -> TestResponse
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = TestResponse>,
{
    for _ in 0..100 {
        let r = send().await;
        assert_ne!(r.status, 500, "{what}: a 500: {}", r.text);
        if r.status != 503 && r.code() != "idempotency_request_in_progress" {
            return r;
        }
        assert!(r.header("retry-after").is_some(), "{what}: {} without Retry-After", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: still unavailable after 100 tries");
}

fn coins(text: &str) -> Amount {
    Amount::parse(text, Currency::Coin).unwrap()
}

#[tokio::test]
async fn a_credit_then_a_debit_adjustment_move_the_wallet_and_show_in_the_users_history_with_the_admins_id() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let (admin_id, admin) = admin(&app).await;

    let reason = "Goodwill credit for the outage of 3 November (ticket 812)";
    let credit = adjust(&app, &admin, &body(&user, "credit", "100.00", reason)).await;
    assert_eq!(credit.status, 201, "{}", credit.text);
    let view = &credit.json;
    let credit_id = view["transaction_id"].as_str().expect("transaction_id").to_owned();
    assert!(credit_id.starts_with("txn_"), "{view}");
    assert_eq!(view["user_id"], user.as_str());
    assert_eq!(view["direction"], "credit");
    assert_eq!((view["amount"].as_str(), view["currency"].as_str()), (Some("100.00"), Some("COIN")));
    assert_eq!(view["reason"], reason);
    assert_eq!(view["adjusted_by"], admin_id.as_str());
    assert!(view["created_at"].is_string(), "{view}");
    assert_eq!(app.wallet_of(&user).await, ("100.00".into(), "100.00".into(), "0.00".into()));

    let debit = adjust(&app, &admin, &body(&user, "debit", "30.25", "Duplicate goodwill credit taken back")).await;
    assert_eq!(debit.status, 201, "{}", debit.text);
    assert_eq!(debit.json["direction"], "debit");
    let debit_id = debit.json["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(app.wallet_of(&user).await, ("69.75".into(), "69.75".into(), "0.00".into()));

    // The user sees both movements in their own history, newest first.
    let history = adjustments_in_history(&app, &token).await;
    let seen: Vec<_> = history
        .iter()
        .map(|t| (t["id"].as_str(), t["status"].as_str(), t["direction"].as_str(), t["amount"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(debit_id.as_str()), Some("COMPLETED"), Some("debit"), Some("30.25")),
            (Some(credit_id.as_str()), Some("COMPLETED"), Some("credit"), Some("100.00")),
        ]
    );

    // An operator looking the user up sees who made them and why.
    let looked_up = app.get(&format!("/v1/admin/users/{user}"), Some(&admin)).await;
    assert_eq!(looked_up.status, 200, "{}", looked_up.text);
    let recent = looked_up.json["recent_transactions"].as_array().expect("recent_transactions");
    let audit: Vec<_> = recent
        .iter()
        .map(|t| (t["id"].as_str(), t["type"].as_str(), t["adjusted_by"].as_str(), t["adjustment_reason"].as_str()))
        .collect();
    assert_eq!(
        audit,
        [
            (
                Some(debit_id.as_str()),
                Some("ADJUSTMENT"),
                Some(admin_id.as_str()),
                Some("Duplicate goodwill credit taken back")
            ),
            (Some(credit_id.as_str()), Some("ADJUSTMENT"), Some(admin_id.as_str()), Some(reason)),
        ]
    );

    // The movement item is the audit trail, listed in the month's sparse index.
    let id = TransactionId::parse(&credit_id).unwrap();
    let item = purse::store::get_item(&app.table, ledger::transaction_key(&id)).await.unwrap().expect("stored");
    let created_at = item.str("created_at").unwrap().to_owned();
    assert_eq!(item.str("type").unwrap(), "ADJUSTMENT");
    assert_eq!(item.str("adjusted_by").unwrap(), admin_id);
    assert_eq!(item.str("adjustment_reason").unwrap(), reason);
    assert_eq!(item.str("gsi2pk").unwrap(), format!("ADJUSTMENTS#{}", &created_at[..7]));
    assert_eq!(item.str("gsi2sk").unwrap(), format!("{created_at}#{credit_id}"));
    assert!(item.str("debit_account").unwrap().starts_with("system:adjustments:"), "{item:?}");
    assert_eq!(item.str("credit_account").unwrap(), format!("wallet:{user}"));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_adjustments_of_a_month_are_listed_newest_first_with_who_made_them_and_why() {
    let app = TestApp::spawn().await;
    let (first_user, _) = app.user_token().await;
    let (second_user, _) = app.user_token().await;
    let (admin_id, admin) = admin(&app).await;
    let mut made = Vec::new();
    for (user, direction, amount) in
        [(&first_user, "credit", "5.00"), (&second_user, "credit", "7.50"), (&first_user, "debit", "1.25")]
    {
        let r = adjust(&app, &admin, &body(user, direction, amount, &format!("{direction} {amount}"))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        made.push(r.json);
    }
    let month = made[0]["created_at"].as_str().unwrap()[..7].to_owned();

    let this_month = listed(&app, &admin, "").await;
    let expected: Vec<Value> = made.iter().rev().cloned().collect();
    assert_eq!(this_month, expected, "the current month by default, newest first, each as it was answered");
    assert_eq!(listed(&app, &admin, &format!("?month={month}")).await, expected);
    assert!(this_month.iter().all(|a| a["adjusted_by"] == admin_id.as_str()));
    let r = app.get(&format!("{ADJUSTMENTS}?month={month}"), Some(&admin)).await;
    assert_eq!(r.json["month"], month.as_str());

    assert!(listed(&app, &admin, "?month=1999-01").await.is_empty());
    for bad in ["2026-13", "2026-1", "november", "2026-11-01", ""] {
        let r = app.get(&format!("{ADJUSTMENTS}?month={bad}"), Some(&admin)).await;
        assert_eq!((r.status, r.code()), (400, "invalid_month"), "{bad:?}: {}", r.text);
    }
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_debit_beyond_the_available_balance_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let (_, admin) = admin(&app).await;
    let credit = adjust(&app, &admin, &body(&user, "credit", "10.00", "Opening balance")).await;
    assert_eq!(credit.status, 201, "{}", credit.text);

    let key = fresh_key();
    let too_much = body(&user, "debit", "10.01", "Take back more than there is");
    let r = adjust_with_key(&app, &admin, &key, &too_much).await;
    assert_eq!((r.status, r.code()), (422, "insufficient_funds"), "{}", r.text);
    assert_eq!(app.wallet_of(&user).await, ("10.00".into(), "10.00".into(), "0.00".into()));
    // The refusal is the key's answer: repeating the request does not try again.
    let again = adjust_with_key(&app, &admin, &key, &too_much).await;
    assert_eq!((again.status, again.code()), (422, "insufficient_funds"), "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // What counts is the available balance: money held for a withdrawal cannot be taken.
    let uid = UserId::parse(&user).unwrap();
    let hold = NewHold {
        id: TransactionId::generate(),
        user_id: uid.clone(),
        kind: TransactionType::Withdrawal,
        amount: coins("4.00"),
        currency: Currency::Coin,
        credit: Side::System(SystemAccount::RevioClearing),
        description: "test withdrawal".into(),
        reference: None,
    };
    ledger::hold(&app.table, &hold).await.unwrap();
    let r = adjust(&app, &admin, &body(&user, "debit", "6.01", "More than is available")).await;
    assert_eq!((r.status, r.code()), (422, "insufficient_funds"), "{}", r.text);
    assert_eq!(app.wallet_of(&user).await, ("10.00".into(), "6.00".into(), "4.00".into()));
    let r = adjust(&app, &admin, &body(&user, "debit", "6.00", "Exactly what is available")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(app.wallet_of(&user).await, ("4.00".into(), "0.00".into(), "4.00".into()));

    let history = adjustments_in_history(&app, &token).await;
    assert_eq!(history.len(), 2, "only the accepted adjustments are recorded: {history:?}");
    assert_eq!(listed(&app, &admin, "").await.len(), 2);
    ledger::fail(&app.table, &hold.id, "released").await.unwrap();
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_wallet_restricted_by_a_reversal_shortfall_cannot_be_debited_but_can_be_credited() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user_token().await;
    let (_, admin) = admin(&app).await;
    let uid = UserId::parse(&user).unwrap();
    // A deposit of 20.00, all of it taken back by an adjustment, then charged back: the wallet
    // owes 20.00 and is restricted.
    let deposit = NewTransaction {
        id: TransactionId::generate(),
        user_id: uid.clone(),
        kind: TransactionType::Deposit,
        amount: coins("20.00"),
        currency: Currency::Coin,
        debit: Side::System(SystemAccount::RevioClearing),
        credit: Side::Account(AccountId::wallet(&uid)),
        description: "test deposit".into(),
        reference: None,
    };
    ledger::transfer(&app.table, &deposit).await.unwrap();
    let r = adjust(&app, &admin, &body(&user, "debit", "20.00", "Credited twice by mistake")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let reversed = ledger::reverse_deposit(&app.table, &deposit.id, "chargeback").await.unwrap();
    assert_eq!(reversed.shortfall, rust_decimal::Decimal::new(2000, 2));

    let credit = adjust(&app, &admin, &body(&user, "credit", "5.00", "Goodwill")).await;
    assert_eq!(credit.status, 201, "a restricted wallet can still be credited: {}", credit.text);
    let r = adjust(&app, &admin, &body(&user, "debit", "1.00", "Take one back")).await;
    assert_eq!((r.status, r.code()), (409, "wallet_restricted"), "{}", r.text);
    assert_eq!(app.wallet_of(&user).await, ("5.00".into(), "5.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

/// Fifty copies of one request, sent at once, as an impatient client's retries arrive.
async fn fifty_at_once(app: &TestApp, admin: &str, key: &str, body: &Value) -> Vec<TestResponse> {
    futures::future::join_all((0..50).map(|_| until_answered("adjustment", || adjust_with_key(app, admin, key, body))))
        .await
}

/// Every answer is the one adjustment, and the wallet moved once.
async fn assert_made_once(app: &TestApp, admin: &str, user: &str, user_token: &str, answers: &[TestResponse]) {
    assert!(answers.iter().all(|r| r.status == 201), "{answers:?}");
    let ids: std::collections::BTreeSet<&str> =
        answers.iter().map(|r| r.json["transaction_id"].as_str().unwrap_or_default()).collect();
    assert_eq!(ids.len(), 1, "one adjustment for one key: {ids:?}");
    assert_eq!(app.wallet_of(user).await.0, "12.50");
    let history = adjustments_in_history(app, user_token).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["id"].as_str(), ids.first().copied());
    assert_eq!(listed(app, admin, "").await.len(), 1);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_idempotency_key_make_one_adjustment() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let (_, admin) = admin(&app).await;
    let key = fresh_key();
    let request = body(&user, "credit", "12.50", "Refund of a failed game fee");
    let answers = fifty_at_once(&app, &admin, &key, &request).await;
    assert!(answers.iter().filter(|r| r.header("idempotent-replayed").is_none()).count() == 1, "{answers:?}");
    assert_made_once(&app, &admin, &user, &token, &answers).await;

    // The key with another request is refused, and moves nothing.
    let other = adjust_with_key(&app, &admin, &key, &body(&user, "credit", "99.00", "Another one")).await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"), "{}", other.text);
    assert_eq!(app.wallet_of(&user).await.0, "12.50");
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_idempotency_key_make_one_adjustment_under_faults() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let (_, admin) = admin(&app).await;
    let key = fresh_key();
    let request = body(&user, "credit", "12.50", "Refund of a failed game fee");
    app.set_faults("conflict=0.10,throttle=0.07,internal=0.04,lost_response=0.04,seed=41").await;
    let answers = fifty_at_once(&app, &admin, &key, &request).await;
    app.faults_off().await;
    let report = app.fault_report().await;
    eprintln!("adjustments under faults (seed 41): {} requests, injected {}", report["requests"], report["injected"]);
    assert_made_once(&app, &admin, &user, &token, &answers).await;
}

#[tokio::test]
async fn an_adjustment_needs_a_reason_a_direction_a_strict_amount_a_known_user_and_a_key() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user_token().await;
    let (_, admin) = admin(&app).await;
    let long = "x".repeat(501);
    for (request, status, code) in [
        (json!({"user_id": user, "direction": "credit", "amount": "1.00"}), 400, "reason_required"),
        (body(&user, "credit", "1.00", ""), 400, "reason_required"),
        (body(&user, "credit", "1.00", "   "), 400, "reason_required"),
        (body(&user, "credit", "1.00", &long), 400, "reason_required"),
        (body(&user, "refund", "1.00", "why"), 400, "invalid_direction"),
        (body(&user, "CREDIT", "1.00", "why"), 400, "invalid_direction"),
        (body(&user, "credit", "0", "why"), 400, "invalid_amount"),
        (body(&user, "credit", "-1.00", "why"), 400, "invalid_amount"),
        (body(&user, "credit", "1e2", "why"), 400, "invalid_amount"),
        (body(&user, "credit", "1.005", "why"), 400, "too_many_decimals"),
        (json!({"user_id": user, "direction": "credit", "amount": 1.0, "reason": "why"}), 400, "invalid_request"),
        (
            json!({"user_id": user, "direction": "credit", "amount": "1.00", "reason": "why", "x": 1}),
            400,
            "invalid_request",
        ),
        (body(&UserId::generate().to_string(), "credit", "1.00", "why"), 404, "user_not_found"),
        (body("not-a-user", "credit", "1.00", "why"), 404, "user_not_found"),
    ] {
        let r = adjust(&app, &admin, &request).await;
        assert_eq!((r.status, r.code()), (status, code), "{request}: {}", r.text);
    }
    let r = app.post(ADJUSTMENTS, &body(&user, "credit", "1.00", "why"), Some(&admin)).await;
    assert_eq!((r.status, r.code()), (400, "idempotency_key_required"), "{}", r.text);
    assert_eq!(app.wallet_of(&user).await.0, "0.00");
    assert!(listed(&app, &admin, "").await.is_empty());
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_user_who_is_not_an_admin_gets_403_on_every_admin_route_and_nobody_signed_in_gets_401() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let credit = body(&user, "credit", "1000.00", "I deserve it");
    let r = adjust(&app, &token, &credit).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
    for path in [ADJUSTMENTS.to_owned(), format!("/v1/admin/users/{user}")] {
        let r = app.get(&path, Some(&token)).await;
        assert_eq!((r.status, r.code()), (403, "forbidden"), "{path}: {}", r.text);
        let r = app.get(&path, None).await;
        assert_eq!((r.status, r.code()), (401, "unauthorized"), "{path}: {}", r.text);
    }
    let r = app.post_with(ADJUSTMENTS, &credit, None, &[("idempotency-key", &fresh_key())]).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.text);
    assert_eq!(app.wallet_of(&user).await.0, "0.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn an_admin_looks_a_user_up_by_id_or_by_email_and_an_unknown_one_is_404() {
    let app = TestApp::spawn().await;
    let (email, _, profile) = app.register().await;
    let user = profile["id"].as_str().unwrap().to_owned();
    let (_, admin) = admin(&app).await;
    // More movements than a lookup shows.
    let mut made = Vec::new();
    for i in 1..=21 {
        let r = adjust(&app, &admin, &body(&user, "credit", &format!("{i}.00"), &format!("credit number {i}"))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        made.push(r.json["transaction_id"].as_str().unwrap().to_owned());
    }

    let by_id = app.get(&format!("/v1/admin/users/{user}"), Some(&admin)).await;
    assert_eq!(by_id.status, 200, "{}", by_id.text);
    let by_email = app.get(&format!("/v1/admin/users/{}", email.to_uppercase()), Some(&admin)).await;
    assert_eq!(by_email.status, 200, "{}", by_email.text);
    assert_eq!(by_id.json, by_email.json);

    let found = &by_id.json;
    assert!(!by_id.text.contains("password") && !by_id.text.contains("$argon2"), "{}", by_id.text);
    let p = &found["profile"];
    assert_eq!((p["id"].as_str(), p["email"].as_str()), (Some(user.as_str()), Some(email.as_str())));
    assert_eq!(p["roles"], json!(["user"]));
    assert_eq!(p["kyc_status"], "NOT_STARTED");
    assert_eq!(p["referral_code"], profile["referral_code"]);
    assert!(p["created_at"].is_string(), "{p}");
    let w = &found["wallet"];
    assert_eq!(
        (w["balance"].as_str(), w["available"].as_str(), w["held"].as_str(), w["currency"].as_str()),
        (Some("231.00"), Some("231.00"), Some("0.00"), Some("COIN"))
    );
    let recent: Vec<&str> =
        found["recent_transactions"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    let newest: Vec<&str> = made.iter().rev().take(20).map(String::as_str).collect();
    assert_eq!(recent, newest, "the 20 most recent, newest first");

    for unknown in [
        UserId::generate().to_string(),
        "nobody-here@example.com".to_owned(),
        "usr_not-an-id".to_owned(),
        "not-an-id-or-email".to_owned(),
    ] {
        let r = app.get(&format!("/v1/admin/users/{unknown}"), Some(&admin)).await;
        assert_eq!((r.status, r.code()), (404, "user_not_found"), "{unknown}: {}", r.text);
    }
    app.assert_ledger_balanced().await;
}
