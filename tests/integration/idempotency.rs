//! The Idempotency-Key utility against the emulator: one execution per key, the same answer to
//! every retry, and the record's life cycle (claim, complete, release, expiry, takeover).

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::error::ApiError;
use purse::idempotency::{fingerprint, record_key, Idempotency, IdempotencyKey};
use purse_local::apigw::{event, new_request_id, request_from_event, RawRequest};
use purse_tests::TestApp;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SCOPE: &str = "usr_01TEST:POST /v1/deposits";
const BODY: &str = r#"{"amount":"25.00"}"#;

/// A deposit-like POST as API Gateway would deliver it.
fn post(key: Option<&str>, body: &str) -> Request {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(key) = key {
        headers.push(("idempotency-key".to_owned(), key.to_owned()));
    }
    let raw = RawRequest {
        method: "POST".into(),
        path: "/v1/deposits".into(),
        query: String::new(),
        headers,
        body: body.as_bytes().to_vec(),
        source_ip: "127.0.0.1".into(),
    };
    request_from_event(&event(&raw, "POST /v1/deposits", &BTreeMap::new(), &new_request_id())).unwrap()
}

/// The operation under protection: counts its executions and answers with a fresh id, so a
/// replayed answer is recognisable.
async fn create_deposit(executions: &AtomicUsize) -> Result<Response<Body>, ApiError> {
    let n = executions.fetch_add(1, Ordering::SeqCst) + 1;
    purse::http::json(StatusCode::CREATED, &json!({"deposit_id": ulid::Ulid::new().to_string(), "execution": n}))
}

fn text(resp: &Response<Body>) -> String {
    match resp.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_replay(resp: &Response<Body>) -> bool {
    header(resp, "idempotent-replayed") == Some("true")
}

fn key() -> String {
    format!("key-{}", ulid::Ulid::new())
}

async fn put_record(app: &TestApp, scope: &str, key: &str, attributes: &[(&str, AttributeValue)]) {
    let mut item = record_key(scope, &IdempotencyKey::parse(key).unwrap());
    for (name, value) in attributes {
        item.insert((*name).to_owned(), value.clone());
    }
    app.table.client.put_item().table_name(&app.table.name).set_item(Some(item)).send().await.unwrap();
}

fn num(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn str_(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_gets_the_same_response_without_running_twice() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();

    let first = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(!is_replay(&first));

    let retry = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(text(&retry), text(&first));
    assert_eq!(header(&retry, "content-type"), Some("application/json"));
    assert!(is_replay(&retry));
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_key_run_the_operation_once() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();
    let requests: Vec<Request> = (0..50).map(|_| post(Some(&key), BODY)).collect();

    let answers = futures::future::join_all(requests.iter().map(|req| {
        idempotency.run(SCOPE, req, || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            create_deposit(&executions).await
        })
    }))
    .await;

    assert_eq!(executions.load(Ordering::SeqCst), 1);
    let originals: Vec<&Response<Body>> =
        answers.iter().filter_map(|a| a.as_ref().ok()).filter(|r| !is_replay(r)).collect();
    assert_eq!(originals.len(), 1, "exactly one answer comes from running the operation");
    let original = text(originals[0]);
    for answer in &answers {
        match answer {
            Ok(resp) => assert_eq!((resp.status().as_u16(), text(resp)), (201, original.clone())),
            Err(e) => {
                assert_eq!((e.status.as_u16(), e.code), (409, "idempotency_request_in_progress"));
                assert_eq!(e.retry_after, Some(1));
            }
        }
    }
    let later = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert!(is_replay(&later));
    assert_eq!(text(&later), original);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_refused_with_422() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();

    idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    let err = idempotency
        .run(SCOPE, &post(Some(&key), r#"{"amount":"2500.00"}"#), || create_deposit(&executions))
        .await
        .unwrap_err();
    assert_eq!((err.status.as_u16(), err.code), (422, "idempotency_key_reused"));
    assert_eq!(err.message, "this Idempotency-Key was used with a different request");
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_still_running_answers_409() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let (first_req, second_req) = (post(Some(&key), BODY), post(Some(&key), BODY));

    let first = idempotency.run(SCOPE, &first_req, || async {
        started_tx.send(()).unwrap();
        finish_rx.await.unwrap();
        create_deposit(&executions).await
    });
    let second = async {
        started_rx.await.unwrap();
        let answer = idempotency.run(SCOPE, &second_req, || create_deposit(&executions)).await;
        finish_tx.send(()).unwrap();
        answer
    };
    let (first, second) = tokio::join!(first, second);

    let err = second.unwrap_err();
    assert_eq!((err.status.as_u16(), err.code), (409, "idempotency_request_in_progress"));
    assert_eq!(err.retry_after, Some(1));
    let rendered = purse::http::error_response(&err, "req-1");
    assert_eq!(header(&rendered, "retry-after"), Some("1"));
    assert_eq!(first.unwrap().status(), 201);
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_error_releases_the_key_so_a_retry_runs_again() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();

    let err = idempotency
        .run(SCOPE, &post(Some(&key), BODY), || async {
            executions.fetch_add(1, Ordering::SeqCst);
            Err::<Response<Body>, _>(ApiError::internal("provider timed out"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.status, 500);

    let resp = idempotency
        .run(SCOPE, &post(Some(&key), BODY), || async {
            executions.fetch_add(1, Ordering::SeqCst);
            purse::http::empty(StatusCode::SERVICE_UNAVAILABLE)
        })
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "a 5xx answer passes through");

    let resp = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert!(!is_replay(&resp));
    assert_eq!(executions.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_answer_that_asks_for_a_retry_releases_the_key() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();

    let err = idempotency
        .run(SCOPE, &post(Some(&key), BODY), || async {
            executions.fetch_add(1, Ordering::SeqCst);
            Err::<Response<Body>, _>(ApiError::conflict("transaction_conflict", "try again").with_retry_after(1))
        })
        .await
        .unwrap_err();
    assert_eq!((err.status.as_u16(), err.code), (409, "transaction_conflict"));

    let resp = idempotency
        .run(SCOPE, &post(Some(&key), BODY), || async {
            executions.fetch_add(1, Ordering::SeqCst);
            purse::http::empty(StatusCode::TOO_MANY_REQUESTS)
        })
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);

    let resp = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!((resp.status().as_u16(), is_replay(&resp)), (201, false));
    assert_eq!(executions.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_deterministic_client_error_is_stored_and_replayed() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();
    let insufficient = || async {
        executions.fetch_add(1, Ordering::SeqCst);
        Err::<Response<Body>, _>(ApiError::unprocessable("insufficient_funds", "the available balance is too low"))
    };

    let first = idempotency.run(SCOPE, &post(Some(&key), BODY), insufficient).await.unwrap();
    assert_eq!(first.status(), 422);
    let body: serde_json::Value = serde_json::from_str(&text(&first)).unwrap();
    assert_eq!(body["error"]["code"], "insufficient_funds");

    let retry = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!(retry.status(), 422);
    assert_eq!(text(&retry), text(&first), "the stored error keeps the first request's id");
    assert!(is_replay(&retry));
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_too_large_to_store_releases_the_key() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();
    let big = || async {
        executions.fetch_add(1, Ordering::SeqCst);
        purse::http::json(StatusCode::OK, &json!({"blob": "x".repeat(65 * 1024)}))
    };

    let first = idempotency.run(SCOPE, &post(Some(&key), BODY), big).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(text(&first).len() > 64 * 1024, "the client still gets the whole answer");
    let retry = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!((retry.status().as_u16(), is_replay(&retry)), (201, false));
    assert_eq!(executions.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keys_are_scoped_so_two_users_may_use_the_same_key() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();

    let alice = idempotency
        .run("usr_ALICE:POST /v1/deposits", &post(Some(&key), BODY), || create_deposit(&executions))
        .await
        .unwrap();
    let bob = idempotency
        .run("usr_BOB:POST /v1/deposits", &post(Some(&key), r#"{"amount":"7.00"}"#), || create_deposit(&executions))
        .await
        .unwrap();
    assert_eq!((alice.status().as_u16(), is_replay(&alice)), (201, false));
    assert_eq!((bob.status().as_u16(), is_replay(&bob)), (201, false));
    assert_ne!(text(&alice), text(&bob));
    assert_eq!(executions.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_missing_or_invalid_key_is_refused() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);

    let err = idempotency.run(SCOPE, &post(None, BODY), || create_deposit(&executions)).await.unwrap_err();
    assert_eq!((err.status.as_u16(), err.code), (400, "idempotency_key_required"));

    let too_long = "k".repeat(256);
    for bad in ["", "two words", "tab\there", "clé", too_long.as_str()] {
        let err = idempotency.run(SCOPE, &post(Some(bad), BODY), || create_deposit(&executions)).await.unwrap_err();
        assert_eq!((err.status.as_u16(), err.code), (400, "invalid_idempotency_key"), "{bad:?}");
    }
    let longest = "k".repeat(255);
    let ok = idempotency.run(SCOPE, &post(Some(&longest), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!(ok.status(), 201);
    assert_eq!(executions.load(Ordering::SeqCst), 1, "only the valid key ran the operation");
}

#[tokio::test]
async fn an_expired_record_is_treated_as_absent() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();
    let now = chrono::Utc::now().timestamp();
    // A stale answer to a different request, past its TTL but not yet deleted (TTL is lazy).
    put_record(
        &app,
        SCOPE,
        &key,
        &[
            ("status", str_("COMPLETED")),
            ("fingerprint", str_("0000")),
            ("claim_id", str_("old")),
            ("response_status", num(200)),
            ("response_body", str_("{\"stale\":true}")),
            ("expires_at", num(now - 10)),
        ],
    )
    .await;

    let resp = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert_eq!((resp.status().as_u16(), is_replay(&resp)), (201, false));
    let retry = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert!(is_replay(&retry));
    assert_eq!(text(&retry), text(&resp));
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_abandoned_in_progress_record_is_taken_over_after_its_lease() {
    let app = TestApp::spawn().await;
    let idempotency = Idempotency::new(app.table.clone());
    let executions = AtomicUsize::new(0);
    let key = key();
    let now = chrono::Utc::now().timestamp();
    let in_progress = |lease_until: i64| {
        vec![
            ("status", str_("IN_PROGRESS")),
            ("fingerprint", str_(&fingerprint(&post(Some(&key), BODY)))),
            ("claim_id", str_("crashed-invocation")),
            ("lease_until", num(lease_until)),
            ("expires_at", num(now + 3600)),
        ]
    };

    // While the lease is live, the key is busy.
    put_record(&app, SCOPE, &key, &in_progress(now + 30)).await;
    let err = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap_err();
    assert_eq!(err.code, "idempotency_request_in_progress");

    // Once it has passed, exactly one of several concurrent retries takes the key over.
    put_record(&app, SCOPE, &key, &in_progress(now - 1)).await;
    let requests: Vec<Request> = (0..10).map(|_| post(Some(&key), BODY)).collect();
    let answers = futures::future::join_all(requests.iter().map(|req| {
        idempotency.run(SCOPE, req, || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            create_deposit(&executions).await
        })
    }))
    .await;
    assert_eq!(executions.load(Ordering::SeqCst), 1);
    assert!(answers.iter().all(|a| match a {
        Ok(resp) => resp.status() == 201,
        Err(e) => e.code == "idempotency_request_in_progress",
    }));

    let retry = idempotency.run(SCOPE, &post(Some(&key), BODY), || create_deposit(&executions)).await.unwrap();
    assert!(is_replay(&retry));
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}
