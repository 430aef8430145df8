//! `GET /v1/users/{id}`: a caller finds the user to call by id or by referral code and learns
//! what a minute with them costs, and nothing else of them.

use purse_tests::{TestApp, CALL_PERIOD_SECONDS};
use serde_json::json;

/// `PUT /v1/me/call-price`.
async fn set_price(app: &TestApp, token: &str, price: &str) {
    let auth = format!("Bearer {token}");
    let body = json!({"price_per_minute": price}).to_string();
    let r = app
        .send(
            "PUT",
            "/v1/me/call-price",
            &[("authorization", &auth), ("content-type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_user_is_found_by_id_and_by_referral_code_with_their_price_and_nothing_else() {
    let app = TestApp::spawn().await;
    let (_, caller_token) = app.user_token().await;
    let (callee, callee_token) = app.user_token().await;
    let me = app.get("/v1/me", Some(&callee_token)).await;
    let code = me.json["referral_code"].as_str().expect("referral_code").to_owned();

    let expected = json!({"id": callee, "price_per_minute": "10.00", "currency": "COIN", "billing_period_seconds": CALL_PERIOD_SECONDS});
    let by_id = app.get(&format!("/v1/users/{callee}"), Some(&caller_token)).await;
    assert_eq!((by_id.status, &by_id.json), (200, &expected), "{}", by_id.text);
    // A code as a person types it: lower case, split by a dash.
    let typed = format!("{}-{}", &code[..4], &code[4..]).to_lowercase();
    let by_code = app.get(&format!("/v1/users/{typed}"), Some(&caller_token)).await;
    assert_eq!((by_code.status, &by_code.json), (200, &expected), "{}", by_code.text);
    assert!(!by_code.text.contains('@'), "never the e-mail: {}", by_code.text);

    // The price a call placed now would pay: the callee's own, once set.
    set_price(&app, &callee_token, "4.50").await;
    let priced = app.get(&format!("/v1/users/{code}"), Some(&caller_token)).await;
    assert_eq!(priced.json["price_per_minute"], "4.50", "{}", priced.text);
}

#[tokio::test]
async fn an_unknown_or_malformed_id_or_code_is_user_not_found_and_a_stranger_is_refused() {
    let app = TestApp::spawn().await;
    let (me, token) = app.user_token().await;
    for unknown in ["usr_01J00000000000000000000000", "usr_nonsense", "ZZZZ2222", "not-a-code-at-all"] {
        let r = app.get(&format!("/v1/users/{unknown}"), Some(&token)).await;
        assert_eq!((r.status, r.code()), (404, "user_not_found"), "{unknown}: {}", r.text);
    }
    let r = app.get(&format!("/v1/users/{me}"), None).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.text);
}
