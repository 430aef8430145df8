//! Withdrawals: bank accounts, the request (hold under the balance condition), the payout
//! worker against the Revio sandbox's payout API, payout webhooks, returns, cancel, and
//! reconciliation — each ending with the ledger audit. Money leaves once, or comes back.

use purse::domain::ids::TransactionId;
use purse::runtime::{SqsEvent, SqsMessage};
use purse::service::withdrawals::{self, PayoutQueue};
use purse_tests::{emulator_stats, eventually, fresh_pan, Sandbox, SandboxFaults, TestApp};
use serde_json::json;

const PAID: &str = "110000001";
const UNPAID: &str = "110000002";
const REJECTED: &str = "910000001";
const RETURNED: &str = "110000003";

async fn history_types(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let r = app.get("/v1/transactions", Some(token)).await;
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["type"].as_str().unwrap().to_owned(), t["status"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_withdrawal_to_a_good_account_is_paid_out_once_and_completes() {
    let app = TestApp::spawn_serving().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    let r = app.withdraw(&token, "30.00", &account).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!((r.json["type"].as_str(), r.json["status"].as_str()), (Some("WITHDRAWAL"), Some("PENDING")));
    assert_eq!(r.json["direction"], "debit");
    let id = r.json["transaction_id"].as_str().unwrap().to_owned();
    assert_eq!(app.wallet_of(&user).await, ("100.00".into(), "70.00".into(), "30.00".into()));
    let done = app.movement_becomes(&token, &id, "COMPLETED", 30).await;
    assert_eq!(done["payout_status"], "SUBMITTED");
    assert_eq!(app.wallet_of(&user).await, ("70.00".into(), "70.00".into(), "0.00".into()));
    assert_eq!(Sandbox::new().payouts_for(&id).await.len(), 1);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_rejected_or_unpaid_payout_fails_the_withdrawal_and_the_coins_come_back() {
    let app = TestApp::spawn_serving().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    for (number, reason) in [(REJECTED, "account_rejected"), (UNPAID, "account_unpaid")] {
        let account = app.bank_account(&token, number).await;
        let r = app.withdraw(&token, "25.00", &account).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.json["transaction_id"].as_str().unwrap().to_owned();
        let failed = app.movement_becomes(&token, &id, "FAILED", 30).await;
        assert_eq!(failed["failure_reason"], reason);
    }
    assert_eq!(app.wallet_of(&user).await, ("100.00".into(), "100.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_payout_returned_after_it_was_paid_is_credited_back_once() {
    let app = TestApp::spawn_serving().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, RETURNED).await;
    let r = app.withdraw(&token, "40.00", &account).await;
    let id = r.json["transaction_id"].as_str().unwrap().to_owned();
    app.movement_becomes(&token, &id, "COMPLETED", 30).await;
    let reversal = withdrawals::reversal_id(&TransactionId::parse(&id).unwrap());
    let back = app.movement_becomes(&token, reversal.as_str(), "COMPLETED", 30).await;
    assert_eq!(
        (back["type"].as_str(), back["direction"].as_str(), back["amount"].as_str()),
        (Some("WITHDRAWAL_REVERSAL"), Some("credit"), Some("40.00"))
    );
    assert_eq!(app.wallet_of(&user).await.0, "100.00");
    // The return delivered again, and a stale "paid" after it, change nothing.
    let payout = Sandbox::new().payouts_for(&id).await[0]["id"].as_str().unwrap().to_owned();
    let revio = app.revio_client().await;
    for _ in 0..3 {
        let outcome = withdrawals::settle_payout(&app.table, &revio, &payout).await.unwrap();
        assert_eq!(outcome, withdrawals::PayoutOutcome::AlreadyReversed(TransactionId::parse(&id).unwrap()));
    }
    assert_eq!(app.wallet_of(&user).await.0, "100.00");
    let types = history_types(&app, &token).await;
    assert!(
        types.contains(&("WITHDRAWAL".into(), "COMPLETED".into()))
            && types.contains(&("WITHDRAWAL_REVERSAL".into(), "COMPLETED".into())),
        "{types:?}"
    );
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn two_hundred_concurrent_withdrawals_under_faults_never_take_the_wallet_below_zero() {
    let _heavy = purse_tests::HEAVY.lock().await;
    let app = TestApp::spawn().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    app.set_faults("conflict=0.10,throttle=0.07,internal=0.04,lost_response=0.04,seed=51").await;
    let body = json!({"amount": "20.00", "bank_account_id": account});
    // Each client retries a 503 (or its own request still in progress) with its own
    // Idempotency-Key, as the API asks: "nothing changed, retry the same request".
    let answers = futures::future::join_all((0..200).map(|_| async {
        let key = format!("key-{}", ulid::Ulid::new());
        app.post_retrying("/v1/withdrawals", &body, Some(&token), &[("idempotency-key", key.as_str())]).await
    }))
    .await;
    app.faults_off().await;
    let accepted = answers.iter().filter(|r| r.status == 202).count();
    let short = answers.iter().filter(|r| r.code() == "insufficient_funds").count();
    assert!(
        answers.iter().all(|r| matches!(r.status, 202 | 422)),
        "{:?}",
        answers.iter().find(|r| !matches!(r.status, 202 | 422))
    );
    assert_eq!(accepted + short, 200);
    assert_eq!(accepted, 5, "100.00 covers exactly five withdrawals of 20.00");
    assert_eq!(app.wallet_of(&user).await, ("100.00".into(), "0.00".into(), "100.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn withdrawing_needs_kyc_an_own_bank_account_past_cooling_off_and_valid_amounts() {
    let app = TestApp::spawn_with(|f, env| {
        if f.binary == "http_bank_accounts_create" {
            env.with("BANK_ACCOUNT_COOLING_OFF_SECONDS", "3600")
        } else {
            env
        }
    })
    .await;
    let (_, token) = app.funded_verified_user("100.00").await;
    let cooling = app.bank_account(&token, PAID).await;
    let r = app.withdraw(&token, "20.00", &cooling).await;
    assert_eq!((r.status, r.code()), (409, "bank_account_cooling_off"), "{}", r.text);

    let (_, unverified) = app.user_token().await;
    let theirs = app.bank_account(&unverified, PAID).await;
    let r = app.withdraw(&unverified, "20.00", &theirs).await;
    assert_eq!((r.status, r.code()), (403, "kyc_required"));
    // Another user's bank account is nobody's for this caller.
    let r = app.withdraw(&token, "20.00", &theirs).await;
    assert_eq!((r.status, r.code()), (404, "bank_account_not_found"));
    assert_eq!(
        app.send(
            "DELETE",
            &format!("/v1/bank-accounts/{theirs}"),
            &[("authorization", &format!("Bearer {token}"))],
            b""
        )
        .await
        .status,
        404
    );

    for (amount, status, code) in [
        ("10.00", 422, "amount_below_minimum"),
        ("5000.01", 422, "amount_above_maximum"),
        ("20.001", 400, "too_many_decimals"),
        ("-20", 400, "invalid_amount"),
        ("1e3", 400, "invalid_amount"),
    ] {
        let r = app.withdraw(&token, amount, &cooling).await;
        assert_eq!((r.status, r.code()), (status, code), "{amount}: {}", r.text);
    }
    let r = app.withdraw(&token, "20.00", "bac_nope").await;
    assert_eq!((r.status, r.code()), (400, "invalid_bank_account_id"));
}

#[tokio::test]
async fn bank_accounts_are_validated_listed_masked_and_deleted() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    for (body, code) in [
        (
            json!({"account_holder": "Ada", "account_number": "12", "branch_code": "250655", "account_type": "cheque"}),
            "invalid_account_number",
        ),
        (
            json!({"account_holder": "Ada", "account_number": "110000001", "branch_code": "2506", "account_type": "cheque"}),
            "invalid_branch_code",
        ),
        (
            json!({"account_holder": "Ada", "account_number": "110000001", "branch_code": "250655", "account_type": "bitcoin"}),
            "invalid_account_type",
        ),
        (
            json!({"account_holder": "<b>", "account_number": "110000001", "branch_code": "250655", "account_type": "cheque"}),
            "invalid_account_holder",
        ),
    ] {
        let r = app.post("/v1/bank-accounts", &body, Some(&token)).await;
        assert_eq!((r.status, r.code()), (400, code), "{}", r.text);
        assert!(!r.text.contains("110000001"));
    }
    let id = app.bank_account(&token, PAID).await;
    let again = app.post("/v1/bank-accounts", &json!({"account_holder": "Ada Lovelace", "account_number": "1100-00001", "branch_code": "250655", "account_type": "cheque"}), Some(&token)).await;
    assert_eq!((again.status, again.code()), (409, "bank_account_exists"));
    let list = app.get("/v1/bank-accounts", Some(&token)).await;
    assert_eq!(list.json["items"][0]["account_number_masked"], "xxxxx0001");
    assert!(!list.text.contains("110000001"));
    let auth = format!("Bearer {token}");
    assert_eq!(
        app.send("DELETE", &format!("/v1/bank-accounts/{id}"), &[("authorization", &auth)], b"").await.status,
        204
    );
    assert_eq!(
        app.send("DELETE", &format!("/v1/bank-accounts/{id}"), &[("authorization", &auth)], b"").await.status,
        404
    );
    assert!(app.get("/v1/bank-accounts", Some(&token)).await.json["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn revio_down_for_a_while_then_back_pays_exactly_once() {
    let faults = SandboxFaults::take().await;
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    sandbox.faults(json!({"down": true})).await;
    let r = app.withdraw(&token, "50.00", &account).await;
    let id = r.json["transaction_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(app.get(&format!("/v1/transactions/{id}"), Some(&token)).await.json["status"], "PENDING");
    sandbox.faults(json!({"down": false})).await;
    app.movement_becomes(&token, &id, "COMPLETED", 40).await;
    assert_eq!(sandbox.payouts_for(&id).await.len(), 1);
    assert_eq!(app.wallet_of(&user).await.0, "50.00");
    app.assert_ledger_balanced().await;
    drop(faults);
}

#[tokio::test]
async fn a_timeout_after_revio_accepted_the_payout_never_pays_twice() {
    let faults = SandboxFaults::take().await;
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    sandbox.faults(json!({"payout_timeout_after_accept": 1})).await;
    let r = app.withdraw(&token, "50.00", &account).await;
    let id = r.json["transaction_id"].as_str().unwrap().to_owned();
    app.movement_becomes(&token, &id, "COMPLETED", 60).await;
    assert_eq!(sandbox.payouts_for(&id).await.len(), 1, "one payout for one withdrawal");
    assert_eq!(app.wallet_of(&user).await.0, "50.00");
    app.assert_ledger_balanced().await;
    drop(faults);
}

#[tokio::test]
async fn a_lost_payout_webhook_is_settled_by_reconciliation() {
    let faults = SandboxFaults::take().await;
    let app = TestApp::spawn_serving().await;
    let sandbox = Sandbox::new();
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    sandbox.faults(json!({"lose_webhooks": 5})).await;
    let r = app.withdraw(&token, "30.00", &account).await;
    let id = r.json["transaction_id"].as_str().unwrap().to_owned();
    eventually(20, "the payout is paid at Revio", || async {
        let p = sandbox.payouts_for(&id).await;
        (p.first().map(|p| p["status"] == "paid") == Some(true)).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        app.get(&format!("/v1/transactions/{id}"), Some(&token)).await.json["status"],
        "PENDING",
        "the webhook was lost"
    );
    let revio = app.revio_client().await;
    let queue = PayoutQueue::from_env(
        &purse::config::Env::default()
            .with("PAYOUTS_QUEUE_URL", app.router.consumer("PayoutsQueue").unwrap().queue_url.clone()),
        &app.aws,
    )
    .unwrap();
    let report = withdrawals::reconcile(&app.table, &revio, &queue, 0, 100).await.unwrap();
    assert_eq!((report.checked, report.settled), (1, 1), "{report:?}");
    app.movement_becomes(&token, &id, "COMPLETED", 5).await;
    assert_eq!(app.wallet_of(&user).await.0, "70.00");
    app.assert_ledger_balanced().await;
    drop(faults);
}

fn payout_message(id: &str, message_id: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(message_id.to_owned());
    m.body = Some(json!({"transaction_id": id}).to_string());
    m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
    m
}

#[tokio::test]
async fn a_batch_that_fails_halfway_and_is_delivered_again_pays_each_withdrawal_once() {
    let app = TestApp::spawn().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = app.withdraw(&token, "20.00", &account).await;
        ids.push(r.json["transaction_id"].as_str().unwrap().to_owned());
    }
    let consumer = app.router.consumer("PayoutsQueue").expect("payouts consumer");
    let mut records: Vec<SqsMessage> =
        ids.iter().enumerate().map(|(i, id)| payout_message(id, &format!("m{i}"))).collect();
    let mut unreadable = SqsMessage::default();
    unreadable.message_id = Some("bad".into());
    unreadable.body = Some("{not json".into());
    records.insert(1, unreadable);
    let mut event = SqsEvent::default();
    event.records = records;
    let first = consumer.handler.call_dyn(event.clone()).await;
    assert_eq!(first.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect::<Vec<_>>(), vec!["bad"]);
    let second = consumer.handler.call_dyn(event).await;
    assert_eq!(second.batch_item_failures.len(), 1);
    let sandbox = Sandbox::new();
    for id in &ids {
        assert_eq!(sandbox.payouts_for(id).await.len(), 1, "{id}");
    }
    let revio = app.revio_client().await;
    for id in &ids {
        let payout = eventually(10, "paid at Revio", || async {
            let p = sandbox.payouts_for(id).await;
            p.first().filter(|p| p["status"] == "paid").map(|p| p["id"].as_str().unwrap().to_owned())
        })
        .await;
        withdrawals::settle_payout(&app.table, &revio, &payout).await.unwrap();
    }
    assert_eq!(app.wallet_of(&user).await, ("40.00".into(), "40.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn cancel_racing_the_payout_worker_has_exactly_one_winner() {
    let app = TestApp::spawn().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    let consumer = app.router.consumer("PayoutsQueue").expect("payouts consumer").clone();
    let sandbox = Sandbox::new();
    for round in 0..4 {
        let r = app.withdraw(&token, "20.00", &account).await;
        let id = r.json["transaction_id"].as_str().unwrap().to_owned();
        let mut event = SqsEvent::default();
        event.records = vec![payout_message(&id, &format!("race-{round}"))];
        let path = format!("/v1/withdrawals/{id}/cancel");
        let empty = json!({});
        let (cancel, worker) = tokio::join!(app.post(&path, &empty, Some(&token)), consumer.handler.call_dyn(event));
        assert!(worker.batch_item_failures.is_empty());
        let paid_out = !sandbox.payouts_for(&id).await.is_empty();
        match cancel.status {
            200 => {
                assert!(!paid_out, "cancelled and paid out");
                assert_eq!(cancel.json["failure_reason"], "cancelled");
            }
            409 => {
                assert!(paid_out, "neither cancelled nor paid out");
                assert_eq!(cancel.code(), "withdrawal_not_cancellable");
            }
            other => panic!("cancel answered {other}: {}", cancel.text),
        }
    }
    let other = app.user_token().await.1;
    let r = app.withdraw(&token, "20.00", &account).await;
    let id = r.json["transaction_id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/withdrawals/{id}/cancel"), &json!({}), Some(&other)).await.status, 404);
    let cancelled = app.post(&format!("/v1/withdrawals/{id}/cancel"), &json!({}), Some(&token)).await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(
        app.post(&format!("/v1/withdrawals/{id}/cancel"), &json!({}), Some(&token)).await.status,
        200,
        "a repeat answers the same"
    );
    let _ = user;
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_payout_that_keeps_failing_is_marked_stuck_for_an_operator() {
    let faults = SandboxFaults::take().await;
    let app = TestApp::spawn_with(
        |f, env| if f.binary == "sqs_payouts" { env.with("PAYOUT_MAX_ATTEMPTS", "2") } else { env },
    )
    .await;
    let sandbox = Sandbox::new();
    let (_, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    sandbox.faults(json!({"down": true})).await;
    let r = app.withdraw(&token, "20.00", &account).await;
    let id = r.json["transaction_id"].as_str().unwrap().to_owned();
    let consumer = app.router.consumer("PayoutsQueue").expect("payouts consumer");
    for attempt in 1..=2 {
        let mut m = payout_message(&id, "stuck");
        m.attributes.insert("ApproximateReceiveCount".into(), attempt.to_string());
        let mut event = SqsEvent::default();
        event.records = vec![m];
        assert_eq!(consumer.handler.call_dyn(event).await.batch_item_failures.len(), 1);
    }
    let tx = app.get(&format!("/v1/transactions/{id}"), Some(&token)).await;
    assert_eq!((tx.json["status"].as_str(), tx.json["payout_status"].as_str()), (Some("PENDING"), Some("STUCK")));
    drop(faults);
}

#[tokio::test]
async fn the_account_number_never_appears_in_a_response_a_log_line_an_item_or_a_queue_message() {
    let logs = super::logs::capture();
    let app = TestApp::spawn().await;
    let (_, token) = app.funded_verified_user("100.00").await;
    let number = "110000001";
    let created = app.post("/v1/bank-accounts", &json!({"account_holder": "Ada Lovelace", "account_number": number, "branch_code": "250655", "account_type": "savings"}), Some(&token)).await;
    let account = created.json["bank_account_id"].as_str().unwrap().to_owned();
    let listed = app.get("/v1/bank-accounts", Some(&token)).await;
    let withdrawn = app.withdraw(&token, "20.00", &account).await;
    for text in [&created.text, &listed.text, &withdrawn.text] {
        assert!(!text.contains(number), "a response shows the number: {text}");
    }
    let bodies = app.queue_bodies("PayoutsQueue").await;
    assert!(!bodies.is_empty());
    assert!(bodies.iter().all(|b| !b.contains(number)), "{bodies:?}");
    // The worker decrypts it only to send it to Revio.
    let consumer = app.router.consumer("PayoutsQueue").unwrap();
    // Delivered again while it fails, as SQS would (on a loaded machine a first try can run out
    // of its time budget while the heavy fault tests hold the emulator).
    let mut delivered = false;
    for _ in 0..5 {
        let mut event = SqsEvent::default();
        event.records = vec![payout_message(withdrawn.json["transaction_id"].as_str().unwrap(), "m1")];
        if consumer.handler.call_dyn(event).await.batch_item_failures.is_empty() {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(delivered, "the payout worker never took the withdrawal");
    for item in app.scan_all().await {
        assert!(!format!("{item:?}").contains(number), "an item stores the number in the clear");
    }
    assert!(!logs.text().contains(number), "a log line contains the account number");
}

#[tokio::test]
async fn a_withdrawal_request_repeated_with_its_key_makes_one_withdrawal() {
    let app = TestApp::spawn().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    let key = format!("key-{}", ulid::Ulid::new());
    let body = json!({"amount": "30.00", "bank_account_id": account});
    let headers = [("idempotency-key", key.as_str())];
    let answers =
        futures::future::join_all((0..20).map(|_| app.post_with("/v1/withdrawals", &body, Some(&token), &headers)))
            .await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .filter(|r| r.status == 202)
        .map(|r| r.json["transaction_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(
        answers.iter().all(|r| r.status == 202 || r.code() == "idempotency_request_in_progress"),
        "{:?}",
        answers.iter().map(|r| r.code().to_owned()).collect::<Vec<_>>()
    );
    assert_eq!(app.wallet_of(&user).await.1, "70.00");
}

#[tokio::test]
async fn a_withdrawal_held_before_a_chargeback_is_not_paid_out_from_a_restricted_wallet() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    let key = format!("key-{}", ulid::Ulid::new());
    let r =
        app.post_with("/v1/deposits", &json!({"amount": "100.00"}), Some(&token), &[("idempotency-key", &key)]).await;
    let purchase = r.json["reference"].as_str().unwrap().to_owned();
    let sandbox = Sandbox::new();
    sandbox.pay(&purchase).await;
    let revio = app.revio_client().await;
    purse::service::settlement::settle_purchase(&app.table, &revio, &purchase).await.unwrap();
    let account = app.bank_account(&token, PAID).await;
    let w = app.withdraw(&token, "80.00", &account).await;
    let id = w.json["transaction_id"].as_str().unwrap().to_owned();
    // The payer's bank takes the deposit back while the withdrawal waits for the worker.
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/purchases/{purchase}/chargeback", sandbox.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    purse::service::settlement::settle_purchase(&app.table, &revio, &purchase).await.unwrap();
    let consumer = app.router.consumer("PayoutsQueue").unwrap();
    let mut event = SqsEvent::default();
    event.records = vec![payout_message(&id, "m1")];
    assert!(consumer.handler.call_dyn(event).await.batch_item_failures.is_empty());
    let tx = app.get(&format!("/v1/transactions/{id}"), Some(&token)).await;
    assert_eq!(
        (tx.json["status"].as_str(), tx.json["failure_reason"].as_str()),
        (Some("FAILED"), Some("wallet_restricted"))
    );
    assert!(sandbox.payouts_for(&id).await.is_empty(), "nothing left a wallet that owes a reversal");
    let _ = user;
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn with_faults_on_a_withdrawal_is_held_paid_and_completed_exactly_once() {
    let _heavy = purse_tests::HEAVY.lock().await;
    let app = TestApp::spawn_serving().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    app.set_faults("conflict=0.10,throttle=0.07,internal=0.04,lost_response=0.04,seed=61").await;
    let mut ids = Vec::new();
    let body = json!({"amount": "20.00", "bank_account_id": account});
    for _ in 0..3 {
        // A 503 means "retry the same request": with the same Idempotency-Key.
        let key = format!("key-{}", ulid::Ulid::new());
        let headers = [("idempotency-key", key.as_str())];
        let r = eventually(90, "the request is accepted", || async {
            let r = app.post_with("/v1/withdrawals", &body, Some(&token), &headers).await;
            (r.status == 202).then_some(r)
        })
        .await;
        ids.push(r.json["transaction_id"].as_str().unwrap().to_owned());
    }
    // A webhook whose processing failed is redelivered after the queue's visibility timeout
    // (180 s); the scheduled reconciliation is what settles it sooner. Run it as it would run.
    let revio = app.revio_client().await;
    let queue = PayoutQueue::from_env(
        &purse::config::Env::default()
            .with("PAYOUTS_QUEUE_URL", app.router.consumer("PayoutsQueue").unwrap().queue_url.clone()),
        &app.aws,
    )
    .unwrap();
    eventually(90, "every withdrawal completes", || async {
        let mut done = 0;
        for id in &ids {
            let t = app.get(&format!("/v1/transactions/{id}"), Some(&token)).await;
            if t.json["status"] == "COMPLETED" {
                done += 1;
            }
        }
        if done < ids.len() {
            let _ = withdrawals::reconcile(&app.table, &revio, &queue, 10, 100).await;
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        (done == ids.len()).then_some(())
    })
    .await;
    app.faults_off().await;
    let sandbox = Sandbox::new();
    for id in &ids {
        assert_eq!(sandbox.payouts_for(id).await.len(), 1, "{id}");
    }
    let report = app.fault_report().await;
    let injected: u64 = report["injected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(injected > 0, "{report}");
    assert_eq!(app.wallet_of(&user).await, ("40.00".into(), "40.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

/// DynamoDB and SQS requests of one withdrawal from the request to COMPLETED (request, payout
/// worker, webhook receiver, webhook consumer), and the sizes of the items its transactions
/// write. A measurement, printed, run by hand and alone (the emulator's counters are global):
/// `tools/stack/with-stack.sh cargo test -p purse-tests --test integration withdrawals::measured -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn measured_requests_per_withdrawal() {
    let app = TestApp::spawn_serving().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let account = app.bank_account(&token, PAID).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    emulator_stats(true).await;
    let r = app.withdraw(&token, "30.00", &account).await;
    println!("request: {}", emulator_stats(false).await);
    let id = r.json["transaction_id"].as_str().unwrap().to_owned();
    eventually(30, "completed", || async {
        let t = purse::ledger::store::get_transaction(&app.table, &TransactionId::parse(&id).unwrap()).await.ok()??;
        (t.status == purse::ledger::TransactionStatus::Completed).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    println!("request to COMPLETED (includes this test's one polling read per 100 ms): {}", emulator_stats(true).await);
    for item in app.scan_all().await {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if pk.contains(&id) || pk.contains(&user) || pk.starts_with("ACCOUNT#system") || pk.starts_with("WDCAP") {
            let size: usize = item.iter().map(|(k, v)| k.len() + format!("{v:?}").len().saturating_sub(6)).sum();
            println!("~{size:>5} bytes  {pk}");
        }
    }
}
