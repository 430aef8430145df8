//! Revio's webhook signing key can be pinned by configuration (then nothing is fetched), and
//! outside a local stack the functions refuse to talk to Revio over plain http.

use purse_local::provision;
use purse_local::router::{Router, RouterError};
use purse_local::template::{FunctionSpec, Template};
use purse_tests::{Sandbox, SandboxFaults, TestApp, TestResponse};
use serde_json::json;

const WEBHOOK_FUNCTION: &str = "webhook_revio";

/// The sandbox's public key, read the way anyone can: its unauthenticated endpoint.
async fn sandbox_public_key(sandbox: &Sandbox) -> String {
    let r = reqwest::get(format!("{}/api/v1/public_key/", sandbox.base)).await.expect("sandbox reachable");
    assert!(r.status().is_success());
    r.text().await.unwrap()
}

fn pin(pem: String) -> impl Fn(&FunctionSpec, purse::config::Env) -> purse::config::Env {
    move |f, env| if f.binary == WEBHOOK_FUNCTION { env.with("REVIO_PUBLIC_KEY_PEM", pem.clone()) } else { env }
}

/// A validly shaped event for a purchase nobody knows (the receiver queues it; nothing settles).
fn event_body() -> String {
    json!({"id": format!("pin-{}", ulid::Ulid::new()), "type": "purchase", "event_type": "purchase.paid",
           "status": "paid"})
    .to_string()
}

async fn deliver(app: &TestApp, body: &str, signature: &str) -> TestResponse {
    let headers = [("content-type", "application/json"), ("x-signature", signature)];
    app.send("POST", "/webhooks/revio", &headers, body.as_bytes()).await
}

/// Starts every function of a freshly provisioned local stack with these parameter overrides.
async fn start_with_parameters(overrides: &[(&str, &str)]) -> Result<Router, RouterError> {
    let aws = purse_tests::emulator_config().await;
    let template = Template::project().unwrap();
    let prefix = format!("t{}-", ulid::Ulid::new().to_string().to_lowercase());
    let mut params = provision::local_parameters(&template, "http://purse.test");
    for (name, value) in overrides {
        params.insert((*name).to_owned(), (*value).to_owned());
    }
    let stack = provision::provision(&template, &aws, &prefix, params).await.unwrap();
    Router::start(&template, &stack, &aws).await
}

#[tokio::test]
async fn a_pinned_public_key_is_used_without_fetching_it_even_while_revio_is_down() {
    let _exclusive = SandboxFaults::take().await;
    let sandbox = Sandbox::new();
    let pem = sandbox_public_key(&sandbox).await;
    let body = event_body();
    let signature = sandbox.sign(body.as_bytes()).await;
    sandbox.faults(json!({"down": true})).await;

    let app = TestApp::spawn_with(pin(pem)).await;
    let r = deliver(&app, &body, &signature).await;
    assert_eq!(r.status, 200, "verified with the pinned key: {}", r.text);
    let forged = deliver(&app, &event_body(), &signature).await;
    assert_eq!((forged.status, forged.code()), (401, "invalid_signature"));
}

#[tokio::test]
async fn without_a_pinned_key_the_receiver_cannot_start_while_revio_is_down() {
    let _exclusive = SandboxFaults::take().await;
    Sandbox::new().faults(json!({"down": true})).await;
    match start_with_parameters(&[]).await {
        Err(RouterError::Init { function, error }) => {
            assert_eq!(function, "RevioWebhookFunction");
            assert!(error.to_string().contains("public key"), "{error}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the receiver started without any key"),
    }
}

#[tokio::test]
async fn a_wrong_pinned_key_makes_every_real_signature_fail_verification() {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let other = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let wrong = other.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let app = TestApp::spawn_with(pin(wrong)).await;
    let sandbox = Sandbox::new();
    for _ in 0..3 {
        let body = event_body();
        let signature = sandbox.sign(body.as_bytes()).await;
        let r = deliver(&app, &body, &signature).await;
        assert_eq!((r.status, r.code()), (401, "invalid_signature"), "{}", r.text);
    }
}

#[tokio::test]
async fn outside_a_local_stack_an_http_revio_url_stops_the_functions_at_start() {
    // A deployed stack keeps the template's default: https only. The sandbox is http.
    match start_with_parameters(&[("RevioAllowInsecureHttp", "false")]).await {
        Err(RouterError::Init { error: purse::config::InitError::InvalidEnv { name, reason }, .. }) => {
            assert_eq!(name, "REVIO_BASE_URL");
            assert!(reason.contains("https"), "{reason}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the functions started with an http:// Revio URL"),
    }
}

#[test]
fn the_template_requires_https_unless_a_local_stack_says_otherwise() {
    let template = Template::project().unwrap();
    assert_eq!(template.parameter_defaults().get("RevioAllowInsecureHttp").map(String::as_str), Some("false"));
    let local = provision::local_parameters(&template, "http://purse.test");
    assert_eq!(local.get("RevioAllowInsecureHttp").map(String::as_str), Some("true"));
    let samconfig = std::fs::read_to_string(purse_local::template::project_root().join("samconfig.toml")).unwrap();
    assert!(!samconfig.contains("RevioAllowInsecureHttp"), "no deployed stage may allow http");
    assert!(!samconfig.contains("RevioBaseUrl=http:"), "deployed stages use https");
}
