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
    pub router: std::sync::Arc<Router>,
    pub table: purse::store::Table,
    /// `http://127.0.0.1:<port>` when started with [`TestApp::spawn_serving`].
    pub base_url: Option<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    /// Shared use of the Revio sandbox for the app's lifetime (none when this test owns it).
    _sandbox: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
}

thread_local! {
    /// Whether the test on this thread holds [`SandboxFaults`] (each `#[tokio::test]` has its own thread).
    static OWNS_SANDBOX: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            let _ = stop.send(true);
        }
        for t in &self.tasks {
            t.abort();
        }
    }
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
    /// Reads a function's answer.
    pub fn from_response(resp: lambda_http::Response<Body>) -> Self {
        let status = resp.status().as_u16();
        let headers =
            resp.headers().iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
        let text = match resp.body() {
            Body::Text(t) => t.clone(),
            Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse { status, headers, text, json }
    }

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

/// The billing period of calls in test stacks, in seconds.
pub const CALL_PERIOD_SECONDS: u64 = 2;

impl TestApp {
    /// Provisions a fresh stack and starts every function.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_, env| env).await
    }

    /// Like [`TestApp::spawn`], adjusting functions' environments (e.g. to point at a sandbox).
    pub async fn spawn_with(
        adjust: impl Fn(&purse_local::template::FunctionSpec, purse::config::Env) -> purse::config::Env,
    ) -> Self {
        Self::spawn_granting(adjust, |_| Vec::new()).await
    }

    /// Like [`TestApp::spawn_with`], also granting functions IAM statements beyond their template
    /// policy (`grant` gives each function's extra statements): for a test that points a function
    /// at a resource outside the template, which in AWS would need the same grant.
    pub async fn spawn_granting(
        adjust: impl Fn(&purse_local::template::FunctionSpec, purse::config::Env) -> purse::config::Env,
        grant: impl Fn(&purse_local::template::FunctionSpec) -> Vec<Value>,
    ) -> Self {
        if std::env::var_os("PURSE_TEST_LOG").is_some() {
            purse::telemetry::init();
        }
        // Every app fetches Revio's public key at start and may call the sandbox: share it,
        // unless this very test took it exclusively to inject faults.
        let sandbox = if OWNS_SANDBOX.with(std::cell::Cell::get) { None } else { Some(SANDBOX.read().await) };
        let aws = emulator_config().await;
        let template = Template::project().expect("template.yaml");
        let prefix = format!("t{}-", ulid::Ulid::new().to_string().to_lowercase());
        let mut params = provision::local_parameters(&template, "http://purse.test");
        // Calls bill a "minute" every 2 s and ring for 5 s in tests.
        params.insert("BillingPeriodSeconds".into(), CALL_PERIOD_SECONDS.to_string());
        params.insert("CallRingSeconds".into(), "5".into());
        let mut stack = provision::provision(&template, &aws, &prefix, params).await.expect("provision");
        for f in template.functions().expect("functions") {
            let extra = grant(&f);
            if !extra.is_empty() {
                stack.iam_grants.insert(f.logical_id.clone(), extra);
            }
        }
        let router = Router::start_with(&template, &stack, &aws, adjust).await.expect("functions start");
        let table = purse::store::Table {
            client: aws_sdk_dynamodb::Client::new(&aws),
            name: stack.get("PurseTable").expect("table").reference.clone(),
        };
        Self {
            template,
            stack,
            aws,
            router: std::sync::Arc::new(router),
            table,
            base_url: None,
            tasks: Vec::new(),
            stop: None,
            _sandbox: sandbox,
        }
    }

    /// Like [`TestApp::spawn`], and also serves the API on a local port (so the Revio sandbox can
    /// deliver webhooks to it) and polls the SQS queues with the consumers, as `make dev` does.
    pub async fn spawn_serving() -> Self {
        Self::spawn_serving_with(|_, env| env).await
    }

    /// Sends a request with raw headers and body.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> TestResponse {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let raw = RawRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            body: body.to_vec(),
            source_ip: "127.0.0.1".into(),
        };
        TestResponse::from_response(self.router.dispatch(raw).await)
    }

    /// POSTs JSON, with a bearer token when given.
    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> TestResponse {
        self.post_with(path, body, token, &[]).await
    }

    /// POSTs JSON with extra headers.
    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> TestResponse {
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

    /// POSTs JSON like [`TestApp::post_with`], repeating the same request while it answers
    /// `503 temporarily_unavailable` or `409 idempotency_request_in_progress` (for up to 150 s: a key whose release failed under
    /// load stays in progress for its 60 s lease),
    /// as a well-behaved client does: the emulator is shared by tests that load it heavily.
    pub async fn post_retrying(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> TestResponse {
        use rand::Rng;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
        let mut pause_ms: u64 = 250;
        loop {
            let r = self.post_with(path, body, token, extra).await;
            let again = r.code() == "temporarily_unavailable" || r.code() == "idempotency_request_in_progress";
            if !again || std::time::Instant::now() > deadline {
                return r;
            }
            // Exponential backoff with full jitter, as the API's clients are asked to retry.
            let wait = rand::thread_rng().gen_range(pause_ms / 2..=pause_ms);
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            pause_ms = (pause_ms * 2).min(8_000);
        }
    }

    /// Registers a new user with a unique e-mail; returns (email, password, profile).
    pub async fn register(&self) -> (String, String, Value) {
        let email = format!("user-{}@example.com", ulid::Ulid::new().to_string().to_lowercase());
        let password = "correct-horse-battery".to_owned();
        let body = serde_json::json!({"email": email, "password": password});
        let first = self.post("/v1/auth/register", &body, None).await;
        let r = if first.code() == "temporarily_unavailable" {
            let again = self.post_retrying("/v1/auth/register", &body, None, &[]).await;
            if again.code() == "email_taken" {
                // The first attempt was applied though its answer said 503 (its lost response
                // outlived the request's budget): sign in and read the profile it created.
                let login = self.post_retrying("/v1/auth/login", &body, None, &[]).await;
                let token = login.json["access_token"].as_str().expect("access token").to_owned();
                let me = self.get("/v1/me", Some(&token)).await;
                return (email, password, me.json);
            }
            again
        } else {
            first
        };
        assert_eq!(r.status, 201, "register: {}", r.text);
        (email, password, r.json)
    }

    /// Registers and signs in a new user; returns (profile, token pair).
    pub async fn signed_in_user(&self) -> (Value, Value) {
        let (email, password, profile) = self.register().await;
        let r = self
            .post_retrying("/v1/auth/login", &serde_json::json!({"email": email, "password": password}), None, &[])
            .await;
        assert_eq!(r.status, 200, "login: {}", r.text);
        (profile, r.json)
    }

    /// Signs up a user with referral code `code` and signs them in: (user id, access token, e-mail).
    pub async fn referred_user(&self, code: &str) -> (String, String, String) {
        let email = format!("friend-{}@example.com", ulid::Ulid::new().to_string().to_lowercase());
        let body = serde_json::json!({"email": email, "password": "correct-horse-battery", "referral_code": code});
        let r = self.post("/v1/auth/register", &body, None).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let login = self
            .post("/v1/auth/login", &serde_json::json!({"email": email, "password": "correct-horse-battery"}), None)
            .await;
        (r.json["id"].as_str().unwrap().to_owned(), login.json["access_token"].as_str().unwrap().to_owned(), email)
    }

    /// An access token of a freshly signed-in user, and their id.
    pub async fn user_token(&self) -> (String, String) {
        let (profile, tokens) = self.signed_in_user().await;
        (profile["id"].as_str().unwrap().to_owned(), tokens["access_token"].as_str().unwrap().to_owned())
    }

    /// A signed-in administrator's access token (the role granted as `purse-admin` grants it).
    pub async fn admin_token(&self) -> String {
        let (email, password, profile) = self.register().await;
        let id = purse::domain::ids::UserId::parse(profile["id"].as_str().unwrap()).unwrap();
        purse::store::users::grant_role(&self.table, &id, purse::domain::user::Role::Admin).await.unwrap();
        let r = self.post("/v1/auth/login", &serde_json::json!({"email": email, "password": password}), None).await;
        assert_eq!(r.status, 200, "admin login: {}", r.text);
        r.json["access_token"].as_str().unwrap().to_owned()
    }

    /// A Revio client talking to the sandbox with this stack's Revio secret, as the functions
    /// build theirs.
    pub async fn revio_client(&self) -> purse::revio::RevioClient {
        purse::revio::RevioClient::from_env(
            &purse::config::Env::default()
                .with("REVIO_BASE_URL", Sandbox::new().base)
                .with("REVIO_ALLOW_INSECURE_HTTP", "true")
                .with("REVIO_SECRET_ID", self.stack.get("RevioApiSecret").unwrap().reference.clone()),
            &self.aws,
        )
        .await
        .expect("Revio client for the sandbox")
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
        let a = purse::ledger::store::get_account(&self.table, &purse::ledger::AccountId::wallet(&id))
            .await
            .unwrap()
            .unwrap();
        let c = a.currency;
        (purse::money::format(a.balance, c), purse::money::format(a.available, c), purse::money::format(a.held, c))
    }
}

/// Fault injection in the emulator for one app's resources (`tools/stack/emulator.py`): every
/// request naming the app's prefix (its tables and queues) is subject to the faults; other
/// tests running at the same time are not.
impl TestApp {
    fn emulator_url() -> String {
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL")
    }

    /// Turns faults on for this app, e.g. `conflict=0.1,throttle=0.07,internal=0.04,lost_response=0.04,seed=7`.
    pub async fn set_faults(&self, spec: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/_emulator/faults", Self::emulator_url()))
            .json(&serde_json::json!({"spec": spec, "scope": self.stack.prefix}))
            .send()
            .await
            .expect("emulator reachable");
        assert!(r.status().is_success(), "set faults {spec}: {}", r.text().await.unwrap_or_default());
    }

    /// Turns this app's faults off (its counters are kept for [`TestApp::fault_report`]).
    pub async fn faults_off(&self) {
        self.set_faults("off").await;
    }

    /// What the emulator injected for this app: `{"injected": {...}, "requests": n, "by_operation": {...}, "token_replays": n}`.
    pub async fn fault_report(&self) -> Value {
        reqwest::Client::new()
            .get(format!("{}/_emulator/faults?scope={}", Self::emulator_url(), self.stack.prefix))
            .send()
            .await
            .expect("emulator reachable")
            .json()
            .await
            .expect("json")
    }
}

/// Tests that load the shared emulator heavily (hundreds of requests under injected faults) take
/// this lock, so that two of them never run at once and starve everyone else's budgets.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tests that change the Revio sandbox's faults (which every test shares) hold this lock for
/// writing; every other test that talks to the sandbox holds it for reading.
pub static SANDBOX: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Exclusive use of the sandbox's faults: resets them when taken and again when dropped, even if
/// the test panics, so a failing test cannot leave the sandbox "down" for the others.
pub struct SandboxFaults {
    _lock: tokio::sync::RwLockWriteGuard<'static, ()>,
    base: String,
}

impl SandboxFaults {
    /// Waits until no other test uses the sandbox, then takes it.
    pub async fn take() -> Self {
        let lock = SANDBOX.write().await;
        OWNS_SANDBOX.with(|o| o.set(true));
        let sandbox = Sandbox::new();
        sandbox.reset().await;
        Self { _lock: lock, base: sandbox.base }
    }
}

impl Drop for SandboxFaults {
    fn drop(&mut self) {
        OWNS_SANDBOX.with(|o| o.set(false));
        reset_sandbox_blocking(&self.base);
    }
}

/// Clears a sandbox's faults with a plain blocking request (`POST /_sandbox/reset`): a `Drop`
/// cannot await, and it must run even when the test panicked.
fn reset_sandbox_blocking(base: &str) {
    let Some(addr) = base.strip_prefix("http://") else { return };
    if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
        use std::io::{Read, Write};
        let request = format!("POST /_sandbox/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
        let _ = stream.write_all(request.as_bytes());
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// The Revio sandbox's control API.
#[derive(Clone)]
pub struct Sandbox {
    pub base: String,
    http: reqwest::Client,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// The sandbox `tools/stack/with-stack.sh` started (`PURSE_REVIO_URL`).
    pub fn new() -> Self {
        let base = std::env::var("PURSE_REVIO_URL")
            .expect("PURSE_REVIO_URL is not set: run the tests with `make test` (tools/stack/with-stack.sh)");
        Self { base, http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.base)).json(body).send().await.expect("sandbox reachable");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "sandbox {path}: {status} {v}");
        v
    }

    /// Clicks Pay on the hosted checkout page.
    pub async fn pay(&self, purchase_id: &str) -> Value {
        self.post(&format!("/_sandbox/purchases/{purchase_id}/pay"), &serde_json::json!({})).await
    }

    /// Clicks Decline.
    pub async fn decline(&self, purchase_id: &str) -> Value {
        self.post(&format!("/_sandbox/purchases/{purchase_id}/decline"), &serde_json::json!({})).await
    }

    /// (Re)delivers a purchase's webhook; returns the HTTP statuses our endpoint answered.
    pub async fn deliver(&self, purchase_id: &str, options: Value) -> Vec<Option<u16>> {
        let v = self.post(&format!("/_sandbox/purchases/{purchase_id}/deliver"), &options).await;
        v["status_codes"].as_array().unwrap().iter().map(|c| c.as_u64().map(|c| c as u16)).collect()
    }

    /// Settles a payout now (`paid`, `unpaid`, `rejected`, `returned`), as the bank would.
    pub async fn settle_payout(&self, payout_id: &str, status: &str) -> Value {
        self.post(&format!("/_sandbox/payouts/{payout_id}/settle"), &serde_json::json!({"status": status})).await
    }

    /// (Re)delivers a payout's webhook; returns the HTTP statuses our endpoint answered.
    pub async fn deliver_payout(&self, payout_id: &str, options: Value) -> Vec<Option<u16>> {
        let v = self.post(&format!("/_sandbox/payouts/{payout_id}/deliver"), &options).await;
        v["status_codes"].as_array().unwrap().iter().map(|c| c.as_u64().map(|c| c as u16)).collect()
    }

    /// Sets faults (`down`, `latency_ms`, `lose_webhooks`, `duplicate_webhooks`, `fail_next_api_calls`).
    pub async fn faults(&self, faults: Value) {
        self.post("/_sandbox/faults", &faults).await;
    }

    /// Clears every fault.
    pub async fn reset(&self) {
        self.post("/_sandbox/reset", &serde_json::json!({})).await;
    }

    /// Signs an arbitrary body with the sandbox's webhook key.
    pub async fn sign(&self, body: &[u8]) -> String {
        let r = self
            .http
            .post(format!("{}/_sandbox/sign", self.base))
            .body(body.to_vec())
            .send()
            .await
            .expect("sandbox reachable");
        let v: Value = r.json().await.expect("json");
        v["signature"].as_str().expect("signature").to_owned()
    }

    /// Creates a purchase straight at the sandbox's merchant API, as anyone holding the API key
    /// could, bypassing Purse.
    pub async fn create_purchase(&self, amount_minor: i64, reference: &str, callback: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/api/v1/purchases/", self.base))
            .bearer_auth(std::env::var("REVIO_SANDBOX_API_KEY").unwrap_or_else(|_| "sandbox-revio-key".into()))
            .json(&serde_json::json!({
                "brand_id": std::env::var("REVIO_SANDBOX_BRAND_ID").unwrap_or_else(|_| "sandbox-brand".into()),
                "client": {"email": "mallory@example.com"},
                "purchase": {"currency": "ZAR", "products": [{"name": "coins", "price": amount_minor}]},
                "reference": reference,
                "success_callback": callback,
            }))
            .send()
            .await
            .expect("sandbox reachable");
        assert_eq!(r.status().as_u16(), 201);
        r.json().await.expect("json")
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A PAN no other test uses, with these four digits (which choose the KYC sandbox's answer:
/// `1111` verified by webhook, `2222` rejected, `3333` verified at once, `4444` verified but
/// only polling finds it, `5555` provider error, `6666` never decided).
pub fn fresh_pan(digits: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut letter = || char::from(b'A' + rng.gen_range(0..26));
    let (a, b, c, e, last) = (letter(), letter(), letter(), letter(), letter());
    format!("{a}{b}{c}P{e}{digits}{last}")
}

/// The KYC sandbox's control API (`tools/sandbox/kyc.py`).
#[derive(Clone)]
pub struct KycSandbox {
    pub base: String,
    http: reqwest::Client,
}

impl Default for KycSandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl KycSandbox {
    /// The sandbox `tools/stack/with-stack.sh` started (`PURSE_KYC_URL`).
    pub fn new() -> Self {
        let base = std::env::var("PURSE_KYC_URL")
            .expect("PURSE_KYC_URL is not set: run the tests with `make test` (tools/stack/with-stack.sh)");
        Self { base, http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let r = self.http.post(format!("{}{path}", self.base)).json(body).send().await.expect("KYC sandbox reachable");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "KYC sandbox {path}: {status} {v}");
        v
    }

    /// (Re)sends a check's result webhook (`times`, `concurrent`, `status`, `reason`,
    /// `webhook_id`, `timestamp`, `secret` overrides); returns the webhook id and the HTTP
    /// statuses our endpoint answered.
    pub async fn deliver(&self, request_id: &str, options: Value) -> (String, Vec<Option<u16>>) {
        let v = self.post(&format!("/_sandbox/requests/{request_id}/deliver"), &options).await;
        let codes = v["results"].as_array().unwrap().iter().map(|c| c.as_u64().map(|c| c as u16)).collect();
        (v["webhook_id"].as_str().unwrap_or_default().to_owned(), codes)
    }

    /// Decides a check now, without a webhook.
    pub async fn complete(&self, request_id: &str, status: &str) -> Value {
        self.post(&format!("/_sandbox/requests/{request_id}/complete"), &serde_json::json!({"status": status})).await
    }

    /// Sets faults (`down`, `slow_ms`, `webhooks_paused`).
    pub async fn faults(&self, faults: Value) {
        self.post("/_sandbox/faults", &faults).await;
    }

    /// The webhook delivery log of one check.
    pub async fn deliveries(&self, request_id: &str) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/_sandbox/deliveries?request_id={request_id}", self.base))
            .send()
            .await
            .expect("KYC sandbox reachable");
        let v: Value = r.json().await.expect("json");
        v.as_array().cloned().or_else(|| v["deliveries"].as_array().cloned()).unwrap_or_default()
    }
}

/// Exclusive use of the KYC sandbox's faults (the same lock as [`SandboxFaults`]); clears them
/// when taken and when dropped.
pub struct KycSandboxFaults {
    _lock: tokio::sync::RwLockWriteGuard<'static, ()>,
    pub sandbox: KycSandbox,
}

impl KycSandboxFaults {
    /// Waits until no other test uses the sandboxes, then takes them.
    pub async fn take() -> Self {
        let lock = SANDBOX.write().await;
        OWNS_SANDBOX.with(|o| o.set(true));
        let sandbox = KycSandbox::new();
        sandbox.post("/_sandbox/reset", &serde_json::json!({})).await;
        Self { _lock: lock, sandbox }
    }
}

impl Drop for KycSandboxFaults {
    fn drop(&mut self) {
        OWNS_SANDBOX.with(|o| o.set(false));
        reset_sandbox_blocking(&self.sandbox.base);
    }
}

impl TestApp {
    /// Submits KYC for a signed-in user.
    pub async fn submit_kyc(&self, token: &str, pan: &str) -> TestResponse {
        let body = serde_json::json!({"pan": pan, "full_name": "Ada Lovelace", "date_of_birth": "1990-01-31", "consent": true});
        self.post_retrying("/v1/kyc", &body, Some(token), &[]).await
    }

    /// Waits until the user's KYC status is `status`; returns `GET /v1/kyc`.
    pub async fn kyc_becomes(&self, token: &str, status: &str, seconds: u64) -> Value {
        eventually(seconds, &format!("KYC becomes {status}"), || async {
            let r = self.get("/v1/kyc", Some(token)).await;
            (r.json["status"] == status).then_some(r.json)
        })
        .await
    }

    /// The provider's reference of a KYC attempt.
    pub async fn kyc_reference(&self, kyc_id: &str) -> String {
        let id = purse::domain::ids::KycId::parse(kyc_id).unwrap();
        purse::store::kyc::get(&self.table, &id).await.unwrap().expect("attempt recorded").provider_reference
    }

    /// Every item of the app's table (tests run on small, fresh tables).
    pub async fn scan_all(&self) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .table
                .client
                .scan()
                .table_name(&self.table.name)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }
}

impl Sandbox {
    /// Revio's payouts with this reference (our withdrawal id), as the sandbox stores them.
    pub async fn payouts_for(&self, reference: &str) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/_sandbox/payouts?reference={reference}", self.base))
            .send()
            .await
            .expect("sandbox reachable");
        let v: Value = r.json().await.expect("json");
        v["results"].as_array().cloned().unwrap_or_default()
    }
}

impl TestApp {
    /// A signed-in user whose KYC verified and whose wallet holds `amount` (a deposit paid at
    /// Revio and settled directly): (user id, token).
    pub async fn funded_verified_user(&self, amount: &str) -> (String, String) {
        let (user, token) = self.user_token().await;
        let kyc = self.submit_kyc(&token, &fresh_pan("3333")).await;
        assert_eq!(kyc.json["status"], "VERIFIED", "{}", kyc.text);
        let key = format!("key-{}", ulid::Ulid::new());
        let r = self
            .post_with(
                "/v1/deposits",
                &serde_json::json!({"amount": amount}),
                Some(&token),
                &[("idempotency-key", &key)],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let purchase = r.json["reference"].as_str().unwrap().to_owned();
        Sandbox::new().pay(&purchase).await;
        let revio = self.revio_client().await;
        purse::service::settlement::settle_purchase(&self.table, &revio, &purchase).await.expect("settled");
        eventually(20, "the deposit is credited", || async { (self.wallet_of(&user).await.0 != "0.00").then_some(()) })
            .await;
        (user, token)
    }

    /// Adds a bank account with this number; returns its id.
    pub async fn bank_account(&self, token: &str, number: &str) -> String {
        let body = serde_json::json!({"account_holder": "Ada Lovelace", "account_number": number, "branch_code": "250655", "account_type": "cheque"});
        let r = self.post_retrying("/v1/bank-accounts", &body, Some(token), &[]).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["bank_account_id"].as_str().unwrap().to_owned()
    }

    /// Requests a withdrawal with a fresh Idempotency-Key.
    pub async fn withdraw(&self, token: &str, amount: &str, bank_account_id: &str) -> TestResponse {
        let key = format!("key-{}", ulid::Ulid::new());
        let body = serde_json::json!({"amount": amount, "bank_account_id": bank_account_id});
        self.post_with("/v1/withdrawals", &body, Some(token), &[("idempotency-key", &key)]).await
    }

    /// Waits until movement `id` has `status`; returns it as the owner sees it.
    pub async fn movement_becomes(&self, token: &str, id: &str, status: &str, seconds: u64) -> Value {
        eventually(seconds, &format!("{id} becomes {status}"), || async {
            let r = self.get(&format!("/v1/transactions/{id}"), Some(token)).await;
            (r.json["status"] == status).then_some(r.json)
        })
        .await
    }
}

impl TestApp {
    /// The bodies of up to 10 messages now visible on a queue of the app (by the logical id of
    /// its consumer's queue, e.g. `RewardsQueue`); they become invisible for the queue's
    /// visibility timeout, as with any receive.
    pub async fn queue_bodies(&self, queue_logical_id: &str) -> Vec<String> {
        let queue = self.router.consumer(queue_logical_id).expect("a consumer of this queue").queue_url.clone();
        let sqs = aws_sdk_sqs::Client::new(&self.aws);
        let out = sqs.receive_message().queue_url(&queue).max_number_of_messages(10).send().await.expect("receive");
        out.messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect()
    }
}

/// A webhook as the provider sent it, caught by [`catch_webhook`].
pub struct Caught {
    /// Lower-case names, without `host` and `content-length`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Has the sandbox deliver a webhook (`deliver` gets the URL to send it to) to a local listener
/// that keeps it and answers 500, so the sandbox's delivery reaches no function and the same
/// bytes can be handed to a receiver by the test (measured, repeated, or after a failure).
pub async fn catch_webhook<F, Fut>(deliver: F) -> Caught
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let serve = async move {
        let (mut socket, _) = listener.accept().await.expect("a delivery");
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
                    .map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
                if raw.len() >= end + 4 + length {
                    let headers = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .filter(|(n, _)| n != "host" && n != "content-length")
                        .collect();
                    let body = raw[end + 4..end + 4 + length].to_vec();
                    let _ = tokio::io::AsyncWriteExt::write_all(
                        &mut socket,
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
                    )
                    .await;
                    return Caught { headers, body };
                }
            }
        }
        panic!("the delivery ended early");
    };
    let (caught, ()) = tokio::join!(serve, deliver(url));
    caught
}

impl Caught {
    /// The headers as `(name, value)` pairs for [`TestApp::send`].
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }
}

/// IAM in the emulator (`tools/stack/iam_policy.py`): every function of an app signs with its
/// own principal, whose template policy the emulator enforces.
impl TestApp {
    /// The principals the emulator knows for this app: `{"<access key id>": {"function": F,
    /// "statements": n, "mode": M, ...}}`.
    pub async fn iam_principals(&self) -> Value {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}/_emulator/iam?prefix={}", Self::emulator_url(), self.stack.prefix))
            .send()
            .await
            .expect("emulator reachable")
            .json()
            .await
            .expect("json");
        answer["principals"].clone()
    }

    /// Registers an extra principal `fn-<prefix><name>` with these statements, enforced whatever
    /// the emulator's `PURSE_IAM` mode, and returns an AWS configuration that signs as it.
    pub async fn iam_principal(&self, name: &str, statements: Value) -> aws_config::SdkConfig {
        let akid = purse_local::iam::principal(&self.stack.prefix, name);
        let body = serde_json::json!({"principals": {akid: {
            "function": name, "prefix": self.stack.prefix, "statements": statements, "mode": "enforce"}}});
        let r = reqwest::Client::new()
            .post(format!("{}/_emulator/iam", Self::emulator_url()))
            .json(&body)
            .send()
            .await
            .expect("emulator reachable");
        assert!(r.status().is_success(), "register {name}: {}", r.text().await.unwrap_or_default());
        purse_local::iam::function_config(&self.aws, &self.stack.prefix, name)
    }
}

/// The emulator's request counters (`/_emulator/stats`), optionally reset after reading. They
/// are global: a measurement that reads them runs alone.
pub async fn emulator_stats(reset: bool) -> Value {
    let base = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let http = reqwest::Client::new();
    let stats = http.get(format!("{base}/_emulator/stats")).send().await.expect("emulator").json().await.expect("json");
    if reset {
        http.post(format!("{base}/_emulator/stats/reset")).send().await.expect("emulator");
    }
    stats
}

impl TestApp {
    /// A game service credential for service `name` holding `scopes`, made as
    /// `purse-admin service-create` makes it: (client id, secret).
    pub async fn service_credential(&self, name: &str, scopes: &str) -> (String, String) {
        let name = purse::auth::service::ServiceName::parse(name).expect("a service name");
        let scopes = purse::auth::service::Scopes::parse(scopes).expect("scopes");
        let (credential, secret) =
            purse::store::services::create(&self.table, &name, &scopes, "operator:test").await.expect("created");
        (credential.id.to_string(), secret.expose().to_owned())
    }

    /// POSTs JSON with this exact `Authorization` header value (`None`: no header).
    pub async fn post_authorized(&self, path: &str, body: &Value, authorization: Option<&str>) -> TestResponse {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        self.send("POST", path, &headers, body.to_string().as_bytes()).await
    }
}

// ------------------------------------------------------------------------------------------
// Calls
// ------------------------------------------------------------------------------------------

impl TestApp {
    /// A signed-in user whose wallet holds `amount` (credited by a posted adjustment, not a
    /// deposit: no provider involved): (user id, access token).
    pub async fn user_with(&self, amount: &str) -> (String, String) {
        let (id, token) = self.user_token().await;
        if amount != "0.00" {
            use purse::ledger::{AccountId, NewTransaction, Side, SystemAccount, TransactionType};
            let user = purse::domain::ids::UserId::parse(&id).expect("user id");
            let credit = NewTransaction {
                id: purse::domain::ids::TransactionId::generate(),
                user_id: user.clone(),
                kind: TransactionType::Adjustment,
                amount: purse::money::Amount::parse(amount, purse::money::Currency::Coin).expect("an amount"),
                currency: purse::money::Currency::Coin,
                debit: Side::System(SystemAccount::Adjustments),
                credit: Side::Account(AccountId::wallet(&user)),
                description: "test funds".into(),
                reference: None,
            };
            purse::ledger::store::transfer(&self.table, &credit).await.expect("funded");
        }
        (id, token)
    }

    /// The environment the function built as `binary` runs with in this stack (to build its
    /// services directly in a test).
    pub fn function_env(&self, binary: &str) -> purse::config::Env {
        let spec = self
            .template
            .functions()
            .expect("functions")
            .into_iter()
            .find(|f| f.binary == binary)
            .unwrap_or_else(|| panic!("no function {binary}"));
        self.stack.function_env(&spec).expect("function env")
    }
}

// ------------------------------------------------------------------------------------------
// WebSocket API: the local endpoint (as `make dev` serves it) and a client
// ------------------------------------------------------------------------------------------

/// A [`TestApp`] that also serves the WebSocket API on its own local port: the `$connect`,
/// `$disconnect`, `$default` and custom routes of `template.yaml` and the `@connections`
/// Management API the functions push through. Derefs to the [`TestApp`].
pub struct WsTestApp {
    pub app: TestApp,
    /// Where clients connect, `ws://127.0.0.1:<port>/` (the functions' `PURSE_WS_URL`).
    pub ws_url: String,
    /// Where functions push, `http://127.0.0.1:<port>` (the functions' `PURSE_WS_CALLBACK_URL`).
    pub ws_callback_url: String,
    /// The endpoint itself (its open connections).
    pub ws: std::sync::Arc<purse_devserver::websocket::WsEndpoint>,
}

impl std::ops::Deref for WsTestApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl TestApp {
    /// Like [`TestApp::spawn_serving`], adjusting functions' environments too (applied after the
    /// webhook URLs).
    pub async fn spawn_serving_with(
        adjust: impl Fn(&purse_local::template::FunctionSpec, purse::config::Env) -> purse::config::Env,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let webhook = format!("{base}/webhooks/revio");
        let kyc_webhook = format!("{base}/webhooks/kyc");
        let mut app = Self::spawn_with(move |f, mut env| {
            if f.environment.contains_key("REVIO_WEBHOOK_URL") {
                env = env.with("REVIO_WEBHOOK_URL", webhook.clone());
            }
            if f.environment.contains_key("KYC_WEBHOOK_URL") {
                env = env.with("KYC_WEBHOOK_URL", kyc_webhook.clone());
            }
            adjust(f, env)
        })
        .await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let router = app.router.clone();
        let mut shutdown = stop_rx.clone();
        app.tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = shutdown.wait_for(|s| *s).await;
            };
            purse_devserver::gateway::serve(listener, router, stopped, std::time::Duration::from_secs(1)).await;
        }));
        let region = app.aws.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
        for consumer in &app.router.consumers {
            // With the function's own credentials: Lambda's event source mapping polls with the
            // function's role.
            let poller = purse_devserver::sqs::Poller {
                consumer: consumer.clone(),
                client: aws_sdk_sqs::Client::new(&consumer.aws),
                region: region.clone(),
            };
            app.tasks.push(tokio::spawn(poller.run(stop_rx.clone())));
        }
        app.base_url = Some(base);
        app.stop = Some(stop_tx);
        app
    }

    /// Like [`TestApp::spawn_serving`], and also serves the WebSocket API on another local
    /// port with the same router, as `make dev` does: every function that declares
    /// `PURSE_WS_CALLBACK_URL` pushes to it and `PURSE_WS_URL` names it.
    pub async fn spawn_serving_ws() -> WsTestApp {
        Self::ws_app(true).await
    }

    /// The WebSocket API alone, without the HTTP server and without queue pollers: for a test
    /// that feeds functions their events itself and must see what each one did.
    pub async fn spawn_ws_only() -> WsTestApp {
        Self::ws_app(false).await
    }

    async fn ws_app(serving: bool) -> WsTestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ws_callback_url = format!("http://{}", listener.local_addr().expect("addr"));
        let local = provision::local_ws_env(&ws_callback_url);
        let ws_url = local[provision::WS_URL_VAR].clone();
        let adjust = move |f: &purse_local::template::FunctionSpec, mut env: purse::config::Env| {
            for (name, value) in &local {
                if f.environment.contains_key(name) {
                    env = env.with(name, value.clone());
                }
            }
            env
        };
        let mut app = if serving { Self::spawn_serving_with(adjust).await } else { Self::spawn_with(adjust).await };
        let stage = app.stack.parameters.get("Stage").cloned().unwrap_or_else(|| "local".into());
        let ws = std::sync::Arc::new(purse_devserver::websocket::WsEndpoint::new(app.router.clone(), &stage));
        let shutdown = app.stop.as_ref().map(tokio::sync::watch::Sender::subscribe);
        let endpoint = ws.clone();
        app.tasks.push(tokio::spawn(async move {
            // Served until the app stops (or, without a server, until the test's runtime ends).
            let stopped = async move {
                match shutdown {
                    Some(mut stop) => {
                        let _ = stop.wait_for(|s| *s).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            purse_devserver::websocket::serve(listener, endpoint, stopped, std::time::Duration::from_secs(1)).await;
        }));
        WsTestApp { app, ws_url, ws_callback_url, ws }
    }
}

impl WsTestApp {
    /// Opens a WebSocket as a signed-in user: a ticket from `POST /v1/ws-tickets`, then its URL.
    ///
    /// # Panics
    /// When no ticket is issued or the handshake is refused.
    pub async fn ws_connect(&self, token: &str) -> WsClient {
        let r = self.post_retrying("/v1/ws-tickets", &serde_json::json!({}), Some(token), &[]).await;
        assert_eq!(r.status, 201, "ws ticket: {}", r.text);
        let url = r.json["url"].as_str().expect("the ticket's url");
        WsClient::connect(url).await.unwrap_or_else(|status| panic!("the handshake was refused: {status}"))
    }

    /// A Management API client of this endpoint, as the functions hold it.
    pub fn pusher(&self) -> purse::ws::Pusher {
        let env = purse::config::Env::default().with(provision::WS_CALLBACK_URL_VAR, self.ws_callback_url.clone());
        purse::ws::Pusher::from_env(&env, &self.aws).expect("pusher")
    }
}

/// A WebSocket client for tests. Frames are JSON; one that is not is returned as a JSON string.
/// Frames skipped by [`WsClient::next_of_type`] are kept and returned first by
/// [`WsClient::next`].
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    pending: std::collections::VecDeque<Value>,
    closed: Option<(u16, String)>,
}

impl WsClient {
    /// Opens a WebSocket to `url` (`ws://.../?ticket=...`).
    ///
    /// # Errors
    /// The HTTP status of a refused handshake (e.g. 401 from `$connect`).
    ///
    /// # Panics
    /// When the server cannot be reached or does not answer with a status.
    pub async fn connect(url: &str) -> Result<WsClient, u16> {
        match tokio_tungstenite::connect_async(url).await {
            Ok((stream, _)) => Ok(WsClient { stream, pending: Default::default(), closed: None }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("cannot open a WebSocket to {url}: {e}"),
        }
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        use futures::SinkExt;
        self.stream.send(tokio_tungstenite::tungstenite::Message::text(text)).await.expect("send a frame");
    }

    /// The next frame (a skipped one first), or `None` when none arrives within `timeout` or the
    /// server closed the connection (see [`WsClient::closed`]).
    pub async fn next(&mut self, timeout: std::time::Duration) -> Option<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Some(v);
        }
        self.read(tokio::time::Instant::now() + timeout).await
    }

    async fn read(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            if self.closed.is_some() {
                return None;
            }
            let frame = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str();
                    return Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())));
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = Some(frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string())));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => self.closed = Some((1006, String::new())),
            }
        }
    }

    /// The next frame whose `type` is `kind`, skipping (and keeping) others.
    ///
    /// # Panics
    /// When none arrives within `timeout`; the message lists what did arrive.
    pub async fn next_of_type(&mut self, kind: &str, timeout: std::time::Duration) -> Value {
        if let Some(i) = self.pending.iter().position(|v| v["type"] == kind) {
            return self.pending.remove(i).expect("present");
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while let Some(v) = self.read(deadline).await {
            if v["type"] == kind {
                return v;
            }
            self.pending.push_back(v);
        }
        panic!(
            "no {kind:?} frame within {timeout:?}; received {:?}{}",
            self.pending,
            self.closed.as_ref().map(|(c, r)| format!("; closed {c} {r:?}")).unwrap_or_default()
        );
    }

    /// Frames received but skipped so far.
    pub fn skipped(&self) -> Vec<Value> {
        self.pending.iter().cloned().collect()
    }

    /// Asserts that no new frame arrives for `duration` (skipped ones do not count).
    ///
    /// # Panics
    /// When one does.
    pub async fn expect_silence(&mut self, duration: std::time::Duration) {
        if let Some(v) = self.read(tokio::time::Instant::now() + duration).await {
            panic!("expected no frame for {duration:?}, got {v}");
        }
    }

    /// The close code and reason, once the server has closed the connection.
    pub fn closed(&self) -> Option<(u16, String)> {
        self.closed.clone()
    }

    /// Waits up to `timeout` for the server to close the connection; its code and reason.
    pub async fn wait_closed(&mut self, timeout: std::time::Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.closed.is_none() {
            match self.read(deadline).await {
                Some(v) => self.pending.push_back(v),
                None if self.closed.is_none() => return None,
                None => {}
            }
        }
        self.closed.clone()
    }

    /// Closes the connection normally (the server's `$disconnect` follows).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.stream.close(None)).await;
    }
}

// ------------------------------------------------------------------------------------------
// The telephony provider's sandbox (tools/sandbox/telephony.py)
// ------------------------------------------------------------------------------------------

/// The telephony sandbox's control API, for phone calls: it dials in as a caller would, signs
/// requests as the provider does, and repeats a call's status callback.
#[derive(Clone)]
pub struct TelephonySandbox {
    pub base: String,
    http: reqwest::Client,
}

impl Default for TelephonySandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl TelephonySandbox {
    /// The sandbox `tools/stack/with-stack.sh` started (`PURSE_TELEPHONY_URL`).
    pub fn new() -> Self {
        let base = std::env::var("PURSE_TELEPHONY_URL")
            .expect("PURSE_TELEPHONY_URL is not set: run the tests with `make test` (tools/stack/with-stack.sh)");
        Self { base, http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("telephony sandbox reachable");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "telephony sandbox {path}: {status} {v}");
        v
    }

    /// Places an inbound call (`POST /_sandbox/calls`); with `"wait": true` in `call` it
    /// answers once the call is over and its status callback delivered. The call record.
    pub async fn call(&self, call: Value) -> Value {
        self.post("/_sandbox/calls", &call).await
    }

    /// One call's record.
    pub async fn record(&self, call_sid: &str) -> Value {
        let r = self.http.get(format!("{}/_sandbox/calls/{call_sid}", self.base)).send().await.expect("reachable");
        r.json().await.expect("json")
    }

    /// Repeats a call's status callback, byte for byte; the HTTP statuses we answered.
    pub async fn repeat_status_callback(&self, call_sid: &str, times: u32) -> Vec<Value> {
        let v = self
            .post(
                &format!("/_sandbox/calls/{call_sid}/status"),
                &serde_json::json!({"duplicate": true, "times": times}),
            )
            .await;
        v["results"].as_array().cloned().unwrap_or_default()
    }

    /// `X-Twilio-Signature` of a request to `url` with `params`, keyed with `auth_token` (the
    /// sandbox's own token when `None`).
    pub async fn sign(&self, url: &str, params: &[(&str, &str)], auth_token: Option<&str>) -> String {
        let params: serde_json::Map<String, Value> =
            params.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect();
        let mut body = serde_json::json!({"url": url, "params": params});
        if let Some(token) = auth_token {
            body["auth_token"] = Value::String(token.to_owned());
        }
        self.post("/_sandbox/sign", &body).await["signature"].as_str().expect("signature").to_owned()
    }
}

impl TestApp {
    /// POSTs a form to a telephony webhook path (`/webhooks/telephony/...`, query included) as
    /// the provider does, with `signature` as `X-Twilio-Signature` (none when `None`). The
    /// request's `Host` is the served address, as the provider's would be.
    pub async fn post_telephony(
        &self,
        path_and_query: &str,
        params: &[(&str, &str)],
        signature: Option<&str>,
    ) -> TestResponse {
        let base = self.base_url.as_deref().expect("spawn_serving: the provider needs a URL");
        let host = base.trim_start_matches("http://").to_owned();
        let body: String =
            params.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&");
        let mut headers = vec![("host", host.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        if let Some(s) = signature {
            headers.push(("x-twilio-signature", s));
        }
        self.send("POST", path_and_query, &headers, body.as_bytes()).await
    }
}

/// `application/x-www-form-urlencoded` encoding of one key or value.
pub fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
