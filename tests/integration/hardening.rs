//! Defects a payments review found, each with the scenario that exposed it (issue 6, §4):
//! an Idempotency-Key takeover that started a second deposit, a Revio refusal that became a
//! 500 and was retried forever, a consumer that processed a batch one message at a time, a
//! visibility timeout shorter than six consumer timeouts, and a held movement on a system
//! account that debited twice.

use aws_sdk_dynamodb::types::AttributeValue;
use purse::domain::ids::{TransactionId, UserId};
use purse::idempotency::{fingerprint, record_key, IdempotencyKey};
use purse::ledger::store::{self, LedgerError};
use purse::ledger::{AccountId, SystemAccount};
use purse::store::StoreError;
use purse_tests::TestApp;
use serde_json::json;

async fn deposit(app: &TestApp, token: &str, amount: &str, key: &str) -> purse_tests::TestResponse {
    app.post_with("/v1/deposits", &json!({"amount": amount}), Some(token), &[("idempotency-key", key)]).await
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn a_takeover_of_a_key_whose_answer_was_never_stored_meets_the_first_deposit_instead_of_starting_a_second() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let key = format!("key-{}", ulid::Ulid::new());
    let first = deposit(&app, &token, "30.00", &key).await;
    assert_eq!(first.status, 201, "{}", first.text);

    // The function died after creating the deposit, before storing the answer: the record is
    // still IN_PROGRESS, and its lease has passed.
    let scope = format!("{user}:POST /v1/deposits");
    let mut record = record_key(&scope, &IdempotencyKey::parse(&key).unwrap());
    let body = json!({"amount": "30.00"}).to_string();
    let req = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/v1/deposits")
        .body(lambda_http::Body::Text(body))
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    for (name, value) in [
        ("status", AttributeValue::S("IN_PROGRESS".into())),
        ("fingerprint", AttributeValue::S(fingerprint(&req))),
        ("claim_id", AttributeValue::S("crashed".into())),
        ("lease_until", AttributeValue::N((now - 1).to_string())),
        ("expires_at", AttributeValue::N((now + 3600).to_string())),
    ] {
        record.insert(name.into(), value);
    }
    app.table.client.put_item().table_name(&app.table.name).set_item(Some(record)).send().await.unwrap();

    let retry = deposit(&app, &token, "30.00", &key).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.json["id"], first.json["id"], "the same deposit, not a second one");
    assert_eq!(retry.json["checkout_url"], first.json["checkout_url"], "no second Revio purchase");
    let history = app.get("/v1/transactions", Some(&token)).await;
    assert_eq!(history.json["items"].as_array().unwrap().len(), 1, "{}", history.text);
    let used = purse::ledger::Quota::used(&app.table, &format!("DEPCAP#{user}#{}", today())).await.unwrap();
    assert_eq!(used.to_string(), "30.00", "the daily allowance is counted once");
}

#[tokio::test]
async fn a_purchase_revio_refuses_answers_502_provider_rejected_and_the_retry_replays_it() {
    // A Revio secret with a brand Revio does not know: every purchase creation is refused (4xx).
    let aws = purse_tests::emulator_config().await;
    let secret = format!("wrong-brand-{}", ulid::Ulid::new());
    aws_sdk_secretsmanager::Client::new(&aws)
        .create_secret()
        .name(&secret)
        .secret_string(json!({"api_key": "sandbox-revio-key", "brand_id": "no-such-brand"}).to_string())
        .send()
        .await
        .unwrap();
    let arn = format!("arn:aws:secretsmanager:*:*:secret:{secret}-*");
    let app = TestApp::spawn_granting(
        move |f, env| {
            if f.environment.contains_key("DEPOSIT_MIN") {
                env.with("REVIO_SECRET_ID", secret.clone())
            } else {
                env
            }
        },
        // The function reads this secret instead of the template's: so may it (IAM).
        move |f| {
            if f.environment.contains_key("DEPOSIT_MIN") {
                vec![json!({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn})]
            } else {
                Vec::new()
            }
        },
    )
    .await;
    let (user, token) = app.user_token().await;
    let key = format!("key-{}", ulid::Ulid::new());
    let r = deposit(&app, &token, "20.00", &key).await;
    assert_eq!((r.status, r.code()), (502, "provider_rejected"), "{}", r.text);
    assert!(r.header("retry-after").is_none(), "a refusal is final: no Retry-After");

    let again = deposit(&app, &token, "20.00", &key).await;
    assert_eq!((again.status, again.code()), (502, "provider_rejected"), "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"), "the stored answer, not a second attempt");

    let history = app.get("/v1/transactions", Some(&token)).await;
    let items = history.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["status"].as_str(), items[0]["failure_reason"].as_str()),
        (Some("FAILED"), Some("provider_rejected"))
    );
    let used = purse::ledger::Quota::used(&app.table, &format!("DEPCAP#{user}#{}", today())).await.unwrap();
    assert!(used.is_zero(), "a refused deposit gives its daily allowance back: {used}");
    app.assert_ledger_balanced().await;
}

/// A consumer whose every message waits for all the others of its batch: it finishes only if
/// the batch is processed concurrently.
struct Rendezvous(tokio::sync::Barrier);

impl purse::runtime::SqsFunction for Rendezvous {
    async fn init(_: &purse::InitContext) -> Result<Self, purse::config::InitError> {
        unreachable!("built directly")
    }

    async fn handle_message(&self, _: &purse::runtime::SqsMessage) -> Result<(), purse::runtime::MessageError> {
        self.0.wait().await;
        Ok(())
    }
}

#[tokio::test]
async fn a_batch_is_processed_concurrently_so_one_slow_message_does_not_hold_the_others() {
    let consumer = Rendezvous(tokio::sync::Barrier::new(3));
    let mut event = purse::runtime::SqsEvent::default();
    for i in 0..3 {
        let mut m = purse::runtime::SqsMessage::default();
        m.message_id = Some(format!("m{i}"));
        event.records.push(m);
    }
    let answer =
        tokio::time::timeout(std::time::Duration::from_secs(5), purse::runtime::handle_batch(&consumer, event)).await;
    let answer = answer.expect("messages processed one after another never meet");
    assert!(answer.batch_item_failures.is_empty());
}

#[test]
fn every_queue_hides_a_message_for_at_least_six_of_its_consumer_s_timeouts() {
    let template = purse_local::template::Template::project().unwrap();
    let raw: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(purse_local::template::project_root().join("template.yaml")).unwrap(),
    )
    .unwrap();
    let global_timeout = raw["Globals"]["Function"]["Timeout"].as_u64().unwrap_or(3);
    let queues = template.queues();
    let mut checked = 0;
    for function in template.functions().unwrap() {
        let timeout =
            raw["Resources"][function.logical_id.as_str()]["Properties"]["Timeout"].as_u64().unwrap_or(global_timeout);
        for source in &function.sqs_sources {
            let queue = queues.iter().find(|q| q.logical_id == source.queue_logical_id).unwrap();
            let visibility = u64::from(queue.visibility_timeout.unwrap_or(30));
            assert!(visibility >= 6 * timeout, "{}: visibility {visibility} s < 6 x {timeout} s", queue.logical_id);
            checked += 1;
        }
    }
    assert!(checked > 0, "no SQS consumer found in template.yaml");
}

#[tokio::test]
async fn a_held_movement_stored_against_a_system_account_is_refused_rather_than_debited_twice() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user_token().await;
    let user = UserId::parse(&user).unwrap();
    // Only a wallet can hold money (`NewHold` has no debit side). A stored PENDING movement
    // claiming a hold on a system shard — which the old code posted by subtracting the amount
    // from the shard's balance *and* its available money — is refused as corrupt.
    let id = TransactionId::generate();
    let shard = AccountId::system(SystemAccount::PlatformRevenue, 3);
    let now = purse::store::now_rfc3339();
    let mut item = store::transaction_key(&id);
    for (name, value) in [
        ("entity", AttributeValue::S("transaction".into())),
        ("transaction_id", AttributeValue::S(id.to_string())),
        ("user_id", AttributeValue::S(user.to_string())),
        ("type", AttributeValue::S("CALL_CHARGE".into())),
        ("status", AttributeValue::S("PENDING".into())),
        ("amount", AttributeValue::N("5.00".into())),
        ("currency", AttributeValue::S("COIN".into())),
        ("debit_account", AttributeValue::S(shard.to_string())),
        ("credit_account", AttributeValue::S(AccountId::wallet(&user).to_string())),
        ("held", AttributeValue::Bool(true)),
        ("created_at", AttributeValue::S(now.clone())),
        ("updated_at", AttributeValue::S(now)),
    ] {
        item.insert(name.into(), value);
    }
    app.table.client.put_item().table_name(&app.table.name).set_item(Some(item)).send().await.unwrap();
    assert!(matches!(store::post(&app.table, &id).await, Err(LedgerError::Store(StoreError::Corrupt(_)))));
    assert!(matches!(store::fail(&app.table, &id, "x").await, Err(LedgerError::Store(StoreError::Corrupt(_)))));
    assert!(store::get_account(&app.table, &shard).await.unwrap().is_none(), "the shard was never touched");
    assert_eq!(app.wallet_of(user.as_str()).await.0, "0.00");
}
