//! Hostile access tokens: every one is refused with 401 before any handler runs.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use purse_tests::TestApp;
use serde_json::{json, Value};

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn key_of(keys_json: &str) -> (String, Vec<u8>) {
    let v: Value = serde_json::from_str(keys_json).unwrap();
    let kid = v["active_kid"].as_str().unwrap().to_owned();
    let secret = v["keys"][0]["secret"].as_str().unwrap();
    (kid, base64::engine::general_purpose::STANDARD.decode(secret).unwrap())
}

fn claims(user: &str, overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({
        "iss": "http://purse.test", "aud": "purse-api", "sub": user, "exp": now + 600, "iat": now, "nbf": now,
        "jti": "j1", "roles": ["user", "admin"], "sid": "ses_01HZY3J4KQ9V6T6D2B8W3XK5QF",
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn sign(kid: &str, key: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let r = app.get("/v1/me", Some(token)).await;
    assert_eq!(r.status, 401, "{why}: {}", r.text);
}

#[tokio::test]
async fn a_correctly_signed_token_is_accepted_so_the_refusals_below_mean_something() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user_token().await;
    let (kid, key) = key_of(&app.signing_keys_json().await);
    let r = app.get("/v1/me", Some(&sign(&kid, &key, &claims(&user, json!({}))))).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (user, real) = app.user_token().await;
    let (kid, key) = key_of(&app.signing_keys_json().await);
    let now = chrono::Utc::now().timestamp();

    // alg: none, unsigned.
    let none =
        format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims(&user, json!({})).to_string().as_bytes()));
    assert_refused(&app, &none, "alg none").await;
    let none_kid = format!(
        "{}.{}.",
        b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#).as_bytes()),
        b64(claims(&user, json!({})).to_string().as_bytes())
    );
    assert_refused(&app, &none_kid, "alg none with kid").await;

    // Signed with another key under the same kid, and with an unknown kid.
    assert_refused(&app, &sign(&kid, &[7_u8; 32], &claims(&user, json!({}))), "other key").await;
    assert_refused(&app, &sign("someone-elses", &key, &claims(&user, json!({}))), "unknown kid").await;
    let mut no_kid = Header::new(Algorithm::HS256);
    no_kid.kid = None;
    let t = jsonwebtoken::encode(&no_kid, &claims(&user, json!({})), &EncodingKey::from_secret(&key)).unwrap();
    assert_refused(&app, &t, "no kid").await;

    // A different algorithm with the same secret.
    let mut hs512 = Header::new(Algorithm::HS512);
    hs512.kid = Some(kid.clone());
    let t = jsonwebtoken::encode(&hs512, &claims(&user, json!({})), &EncodingKey::from_secret(&key)).unwrap();
    assert_refused(&app, &t, "HS512").await;

    // Expired, not yet valid, wrong audience, wrong issuer, missing exp.
    let expired =
        app.get("/v1/me", Some(&sign(&kid, &key, &claims(&user, json!({"exp": now - 60, "iat": now - 1000}))))).await;
    assert_eq!((expired.status, expired.json["error"]["code"].as_str()), (401, Some("token_expired")));
    assert_refused(&app, &sign(&kid, &key, &claims(&user, json!({"nbf": now + 600}))), "nbf in the future").await;
    assert_refused(&app, &sign(&kid, &key, &claims(&user, json!({"aud": "another-api"}))), "wrong aud").await;
    assert_refused(&app, &sign(&kid, &key, &claims(&user, json!({"iss": "https://evil.example"}))), "wrong iss").await;
    let mut no_exp = claims(&user, json!({}));
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(&app, &sign(&kid, &key, &no_exp), "no exp").await;

    // A real token whose payload was edited (role escalation) after signing.
    let parts: Vec<&str> = real.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["roles"] = json!(["user", "admin"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(payload.to_string().as_bytes()), parts[2]);
    assert_refused(&app, &tampered, "tampered payload").await;

    // Garbage.
    assert_refused(&app, "not.a.jwt", "garbage").await;
    assert_refused(&app, "", "empty").await;
}

#[tokio::test]
async fn a_token_issued_before_it_carried_the_email_still_starts_a_deposit_with_the_users_email() {
    let app = TestApp::spawn().await;
    let (email, password, profile) = app.register().await;
    let user = profile["id"].as_str().unwrap();
    let login = app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await;
    // The session's own token carries the e-mail; an older one (same session, no `email`) must
    // make the function read the user instead.
    let current: Value = {
        let token = login.json["access_token"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    assert_eq!(current["email"], email.as_str());
    let (kid, key) = key_of(&app.signing_keys_json().await);
    let old = sign(&kid, &key, &claims(user, json!({"roles": ["user"], "sid": current["sid"]})));
    assert!(claims(user, json!({})).get("email").is_none());
    let r = app
        .post_with(
            "/v1/deposits",
            &json!({"amount": "10.00"}),
            Some(&old),
            &[("idempotency-key", &format!("key-{}", ulid::Ulid::new()))],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let purchase = r.json["reference"].as_str().unwrap();
    let base = std::env::var("PURSE_REVIO_URL").expect("PURSE_REVIO_URL");
    let stored: Value =
        reqwest::get(format!("{base}/_sandbox/purchases/{purchase}")).await.unwrap().json().await.unwrap();
    assert_eq!(stored["client"]["email"], email.as_str(), "Revio shows the user's own e-mail");
}
