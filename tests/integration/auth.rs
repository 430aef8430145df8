//! Sign-up, sign-in, refresh, sign-out, profile and wallet.

use purse_tests::TestApp;
use serde_json::json;

#[tokio::test]
async fn sign_up_then_sign_in_shows_the_profile_and_an_empty_wallet() {
    let app = TestApp::spawn().await;
    let (profile, tokens) = app.signed_in_user().await;
    assert!(profile["id"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(profile["roles"], json!(["user"]));
    assert_eq!(profile["kyc_status"], "NOT_STARTED");
    assert_eq!(profile["referral_code"].as_str().unwrap().len(), 8);
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().unwrap();

    let me = app.get("/v1/me", Some(access)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["id"], profile["id"]);
    assert_eq!(me.json["email"], profile["email"]);

    let wallet = app.get("/v1/wallet", Some(access)).await;
    assert_eq!(wallet.status, 200, "{}", wallet.text);
    assert_eq!(wallet.json["currency"], "COIN");
    assert_eq!(wallet.json["balance"], "0.00");
    assert_eq!(wallet.json["available"], "0.00");
    assert_eq!(wallet.json["held"], "0.00");
}

#[tokio::test]
async fn an_email_can_be_registered_only_once_whatever_its_case() {
    let app = TestApp::spawn().await;
    let body = json!({"email": "Grace.Hopper@Example.com", "password": "cobol-compiler-1959"});
    assert_eq!(app.post("/v1/auth/register", &body, None).await.status, 201);
    let again = json!({"email": "  grace.hopper@example.COM ", "password": "another-password-1"});
    let r = app.post("/v1/auth/register", &again, None).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "email_taken");
}

#[tokio::test]
async fn concurrent_duplicate_sign_ups_create_exactly_one_account() {
    let app = TestApp::spawn().await;
    let body = json!({"email": "race@example.com", "password": "same-time-sign-up"});
    let results = futures::future::join_all((0..12).map(|_| app.post("/v1/auth/register", &body, None))).await;
    let created = results.iter().filter(|r| r.status == 201).count();
    let taken = results.iter().filter(|r| r.status == 409 && r.code() == "email_taken").count();
    assert_eq!(created, 1, "{:?}", results.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(taken, 11);
    let login =
        app.post("/v1/auth/login", &json!({"email": "race@example.com", "password": "same-time-sign-up"}), None).await;
    assert_eq!(login.status, 200);
}

#[tokio::test]
async fn invalid_sign_up_input_gets_a_clear_error_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"email": "not-an-email", "password": "long-enough-pass"}), 400, "invalid_email"),
        (json!({"email": "a@example.com", "password": "short"}), 400, "weak_password"),
        (json!({"email": "a@example.com", "password": "password123"}), 400, "weak_password"),
        (json!({"email": "a@example.com"}), 400, "invalid_request"),
        (json!({"email": "a@example.com", "password": "long-enough-pass", "roles": ["admin"]}), 400, "invalid_request"),
        (
            json!({"email": "a@example.com", "password": "long-enough-pass", "referral_code": "IO01"}),
            400,
            "invalid_referral_code",
        ),
        (
            json!({"email": "a@example.com", "password": "long-enough-pass", "referral_code": "ZZZZ2222"}),
            422,
            "unknown_referral_code",
        ),
    ];
    for (body, status, code) in cases {
        let r = app.post("/v1/auth/register", &body, None).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}: {}", r.text);
        assert!(r.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(r.json["error"]["request_id"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let login =
        app.post("/v1/auth/login", &json!({"email": "a@example.com", "password": "long-enough-pass"}), None).await;
    assert_eq!(login.status, 401, "no account may have been created");
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversized_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let r = app.send("POST", "/v1/auth/register", &[("content-type", "application/json")], b"{\"email\": ").await;
    assert_eq!((r.status, r.code()), (400, "malformed_json"));
    let r = app.send("POST", "/v1/auth/register", &[("content-type", "text/plain")], b"{}").await;
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    let big = format!("{{\"email\":\"a@example.com\",\"password\":\"{}\"}}", "x".repeat(20_000));
    let r = app.send("POST", "/v1/auth/register", &[("content-type", "application/json")], big.as_bytes()).await;
    assert_eq!((r.status, r.code()), (413, "payload_too_large"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/nothing-here", None).await;
    assert_eq!((r.status, r.code()), (404, "route_not_found"));
    let r = app.get("/v1/auth/login", None).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn a_referral_code_links_the_new_user_to_the_referrer() {
    let app = TestApp::spawn().await;
    let (_, _, referrer) = app.register().await;
    let code = referrer["referral_code"].as_str().unwrap().to_lowercase();
    let r = app
        .post(
            "/v1/auth/register",
            &json!({"email": "friend@example.com", "password": "invited-by-someone-nice", "referral_code": code}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let referee = r.json["id"].as_str().unwrap();
    let item = app
        .table
        .client
        .get_item()
        .table_name(&app.table.name)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("REFERRAL#{referee}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("REFERRAL".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("referral record");
    assert_eq!(item["status"].as_s().unwrap(), "PENDING");
    assert_eq!(item["referrer_user_id"].as_s().unwrap(), referrer["id"].as_str().unwrap());
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_answer_alike() {
    let app = TestApp::spawn().await;
    let (email, _, _) = app.register().await;
    let wrong = app.post("/v1/auth/login", &json!({"email": email, "password": "not-the-password"}), None).await;
    let unknown =
        app.post("/v1/auth/login", &json!({"email": "nobody@example.com", "password": "not-the-password"}), None).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.json["error"]["code"], unknown.json["error"]["code"]);
    assert_eq!(wrong.json["error"]["message"], unknown.json["error"]["message"]);
}

#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_account_even_for_the_right_password() {
    let app = TestApp::spawn().await;
    let (email, password, _) = app.register().await;
    for _ in 0..5 {
        let r = app.post("/v1/auth/login", &json!({"email": email, "password": "guess-guess-guess"}), None).await;
        assert_eq!(r.status, 401);
    }
    let r = app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await;
    assert_eq!((r.status, r.code()), (429, "too_many_attempts"), "{}", r.text);
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    // Unknown e-mails are throttled the same way, so locking reveals nothing.
    for _ in 0..5 {
        app.post("/v1/auth/login", &json!({"email": "ghost@example.com", "password": "guess-guess-guess"}), None).await;
    }
    let r = app.post("/v1/auth/login", &json!({"email": "ghost@example.com", "password": "x-x-x-x-x-x"}), None).await;
    assert_eq!(r.status, 429);
}

#[tokio::test]
async fn a_refresh_token_rotates_and_its_reuse_revokes_the_whole_session() {
    let app = TestApp::spawn().await;
    let (_, first) = app.signed_in_user().await;
    let old = first["refresh_token"].as_str().unwrap();

    let second = app.post("/v1/auth/refresh", &json!({"refresh_token": old}), None).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let new = second.json["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(app.get("/v1/me", second.json["access_token"].as_str()).await.status, 200);

    let replay = app.post("/v1/auth/refresh", &json!({"refresh_token": old}), None).await;
    assert_eq!((replay.status, replay.code()), (401, "refresh_token_reused"));
    let after = app.post("/v1/auth/refresh", &json!({"refresh_token": new}), None).await;
    assert_eq!((after.status, after.code()), (401, "session_revoked"), "the legitimate successor dies with the family");
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_yield_one_new_pair() {
    let app = TestApp::spawn().await;
    let (_, pair) = app.signed_in_user().await;
    let body = json!({"refresh_token": pair["refresh_token"]});
    let results = futures::future::join_all((0..8).map(|_| app.post("/v1/auth/refresh", &body, None))).await;
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 1);
}

#[tokio::test]
async fn an_unknown_refresh_token_is_refused() {
    let app = TestApp::spawn().await;
    let r = app.post("/v1/auth/refresh", &json!({"refresh_token": "rt_made-up"}), None).await;
    assert_eq!((r.status, r.code()), (401, "invalid_refresh_token"));
}

#[tokio::test]
async fn sign_out_revokes_the_session() {
    let app = TestApp::spawn().await;
    let (_, pair) = app.signed_in_user().await;
    let body = json!({"refresh_token": pair["refresh_token"]});
    let r = app.post("/v1/auth/logout", &body, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app.post("/v1/auth/refresh", &body, None).await;
    assert_eq!((r.status, r.code()), (401, "session_revoked"));
    // Signing out twice is harmless.
    assert_eq!(app.post("/v1/auth/logout", &body, None).await.status, 204);
}

#[tokio::test]
async fn protected_routes_refuse_requests_without_a_token() {
    let app = TestApp::spawn().await;
    for path in ["/v1/me", "/v1/wallet"] {
        let r = app.get(path, None).await;
        assert_eq!((r.status, r.code()), (401, "unauthorized"), "{path}");
        let r = app.send("GET", path, &[("authorization", "Basic dXNlcjpwYXNz")], b"").await;
        assert_eq!(r.status, 401, "{path}");
    }
}

#[tokio::test]
async fn an_admin_exists_only_through_the_operator_command() {
    let app = TestApp::spawn().await;
    let (email, password, profile) = app.register().await;
    let id = purse::domain::ids::UserId::parse(profile["id"].as_str().unwrap()).unwrap();
    purse::store::users::grant_role(&app.table, &id, purse::domain::user::Role::Admin).await.unwrap();
    let r = app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await;
    let me = app.get("/v1/me", r.json["access_token"].as_str()).await;
    assert_eq!(me.json["roles"], json!(["user", "admin"]));
}

#[tokio::test]
async fn credentials_never_appear_in_responses_or_logs() {
    let logs = super::logs::capture();
    let app = TestApp::spawn().await;
    let email = format!("secret-{}@example.com", ulid::Ulid::new().to_string().to_lowercase());
    let password = format!("pw-{}", ulid::Ulid::new());
    let reg = app.post("/v1/auth/register", &json!({"email": email, "password": password}), None).await;
    let login = app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await;
    let wrong = app.post("/v1/auth/login", &json!({"email": email, "password": format!("{password}x")}), None).await;
    let access = login.json["access_token"].as_str().unwrap().to_owned();
    let refresh = login.json["refresh_token"].as_str().unwrap().to_owned();
    let me = app.get("/v1/me", Some(&access)).await;
    let rotated = app.post("/v1/auth/refresh", &json!({"refresh_token": refresh}), None).await;
    for r in [&reg, &me, &wrong] {
        assert!(!r.text.contains(&password), "password in a response");
        assert!(!r.text.contains("argon2"), "hash in a response");
        assert!(!r.text.contains("password_hash"));
    }
    let text = logs.text();
    assert!(text.contains("signed in"), "the capture works");
    for secret in [&password, &access, &refresh, &rotated.json["refresh_token"].as_str().unwrap().to_owned()] {
        assert!(!text.contains(secret.as_str()), "a secret reached the logs");
    }
    assert!(!text.contains("$argon2id$"), "a password hash reached the logs");
}
