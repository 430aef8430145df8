//! Phone (PSTN) calls end to end: `POST /v1/calls/phone`, then the telephony sandbox
//! (`tools/sandbox/telephony.py`) dials in as a caller's phone would, keys the PIN and talks, and
//! calls our served webhooks exactly as the provider does, signed with `X-Twilio-Signature`.
//! Test stacks bill a "minute" every [`CALL_PERIOD_SECONDS`] seconds at the default price
//! (10.00) unless the callee set another, the callee earning 70 %, at most 120 periods a call.

use purse::domain::ids::{CallId, UserId};
use purse::ledger::store as ledger;
use purse::ledger::{AccountId, SystemAccount, SYSTEM_ACCOUNT_SHARDS};
use purse::money::Currency;
use purse::service::calls::shares;
use purse::service::phone::{charge_for, TelephonyWebhooks};
use purse_tests::{eventually, TelephonySandbox, TestApp, TestResponse, CALL_PERIOD_SECONDS};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const CALLER_NUMBER: &str = "+15551230001";
const TOLL_FREE: &str = "+18005550100";
const VOICE: &str = "/webhooks/telephony/voice";
const STATUS: &str = "/webhooks/telephony/status";
/// `CallMaxMinutes` (120) periods.
const MAX_SECONDS: u64 = 120 * CALL_PERIOD_SECONDS;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn coins(value: Decimal) -> String {
    purse::money::format(value, Currency::Coin)
}

/// Platform revenue, all shards together.
async fn revenue(app: &TestApp) -> Decimal {
    let mut total = Decimal::ZERO;
    for shard in 0..SYSTEM_ACCOUNT_SHARDS {
        let id = AccountId::system(SystemAccount::PlatformRevenue, shard);
        if let Some(account) = ledger::get_account(&app.table, &id).await.unwrap() {
            total += account.balance;
        }
    }
    total
}

fn url(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.base_url.as_deref().unwrap())
}

/// `POST /v1/calls/phone`.
async fn place(app: &TestApp, token: &str, callee: &str) -> TestResponse {
    app.post_retrying("/v1/calls/phone", &json!({"callee_id": callee}), Some(token), &[]).await
}

async fn call_view(app: &TestApp, token: &str, call_id: &str) -> Value {
    let r = app.get(&format!("/v1/calls/{call_id}"), Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

async fn history(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get("/v1/transactions", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().unwrap().clone()
}

/// The sandbox dials our toll-free number, keys `digits` and, once connected, talks for
/// `talk_seconds`; answers when the call is over and its status callback delivered.
async fn dial_in(app: &TestApp, digits: &str, talk_seconds: u64) -> Value {
    TelephonySandbox::new()
        .call(json!({
            "from": CALLER_NUMBER,
            "digits": digits,
            "talk_seconds": talk_seconds,
            "voice_url": url(app, VOICE),
            "status_url": url(app, STATUS),
            "wait": true,
        }))
        .await
}

/// The parameters the provider sends with every request about the inbound call `sid`.
fn common(account: &str, sid: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AccountSid", account.to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
        ("CallSid", sid.to_owned()),
        ("Called", TOLL_FREE.to_owned()),
        ("Caller", CALLER_NUMBER.to_owned()),
        ("Direction", "inbound".to_owned()),
        ("From", CALLER_NUMBER.to_owned()),
        ("To", TOLL_FREE.to_owned()),
    ]
}

fn with(mut params: Vec<(&'static str, String)>, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    params.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    params
}

fn refs<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// POSTs `params` to `path` signed as the provider signs them (`token`: another auth token, to
/// forge).
async fn provider_post(
    app: &TestApp,
    path: &str,
    params: &[(&'static str, String)],
    token: Option<&str>,
) -> TestResponse {
    let params = refs(params);
    let signature = TelephonySandbox::new().sign(&url(app, path), &params, token).await;
    app.post_telephony(path, &params, Some(&signature)).await
}

/// A local server answering every request with `twiml`: the sandbox's voice URL for a call we
/// then connect by hand, so that its Dial action never reaches us.
async fn twiml_server(twiml: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let twiml = twiml.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0_u8; 4096];
                // Headers, then as much body as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{twiml}",
                    twiml.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    base
}

/// A call the provider really made (the sandbox: the callee's Dial leg talked `talk` seconds)
/// but whose voice requests went elsewhere: the test connects it to our call by hand, keying
/// `pin` into our voice webhook. Returns the provider's call sid and account sid.
async fn provider_call_elsewhere(callee: &str, talk: u64) -> (String, String) {
    let twiml =
        format!(r#"<?xml version="1.0"?><Response><Dial timeLimit="600"><Client>{callee}</Client></Dial></Response>"#);
    let elsewhere = twiml_server(twiml).await;
    let record = TelephonySandbox::new()
        .call(json!({
            "from": CALLER_NUMBER, "talk_seconds": talk, "voice_url": elsewhere, "status_url": elsewhere, "wait": true,
        }))
        .await;
    assert_eq!(record["dial"]["duration"], talk, "{record}");
    (record["call_sid"].as_str().unwrap().to_owned(), record["account_sid"].as_str().unwrap().to_owned())
}

/// The PIN request of the provider's call `sid` for `pin`, as the provider sends it.
fn pin_request(account: &str, sid: &str, pin: &str) -> Vec<(&'static str, String)> {
    with(
        common(account, sid),
        &[("CallStatus", "in-progress"), ("Digits", pin), ("FinishedOnKey", ""), ("msg", "Gather End")],
    )
}

// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_phone_call_holds_what_the_balance_pays_for_and_charges_the_talk_time_per_second() {
    let app = TestApp::spawn_serving().await;
    let (caller_id, caller_token) = app.user_with("600.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    let revenue_before = revenue(&app).await;

    let placed = place(&app, &caller_token, &callee_id).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    let ticket = &placed.json;
    assert_eq!(
        (ticket["status"].as_str(), ticket["dial"].as_str(), ticket["price_per_minute"].as_str()),
        (Some("RINGING"), Some(TOLL_FREE), Some("10.00"))
    );
    assert_eq!(ticket["billing_period_seconds"], CALL_PERIOD_SECONDS);
    let pin = ticket["pin"].as_str().unwrap().to_owned();
    assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()), "{pin}");
    let call_id = ticket["call_id"].as_str().unwrap().to_owned();
    assert_eq!(call_view(&app, &caller_token, &call_id).await["channel"], "pstn");

    // 600.00 at 10.00 per period pays for 120 s: the provider is told to cut the call there.
    let record = dial_in(&app, &pin, 95).await;
    let paid = 600 * CALL_PERIOD_SECONDS / 10;
    assert_eq!(record["dial"]["time_limit"], paid.min(MAX_SECONDS), "{record}");
    assert_eq!(record["dial"]["client"], callee_id.as_str());
    assert_eq!(record["dial"]["duration"], 95);
    assert_eq!(record["status_callback"]["delivered"], true, "{record}");
    let kinds: Vec<_> = record["requests"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["voice", "gather", "dial_action"], "{record}");

    // 95 s of talk, per second, rounded up; the callee's 70 % rounded down, the platform the rest.
    let charge = charge_for(dec("10.00"), 95, CALL_PERIOD_SECONDS);
    let (callee_part, platform_part) = shares(charge, 70);
    let call = call_view(&app, &caller_token, &call_id).await;
    assert_eq!(
        (call["status"].as_str(), call["end_reason"].as_str(), call["duration_seconds"].as_u64()),
        (Some("ENDED"), Some("hangup"), Some(95)),
        "{call}"
    );
    assert_eq!(call["amount"], coins(charge).as_str());
    assert_eq!(call_view(&app, &callee_token, &call_id).await["amount"], coins(callee_part).as_str());
    let left = coins(dec("600.00") - charge);
    assert_eq!(app.wallet_of(&caller_id).await, (left.clone(), left.clone(), "0.00".into()));
    assert_eq!(app.wallet_of(&callee_id).await.0, coins(callee_part));
    assert_eq!(revenue(&app).await - revenue_before, platform_part);

    // Both see it in their history: the caller the charge (into the call's escrow), the callee
    // the payout of their share (its other leg is the platform's).
    let paid_out = history(&app, &caller_token).await;
    let charges: Vec<_> = paid_out.iter().filter(|t| t["type"] == "CALL_CHARGE").collect();
    assert_eq!(charges.len(), 1, "{paid_out:?}");
    assert_eq!(
        (charges[0]["amount"].as_str(), charges[0]["direction"].as_str()),
        (Some(coins(charge).as_str()), Some("debit"))
    );
    let earned = history(&app, &callee_token).await;
    assert_eq!(earned.len(), 1, "{earned:?}");
    assert_eq!(
        (earned[0]["type"].as_str(), earned[0]["amount"].as_str(), earned[0]["direction"].as_str()),
        (Some("CALL_EARNING"), Some(coins(callee_part).as_str()), Some("credit"))
    );
    assert_eq!(earned[0]["reference"], call_id.as_str());

    // The provider repeats its status callback, and its Dial action: nothing changes.
    let sid = record["call_sid"].as_str().unwrap();
    let repeats = TelephonySandbox::new().repeat_status_callback(sid, 3).await;
    assert_eq!(repeats, [json!(200), json!(200), json!(200)]);
    let account = record["account_sid"].as_str().unwrap();
    let dial_action = with(
        common(account, sid),
        &[
            ("CallStatus", "in-progress"),
            ("DialCallSid", "CA0"),
            ("DialCallStatus", "completed"),
            ("DialCallDuration", "95"),
        ],
    );
    let again = provider_post(&app, &format!("{VOICE}?leg=dial"), &dial_action, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert!(again.text.contains("<Hangup/>"), "{}", again.text);
    // The PIN again, for a call that is over: it is not connected again.
    let late = provider_post(&app, VOICE, &pin_request(account, sid, &pin), None).await;
    assert!(late.text.contains("<Hangup/>") && !late.text.contains("<Dial"), "{}", late.text);
    assert_eq!(app.wallet_of(&caller_id).await, (left.clone(), left, "0.00".into()));
    assert_eq!(app.wallet_of(&callee_id).await.0, coins(callee_part));
    assert_eq!(call_view(&app, &caller_token, &call_id).await, call);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_forged_callback_changes_nothing_and_a_lost_dial_action_is_settled_from_the_providers_records() {
    let app = TestApp::spawn_serving().await;
    let (caller_id, caller_token) = app.user_with("600.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    let callee = UserId::parse(&callee_id).unwrap();
    purse::store::calls::set_call_price(&app.table, &callee, dec("3.33")).await.unwrap();
    let placed = place(&app, &caller_token, &callee_id).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    let (call_id, pin) = (placed.json["call_id"].as_str().unwrap(), placed.json["pin"].as_str().unwrap());
    let (sid, account) = provider_call_elsewhere(&callee_id, 37).await;
    let untouched = ("600.00".to_owned(), "600.00".to_owned(), "0.00".to_owned());

    // A PIN request signed with another token, or not signed: refused, nothing connected.
    let connect = pin_request(&account, &sid, pin);
    let forged = provider_post(&app, VOICE, &connect, Some("not-the-auth-token")).await;
    assert_eq!((forged.status, forged.code()), (403, "invalid_signature"), "{}", forged.text);
    let unsigned = app.post_telephony(VOICE, &refs(&connect), None).await;
    assert_eq!(unsigned.status, 403, "{}", unsigned.text);
    assert_eq!(call_view(&app, &caller_token, call_id).await["status"], "RINGING");
    assert_eq!(app.wallet_of(&caller_id).await, untouched);

    // The real one connects: 600.00 at 3.33 per period pays for 360 s, capped at 120 periods.
    let answer = provider_post(&app, VOICE, &connect, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let seconds = MAX_SECONDS.min(600 * CALL_PERIOD_SECONDS * 100 / 333);
    let action = format!("{}?leg=dial", url(&app, VOICE));
    assert!(answer.text.contains(&format!(r#"<Dial timeLimit="{seconds}" action="{action}""#)), "{}", answer.text);
    assert!(answer.text.contains(&format!("<Client>{callee_id}</Client>")), "{}", answer.text);
    assert_eq!(answer.header("content-type").map(|c| c.starts_with("text/xml")), Some(true));
    let held = charge_for(dec("3.33"), seconds, CALL_PERIOD_SECONDS);
    let holding = (coins(dec("600.00")), coins(dec("600.00") - held), coins(held));
    assert_eq!(app.wallet_of(&caller_id).await, holding);
    // The provider repeats it (no answer reached it): the same Dial, nothing held twice.
    let repeat = provider_post(&app, VOICE, &connect, None).await;
    assert_eq!(repeat.text, answer.text);
    assert_eq!(app.wallet_of(&caller_id).await, holding);
    assert_eq!(call_view(&app, &caller_token, call_id).await["status"], "ACTIVE");

    // Forged Dial actions: another token, another talk time under a signature of the real
    // one, the voice URL's signature used on the action URL, none at all. Nothing moves.
    let dial = |talk: &str| {
        with(
            common(&account, &sid),
            &[
                ("CallStatus", "in-progress"),
                ("DialCallSid", "CA1"),
                ("DialCallStatus", "completed"),
                ("DialCallDuration", talk),
            ],
        )
    };
    let sandbox = TelephonySandbox::new();
    let action_path = format!("{VOICE}?leg=dial");
    let other_token = provider_post(&app, &action_path, &dial("1"), Some("not-the-auth-token")).await;
    let real_signature = sandbox.sign(&action, &refs(&dial("37")), None).await;
    let other_params = app.post_telephony(&action_path, &refs(&dial("1")), Some(&real_signature)).await;
    let voice_signature = sandbox.sign(&url(&app, VOICE), &refs(&dial("1")), None).await;
    let other_url = app.post_telephony(&action_path, &refs(&dial("1")), Some(&voice_signature)).await;
    let none = app.post_telephony(&action_path, &refs(&dial("1")), None).await;
    let status = with(common(&account, &sid), &[("CallStatus", "completed"), ("CallDuration", "40")]);
    let forged_status = provider_post(&app, STATUS, &status, Some("not-the-auth-token")).await;
    for r in [other_token, other_params, other_url, none, forged_status] {
        assert_eq!((r.status, r.code()), (403, "invalid_signature"), "{}", r.text);
    }
    assert_eq!(call_view(&app, &caller_token, call_id).await["status"], "ACTIVE");
    assert_eq!(app.wallet_of(&caller_id).await, holding);
    assert_eq!(app.wallet_of(&callee_id).await.0, "0.00");

    // The Dial action never came: the status callback settles the call from the provider's
    // Calls resource, where the callee's leg talked 37 s.
    let settled = provider_post(&app, STATUS, &status, None).await;
    assert_eq!(settled.status, 200, "{}", settled.text);
    let charge = charge_for(dec("3.33"), 37, CALL_PERIOD_SECONDS);
    assert_eq!(coins(charge), "61.61", "3.33 * 37 / 2 = 61.605, rounded up");
    let (callee_part, _) = shares(charge, 70);
    let call = call_view(&app, &caller_token, call_id).await;
    assert_eq!((call["status"].as_str(), call["duration_seconds"].as_u64()), (Some("ENDED"), Some(37)), "{call}");
    assert_eq!(call["amount"], coins(charge).as_str());
    let left = coins(dec("600.00") - charge);
    assert_eq!(app.wallet_of(&caller_id).await, (left.clone(), left.clone(), "0.00".into()));
    assert_eq!(app.wallet_of(&callee_id).await.0, coins(callee_part));
    assert_eq!(call_view(&app, &callee_token, call_id).await["amount"], coins(callee_part).as_str());

    // The Dial action arriving late, and the status callback again: nothing changes.
    assert_eq!(provider_post(&app, &action_path, &dial("37"), None).await.status, 200);
    assert_eq!(provider_post(&app, STATUS, &status, None).await.status, 200);
    assert_eq!(app.wallet_of(&caller_id).await, (left.clone(), left, "0.00".into()));
    assert_eq!(app.wallet_of(&callee_id).await.0, coins(callee_part));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_phone_call_whose_callbacks_never_come_is_left_to_reconciliation_and_settled_from_the_provider() {
    let app = TestApp::spawn_serving().await;
    let (caller_id, caller_token) = app.user_with("100.00").await;
    let (callee_id, _) = app.user_with("0.00").await;
    let placed = place(&app, &caller_token, &callee_id).await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    let (call_id, pin) = (placed.json["call_id"].as_str().unwrap(), placed.json["pin"].as_str().unwrap());
    let (sid, account) = provider_call_elsewhere(&callee_id, 9).await;
    assert_eq!(provider_post(&app, VOICE, &pin_request(&account, &sid, pin), None).await.status, 200);
    assert_eq!(app.wallet_of(&caller_id).await.2, "100.00");

    // The sweeper leaves a connected phone call alone: no ticks, no disconnect rule.
    let calls = purse::service::calls::Calls::from_env(&app.function_env("schedule_call_sweeper"), &app.aws).unwrap();
    let swept = calls.sweep().await.unwrap();
    assert_eq!((swept["examined"].as_u64(), swept["ended"].as_u64()), (Some(1), Some(0)), "{swept}");
    assert_eq!(call_view(&app, &caller_token, call_id).await["status"], "ACTIVE");
    assert_eq!(app.wallet_of(&caller_id).await.2, "100.00");

    // Long after its time limit, reconciliation reads the talk time from the provider.
    let webhooks =
        TelephonyWebhooks::status_from_env(&app.function_env("webhook_telephony_status"), &app.aws).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let early = webhooks.reconcile(now).await.unwrap();
    assert_eq!(early["overdue"], 0, "{early}");
    let late = webhooks.reconcile(now + 24 * 3600 * 1000).await.unwrap();
    assert_eq!(late, json!({"overdue": 1, "settled": 1, "stuck": 0}));
    let charge = charge_for(dec("10.00"), 9, CALL_PERIOD_SECONDS);
    let call = call_view(&app, &caller_token, call_id).await;
    assert_eq!(
        (call["status"].as_str(), call["amount"].as_str()),
        (Some("ENDED"), Some(coins(charge).as_str())),
        "{call}"
    );
    assert_eq!(app.wallet_of(&caller_id).await.0, coins(dec("100.00") - charge));
    assert_eq!(app.wallet_of(&caller_id).await.2, "0.00");
    assert_eq!(webhooks.reconcile(now + 24 * 3600 * 1000).await.unwrap()["overdue"], 0);
    let id = CallId::parse(call_id).unwrap();
    assert!(!webhooks.settle(&id, 9, "completed").await.unwrap().1, "settled once");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn an_unknown_pin_hangs_up_and_a_caller_short_of_a_minute_is_refused() {
    let app = TestApp::spawn_serving().await;
    let (callee_id, _) = app.user_with("0.00").await;
    let (broke_id, broke_token) = app.user_with("0.00").await;

    // Refused at once: no money for a minute, oneself, nobody, a body of the wrong shape.
    let r = place(&app, &broke_token, &callee_id).await;
    assert_eq!((r.status, r.code()), (422, "insufficient_funds"), "{}", r.text);
    let r = place(&app, &broke_token, &broke_id).await;
    assert_eq!((r.status, r.code()), (422, "cannot_call_self"), "{}", r.text);
    let r = place(&app, &broke_token, &UserId::generate().to_string()).await;
    assert_eq!((r.status, r.code()), (404, "callee_not_found"), "{}", r.text);
    let r = app.post("/v1/calls/phone", &json!({"callee": callee_id}), Some(&broke_token)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_request"), "{}", r.text);
    assert_eq!(app.post("/v1/calls/phone", &json!({"callee_id": callee_id}), None).await.status, 401);

    // A PIN nobody holds: told so, hung up on, nothing dialled.
    let record = dial_in(&app, "000000", 30).await;
    assert!(record["dial"].is_null(), "{record}");
    let last = record["twiml"].as_array().unwrap().last().unwrap().as_str().unwrap().to_owned();
    assert!(last.contains("<Say>") && last.contains("<Hangup/>"), "{last}");

    // 15.00 pays for 3 s at 10.00 per 2 s. The first call holds all of it; a second call placed
    // meanwhile finds nothing left when its caller dials in, and is refused.
    let (caller_id, caller_token) = app.user_with("15.00").await;
    let first = place(&app, &caller_token, &callee_id).await;
    let second = place(&app, &caller_token, &callee_id).await;
    assert_eq!((first.status, second.status), (201, 201), "{} {}", first.text, second.text);
    let sandbox = TelephonySandbox::new();
    let running = sandbox
        .call(json!({
            "from": CALLER_NUMBER, "digits": first.json["pin"], "talk_seconds": 30, "real_time": true,
            "voice_url": url(&app, VOICE), "status_url": url(&app, STATUS),
        }))
        .await;
    let first_id = first.json["call_id"].as_str().unwrap();
    eventually(10, "the first call is connected", || async {
        (call_view(&app, &caller_token, first_id).await["status"] == "ACTIVE").then_some(())
    })
    .await;
    assert_eq!(app.wallet_of(&caller_id).await, ("15.00".into(), "0.00".into(), "15.00".into()));
    let refused = dial_in(&app, second.json["pin"].as_str().unwrap(), 30).await;
    assert!(refused["dial"].is_null(), "{refused}");
    let second_view = call_view(&app, &caller_token, second.json["call_id"].as_str().unwrap()).await;
    assert_eq!(
        (second_view["status"].as_str(), second_view["end_reason"].as_str()),
        (Some("ENDED"), Some("insufficient_funds"))
    );

    // The first runs out at its time limit: all 15.00 charged, the call ended for want of funds.
    let sid = running["call_sid"].as_str().unwrap().to_owned();
    eventually(20, "the first call is over", || async {
        (sandbox.record(&sid).await["state"] == "done").then_some(())
    })
    .await;
    let first_view = call_view(&app, &caller_token, first_id).await;
    assert_eq!(
        (first_view["status"].as_str(), first_view["end_reason"].as_str(), first_view["amount"].as_str()),
        (Some("ENDED"), Some("insufficient_funds"), Some("15.00")),
        "{first_view}"
    );
    assert_eq!(first_view["duration_seconds"], 15 * CALL_PERIOD_SECONDS / 10);
    assert_eq!(app.wallet_of(&caller_id).await, ("0.00".into(), "0.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn with_faults_on_a_phone_call_is_charged_once_for_its_talk_time_or_not_at_all() {
    let _heavy = purse_tests::HEAVY.lock().await;
    let app = TestApp::spawn_serving().await;
    let (caller_id, caller_token) = app.user_with("1000.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    app.set_faults("conflict=0.15,throttle=0.12,internal=0.10,lost_response=0.06,seed=53").await;
    let mut calls = Vec::new();
    for talk in [7_u64, 8, 9, 10] {
        let placed = place(&app, &caller_token, &callee_id).await;
        if placed.status != 201 {
            continue;
        }
        let record = dial_in(&app, placed.json["pin"].as_str().unwrap(), talk).await;
        let sandbox = TelephonySandbox::new();
        // Every status callback is repeated, as a provider may.
        let _ = sandbox.repeat_status_callback(record["call_sid"].as_str().unwrap(), 2).await;
        calls.push((placed.json["call_id"].as_str().unwrap().to_owned(), talk, record));
    }
    let report = app.fault_report().await;
    app.faults_off().await;
    assert!(!calls.is_empty(), "no call could be placed under faults: {report}");

    // Whatever the faults did, each call ends: one still ACTIVE (every callback failed) is
    // settled by reconciliation from the provider's records; one never connected rings out.
    let webhooks =
        TelephonyWebhooks::status_from_env(&app.function_env("webhook_telephony_status"), &app.aws).await.unwrap();
    webhooks.reconcile(chrono::Utc::now().timestamp_millis() + 24 * 3600 * 1000).await.unwrap();
    // A ring timeout lost to a fault is the sweeper's to apply.
    let sweeper = purse::service::calls::Calls::from_env(&app.function_env("schedule_call_sweeper"), &app.aws).unwrap();
    let (mut spent, mut earned, mut connected) = (Decimal::ZERO, Decimal::ZERO, 0);
    for (call_id, talk, record) in &calls {
        let call = eventually(40, "the call ends", || async {
            let view = call_view(&app, &caller_token, call_id).await;
            if view["status"] == "RINGING" {
                let _ = sweeper.sweep().await;
            }
            (view["status"] == "ENDED").then_some(view)
        })
        .await;
        let charged = dec(call["amount"].as_str().unwrap());
        if record["dial"].is_null() {
            assert_eq!(charged, Decimal::ZERO, "never connected, never charged: {call} {record}");
        } else {
            connected += 1;
            // The callee talked `talk` seconds or, if our Dial TwiML never reached the provider, not at all.
            let talked = record["dial"]["duration"].as_u64().unwrap();
            assert!(talked == *talk, "{record}");
            assert_eq!(charged, charge_for(dec("10.00"), talked, CALL_PERIOD_SECONDS), "{call} {record}");
        }
        spent += charged;
        earned += dec(call_view(&app, &callee_token, call_id).await["amount"].as_str().unwrap());
    }
    assert_eq!(
        app.wallet_of(&caller_id).await,
        (coins(dec("1000.00") - spent), coins(dec("1000.00") - spent), "0.00".into())
    );
    assert_eq!(app.wallet_of(&callee_id).await.0, coins(earned));
    println!("{connected} of {} phone calls connected; faults: {report}", calls.len());
    app.assert_ledger_balanced().await;
}
