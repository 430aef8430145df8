//! `purse::revio` against the Revio sandbox (`tools/sandbox/revio.py`).
//!
//! Fault-free checks talk to the shared sandbox at `PURSE_REVIO_URL` and hold
//! [`purse_tests::SANDBOX`] for reading, like every other test that uses it. Checks that inject
//! faults (down, failing, slow) each start a private sandbox instead: faults apply to every
//! caller of a sandbox, and a fault window on the shared one would also hit tests that do not
//! take the lock (every `TestApp::spawn` fetches Revio's public key). The private sandbox is
//! killed when the test ends, passed or failed; faults are still reset at the end.

use purse::revio::{NewPurchase, PurchaseStatus, RetryPolicy, RevioClient, RevioConfig, RevioError, WebhookVerifier};
use purse::secrets::SecretString;
use purse_tests::{Sandbox, SANDBOX};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn shared_sandbox_url() -> String {
    std::env::var("PURSE_REVIO_URL")
        .expect("PURSE_REVIO_URL is not set: run the tests with `bash tools/stack/with-stack.sh cargo test ...` (or `make test`)")
        .trim_end_matches('/')
        .to_owned()
}

fn api_key() -> String {
    std::env::var("REVIO_SANDBOX_API_KEY").unwrap_or_else(|_| "sandbox-revio-key".into())
}

fn brand_id() -> String {
    std::env::var("REVIO_SANDBOX_BRAND_ID").unwrap_or_else(|_| "sandbox-brand".into())
}

fn client_with(base_url: &str, key: &str, adjust: impl FnOnce(&mut RevioConfig)) -> RevioClient {
    // The sandbox speaks plain http: allowed only because this is the local sandbox.
    let mut config = RevioConfig::new(base_url, SecretString::new(key.to_owned()), brand_id()).allowing_insecure_http();
    adjust(&mut config);
    RevioClient::new(config).expect("client builds")
}

fn client(base_url: &str) -> RevioClient {
    client_with(base_url, &api_key(), |_| {})
}

fn new_purchase(amount_minor: i64) -> NewPurchase {
    let reference = ulid::Ulid::new().to_string();
    NewPurchase {
        email: format!("payer-{}@example.com", reference.to_lowercase()),
        amount_minor,
        currency: "ZAR".into(),
        product_name: "25.00 Purse coins".into(),
        reference,
        success_redirect: Some("http://purse.test/deposits/done".into()),
        failure_redirect: Some("http://purse.test/deposits/failed".into()),
        success_callback: None,
    }
}

/// A raw control call to a sandbox (`/_sandbox/...`), answering the status and the JSON.
async fn control(base_url: &str, method: reqwest::Method, path: &str, body: &[u8]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{base_url}{path}"))
        .body(body.to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("sandbox control {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A Revio sandbox of this test's own, on a free port; killed on drop.
struct PrivateSandbox {
    url: String,
    _process: tokio::process::Child,
}

impl PrivateSandbox {
    async fn start() -> Self {
        // The shared stack proves the environment is set up (with-stack.sh also builds the venv).
        shared_sandbox_url();
        let root = purse_local::template::project_root();
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `bash tools/stack/venv.sh` (with-stack.sh does)",
            python.display()
        );
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut process = tokio::process::Command::new(&python)
                .arg(root.join("tools/sandbox/revio.py"))
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .env_remove("REVIO_SANDBOX_KEY_FILE")
                .env_remove("REVIO_SANDBOX_WEBHOOK_URL")
                .env_remove("REVIO_SANDBOX_PUBLIC_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("the Revio sandbox starts");
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && process.try_wait().ok().flatten().is_none() {
                let healthy = reqwest::Client::new()
                    .get(format!("{url}/_sandbox/health"))
                    .timeout(Duration::from_millis(500))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if healthy {
                    return Self { url, _process: process };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // exited (port taken meanwhile?) or never healthy: try another port
        }
        panic!("a private Revio sandbox did not start");
    }

    async fn faults(&self, faults: Value) -> Value {
        let (status, answer) =
            control(&self.url, reqwest::Method::POST, "/_sandbox/faults", faults.to_string().as_bytes()).await;
        assert_eq!(status, 200, "faults {faults}: {answer}");
        answer
    }

    async fn current_faults(&self) -> Value {
        control(&self.url, reqwest::Method::GET, "/_sandbox/faults", b"").await.1
    }

    async fn reset(&self) {
        let (status, answer) = control(&self.url, reqwest::Method::POST, "/_sandbox/reset", b"{}").await;
        assert_eq!(status, 200, "reset: {answer}");
    }
}

#[tokio::test]
async fn a_purchase_is_created_and_read_back_with_its_checkout_url() {
    let _shared = SANDBOX.read().await;
    let url = shared_sandbox_url();
    let revio = client(&url);
    let asked = new_purchase(2500);

    let created = revio.create_purchase(&asked).await.unwrap();
    assert_eq!(created.status, PurchaseStatus::Created);
    assert_eq!((created.total_minor, created.currency.as_str()), (2500, "ZAR"));
    assert_eq!(created.reference.as_deref(), Some(asked.reference.as_str()));
    let checkout = created.checkout_url.clone().expect("a checkout URL");
    assert!(checkout.starts_with(&url) && checkout.contains(&created.id), "{checkout}");

    let read = revio.get_purchase(&created.id).await.unwrap();
    assert_eq!(read, created);

    // what the sandbox stored is exactly what was asked for
    let (_, stored) = control(&url, reqwest::Method::GET, &format!("/_sandbox/purchases/{}", created.id), b"").await;
    assert_eq!(stored["brand_id"], json!(brand_id()));
    assert_eq!(stored["client"]["email"], json!(asked.email));
    assert_eq!(stored["purchase"]["products"], json!([{"name": "25.00 Purse coins", "price": 2500, "quantity": 1}]));
    assert_eq!(stored["success_redirect"], json!("http://purse.test/deposits/done"));
    assert_eq!(stored["failure_redirect"], json!("http://purse.test/deposits/failed"));
}

#[tokio::test]
async fn a_paid_purchase_reads_as_paid_and_a_declined_one_as_error() {
    let _shared = SANDBOX.read().await;
    let revio = client(&shared_sandbox_url());
    let sandbox = Sandbox::new();

    let paid = revio.create_purchase(&new_purchase(1000)).await.unwrap();
    sandbox.pay(&paid.id).await;
    assert_eq!(revio.get_purchase(&paid.id).await.unwrap().status, PurchaseStatus::Paid);

    let declined = revio.create_purchase(&new_purchase(1000)).await.unwrap();
    sandbox.decline(&declined.id).await;
    assert_eq!(revio.get_purchase(&declined.id).await.unwrap().status, PurchaseStatus::Error);
}

#[tokio::test]
async fn a_wrong_api_key_is_rejected_with_401_and_never_echoed() {
    let _shared = SANDBOX.read().await;
    let url = shared_sandbox_url();
    let existing = client(&url).create_purchase(&new_purchase(500)).await.unwrap();
    let impostor = client_with(&url, "wrong-key-0123456789", |_| {});

    for err in [
        impostor.create_purchase(&new_purchase(500)).await.unwrap_err(),
        impostor.get_purchase(&existing.id).await.unwrap_err(),
    ] {
        match &err {
            RevioError::Rejected { status: 401, message } => assert!(message.contains("API key"), "{message}"),
            other => panic!("expected Rejected 401, got {other:?}"),
        }
        assert!(!err.to_string().contains("wrong-key-0123456789") && !format!("{err:?}").contains("wrong-key"));
    }
    assert!(!format!("{impostor:?}").contains("wrong-key"));
}

#[tokio::test]
async fn an_unknown_purchase_is_not_found() {
    let _shared = SANDBOX.read().await;
    let revio = client(&shared_sandbox_url());
    assert_eq!(revio.get_purchase("00000000-0000-4000-8000-000000000000").await, Err(RevioError::NotFound));
}

#[tokio::test]
async fn invalid_purchase_input_is_rejected_with_revio_s_short_explanation() {
    let _shared = SANDBOX.read().await;
    let url = shared_sandbox_url();

    let mut bad_email = new_purchase(500);
    bad_email.email = "not-an-email".into();
    match client(&url).create_purchase(&bad_email).await {
        Err(RevioError::Rejected { status: 400, message }) => assert!(message.contains("client.email"), "{message}"),
        other => panic!("{other:?}"),
    }

    let other_brand = client_with(&url, &api_key(), |c| c.brand_id = "someone-else".into());
    match other_brand.create_purchase(&new_purchase(500)).await {
        Err(RevioError::Rejected { status: 400, message }) => assert!(message.contains("brand"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_sandbox_public_key_verifies_its_webhook_signature_and_rejects_a_changed_byte() {
    let _shared = SANDBOX.read().await;
    let url = shared_sandbox_url();
    let revio = client(&url);
    let purchase = revio.create_purchase(&new_purchase(2500)).await.unwrap();

    let pem = revio.public_key_pem().await.unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let verifier = WebhookVerifier::from_client(&revio).await.unwrap();

    // a webhook-like body: the purchase JSON with its event type, signed by the sandbox
    let (_, mut event) =
        control(&url, reqwest::Method::GET, &format!("/_sandbox/purchases/{}", purchase.id), b"").await;
    event["event_type"] = json!("purchase.paid");
    let body = serde_json::to_vec(&event).unwrap();
    let (status, signed) =
        control(&url, reqwest::Method::POST, &format!("/_sandbox/purchases/{}/sign", purchase.id), &body).await;
    assert_eq!(status, 200, "{signed}");
    let signature = signed["signature"].as_str().expect("a signature").to_owned();

    assert!(verifier.verify(&body, &signature));
    let mut changed = body.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x01;
    assert!(!verifier.verify(&changed, &signature), "a one-byte change must fail");
    assert!(!verifier.verify(&body, ""), "an empty header must fail");
    assert!(!verifier.verify(&body, "bm90IGEgc2lnbmF0dXJl"), "a garbage header must fail");
}

#[tokio::test]
async fn when_revio_is_down_calls_are_unavailable_promptly_and_a_purchase_is_never_sent_twice() {
    let sandbox = PrivateSandbox::start().await;
    let revio = client(&sandbox.url);
    let existing = revio.create_purchase(&new_purchase(500)).await.unwrap();

    sandbox.faults(json!({"down": true})).await;
    let started = Instant::now();
    match revio.get_purchase(&existing.id).await {
        Err(RevioError::Unavailable(m)) => {
            assert!(m.contains("503") && m.contains("after 3 attempt(s)"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    match revio.create_purchase(&new_purchase(500)).await {
        Err(RevioError::Unavailable(m)) => {
            assert!(m.contains("503") && m.contains("after 1 attempt(s)"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());

    // A failed POST is not repeated: of two armed failures, creation consumes exactly one.
    sandbox.reset().await;
    sandbox.faults(json!({"fail_next_api_calls": 2})).await;
    assert!(matches!(revio.create_purchase(&new_purchase(500)).await, Err(RevioError::Unavailable(_))));
    assert_eq!(sandbox.current_faults().await["fail_next_api_calls"], json!(1));
    sandbox.reset().await;
}

#[tokio::test]
async fn get_purchase_rides_out_two_failing_calls_by_retrying_and_gives_up_after_three() {
    let sandbox = PrivateSandbox::start().await;
    let revio = client(&sandbox.url);
    let purchase = revio.create_purchase(&new_purchase(700)).await.unwrap();

    sandbox.faults(json!({"fail_next_api_calls": 2})).await;
    assert_eq!(revio.get_purchase(&purchase.id).await.unwrap(), purchase);
    assert_eq!(sandbox.current_faults().await["fail_next_api_calls"], json!(0));

    sandbox.faults(json!({"fail_next_api_calls": 3})).await;
    match revio.get_purchase(&purchase.id).await {
        Err(RevioError::Unavailable(m)) => {
            assert!(m.contains("500") && m.contains("after 3 attempt(s)"), "{m}")
        }
        other => panic!("{other:?}"),
    }

    // the public key is a read too
    sandbox.faults(json!({"fail_next_api_calls": 2})).await;
    assert!(revio.public_key_pem().await.is_ok());
    sandbox.reset().await;
}

#[tokio::test]
async fn a_revio_slower_than_the_timeout_is_unavailable_within_the_bound() {
    let sandbox = PrivateSandbox::start().await;
    let revio = client(&sandbox.url);
    let purchase = revio.create_purchase(&new_purchase(900)).await.unwrap();
    let impatient = client_with(&sandbox.url, &api_key(), |c| {
        c.request_timeout = Duration::from_secs(1);
        c.retry = RetryPolicy::default();
    });

    sandbox.faults(json!({"latency_ms": 5_600})).await;
    let create = async {
        let started = Instant::now();
        (revio.create_purchase(&new_purchase(900)).await, started.elapsed())
    };
    let read = async {
        let started = Instant::now();
        (impatient.get_purchase(&purchase.id).await, started.elapsed())
    };
    let ((created, create_took), (read_back, read_took)) = tokio::join!(create, read);

    // the default bound: 5 s for the whole request, and a creation is not repeated
    match created {
        Err(RevioError::Unavailable(m)) => {
            assert!(m.contains("within 5000 ms") && m.contains("after 1 attempt(s)"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        create_took >= Duration::from_millis(4_900) && create_took < Duration::from_secs(6),
        "took {create_took:?}"
    );

    // a read is repeated, each attempt bounded: 3 × 1 s plus at most 0.1 + 0.2 s of backoff
    match read_back {
        Err(RevioError::Unavailable(m)) => {
            assert!(m.contains("within 1000 ms") && m.contains("after 3 attempt(s)"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(read_took < Duration::from_millis(4_500), "took {read_took:?}");
    sandbox.reset().await;
}
