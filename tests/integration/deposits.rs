//! Deposits end to end: the API, the Revio sandbox, the webhook pipeline, SQS and the ledger.
//!
//! These tests serve the app on a real port so the sandbox can deliver signed webhooks to it,
//! and poll the queues with the consumer, as `make dev` does. Every scenario ends with the
//! ledger audit.

use purse_tests::{eventually, Sandbox, TestApp};
use serde_json::{json, Value};

/// Reconciliation of every PENDING deposit at once, expiring none.
pub fn reconcile_now() -> purse::service::settlement::ReconcileConfig {
    purse::service::settlement::ReconcileConfig {
        min_age_seconds: 0,
        abandon_after_seconds: 900,
        expire_after_seconds: 86_400,
        budget: std::time::Duration::from_secs(60),
    }
}

async fn deposit(app: &TestApp, token: &str, amount: &str, key: &str) -> purse_tests::TestResponse {
    app.post_with("/v1/deposits", &json!({"amount": amount}), Some(token), &[("idempotency-key", key)]).await
}

fn new_key() -> String {
    format!("key-{}", ulid::Ulid::new())
}

async fn status_of(app: &TestApp, token: &str, id: &str) -> String {
    app.get(&format!("/v1/transactions/{id}"), Some(token)).await.json["status"].as_str().unwrap_or("").to_owned()
}

async fn wait_for_status(app: &TestApp, token: &str, id: &str, want: &str) {
    eventually(20, &format!("deposit {id} to become {want}"), || async {
        (status_of(app, token, id).await == want).then_some(())
    })
    .await;
}

async fn webhook_log(app: &TestApp, admin: &str, txn: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/admin/transactions/{txn}/webhooks"), Some(admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["deliveries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_paid_deposit_credits_the_wallet_once_and_shows_completed_in_history() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.user_token().await;

    let r = deposit(&app, &token, "250.00", &new_key()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "PENDING");
    assert_eq!(r.json["amount"], "250.00");
    let checkout = r.json["checkout_url"].as_str().expect("checkout_url");
    assert!(checkout.starts_with(&sandbox.base), "{checkout}");
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();

    sandbox.pay(&purchase).await;
    wait_for_status(&app, &token, &txn, "COMPLETED").await;
    assert_eq!(app.wallet_of(&user).await, ("250.00".into(), "250.00".into(), "0.00".into()));

    let history = app.get("/v1/transactions", Some(&token)).await;
    assert_eq!(history.json["items"][0]["id"], txn.as_str());
    assert_eq!(history.json["items"][0]["status"], "COMPLETED");
    assert_eq!(history.json["items"][0]["type"], "DEPOSIT");
    assert_eq!(history.json["items"][0]["direction"], "credit");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_declined_payment_fails_the_deposit_and_a_later_paid_event_credits_nothing() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.user_token().await;
    let r = deposit(&app, &token, "40.00", &new_key()).await;
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();

    sandbox.decline(&purchase).await;
    wait_for_status(&app, &token, &txn, "FAILED").await;

    // A stale or forged "paid" event for the declined purchase, validly signed.
    let codes = sandbox.deliver(&purchase, json!({"event_type": "purchase.paid", "status": "paid"})).await;
    assert_eq!(codes, vec![Some(200)]);
    let admin = app.admin_token().await;
    eventually(20, "the paid event to be processed", || async {
        let log = webhook_log(&app, &admin, &txn).await;
        log.iter().any(|d| d["event_type"] == "purchase.paid" && d["outcome"] == "ALREADY_FAILED").then_some(())
    })
    .await;
    assert_eq!(status_of(&app, &token, &txn).await, "FAILED");
    assert_eq!(app.wallet_of(&user).await.0, "0.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_same_webhook_delivered_fifty_times_concurrently_credits_once() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.user_token().await;
    let r = deposit(&app, &token, "75.25", &new_key()).await;
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();

    sandbox.pay(&purchase).await;
    let codes =
        sandbox.deliver(&purchase, json!({"event_type": "purchase.paid", "times": 50, "concurrent": true})).await;
    assert_eq!(codes.len(), 50);
    assert!(codes.iter().all(|c| *c == Some(200)), "{codes:?}");
    wait_for_status(&app, &token, &txn, "COMPLETED").await;
    // Let every queued duplicate be processed before checking the balance.
    let admin = app.admin_token().await;
    eventually(30, "all deliveries to be processed", || async {
        let log = webhook_log(&app, &admin, &txn).await;
        (log.len() >= 51 && log.iter().all(|d| d["outcome"] != "QUEUED")).then_some(())
    })
    .await;
    assert_eq!(app.wallet_of(&user).await.0, "75.25");
    let log = webhook_log(&app, &admin, &txn).await;
    assert_eq!(log.iter().filter(|d| d["outcome"] == "APPLIED").count(), 1, "{log:#?}");
    assert!(log.iter().all(|d| d["verification"] == "VALID"));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_same_idempotency_key_sent_fifty_times_concurrently_creates_one_deposit() {
    let app = TestApp::spawn_serving().await;
    let (_, token) = app.user_token().await;
    let key = new_key();
    let results = futures::future::join_all((0..50).map(|_| deposit(&app, &token, "10.00", &key))).await;
    let created: Vec<_> = results.iter().filter(|r| r.status == 201).collect();
    assert!(!created.is_empty());
    assert!(
        results.iter().all(|r| r.status == 201 || (r.status == 409 && r.code() == "idempotency_request_in_progress")),
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let ids: std::collections::BTreeSet<_> =
        created.iter().map(|r| r.json["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1, "every success names the same deposit");
    // A retry after it finished replays the same answer.
    let again = deposit(&app, &token, "10.00", &key).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json["id"].as_str().unwrap(), ids.iter().next().unwrap());
    let history = app.get("/v1/transactions?type=DEPOSIT", Some(&token)).await;
    assert_eq!(history.json["items"].as_array().unwrap().len(), 1);
    // The same key with another amount is refused.
    let other = deposit(&app, &token, "11.00", &key).await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn deposit_amounts_are_validated_and_the_daily_limit_is_enforced() {
    let app = TestApp::spawn_serving().await;
    let (_, token) = app.user_token().await;
    let cases = [
        (json!({"amount": "10.001"}), 400, "too_many_decimals"),
        (json!({"amount": "-10.00"}), 400, "invalid_amount"),
        (json!({"amount": "ten"}), 400, "invalid_amount"),
        (json!({"amount": 10.5}), 400, "invalid_request"),
        (json!({"amount": "9.99"}), 422, "amount_below_minimum"),
        (json!({"amount": "5000.01"}), 422, "amount_above_maximum"),
        (json!({"amount": "10.00", "currency": "USD"}), 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let r = app.post_with("/v1/deposits", &body, Some(&token), &[("idempotency-key", &new_key())]).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.text);
    }
    let r = app.post("/v1/deposits", &json!({"amount": "10.00"}), Some(&token)).await;
    assert_eq!((r.status, r.code()), (400, "idempotency_key_required"));
    for _ in 0..4 {
        assert_eq!(deposit(&app, &token, "5000.00", &new_key()).await.status, 201);
    }
    let r = deposit(&app, &token, "10.00", &new_key()).await;
    assert_eq!((r.status, r.code()), (422, "daily_limit_exceeded"), "{}", r.text);
    let history = app.get("/v1/transactions", Some(&token)).await;
    assert_eq!(history.json["items"].as_array().unwrap().len(), 4, "refused deposits leave nothing behind");
}

#[tokio::test]
async fn forged_changed_and_malformed_webhooks_credit_nothing_and_are_all_logged() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.user_token().await;
    let r = deposit(&app, &token, "60.00", &new_key()).await;
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();
    let body =
        json!({"id": purchase, "type": "purchase", "event_type": "purchase.paid", "status": "paid", "reference": txn,
                      "purchase": {"total": 6000, "currency": "ZAR"}})
        .to_string();
    let good = sandbox.sign(body.as_bytes()).await;
    let post = |body: Vec<u8>, sig: Option<String>| {
        let app = &app;
        async move {
            let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
            if let Some(s) = sig {
                headers.push(("x-signature".to_owned(), s));
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            app.send("POST", "/webhooks/revio", &h, &body).await
        }
    };

    let mut changed = body.clone().into_bytes();
    let at = changed.iter().position(|b| *b == b'6').unwrap();
    changed[at] = b'9'; // total 6000 -> 9000: one byte
    let other_key = {
        use rsa::pkcs1v15::SigningKey;
        use rsa::signature::{SignatureEncoding, Signer};
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let sig = SigningKey::<sha2::Sha256>::new(key).sign(body.as_bytes());
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sig.to_bytes())
    };
    let refused = [
        ("forged signature", post(body.clone().into_bytes(), Some("Zm9yZ2Vk".into())).await, 401),
        ("body changed by one byte", post(changed, Some(good.clone())).await, 401),
        ("signature from another key", post(body.clone().into_bytes(), Some(other_key)).await, 401),
        ("missing signature", post(body.clone().into_bytes(), None).await, 401),
    ];
    for (what, r, status) in &refused {
        assert_eq!(r.status, *status, "{what}: {}", r.text);
    }
    let malformed = format!("{{\"id\": \"{purchase}\", \"reference\": \"{txn}\", \"event_type\": ");
    let sig = sandbox.sign(malformed.as_bytes()).await;
    assert_eq!(post(malformed.into_bytes(), Some(sig)).await.status, 400);
    let huge = format!("{{\"id\": \"{purchase}\", \"reference\": \"{txn}\", \"pad\": \"{}\"}}", "x".repeat(70_000));
    assert_eq!(post(huge.into_bytes(), Some(good.clone())).await.status, 413);

    // Unknown purchase, validly signed: accepted by the receiver, then Revio's API says 404.
    let unknown = json!({"id": "00000000-0000-4000-8000-000000000000", "event_type": "purchase.paid", "status": "paid", "reference": txn}).to_string();
    let sig = sandbox.sign(unknown.as_bytes()).await;
    assert_eq!(post(unknown.into_bytes(), Some(sig)).await.status, 200);

    // Someone else's purchase for a smaller amount, naming our deposit as its reference, paid.
    let mallory =
        sandbox.create_purchase(100, &txn, &format!("{}/webhooks/revio", app.base_url.as_ref().unwrap())).await;
    sandbox.pay(mallory["id"].as_str().unwrap()).await;

    let admin = app.admin_token().await;
    let log = eventually(20, "every delivery to be logged and processed", || async {
        let log = webhook_log(&app, &admin, &txn).await;
        let done = log.len() >= 2 && log.iter().all(|d| d["outcome"] != "QUEUED");
        done.then_some(log)
    })
    .await;
    let outcomes: Vec<(&str, &str)> =
        log.iter().map(|d| (d["verification"].as_str().unwrap(), d["outcome"].as_str().unwrap())).collect();
    // Refused deliveries are logged (see tests/integration/webhook_forgery.rs) but, unverified,
    // name no transaction: only verified ones are listed.
    assert!(outcomes.iter().all(|o| o.0 == "VALID"), "{outcomes:?}");
    // Signed bodies that cannot be read name no transaction: they are logged unlinked, by day;
    // unverified ones (TOO_LARGE) are indexed nowhere.
    let unlinked = unlinked_deliveries(&app).await;
    assert!(unlinked.contains(&("VALID".into(), "MALFORMED".into())), "{unlinked:?}");
    assert!(unlinked.iter().all(|(verification, _)| verification == "VALID"), "{unlinked:?}");
    assert!(outcomes.contains(&("VALID", "UNKNOWN_PURCHASE")));
    assert!(outcomes.contains(&("VALID", "NO_DEPOSIT")), "the other purchase is not ours: {outcomes:?}");
    assert!(log.iter().all(|d| d["body_sha256"].as_str().is_some_and(|h| h.len() == 64)));

    assert_eq!(status_of(&app, &token, &txn).await, "PENDING");
    assert_eq!(app.wallet_of(&user).await.0, "0.00");
    app.assert_ledger_balanced().await;
}

async fn unlinked_deliveries(app: &TestApp) -> Vec<(String, String)> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let out = app
        .table
        .client
        .query()
        .table_name(&app.table.name)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("WEBHOOKS#UNLINKED#{day}")))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|i| (i["verification"].as_s().unwrap().clone(), i["outcome"].as_s().unwrap().clone()))
        .collect()
}

#[tokio::test]
async fn a_lost_webhook_is_settled_by_reconciliation() {
    let _exclusive = purse_tests::SandboxFaults::take().await;
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.user_token().await;
    let r = deposit(&app, &token, "33.00", &new_key()).await;
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();

    sandbox.faults(json!({"lose_webhooks": 1})).await;
    sandbox.pay(&purchase).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sandbox.reset().await;
    assert_eq!(status_of(&app, &token, &txn).await, "PENDING", "the webhook was lost");

    let revio = app.revio_client().await;
    let report =
        purse::service::settlement::reconcile_pending_deposits(&app.table, &revio, reconcile_now()).await.unwrap();
    assert_eq!(report.credited, 1, "{report:?}");
    assert_eq!(status_of(&app, &token, &txn).await, "COMPLETED");
    assert_eq!(app.wallet_of(&user).await.0, "33.00");
    // A second pass finds nothing left to do.
    let again =
        purse::service::settlement::reconcile_pending_deposits(&app.table, &revio, reconcile_now()).await.unwrap();
    assert_eq!((again.examined, again.credited), (0, 0));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn when_revio_is_down_the_caller_gets_503_quickly_and_the_retry_with_the_same_key_carries_on() {
    let _exclusive = purse_tests::SandboxFaults::take().await;
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (_, token) = app.user_token().await;
    sandbox.faults(json!({"down": true})).await;
    let key = new_key();
    let started = std::time::Instant::now();
    let r = deposit(&app, &token, "20.00", &key).await;
    let elapsed = started.elapsed();
    sandbox.reset().await;
    assert_eq!((r.status, r.code()), (503, "payment_provider_unavailable"), "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert!(elapsed < std::time::Duration::from_secs(8), "{elapsed:?}");
    let history = app.get("/v1/transactions", Some(&token)).await;
    let items = history.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "PENDING", "kept for the retry; reconciliation fails it if none comes");
    let pending_id = items[0]["id"].as_str().unwrap().to_owned();

    // The client's retry with the same key meets the same deposit and reaches Revio this time.
    let retry = deposit(&app, &token, "20.00", &key).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.json["id"], pending_id.as_str(), "one deposit, not two");
    assert!(retry.json["checkout_url"].is_string());
    let history = app.get("/v1/transactions", Some(&token)).await;
    assert_eq!(history.json["items"].as_array().unwrap().len(), 1);

    // Slow: answers after the client's time bound count as down too.
    sandbox.faults(json!({"latency_ms": 7000})).await;
    let started = std::time::Instant::now();
    let r = deposit(&app, &token, "20.00", &new_key()).await;
    let elapsed = started.elapsed();
    sandbox.reset().await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(elapsed < std::time::Duration::from_secs(8), "{elapsed:?}");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn an_event_that_cannot_be_applied_is_retried_and_parked_in_the_dead_letter_queue() {
    let _exclusive = purse_tests::SandboxFaults::take().await;
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (_, token) = app.user_token().await;
    let r = deposit(&app, &token, "12.00", &new_key()).await;
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();
    // Redeliver fast so the test sees all attempts.
    let sqs = aws_sdk_sqs::Client::new(&app.aws);
    let queue = app.stack.get("RevioEventsQueue").unwrap().reference.clone();
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    // A long poll already waiting keeps the visibility it started with: let it end first.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    sandbox.faults(json!({"down": true})).await;
    let signed = json!({"id": purchase, "event_type": "purchase.paid", "status": "paid", "reference": txn}).to_string();
    let sig = sandbox.sign(signed.as_bytes()).await;
    let r = app
        .send(
            "POST",
            "/webhooks/revio",
            &[("content-type", "application/json"), ("x-signature", &sig)],
            signed.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "accepted and queued even while Revio is down: {}", r.text);

    let dlq = app.stack.get("RevioEventsDLQ").unwrap().reference.clone();
    let parked = eventually(40, "the event to reach the dead-letter queue", || async {
        let out = sqs.receive_message().queue_url(&dlq).wait_time_seconds(1).send().await.unwrap();
        out.messages.and_then(|m| m.into_iter().next())
    })
    .await;
    sandbox.reset().await;
    let body: Value = serde_json::from_str(parked.body().unwrap()).unwrap();
    assert_eq!(body["purchase_id"], purchase.as_str());
    let admin = app.admin_token().await;
    let log = webhook_log(&app, &admin, &txn).await;
    assert_eq!(log[0]["outcome"], "RETRYING", "{log:#?}");
    assert_eq!(status_of(&app, &token, &txn).await, "PENDING", "nothing half-applied");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_purchase_whose_amount_differs_from_the_deposit_credits_nothing() {
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.user_token().await;
    // A PENDING deposit of 80.00 whose purchase reference was never recorded (creation died
    // after Revio answered): the purchase naming it is the only link.
    let id = purse::domain::ids::UserId::parse(&user).unwrap();
    let deposit = purse::ledger::NewTransaction {
        id: purse::domain::ids::TransactionId::generate(),
        user_id: id.clone(),
        kind: purse::ledger::TransactionType::Deposit,
        amount: purse::money::Amount::parse("80.00", purse::money::Currency::Coin).unwrap(),
        currency: purse::money::Currency::Coin,
        debit: purse::ledger::Side::System(purse::ledger::SystemAccount::RevioClearing),
        credit: purse::ledger::Side::Account(purse::ledger::AccountId::wallet(&id)),
        description: "deposit".into(),
        reference: None,
    };
    purse::ledger::store::record_pending(&app.table, &deposit, None).await.unwrap();
    let txn = deposit.id.to_string();

    let purchase =
        sandbox.create_purchase(800, &txn, &format!("{}/webhooks/revio", app.base_url.as_ref().unwrap())).await;
    sandbox.pay(purchase["id"].as_str().unwrap()).await;
    wait_for_status(&app, &token, &txn, "FAILED").await;
    let view = app.get(&format!("/v1/transactions/{txn}"), Some(&token)).await;
    assert_eq!(view.json["failure_reason"], "amount_mismatch");
    let admin = app.admin_token().await;
    let log = webhook_log(&app, &admin, &txn).await;
    assert!(log.iter().any(|d| d["outcome"] == "AMOUNT_MISMATCH"), "{log:#?}");
    assert_eq!(app.wallet_of(&user).await.0, "0.00");
    app.assert_ledger_balanced().await;
}

/// A paid deposit's webhook, caught before it reaches us: (token, transaction id, webhook).
async fn caught_paid_webhook(app: &TestApp) -> (String, String, purse_tests::Caught) {
    let sandbox = Sandbox::new();
    let (_, token) = app.user_token().await;
    let r = deposit(app, &token, "12.34", &new_key()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (txn, purchase) = (r.json["id"].as_str().unwrap().to_owned(), r.json["reference"].as_str().unwrap().to_owned());
    sandbox.pay(&purchase).await;
    let hook = purse_tests::catch_webhook(|url| {
        let (sandbox, purchase) = (&sandbox, purchase.clone());
        async move {
            sandbox.deliver(&purchase, json!({"url": url})).await;
        }
    })
    .await;
    (token, txn, hook)
}

/// Hands the messages on the Revio events queue to its consumer; returns their delivery ids.
async fn process_revio_events(app: &TestApp) -> Vec<String> {
    let bodies = app.queue_bodies("RevioEventsQueue").await;
    let consumer = app.router.consumer("RevioEventsQueue").unwrap();
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut m = aws_lambda_events::sqs::SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(b.clone());
            m
        })
        .collect();
    let answer = consumer.handler.call_dyn(event).await;
    assert!(answer.batch_item_failures.is_empty(), "{:?}", answer.batch_item_failures);
    bodies
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["delivery_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_webhook_the_receiver_could_not_queue_is_queued_by_the_providers_retry() {
    let app = TestApp::spawn().await;
    let (token, txn, hook) = caught_paid_webhook(&app).await;
    // SQS refuses the first delivery's message (a queue that does not exist).
    let queue = app.router.consumer("RevioEventsQueue").unwrap().queue_url.clone();
    let env = app.function_env("webhook_revio").with("REVIO_EVENTS_QUEUE_URL", format!("{queue}-gone"));
    let broken = purse::service::webhooks::RevioWebhooks::from_env(&env, &app.aws).await.unwrap();
    let mut headers = lambda_http::http::HeaderMap::new();
    for (n, v) in &hook.headers {
        headers.insert(lambda_http::http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let refused = broken.receive(&headers, &hook.body).await.unwrap_err();
    assert_eq!(refused.status, 503);
    assert!(app.queue_bodies("RevioEventsQueue").await.is_empty());

    // Revio retries the delivery: this time the event is queued, and credited once.
    let retry = app.send("POST", "/webhooks/revio", &hook.header_pairs(), &hook.body).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.json["duplicate"], true);
    let processed = process_revio_events(&app).await;
    assert_eq!(processed.len(), 1);
    assert_eq!(status_of(&app, &token, &txn).await, "COMPLETED");
    let admin = app.admin_token().await;
    let log = webhook_log(&app, &admin, &txn).await;
    let outcome = |id: &str| log.iter().find(|d| d["delivery_id"] == id).map(|d| d["outcome"].clone());
    assert_eq!(
        outcome(&processed[0]),
        Some(json!("APPLIED")),
        "the first delivery's record says what became of the event: {log:#?}"
    );
    assert_eq!(outcome(retry.json["delivery_id"].as_str().unwrap()), Some(json!("REQUEUED")), "{log:#?}");

    // A further repeat is a duplicate: nothing more is queued.
    let again = app.send("POST", "/webhooks/revio", &hook.header_pairs(), &hook.body).await;
    assert_eq!((again.status, again.json["duplicate"].as_bool()), (200, Some(true)));
    assert!(app.queue_bodies("RevioEventsQueue").await.is_empty());
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn an_event_left_unqueued_by_a_receiver_that_stopped_is_queued_by_a_later_repeat_only() {
    let app = TestApp::spawn().await;
    let (token, txn, hook) = caught_paid_webhook(&app).await;
    let first = app.send("POST", "/webhooks/revio", &hook.header_pairs(), &hook.body).await;
    assert_eq!((first.status, first.json["duplicate"].as_bool()), (200, Some(false)), "{}", first.text);
    let first_id = first.json["delivery_id"].as_str().unwrap().to_owned();
    // As if the receiver had stopped after its log write, before SQS took the message: the
    // message is taken away.
    let sqs = aws_sdk_sqs::Client::new(&app.aws);
    let queue = app.router.consumer("RevioEventsQueue").unwrap().queue_url.clone();
    sqs.purge_queue().queue_url(&queue).send().await.unwrap();

    // A repeat soon after is taken as a duplicate of an event in flight.
    let soon = app.send("POST", "/webhooks/revio", &hook.header_pairs(), &hook.body).await;
    assert_eq!((soon.status, soon.json["duplicate"].as_bool()), (200, Some(true)));
    assert!(app.queue_bodies("RevioEventsQueue").await.is_empty());

    // A repeat once the first delivery is older than any receiver can take queues it again.
    let past = chrono::Utc::now() - chrono::Duration::seconds(purse::store::webhooks::REQUEUE_AFTER_SECONDS + 5);
    app.table
        .client
        .update_item()
        .table_name(&app.table.name)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("WEBHOOK#{first_id}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("WEBHOOK".into()))
        .update_expression("SET received_at = :t")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::S(past.to_rfc3339()))
        .send()
        .await
        .unwrap();
    let late = app.send("POST", "/webhooks/revio", &hook.header_pairs(), &hook.body).await;
    assert_eq!((late.status, late.json["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(process_revio_events(&app).await, vec![first_id.clone()]);
    assert_eq!(status_of(&app, &token, &txn).await, "COMPLETED");
    let admin = app.admin_token().await;
    let log = webhook_log(&app, &admin, &txn).await;
    let outcomes: Vec<(&str, &str)> =
        log.iter().map(|d| (d["delivery_id"].as_str().unwrap(), d["outcome"].as_str().unwrap())).collect();
    assert!(outcomes.contains(&(first_id.as_str(), "APPLIED")), "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|(_, o)| *o == "DUPLICATE").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|(_, o)| *o == "REQUEUED").count(), 1, "{outcomes:?}");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_first_delivery_write_repeated_after_a_lost_answer_is_still_the_first() {
    use purse::store::webhooks::{self, Delivery, FirstDelivery, Verification};
    let app = TestApp::spawn().await;
    let event = format!("pur_{}#purchase.paid", ulid::Ulid::new());
    let delivery = Delivery {
        id: webhooks::first_delivery_id("revio", &event),
        provider: "revio",
        body_sha256: "0".repeat(64),
        body_size: 10,
        verification: Verification::Valid,
        event_type: Some("purchase.paid".into()),
        provider_reference: None,
        reference: None,
        outcome: "QUEUED".into(),
        detail: None,
    };
    // The SDK repeats a PutItem whose answer was lost: the same call, the same attempt token.
    assert_eq!(webhooks::record_first(&app.table, &delivery, "attempt-1").await.unwrap(), FirstDelivery::New);
    assert_eq!(webhooks::record_first(&app.table, &delivery, "attempt-1").await.unwrap(), FirstDelivery::New);
    // Another delivery of the event (another call) finds it.
    match webhooks::record_first(&app.table, &delivery, "attempt-2").await.unwrap() {
        FirstDelivery::Seen { outcome, age_seconds } => {
            assert_eq!(outcome, "QUEUED");
            assert!(age_seconds < webhooks::REQUEUE_AFTER_SECONDS);
        }
        other => panic!("{other:?}"),
    }
}
