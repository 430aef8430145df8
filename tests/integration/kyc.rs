//! KYC through the provider sandbox: synchronous and asynchronous results, the webhook's
//! hostile cases, the polling fallback, manual review, one PAN per account, and the PAN never
//! shown or logged unmasked.

use purse_tests::{eventually, fresh_pan, KycSandbox, KycSandboxFaults, TestApp};
use serde_json::{json, Value};

fn masked(pan: &str) -> String {
    format!("{}xxxxx{}", &pan[..3], &pan[8..])
}

#[tokio::test]
async fn a_1111_pan_is_pending_at_first_then_verified_by_the_providers_webhook() {
    let app = TestApp::spawn_serving().await;
    let (_, token) = app.user_token().await;
    assert_eq!(app.get("/v1/kyc", Some(&token)).await.json["status"], "NOT_STARTED");
    let pan = fresh_pan("1111");
    let r = app.submit_kyc(&token, &pan).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "PENDING");
    assert_eq!(r.json["pan_masked"], masked(&pan));
    assert_eq!(r.json["can_submit"], false);
    let done = app.kyc_becomes(&token, "VERIFIED", 20).await;
    assert_eq!(done["pan_masked"], masked(&pan));
    assert_eq!(done["rejection_reason"], Value::Null);
    let me = app.get("/v1/me", Some(&token)).await;
    assert_eq!(me.json["kyc_status"], "VERIFIED");
}

#[tokio::test]
async fn a_2222_pan_is_rejected_with_its_reason_and_the_person_may_submit_again() {
    let app = TestApp::spawn_serving().await;
    let (_, token) = app.user_token().await;
    let r = app.submit_kyc(&token, &fresh_pan("2222")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rejected = app.kyc_becomes(&token, "REJECTED", 20).await;
    assert_eq!(rejected["rejection_reason"], "name_mismatch");
    assert_eq!(rejected["can_submit"], true);
    let again = app.submit_kyc(&token, &fresh_pan("3333")).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json["status"], "VERIFIED");
    let now = app.get("/v1/kyc", Some(&token)).await.json;
    assert_eq!(now["status"], "VERIFIED");
    assert_eq!(now["rejection_reason"], Value::Null);
}

#[tokio::test]
async fn a_3333_pan_is_verified_synchronously_and_a_second_submission_is_refused() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    let r = app.submit_kyc(&token, &fresh_pan("3333")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "VERIFIED");
    let again = app.submit_kyc(&token, &fresh_pan("3333")).await;
    assert_eq!((again.status, again.code()), (409, "kyc_already_verified"));
}

#[tokio::test]
async fn a_second_submission_while_one_is_pending_is_refused() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    assert_eq!(app.submit_kyc(&token, &fresh_pan("6666")).await.status, 201);
    let again = app.submit_kyc(&token, &fresh_pan("1111")).await;
    assert_eq!((again.status, again.code()), (409, "kyc_pending"));
}

#[tokio::test]
async fn concurrent_submissions_by_one_person_record_one_attempt() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    let pans: Vec<String> = (0..8).map(|_| fresh_pan("6666")).collect();
    let answers = futures::future::join_all(pans.iter().map(|pan| app.submit_kyc(&token, pan))).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "{:?}", answers.iter().map(|r| (r.status, r.code().to_owned())).collect::<Vec<_>>());
    assert!(answers.iter().all(|r| r.status == 201 || r.code() == "kyc_pending"));
    let attempts = app
        .scan_all()
        .await
        .into_iter()
        .filter(|i| i.get("entity").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("kyc_attempt"))
        .count();
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn a_4444_pan_that_never_calls_back_is_found_verified_by_polling() {
    let app = TestApp::spawn_serving().await;
    let (_, token) = app.user_token().await;
    let r = app.submit_kyc(&token, &fresh_pan("4444")).await;
    assert_eq!((r.status, r.json["status"].as_str()), (201, Some("PENDING")), "{}", r.text);
    let reference = app.kyc_reference(r.json["kyc_id"].as_str().unwrap()).await;
    app.kyc_becomes(&token, "VERIFIED", 20).await;
    assert!(KycSandbox::new().deliveries(&reference).await.is_empty(), "4444 sends no webhook");
}

#[tokio::test]
async fn a_provider_error_answers_503_and_records_nothing() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    let r = app.submit_kyc(&token, &fresh_pan("5555")).await;
    assert_eq!((r.status, r.code()), (503, "kyc_provider_unavailable"), "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert_eq!(app.get("/v1/kyc", Some(&token)).await.json["status"], "NOT_STARTED");
    assert!(app.scan_all().await.iter().all(|i| !i.contains_key("kyc_id")), "no half-written attempt");
    assert_eq!(app.submit_kyc(&token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
}

#[tokio::test]
async fn a_slow_provider_answers_503_within_the_time_bound() {
    let faults = KycSandboxFaults::take().await;
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    faults.sandbox.faults(json!({"slow_ms": 8000})).await;
    let started = std::time::Instant::now();
    let r = app.submit_kyc(&token, &fresh_pan("1111")).await;
    let took = started.elapsed();
    assert_eq!((r.status, r.code()), (503, "kyc_provider_unavailable"), "{}", r.text);
    assert!(took < std::time::Duration::from_secs(6), "answered after {took:?}");
    assert_eq!(app.get("/v1/kyc", Some(&token)).await.json["status"], "NOT_STARTED");
}

#[tokio::test]
async fn invalid_submissions_are_refused_with_a_stable_code_and_nothing_recorded() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    let pan = fresh_pan("3333");
    let company = format!("{}C{}", &pan[..3], &pan[4..]);
    let cases = [
        (
            json!({"pan": company, "full_name": "Ada Lovelace", "date_of_birth": "1990-01-31", "consent": true}),
            400,
            "invalid_pan",
        ),
        (
            json!({"pan": "ABCP1234", "full_name": "Ada Lovelace", "date_of_birth": "1990-01-31", "consent": true}),
            400,
            "invalid_pan",
        ),
        (
            json!({"pan": pan, "full_name": "Ada Lovelace", "date_of_birth": "1990-01-31", "consent": false}),
            400,
            "consent_required",
        ),
        (json!({"pan": pan, "full_name": "Ada Lovelace", "date_of_birth": "1990-01-31"}), 400, "consent_required"),
        (
            json!({"pan": pan, "full_name": "<script>", "date_of_birth": "1990-01-31", "consent": true}),
            400,
            "invalid_full_name",
        ),
        (
            json!({"pan": pan, "full_name": "Ada Lovelace", "date_of_birth": "31/01/1990", "consent": true}),
            400,
            "invalid_date_of_birth",
        ),
        (
            json!({"pan": pan, "full_name": "Ada Lovelace", "date_of_birth": "2015-01-31", "consent": true}),
            422,
            "underage",
        ),
        (
            json!({"pan": pan, "full_name": "Ada Lovelace", "date_of_birth": "1990-01-31", "consent": true, "kyc_status": "VERIFIED"}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = app.post("/v1/kyc", &body, Some(&token)).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.text);
        assert!(!r.text.contains(&pan), "an error repeats the PAN: {}", r.text);
    }
    assert_eq!(app.get("/v1/kyc", Some(&token)).await.json["status"], "NOT_STARTED");
    assert_eq!(app.post("/v1/kyc", &json!({}), None).await.status, 401);
}

#[tokio::test]
async fn one_pan_verifies_only_one_account() {
    let app = TestApp::spawn().await;
    let (_, first) = app.user_token().await;
    let (_, second) = app.user_token().await;
    let pan = fresh_pan("3333");
    assert_eq!(app.submit_kyc(&first, &pan).await.json["status"], "VERIFIED");
    let r = app.submit_kyc(&second, &pan.to_lowercase()).await;
    assert_eq!((r.status, r.code()), (409, "pan_already_registered"), "{}", r.text);
    assert_eq!(app.get("/v1/kyc", Some(&second)).await.json["status"], "NOT_STARTED");
}

#[tokio::test]
async fn a_pan_released_by_a_rejection_can_be_verified_by_another_account() {
    let app = TestApp::spawn_serving().await;
    let (_, first) = app.user_token().await;
    let (_, second) = app.user_token().await;
    let pan = fresh_pan("2222");
    app.submit_kyc(&first, &pan).await;
    app.kyc_becomes(&first, "REJECTED", 20).await;
    let r = app.submit_kyc(&second, &pan).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Submits a 6666 PAN (never decided by the provider) and returns (token, kyc_id, reference).
async fn undecided_attempt(app: &TestApp) -> (String, String, String) {
    let (_, token) = app.user_token().await;
    let r = app.submit_kyc(&token, &fresh_pan("6666")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["kyc_id"].as_str().unwrap().to_owned();
    let reference = app.kyc_reference(&id).await;
    (token, id, reference)
}

#[tokio::test]
async fn a_webhook_with_a_forged_signature_a_stale_or_future_timestamp_changes_nothing_and_is_logged() {
    let app = TestApp::spawn_serving().await;
    let sandbox = KycSandbox::new();
    let (token, _, reference) = undecided_attempt(&app).await;
    let forged = sandbox.deliver(&reference, json!({"secret": "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})).await.1;
    // Each timestamp is taken right before its delivery, well past the 5-minute window, so a
    // slow machine cannot bring it back inside.
    let stale = sandbox.deliver(&reference, json!({"timestamp": chrono::Utc::now().timestamp() - 330})).await.1;
    let future = sandbox.deliver(&reference, json!({"timestamp": chrono::Utc::now().timestamp() + 330})).await.1;
    assert_eq!([forged, stale, future].concat(), vec![Some(401); 3]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.get("/v1/kyc", Some(&token)).await.json["status"], "PENDING");
    let rejected = app
        .scan_all()
        .await
        .into_iter()
        .filter(|i| i.get("provider").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("kyc"))
        .filter(|i| i.get("outcome").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("REJECTED_SIGNATURE"))
        .count();
    assert_eq!(rejected, 3, "every refused delivery is in the webhook log");
    // The genuine one still gets through.
    sandbox.complete(&reference, "verified").await;
    assert_eq!(sandbox.deliver(&reference, json!({})).await.1, vec![Some(200)]);
    app.kyc_becomes(&token, "VERIFIED", 20).await;
}

#[tokio::test]
async fn a_replayed_webhook_id_and_concurrent_duplicates_apply_once() {
    let app = TestApp::spawn_serving().await;
    let sandbox = KycSandbox::new();
    let (token, id, reference) = undecided_attempt(&app).await;
    sandbox.complete(&reference, "verified").await;
    let (webhook_id, codes) = sandbox.deliver(&reference, json!({"times": 20, "concurrent": true})).await;
    assert!(codes.iter().all(|c| *c == Some(200)), "{codes:?}");
    let replay = sandbox.deliver(&reference, json!({"times": 3, "webhook_id": webhook_id})).await.1;
    assert_eq!(replay, vec![Some(200); 3]);
    app.kyc_becomes(&token, "VERIFIED", 20).await;
    let outcomes: Vec<String> = app
        .scan_all()
        .await
        .iter()
        .filter(|i| i.get("provider").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("kyc"))
        .filter_map(|i| i.get("outcome").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    assert_eq!(outcomes.len(), 23, "every delivery is logged: {outcomes:?}");
    // Concurrent copies racing the first may each be queued; applying is what happens once.
    assert!(outcomes.iter().filter(|o| *o == "APPLIED").count() <= 1, "{outcomes:?}");
    assert!(
        outcomes.iter().filter(|o| *o == "DUPLICATE").count() >= 3,
        "the later replays are duplicates: {outcomes:?}"
    );
    let attempt =
        purse::store::kyc::get(&app.table, &purse::domain::ids::KycId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(attempt.status, purse::domain::user::KycStatus::Verified);
}

#[tokio::test]
async fn a_webhook_whose_result_the_provider_does_not_confirm_changes_nothing() {
    let app = TestApp::spawn_serving().await;
    let sandbox = KycSandbox::new();
    let (token, _, reference) = undecided_attempt(&app).await;
    // Signed correctly, but the provider's API still says pending: the API is the truth.
    let codes = sandbox.deliver(&reference, json!({"status": "verified"})).await.1;
    assert_eq!(codes, vec![Some(200)]);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(app.get("/v1/kyc", Some(&token)).await.json["status"], "PENDING");
}

#[tokio::test]
async fn a_result_for_an_outdated_attempt_changes_nothing_but_the_log() {
    let app = TestApp::spawn_serving().await;
    let sandbox = KycSandbox::new();
    let (_, token) = app.user_token().await;
    let first = app.submit_kyc(&token, &fresh_pan("2222")).await;
    let first_id = first.json["kyc_id"].as_str().unwrap().to_owned();
    let first_ref = app.kyc_reference(&first_id).await;
    app.kyc_becomes(&token, "REJECTED", 20).await;
    let second = app.submit_kyc(&token, &fresh_pan("6666")).await;
    let second_id = second.json["kyc_id"].as_str().unwrap().to_owned();
    // A late "verified" for the first attempt, genuinely signed, even confirmed by the provider.
    sandbox.complete(&first_ref, "verified").await;
    assert_eq!(sandbox.deliver(&first_ref, json!({})).await.1, vec![Some(200)]);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let now = app.get("/v1/kyc", Some(&token)).await.json;
    assert_eq!((now["status"].as_str(), now["kyc_id"].as_str()), (Some("PENDING"), Some(second_id.as_str())));
    let first = purse::store::kyc::get(&app.table, &purse::domain::ids::KycId::parse(&first_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, purse::domain::user::KycStatus::Rejected);
}

#[tokio::test]
async fn an_attempt_without_a_result_after_polling_goes_to_review_and_an_admin_decides_it_once() {
    let app = TestApp::spawn_serving().await;
    let (token, id, _) = undecided_attempt(&app).await;
    let admin = app.admin_token().await;
    let review = eventually(30, "the attempt awaits review", || async {
        let r = app.get("/v1/admin/kyc/reviews", Some(&admin)).await;
        r.json["reviews"].as_array().and_then(|a| a.iter().find(|x| x["kyc_id"] == id.as_str()).cloned())
    })
    .await;
    assert_eq!(review["status"], "PENDING");
    assert!(review["pan_masked"].as_str().unwrap().contains("xxxxx"));
    assert_eq!(app.get("/v1/admin/kyc/reviews", Some(&token)).await.status, 403);
    let path = format!("/v1/admin/kyc/{id}/resolve");
    let no_reason = app.post(&path, &json!({"decision": "approve", "reason": "  "}), Some(&admin)).await;
    assert_eq!((no_reason.status, no_reason.code()), (400, "reason_required"));
    let bad = app.post(&path, &json!({"decision": "maybe", "reason": "x"}), Some(&admin)).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_decision"));
    let as_user = app.post(&path, &json!({"decision": "approve", "reason": "me"}), Some(&token)).await;
    assert_eq!(as_user.status, 403);
    let body = json!({"decision": "approve", "reason": "PAN card checked by video call"});
    let decided = futures::future::join_all((0..5).map(|_| app.post(&path, &body, Some(&admin)))).await;
    assert_eq!(decided.iter().filter(|r| r.status == 200).count(), 1);
    assert!(decided.iter().all(|r| r.status == 200 || r.code() == "kyc_not_pending"));
    let ok = decided.iter().find(|r| r.status == 200).unwrap();
    assert_eq!(ok.json["status"], "VERIFIED");
    assert_eq!(ok.json["resolution_note"], "PAN card checked by video call");
    assert!(ok.json["resolved_by"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(app.get("/v1/kyc", Some(&token)).await.json["status"], "VERIFIED");
    let listed = app.get("/v1/admin/kyc/reviews", Some(&admin)).await;
    assert!(listed.json["reviews"].as_array().unwrap().iter().all(|x| x["kyc_id"] != id.as_str()));
    let unknown = app
        .post(
            "/v1/admin/kyc/kyc_01ARZ3NDEKTSV4RRFFQ69G5FAV/resolve",
            &json!({"decision": "reject", "reason": "x"}),
            Some(&admin),
        )
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn an_admin_rejection_shows_the_person_a_reason_and_lets_them_submit_again() {
    let app = TestApp::spawn().await;
    let (token, id, _) = undecided_attempt(&app).await;
    let admin = app.admin_token().await;
    let r = app
        .post(
            &format!("/v1/admin/kyc/{id}/resolve"),
            &json!({"decision": "reject", "reason": "document unreadable"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let view = app.get("/v1/kyc", Some(&token)).await.json;
    assert_eq!(
        (view["status"].as_str(), view["rejection_reason"].as_str()),
        (Some("REJECTED"), Some("rejected_on_review"))
    );
    assert_eq!(view["can_submit"], true);
}

#[tokio::test]
async fn the_pan_never_appears_unmasked_in_a_response_a_log_line_or_a_stored_item() {
    let logs = super::logs::capture();
    let app = TestApp::spawn_serving().await;
    let (_, token) = app.user_token().await;
    let pan = fresh_pan("1111");
    let submitted = app.submit_kyc(&token, &pan).await;
    let verified = app.kyc_becomes(&token, "VERIFIED", 20).await;
    let admin = app.admin_token().await;
    let reviews = app.get("/v1/admin/kyc/reviews", Some(&admin)).await;
    let refused = app.submit_kyc(&token, &pan).await;
    for text in [submitted.text, verified.to_string(), reviews.text, refused.text] {
        assert!(!text.contains(&pan), "a response shows the PAN: {text}");
    }
    for item in app.scan_all().await {
        assert!(!format!("{item:?}").contains(&pan), "an item stores the PAN in the clear");
    }
    assert!(!logs.text().contains(&pan), "a log line contains the PAN");
    assert!(!logs.text().contains("Ada Lovelace"), "a log line contains the name");
}

#[tokio::test]
async fn with_faults_on_duplicate_webhooks_and_follow_ups_apply_each_result_once() {
    let _heavy = purse_tests::HEAVY.lock().await;
    let app = TestApp::spawn_serving().await;
    let sandbox = KycSandbox::new();
    let mut cases = Vec::new();
    for _ in 0..4 {
        cases.push(undecided_attempt(&app).await);
    }
    app.set_faults("conflict=0.10,throttle=0.07,internal=0.04,lost_response=0.04,seed=21").await;
    for (_, _, reference) in &cases {
        sandbox.complete(reference, "verified").await;
    }
    let deliveries = futures::future::join_all(
        cases.iter().map(|(_, _, reference)| sandbox.deliver(reference, json!({"times": 10, "concurrent": true}))),
    )
    .await;
    for (_, codes) in &deliveries {
        // A delivery refused with a 503 under faults is retried by the provider; at least one
        // of ten gets through.
        assert!(codes.iter().all(|c| matches!(c, Some(200) | Some(503))), "{codes:?}");
        assert!(codes.contains(&Some(200)));
    }
    for (token, _, _) in &cases {
        app.kyc_becomes(token, "VERIFIED", 40).await;
    }
    app.faults_off().await;
    let report = app.fault_report().await;
    assert!(
        report["injected"].as_object().is_some_and(|m| m.values().any(|v| v.as_u64().unwrap_or(0) > 0)),
        "{report}"
    );
    let claims = app
        .scan_all()
        .await
        .into_iter()
        .filter(|i| i.get("entity").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("kyc_attempt"))
        .filter(|i| i.get("status").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("VERIFIED"))
        .count();
    assert_eq!(claims, 4);
}
