//! Referral rewards: paid to the referrer exactly once when the referee's first deposit has
//! completed and the referee's KYC has verified, in either order; never for a self-referral
//! through a second account; within the cap; and `GET /v1/referrals` shows it all.

use purse::domain::ids::UserId;
use purse::money::{Amount, Currency};
use purse::service::referrals::{self, RewardOutcome, RewardRules};
use purse_tests::{emulator_stats, eventually, fresh_pan, Sandbox, TestApp};
use serde_json::{json, Value};

/// A referrer whose own KYC verified: (user id, token, referral code).
async fn referrer(app: &TestApp) -> (String, String, String) {
    let (id, token, code) = unverified_referrer(app).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    (id, token, code)
}

/// A referrer who has not verified: (user id, token, referral code).
async fn unverified_referrer(app: &TestApp) -> (String, String, String) {
    let (profile, tokens) = app.signed_in_user().await;
    (
        profile["id"].as_str().unwrap().to_owned(),
        tokens["access_token"].as_str().unwrap().to_owned(),
        profile["referral_code"].as_str().unwrap().to_owned(),
    )
}

/// A deposit paid at Revio; returns its transaction id once COMPLETED.
async fn paid_deposit(app: &TestApp, token: &str, amount: &str) -> String {
    let key = format!("key-{}", ulid::Ulid::new());
    let r = app.post_with("/v1/deposits", &json!({"amount": amount}), Some(token), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (txn, purchase) = (r.json["id"].as_str().unwrap().to_owned(), r.json["reference"].as_str().unwrap().to_owned());
    Sandbox::new().pay(&purchase).await;
    eventually(20, "the deposit completes", || async {
        let t = app.get(&format!("/v1/transactions/{txn}"), Some(token)).await;
        (t.json["status"] == "COMPLETED").then_some(())
    })
    .await;
    txn
}

/// A deposit credited without the queue: created, paid at Revio, settled directly.
async fn settled_deposit(app: &TestApp, token: &str, amount: &str) {
    settled_deposit_purchase(app, token, amount).await;
}

/// [`settled_deposit`], answering the Revio purchase id.
async fn settled_deposit_purchase(app: &TestApp, token: &str, amount: &str) -> String {
    let key = format!("key-{}", ulid::Ulid::new());
    let r = app.post_with("/v1/deposits", &json!({"amount": amount}), Some(token), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let purchase = r.json["reference"].as_str().unwrap().to_owned();
    Sandbox::new().pay(&purchase).await;
    let revio = app.revio_client().await;
    let outcome = purse::service::settlement::settle_purchase(&app.table, &revio, &purchase).await.unwrap();
    assert!(matches!(outcome, purse::service::settlement::Outcome::Credited(_)), "{outcome:?}");
    purchase
}

/// The rewards relay of the app's stack (as the functions build theirs).
fn relay(app: &TestApp) -> referrals::RewardsRelay {
    let queue = app.router.consumer("RewardsQueue").expect("rewards consumer").queue_url.clone();
    referrals::RewardsRelay::from_env(&purse::config::Env::default().with("REWARDS_QUEUE_URL", queue), &app.aws)
        .unwrap()
}

fn rules(max: u32) -> RewardRules {
    RewardRules { amount: Amount::parse("50.00", Currency::Coin).unwrap(), max_rewards_per_referrer: max }
}

async fn rewards_of(app: &TestApp, token: &str) -> Value {
    let r = app.get("/v1/referrals", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

#[tokio::test]
async fn a_referee_who_verifies_and_deposits_earns_the_referrer_one_reward() {
    let app = TestApp::spawn_serving().await;
    let (referrer_id, referrer_token, code) = referrer(&app).await;
    let (_, token, email) = app.referred_user(&code).await;
    let before = rewards_of(&app, &referrer_token).await;
    assert_eq!(before["referees"][0]["status"], "PENDING");
    assert_eq!(before["referees"][0]["email"], format!("{}***@example.com", &email[..1]));
    assert!(before["share_url"].as_str().unwrap().ends_with(&code));

    app.submit_kyc(&token, &fresh_pan("1111")).await;
    app.kyc_becomes(&token, "VERIFIED", 20).await;
    assert_eq!(app.wallet_of(&referrer_id).await.0, "0.00", "no reward before the first deposit");
    paid_deposit(&app, &token, "25.00").await;

    let after = eventually(20, "the referrer is rewarded", || async {
        let v = rewards_of(&app, &referrer_token).await;
        (v["referees"][0]["status"] == "COMPLETED").then_some(v)
    })
    .await;
    assert_eq!(after["rewards_earned"], "50.00");
    assert_eq!(after["rewards_count"], 1);
    assert_eq!(after["referees"][0]["reward"], "50.00");
    assert_eq!(after["referees"][0]["outcome"], "rewarded");
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    let history = app.get("/v1/transactions?type=REFERRAL_REWARD", Some(&referrer_token)).await;
    assert_eq!(history.json["items"].as_array().map(Vec::len), Some(1), "{}", history.text);

    // A second deposit by the referee pays nothing more.
    paid_deposit(&app, &token, "10.00").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_reward_that_waits_for_kyc_pays_when_kyc_verifies() {
    let app = TestApp::spawn_serving().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (_, token, _) = app.referred_user(&code).await;
    paid_deposit(&app, &token, "25.00").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.wallet_of(&referrer_id).await.0, "0.00", "no reward before KYC");
    let r = app.submit_kyc(&token, &fresh_pan("3333")).await;
    assert_eq!(r.json["status"], "VERIFIED");
    eventually(20, "the referrer is rewarded", || async {
        (app.wallet_of(&referrer_id).await.0 == "50.00").then_some(())
    })
    .await;
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_reward_event_delivered_fifty_times_concurrently_pays_once() {
    let app = TestApp::spawn().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    settled_deposit(&app, &token, "20.00").await;
    let referee = UserId::parse(&referee).unwrap();
    let rules = rules(25);
    let outcomes =
        futures::future::join_all((0..50).map(|_| referrals::pay_reward(&app.table, &rules, &referee))).await;
    let paid = outcomes.iter().filter(|o| matches!(o, Ok(RewardOutcome::Paid(_)))).count();
    assert_eq!(paid, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Ok(RewardOutcome::Paid(_) | RewardOutcome::AlreadyCompleted))));
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn with_faults_on_fifty_concurrent_reward_events_pay_once() {
    let _heavy = purse_tests::HEAVY.lock().await;
    let app = TestApp::spawn().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    settled_deposit(&app, &token, "20.00").await;
    let referee = UserId::parse(&referee).unwrap();
    let rules = rules(25);
    app.set_faults("conflict=0.10,throttle=0.07,internal=0.04,lost_response=0.04,seed=31").await;
    let outcomes =
        futures::future::join_all((0..50).map(|_| referrals::pay_reward(&app.table, &rules, &referee))).await;
    // Retry what failed transiently, as SQS would redeliver it.
    let mut failed = outcomes.iter().filter(|o| o.is_err()).count();
    while failed > 0 {
        if referrals::pay_reward(&app.table, &rules, &referee).await.is_ok() {
            failed -= 1;
        }
    }
    app.faults_off().await;
    let report = app.fault_report().await;
    let injected: u64 = report["injected"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert!(injected > 0, "{report}");
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    let referral = purse::store::referrals::get(&app.table, &referee).await.unwrap().unwrap();
    assert_eq!(referral.status, "COMPLETED");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_reward_event_never_sent_is_relayed_by_the_scheduled_job_and_paid() {
    // The first deposit is recorded on the referral in the credit's own write, but nothing is
    // sent to the queue (settled directly, as if the process died right after the credit).
    let app = TestApp::spawn().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    let referee = UserId::parse(&referee).unwrap();
    // KYC's own announcement is processed before the deposit exists: the reward waits.
    assert_eq!(
        referrals::pay_reward(&app.table, &rules(25), &referee).await.unwrap(),
        RewardOutcome::WaitingForDeposit
    );
    settled_deposit(&app, &token, "20.00").await;
    let job = app.router.job("ReconcileDepositsFunction").expect("reconcile job");
    let summary = job.handler.run_dyn().await.expect("reconcile runs");
    assert!(summary["referral_events_relayed"].as_u64() >= Some(1), "{summary}");
    let bodies = eventually(10, "the relayed event is on the rewards queue", || async {
        let bodies = app.queue_bodies("RewardsQueue").await;
        bodies.iter().any(|b| b.contains(referee.as_str())).then_some(bodies)
    })
    .await;
    for body in bodies {
        referrals::process(&app.table, &rules(25), &relay(&app), &body).await.unwrap();
    }
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    let summary = job.handler.run_dyn().await.expect("reconcile runs");
    assert_eq!(summary["referral_events_relayed"], 0, "nothing is left to relay: {summary}");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_self_referral_through_a_second_account_never_pays() {
    let app = TestApp::spawn().await;
    // One person: a first account that never verifies, and a second one, signed up with the
    // first one's code, verified with the person's PAN and funded.
    let (referrer_id, referrer_token, code) = unverified_referrer(&app).await;
    let (second, token, _) = app.referred_user(&code).await;
    let pan = fresh_pan("3333");
    assert_eq!(app.submit_kyc(&token, &pan).await.json["status"], "VERIFIED");
    settled_deposit(&app, &token, "20.00").await;
    let second = UserId::parse(&second).unwrap();
    let outcome = referrals::pay_reward(&app.table, &rules(25), &second).await.unwrap();
    assert_eq!(outcome, RewardOutcome::WaitingForReferrerKyc);
    // The first account cannot verify with the same PAN, so the reward can never become owed.
    let r = app.submit_kyc(&referrer_token, &pan).await;
    assert_eq!((r.status, r.code()), (409, "pan_already_registered"));
    assert_eq!(
        referrals::pay_reward(&app.table, &rules(25), &second).await.unwrap(),
        RewardOutcome::WaitingForReferrerKyc
    );
    assert_eq!(app.wallet_of(&referrer_id).await.0, "0.00");
}

#[tokio::test]
async fn a_reward_that_waits_for_the_referrers_kyc_pays_when_the_referrer_verifies() {
    let app = TestApp::spawn_serving().await;
    let (referrer_id, referrer_token, code) = unverified_referrer(&app).await;
    let (_, token, _) = app.referred_user(&code).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    paid_deposit(&app, &token, "20.00").await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(app.wallet_of(&referrer_id).await.0, "0.00", "no reward while the referrer is unverified");
    app.submit_kyc(&referrer_token, &fresh_pan("1111")).await;
    app.kyc_becomes(&referrer_token, "VERIFIED", 20).await;
    eventually(20, "the referrer is rewarded", || async {
        (app.wallet_of(&referrer_id).await.0 == "50.00").then_some(())
    })
    .await;
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_referrer_verification_whose_announcement_was_lost_is_relayed_by_the_scheduled_job() {
    let app = TestApp::spawn().await;
    let (referrer_id, referrer_token, code) = unverified_referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    settled_deposit(&app, &token, "20.00").await;
    let referee = UserId::parse(&referee).unwrap();
    assert_eq!(
        referrals::pay_reward(&app.table, &rules(25), &referee).await.unwrap(),
        RewardOutcome::WaitingForReferrerKyc
    );
    // The referrer's check is decided and written, and the process dies before announcing:
    // only the marker written with the verification is left.
    let pending = app.submit_kyc(&referrer_token, &fresh_pan("6666")).await;
    let kyc_id = purse::domain::ids::KycId::parse(pending.json["kyc_id"].as_str().unwrap()).unwrap();
    let attempt = purse::store::kyc::get(&app.table, &kyc_id).await.unwrap().unwrap();
    let decided = purse::store::kyc::finish(
        &app.table,
        &attempt,
        &purse::store::kyc::Decision::Verified,
        &purse::store::kyc::DecidedBy::Provider,
    )
    .await
    .unwrap();
    assert_eq!(decided, purse::store::kyc::Finished::Applied);
    let referrer = UserId::parse(&referrer_id).unwrap();
    let marked = purse::store::referrals::verified_referrers(&app.table, 100).await.unwrap();
    assert!(marked.iter().any(|(u, _)| u == &referrer), "the verification left its marker");

    let job = app.router.job("ReconcileDepositsFunction").expect("reconcile job");
    let summary = job.handler.run_dyn().await.expect("reconcile runs");
    assert_eq!(summary["referral_events_relayed"], 1, "{summary}");
    let bodies = eventually(10, "the referee's reward is announced", || async {
        let bodies = app.queue_bodies("RewardsQueue").await;
        bodies.iter().any(|b| b.contains(referee.as_str())).then_some(bodies)
    })
    .await;
    for body in bodies {
        referrals::process(&app.table, &rules(25), &relay(&app), &body).await.unwrap();
    }
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    let again = job.handler.run_dyn().await.expect("reconcile runs");
    assert_eq!(again["referral_events_relayed"], 0, "the markers are cleared: {again}");
    assert!(purse::store::referrals::verified_referrers(&app.table, 100)
        .await
        .unwrap()
        .iter()
        .all(|(u, _)| u != &referrer));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_referrer_at_the_cap_earns_nothing_more_and_the_referral_completes() {
    let app = TestApp::spawn().await;
    let (referrer_id, referrer_token, code) = referrer(&app).await;
    let mut referees = Vec::new();
    for _ in 0..2 {
        let (id, token, _) = app.referred_user(&code).await;
        assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
        settled_deposit(&app, &token, "10.00").await;
        referees.push(UserId::parse(&id).unwrap());
    }
    let rules = rules(1);
    assert!(matches!(referrals::pay_reward(&app.table, &rules, &referees[0]).await.unwrap(), RewardOutcome::Paid(_)));
    assert_eq!(referrals::pay_reward(&app.table, &rules, &referees[1]).await.unwrap(), RewardOutcome::CapReached);
    assert_eq!(referrals::pay_reward(&app.table, &rules, &referees[1]).await.unwrap(), RewardOutcome::AlreadyCompleted);
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    let view = rewards_of(&app, &referrer_token).await;
    let wallet = purse::store::get_item(
        &app.table,
        purse::ledger::store::account_key(&purse::ledger::AccountId::wallet(&UserId::parse(&referrer_id).unwrap())),
    )
    .await
    .unwrap();
    assert_eq!(
        (view["rewards_earned"].as_str(), view["rewards_count"].as_i64()),
        (Some("50.00"), Some(1)),
        "{view} {wallet:?}"
    );
    let outcomes: Vec<&str> =
        view["referees"].as_array().unwrap().iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.contains(&"cap_reached") && outcomes.contains(&"rewarded"));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_referral_list_pages_with_a_cursor_that_cannot_reach_another_referrers_list() {
    let app = TestApp::spawn().await;
    let (_, token, code) = referrer(&app).await;
    let (_, other_token, _) = referrer(&app).await;
    for _ in 0..3 {
        app.referred_user(&code).await;
    }
    let first = app.get("/v1/referrals?limit=2", Some(&token)).await;
    assert_eq!(first.json["referees"].as_array().unwrap().len(), 2);
    let cursor = first.json["next_cursor"].as_str().expect("a next page").to_owned();
    let second = app.get(&format!("/v1/referrals?limit=2&cursor={cursor}"), Some(&token)).await;
    assert_eq!(second.json["referees"].as_array().unwrap().len(), 1, "{}", second.text);
    let foreign = app.get(&format!("/v1/referrals?limit=2&cursor={cursor}"), Some(&other_token)).await;
    assert_eq!(foreign.status, 200);
    assert!(
        foreign.json["referees"].as_array().unwrap().is_empty(),
        "another referrer sees none of these: {}",
        foreign.text
    );
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=not-a-cursor"] {
        let r = app.get(&format!("/v1/referrals?{bad}"), Some(&token)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    assert_eq!(app.get("/v1/referrals", None).await.status, 401);
}

#[tokio::test]
async fn signing_up_with_an_unknown_code_creates_no_account() {
    let app = TestApp::spawn().await;
    let email = format!("nobody-{}@example.com", ulid::Ulid::new().to_string().to_lowercase());
    let r = app
        .post(
            "/v1/auth/register",
            &json!({"email": email, "password": "correct-horse-battery", "referral_code": "ZZZZ2345"}),
            None,
        )
        .await;
    assert_eq!((r.status, r.code()), (422, "unknown_referral_code"));
    let login = app.post("/v1/auth/login", &json!({"email": email, "password": "correct-horse-battery"}), None).await;
    assert_eq!(login.status, 401);
}

/// Approximate DynamoDB item size: attribute names plus values (strings and numbers as text).
fn item_size(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    fn value(v: &A) -> usize {
        match v {
            A::S(s) | A::N(s) => s.len(),
            A::Bool(_) | A::Null(_) => 1,
            A::L(l) => 3 + l.iter().map(|x| 1 + value(x)).sum::<usize>(),
            A::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value(x)).sum::<usize>(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// DynamoDB and SQS requests, and the sizes of the items written, of one KYC submission (both
/// answers) and one referral reward. A measurement, printed, run by hand and alone (the
/// emulator's counters are global):
/// `tools/stack/with-stack.sh cargo test -p purse-tests --test integration referrals::measured -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn measured_requests_per_kyc_submission_and_per_reward() {
    let app = TestApp::spawn().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    let (_, other) = app.user_token().await;
    emulator_stats(true).await;
    let pending = app.submit_kyc(&other, &fresh_pan("1111")).await;
    assert_eq!(pending.json["status"], "PENDING");
    println!("KYC submission answered PENDING: {}", emulator_stats(true).await);
    let verified = app.submit_kyc(&token, &fresh_pan("3333")).await;
    assert_eq!(verified.json["status"], "VERIFIED");
    println!("KYC submission answered VERIFIED (referred user): {}", emulator_stats(true).await);
    settled_deposit(&app, &token, "20.00").await;
    emulator_stats(true).await;
    let referee = UserId::parse(&referee).unwrap();
    assert!(matches!(referrals::pay_reward(&app.table, &rules(25), &referee).await.unwrap(), RewardOutcome::Paid(_)));
    println!("referral reward: {}", emulator_stats(true).await);
    for item in app.scan_all().await {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let kind = pk.split('#').next().unwrap_or_default().to_owned();
        if ["KYC", "PANCLAIM", "REFERRAL", "USER", "TXN", "ACCOUNT"].contains(&kind.as_str()) {
            println!("{:>5} bytes  {pk}", item_size(&item));
        }
    }
    let _ = referrer_id;
}

#[tokio::test]
async fn a_first_deposit_credited_by_an_operator_through_a_case_counts_for_the_referral() {
    let app = TestApp::spawn_serving().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    // Our call to Revio timed out (the deposit FAILED), yet the person paid: a case opens.
    let key = format!("key-{}", ulid::Ulid::new());
    let r =
        app.post_with("/v1/deposits", &json!({"amount": "30.00"}), Some(&token), &[("idempotency-key", &key)]).await;
    let (txn, purchase) = (r.json["id"].as_str().unwrap().to_owned(), r.json["reference"].as_str().unwrap().to_owned());
    let id = purse::domain::ids::TransactionId::parse(&txn).unwrap();
    assert!(purse::ledger::store::fail(&app.table, &id, "provider_unavailable").await.unwrap().changed);
    Sandbox::new().pay(&purchase).await;
    let admin = app.admin_token().await;
    let case_id = eventually(20, "a case opens", || async {
        let cases = app.get("/v1/admin/cases", Some(&admin)).await.json;
        cases["items"]
            .as_array()?
            .iter()
            .find(|c| c["purchase_id"] == purchase.as_str())
            .map(|c| c["case_id"].as_str().unwrap().to_owned())
    })
    .await;
    let resolved = app
        .post(
            &format!("/v1/admin/cases/{case_id}/resolve"),
            &json!({"action": "credit", "reason": "paid after our timeout"}),
            Some(&admin),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    let referral = purse::store::referrals::get(&app.table, &UserId::parse(&referee).unwrap()).await.unwrap().unwrap();
    assert_eq!(referral.first_deposit_txn.as_deref(), resolved.json["resolution"]["transaction_id"].as_str());
    assert!(referral.due_since.is_some(), "the referral is marked due for the relay");
    let job = app.router.job("ReconcileDepositsFunction").expect("reconcile job");
    job.handler.run_dyn().await.expect("reconcile runs");
    eventually(20, "the referrer is rewarded", || async {
        (app.wallet_of(&referrer_id).await.0 == "50.00").then_some(())
    })
    .await;
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_cap_of_zero_pays_no_reward_at_all() {
    let app = TestApp::spawn().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    settled_deposit(&app, &token, "10.00").await;
    let referee = UserId::parse(&referee).unwrap();
    assert_eq!(referrals::pay_reward(&app.table, &rules(0), &referee).await.unwrap(), RewardOutcome::CapReached);
    assert_eq!(app.wallet_of(&referrer_id).await.0, "0.00");
}

#[tokio::test]
async fn a_first_deposit_charged_back_does_not_count_and_the_next_one_does() {
    let app = TestApp::spawn().await;
    let (referrer_id, _, code) = referrer(&app).await;
    let (referee, token, _) = app.referred_user(&code).await;
    let purchase = settled_deposit_purchase(&app, &token, "20.00").await;
    // The payer's bank takes the money back before the referee verifies.
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/purchases/{purchase}/chargeback", Sandbox::new().base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let revio = app.revio_client().await;
    let reversed = purse::service::settlement::settle_purchase(&app.table, &revio, &purchase).await.unwrap();
    assert!(matches!(reversed, purse::service::settlement::Outcome::Reversed(_)), "{reversed:?}");
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
    let referee = UserId::parse(&referee).unwrap();
    assert_eq!(
        referrals::pay_reward(&app.table, &rules(25), &referee).await.unwrap(),
        RewardOutcome::WaitingForDeposit
    );
    assert_eq!(app.wallet_of(&referrer_id).await.0, "0.00");
    settled_deposit(&app, &token, "10.00").await;
    assert!(matches!(referrals::pay_reward(&app.table, &rules(25), &referee).await.unwrap(), RewardOutcome::Paid(_)));
    assert_eq!(app.wallet_of(&referrer_id).await.0, "50.00");
    app.assert_ledger_balanced().await;
}
