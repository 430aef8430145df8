//! Deposit amounts over HTTP: only the documented spelling is an amount, each refusal is a 400
//! with the amount's own error code, and a JSON number is a clear 400, never a 500.

use purse::money::{Amount, Currency};
use purse_tests::TestApp;
use serde_json::{json, Value};

async fn deposit(app: &TestApp, token: &str, body: &Value) -> purse_tests::TestResponse {
    let key = format!("key-{}", ulid::Ulid::new());
    app.post_with("/v1/deposits", body, Some(token), &[("idempotency-key", &key)]).await
}

#[tokio::test]
async fn leniently_spelled_amounts_are_refused_with_the_amount_s_error_code() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    for text in [
        "+10",
        "1_000.00",
        " 10.00\n",
        "10.00 ",
        "1,000.00",
        "9.9999999999999999999999999999",
        "10.000",
        "10.001",
        "00.50",
        "010",
        ".5",
        "5.",
        "1e3",
        "NaN",
        "Infinity",
        "-10.00",
        "0.00",
        "\u{661}\u{660}",
        "\u{ff11}\u{ff10}",
    ] {
        let want = Amount::parse(text, Currency::Coin).expect_err(text).code();
        let r = deposit(&app, &token, &json!({"amount": text})).await;
        assert_eq!((r.status, r.code()), (400, want), "{text:?}: {}", r.text);
    }
    let history = app.get("/v1/transactions", Some(&token)).await;
    assert_eq!(history.json["items"].as_array().map(Vec::len), Some(0), "nothing was recorded");
}

#[tokio::test]
async fn an_amount_sent_as_a_json_number_is_a_clear_400() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    for amount in [json!(10), json!(10.5), json!(1e3), json!(null), json!(["10.00"]), json!({"value": "10.00"})] {
        let r = deposit(&app, &token, &json!({ "amount": amount })).await;
        assert_eq!((r.status, r.code()), (400, "invalid_request"), "{amount}: {}", r.text);
        let message = r.json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("expected a string"), "the message says what was wrong: {message}");
    }
}
