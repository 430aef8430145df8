//! Cases: money Revio collected that the ledger could not take automatically becomes a case an
//! administrator lists (`GET /v1/admin/cases`) and resolves with a reason, by crediting the user
//! or refunding at Revio (`POST /v1/admin/cases/{case_id}/resolve`) — exactly once, audited.
//!
//! The money scenarios serve the app on a real port so the Revio sandbox delivers its signed
//! webhooks to it, as `make dev` does, and end with the ledger audit.

use purse::service::cases::{self, CaseKind, NewCase};
use purse_tests::{eventually, Sandbox, TestApp, TestResponse};
use serde_json::{json, Value};

/// A signed-in administrator: their user id and access token.
async fn admin(app: &TestApp) -> (String, String) {
    let (email, password, profile) = app.register().await;
    let id = profile["id"].as_str().unwrap().to_owned();
    let user_id = purse::domain::ids::UserId::parse(&id).unwrap();
    purse::store::users::grant_role(&app.table, &user_id, purse::domain::user::Role::Admin).await.unwrap();
    let r = app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await;
    (id, r.json["access_token"].as_str().unwrap().to_owned())
}

async fn open_cases(app: &TestApp, admin: &str) -> Vec<Value> {
    let r = app.get("/v1/admin/cases", Some(admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().expect("items").clone()
}

/// Waits until the open case for `purchase` is listed, and returns it.
async fn case_for(app: &TestApp, admin: &str, purchase: &str) -> Value {
    eventually(20, &format!("a case for purchase {purchase} to be listed"), || async {
        open_cases(app, admin).await.into_iter().find(|c| c["purchase_id"] == purchase)
    })
    .await
}

async fn resolve(app: &TestApp, admin: &str, case_id: &str, body: &Value) -> TestResponse {
    app.post(&format!("/v1/admin/cases/{case_id}/resolve"), body, Some(admin)).await
}

/// The purchase as the sandbox holds it.
async fn at_revio(sandbox: &Sandbox, purchase: &str) -> Value {
    reqwest::get(format!("{}/_sandbox/purchases/{purchase}", sandbox.base))
        .await
        .expect("sandbox reachable")
        .json()
        .await
        .expect("json")
}

async fn status_of(app: &TestApp, token: &str, id: &str) -> String {
    app.get(&format!("/v1/transactions/{id}"), Some(token)).await.json["status"].as_str().unwrap_or("").to_owned()
}

/// A deposit we failed on our side whose purchase the person then paid at Revio: what happens
/// when our call to create the purchase timed out (deposit FAILED `provider_unavailable`) but
/// Revio had created it, and the person paid. Returns (user, token, transaction id, purchase id)
/// once the deposit is FAILED and the purchase paid.
async fn paid_after_failed(app: &TestApp, sandbox: &Sandbox, amount: &str) -> (String, String, String, String) {
    let (user, token) = app.user_token().await;
    let key = format!("key-{}", ulid::Ulid::new());
    let r = app.post_with("/v1/deposits", &json!({"amount": amount}), Some(&token), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();
    let id = purse::domain::ids::TransactionId::parse(&txn).unwrap();
    let failed = purse::ledger::store::fail(&app.table, &id, "provider_unavailable").await.unwrap();
    assert!(failed.changed);
    assert_eq!(sandbox.pay(&purchase).await["status"], "paid");
    (user, token, txn, purchase)
}

#[tokio::test]
async fn a_payment_revio_reports_after_the_deposit_failed_opens_a_case_an_admin_can_credit_once() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token, txn, purchase) = paid_after_failed(&app, &sandbox, "40.00").await;
    let (admin_id, admin) = admin(&app).await;

    // The paid webhook credits nothing: the deposit is FAILED. It opens a case instead.
    let case = case_for(&app, &admin, &purchase).await;
    assert_eq!(case["kind"], "PAID_AFTER_FAILED");
    assert_eq!(case["status"], "OPEN");
    assert_eq!(case["transaction_id"], txn.as_str());
    assert_eq!(case["user_id"], user.as_str());
    assert_eq!((case["paid_amount"].as_str(), case["paid_currency"].as_str()), (Some("40.00"), Some("ZAR")));
    assert!(case.get("resolution").is_none(), "{case}");
    assert_eq!(status_of(&app, &token, &txn).await, "FAILED");
    assert_eq!(app.wallet_of(&user).await.0, "0.00");
    let case_id = case["case_id"].as_str().unwrap().to_owned();

    let reason = "Paid after our timeout; the person confirmed they want the coins (ticket 4711)";
    let r = resolve(&app, &admin, &case_id, &json!({"action": "credit", "reason": reason})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["case_id"], case_id.as_str());
    assert_eq!(r.json["status"], "RESOLVED");
    let resolution = &r.json["resolution"];
    assert_eq!(resolution["action"], "credit");
    assert_eq!(resolution["reason"], reason);
    assert_eq!(resolution["resolved_by"], format!("admin:{admin_id}"));
    assert!(resolution["resolved_at"].is_string(), "{resolution}");
    let movement = resolution["transaction_id"].as_str().expect("the crediting movement").to_owned();
    assert_ne!(movement, txn, "the FAILED deposit stays FAILED; a new movement credits");
    assert_eq!(app.wallet_of(&user).await, ("40.00".into(), "40.00".into(), "0.00".into()));
    let credited = app.get(&format!("/v1/transactions/{movement}"), Some(&token)).await;
    assert_eq!(credited.status, 200, "{}", credited.text);
    assert_eq!(
        (credited.json["type"].as_str(), credited.json["status"].as_str(), credited.json["amount"].as_str()),
        (Some("DEPOSIT"), Some("COMPLETED"), Some("40.00"))
    );

    // Once: the same request again, or the other resolution, changes nothing.
    for action in ["credit", "refund"] {
        let again = resolve(&app, &admin, &case_id, &json!({"action": action, "reason": "again"})).await;
        assert_eq!((again.status, again.code()), (409, "case_already_resolved"), "{action}: {}", again.text);
    }
    assert_eq!(app.wallet_of(&user).await.0, "40.00");
    assert_eq!(at_revio(&sandbox, &purchase).await["status"], "paid", "nothing was refunded");
    assert!(open_cases(&app, &admin).await.iter().all(|c| c["case_id"] != case_id.as_str()));

    // Settlement meeting the purchase again (a redelivery, a reconciliation) does not reopen it.
    let revio = app.revio_client().await;
    let outcome = purse::service::settlement::settle_purchase(&app.table, &revio, &purchase).await.unwrap();
    assert_eq!(outcome.name(), "NEEDS_REVIEW");
    assert!(open_cases(&app, &admin).await.is_empty());
    let kept = cases::get(&app.table, &case_id).await.unwrap().expect("the case is kept");
    assert_eq!(kept.status, "RESOLVED");
    let kept = kept.resolution.expect("its resolution is kept");
    assert_eq!((kept.reason.as_str(), kept.resolved_by), (reason, format!("admin:{admin_id}")));
    assert_eq!(app.wallet_of(&user).await.0, "40.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_case_resolved_by_refund_refunds_at_revio_and_credits_nothing() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token, txn, purchase) = paid_after_failed(&app, &sandbox, "55.00").await;
    let (admin_id, admin) = admin(&app).await;
    let case = case_for(&app, &admin, &purchase).await;
    let case_id = case["case_id"].as_str().unwrap().to_owned();

    let reason = "The person asked for their money back";
    let r = resolve(&app, &admin, &case_id, &json!({"action": "refund", "reason": reason})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "RESOLVED");
    let resolution = &r.json["resolution"];
    assert_eq!(
        (resolution["action"].as_str(), resolution["reason"].as_str()),
        (Some("refund"), Some(reason)),
        "{resolution}"
    );
    assert_eq!(resolution["resolved_by"], format!("admin:{admin_id}"));
    assert!(resolution.get("transaction_id").is_none(), "a refund posts no movement: {resolution}");
    assert_eq!(at_revio(&sandbox, &purchase).await["status"], "refunded");

    let again = resolve(&app, &admin, &case_id, &json!({"action": "refund", "reason": reason})).await;
    assert_eq!((again.status, again.code()), (409, "case_already_resolved"), "{}", again.text);
    let credit = resolve(&app, &admin, &case_id, &json!({"action": "credit", "reason": "changed my mind"})).await;
    assert_eq!((credit.status, credit.code()), (409, "case_already_resolved"), "{}", credit.text);

    // Revio's `purchase.refunded` webhook follows; it changes nothing either.
    eventually(20, "the refund's webhook to be processed", || async {
        let r = app.get(&format!("/v1/admin/transactions/{txn}/webhooks"), Some(&admin)).await;
        let deliveries = r.json["deliveries"].as_array().cloned().unwrap_or_default();
        deliveries
            .iter()
            .any(|d| d["event_type"] == "purchase.refunded" && d["outcome"] == "ALREADY_FAILED")
            .then_some(())
    })
    .await;
    assert!(open_cases(&app, &admin).await.is_empty());
    assert_eq!(app.wallet_of(&user).await, ("0.00".into(), "0.00".into(), "0.00".into()));
    assert_eq!(status_of(&app, &token, &txn).await, "FAILED");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_paid_purchase_no_deposit_belongs_to_opens_a_case_that_cannot_be_credited() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    // A purchase made on our brand straight at Revio, naming no deposit of ours, paid; its
    // webhook reaches us.
    let webhook = format!("{}/webhooks/revio", app.base_url.as_ref().unwrap());
    let made = sandbox.create_purchase(1500, "made-outside-purse", &webhook).await;
    let purchase = made["id"].as_str().unwrap().to_owned();
    sandbox.pay(&purchase).await;
    let (_, admin) = admin(&app).await;

    let case = case_for(&app, &admin, &purchase).await;
    assert_eq!(case["kind"], "UNKNOWN_PURCHASE_PAID");
    assert_eq!((&case["transaction_id"], &case["user_id"]), (&Value::Null, &Value::Null), "{case}");
    assert_eq!(case["paid_amount"], "15.00");
    let case_id = case["case_id"].as_str().unwrap().to_owned();

    let credit = resolve(&app, &admin, &case_id, &json!({"action": "credit", "reason": "someone's coins"})).await;
    assert_eq!((credit.status, credit.code()), (422, "case_not_creditable"), "{}", credit.text);
    assert_eq!(case_for(&app, &admin, &purchase).await["status"], "OPEN", "the case stays open");
    assert_eq!(at_revio(&sandbox, &purchase).await["status"], "paid");

    let refund = resolve(&app, &admin, &case_id, &json!({"action": "refund", "reason": "not ours to keep"})).await;
    assert_eq!(refund.status, 200, "{}", refund.text);
    assert_eq!(refund.json["resolution"]["action"], "refund");
    assert_eq!(at_revio(&sandbox, &purchase).await["status"], "refunded");
    assert!(open_cases(&app, &admin).await.is_empty());
    app.assert_ledger_balanced().await;
}

/// Opens a case straight in the table, as settlement would for a purchase nobody owns.
async fn open_unknown_purchase_case(app: &TestApp) -> String {
    let purchase = ulid::Ulid::new().to_string().to_lowercase();
    let new = NewCase {
        kind: CaseKind::UnknownPurchasePaid,
        purchase_id: purchase.clone(),
        transaction_id: None,
        user_id: None,
        paid_minor: 2000,
        paid_currency: "ZAR".into(),
        detail: "Revio collected money for a purchase no deposit of ours belongs to".into(),
    };
    assert!(cases::open(&app.table, &new).await.unwrap());
    cases::case_id(CaseKind::UnknownPurchasePaid, &purchase)
}

#[tokio::test]
async fn only_administrators_may_list_or_resolve_cases() {
    let app = TestApp::spawn().await;
    let case_id = open_unknown_purchase_case(&app).await;
    let (_, user) = app.user_token().await;
    let path = format!("/v1/admin/cases/{case_id}/resolve");
    let body = json!({"action": "refund", "reason": "not mine to decide"});

    let list = app.get("/v1/admin/cases", Some(&user)).await;
    assert_eq!((list.status, list.code()), (403, "forbidden"), "{}", list.text);
    let resolved = app.post(&path, &body, Some(&user)).await;
    assert_eq!((resolved.status, resolved.code()), (403, "forbidden"), "{}", resolved.text);
    let anonymous = app.get("/v1/admin/cases", None).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"), "{}", anonymous.text);
    let anonymous = app.post(&path, &body, None).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"), "{}", anonymous.text);

    let (_, admin) = admin(&app).await;
    let still = open_cases(&app, &admin).await;
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!((still[0]["case_id"].as_str(), still[0]["status"].as_str()), (Some(case_id.as_str()), Some("OPEN")));
}

#[tokio::test]
async fn a_resolution_needs_a_reason_a_well_formed_case_id_and_a_known_case() {
    let app = TestApp::spawn().await;
    let case_id = open_unknown_purchase_case(&app).await;
    let (_, admin) = admin(&app).await;

    for reason in [json!(""), json!("   \n"), json!("x".repeat(501))] {
        let r = resolve(&app, &admin, &case_id, &json!({"action": "refund", "reason": reason})).await;
        assert_eq!((r.status, r.code()), (400, "reason_required"), "{}", r.text);
    }
    for body in [
        json!({"action": "refund"}),
        json!({"action": "void", "reason": "no such action"}),
        json!({"action": "refund", "reason": "fine", "amount": "20.00"}),
    ] {
        let r = resolve(&app, &admin, &case_id, &body).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{body}: {}", r.text);
    }
    let body = json!({"action": "refund", "reason": "a good reason"});
    let upper = case_id.to_uppercase().replacen("CASE_", "case_", 1);
    let longer = format!("{case_id}0");
    for bad in ["case_123", "txn_01JD3Q4T6V8X0Z2B4D6F8H0K2M", upper.as_str(), longer.as_str()] {
        let r = resolve(&app, &admin, bad, &body).await;
        assert_eq!((r.status, r.code()), (400, "invalid_case_id"), "{bad}: {}", r.text);
    }
    let unknown = cases::case_id(CaseKind::PaidAfterFailed, "no-such-purchase");
    let r = resolve(&app, &admin, &unknown, &body).await;
    assert_eq!((r.status, r.code()), (404, "not_found"), "{}", r.text);

    let open = open_cases(&app, &admin).await;
    assert_eq!(open.len(), 1, "nothing was resolved: {open:?}");
    assert_eq!(open[0]["case_id"], case_id.as_str());
}

#[tokio::test]
async fn open_cases_are_listed_oldest_first_within_a_bounded_limit() {
    let app = TestApp::spawn().await;
    let first = open_unknown_purchase_case(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = open_unknown_purchase_case(&app).await;
    let (_, admin) = admin(&app).await;

    let ids = |items: &[Value]| items.iter().map(|c| c["case_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&open_cases(&app, &admin).await), [first.clone(), second]);
    let one = app.get("/v1/admin/cases?limit=1", Some(&admin)).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(ids(one.json["items"].as_array().unwrap()), [first]);
    for bad in ["0", "101", "-1", "ten", "1.5", ""] {
        let r = app.get(&format!("/v1/admin/cases?limit={bad}"), Some(&admin)).await;
        assert_eq!((r.status, r.code()), (400, "invalid_limit"), "limit={bad}: {}", r.text);
    }
}
