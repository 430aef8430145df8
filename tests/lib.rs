//! Test harness: [`TestApp::spawn`] provisions a fresh stack in the emulator (its own tables,
//! queues and secrets under a unique prefix, created from `template.yaml`), starts every
//! function through the same router `make dev` uses, and sends requests as API Gateway would.
//!
//! The emulator must be running and `AWS_ENDPOINT_URL` set; `make test` arranges both
//! (`tools/stack/with-stack.sh`).

use lambda_http::Body;
use purse_local::apigw::RawRequest;
use purse_local::provision::{self, Stack};
use purse_local::router::Router;
use purse_local::template::Template;
use serde_json::Value;

/// A running copy of Purse on fresh state.
pub struct TestApp {
    pub template: Template,
    pub stack: Stack,
    pub aws: aws_config::SdkConfig,
    pub router: Router,
    pub table: purse::store::Table,
}

/// An answer, with the body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: Value,
}

impl TestResponse {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The emulator's AWS configuration; panics with instructions when it is not configured.
pub async fn emulator_config() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run the tests with `make test` (or tools/stack/with-stack.sh cargo test)"
    );
    purse::config::load_aws().await
}

impl TestApp {
    /// Provisions a fresh stack and starts every function.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_, env| env).await
    }

    /// Like [`TestApp::spawn`], adjusting functions' environments (e.g. to point at a sandbox).
    pub async fn spawn_with(
        adjust: impl Fn(&purse_local::template::FunctionSpec, purse::config::Env) -> purse::config::Env,
    ) -> Self {
        let aws = emulator_config().await;
        let template = Template::project().expect("template.yaml");
        let prefix = format!("t{}-", ulid::Ulid::new().to_string().to_lowercase());
        let params = provision::local_parameters(&template, "http://purse.test");
        let stack = provision::provision(&template, &aws, &prefix, params).await.expect("provision");
        let router = Router::start_with(&template, &stack, &aws, adjust).await.expect("functions start");
        let table = purse::store::Table {
            client: aws_sdk_dynamodb::Client::new(&aws),
            name: stack.get("PurseTable").expect("table").reference.clone(),
        };
        Self { template, stack, aws, router, table }
    }

    /// Sends a request with raw headers and body.
    pub async fn send(&self, method: &str, path_and_query: &str, headers: &[(&str, &str)], body: &[u8]) -> TestResponse {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let raw = RawRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            body: body.to_vec(),
            source_ip: "127.0.0.1".into(),
        };
        let resp = self.router.dispatch(raw).await;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = match resp.body() {
            Body::Text(t) => t.clone(),
            Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse { status, headers, text, json }
    }

    /// POSTs JSON, with a bearer token when given.
    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> TestResponse {
        self.post_with(path, body, token, &[]).await
    }

    /// POSTs JSON with extra headers.
    pub async fn post_with(&self, path: &str, body: &Value, token: Option<&str>, extra: &[(&str, &str)]) -> TestResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        headers.extend_from_slice(extra);
        self.send("POST", path, &headers, body.to_string().as_bytes()).await
    }

    /// GETs a path, with a bearer token when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
        self.send("GET", path, &headers, b"").await
    }

    /// Registers a new user with a unique e-mail; returns (email, password, profile).
    pub async fn register(&self) -> (String, String, Value) {
        let email = format!("user-{}@example.com", ulid::Ulid::new().to_string().to_lowercase());
        let password = "correct-horse-battery".to_owned();
        let r = self.post("/v1/auth/register", &serde_json::json!({"email": email, "password": password}), None).await;
        assert_eq!(r.status, 201, "register: {}", r.text);
        (email, password, r.json)
    }

    /// Registers and signs in a new user; returns (profile, token pair).
    pub async fn signed_in_user(&self) -> (Value, Value) {
        let (email, password, profile) = self.register().await;
        let r = self.post("/v1/auth/login", &serde_json::json!({"email": email, "password": password}), None).await;
        assert_eq!(r.status, 200, "login: {}", r.text);
        (profile, r.json)
    }

    /// An access token of a freshly signed-in user, and their id.
    pub async fn user_token(&self) -> (String, String) {
        let (profile, tokens) = self.signed_in_user().await;
        (profile["id"].as_str().unwrap().to_owned(), tokens["access_token"].as_str().unwrap().to_owned())
    }

    /// The stack's signing keys (read back from the emulator's secret), for forging tests.
    pub async fn signing_keys_json(&self) -> String {
        let arn = &self.stack.get("JwtSigningKeysSecret").unwrap().reference;
        purse::secrets::load(&self.aws, arn).await.unwrap().expose().to_owned()
    }
}

impl TestApp {
    /// Runs the ledger audit and fails the test on any difference.
    pub async fn assert_ledger_balanced(&self) {
        let report = purse::ledger::audit::run(&self.table).await.expect("audit runs");
        assert!(report.is_clean(), "ledger audit found differences: {:#?}", report.differences);
    }

    /// A user's wallet balance and available amount, as strings.
    pub async fn wallet_of(&self, user: &str) -> (String, String, String) {
        let id = purse::domain::ids::UserId::parse(user).unwrap();
        let a = purse::ledger::store::get_account(&self.table, &purse::ledger::AccountId::wallet(&id)).await.unwrap().unwrap();
        let c = a.currency;
        (purse::money::format(a.balance, c), purse::money::format(a.available, c), purse::money::format(a.held, c))
    }
}
