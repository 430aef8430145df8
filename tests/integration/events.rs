//! The sample events in `events/` (for `sam local invoke` and `cargo lambda invoke`) stay true:
//! each file names a function of the template, has the shape Lambda delivers, and — fed to its
//! function exactly as Lambda would deliver it, placeholders filled with real values — gets the
//! answer `events/README.md` promises.
//!
//! The tests that invoke functions need the emulator and the Revio sandbox
//! (`tools/stack/with-stack.sh`).

use purse::runtime::{ApiGatewayWebsocketProxyRequest, SqsEvent};
use purse_local::apigw::match_route;
use purse_local::template::{project_root, FunctionSpec, Template};
use purse_tests::{eventually, TestApp, TestResponse, WsClient, WsTestApp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every event file, each fed to its function by one of the tests below.
const EXERCISED: &[&str] = &[
    // the_account_events_sign_up_sign_in_refresh_and_sign_out
    "http_auth_register.json",
    "http_auth_register.weak_password.json",
    "http_auth_register.with_referral_code.json",
    "http_auth_login.json",
    "http_auth_login.wrong_password.json",
    "http_auth_refresh.json",
    "http_auth_logout.json",
    "http_me_get.json",
    "http_me_get.no_token.json",
    "http_wallet_get.json",
    // the_money_events_start_a_deposit_that_the_webhook_and_the_queue_settle
    "http_deposits_create.json",
    "http_deposits_create.no_idempotency_key.json",
    "http_transactions_list.json",
    "http_transactions_list.filtered.json",
    "http_transactions_get.json",
    "http_admin_transaction_webhooks.json",
    "webhook_revio.json",
    "webhook_revio.unsigned.json",
    "sqs_revio_events.json",
    // the_queue_consumer_acknowledges_unknown_purchases_and_reports_only_unreadable_messages
    "sqs_revio_events.partial_failure.json",
    // the_scheduled_event_runs_a_reconciliation_pass
    "schedule_reconcile_deposits.json",
    // the_case_events_list_an_open_case_and_resolve_it_by_refund
    "http_admin_cases_list.json",
    "http_admin_cases_resolve.json",
    // the_queue_event_counts_the_dead_letter_queues_for_an_administrator_only
    "http_admin_queues.json",
    // the_kyc_events_submit_a_pan_whose_result_the_webhook_and_the_queue_apply
    "http_kyc_get.json",
    "http_kyc_submit.json",
    "http_kyc_submit.invalid_pan.json",
    "webhook_kyc.json",
    "webhook_kyc.unsigned.json",
    "sqs_kyc_events.json",
    // the_kyc_review_events_hand_a_check_that_never_ends_to_an_administrator_who_approves_it
    "sqs_kyc_events.follow_up.json",
    "sqs_kyc_events.last_follow_up.json",
    "http_admin_kyc_reviews.json",
    "http_admin_kyc_resolve.json",
    // the_kyc_queue_consumer_acknowledges_unknown_attempts_and_reports_only_unreadable_messages
    "sqs_kyc_events.partial_failure.json",
    // the_referral_events_pay_the_referrer_once_the_referees_first_deposit_and_kyc_are_done
    "http_referrals_get.json",
    "http_referrals_get.invalid_limit.json",
    "sqs_referral_rewards.json",
    "sqs_referral_rewards.partial_failure.json",
    // the_withdrawal_events_add_a_bank_account_withdraw_and_the_payout_worker_and_webhook_complete_it
    "http_bank_accounts_create.json",
    "http_bank_accounts_list.json",
    "http_bank_accounts_delete.json",
    "http_withdrawals_create.json",
    "http_withdrawals_create.no_idempotency_key.json",
    "http_withdrawals_cancel.json",
    "sqs_payouts.json",
    "webhook_revio.payout.json",
    "sqs_revio_events.payout.json",
    // the_payout_queue_consumer_acknowledges_unknown_withdrawals_and_reports_only_unreadable_messages
    "sqs_payouts.partial_failure.json",
    // the_admin_events_credit_a_user_list_the_adjustment_and_look_the_user_up
    "http_admin_adjustments_create.json",
    "http_admin_adjustments_list.json",
    "http_admin_users_get.json",
    // the_game_events_pay_a_reward_and_charge_a_fee_once_per_game_session
    "http_games_fees.json",
    "http_games_rewards.json",
    // the_websocket_events_connect_with_a_ticket_answer_pings_and_unknown_actions_and_forget_a_connection
    "http_ws_tickets.json",
    "ws_connect.json",
    "ws_connect.no_ticket.json",
    "ws_default.json",
    "ws_ping.json",
    "ws_disconnect.json",
    // the_user_event_finds_a_callee_by_id_and_by_referral_code_with_their_price
    "http_users_get.json",
    // the_call_events_place_answer_signal_bill_sweep_and_end_a_call
    "http_me_call_price.json",
    "ws_call_invite.json",
    "ws_signal.json",
    "ws_call_accept.json",
    "sqs_call_billing.json",
    "schedule_call_sweeper.json",
    "ws_call_end.json",
    "http_calls_list.json",
    "http_calls_list.invalid_limit.json",
    "http_calls_get.json",
    // the_call_events_decline_a_call_let_one_ring_out_and_end_one_whose_caller_disconnects
    "ws_call_reject.json",
    "sqs_call_billing.ring_timeout.json",
    "sqs_call_billing.partial_failure.json",
    // the_phone_call_events_place_a_call_the_provider_connects_with_its_pin_and_settles_from_the_talk_time
    "http_calls_phone.json",
    "webhook_telephony_voice.json",
    "webhook_telephony_voice.unsigned.json",
    "webhook_telephony_voice.pin.json",
    "webhook_telephony_voice.dial_action.json",
    "webhook_telephony_status.json",
];

/// The names of the event files in `events/` (everything but `README.md`), sorted.
fn event_files() -> Vec<String> {
    let dir = project_root().join("events");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name != "README.md")
        .collect();
    names.sort();
    names
}

/// The binary an event file is for: `<binary>.json` or `<binary>.<variant>.json`.
fn binary_of(file: &str) -> Option<&str> {
    let stem = file.strip_suffix(".json")?;
    Some(stem.split_once('.').map_or(stem, |(binary, _)| binary))
}

fn read_event(file: &str) -> String {
    let path = project_root().join("events").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `{{NAME}}` placeholders with values.
fn substitute(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_owned(), |text, (name, value)| text.replace(&format!("{{{{{name}}}}}"), value))
}

/// The event text with every placeholder filled; a placeholder left over fails the test.
fn fill(file: &str, values: &[(&str, &str)]) -> String {
    let text = substitute(&read_event(file), values);
    assert!(!text.contains("{{"), "{file}: a placeholder was left unfilled: {text}");
    text
}

/// The event text with every placeholder replaced by `placeholder-<name>`, for shape checks.
fn fill_with_dummies(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").map(|e| start + e).expect("placeholder is closed");
        out.push_str(&rest[..start]);
        out.push_str(&format!("placeholder-{}", rest[start + 2..end].to_lowercase()));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn function_for(template: &Template, file: &str) -> FunctionSpec {
    let binary = binary_of(file).unwrap_or_else(|| panic!("{file}: not an event file name"));
    template
        .functions()
        .expect("template functions")
        .into_iter()
        .find(|f| f.binary == binary)
        .unwrap_or_else(|| panic!("{file}: no function in template.yaml builds the binary {binary}"))
}

fn is_http(f: &FunctionSpec) -> bool {
    !f.http_routes.is_empty() || f.url_path.is_some()
}

/// Feeds an HTTP event file to its function, as the Lambda runtime would.
async fn invoke(app: &TestApp, file: &str, values: &[(&str, &str)]) -> TestResponse {
    let function = function_for(&app.template, file);
    let request = lambda_http::request::from_str(&fill(file, values)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let handler = app
        .router
        .http_function(&function.logical_id)
        .unwrap_or_else(|| panic!("{file}: {} is not an HTTP function", function.logical_id));
    TestResponse::from_response(handler.call_dyn(request).await)
}

/// Feeds an SQS event file to its consumer.
async fn invoke_sqs(app: &TestApp, file: &str, values: &[(&str, &str)]) -> purse::runtime::SqsBatchResponse {
    let function = function_for(&app.template, file);
    let event: SqsEvent = serde_json::from_str(&fill(file, values)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let queue = &function.sqs_sources.first().unwrap_or_else(|| panic!("{file}: not an SQS function")).queue_logical_id;
    let consumer = app.router.consumer(queue).unwrap_or_else(|| panic!("no consumer of {queue}"));
    assert_eq!(consumer.function, function.logical_id);
    consumer.handler.call_dyn(event).await
}

fn request_id_of(file: &str) -> Value {
    let event: Value = serde_json::from_str(&fill_with_dummies(&read_event(file))).unwrap();
    event["requestContext"]["requestId"].clone()
}

fn revio_url() -> String {
    std::env::var("PURSE_REVIO_URL").expect("PURSE_REVIO_URL is not set: run the tests under tools/stack/with-stack.sh")
}

/// POSTs to the Revio sandbox's control API and returns its JSON answer.
async fn sandbox(path: &str, body: Vec<u8>) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", revio_url()))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("Revio sandbox {path}: {e}"));
    assert!(response.status().is_success(), "Revio sandbox {path}: {}", response.status());
    response.json().await.expect("sandbox answers JSON")
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// A new account with the `admin` role, signed in: its id and access token.
async fn admin(app: &TestApp) -> (String, String) {
    let (email, password, profile) = app.register().await;
    let id = str_of(&profile["id"], "id").to_owned();
    let user_id = purse::domain::ids::UserId::parse(&id).unwrap();
    purse::store::users::grant_role(&app.table, &user_id, purse::domain::user::Role::Admin).await.unwrap();
    let login = app.post("/v1/auth/login", &json!({"email": email, "password": password}), None).await;
    (id, str_of(&login.json["access_token"], "access_token").to_owned())
}

fn kyc_url() -> String {
    std::env::var("PURSE_KYC_URL").expect("PURSE_KYC_URL is not set: run the tests under tools/stack/with-stack.sh")
}

/// POSTs JSON to the KYC sandbox's control API and returns its JSON answer.
async fn kyc_sandbox(path: &str, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", kyc_url()))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("KYC sandbox {path}: {e}"));
    assert!(response.status().is_success(), "KYC sandbox {path}: {}", response.status());
    response.json().await.expect("sandbox answers JSON")
}

/// A PAN of a person no other submission uses, with these four digits (they choose the KYC
/// sandbox's answer: `1111` pending, `3333` verified at once, `6666` never decided).
fn fresh_pan(digits: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut letter = || char::from(rng.gen_range(b'A'..=b'Z'));
    let (first, second, third, fifth, last) = (letter(), letter(), letter(), letter(), letter());
    format!("{first}{second}{third}P{fifth}{digits}{last}")
}

/// Submits KYC for the holder of `token` with `pan`, as the frontend would.
async fn submit_kyc(app: &TestApp, token: &str, pan: &str) -> TestResponse {
    let body = json!({"pan": pan, "full_name": "Grace Hopper", "date_of_birth": "1986-12-09", "consent": true});
    app.post("/v1/kyc", &body, Some(token)).await
}

/// The provider's reference of a KYC attempt, as recorded with it.
async fn kyc_reference(app: &TestApp, kyc_id: &str) -> String {
    let id = purse::domain::ids::KycId::parse(kyc_id).unwrap_or_else(|e| panic!("{kyc_id}: {e}"));
    purse::store::kyc::get(&app.table, &id)
        .await
        .expect("attempt readable")
        .expect("attempt recorded")
        .provider_reference
}

/// The outcome recorded on a webhook delivery.
async fn delivery_outcome(app: &TestApp, delivery_id: &str) -> Value {
    let key = purse::store::item::key(format!("WEBHOOK#{delivery_id}"), "WEBHOOK");
    let item = purse::store::get_item(&app.table, key).await.expect("delivery readable").expect("delivery logged");
    item.get("outcome").and_then(|o| o.as_s().ok()).map_or(Value::Null, |o| json!(o))
}

/// Feeds a WebSocket event file to the function of its route, as API Gateway would; its answer
/// (for `$connect`, 200 accepts the handshake; a message's refusal is an `error` frame pushed to
/// the connection, and the answer 200).
async fn invoke_ws(app: &TestApp, file: &str, values: &[(&str, &str)]) -> i64 {
    let function = function_for(&app.template, file);
    let event: ApiGatewayWebsocketProxyRequest =
        serde_json::from_str(&fill(file, values)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let route_key = event.request_context.route_key.clone().unwrap_or_else(|| panic!("{file}: routeKey"));
    let route = app.router.ws_route(&route_key).unwrap_or_else(|| panic!("{file}: no WebSocket route {route_key}"));
    assert_eq!(route.function, function.logical_id, "{file}: {route_key} is served by another function");
    route.handler.call_dyn(event).await.status_code
}

/// Feeds a scheduled event file to its function (which, like Lambda's, ignores the content):
/// the pass's report.
async fn run_scheduled(app: &TestApp, file: &str) -> Result<Value, String> {
    let event: Value = serde_json::from_str(&fill(file, &[])).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(event["detail-type"], "Scheduled Event", "{file}");
    let function = function_for(&app.template, file);
    let job =
        app.router.job(&function.logical_id).unwrap_or_else(|| panic!("{} is not scheduled", function.logical_id));
    job.handler.run_dyn().await
}

/// Opens a real WebSocket as the holder of `token`, with the ticket the fed
/// `http_ws_tickets.json` answers: the client and its connection's id.
async fn connect(app: &WsTestApp, token: &str) -> (WsClient, String) {
    let before = app.ws.connection_ids();
    let ticket = invoke(app, "http_ws_tickets.json", &[("ACCESS_TOKEN", token)]).await;
    assert_eq!(ticket.status, 201, "{}", ticket.text);
    let url = str_of(&ticket.json["url"], "url");
    let client = WsClient::connect(url).await.unwrap_or_else(|status| panic!("the handshake was refused: {status}"));
    let id = app.ws.connection_ids().into_iter().find(|id| !before.contains(id)).expect("the new connection");
    (client, id)
}

/// Credits `amount` to `user`'s wallet, as an administrator's adjustment.
async fn fund(app: &TestApp, user: &str, amount: &str) {
    let (_, admin_token) = admin(app).await;
    let body = json!({"user_id": user, "direction": "credit", "amount": amount, "reason": "Funds for a test call"});
    let key = ulid::Ulid::new().to_string();
    let made = app.post_with("/v1/admin/adjustments", &body, Some(&admin_token), &[("idempotency-key", &key)]).await;
    assert_eq!(made.status, 201, "{}", made.text);
}

/// How long a pushed frame may take to arrive.
const FRAME_WAIT: Duration = Duration::from_secs(15);

/// The user a WebSocket connection is recorded under, if any.
async fn connection_user(app: &TestApp, connection_id: &str) -> Option<String> {
    purse::store::calls::connection_user(&app.table, connection_id).await.expect("readable").map(|u| u.to_string())
}

/// Feeds `ws_call_invite.json` with `values`: the new call's id, once the caller's socket heard it
/// ring and the callee's was told of it.
async fn ring(app: &TestApp, caller: &mut WsClient, callee: &mut WsClient, values: &[(&str, &str)]) -> String {
    assert_eq!(invoke_ws(app, "ws_call_invite.json", values).await, 200);
    let ringing = caller.next_of_type("call.ringing", FRAME_WAIT).await;
    let call_id = str_of(&ringing["call_id"], "call_id").to_owned();
    assert_eq!(callee.next_of_type("call.incoming", FRAME_WAIT).await["call_id"], call_id.as_str());
    call_id
}

/// Asserts that `frame` carries each field of `expected` with its value (frames may carry more).
#[track_caller]
fn assert_fields(frame: &Value, expected: Value) {
    for (name, value) in expected.as_object().expect("an object of fields") {
        assert_eq!(&frame[name], value, "{name} in {frame}");
    }
}

/// Sleeps until `epoch_ms` (milliseconds since the epoch), if it is still ahead.
async fn sleep_until(epoch_ms: i64) {
    let ahead = epoch_ms - chrono::Utc::now().timestamp_millis();
    if let Ok(ms) = u64::try_from(ahead) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

// ------------------------------------------------------------------------- shape, no emulator

#[test]
fn every_function_has_a_sample_event_and_every_sample_event_names_a_function() {
    let files = event_files();
    for binary in purse_local::registry::BINARIES {
        assert!(files.iter().any(|f| f == &format!("{binary}.json")), "events/{binary}.json is missing");
    }
    for file in &files {
        let binary = binary_of(file)
            .unwrap_or_else(|| panic!("events/{file}: name it <binary>.json or <binary>.<variant>.json"));
        assert!(purse_local::registry::BINARIES.contains(&binary), "events/{file}: no function is built as {binary}");
    }
    let mut exercised: Vec<String> = EXERCISED.iter().map(|s| (*s).to_owned()).collect();
    exercised.sort();
    assert_eq!(
        files, exercised,
        "every file in events/ must be fed to its function by a test in tests/integration/events.rs"
    );
}

#[test]
fn every_http_event_is_a_payload_2_0_event_for_its_functions_route() {
    let template = Template::project().unwrap();
    for file in event_files() {
        let function = function_for(&template, &file);
        if !is_http(&function) {
            continue;
        }
        let text = fill_with_dummies(&read_event(&file));
        let event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let context = &event["requestContext"];
        assert_eq!(event["version"], "2.0", "{file}");
        assert_eq!(event["isBase64Encoded"], false, "{file}");
        assert_eq!(event["routeKey"], context["routeKey"], "{file}");
        assert_eq!(event["rawPath"], context["http"]["path"], "{file}");
        assert!(context["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{file}: requestContext.requestId");
        assert!(context["timeEpoch"].is_i64(), "{file}: requestContext.timeEpoch");
        let headers = event["headers"].as_object().unwrap_or_else(|| panic!("{file}: headers"));
        for name in headers.keys() {
            assert_eq!(name, &name.to_lowercase(), "{file}: API Gateway sends header names in lower case");
        }
        if event.get("body").is_some() {
            // The telephony provider posts forms, as Twilio does; everyone else JSON.
            let form = function.binary.starts_with("webhook_telephony_");
            assert_eq!(
                headers.get("content-type").and_then(Value::as_str),
                Some(if form { "application/x-www-form-urlencoded" } else { "application/json" }),
                "{file}: a body is JSON (a form from the telephony provider)"
            );
        }
        let method = str_of(&context["http"]["method"], "requestContext.http.method");
        let route_key = str_of(&event["routeKey"], "routeKey");
        let raw_path = str_of(&event["rawPath"], "rawPath");

        if function.url_path.is_some() {
            assert_eq!(route_key, "$default", "{file}: a Function URL event");
            assert_eq!(context["stage"], "$default", "{file}");
            assert_eq!(method, "POST", "{file}");
            // Revio signs with X-Signature; the KYC provider per Standard Webhooks; the telephony
            // provider with X-Twilio-Signature.
            let signature = if function.binary == "webhook_kyc" {
                for name in ["webhook-id", "webhook-timestamp"] {
                    assert!(headers.contains_key(name), "{file}: {name} header");
                }
                "webhook-signature"
            } else if function.binary.starts_with("webhook_telephony_") {
                "x-twilio-signature"
            } else {
                "x-signature"
            };
            let signed = headers.contains_key(signature);
            assert_eq!(signed, !file.contains(".unsigned."), "{file}: {signature} header");
        } else {
            let (route_method, route_path) =
                function.http_routes.iter().find(|(m, p)| format!("{m} {p}") == route_key).unwrap_or_else(|| {
                    panic!(
                        "{file}: routeKey {route_key} is not a route of {} ({:?})",
                        function.logical_id, function.http_routes
                    )
                });
            assert_eq!(method, route_method, "{file}");
            let stage = str_of(&context["stage"], "requestContext.stage");
            // With a named stage, API Gateway puts it in front of the path.
            let path = if stage == "$default" {
                raw_path
            } else {
                raw_path.strip_prefix(&format!("/{stage}")).unwrap_or_else(|| panic!("{file}: rawPath lacks /{stage}"))
            };
            let params =
                match_route(route_path, path).unwrap_or_else(|| panic!("{file}: {path} does not match {route_path}"));
            let sent: BTreeMap<String, String> = event["pathParameters"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                .unwrap_or_default();
            assert_eq!(sent, params, "{file}: pathParameters");
            let raw_query = str_of(&event["rawQueryString"], "rawQueryString");
            let query: BTreeMap<String, String> = raw_query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .unwrap_or((p.to_owned(), String::new()))
                })
                .collect();
            let sent: BTreeMap<String, String> = event["queryStringParameters"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                .unwrap_or_default();
            assert_eq!(sent, query, "{file}: queryStringParameters and rawQueryString agree");
            let protected = !route_path.starts_with("/v1/auth/");
            let authorization = headers.get("authorization").and_then(Value::as_str);
            if route_path.starts_with("/v1/games/") {
                assert_eq!(
                    authorization,
                    Some("Basic placeholder-service_credentials"),
                    "{file}: a game service's credential, Authorization: Basic {{{{SERVICE_CREDENTIALS}}}}"
                );
            } else if protected && !file.contains(".no_token.") {
                assert_eq!(
                    authorization,
                    Some("Bearer placeholder-access_token"),
                    "{file}: Authorization: Bearer {{{{ACCESS_TOKEN}}}}"
                );
            } else {
                assert_eq!(authorization, None, "{file}: no Authorization header");
            }
            if route_key == "POST /v1/deposits" || route_key == "POST /v1/withdrawals" {
                assert_eq!(
                    headers.contains_key("idempotency-key"),
                    !file.contains(".no_idempotency_key."),
                    "{file}: idempotency-key"
                );
            }
        }
        let request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("{file}: lambda_http cannot parse it: {e}"));
        assert_eq!(request.method().as_str(), method, "{file}");
    }
}

#[test]
fn the_queue_and_schedule_events_have_the_shape_lambda_delivers() {
    let template = Template::project().unwrap();
    for file in event_files() {
        let function = function_for(&template, &file);
        // Identifiers the queue messages are parsed with must be well-formed.
        let ids = [
            ("KYC_ID", purse::domain::ids::KycId::generate().to_string()),
            ("REFEREE_ID", purse::domain::ids::UserId::generate().to_string()),
            ("TRANSACTION_ID", purse::domain::ids::TransactionId::generate().to_string()),
        ];
        let ids: Vec<(&str, &str)> = ids.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let text = fill_with_dummies(&substitute(&read_event(&file), &ids));
        if !function.sqs_sources.is_empty() {
            let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(!event.records.is_empty(), "{file}: Records");
            for record in &event.records {
                assert!(record.message_id.as_deref().is_some_and(|id| !id.is_empty()), "{file}: messageId");
                assert!(record.receipt_handle.as_deref().is_some_and(|h| !h.is_empty()), "{file}: receiptHandle");
                assert_eq!(record.event_source.as_deref(), Some("aws:sqs"), "{file}");
                let arn = record.event_source_arn.as_deref().unwrap_or_default();
                let region = record.aws_region.as_deref().unwrap_or_default();
                assert!(
                    arn.starts_with(&format!("arn:aws:sqs:{region}:")) && !region.is_empty(),
                    "{file}: eventSourceARN {arn} in awsRegion {region}"
                );
                assert!(
                    record.attributes.get("ApproximateReceiveCount").is_some_and(|n| n.parse::<u32>().is_ok()),
                    "{file}: ApproximateReceiveCount"
                );
            }
            // A partial failure's first message is the unreadable one; every other is what the
            // queue's senders send.
            let readable = if file.contains(".partial_failure.") { 1 } else { 0 };
            for record in event.records.iter().skip(readable) {
                let body = record.body.as_deref().unwrap_or_default();
                match function.binary.as_str() {
                    "sqs_revio_events" => {
                        let queued: purse::service::webhooks::QueuedEvent = serde_json::from_str(body)
                            .unwrap_or_else(|e| panic!("{file}: the body is not what the webhook queues: {e}"));
                        // A purchase event names the purchase, a payout event the payout.
                        if file.contains(".payout.") {
                            assert_eq!(queued.event_type, "payout.paid", "{file}");
                            assert!(queued.payout_id.is_some() && queued.purchase_id.is_empty(), "{file}");
                        } else {
                            assert_eq!(queued.event_type, "purchase.paid", "{file}");
                            assert!(queued.payout_id.is_none() && !queued.purchase_id.is_empty(), "{file}");
                        }
                    }
                    "sqs_payouts" => {
                        serde_json::from_str::<purse::service::withdrawals::PayoutMessage>(body)
                            .unwrap_or_else(|e| panic!("{file}: the body is not a payout message: {e}"));
                    }
                    "sqs_kyc_events" => {
                        serde_json::from_str::<purse::service::kyc::KycMessage>(body)
                            .unwrap_or_else(|e| panic!("{file}: the body is not a KYC message: {e}"));
                    }
                    "sqs_referral_rewards" => {
                        serde_json::from_str::<purse::service::referrals::RewardEvent>(body)
                            .unwrap_or_else(|e| panic!("{file}: the body is not a reward event: {e}"));
                    }
                    "sqs_call_billing" => {
                        serde_json::from_str::<purse::service::calls::BillingMessage>(body)
                            .unwrap_or_else(|e| panic!("{file}: the body is not a billing message: {e}"));
                    }
                    other => panic!("{file}: teach this test what {other}'s messages look like"),
                }
            }
        } else if !function.schedules.is_empty() {
            let event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(event["detail-type"], "Scheduled Event", "{file}");
            assert_eq!(event["source"], "aws.events", "{file}");
            assert!(
                event["resources"][0].as_str().is_some_and(|r| r.starts_with("arn:aws:events:")),
                "{file}: resources"
            );
            assert!(
                event["time"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
                "{file}: time"
            );
        } else {
            // WebSocket route events: every_websocket_event_is_an_api_gateway_websocket_event_for_its_functions_route.
            assert!(
                is_http(&function) || !function.ws_routes.is_empty(),
                "{file}: {} has no trigger this test knows",
                function.logical_id
            );
        }
    }
}

#[test]
fn every_websocket_event_is_an_api_gateway_websocket_event_for_its_functions_route() {
    let template = Template::project().unwrap();
    let functions = template.functions().unwrap();
    let route_keys: Vec<&str> = functions.iter().flat_map(|f| f.ws_routes.iter().map(String::as_str)).collect();
    for file in event_files() {
        let function = function_for(&template, &file);
        if function.ws_routes.is_empty() {
            continue;
        }
        let text = fill_with_dummies(&read_event(&file));
        let event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let context = &event["requestContext"];
        let route_key = str_of(&context["routeKey"], "requestContext.routeKey");
        assert!(
            function.ws_routes.iter().any(|r| r == route_key),
            "{file}: routeKey {route_key} is not a route of {} ({:?})",
            function.logical_id,
            function.ws_routes
        );
        assert_eq!(event["isBase64Encoded"], false, "{file}");
        assert_eq!(context["connectionId"], "placeholder-connection_id", "{file}: connectionId {{{{CONNECTION_ID}}}}");
        for field in ["requestId", "extendedRequestId", "apiId", "domainName", "stage", "requestTime"] {
            assert!(context[field].as_str().is_some_and(|v| !v.is_empty()), "{file}: requestContext.{field}");
        }
        assert_eq!(context["messageDirection"], "IN", "{file}");
        assert!(context["connectedAt"].is_i64() && context["requestTimeEpoch"].is_i64(), "{file}: epochs");
        let event_type = match route_key {
            "$connect" => "CONNECT",
            "$disconnect" => "DISCONNECT",
            _ => "MESSAGE",
        };
        assert_eq!(context["eventType"], event_type, "{file}");
        match event_type {
            "MESSAGE" => {
                assert!(context["messageId"].as_str().is_some_and(|v| !v.is_empty()), "{file}: messageId");
                // API Gateway routes a frame by its `action` ($request.body.action); one that
                // names no route goes to $default.
                let body = str_of(&event["body"], "body");
                serde_json::from_str::<serde_json::Map<String, Value>>(body)
                    .unwrap_or_else(|e| panic!("{file}: a client frame is one JSON object: {e}"));
                let selected = purse_local::wsapi::selection_key(body)
                    .filter(|key| !key.starts_with('$') && route_keys.contains(&key.as_str()))
                    .unwrap_or_else(|| purse_local::wsapi::DEFAULT.to_owned());
                assert_eq!(selected, route_key, "{file}: the frame's action selects another route");
            }
            "CONNECT" => {
                assert!(event["headers"].is_object() && event["multiValueHeaders"].is_object(), "{file}: headers");
                let ticket = event["queryStringParameters"]["ticket"].as_str();
                assert_eq!(ticket.is_none(), file.contains(".no_ticket."), "{file}: ?ticket={{{{TICKET}}}}");
                if let Some(ticket) = ticket {
                    assert_eq!(ticket, "placeholder-ticket", "{file}");
                    assert_eq!(event["multiValueQueryStringParameters"]["ticket"], json!([ticket]), "{file}");
                }
                assert!(event.get("body").is_none(), "{file}: a handshake has no body");
            }
            _ => {
                assert!(context["disconnectStatusCode"].is_u64(), "{file}: disconnectStatusCode");
                assert!(context["disconnectReason"].is_string(), "{file}: disconnectReason");
            }
        }
        let parsed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: the runtime cannot parse it: {e}"));
        let request = purse::runtime::WsRequest::from_event(&parsed);
        assert_eq!((request.route_key.as_str(), request.event_type.as_str()), (route_key, event_type), "{file}");
        assert_eq!(request.connection_id, "placeholder-connection_id", "{file}");
    }
}

// ------------------------------------------------------------------------- fed to the functions

#[tokio::test]
async fn the_account_events_sign_up_sign_in_refresh_and_sign_out() {
    let app = TestApp::spawn().await;

    let registered = invoke(&app, "http_auth_register.json", &[]).await;
    assert_eq!(registered.status, 201, "{}", registered.text);
    assert_eq!(registered.json["email"], "ada.lovelace@example.com");
    let referral_code = str_of(&registered.json["referral_code"], "referral_code").to_owned();

    let weak = invoke(&app, "http_auth_register.weak_password.json", &[]).await;
    assert_eq!((weak.status, weak.code()), (400, "weak_password"), "{}", weak.text);
    assert_eq!(weak.json["error"]["request_id"], request_id_of("http_auth_register.weak_password.json"));

    let referred =
        invoke(&app, "http_auth_register.with_referral_code.json", &[("REFERRAL_CODE", referral_code.as_str())]).await;
    assert_eq!(referred.status, 201, "{}", referred.text);
    assert_eq!(referred.json["email"], "charles.babbage@example.com");

    let login = invoke(&app, "http_auth_login.json", &[]).await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.json["token_type"], "Bearer");
    let access = str_of(&login.json["access_token"], "access_token").to_owned();
    let refresh = str_of(&login.json["refresh_token"], "refresh_token").to_owned();

    let wrong = invoke(&app, "http_auth_login.wrong_password.json", &[]).await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"), "{}", wrong.text);

    let me = invoke(&app, "http_me_get.json", &[("ACCESS_TOKEN", access.as_str())]).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["id"], registered.json["id"]);
    assert_eq!(me.json["email"], "ada.lovelace@example.com");

    let anonymous = invoke(&app, "http_me_get.no_token.json", &[]).await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"), "{}", anonymous.text);

    let wallet = invoke(&app, "http_wallet_get.json", &[("ACCESS_TOKEN", access.as_str())]).await;
    assert_eq!(wallet.status, 200, "{}", wallet.text);
    assert_eq!(wallet.json["currency"], "COIN");
    assert_eq!(wallet.json["balance"], "0.00");

    let rotated = invoke(&app, "http_auth_refresh.json", &[("REFRESH_TOKEN", refresh.as_str())]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let next = str_of(&rotated.json["refresh_token"], "refresh_token").to_owned();
    assert_ne!(next, refresh, "a refresh token is single use");

    let logout = invoke(&app, "http_auth_logout.json", &[("REFRESH_TOKEN", next.as_str())]).await;
    assert_eq!(logout.status, 204, "{}", logout.text);
    assert!(logout.text.is_empty());

    let after = invoke(&app, "http_auth_refresh.json", &[("REFRESH_TOKEN", next.as_str())]).await;
    assert_eq!((after.status, after.code()), (401, "session_revoked"), "{}", after.text);
}

#[tokio::test]
async fn the_money_events_start_a_deposit_that_the_webhook_and_the_queue_settle() {
    let app = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_user().await;
    let token = str_of(&tokens["access_token"], "access_token").to_owned();
    let auth = [("ACCESS_TOKEN", token.as_str())];

    // POST /v1/deposits: a PENDING deposit with Revio's checkout page, exactly once.
    let deposit = invoke(&app, "http_deposits_create.json", &auth).await;
    assert_eq!(deposit.status, 201, "{}", deposit.text);
    assert_eq!(deposit.json["type"], "DEPOSIT");
    assert_eq!(deposit.json["status"], "PENDING");
    assert_eq!(deposit.json["amount"], "25.00");
    assert_eq!(deposit.json["currency"], "COIN");
    assert_eq!(deposit.json["direction"], "credit");
    let id = str_of(&deposit.json["id"], "id").to_owned();
    let purchase = str_of(&deposit.json["reference"], "reference").to_owned();
    let checkout = str_of(&deposit.json["checkout_url"], "checkout_url");
    assert!(checkout.starts_with(&revio_url()) && checkout.contains(&purchase), "checkout_url {checkout}");

    let replay = invoke(&app, "http_deposits_create.json", &auth).await;
    assert_eq!(replay.status, 201, "{}", replay.text);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json["id"], deposit.json["id"], "a retry with the same key is the same deposit");

    let keyless = invoke(&app, "http_deposits_create.no_idempotency_key.json", &auth).await;
    assert_eq!((keyless.status, keyless.code()), (400, "idempotency_key_required"), "{}", keyless.text);

    // It shows up in the history, filtered or not.
    for file in ["http_transactions_list.json", "http_transactions_list.filtered.json"] {
        let page = invoke(&app, file, &auth).await;
        assert_eq!(page.status, 200, "{file}: {}", page.text);
        let items = page.json["items"].as_array().unwrap_or_else(|| panic!("{file}: items"));
        assert_eq!(items.iter().filter(|t| t["id"] == id.as_str()).count(), 1, "{file}: {}", page.text);
        assert!(page.json.get("next_cursor").is_some(), "{file}: next_cursor");
    }
    let pending = invoke(&app, "http_transactions_get.json", &[auth[0], ("TRANSACTION_ID", id.as_str())]).await;
    assert_eq!(pending.status, 200, "{}", pending.text);
    assert_eq!(pending.json["status"], "PENDING");
    let unknown = purse::domain::ids::TransactionId::generate().to_string();
    let missing = invoke(&app, "http_transactions_get.json", &[auth[0], ("TRANSACTION_ID", unknown.as_str())]).await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"), "{}", missing.text);

    // The person pays at Revio; Revio's webhook reaches the Function URL, signed.
    let paid = sandbox(&format!("/_sandbox/purchases/{purchase}/pay"), Vec::new()).await;
    assert_eq!(paid["status"], "paid");
    let ids = [("PURCHASE_ID", purchase.as_str()), ("TRANSACTION_ID", id.as_str())];
    let unsigned_event: Value = serde_json::from_str(&substitute(&read_event("webhook_revio.json"), &ids)).unwrap();
    let body = str_of(&unsigned_event["body"], "body").to_owned();
    let signed = sandbox(&format!("/_sandbox/purchases/{purchase}/sign"), body.into_bytes()).await;
    let signature = str_of(&signed["signature"], "signature").to_owned();
    let with_signature = [ids[0], ids[1], ("REVIO_SIGNATURE", signature.as_str())];

    let receipt = invoke(&app, "webhook_revio.json", &with_signature).await;
    assert_eq!(receipt.status, 200, "{}", receipt.text);
    assert_eq!(receipt.json["received"], true);
    assert_eq!(receipt.json["duplicate"], false);
    let delivery = str_of(&receipt.json["delivery_id"], "delivery_id").to_owned();
    assert!(delivery.starts_with("whd_"), "{delivery}");

    let again = invoke(&app, "webhook_revio.json", &with_signature).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["duplicate"], true, "the same event is queued once");

    let forged = invoke(&app, "webhook_revio.unsigned.json", &ids).await;
    assert_eq!((forged.status, forged.code()), (401, "invalid_signature"), "{}", forged.text);

    // The queue consumer confirms the purchase with Revio and credits the wallet.
    let batch = invoke_sqs(
        &app,
        "sqs_revio_events.json",
        &[("DELIVERY_ID", delivery.as_str()), ("PURCHASE_ID", purchase.as_str())],
    )
    .await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    let wallet = invoke(&app, "http_wallet_get.json", &auth).await;
    assert_eq!(wallet.status, 200, "{}", wallet.text);
    assert_eq!((wallet.json["balance"].as_str(), wallet.json["available"].as_str()), (Some("25.00"), Some("25.00")));
    let completed = invoke(&app, "http_transactions_get.json", &[auth[0], ("TRANSACTION_ID", id.as_str())]).await;
    assert_eq!(completed.json["status"], "COMPLETED", "{}", completed.text);
    assert!(completed.json["completed_at"].is_string());
    app.assert_ledger_balanced().await;

    // The webhook log is for administrators only.
    let refused =
        invoke(&app, "http_admin_transaction_webhooks.json", &[auth[0], ("TRANSACTION_ID", id.as_str())]).await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden"), "{}", refused.text);
    let (_, admin_token) = admin(&app).await;
    let log = invoke(
        &app,
        "http_admin_transaction_webhooks.json",
        &[("ACCESS_TOKEN", admin_token.as_str()), ("TRANSACTION_ID", id.as_str())],
    )
    .await;
    assert_eq!(log.status, 200, "{}", log.text);
    assert_eq!(log.json["transaction_id"], id.as_str());
    let deliveries = log.json["deliveries"].as_array().expect("deliveries");
    let outcome_of =
        |delivery_id: &str| deliveries.iter().find(|d| d["delivery_id"] == delivery_id).map(|d| d["outcome"].clone());
    assert_eq!(outcome_of(&delivery), Some(json!("APPLIED")), "{}", log.text);
    let mut outcomes: Vec<&str> = deliveries.iter().filter_map(|d| d["outcome"].as_str()).collect();
    outcomes.sort_unstable();
    // The forged delivery is logged, but unverified it names no transaction: not listed here.
    assert_eq!(outcomes, ["APPLIED", "DUPLICATE"], "{}", log.text);
}

#[tokio::test]
async fn the_queue_consumer_acknowledges_unknown_purchases_and_reports_only_unreadable_messages() {
    let app = TestApp::spawn().await;
    let delivery = format!("whd_{}", ulid::Ulid::new());
    let purchase = ulid::Ulid::new().to_string().to_lowercase();
    let values = [("DELIVERY_ID", delivery.as_str()), ("PURCHASE_ID", purchase.as_str())];

    // Revio answers 404 for the purchase: nothing to apply, nothing to retry.
    let batch = invoke_sqs(&app, "sqs_revio_events.json", &values).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));

    let file = "sqs_revio_events.partial_failure.json";
    let event: SqsEvent = serde_json::from_str(&fill(file, &values)).unwrap();
    let unreadable = event.records[0].message_id.clone().unwrap();
    let batch = invoke_sqs(&app, file, &values).await;
    let failed: Vec<&str> = batch.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [unreadable.as_str()], "only the unreadable message is redelivered");
}

#[tokio::test]
async fn the_scheduled_event_runs_a_reconciliation_pass() {
    let app = TestApp::spawn().await;
    let report = run_scheduled(&app, "schedule_reconcile_deposits.json").await.expect("a reconciliation pass runs");
    for counter in [
        "examined",
        "credited",
        "failed",
        "still_pending",
        "abandoned",
        "needs_review",
        "errors",
        "referral_events_relayed",
    ] {
        assert_eq!(report[counter], 0, "{counter} on a fresh stack: {report}");
    }
    for counter in ["checked", "queued", "settled", "pending", "unresolved"] {
        assert_eq!(report["withdrawals"][counter], 0, "withdrawals.{counter} on a fresh stack: {report}");
    }
}

#[tokio::test]
async fn the_case_events_list_an_open_case_and_resolve_it_by_refund() {
    let app = TestApp::spawn().await;
    let sandbox = purse_tests::Sandbox::new();
    // Money collected on our brand for a purchase no deposit of ours belongs to. Its webhooks
    // go to a port nobody listens on: the queued event below is what settles it.
    let made = sandbox.create_purchase(2500, "made-outside-purse", "http://127.0.0.1:9/webhooks/revio").await;
    let purchase = str_of(&made["id"], "id").to_owned();
    sandbox.pay(&purchase).await;
    let delivery = format!("whd_{}", ulid::Ulid::new());
    let batch = invoke_sqs(
        &app,
        "sqs_revio_events.json",
        &[("DELIVERY_ID", delivery.as_str()), ("PURCHASE_ID", purchase.as_str())],
    )
    .await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");

    // The open cases are for administrators only.
    let (_, tokens) = app.signed_in_user().await;
    let user_token = str_of(&tokens["access_token"], "access_token").to_owned();
    let refused = invoke(&app, "http_admin_cases_list.json", &[("ACCESS_TOKEN", user_token.as_str())]).await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden"), "{}", refused.text);
    let (admin_id, admin_token) = admin(&app).await;
    let auth = ("ACCESS_TOKEN", admin_token.as_str());
    let listing = invoke(&app, "http_admin_cases_list.json", &[auth]).await;
    assert_eq!(listing.status, 200, "{}", listing.text);
    let items = listing.json["items"].as_array().expect("items");
    let case =
        items.iter().find(|c| c["purchase_id"] == purchase.as_str()).unwrap_or_else(|| panic!("{}", listing.text));
    assert_eq!((case["kind"].as_str(), case["status"].as_str()), (Some("UNKNOWN_PURCHASE_PAID"), Some("OPEN")));
    assert_eq!(case["paid_amount"], "25.00");
    let case_id = str_of(&case["case_id"], "case_id").to_owned();

    // Resolved by refund: Revio refunds the payer, the case keeps who, how and why.
    let values = [auth, ("CASE_ID", case_id.as_str())];
    let resolved = invoke(&app, "http_admin_cases_resolve.json", &values).await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert_eq!(resolved.json["status"], "RESOLVED");
    let resolution = &resolved.json["resolution"];
    assert_eq!(resolution["action"], "refund");
    assert_eq!(resolution["reason"], "Purchase made outside Purse; refunding the payer");
    assert_eq!(resolution["resolved_by"], format!("admin:{admin_id}"));
    let at_revio: Value = reqwest::get(format!("{}/_sandbox/purchases/{purchase}", sandbox.base))
        .await
        .expect("sandbox reachable")
        .json()
        .await
        .expect("json");
    assert_eq!(at_revio["status"], "refunded");

    let again = invoke(&app, "http_admin_cases_resolve.json", &values).await;
    assert_eq!((again.status, again.code()), (409, "case_already_resolved"), "{}", again.text);
    let after = invoke(&app, "http_admin_cases_list.json", &[auth]).await;
    assert!(after.json["items"].as_array().expect("items").iter().all(|c| c["case_id"] != case_id.as_str()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_queue_event_counts_the_dead_letter_queues_for_an_administrator_only() {
    let app = TestApp::spawn().await;
    let (_, user) = app.user_token().await;
    let refused = invoke(&app, "http_admin_queues.json", &[("ACCESS_TOKEN", user.as_str())]).await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden"), "{}", refused.text);
    let (_, admin_token) = admin(&app).await;
    let listing = invoke(&app, "http_admin_queues.json", &[("ACCESS_TOKEN", admin_token.as_str())]).await;
    assert_eq!(listing.status, 200, "{}", listing.text);
    assert_eq!(listing.json["queues"].as_array().map(Vec::len), Some(5), "{}", listing.text);
    assert_eq!(listing.json["total"], 0, "a fresh stack parks nothing: {}", listing.text);
}

#[tokio::test]
async fn the_kyc_events_submit_a_pan_whose_result_the_webhook_and_the_queue_apply() {
    let app = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_user().await;
    let token = str_of(&tokens["access_token"], "access_token").to_owned();
    let auth = [("ACCESS_TOKEN", token.as_str())];

    let before = invoke(&app, "http_kyc_get.json", &auth).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(
        (before.json["status"].as_str(), before.json["can_submit"].as_bool()),
        (Some("NOT_STARTED"), Some(true))
    );

    let malformed = invoke(&app, "http_kyc_submit.invalid_pan.json", &auth).await;
    assert_eq!((malformed.status, malformed.code()), (400, "invalid_pan"), "{}", malformed.text);
    assert_eq!(malformed.json["error"]["request_id"], request_id_of("http_kyc_submit.invalid_pan.json"));

    // POST /v1/kyc: the sandbox takes ABCPV1111Q and decides it later.
    let submitted = invoke(&app, "http_kyc_submit.json", &auth).await;
    assert_eq!(submitted.status, 201, "{}", submitted.text);
    assert_eq!(submitted.json["status"], "PENDING");
    assert_eq!(submitted.json["pan_masked"], "ABCxxxxx1Q");
    assert_eq!(submitted.json["can_submit"], false);
    assert!(submitted.json["rejection_reason"].is_null(), "{}", submitted.text);
    assert!(submitted.json["updated_at"].is_string(), "{}", submitted.text);
    let kyc_id = str_of(&submitted.json["kyc_id"], "kyc_id").to_owned();
    assert!(kyc_id.starts_with("kyc_"), "{kyc_id}");

    let twice = invoke(&app, "http_kyc_submit.json", &auth).await;
    assert_eq!((twice.status, twice.code()), (409, "kyc_pending"), "{}", twice.text);
    let pending = invoke(&app, "http_kyc_get.json", &auth).await;
    assert_eq!(pending.status, 200, "{}", pending.text);
    assert_eq!(
        (pending.json["status"].as_str(), pending.json["kyc_id"].as_str()),
        (Some("PENDING"), Some(kyc_id.as_str()))
    );

    // The provider decides the check; its webhook, signed per Standard Webhooks with the local
    // stack's secret, reaches the Function URL.
    let reference = kyc_reference(&app, &kyc_id).await;
    let decided =
        kyc_sandbox(&format!("/_sandbox/requests/{reference}/complete"), &json!({"status": "verified"})).await;
    assert_eq!(decided["status"], "verified", "{decided}");
    let webhook_id = format!("msg_{}", ulid::Ulid::new());
    let now = chrono::Utc::now().timestamp();
    let timestamp = now.to_string();
    let ids = [
        ("KYC_ID", kyc_id.as_str()),
        ("KYC_REFERENCE", reference.as_str()),
        ("WEBHOOK_ID", webhook_id.as_str()),
        ("WEBHOOK_TIMESTAMP", timestamp.as_str()),
    ];
    let unsigned_event: Value = serde_json::from_str(&substitute(&read_event("webhook_kyc.json"), &ids)).unwrap();
    let body = str_of(&unsigned_event["body"], "body");
    let signature = standardwebhooks::Webhook::new(purse_local::provision::KYC_SANDBOX_WEBHOOK_SECRET)
        .expect("the sandbox secret is whsec_<base64>")
        .sign(&webhook_id, now, body.as_bytes())
        .expect("signed");
    let with_signature = [ids[0], ids[1], ids[2], ids[3], ("KYC_SIGNATURE", signature.as_str())];

    let receipt = invoke(&app, "webhook_kyc.json", &with_signature).await;
    assert_eq!(receipt.status, 200, "{}", receipt.text);
    assert_eq!((receipt.json["received"].as_bool(), receipt.json["duplicate"].as_bool()), (Some(true), Some(false)));
    let delivery = str_of(&receipt.json["delivery_id"], "delivery_id").to_owned();
    assert!(delivery.starts_with("whd_"), "{delivery}");

    let again = invoke(&app, "webhook_kyc.json", &with_signature).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["duplicate"], true, "the same webhook-id is queued once");

    let forged = invoke(&app, "webhook_kyc.unsigned.json", &ids).await;
    assert_eq!((forged.status, forged.code()), (401, "invalid_signature"), "{}", forged.text);

    // The queue consumer confirms the result with the provider's API and applies it.
    let batch = invoke_sqs(
        &app,
        "sqs_kyc_events.json",
        &[("DELIVERY_ID", delivery.as_str()), ("KYC_ID", kyc_id.as_str()), ("KYC_REFERENCE", reference.as_str())],
    )
    .await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    assert_eq!(delivery_outcome(&app, &delivery).await, "APPLIED");
    let verified = invoke(&app, "http_kyc_get.json", &auth).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.json["status"], "VERIFIED", "{}", verified.text);
    assert_eq!(
        (verified.json["kyc_id"].as_str(), verified.json["can_submit"].as_bool()),
        (Some(kyc_id.as_str()), Some(false))
    );

    // Verified once and for all, and the PAN is this account's.
    let done = invoke(&app, "http_kyc_submit.json", &auth).await;
    assert_eq!((done.status, done.code()), (409, "kyc_already_verified"), "{}", done.text);
    let (_, other) = app.signed_in_user().await;
    let other = str_of(&other["access_token"], "access_token").to_owned();
    let taken = invoke(&app, "http_kyc_submit.json", &[("ACCESS_TOKEN", other.as_str())]).await;
    assert_eq!((taken.status, taken.code()), (409, "pan_already_registered"), "{}", taken.text);
}

#[tokio::test]
async fn the_kyc_review_events_hand_a_check_that_never_ends_to_an_administrator_who_approves_it() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.user_token().await;
    // The sandbox never decides a PAN with the digits 6666.
    let pan = fresh_pan("6666");
    let submitted = submit_kyc(&app, &token, &pan).await;
    assert_eq!((submitted.status, submitted.json["status"].as_str()), (201, Some("PENDING")), "{}", submitted.text);
    let kyc_id = str_of(&submitted.json["kyc_id"], "kyc_id").to_owned();
    let values = [("KYC_ID", kyc_id.as_str())];

    // The first follow-up finds the check still pending: it asks again later, nobody is called.
    let batch = invoke_sqs(&app, "sqs_kyc_events.follow_up.json", &values).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));

    // The checks awaiting a person are for administrators only.
    let refused = invoke(&app, "http_admin_kyc_reviews.json", &[("ACCESS_TOKEN", token.as_str())]).await;
    assert_eq!((refused.status, refused.code()), (403, "forbidden"), "{}", refused.text);
    let (admin_id, admin_token) = admin(&app).await;
    let auth = ("ACCESS_TOKEN", admin_token.as_str());
    let reviews = |listing: &TestResponse| -> Vec<Value> {
        assert_eq!(listing.status, 200, "{}", listing.text);
        listing.json["reviews"].as_array().expect("reviews").clone()
    };
    let listing = invoke(&app, "http_admin_kyc_reviews.json", &[auth]).await;
    assert!(reviews(&listing).iter().all(|r| r["kyc_id"] != kyc_id.as_str()), "{}", listing.text);

    // The last follow-up gives up and hands the check to a person.
    let batch = invoke_sqs(&app, "sqs_kyc_events.last_follow_up.json", &values).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    let listing = invoke(&app, "http_admin_kyc_reviews.json", &[auth]).await;
    let listed = reviews(&listing);
    let review = listed
        .iter()
        .find(|r| r["kyc_id"] == kyc_id.as_str())
        .unwrap_or_else(|| panic!("not listed: {}", listing.text));
    assert_eq!((review["status"].as_str(), review["needs_review"].as_bool()), (Some("PENDING"), Some(true)));
    assert_eq!(review["user_id"], user_id.as_str());
    assert_eq!(review["pan_masked"], submitted.json["pan_masked"]);
    assert!(!listing.text.contains(&pan), "the PAN is shown masked only");

    // Approved by hand: who and why are kept on the attempt.
    let ids = [auth, ("KYC_ID", kyc_id.as_str())];
    let resolved = invoke(&app, "http_admin_kyc_resolve.json", &ids).await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert_eq!(
        (resolved.json["status"].as_str(), resolved.json["needs_review"].as_bool()),
        (Some("VERIFIED"), Some(false))
    );
    assert_eq!(resolved.json["resolved_by"], admin_id.as_str());
    assert_eq!(resolved.json["resolution_note"], "PAN card and photo checked on a video call (ticket 5120)");

    let again = invoke(&app, "http_admin_kyc_resolve.json", &ids).await;
    assert_eq!((again.status, again.code()), (409, "kyc_not_pending"), "{}", again.text);
    let unknown = purse::domain::ids::KycId::generate().to_string();
    let missing = invoke(&app, "http_admin_kyc_resolve.json", &[auth, ("KYC_ID", unknown.as_str())]).await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"), "{}", missing.text);
    let after = invoke(&app, "http_admin_kyc_reviews.json", &[auth]).await;
    assert!(reviews(&after).iter().all(|r| r["kyc_id"] != kyc_id.as_str()), "{}", after.text);
    let mine = invoke(&app, "http_kyc_get.json", &[("ACCESS_TOKEN", token.as_str())]).await;
    assert_eq!(mine.json["status"], "VERIFIED", "{}", mine.text);
}

#[tokio::test]
async fn the_kyc_queue_consumer_acknowledges_unknown_attempts_and_reports_only_unreadable_messages() {
    let app = TestApp::spawn().await;
    let delivery = format!("whd_{}", ulid::Ulid::new());
    let kyc_id = purse::domain::ids::KycId::generate().to_string();
    let values = [
        ("DELIVERY_ID", delivery.as_str()),
        ("KYC_ID", kyc_id.as_str()),
        ("KYC_REFERENCE", "kyc_req_0123456789abcdef"),
    ];

    // No attempt has this id: nothing to apply, nothing to retry.
    for file in ["sqs_kyc_events.json", "sqs_kyc_events.follow_up.json", "sqs_kyc_events.last_follow_up.json"] {
        let batch = invoke_sqs(&app, file, &values).await;
        assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}), "{file}");
    }

    let file = "sqs_kyc_events.partial_failure.json";
    let event: SqsEvent = serde_json::from_str(&fill(file, &values)).unwrap();
    let unreadable = event.records[0].message_id.clone().unwrap();
    let batch = invoke_sqs(&app, file, &values).await;
    let failed: Vec<&str> = batch.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [unreadable.as_str()], "only the unreadable message is redelivered");
}

#[tokio::test]
async fn the_referral_events_pay_the_referrer_once_the_referees_first_deposit_and_kyc_are_done() {
    let app = TestApp::spawn().await;
    let (referrer, referrer_tokens) = app.signed_in_user().await;
    let referrer_id = str_of(&referrer["id"], "id").to_owned();
    let code = str_of(&referrer["referral_code"], "referral_code").to_owned();
    let referrer_token = str_of(&referrer_tokens["access_token"], "access_token").to_owned();
    let referrer_auth = [("ACCESS_TOKEN", referrer_token.as_str())];

    // Charles signs up with the referrer's code.
    let file = "http_auth_register.with_referral_code.json";
    let signed_up = invoke(&app, file, &[("REFERRAL_CODE", code.as_str())]).await;
    assert_eq!(signed_up.status, 201, "{}", signed_up.text);
    let referee_id = str_of(&signed_up.json["id"], "id").to_owned();
    let event: Value = serde_json::from_str(&fill(file, &[("REFERRAL_CODE", code.as_str())])).unwrap();
    let credentials: Value = serde_json::from_str(str_of(&event["body"], "body")).unwrap();
    let login = app
        .post("/v1/auth/login", &json!({"email": credentials["email"], "password": credentials["password"]}), None)
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let referee_token = str_of(&login.json["access_token"], "access_token").to_owned();
    let referee = [("REFEREE_ID", referee_id.as_str())];

    // Nothing is owed yet, and nothing to anyone for a user nobody referred: acknowledged.
    for values in [referee, [("REFEREE_ID", referrer_id.as_str())]] {
        let batch = invoke_sqs(&app, "sqs_referral_rewards.json", &values).await;
        assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    }
    let page = invoke(&app, "http_referrals_get.json", &referrer_auth).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json["referral_code"], code.as_str());
    assert!(str_of(&page.json["share_url"], "share_url").ends_with(&code), "{}", page.text);
    assert_eq!((page.json["rewards_count"].as_i64(), page.json["rewards_earned"].as_str()), (Some(0), Some("0.00")));
    assert_eq!(
        (page.json["rewards_limit"].as_u64(), page.json["reward_per_referral"].as_str()),
        (Some(25), Some("50.00"))
    );
    assert!(page.json["next_cursor"].is_null(), "{}", page.text);
    let referees = page.json["referees"].as_array().expect("referees");
    assert_eq!(referees.len(), 1, "{}", page.text);
    assert_eq!(
        (referees[0]["status"].as_str(), referees[0]["first_deposit"].as_bool()),
        (Some("PENDING"), Some(false))
    );
    assert!(!page.text.contains("charles.babbage@example.com"), "a referee's e-mail is masked: {}", page.text);

    let refused = invoke(&app, "http_referrals_get.invalid_limit.json", &referrer_auth).await;
    assert_eq!((refused.status, refused.code()), (400, "invalid_limit"), "{}", refused.text);

    // The referrer verifies (a reward needs both people verified, each with their own PAN).
    let verified = submit_kyc(&app, &referrer_token, &fresh_pan("3333")).await;
    assert_eq!(verified.json["status"], "VERIFIED", "{}", verified.text);

    // The referee's first deposit completes and their KYC verifies (at once, for 3333).
    let deposit = invoke(&app, "http_deposits_create.json", &[("ACCESS_TOKEN", referee_token.as_str())]).await;
    assert_eq!(deposit.status, 201, "{}", deposit.text);
    let purchase = str_of(&deposit.json["reference"], "reference").to_owned();
    let paid = sandbox(&format!("/_sandbox/purchases/{purchase}/pay"), Vec::new()).await;
    assert_eq!(paid["status"], "paid");
    let delivery = format!("whd_{}", ulid::Ulid::new());
    let batch = invoke_sqs(
        &app,
        "sqs_revio_events.json",
        &[("DELIVERY_ID", delivery.as_str()), ("PURCHASE_ID", purchase.as_str())],
    )
    .await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    let kyc = submit_kyc(&app, &referee_token, &fresh_pan("3333")).await;
    assert_eq!((kyc.status, kyc.json["status"].as_str()), (201, Some("VERIFIED")), "{}", kyc.text);

    // The reward event pays the referrer, once however often it arrives.
    for _ in 0..2 {
        let batch = invoke_sqs(&app, "sqs_referral_rewards.json", &referee).await;
        assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    }
    let file = "sqs_referral_rewards.partial_failure.json";
    let event: SqsEvent = serde_json::from_str(&fill(file, &referee)).unwrap();
    let unreadable = event.records[0].message_id.clone().unwrap();
    let batch = invoke_sqs(&app, file, &referee).await;
    let failed: Vec<&str> = batch.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [unreadable.as_str()], "only the unreadable message is redelivered");

    let wallet = invoke(&app, "http_wallet_get.json", &referrer_auth).await;
    assert_eq!(wallet.json["balance"], "50.00", "{}", wallet.text);
    let page = invoke(&app, "http_referrals_get.json", &referrer_auth).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!((page.json["rewards_count"].as_i64(), page.json["rewards_earned"].as_str()), (Some(1), Some("50.00")));
    let rewarded = &page.json["referees"][0];
    assert_eq!((rewarded["status"].as_str(), rewarded["outcome"].as_str()), (Some("COMPLETED"), Some("rewarded")));
    assert_eq!((rewarded["first_deposit"].as_bool(), rewarded["kyc_verified"].as_bool()), (Some(true), Some(true)));
    assert_eq!(rewarded["reward"], "50.00");
    assert!(rewarded["reward_transaction_id"].as_str().is_some_and(|t| t.starts_with("txn_")), "{}", page.text);
    app.assert_ledger_balanced().await;
}

/// The Revio sandbox's bank pays every payout to this account number (`tools/sandbox/revio.py`).
const PAID_ACCOUNT: &str = "110000001";

#[tokio::test]
async fn the_withdrawal_events_add_a_bank_account_withdraw_and_the_payout_worker_and_webhook_complete_it() {
    let app = TestApp::spawn().await;
    let (user, token) = app.funded_verified_user("100.00").await;
    let auth = [("ACCESS_TOKEN", token.as_str())];

    // POST /v1/bank-accounts: the sandbox bank's always-paid account, answered masked, once.
    let added = invoke(&app, "http_bank_accounts_create.json", &auth).await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert_eq!(added.json["account_number_masked"], "xxxxx0001");
    assert!(!added.text.contains(PAID_ACCOUNT), "{}", added.text);
    let account = str_of(&added.json["bank_account_id"], "bank_account_id").to_owned();
    assert!(account.starts_with("bac_"), "{account}");
    let twice = invoke(&app, "http_bank_accounts_create.json", &auth).await;
    assert_eq!((twice.status, twice.code()), (409, "bank_account_exists"), "{}", twice.text);
    let listed = invoke(&app, "http_bank_accounts_list.json", &auth).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let items = listed.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", listed.text);
    assert_eq!(items[0]["bank_account_id"], account.as_str());
    assert!(!listed.text.contains(PAID_ACCOUNT), "{}", listed.text);

    // POST /v1/withdrawals: 20.00 held at once, one withdrawal per Idempotency-Key.
    let values = [auth[0], ("BANK_ACCOUNT_ID", account.as_str())];
    let withdrawal = invoke(&app, "http_withdrawals_create.json", &values).await;
    assert_eq!(withdrawal.status, 202, "{}", withdrawal.text);
    assert_eq!(
        (withdrawal.json["type"].as_str(), withdrawal.json["status"].as_str(), withdrawal.json["amount"].as_str()),
        (Some("WITHDRAWAL"), Some("PENDING"), Some("20.00"))
    );
    assert_eq!(withdrawal.json["direction"], "debit");
    assert_eq!(withdrawal.json["bank_account_id"], account.as_str());
    let id = str_of(&withdrawal.json["transaction_id"], "transaction_id").to_owned();
    assert_eq!(withdrawal.json["id"], id.as_str());
    assert_eq!(app.wallet_of(&user).await, ("100.00".into(), "80.00".into(), "20.00".into()));
    let replay = invoke(&app, "http_withdrawals_create.json", &values).await;
    assert_eq!(replay.status, 202, "{}", replay.text);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json["transaction_id"], id.as_str(), "a retry with the same key is the same withdrawal");
    let keyless = invoke(&app, "http_withdrawals_create.no_idempotency_key.json", &values).await;
    assert_eq!((keyless.status, keyless.code()), (400, "idempotency_key_required"), "{}", keyless.text);
    assert_eq!(app.wallet_of(&user).await.2, "20.00", "nothing more held");

    // The payout worker submits it to Revio, with the withdrawal's id as the reference, once
    // however often the message comes.
    let ids = [("TRANSACTION_ID", id.as_str())];
    for _ in 0..2 {
        let batch = invoke_sqs(&app, "sqs_payouts.json", &ids).await;
        assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    }
    let bank = purse_tests::Sandbox::new();
    let payouts = bank.payouts_for(&id).await;
    assert_eq!(payouts.len(), 1, "{payouts:?}");
    let payout = str_of(&payouts[0]["id"], "payout id").to_owned();
    let submitted = invoke(&app, "http_transactions_get.json", &[auth[0], ids[0]]).await;
    assert_eq!(
        (submitted.json["status"].as_str(), submitted.json["payout_status"].as_str()),
        (Some("PENDING"), Some("SUBMITTED")),
        "{}",
        submitted.text
    );
    assert_eq!(submitted.json["reference"], payout.as_str());

    // Sent to the bank: too late to cancel.
    let late = invoke(&app, "http_withdrawals_cancel.json", &[auth[0], ids[0]]).await;
    assert_eq!((late.status, late.code()), (409, "withdrawal_not_cancellable"), "{}", late.text);

    // The sandbox bank pays it about a second later; Revio's webhook reaches the Function URL,
    // signed by the sandbox.
    eventually(20, "the payout is paid at Revio", || async {
        bank.payouts_for(&id).await.first().is_some_and(|p| p["status"] == "paid").then_some(())
    })
    .await;
    let hook_ids = [("PAYOUT_ID", payout.as_str()), ("TRANSACTION_ID", id.as_str())];
    let unsigned_event: Value =
        serde_json::from_str(&substitute(&read_event("webhook_revio.payout.json"), &hook_ids)).unwrap();
    let body = str_of(&unsigned_event["body"], "body").to_owned();
    let signed = sandbox("/_sandbox/sign", body.into_bytes()).await;
    let signature = str_of(&signed["signature"], "signature").to_owned();
    let with_signature = [hook_ids[0], hook_ids[1], ("REVIO_SIGNATURE", signature.as_str())];
    let receipt = invoke(&app, "webhook_revio.payout.json", &with_signature).await;
    assert_eq!(receipt.status, 200, "{}", receipt.text);
    assert_eq!((receipt.json["received"].as_bool(), receipt.json["duplicate"].as_bool()), (Some(true), Some(false)));
    let delivery = str_of(&receipt.json["delivery_id"], "delivery_id").to_owned();
    assert!(delivery.starts_with("whd_"), "{delivery}");
    let again = invoke(&app, "webhook_revio.payout.json", &with_signature).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["duplicate"], true, "the same payout event is queued once");

    // The consumer reads the payout from Revio and completes the withdrawal: the held coins
    // leave the wallet, once.
    let queued = [("DELIVERY_ID", delivery.as_str()), ("PAYOUT_ID", payout.as_str())];
    let batch = invoke_sqs(&app, "sqs_revio_events.payout.json", &queued).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    assert_eq!(delivery_outcome(&app, &delivery).await, "PAYOUT_COMPLETED");
    let completed = invoke(&app, "http_transactions_get.json", &[auth[0], ids[0]]).await;
    assert_eq!(completed.json["status"], "COMPLETED", "{}", completed.text);
    assert!(completed.json["completed_at"].is_string(), "{}", completed.text);
    assert_eq!(app.wallet_of(&user).await, ("80.00".into(), "80.00".into(), "0.00".into()));
    let batch = invoke_sqs(&app, "sqs_revio_events.payout.json", &queued).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    // The record keeps what the first processing did; the repeat pays nothing more.
    assert_eq!(delivery_outcome(&app, &delivery).await, "PAYOUT_COMPLETED");
    assert_eq!(app.wallet_of(&user).await.0, "80.00", "the same event again pays nothing more");

    // A withdrawal the worker has not taken can be cancelled: the coins are available again,
    // and its queued message then pays nothing.
    let second = app.withdraw(&token, "20.00", &account).await;
    assert_eq!(second.status, 202, "{}", second.text);
    let second_id = str_of(&second.json["transaction_id"], "transaction_id").to_owned();
    let cancel = [auth[0], ("TRANSACTION_ID", second_id.as_str())];
    let cancelled = invoke(&app, "http_withdrawals_cancel.json", &cancel).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(
        (cancelled.json["status"].as_str(), cancelled.json["failure_reason"].as_str()),
        (Some("FAILED"), Some("cancelled"))
    );
    assert_eq!(cancelled.json["transaction_id"], second_id.as_str());
    let repeated = invoke(&app, "http_withdrawals_cancel.json", &cancel).await;
    assert_eq!((repeated.status, repeated.json["status"].as_str()), (200, Some("FAILED")), "{}", repeated.text);
    let (_, stranger) = app.user_token().await;
    let foreign = invoke(&app, "http_withdrawals_cancel.json", &[("ACCESS_TOKEN", stranger.as_str()), cancel[1]]).await;
    assert_eq!((foreign.status, foreign.code()), (404, "not_found"), "{}", foreign.text);
    assert_eq!(app.wallet_of(&user).await, ("80.00".into(), "80.00".into(), "0.00".into()));
    let batch = invoke_sqs(&app, "sqs_payouts.json", &[cancel[1]]).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    assert!(bank.payouts_for(&second_id).await.is_empty(), "a cancelled withdrawal is never paid out");

    // DELETE /v1/bank-accounts/{bank_account_id}: gone from the list; a second time 404.
    let deleted = invoke(&app, "http_bank_accounts_delete.json", &values).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert!(deleted.text.is_empty());
    let gone = invoke(&app, "http_bank_accounts_delete.json", &values).await;
    assert_eq!((gone.status, gone.code()), (404, "not_found"), "{}", gone.text);
    let listed = invoke(&app, "http_bank_accounts_list.json", &auth).await;
    assert_eq!(listed.json["items"], json!([]), "{}", listed.text);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_payout_queue_consumer_acknowledges_unknown_withdrawals_and_reports_only_unreadable_messages() {
    let app = TestApp::spawn().await;
    let unknown = purse::domain::ids::TransactionId::generate().to_string();
    let values = [("TRANSACTION_ID", unknown.as_str())];

    // No withdrawal has this id: nothing to pay, nothing to retry.
    let batch = invoke_sqs(&app, "sqs_payouts.json", &values).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));

    let file = "sqs_payouts.partial_failure.json";
    let event: SqsEvent = serde_json::from_str(&fill(file, &values)).unwrap();
    let unreadable = event.records[0].message_id.clone().unwrap();
    let batch = invoke_sqs(&app, file, &values).await;
    let failed: Vec<&str> = batch.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [unreadable.as_str()], "only the unreadable message is redelivered");

    // A payout event for a payout Revio does not know is acknowledged too.
    let delivery = format!("whd_{}", ulid::Ulid::new());
    let payout = ulid::Ulid::new().to_string().to_lowercase();
    let queued = [("DELIVERY_ID", delivery.as_str()), ("PAYOUT_ID", payout.as_str())];
    let batch = invoke_sqs(&app, "sqs_revio_events.payout.json", &queued).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
}

#[tokio::test]
async fn the_admin_events_credit_a_user_list_the_adjustment_and_look_the_user_up() {
    let app = TestApp::spawn().await;
    let (email, _, profile) = app.register().await;
    let user = str_of(&profile["id"], "id").to_owned();
    let reason = "Goodwill credit for the outage of 3 November (ticket 812)";

    // Administrators only: anyone else is refused and moves nothing.
    let (_, stranger) = app.user_token().await;
    let not_admin = [("ACCESS_TOKEN", stranger.as_str()), ("USER_ID", user.as_str()), ("MONTH", "2026-03")];
    for file in ["http_admin_adjustments_create.json", "http_admin_adjustments_list.json", "http_admin_users_get.json"]
    {
        let refused = invoke(&app, file, &not_admin).await;
        assert_eq!((refused.status, refused.code()), (403, "forbidden"), "{file}: {}", refused.text);
    }
    assert_eq!(app.wallet_of(&user).await.0, "0.00");

    // POST /v1/admin/adjustments: a credit of 12.50 with the body's reason and the
    // administrator's id; the same event again (same idempotency-key) replays the answer.
    let (admin_id, admin_token) = admin(&app).await;
    let auth = ("ACCESS_TOKEN", admin_token.as_str());
    let values = [auth, ("USER_ID", user.as_str())];
    let made = invoke(&app, "http_admin_adjustments_create.json", &values).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let adjustment = &made.json;
    assert_eq!(
        (
            adjustment["user_id"].as_str(),
            adjustment["direction"].as_str(),
            adjustment["amount"].as_str(),
            adjustment["currency"].as_str()
        ),
        (Some(user.as_str()), Some("credit"), Some("12.50"), Some("COIN"))
    );
    assert_eq!(
        (adjustment["reason"].as_str(), adjustment["adjusted_by"].as_str()),
        (Some(reason), Some(admin_id.as_str()))
    );
    let transaction_id = str_of(&adjustment["transaction_id"], "transaction_id").to_owned();
    assert!(transaction_id.starts_with("txn_"), "{transaction_id}");
    assert_eq!(app.wallet_of(&user).await, ("12.50".into(), "12.50".into(), "0.00".into()));
    let again = invoke(&app, "http_admin_adjustments_create.json", &values).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (201, Some("true")), "{}", again.text);
    assert_eq!(again.json, made.json);
    assert_eq!(app.wallet_of(&user).await.0, "12.50", "the same event again credits nothing more");
    // The key with another request (another user) is refused, and moves nothing.
    let (other, _) = app.user_token().await;
    let reused = invoke(&app, "http_admin_adjustments_create.json", &[auth, ("USER_ID", other.as_str())]).await;
    assert_eq!((reused.status, reused.code()), (422, "idempotency_key_reused"), "{}", reused.text);
    assert_eq!(app.wallet_of(&other).await.0, "0.00");

    // GET /v1/admin/adjustments?month=: the month's adjustments, as they were answered.
    let month = str_of(&adjustment["created_at"], "created_at")[..7].to_owned();
    let listing = eventually(10, "the adjustment is listed", || async {
        let listing = invoke(&app, "http_admin_adjustments_list.json", &[auth, ("MONTH", month.as_str())]).await;
        assert_eq!(listing.status, 200, "{}", listing.text);
        (!listing.json["items"].as_array().expect("items").is_empty()).then_some(listing)
    })
    .await;
    assert_eq!(listing.json, json!({"month": month, "items": [made.json]}));
    let bad = invoke(&app, "http_admin_adjustments_list.json", &[auth, ("MONTH", "2026-13")]).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_month"), "{}", bad.text);

    // GET /v1/admin/users/{id}: by id or by e-mail alike, the adjustment showing who and why.
    let by_id = invoke(&app, "http_admin_users_get.json", &values).await;
    assert_eq!(by_id.status, 200, "{}", by_id.text);
    let found = &by_id.json;
    assert_eq!(
        (found["profile"]["id"].as_str(), found["profile"]["email"].as_str()),
        (Some(user.as_str()), Some(email.as_str()))
    );
    assert!(!by_id.text.contains("password"), "{}", by_id.text);
    assert_eq!(
        (found["wallet"]["balance"].as_str(), found["wallet"]["available"].as_str()),
        (Some("12.50"), Some("12.50"))
    );
    let recent = found["recent_transactions"].as_array().expect("recent_transactions");
    let seen: Vec<_> = recent
        .iter()
        .map(|t| {
            (
                t["id"].as_str(),
                t["type"].as_str(),
                t["direction"].as_str(),
                t["adjusted_by"].as_str(),
                t["adjustment_reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(Some(transaction_id.as_str()), Some("ADJUSTMENT"), Some("credit"), Some(admin_id.as_str()), Some(reason))]
    );
    let by_email = invoke(&app, "http_admin_users_get.json", &[auth, ("USER_ID", email.as_str())]).await;
    assert_eq!((by_email.status, &by_email.json), (200, &by_id.json), "{}", by_email.text);
    let unknown = purse::domain::ids::UserId::generate().to_string();
    let missing = invoke(&app, "http_admin_users_get.json", &[auth, ("USER_ID", unknown.as_str())]).await;
    assert_eq!((missing.status, missing.code()), (404, "user_not_found"), "{}", missing.text);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_game_events_pay_a_reward_and_charge_a_fee_once_per_game_session() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let credentials = |id: &str, secret: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    };
    let (id, secret) = app.service_credential("chess-arena", "games:fees,games:rewards").await;
    let both = credentials(&id, &secret);
    let values = [("SERVICE_CREDENTIALS", both.as_str()), ("USER_ID", user.as_str())];

    // POST /v1/games/rewards: 30.00 from the rewards pool; the same event again pays nothing more.
    let paid = invoke(&app, "http_games_rewards.json", &values).await;
    assert_eq!((paid.status, paid.header("idempotent-replayed")), (201, None), "{}", paid.text);
    assert_eq!(
        (paid.json["type"].as_str(), paid.json["amount"].as_str(), paid.json["game_session_id"].as_str()),
        (Some("REWARD"), Some("30.00"), Some("tournament-17-final"))
    );
    let again = invoke(&app, "http_games_rewards.json", &values).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (201, Some("true")), "{}", again.text);
    assert_eq!(again.json, paid.json);

    // POST /v1/games/fees: 12.50 to platform revenue, once.
    let charged = invoke(&app, "http_games_fees.json", &values).await;
    assert_eq!(charged.status, 201, "{}", charged.text);
    assert_eq!((charged.json["type"].as_str(), charged.json["amount"].as_str()), (Some("GAME_FEE"), Some("12.50")));
    let again = invoke(&app, "http_games_fees.json", &values).await;
    assert_eq!((again.status, again.json["transaction_id"].clone()), (201, charged.json["transaction_id"].clone()));
    assert_eq!(app.wallet_of(&user).await.0, "17.50");
    let history = app.get("/v1/transactions", Some(&token)).await;
    let seen: Vec<_> = history.json["items"].as_array().unwrap().iter().map(|t| t["type"].as_str()).collect();
    assert_eq!(seen, [Some("GAME_FEE"), Some("REWARD")], "{}", history.text);

    // Another scope only, a forged secret, a user's token: refused, nothing moves.
    let (fees_id, fees_secret) = app.service_credential("chess-arena", "games:fees").await;
    let fees_only = credentials(&fees_id, &fees_secret);
    let r = invoke(&app, "http_games_rewards.json", &[("SERVICE_CREDENTIALS", fees_only.as_str()), values[1]]).await;
    assert_eq!((r.status, r.code()), (403, "insufficient_scope"), "{}", r.text);
    let forged = credentials(&id, "sk_forged");
    let r = invoke(&app, "http_games_fees.json", &[("SERVICE_CREDENTIALS", forged.as_str()), values[1]]).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.text);
    let r = invoke(&app, "http_games_fees.json", &[("SERVICE_CREDENTIALS", token.as_str()), values[1]]).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.text);
    assert_eq!(app.wallet_of(&user).await.0, "17.50");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_websocket_events_connect_with_a_ticket_answer_pings_and_unknown_actions_and_forget_a_connection() {
    let app = TestApp::spawn_ws_only().await;
    let (user, token) = app.user_token().await;

    // POST /v1/ws-tickets: a one-time ticket, valid for 60 s, and the URL to open with it.
    let issued = invoke(&app, "http_ws_tickets.json", &[("ACCESS_TOKEN", token.as_str())]).await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let ticket = str_of(&issued.json["ticket"], "ticket").to_owned();
    assert_eq!(issued.json["url"], format!("{}?ticket={ticket}", app.ws_url));
    let expires_at = chrono::DateTime::parse_from_rfc3339(str_of(&issued.json["expires_at"], "expires_at")).unwrap();
    let left = expires_at.timestamp() - chrono::Utc::now().timestamp();
    assert!((55..=60).contains(&left), "the ticket expires in {left} s");
    let forged = invoke(&app, "http_ws_tickets.json", &[("ACCESS_TOKEN", "not-a-token")]).await;
    assert_eq!((forged.status, forged.code()), (401, "unauthorized"), "{}", forged.text);

    // $connect redeems it: 200 accepts the handshake and records the connection under the user.
    // The same invocation again (a retry: the same connection) is accepted again; another
    // connection with that ticket, an unknown ticket or none is refused with 401.
    let connection = purse_local::wsapi::new_connection_id();
    let values = [("TICKET", ticket.as_str()), ("CONNECTION_ID", connection.as_str())];
    assert_eq!(invoke_ws(&app, "ws_connect.json", &values).await, 200);
    assert_eq!(connection_user(&app, &connection).await.as_deref(), Some(user.as_str()));
    assert_eq!(invoke_ws(&app, "ws_connect.json", &values).await, 200, "a retried $connect");
    let other = purse_local::wsapi::new_connection_id();
    let other_connection = ("CONNECTION_ID", other.as_str());
    assert_eq!(invoke_ws(&app, "ws_connect.json", &[values[0], other_connection]).await, 401, "a used ticket");
    let unknown = [("TICKET", "bm90LWEtdGlja2V0LWFueWJvZHktd2FzLWdpdmVu"), other_connection];
    assert_eq!(invoke_ws(&app, "ws_connect.json", &unknown).await, 401, "an unknown ticket");
    assert_eq!(invoke_ws(&app, "ws_connect.no_ticket.json", &[other_connection]).await, 401, "no ticket");
    assert_eq!(connection_user(&app, &other).await, None);

    // $disconnect forgets the connection.
    assert_eq!(invoke_ws(&app, "ws_disconnect.json", &[values[1]]).await, 200);
    assert_eq!(connection_user(&app, &connection).await, None);

    // On a real connection: `ping` is answered `pong`, an unknown action an `error` frame; once
    // its $disconnect has been delivered, the connection is not signed in any more.
    let (mut client, id) = connect(&app, &token).await;
    let on = [("CONNECTION_ID", id.as_str())];
    assert_eq!(invoke_ws(&app, "ws_ping.json", &on).await, 200);
    assert_eq!(client.next(FRAME_WAIT).await, Some(json!({"type": "pong"})));
    assert_eq!(invoke_ws(&app, "ws_default.json", &on).await, 200, "a refused message is answered by a frame");
    let refused = client.next(FRAME_WAIT).await.expect("an error frame");
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("unknown_action")),
        "{refused}"
    );
    assert_eq!(invoke_ws(&app, "ws_disconnect.json", &on).await, 200);
    assert_eq!(invoke_ws(&app, "ws_ping.json", &on).await, 200);
    let refused = client.next(FRAME_WAIT).await.expect("an error frame");
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("connection_unknown")));
    client.close().await;
}

#[tokio::test]
async fn the_call_events_place_answer_signal_bill_sweep_and_end_a_call() {
    let app = TestApp::spawn_ws_only().await;
    let (caller, caller_token) = app.user_token().await;
    fund(&app, &caller, "20.00").await;
    let (callee, callee_token) = app.user_token().await;
    let (caller_auth, callee_auth) = (("ACCESS_TOKEN", caller_token.as_str()), ("ACCESS_TOKEN", callee_token.as_str()));

    // PUT /v1/me/call-price: the callee asks 4.00 a minute, of which 70 % is theirs.
    let priced = invoke(&app, "http_me_call_price.json", &[callee_auth]).await;
    assert_eq!(priced.status, 200, "{}", priced.text);
    assert_eq!(priced.json, json!({"price_per_minute": "4.00", "currency": "COIN", "callee_share_percent": 70}));

    let (mut caller_ws, caller_connection) = connect(&app, &caller_token).await;
    let (mut callee_ws, callee_connection) = connect(&app, &callee_token).await;
    let from_caller = ("CONNECTION_ID", caller_connection.as_str());
    let from_callee = ("CONNECTION_ID", callee_connection.as_str());

    // call.invite: the caller hears it ring at the callee's price; the callee's socket is told.
    assert_eq!(invoke_ws(&app, "ws_call_invite.json", &[from_caller, ("CALLEE_ID", callee.as_str())]).await, 200);
    let ringing = caller_ws.next_of_type("call.ringing", FRAME_WAIT).await;
    let call_id = str_of(&ringing["call_id"], "call_id").to_owned();
    assert_fields(&ringing, json!({"callee_id": callee, "price_per_minute": "4.00"}));
    let incoming = callee_ws.next_of_type("call.incoming", FRAME_WAIT).await;
    assert_fields(&incoming, json!({"call_id": call_id, "caller_id": caller, "price_per_minute": "4.00"}));
    let call = ("CALL_ID", call_id.as_str());

    // signal: the caller's SDP offer reaches the callee verbatim.
    assert_eq!(invoke_ws(&app, "ws_signal.json", &[from_caller, call]).await, 200);
    let event: Value = serde_json::from_str(&fill("ws_signal.json", &[from_caller, call])).unwrap();
    let frame: Value = serde_json::from_str(str_of(&event["body"], "body")).unwrap();
    let relayed = callee_ws.next_of_type("signal", FRAME_WAIT).await;
    assert_fields(&relayed, json!({"call_id": call_id, "from": caller, "data": frame["data"]}));

    // call.accept: both are told it started; minute 1 is held on the caller's wallet.
    assert_eq!(invoke_ws(&app, "ws_call_accept.json", &[from_callee, call]).await, 200);
    let started = caller_ws.next_of_type("call.started", FRAME_WAIT).await;
    assert_eq!(callee_ws.next_of_type("call.started", FRAME_WAIT).await, started);
    let period_seconds = purse_tests::CALL_PERIOD_SECONDS;
    assert_fields(
        &started,
        json!({"call_id": call_id, "price_per_minute": "4.00", "billing_period_seconds": period_seconds}),
    );
    assert_eq!(app.wallet_of(&caller).await, ("20.00".into(), "16.00".into(), "4.00".into()));
    let accepted = chrono::DateTime::parse_from_rfc3339(str_of(&started["started_at"], "started_at"))
        .expect("started_at")
        .timestamp_millis();
    let period = i64::try_from(purse_tests::CALL_PERIOD_SECONDS).unwrap() * 1000;

    // The tick of minute 1, once due (early, it would only be queued again for its time): minute
    // 1 is paid, 70 % of it to the callee, and minute 2 held; both are told.
    sleep_until(accepted + period).await;
    let batch = invoke_sqs(&app, "sqs_call_billing.json", &[call]).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    let paid = caller_ws.next_of_type("billing", FRAME_WAIT).await;
    assert_fields(&paid, json!({"call_id": call_id, "minutes_billed": 1, "amount": "4.00", "balance": "16.00"}));
    let earned = callee_ws.next_of_type("billing", FRAME_WAIT).await;
    assert_fields(&earned, json!({"call_id": call_id, "minutes_billed": 1, "amount": "2.80", "currency": "COIN"}));
    assert!(earned.get("balance").is_none(), "the callee is not told the caller's balance: {earned}");
    assert_eq!(app.wallet_of(&caller).await, ("16.00".into(), "12.00".into(), "4.00".into()));
    // The same tick again changes nothing.
    let batch = invoke_sqs(&app, "sqs_call_billing.json", &[call]).await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    caller_ws.expect_silence(Duration::from_millis(500)).await;
    assert_eq!(app.wallet_of(&caller).await.0, "16.00");

    // Nothing polls the queue here, so the tick of minute 2 is as good as lost: overdue by more
    // than the sweeper's grace (5 s and half a period), it is replayed by the sweeper.
    sleep_until(accepted + 2 * period + 5_000 + period / 2 + 500).await;
    let sweep = run_scheduled(&app, "schedule_call_sweeper.json").await.expect("a sweep runs");
    let report = &sweep["calls"];
    assert_eq!(sweep["phone_calls"]["stuck"], 0, "{sweep}");
    assert_eq!(
        (report["examined"].as_u64(), report["ended"].as_u64(), report["ticks_replayed"].as_u64()),
        (Some(1), Some(0), Some(1)),
        "{report}"
    );
    assert_eq!(caller_ws.next_of_type("billing", FRAME_WAIT).await["minutes_billed"], 2);
    assert_eq!(callee_ws.next_of_type("billing", FRAME_WAIT).await["amount"], "5.60");
    assert_eq!(app.wallet_of(&caller).await, ("12.00".into(), "8.00".into(), "4.00".into()));

    // call.end: the running minute (a whole period by now) is charged, the call settled.
    assert_eq!(invoke_ws(&app, "ws_call_end.json", &[from_caller, call]).await, 200);
    let ended = json!({"call_id": call_id, "reason": "hangup", "minutes_billed": 2, "duration_seconds": 6});
    let told = caller_ws.next_of_type("call.ended", FRAME_WAIT).await;
    assert_fields(&told, ended.clone());
    assert_fields(&told, json!({"amount": "12.00", "balance": "8.00"}));
    let told = callee_ws.next_of_type("call.ended", FRAME_WAIT).await;
    assert_fields(&told, ended);
    assert_fields(&told, json!({"amount": "8.40"}));
    assert_eq!(app.wallet_of(&caller).await, ("8.00".into(), "8.00".into(), "0.00".into()));
    assert_eq!(app.wallet_of(&callee).await, ("8.40".into(), "8.40".into(), "0.00".into()));

    // GET /v1/calls and GET /v1/calls/{id}: the call as each party sees it.
    let listed = invoke(&app, "http_calls_list.json", &[caller_auth]).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["next_cursor"], Value::Null, "{}", listed.text);
    let items = listed.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", listed.text);
    let seen = &items[0];
    assert_eq!(
        (seen["id"].as_str(), seen["role"].as_str(), seen["status"].as_str(), seen["end_reason"].as_str()),
        (Some(call_id.as_str()), Some("caller"), Some("ENDED"), Some("hangup"))
    );
    assert_eq!(
        (seen["price_per_minute"].as_str(), seen["minutes_billed"].as_u64(), seen["amount"].as_str()),
        (Some("4.00"), Some(2), Some("12.00"))
    );
    assert_eq!((seen["channel"].as_str(), seen["duration_seconds"].as_u64()), (Some("app"), Some(6)));
    let got = invoke(&app, "http_calls_get.json", &[caller_auth, call]).await;
    assert_eq!((got.status, &got.json), (200, seen), "{}", got.text);
    let theirs = invoke(&app, "http_calls_get.json", &[callee_auth, call]).await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
    assert_eq!((theirs.json["role"].as_str(), theirs.json["amount"].as_str()), (Some("callee"), Some("8.40")));
    let (_, stranger) = app.user_token().await;
    let foreign = invoke(&app, "http_calls_get.json", &[("ACCESS_TOKEN", stranger.as_str()), call]).await;
    assert_eq!((foreign.status, foreign.code()), (404, "call_not_found"), "{}", foreign.text);
    let unknown = purse::domain::ids::CallId::generate().to_string();
    let missing = invoke(&app, "http_calls_get.json", &[caller_auth, ("CALL_ID", unknown.as_str())]).await;
    assert_eq!((missing.status, missing.code()), (404, "call_not_found"), "{}", missing.text);
    let bad = invoke(&app, "http_calls_list.invalid_limit.json", &[caller_auth]).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_limit"), "{}", bad.text);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_call_events_decline_a_call_let_one_ring_out_and_end_one_whose_caller_disconnects() {
    let app = TestApp::spawn_ws_only().await;
    let (caller, caller_token) = app.user_token().await;
    fund(&app, &caller, "20.00").await;
    let (callee, callee_token) = app.user_token().await;
    let (mut caller_ws, caller_connection) = connect(&app, &caller_token).await;
    let (mut callee_ws, callee_connection) = connect(&app, &callee_token).await;
    let from_caller = ("CONNECTION_ID", caller_connection.as_str());
    let from_callee = ("CONNECTION_ID", callee_connection.as_str());
    let invite = [from_caller, ("CALLEE_ID", callee.as_str())];

    // call.reject: both are told it ended `rejected`, nothing charged.
    let declined = ring(&app, &mut caller_ws, &mut callee_ws, &invite).await;
    let call = ("CALL_ID", declined.as_str());
    assert_eq!(invoke_ws(&app, "ws_call_reject.json", &[from_callee, call]).await, 200);
    for ws in [&mut caller_ws, &mut callee_ws] {
        let told = ws.next_of_type("call.ended", FRAME_WAIT).await;
        assert_eq!(
            (told["call_id"].as_str(), told["reason"].as_str(), told["amount"].as_str()),
            (Some(declined.as_str()), Some("rejected"), Some("0.00")),
            "{told}"
        );
    }
    // A repeat (its first answer lost) is the same outcome, told again; nothing more happens.
    assert_eq!(invoke_ws(&app, "ws_call_reject.json", &[from_callee, call]).await, 200);
    for ws in [&mut caller_ws, &mut callee_ws] {
        let again = ws.next_of_type("call.ended", FRAME_WAIT).await;
        assert_eq!((again["call_id"].as_str(), again["reason"].as_str()), (Some(declined.as_str()), Some("rejected")));
    }
    // The caller cannot reject their own call.
    assert_eq!(invoke_ws(&app, "ws_call_reject.json", &[from_caller, call]).await, 200);
    let refused = caller_ws.next_of_type("error", FRAME_WAIT).await;
    assert_eq!((refused["code"].as_str(), refused["call_id"].as_str()), (Some("not_callee"), Some(declined.as_str())));

    // The ring timeout call.invite queued ends a call still ringing (`no_answer`) once it has
    // rung for CallRingSeconds (5 s in tests); again, nothing.
    let unanswered = ring(&app, &mut caller_ws, &mut callee_ws, &invite).await;
    let call = ("CALL_ID", unanswered.as_str());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let batch = invoke_sqs(&app, "sqs_call_billing.ring_timeout.json", &[call]).await;
    assert_eq!(serde_json::to_value(&batch).unwrap(), json!({"batchItemFailures": []}));
    for ws in [&mut caller_ws, &mut callee_ws] {
        let told = ws.next_of_type("call.ended", FRAME_WAIT).await;
        assert_eq!((told["call_id"].as_str(), told["reason"].as_str()), (Some(unanswered.as_str()), Some("no_answer")));
    }
    let batch = invoke_sqs(&app, "sqs_call_billing.ring_timeout.json", &[call]).await;
    assert!(batch.batch_item_failures.is_empty(), "{batch:?}");
    caller_ws.expect_silence(Duration::from_millis(500)).await;

    // Only the unreadable message is reported (redelivered, then parked in the dead-letter
    // queue); a ring timeout for a call nobody knows is acknowledged.
    let unknown = purse::domain::ids::CallId::generate().to_string();
    let file = "sqs_call_billing.partial_failure.json";
    let event: SqsEvent = serde_json::from_str(&fill(file, &[("CALL_ID", unknown.as_str())])).unwrap();
    let unreadable = event.records[0].message_id.clone().unwrap();
    let batch = invoke_sqs(&app, file, &[("CALL_ID", unknown.as_str())]).await;
    let failed: Vec<_> = batch.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [unreadable.as_str()], "only the unreadable message is redelivered");
    assert_eq!(app.wallet_of(&caller).await, ("20.00".into(), "20.00".into(), "0.00".into()));

    // $disconnect of the caller's connection ends the answered call (`disconnected`), settled:
    // the running minute charged per second, the rest of its hold released.
    let dropped = ring(&app, &mut caller_ws, &mut callee_ws, &invite).await;
    assert_eq!(invoke_ws(&app, "ws_call_accept.json", &[from_callee, ("CALL_ID", dropped.as_str())]).await, 200);
    callee_ws.next_of_type("call.started", FRAME_WAIT).await;
    assert_eq!(invoke_ws(&app, "ws_disconnect.json", &[from_caller]).await, 200);
    let told = callee_ws.next_of_type("call.ended", FRAME_WAIT).await;
    assert_eq!((told["call_id"].as_str(), told["reason"].as_str()), (Some(dropped.as_str()), Some("disconnected")));
    assert_eq!(connection_user(&app, &caller_connection).await, None);
    let (balance, available, held) = app.wallet_of(&caller).await;
    assert_eq!((held.as_str(), balance.as_str()), ("0.00", available.as_str()));
    let paid: rust_decimal::Decimal =
        "20.00".parse::<rust_decimal::Decimal>().unwrap() - balance.parse::<rust_decimal::Decimal>().unwrap();
    assert!(paid > rust_decimal::Decimal::ZERO && paid <= "10.00".parse().unwrap(), "paid {paid}");
    app.assert_ledger_balanced().await;
}

/// `X-Twilio-Signature` of a telephony event file once `values` are filled in: keyed with the
/// stack's auth token, over the URL the event was sent to (`x-forwarded-proto`, `host`, the raw
/// path and query) and its form body, as the provider signs it.
async fn telephony_signature(app: &TestApp, file: &str, values: &[(&str, &str)]) -> String {
    let event: Value = serde_json::from_str(&substitute(&read_event(file), values)).unwrap();
    let headers = &event["headers"];
    let query = str_of(&event["rawQueryString"], "rawQueryString");
    let url = format!(
        "{}://{}{}{}",
        str_of(&headers["x-forwarded-proto"], "x-forwarded-proto"),
        str_of(&headers["host"], "host"),
        str_of(&event["rawPath"], "rawPath"),
        if query.is_empty() { String::new() } else { format!("?{query}") }
    );
    let form = purse::telephony::Form::parse(str_of(&event["body"], "body").as_bytes()).unwrap();
    let arn = &app.stack.get("TelephonyApiSecret").expect("the telephony secret").reference;
    let secret = purse::telephony::TelephonySecret::parse(&purse::secrets::load(&app.aws, arn).await.unwrap()).unwrap();
    purse::telephony::sign(secret.auth_token.expose(), &url, form.pairs())
}

#[tokio::test]
async fn the_phone_call_events_place_a_call_the_provider_connects_with_its_pin_and_settles_from_the_talk_time() {
    let app = TestApp::spawn().await;
    let (caller, token) = app.user_token().await;
    let caller_id = purse::domain::ids::UserId::parse(&caller).unwrap();
    let funds = purse::ledger::NewTransaction {
        id: purse::domain::ids::TransactionId::generate(),
        user_id: caller_id.clone(),
        kind: purse::ledger::TransactionType::Adjustment,
        amount: purse::money::Amount::parse("1000.00", purse::money::Currency::Coin).unwrap(),
        currency: purse::money::Currency::Coin,
        debit: purse::ledger::Side::System(purse::ledger::SystemAccount::Adjustments),
        credit: purse::ledger::Side::Account(purse::ledger::AccountId::wallet(&caller_id)),
        description: "test funds".into(),
        reference: None,
    };
    purse::ledger::store::transfer(&app.table, &funds).await.unwrap();
    let (callee, _) = app.user_token().await;

    // POST /v1/calls/phone: the number to dial and the PIN.
    let placed = invoke(&app, "http_calls_phone.json", &[("ACCESS_TOKEN", &token), ("CALLEE_ID", &callee)]).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    assert_eq!((placed.json["status"].as_str(), placed.json["dial"].as_str()), (Some("RINGING"), Some("+18005550100")));
    let pin = str_of(&placed.json["pin"], "pin").to_owned();
    let call_id = str_of(&placed.json["call_id"], "call_id").to_owned();
    let sid = format!("CA{:032x}", rand::random::<u128>());
    let values = [("CALL_SID", sid.as_str()), ("PIN", pin.as_str())];
    let signed = |file: &'static str| {
        let app = &app;
        async move {
            let signature = telephony_signature(app, file, &values).await;
            invoke(app, file, &[values[0], values[1], ("TELEPHONY_SIGNATURE", signature.as_str())]).await
        }
    };
    let view = || async {
        let r = app.get(&format!("/v1/calls/{call_id}"), Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json
    };

    // The provider's first request asks for the PIN; an unsigned one is refused.
    let first = signed("webhook_telephony_voice.json").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let own = "https://q7t3vz9k2m5xw8hc4nb6rj1dfy0gsp3a.lambda-url.us-east-1.on.aws/";
    assert!(first.text.contains(&format!(r#"<Gather numDigits="6" action="{own}""#)), "{}", first.text);
    let unsigned = invoke(&app, "webhook_telephony_voice.unsigned.json", &values).await;
    assert_eq!((unsigned.status, unsigned.code()), (403, "invalid_signature"), "{}", unsigned.text);

    // The PIN: 1000.00 at 10.00 per 2 s pays for 200 s; the callee is dialled for that long.
    let connected = signed("webhook_telephony_voice.pin.json").await;
    assert_eq!(connected.status, 200, "{}", connected.text);
    assert!(
        connected.text.contains(&format!(r#"<Dial timeLimit="200" action="{own}?leg=dial""#)),
        "{}",
        connected.text
    );
    assert!(connected.text.contains(&format!("<Client>{callee}</Client>")), "{}", connected.text);
    assert_eq!(view().await["status"], "ACTIVE");
    assert_eq!(app.wallet_of(&caller).await, ("1000.00".into(), "0.00".into(), "1000.00".into()));

    // The Dial's action: 42 s of talk, 210.00, the rest released; the status callback after it
    // changes nothing.
    let settled = signed("webhook_telephony_voice.dial_action.json").await;
    assert_eq!(settled.status, 200, "{}", settled.text);
    assert!(settled.text.contains("<Hangup/>"), "{}", settled.text);
    let call = view().await;
    assert_eq!(
        (call["status"].as_str(), call["duration_seconds"].as_u64(), call["amount"].as_str()),
        (Some("ENDED"), Some(42), Some("210.00")),
        "{call}"
    );
    let status = signed("webhook_telephony_status.json").await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(app.wallet_of(&caller).await, ("790.00".into(), "790.00".into(), "0.00".into()));
    assert_eq!(app.wallet_of(&callee).await.0, "147.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_user_event_finds_a_callee_by_id_and_by_referral_code_with_their_price() {
    let app = TestApp::spawn().await;
    let (_, caller_token) = app.user_token().await;
    let (callee, callee_token) = app.user_token().await;
    let me = app.get("/v1/me", Some(&callee_token)).await;
    let code = str_of(&me.json["referral_code"], "referral_code").to_owned();
    let auth = ("ACCESS_TOKEN", caller_token.as_str());

    let period = purse_tests::CALL_PERIOD_SECONDS;
    let expected =
        json!({"id": callee, "price_per_minute": "10.00", "currency": "COIN", "billing_period_seconds": period});
    let by_id = invoke(&app, "http_users_get.json", &[auth, ("USER_ID", callee.as_str())]).await;
    assert_eq!((by_id.status, &by_id.json), (200, &expected), "{}", by_id.text);
    let by_code = invoke(&app, "http_users_get.json", &[auth, ("USER_ID", code.to_lowercase().as_str())]).await;
    assert_eq!((by_code.status, &by_code.json), (200, &expected), "{}", by_code.text);
    let unknown = invoke(&app, "http_users_get.json", &[auth, ("USER_ID", "usr_01J00000000000000000000000")]).await;
    assert_eq!((unknown.status, unknown.code()), (404, "user_not_found"), "{}", unknown.text);
}
