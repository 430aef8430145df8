//! Unverified webhook bodies steer nothing: a forged delivery is logged, briefly and unindexed,
//! but never linked to the transaction it names, so forgeries cannot crowd a transaction's
//! webhook list or pile up on an index partition.

use aws_sdk_dynamodb::types::AttributeValue;
use purse::store::item::Item;
use purse::store::webhooks::{REJECTED_RETENTION_SECONDS, RETENTION_SECONDS};
use purse_tests::{Sandbox, TestApp, TestResponse};
use serde_json::{json, Value};

/// A PENDING deposit: (transaction id, Revio purchase id).
async fn real_deposit(app: &TestApp) -> (String, String) {
    let (_, token) = app.user_token().await;
    let key = format!("key-{}", ulid::Ulid::new());
    let r =
        app.post_with("/v1/deposits", &json!({"amount": "40.00"}), Some(&token), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.json["id"].as_str().unwrap().to_owned(), r.json["reference"].as_str().unwrap().to_owned())
}

async fn webhook_list(app: &TestApp, admin: &str, txn: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/admin/transactions/{txn}/webhooks"), Some(admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["deliveries"].as_array().unwrap().clone()
}

fn paid_event(purchase: &str, txn: &str) -> String {
    json!({"id": purchase, "type": "purchase", "event_type": "purchase.paid", "status": "paid", "reference": txn,
           "purchase": {"total": 4000, "currency": "ZAR"}})
    .to_string()
}

async fn deliver(app: &TestApp, body: &[u8], signature: Option<&str>) -> TestResponse {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(s) = signature {
        headers.push(("x-signature", s));
    }
    app.send("POST", "/webhooks/revio", &headers, body).await
}

/// Every logged delivery in the (fresh, per-test) table.
async fn logged_deliveries(app: &TestApp) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = app
            .table
            .client
            .scan()
            .table_name(&app.table.name)
            .filter_expression("entity = :e")
            .expression_attribute_values(":e", AttributeValue::S("webhook_delivery".into()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    out
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{name}"))
}

#[tokio::test]
async fn a_forged_delivery_naming_a_real_transaction_does_not_appear_in_its_webhook_list() {
    let app = TestApp::spawn().await;
    let sandbox = Sandbox::new();
    let (txn, purchase) = real_deposit(&app).await;
    let body = paid_event(&purchase, &txn);

    let forged = deliver(&app, body.as_bytes(), Some("Zm9yZ2Vk")).await;
    assert_eq!((forged.status, forged.code()), (401, "invalid_signature"), "{}", forged.text);
    let unsigned = deliver(&app, body.as_bytes(), None).await;
    assert_eq!(unsigned.status, 401);
    let signature = sandbox.sign(body.as_bytes()).await;
    let genuine = deliver(&app, body.as_bytes(), Some(&signature)).await;
    assert_eq!(genuine.status, 200, "{}", genuine.text);

    let admin = app.admin_token().await;
    let list = webhook_list(&app, &admin, &txn).await;
    let ids: Vec<&str> = list.iter().filter_map(|d| d["delivery_id"].as_str()).collect();
    assert_eq!(ids, [genuine.json["delivery_id"].as_str().unwrap()], "only the verified delivery: {list:#?}");
    assert_eq!(list[0]["verification"], "VALID");
    assert_eq!(list[0]["transaction_id"], txn.as_str());
}

#[tokio::test]
async fn a_hundred_forged_deliveries_leave_the_real_one_alone_in_the_transaction_s_list() {
    let app = TestApp::spawn().await;
    let sandbox = Sandbox::new();
    let (txn, purchase) = real_deposit(&app).await;
    let body = paid_event(&purchase, &txn);
    let oversized = format!("{{\"reference\": \"{txn}\", \"pad\": \"{}\"}}", "x".repeat(70_000));
    // Ten at a time: the emulator serialises DynamoDB, and the point here is the list, not load.
    use futures::StreamExt;
    let answers: Vec<TestResponse> = futures::stream::iter((0..100).map(|i| {
        let (app, txn) = (&app, &txn);
        let (body, oversized) = (&body, &oversized);
        async move {
            match i % 4 {
                0 => deliver(app, body.as_bytes(), None).await,
                1 => deliver(app, body.as_bytes(), Some("Zm9yZ2Vk")).await,
                2 => deliver(app, oversized.as_bytes(), Some("Zm9yZ2Vk")).await,
                _ => {
                    let other = paid_event(&format!("forged-{i}"), txn);
                    deliver(app, other.as_bytes(), Some("bm90IGEgc2lnbmF0dXJl")).await
                }
            }
        }
    }))
    .buffer_unordered(10)
    .collect()
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 401 || *s == 413), "every forgery is refused: {statuses:?}");
    let signature = sandbox.sign(body.as_bytes()).await;
    let genuine = deliver(&app, body.as_bytes(), Some(&signature)).await;
    assert_eq!(genuine.status, 200, "{}", genuine.text);

    let admin = app.admin_token().await;
    let list = webhook_list(&app, &admin, &txn).await;
    assert_eq!(list.len(), 1, "forgeries must not be listed: {} deliveries listed", list.len());
    assert_eq!(list[0]["delivery_id"], genuine.json["delivery_id"]);

    // All 100 are still on record (the log keeps every delivery), none of them indexed anywhere.
    let rejected: Vec<Item> =
        logged_deliveries(&app).await.into_iter().filter(|d| text(d, "verification") != Some("VALID")).collect();
    assert_eq!(rejected.len(), 100);
    for d in &rejected {
        assert!(d.get("gsi1pk").is_none() && d.get("gsi1sk").is_none(), "a rejected delivery is indexed: {d:?}");
        assert!(d.get("transaction_id").is_none(), "a rejected delivery names a transaction: {d:?}");
    }
}

#[tokio::test]
async fn a_rejected_delivery_is_kept_seven_days_with_its_claims_truncated_and_never_its_body() {
    let app = TestApp::spawn().await;
    let sandbox = Sandbox::new();
    let (txn, purchase) = real_deposit(&app).await;
    let long_claim = format!("{txn}{}", "A".repeat(5_000));
    let forged = json!({"id": purchase, "event_type": "purchase.paid", "reference": long_claim,
                        "client": {"email": "body-marker-victim@example.com"}})
    .to_string();
    assert_eq!(deliver(&app, forged.as_bytes(), Some("Zm9yZ2Vk")).await.status, 401);
    let big = format!("{{\"reference\": \"{txn}\", \"pad\": \"body-marker-{}\"}}", "y".repeat(70_000));
    assert_eq!(deliver(&app, big.as_bytes(), None).await.status, 413);
    let body = paid_event(&purchase, &txn);
    let signature = sandbox.sign(body.as_bytes()).await;
    assert_eq!(deliver(&app, body.as_bytes(), Some(&signature)).await.status, 200);

    let now = purse::store::now_epoch();
    let near = |expires_at: i64, retention: i64| (expires_at - (now + retention)).abs() < 120;
    let logged = logged_deliveries(&app).await;
    assert_eq!(logged.len(), 3, "{logged:#?}");
    for d in &logged {
        let expires_at = number(d, "expires_at");
        match (text(d, "verification"), text(d, "outcome")) {
            (Some("VALID"), _) => {
                assert!(near(expires_at, RETENTION_SECONDS), "verified: kept 90 days, not {expires_at}");
                assert_eq!(text(d, "gsi1pk"), Some(format!("TXN#{txn}#WEBHOOKS").as_str()));
            }
            (Some(verification), outcome) => {
                assert!(near(expires_at, REJECTED_RETENTION_SECONDS), "{verification} {outcome:?}: kept 7 days");
                assert!(d.get("gsi1pk").is_none(), "{d:?}");
                if let Some(claim) = text(d, "claimed_reference") {
                    assert!(claim.starts_with(&txn) && claim.chars().count() <= 64, "truncated: {claim:.80}");
                }
            }
            other => panic!("{other:?}"),
        }
        for (name, value) in d {
            let stored = value.as_s().map(String::as_str).unwrap_or("");
            assert!(!stored.contains("body-marker"), "{name} holds part of a body: {stored:.80}");
        }
    }
    assert!(logged.iter().any(|d| text(d, "claimed_reference").is_some()), "the forged claim is kept for forensics");
}
