//! The sign-in throttle holds under concurrency: every attempt claims a slot before the password
//! is checked, in one conditional write, so parallel guesses cannot slip past the limit.

use purse::domain::user::Email;
use purse::store::users::{self, LoginAttempt, LoginThrottle, MAX_FAILED_LOGINS, THROTTLE_WINDOW_SECONDS};
use purse_tests::{TestApp, TestResponse};
use serde_json::json;

async fn login(app: &TestApp, email: &str, password: &str) -> TestResponse {
    app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await
}

/// Sends `n` sign-ins at once and returns (401 `invalid_credentials`, 429 `too_many_attempts`)
/// counts, checking that every 429 carries a usable `Retry-After`.
///
/// Under a heavily loaded emulator a claim may also run out of time and answer 503
/// `temporarily_unavailable`: that fails closed (the password was not checked), so it is
/// allowed, but nothing else is.
async fn guess_concurrently(app: &TestApp, email: &str, n: usize) -> (usize, usize) {
    let answers = futures::future::join_all((0..n).map(|i| {
        let guess = format!("wrong-guess-number-{i}");
        async move { login(app, email, &guess).await }
    }))
    .await;
    let refused = answers.iter().filter(|r| (r.status, r.code()) == (401, "invalid_credentials")).count();
    let throttled: Vec<&TestResponse> =
        answers.iter().filter(|r| (r.status, r.code()) == (429, "too_many_attempts")).collect();
    let unavailable = answers.iter().filter(|r| (r.status, r.code()) == (503, "temporarily_unavailable")).count();
    for r in &throttled {
        let retry_after: u64 = r.header("retry-after").expect("Retry-After on a 429").parse().expect("seconds");
        assert!((1..=THROTTLE_WINDOW_SECONDS.unsigned_abs()).contains(&retry_after), "Retry-After {retry_after}");
    }
    let answered: Vec<(u16, &str)> = answers.iter().map(|r| (r.status, r.code())).collect();
    assert_eq!(refused + throttled.len() + unavailable, n, "only 401, 429 (or 503) may answer: {answered:?}");
    assert!(unavailable < n / 2, "the emulator was too slow for this test to mean anything: {answered:?}");
    (refused, throttled.len())
}

#[tokio::test]
async fn of_fifty_concurrent_wrong_passwords_at_most_five_are_checked_and_the_rest_are_throttled() {
    let app = TestApp::spawn().await;
    let (email, password, _) = app.register().await;
    let (refused, throttled) = guess_concurrently(&app, &email, 50).await;
    assert!(refused <= MAX_FAILED_LOGINS as usize, "{refused} guesses were checked; at most 5 may be");
    assert!(refused >= 1, "the first guesses are checked");
    assert!(throttled > 0, "the rest are told to wait (429), or at worst 503");
    if refused == MAX_FAILED_LOGINS as usize {
        let r = login(&app, &email, &password).await;
        assert_eq!((r.status, r.code()), (429, "too_many_attempts"), "locked even for the right password: {}", r.text);
    }
}

#[tokio::test]
async fn fifty_concurrent_guesses_at_an_unknown_email_are_throttled_exactly_like_wrong_passwords() {
    let app = TestApp::spawn().await;
    let (refused, throttled) = guess_concurrently(&app, "nobody-here@example.com", 50).await;
    assert!(refused <= MAX_FAILED_LOGINS as usize, "{refused} guesses were checked; at most 5 may be");
    assert!(throttled > 0, "the rest are told to wait (429), or at worst 503");
}

#[tokio::test]
async fn a_successful_sign_in_clears_the_attempts() {
    let app = TestApp::spawn().await;
    let (email, password, _) = app.register().await;
    for _ in 0..MAX_FAILED_LOGINS - 1 {
        assert_eq!(login(&app, &email, "not-the-password").await.status, 401);
    }
    assert_eq!(login(&app, &email, &password).await.status, 200);
    for _ in 0..MAX_FAILED_LOGINS {
        assert_eq!(login(&app, &email, "not-the-password").await.status, 401, "a fresh allowance after success");
    }
    assert_eq!(login(&app, &email, &password).await.status, 429);
}

#[tokio::test]
async fn after_the_window_the_account_can_sign_in_again() {
    let app = TestApp::spawn().await;
    let (email, password, _) = app.register().await;
    for _ in 0..MAX_FAILED_LOGINS {
        assert_eq!(login(&app, &email, "not-the-password").await.status, 401);
    }
    assert_eq!(login(&app, &email, &password).await.status, 429);

    // Fifteen minutes pass: every time the throttle record knows of lies in the past. (The
    // emulator never deletes expired items, so the code must check expiry itself.)
    let past = purse::store::now_epoch() - 1;
    let key = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    let item = app
        .table
        .client
        .get_item()
        .table_name(&app.table.name)
        .key("pk", key(&format!("LOGINFAIL#{email}")))
        .key("sk", key("LOGINFAIL"))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("a throttle record");
    let mut aged = item.clone();
    for (name, value) in &item {
        if matches!(value, aws_sdk_dynamodb::types::AttributeValue::N(_)) && name != "attempts" && name != "failures" {
            aged.insert(name.clone(), aws_sdk_dynamodb::types::AttributeValue::N(past.to_string()));
        }
    }
    app.table.client.put_item().table_name(&app.table.name).set_item(Some(aged)).send().await.unwrap();

    let r = login(&app, &email, &password).await;
    assert_eq!(r.status, 200, "a stale window starts over: {}", r.text);
}

#[tokio::test]
async fn a_window_that_expires_starts_over_with_the_full_allowance_even_for_concurrent_claims() {
    let app = TestApp::spawn().await;
    let email = Email::parse("window@example.com").unwrap();
    let throttle = LoginThrottle { max_attempts: 5, window_seconds: 2 };
    for i in 0..5 {
        let got = users::claim_login_attempt(&app.table, &email, throttle).await.unwrap();
        assert_eq!(got, LoginAttempt::Allowed, "attempt {i}");
    }
    match users::claim_login_attempt(&app.table, &email, throttle).await.unwrap() {
        LoginAttempt::Locked { retry_after } => assert!((1..=2).contains(&retry_after), "{retry_after}"),
        other => panic!("the sixth attempt must be locked: {other:?}"),
    }
    // A locked attempt does not prolong the lock; the window ends two seconds after the last
    // attempt that was let through.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let claims =
        futures::future::join_all((0..20).map(|_| users::claim_login_attempt(&app.table, &email, throttle))).await;
    let allowed = claims.iter().filter(|c| matches!(c, Ok(LoginAttempt::Allowed))).count();
    let locked = claims.iter().filter(|c| matches!(c, Ok(LoginAttempt::Locked { .. }))).count();
    assert_eq!((allowed, locked), (5, 15), "{claims:?}");

    users::clear_login_attempts(&app.table, &email).await.unwrap();
    assert_eq!(users::claim_login_attempt(&app.table, &email, throttle).await.unwrap(), LoginAttempt::Allowed);
}
