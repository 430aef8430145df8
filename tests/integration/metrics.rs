//! The business and health metrics (`docs/metrics.md`) are published when their events
//! really happen, once per event, with the dimensions the alarms and the dashboard read.
//!
//! Outside Lambda a metric is a `tracing` line whose `emf` field is the very EMF document
//! Lambda would print; these tests read those lines from the captured log and pick their own
//! by a property (a transaction, call, delivery or message id) or by a span of their own, since
//! every test of the process logs to the same place.

use purse::domain::ids::{CallId, UserId};
use purse_tests::{KycSandbox, Sandbox, TestApp, CALL_PERIOD_SECONDS};
use serde_json::{json, Value};
use std::time::Duration;
use tracing::Instrument;

/// Every logged value of the metric `name` so far: (EMF document, the spans it was logged in).
fn emitted(logs: &super::logs::Captured, name: &str) -> Vec<(Value, Value)> {
    logs.text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["metric"] == name)
        .filter_map(|line| {
            let emf = serde_json::from_str(line["fields"]["emf"].as_str()?).ok()?;
            Some((emf, line["spans"].clone()))
        })
        .collect()
}

/// The EMF documents of `name` whose property `key` is `value`.
fn emitted_for(logs: &super::logs::Captured, name: &str, key: &str, value: &str) -> Vec<Value> {
    emitted(logs, name).into_iter().map(|(emf, _)| emf).filter(|emf| emf[key] == value).collect()
}

/// The sum of the values in `docs`, of the metric `name`.
fn total(docs: &[Value], name: &str) -> f64 {
    docs.iter().map(|d| d[name].as_f64().unwrap()).sum()
}

fn as_f64(decimal: rust_decimal::Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    decimal.to_f64().unwrap()
}

/// Every logged webhook delivery of the app's (fresh) table: (delivery id, provider, verification, outcome).
async fn deliveries(app: &TestApp) -> Vec<(String, String, String, String)> {
    let text = |i: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
        i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
    };
    app.scan_all()
        .await
        .iter()
        .filter(|i| text(i, "entity") == "webhook_delivery")
        .map(|i| (text(i, "delivery_id"), text(i, "provider"), text(i, "verification"), text(i, "outcome")))
        .collect()
}

#[tokio::test]
async fn a_settled_deposit_is_counted_credited_once_even_when_its_webhook_comes_again() {
    let logs = super::logs::capture();
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (_, token) = app.user_token().await;
    let key = format!("key-{}", ulid::Ulid::new());
    let r =
        app.post_with("/v1/deposits", &json!({"amount": "31.50"}), Some(&token), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let txn = r.json["id"].as_str().unwrap().to_owned();
    let purchase = r.json["reference"].as_str().unwrap().to_owned();
    // The same request again answers the same deposit: created once.
    let again =
        app.post_with("/v1/deposits", &json!({"amount": "31.50"}), Some(&token), &[("idempotency-key", &key)]).await;
    assert_eq!(again.json["id"], txn.as_str());

    sandbox.pay(&purchase).await;
    purse_tests::eventually(20, "the deposit to be credited", || async {
        let tx = app.get(&format!("/v1/transactions/{txn}"), Some(&token)).await;
        (tx.json["status"] == "COMPLETED").then_some(())
    })
    .await;
    let codes = sandbox.deliver(&purchase, json!({"event_type": "purchase.paid", "times": 3})).await;
    assert_eq!(codes, vec![Some(200); 3]);
    purse_tests::eventually(30, "every delivery to be processed", || async {
        let log = deliveries(&app).await;
        (log.len() >= 4 && log.iter().all(|d| d.3 != "QUEUED")).then_some(())
    })
    .await;

    let created = emitted_for(&logs, "DepositsCreated", "transaction_id", &txn);
    assert_eq!(total(&created, "DepositsCreated"), 1.0, "{created:?}");
    let coins_in = emitted_for(&logs, "DepositCoinsCreated", "transaction_id", &txn);
    assert_eq!(total(&coins_in, "DepositCoinsCreated"), 31.5);
    let credited = emitted_for(&logs, "DepositsCredited", "transaction_id", &txn);
    assert_eq!(total(&credited, "DepositsCredited"), 1.0, "credited once, not per delivery: {credited:?}");
    assert_eq!(credited[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
    let coins = emitted_for(&logs, "DepositCoinsCredited", "transaction_id", &txn);
    assert_eq!(total(&coins, "DepositCoinsCredited"), 31.5);
    assert_eq!(coins[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "None");
}

#[tokio::test]
async fn refused_revio_deliveries_are_counted_by_reason() {
    let logs = super::logs::capture();
    let app = TestApp::spawn().await;
    let sandbox = Sandbox::new();
    let send = |body: Vec<u8>, signature: Option<String>| {
        let app = &app;
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(s) = &signature {
                headers.push(("x-signature", s.as_str()));
            }
            app.send("POST", "/webhooks/revio", &headers, &body).await.status
        }
    };
    let event = json!({"id": "pur_forged", "event_type": "purchase.paid", "status": "paid"}).to_string();
    assert_eq!(send(event.clone().into_bytes(), Some("Zm9yZ2Vk".into())).await, 401);
    assert_eq!(send(event.into_bytes(), None).await, 401);
    let huge = vec![b' '; purse::service::webhooks::MAX_WEBHOOK_BODY_BYTES + 1];
    assert_eq!(send(huge, None).await, 413);
    let not_an_event = json!({"hello": "world"}).to_string();
    let signature = sandbox.sign(not_an_event.as_bytes()).await;
    assert_eq!(send(not_an_event.into_bytes(), Some(signature)).await, 400);

    let mut reasons: Vec<String> = Vec::new();
    for (id, provider, _, _) in deliveries(&app).await {
        assert_eq!(provider, "revio");
        let docs = emitted_for(&logs, "DeliveriesRejected", "delivery_id", &id);
        assert_eq!(docs.len(), 1, "one count per refused delivery {id}: {docs:?}");
        let doc = &docs[0];
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[], ["Provider", "Reason"]]));
        assert_eq!(doc["Provider"], "revio");
        reasons.push(doc["Reason"].as_str().unwrap().to_owned());
    }
    reasons.sort();
    assert_eq!(reasons, ["shape", "signature", "signature", "size"]);
}

#[tokio::test]
async fn a_kyc_delivery_outside_its_time_window_is_counted_as_a_stale_timestamp() {
    let logs = super::logs::capture();
    let app = TestApp::spawn_serving().await;
    let sandbox = KycSandbox::new();
    let (_, token) = app.user_token().await;
    let r = app.submit_kyc(&token, &purse_tests::fresh_pan("6666")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let reference = app.kyc_reference(r.json["kyc_id"].as_str().unwrap()).await;
    let stale = sandbox.deliver(&reference, json!({"timestamp": chrono::Utc::now().timestamp() - 330})).await.1;
    let forged = sandbox.deliver(&reference, json!({"secret": "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})).await.1;
    assert_eq!([stale, forged].concat(), vec![Some(401); 2]);
    let mut seen = Vec::new();
    for (id, provider, verification, _) in deliveries(&app).await {
        let docs = emitted_for(&logs, "DeliveriesRejected", "delivery_id", &id);
        assert_eq!(docs.len(), 1, "{id}: {docs:?}");
        assert_eq!((provider.as_str(), docs[0]["Provider"].as_str()), ("kyc", Some("kyc")));
        seen.push((verification, docs[0]["Reason"].as_str().unwrap().to_owned()));
    }
    seen.sort();
    assert_eq!(seen, [("INVALID".into(), "signature".into()), ("STALE".into(), "stale_timestamp".into())]);
}

#[tokio::test]
async fn billed_minutes_and_the_callee_payout_are_counted_once_each_with_their_coins() {
    let logs = super::logs::capture();
    let app = TestApp::spawn().await;
    let (caller_id, _) = app.user_with("100.00").await;
    let (callee_id, _) = app.user_with("0.00").await;
    let calls = purse::service::calls::Calls::from_env(&app.function_env("sqs_call_billing"), &app.aws).unwrap();
    let (caller, callee) = (UserId::parse(&caller_id).unwrap(), UserId::parse(&callee_id).unwrap());
    let call = calls.place(&caller, &callee, "app", None, None).await.unwrap();
    calls.accept(&callee, call.id.as_str(), None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(CALL_PERIOD_SECONDS)).await;
    calls.tick(&call.id, 1).await.unwrap().expect("minute 1 billed");
    assert!(calls.tick(&call.id, 1).await.unwrap().is_none(), "a repeated tick bills nothing");
    let minutes = emitted_for(&logs, "CallMinutesBilled", "call_id", call.id.as_str());
    assert_eq!(total(&minutes, "CallMinutesBilled"), 1.0, "{minutes:?}");
    let coins = emitted_for(&logs, "CallCoinsBilled", "call_id", call.id.as_str());
    assert_eq!(total(&coins, "CallCoinsBilled"), as_f64(call.price_per_minute));

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ended, _) = calls.finish(&call.id, "hangup").await.unwrap();
    assert!(ended.settled, "paid out at the end");
    let id: &CallId = &ended.id;
    let minutes = emitted_for(&logs, "CallMinutesBilled", "call_id", id.as_str());
    assert_eq!(total(&minutes, "CallMinutesBilled"), 2.0, "the part-minute at the end counts as one");
    let coins = emitted_for(&logs, "CallCoinsBilled", "call_id", id.as_str());
    assert!((total(&coins, "CallCoinsBilled") - as_f64(ended.charged)).abs() < 1e-9, "{coins:?} vs {}", ended.charged);
    let payouts = emitted_for(&logs, "CallPayoutsPaid", "call_id", id.as_str());
    assert_eq!(total(&payouts, "CallPayoutsPaid"), 1.0);
    let earned = emitted_for(&logs, "CallCoinsEarned", "call_id", id.as_str());
    let share = purse::service::calls::shares(ended.charged, ended.callee_share_percent).0;
    assert!((total(&earned, "CallCoinsEarned") - as_f64(share)).abs() < 1e-9, "{earned:?} vs {share}");
}

fn sqs_message(id: &str, body: &str, receive: u32) -> purse::runtime::SqsMessage {
    let mut m = purse::runtime::SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(body.to_owned());
    m.event_source_arn = Some("arn:aws:sqs:af-south-1:000000000000:purse-test-revio-events".into());
    m.attributes.insert("ApproximateReceiveCount".into(), receive.to_string());
    m
}

#[tokio::test]
async fn a_message_that_fails_on_its_last_receive_is_counted_as_parked_for_its_queue() {
    let logs = super::logs::capture();
    let app = TestApp::spawn().await;
    let consumer = app.router.consumer("RevioEventsQueue").expect("revio events consumer");
    let (early, last) = (format!("m-{}", ulid::Ulid::new()), format!("m-{}", ulid::Ulid::new()));
    let mut event = purse::runtime::SqsEvent::default();
    event.records = vec![sqs_message(&early, "not json", 4), sqs_message(&last, "not json", 5)];
    let failed = consumer.handler.call_dyn(event).await.batch_item_failures;
    assert_eq!(failed.len(), 2, "both fail and are reported");
    assert!(emitted_for(&logs, "MessagesParked", "message_id", &early).is_empty(), "SQS redelivers it");
    let parked = emitted_for(&logs, "MessagesParked", "message_id", &last);
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["Queue"], "revio-events");
    assert_eq!(parked[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[], ["Queue"]]));
}

#[tokio::test]
async fn retries_after_throttles_server_errors_and_conflicts_are_counted_by_kind() {
    let _heavy = purse_tests::HEAVY.lock().await;
    let logs = super::logs::capture();
    let app = TestApp::spawn().await;
    // The functions' client: the SDK's retries are counted by its interceptor.
    let table = purse::store::Table { client: purse::store::dynamodb_client(&app.aws), name: app.table.name.clone() };
    let marker = ulid::Ulid::new().to_string();
    let probe = tracing::info_span!("retry_probe", marker = %marker);
    async {
        app.set_faults("throttle=0.4,internal=0.3,seed=97").await;
        for _ in 0..20 {
            let key = purse::store::item::key("PROBE#1", "PROBE");
            let _ = purse::store::get_item(&table, key).await;
        }
        app.set_faults("conflict=0.5,seed=98").await;
        for n in 0..10 {
            let mut item = purse::store::item::key(format!("PROBE#{n}"), "PROBE");
            item.insert("entity".into(), purse::store::item::s("probe"));
            let _ = purse::store::transact(&table, vec![purse::store::put_new(&table, item).unwrap()]).await;
        }
        app.faults_off().await;
    }
    .instrument(probe)
    .await;
    let report = app.fault_report().await;
    let kinds: std::collections::BTreeSet<String> = emitted(&logs, "Retries")
        .into_iter()
        .filter(|(_, spans)| spans.as_array().is_some_and(|s| s.iter().any(|s| s["marker"] == marker.as_str())))
        .map(|(emf, _)| {
            assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[], ["Kind"]]));
            emf["Kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["conflict", "server_error", "throttle"], "injected: {report}");
}
