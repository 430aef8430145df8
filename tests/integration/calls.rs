//! Paid in-app calls end to end, through the local WebSocket API with a real WebSocket client:
//! tickets, signaling, per-period billing on the ledger, cut-offs, hang-ups, disconnects, and
//! billing ticks that arrive twice or late. Test stacks bill a "minute" every
//! [`CALL_PERIOD_SECONDS`] seconds at the default price (10.00), the callee earning 70 %.

use purse::domain::ids::{CallId, UserId};
use purse::ledger::store as ledger;
use purse::ledger::AccountId;
use purse_tests::{eventually, TestApp, WsClient, WsTestApp, CALL_PERIOD_SECONDS};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A signed-in user with a WebSocket open.
struct Party {
    id: String,
    token: String,
    ws: WsClient,
}

/// A caller whose wallet holds `caller_funds` and a callee with nothing, each connected.
async fn two_parties(app: &WsTestApp, caller_funds: &str) -> (Party, Party) {
    let (caller_id, caller_token) = app.user_with(caller_funds).await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    let caller = Party { ws: phone(app, &caller_token).await, id: caller_id, token: caller_token };
    let callee = Party { ws: phone(app, &callee_token).await, id: callee_id, token: callee_token };
    (caller, callee)
}

/// Opens a WebSocket for `token`'s user with a fresh ticket.
async fn phone(app: &WsTestApp, token: &str) -> WsClient {
    app.ws_connect(token).await
}

/// `PUT /v1/me/call-price`.
async fn set_price(app: &TestApp, token: &str, price: &str) -> purse_tests::TestResponse {
    let auth = format!("Bearer {token}");
    let body = json!({"price_per_minute": price}).to_string();
    app.send(
        "PUT",
        "/v1/me/call-price",
        &[("authorization", &auth), ("content-type", "application/json")],
        body.as_bytes(),
    )
    .await
}

/// Every frame that arrives within `quiet` of the previous one.
async fn drain(client: &mut WsClient, quiet: Duration) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(frame) = client.next(quiet).await {
        frames.push(frame);
    }
    frames
}

/// Caller rings callee, callee answers: returns the call id (both saw `call.started`).
async fn start_call(caller: &mut WsClient, callee: &mut WsClient, callee_id: &str) -> String {
    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    let ringing = caller.next_of_type("call.ringing", WAIT).await;
    let incoming = callee.next_of_type("call.incoming", WAIT).await;
    let call_id = ringing["call_id"].as_str().unwrap().to_owned();
    assert_eq!(incoming["call_id"], call_id.as_str());
    assert_eq!(incoming["price_per_minute"], "10.00");
    callee.send(&json!({"action": "call.accept", "call_id": call_id})).await;
    let started = caller.next_of_type("call.started", WAIT).await;
    assert_eq!(started["call_id"], call_id.as_str());
    assert_eq!(started["billing_period_seconds"], CALL_PERIOD_SECONDS);
    callee.next_of_type("call.started", WAIT).await;
    call_id
}

async fn call_of(app: &TestApp, token: &str, call_id: &str) -> Value {
    let r = app.get(&format!("/v1/calls/{call_id}"), Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

async fn ended(app: &TestApp, token: &str, call_id: &str) -> Value {
    eventually(30, "the call ends", || async {
        let call = call_of(app, token, call_id).await;
        (call["status"] == "ENDED").then_some(call)
    })
    .await
}

/// The CALL_CHARGE movements of a call, from the caller's history.
async fn charges(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get("/v1/transactions?type=CALL_CHARGE&limit=100", Some(token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn two_users_call_exchange_signals_and_pay_per_minute() {
    let app = TestApp::spawn_serving_ws().await;
    let (
        Party { id: caller_id, token: caller_token, ws: mut caller },
        Party { id: callee_id, token: callee_token, ws: mut callee },
    ) = two_parties(&app, "100.00").await;

    let call_id = start_call(&mut caller, &mut callee, &callee_id).await;
    // The first minute is held at once.
    assert_eq!(app.wallet_of(&caller_id).await, ("100.00".into(), "90.00".into(), "10.00".into()));

    // Offer, answer and ICE candidates are relayed verbatim, each to the other party only.
    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"});
    caller.send(&json!({"action": "signal", "call_id": call_id, "data": offer})).await;
    let got = callee.next_of_type("signal", WAIT).await;
    assert_eq!(got["data"], offer);
    let answer = json!({"type": "answer", "sdp": "v=0\r\n"});
    callee.send(&json!({"action": "signal", "call_id": call_id, "data": answer})).await;
    assert_eq!(caller.next_of_type("signal", WAIT).await["data"], answer);
    let ice = json!({"candidate": "candidate:1 1 UDP 2122252543 192.168.1.2 51000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    caller.send(&json!({"action": "signal", "call_id": call_id, "data": ice})).await;
    assert_eq!(callee.next_of_type("signal", WAIT).await["data"], ice);

    // Two periods pass: two minutes billed, each announced with the caller's balance.
    let billing = caller.next_of_type("billing", WAIT).await;
    assert_eq!(billing["minutes_billed"], 1);
    assert_eq!(billing["balance"], "90.00");
    let billing = caller.next_of_type("billing", WAIT).await;
    assert_eq!(billing["minutes_billed"], 2);
    assert_eq!(callee.next_of_type("billing", WAIT).await["minutes_billed"], 1);

    caller.send(&json!({"action": "call.end", "call_id": call_id})).await;
    let end = callee.next_of_type("call.ended", WAIT).await;
    assert_eq!(end["reason"], "hangup");
    caller.next_of_type("call.ended", WAIT).await;

    let call = ended(&app, &caller_token, &call_id).await;
    assert_eq!(call["minutes_billed"], 2);
    assert_eq!(call["role"], "caller");
    // Two whole minutes and a partial one charged per second, rounded up to the cent.
    let charged: rust_decimal::Decimal = call["amount"].as_str().unwrap().parse().unwrap();
    assert!(charged > "20.00".parse().unwrap() && charged <= "30.00".parse().unwrap(), "{call}");
    let (balance, available, held) = app.wallet_of(&caller_id).await;
    assert_eq!(held, "0.00");
    assert_eq!(balance, available);
    let paid: rust_decimal::Decimal =
        "100.00".parse::<rust_decimal::Decimal>().unwrap() - balance.parse::<rust_decimal::Decimal>().unwrap();
    assert_eq!(paid, charged);

    // The callee earned 70 % of every charge (rounded down), and sees it in their history.
    let callee_view = call_of(&app, &callee_token, &call_id).await;
    assert_eq!(callee_view["role"], "callee");
    let earned: rust_decimal::Decimal = callee_view["amount"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.wallet_of(&callee_id).await.0, callee_view["amount"].as_str().unwrap());
    assert!(
        earned >= charged * rust_decimal::Decimal::new(69, 2) && earned <= charged * rust_decimal::Decimal::new(70, 2)
    );
    // One payout when the call ended: the callee's share, the platform's the other leg.
    let earnings = app.get("/v1/transactions?type=CALL_EARNING", Some(&callee_token)).await;
    let earnings = earnings.json["items"].as_array().unwrap().clone();
    assert_eq!(earnings.len(), 1, "{earnings:?}");
    assert_eq!(earnings[0]["direction"], "credit");
    assert_eq!(earnings[0]["reference"], call_id.as_str());
    assert_eq!(earnings[0]["amount"], callee_view["amount"]);
    assert!(charges(&app, &callee_token).await.is_empty());
    let caller_history = charges(&app, &caller_token).await;
    assert_eq!(caller_history.len(), 3);
    assert!(caller_history.iter().all(|t| t["direction"] == "debit" && t["status"] == "COMPLETED"));

    // Both list the call.
    for token in [&caller_token, &callee_token] {
        let list = app.get("/v1/calls", Some(token)).await;
        assert_eq!(list.json["items"][0]["id"], call_id.as_str(), "{}", list.text);
    }
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_third_user_cannot_signal_into_or_end_someone_elses_call() {
    let app = TestApp::spawn_serving_ws().await;
    let (_, caller_token) = app.user_with("100.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    let (_, intruder_token) = app.user_with("100.00").await;
    let mut caller = phone(&app, &caller_token).await;
    let mut callee = phone(&app, &callee_token).await;
    let mut intruder = phone(&app, &intruder_token).await;
    let call_id = start_call(&mut caller, &mut callee, &callee_id).await;

    intruder.send(&json!({"action": "signal", "call_id": call_id, "data": {"type": "offer", "sdp": "evil"}})).await;
    let error = intruder.next_of_type("error", WAIT).await;
    assert_eq!(error["code"], "call_not_found");
    intruder.send(&json!({"action": "call.end", "call_id": call_id})).await;
    assert_eq!(intruder.next_of_type("error", WAIT).await["code"], "call_not_found");
    intruder.send(&json!({"action": "call.accept", "call_id": call_id})).await;
    assert_eq!(intruder.next_of_type("error", WAIT).await["code"], "call_not_found");
    // Nothing reached the parties but billing, and the call goes on.
    for party in [&mut caller, &mut callee] {
        let frames = drain(party, Duration::from_millis(500)).await;
        assert!(frames.iter().all(|f| f["type"] == "billing"), "{frames:?}");
    }
    assert_eq!(call_of(&app, &caller_token, &call_id).await["status"], "ACTIVE");

    // Malformed and unknown frames get errors with stable codes.
    intruder.send_text("not json").await;
    assert_eq!(intruder.next_of_type("error", WAIT).await["code"], "unknown_action");
    intruder.send(&json!({"action": "call.invite"})).await;
    assert_eq!(intruder.next_of_type("error", WAIT).await["code"], "invalid_message");
    intruder.send(&json!({"action": "signal", "call_id": call_id, "data": {"sdp": "x".repeat(20_000)}})).await;
    let big = intruder.next_of_type("error", WAIT).await;
    assert!(big["code"] == "signal_too_large" || big["code"] == "message_too_large", "{big}");

    caller.send(&json!({"action": "call.end", "call_id": call_id})).await;
    ended(&app, &caller_token, &call_id).await;
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_caller_with_two_and_a_half_minutes_is_cut_off_at_the_third_and_both_are_told() {
    let app = TestApp::spawn_serving_ws().await;
    let (Party { id: caller_id, token: caller_token, ws: mut caller }, Party { id: callee_id, ws: mut callee, .. }) =
        two_parties(&app, "25.00").await;
    let call_id = start_call(&mut caller, &mut callee, &callee_id).await;

    let cut = caller.next_of_type("call.ended", Duration::from_secs(CALL_PERIOD_SECONDS * 6)).await;
    assert_eq!(cut["reason"], "insufficient_funds");
    assert_eq!(cut["minutes_billed"], 2);
    assert_eq!(cut["balance"], "5.00");
    let told = callee.next_of_type("call.ended", WAIT).await;
    assert_eq!(told["reason"], "insufficient_funds");
    assert_eq!(told["amount"], "14.00");

    let call = ended(&app, &caller_token, &call_id).await;
    assert_eq!(call["amount"], "20.00");
    assert_eq!(call["duration_seconds"], 2 * CALL_PERIOD_SECONDS);
    assert_eq!(app.wallet_of(&caller_id).await, ("5.00".into(), "5.00".into(), "0.00".into()));
    assert_eq!(app.wallet_of(&callee_id).await.0, "14.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn duplicate_and_late_billing_ticks_change_nothing() {
    let app = TestApp::spawn_serving_ws().await;
    let (Party { id: caller_id, token: caller_token, ws: mut caller }, Party { id: callee_id, ws: mut callee, .. }) =
        two_parties(&app, "100.00").await;
    let call_id = start_call(&mut caller, &mut callee, &callee_id).await;
    assert_eq!(caller.next_of_type("billing", WAIT).await["minutes_billed"], 1);

    // Replay minute 1 (late), minute 2 twice at once (duplicates), and minute 7 (ahead).
    let calls = purse::service::calls::Calls::from_env(&app.function_env("sqs_call_billing"), &app.aws).unwrap();
    let id = CallId::parse(&call_id).unwrap();
    for minute in [1, 1, 7] {
        calls.handle(&purse::service::calls::BillingMessage::Tick { call_id: call_id.clone(), minute }).await.unwrap();
    }
    let twice = futures::future::join_all((0..4).map(|_| calls.tick(&id, 2))).await;
    let billed_now = twice.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    assert!(billed_now <= 1, "{twice:?}");
    eventually(20, "minute 2 is billed", || async {
        (call_of(&app, &caller_token, &call_id).await["minutes_billed"].as_u64() >= Some(2)).then_some(())
    })
    .await;

    caller.send(&json!({"action": "call.end", "call_id": call_id})).await;
    let call = ended(&app, &caller_token, &call_id).await;
    // Late ticks after the end change nothing either.
    for minute in 1..6 {
        calls.handle(&purse::service::calls::BillingMessage::Tick { call_id: call_id.clone(), minute }).await.unwrap();
    }
    let after = call_of(&app, &caller_token, &call_id).await;
    assert_eq!(after, call);
    let minutes = call["minutes_billed"].as_u64().unwrap();
    assert_eq!(charges(&app, &caller_token).await.len() as u64, minutes + 1);
    let paid = "100.00".parse::<rust_decimal::Decimal>().unwrap()
        - app.wallet_of(&caller_id).await.0.parse::<rust_decimal::Decimal>().unwrap();
    assert_eq!(paid.to_string(), call["amount"].as_str().unwrap());
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_disconnect_ends_and_settles_the_call() {
    let app = TestApp::spawn_serving_ws().await;
    let (Party { id: caller_id, token: caller_token, ws: mut caller }, Party { id: callee_id, ws: mut callee, .. }) =
        two_parties(&app, "100.00").await;
    let call_id = start_call(&mut caller, &mut callee, &callee_id).await;
    callee.close().await;

    let told = caller.next_of_type("call.ended", WAIT).await;
    assert_eq!(told["reason"], "disconnected");
    let call = ended(&app, &caller_token, &call_id).await;
    assert_eq!(call["end_reason"], "disconnected");
    let (balance, available, held) = app.wallet_of(&caller_id).await;
    assert_eq!(held, "0.00");
    assert_eq!(balance, available);
    let paid = "100.00".parse::<rust_decimal::Decimal>().unwrap() - balance.parse::<rust_decimal::Decimal>().unwrap();
    assert_eq!(paid.to_string(), call["amount"].as_str().unwrap());
    assert!(paid > rust_decimal::Decimal::ZERO && paid <= "10.00".parse().unwrap(), "{call}");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_rejected_or_unanswered_call_costs_nothing() {
    let app = TestApp::spawn_serving_ws().await;
    let (Party { id: caller_id, ws: mut caller, .. }, Party { id: callee_id, token: callee_token, ws: mut callee }) =
        two_parties(&app, "100.00").await;

    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    let call_id = caller.next_of_type("call.ringing", WAIT).await["call_id"].as_str().unwrap().to_owned();
    callee.next_of_type("call.incoming", WAIT).await;
    // The caller cannot answer their own call.
    caller.send(&json!({"action": "call.accept", "call_id": call_id})).await;
    assert_eq!(caller.next_of_type("error", WAIT).await["code"], "not_callee");
    callee.send(&json!({"action": "call.reject", "call_id": call_id})).await;
    assert_eq!(caller.next_of_type("call.ended", WAIT).await["reason"], "rejected");

    // Unanswered: rings out after the ring timeout.
    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    let second = caller.next_of_type("call.ringing", WAIT).await["call_id"].as_str().unwrap().to_owned();
    let out = caller.next_of_type("call.ended", Duration::from_secs(30)).await;
    assert_eq!(out["call_id"], second.as_str());
    assert_eq!(out["reason"], "no_answer");

    // Nobody to ring: the callee has no connection.
    callee.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    assert_eq!(caller.next_of_type("call.ended", WAIT).await["reason"], "unavailable");

    // Yourself, nobody, and without the first minute's coins.
    caller.send(&json!({"action": "call.invite", "callee_id": caller_id})).await;
    assert_eq!(caller.next_of_type("error", WAIT).await["code"], "cannot_call_self");
    caller.send(&json!({"action": "call.invite", "callee_id": UserId::generate().to_string()})).await;
    assert_eq!(caller.next_of_type("error", WAIT).await["code"], "callee_not_found");
    let (_, poor_token) = app.user_with("9.99").await;
    let mut poor = phone(&app, &poor_token).await;
    poor.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    assert_eq!(poor.next_of_type("error", WAIT).await["code"], "insufficient_funds");

    assert_eq!(app.wallet_of(&caller_id).await, ("100.00".into(), "100.00".into(), "0.00".into()));
    assert_eq!(call_of(&app, &callee_token, &call_id).await["minutes_billed"], 0);
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_ticket_opens_one_connection_once_and_nothing_else_does() {
    let app = TestApp::spawn_serving_ws().await;
    let (_, token) = app.user_with("0.00").await;
    let ticket = app.post("/v1/ws-tickets", &json!({}), Some(&token)).await;
    assert_eq!(ticket.status, 201);
    let url = ticket.json["url"].as_str().unwrap().to_owned();
    let mut first = WsClient::connect(&url).await.expect("first use");
    first.send(&json!({"action": "ping"})).await;
    first.next_of_type("pong", WAIT).await;
    assert_eq!(WsClient::connect(&url).await.err(), Some(401), "a ticket is single-use");
    let bare = url.split('?').next().unwrap().to_owned();
    assert_eq!(WsClient::connect(&bare).await.err(), Some(401));
    assert_eq!(WsClient::connect(&format!("{bare}?ticket=forged")).await.err(), Some(401));
    // A ticket needs a signed-in user.
    assert_eq!(app.post("/v1/ws-tickets", &json!({}), None).await.status, 401);
}

#[tokio::test]
async fn a_callee_sets_a_bounded_price_that_new_calls_pay() {
    let app = TestApp::spawn_serving_ws().await;
    let (caller_id, caller_token) = app.user_with("100.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    for (price, status, code) in [
        ("0.50", 422, "price_out_of_range"),
        ("500.01", 422, "price_out_of_range"),
        ("1.005", 400, "too_many_decimals"),
    ] {
        let r = set_price(&app, &callee_token, price).await;
        assert_eq!((r.status, r.code()), (status, code), "{price}: {}", r.text);
    }
    let r = set_price(&app, &callee_token, "4.00").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["price_per_minute"], "4.00");

    let mut caller = phone(&app, &caller_token).await;
    let mut callee = phone(&app, &callee_token).await;
    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    assert_eq!(caller.next_of_type("call.ringing", WAIT).await["price_per_minute"], "4.00");
    let incoming = callee.next_of_type("call.incoming", WAIT).await;
    callee.send(&json!({"action": "call.accept", "call_id": incoming["call_id"]})).await;
    caller.next_of_type("call.started", WAIT).await;
    assert_eq!(app.wallet_of(&caller_id).await.2, "4.00");
    caller.send(&json!({"action": "call.end", "call_id": incoming["call_id"]})).await;
    caller.next_of_type("call.ended", WAIT).await;
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn with_faults_on_every_minute_is_billed_exactly_once() {
    let _heavy = purse_tests::HEAVY.lock().await;
    let app = TestApp::spawn_serving_ws().await;
    let (
        Party { id: caller_id, token: caller_token, ws: mut caller },
        Party { id: callee_id, token: callee_token, ws: mut callee },
    ) = two_parties(&app, "1000.00").await;
    let call_id = start_call(&mut caller, &mut callee, &callee_id).await;

    app.set_faults("conflict=0.15,throttle=0.05,internal=0.02,lost_response=0.03,seed=11").await;
    // For five periods the sweeper also runs every second (replaying any tick a fault lost), and
    // ticks arrive twice: the one just billed and the next, concurrently with the queue's own.
    let calls = purse::service::calls::Calls::from_env(&app.function_env("sqs_call_billing"), &app.aws).unwrap();
    let id = CallId::parse(&call_id).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(CALL_PERIOD_SECONDS * 5 + 1);
    while std::time::Instant::now() < until {
        let _ = calls.sweep().await;
        if let Ok(Some(call)) = purse::store::calls::get_call(&app.table, &id).await {
            let b = call.billed_minutes;
            let _ = futures::future::join_all([b, b, b + 1].map(|m| calls.tick(&id, m.max(1)))).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    caller.send(&json!({"action": "call.end", "call_id": call_id})).await;
    let call = eventually(60, "the call ends", || async {
        let r = app.get(&format!("/v1/calls/{call_id}"), Some(&caller_token)).await;
        (r.status == 200 && r.json["status"] == "ENDED").then_some(r.json)
    })
    .await;
    let report = app.fault_report().await;
    app.faults_off().await;

    let minutes = call["minutes_billed"].as_u64().unwrap();
    assert!(minutes >= 3, "{call}");
    let history = charges(&app, &caller_token).await;
    // One movement per billed minute plus the partial one, each posted once.
    assert_eq!(history.len() as u64, minutes + 1, "{history:?}");
    let mut ids: Vec<_> = history.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, minutes + 1);
    let whole = history.iter().filter(|t| t["amount"] == "10.00").count() as u64;
    assert!(whole >= minutes, "{history:?}");
    let paid = "1000.00".parse::<rust_decimal::Decimal>().unwrap()
        - app.wallet_of(&caller_id).await.0.parse::<rust_decimal::Decimal>().unwrap();
    assert_eq!(paid.to_string(), call["amount"].as_str().unwrap());
    assert_eq!(app.wallet_of(&caller_id).await.2, "0.00");
    assert_eq!(
        app.wallet_of(&callee_id).await.0,
        call_of(&app, &callee_token, &call_id).await["amount"].as_str().unwrap()
    );
    println!("faults during the call: {report}");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn measured_requests_per_billed_minute() {
    // No pollers: this test runs each tick itself, so the emulator's counters see one tick alone.
    let app = TestApp::spawn().await;
    let (caller_id, _) = app.user_with("100.00").await;
    let (callee_id, _) = app.user_with("0.00").await;
    let calls = purse::service::calls::Calls::from_env(&app.function_env("sqs_call_billing"), &app.aws).unwrap();
    let (caller, callee) = (UserId::parse(&caller_id).unwrap(), UserId::parse(&callee_id).unwrap());
    let call = calls.place(&caller, &callee, "app", None, None).await.unwrap();
    calls.accept(&callee, call.id.as_str(), None).await.unwrap();
    for minute in 1..=3 {
        tokio::time::sleep(Duration::from_secs(CALL_PERIOD_SECONDS)).await;
        purse_tests::emulator_stats(true).await;
        let after = calls.tick(&call.id, minute).await.unwrap().expect("billed");
        calls.announce(&after).await;
        println!("minute {minute}: {}", purse_tests::emulator_stats(false).await);
    }
    purse_tests::emulator_stats(true).await;
    let (ended, _) = calls.finish(&call.id, "hangup").await.unwrap();
    calls.announce(&ended).await;
    println!("end: {}", purse_tests::emulator_stats(false).await);
    for item in app.scan_all().await {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let size: usize = item.iter().map(|(k, v)| k.len() + format!("{v:?}").len().saturating_sub(6)).sum();
        if pk.starts_with("TXN#") || pk.starts_with("CALL#") || pk.starts_with("ACCOUNT#") {
            println!(
                "~{size:>5} bytes  {pk} {}",
                item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
            );
        }
    }
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn answering_on_one_device_stops_the_others_ringing() {
    let app = TestApp::spawn_serving_ws().await;
    let (caller_id, caller_token) = app.user_with("100.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    let mut caller = phone(&app, &caller_token).await;
    let mut laptop = phone(&app, &callee_token).await;
    let mut handset = phone(&app, &callee_token).await;

    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    let ringing = caller.next_of_type("call.ringing", WAIT).await;
    assert_eq!(ringing["ring_seconds"], 5);
    assert_eq!(ringing["currency"], "COIN");
    let call_id = ringing["call_id"].as_str().unwrap().to_owned();
    for device in [&mut laptop, &mut handset] {
        assert_eq!(device.next_of_type("call.incoming", WAIT).await["call_id"], call_id.as_str());
    }
    handset.send(&json!({"action": "call.accept", "call_id": call_id})).await;
    handset.next_of_type("call.started", WAIT).await;
    let elsewhere = laptop.next_of_type("call.ended", WAIT).await;
    assert_eq!(
        (elsewhere["call_id"].as_str(), elsewhere["reason"].as_str()),
        (Some(call_id.as_str()), Some("answered_elsewhere"))
    );
    // The other device can no longer answer, nor speak for the call.
    laptop.send(&json!({"action": "call.accept", "call_id": call_id})).await;
    assert_eq!(laptop.next_of_type("error", WAIT).await["code"], "call_not_ringing");
    laptop.send(&json!({"action": "signal", "call_id": call_id, "data": {"type": "answer", "sdp": "x"}})).await;
    assert_eq!(laptop.next_of_type("error", WAIT).await["code"], "other_device");

    // The caller's billing frames say what the next minute can be held from.
    let billing = caller.next_of_type("billing", WAIT).await;
    assert_eq!((billing["balance"].as_str(), billing["available"].as_str()), (Some("90.00"), Some("80.00")));
    caller.send(&json!({"action": "call.end", "call_id": call_id})).await;
    assert_eq!(handset.next_of_type("call.ended", WAIT).await["reason"], "hangup");
    assert_eq!(app.wallet_of(&caller_id).await.2, "0.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_restricted_wallet_cannot_place_a_call() {
    let app = TestApp::spawn_serving_ws().await;
    let (caller_id, caller_token) = app.user_with("100.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    // A reversal shortfall restricts a wallet (see reversals.rs): mark it as one would.
    let caller = UserId::parse(&caller_id).unwrap();
    app.table
        .client
        .update_item()
        .table_name(&app.table.name)
        .set_key(Some(ledger::account_key(&AccountId::wallet(&caller))))
        .update_expression("SET shortfall = :s")
        .expression_attribute_values(":s", aws_sdk_dynamodb::types::AttributeValue::N("5.00".into()))
        .send()
        .await
        .unwrap();
    let mut phone_of_caller = phone(&app, &caller_token).await;
    let mut callee = phone(&app, &callee_token).await;
    phone_of_caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    assert_eq!(phone_of_caller.next_of_type("error", WAIT).await["code"], "wallet_restricted");
    callee.expect_silence(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn the_sweeper_pays_out_a_call_whose_payout_failed_and_hangs_up_are_never_lost() {
    let app = TestApp::spawn().await;
    let (caller_id, _) = app.user_with("100.00").await;
    let (callee_id, callee_token) = app.user_with("0.00").await;
    let calls = purse::service::calls::Calls::from_env(&app.function_env("sqs_call_billing"), &app.aws).unwrap();
    let (caller, callee) = (UserId::parse(&caller_id).unwrap(), UserId::parse(&callee_id).unwrap());
    let call = calls.place(&caller, &callee, "app", None, None).await.unwrap();
    calls.accept(&callee, call.id.as_str(), None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(CALL_PERIOD_SECONDS)).await;
    calls.tick(&call.id, 1).await.unwrap().expect("minute 1 billed");

    // The end's write lands but its payout does not (the process died in between): the call
    // is ENDED, its escrow still full, the callee not paid yet.
    let end = purse::store::calls::escrow_update(
        &app.table,
        &call.id,
        purse::store::calls::EscrowCredit {
            billed: 1,
            charge: "1.00".parse().unwrap(),
            set: "#status = :ended, end_reason = :reason",
            values: vec![
                (":ended", aws_sdk_dynamodb::types::AttributeValue::S("ENDED".into())),
                (":reason", aws_sdk_dynamodb::types::AttributeValue::S("hangup".into())),
            ],
            ..Default::default()
        },
    )
    .unwrap();
    let escrow = ledger::Escrow { account: AccountId::call(&call.id), update: end };
    let posting = ledger::HeldPosting { charge: "1.00".parse().unwrap(), escrow, next: None, extra: vec![] };
    ledger::post_held(&app.table, &purse::service::calls::minute_id(&call.id, 2), posting).await.unwrap();
    assert_eq!(app.wallet_of(&callee_id).await.0, "0.00");
    app.assert_ledger_balanced().await;

    let swept = calls.sweep().await.unwrap();
    assert_eq!(swept["paid_out"], 1, "{swept}");
    // 11.00 charged: 7.70 to the callee, 3.30 to the platform, once.
    assert_eq!(app.wallet_of(&callee_id).await.0, "7.70");
    assert_eq!(calls.sweep().await.unwrap()["examined"], 0);
    let view = call_of_direct(&calls, &callee, &call.id).await;
    assert_eq!((view["amount"].as_str(), view["status"].as_str()), (Some("7.70"), Some("ENDED")));
    let earnings = app.get("/v1/transactions?type=CALL_EARNING", Some(&callee_token)).await;
    assert_eq!(earnings.json["items"].as_array().unwrap().len(), 1, "{}", earnings.text);
    app.assert_ledger_balanced().await;
}

async fn call_of_direct(calls: &purse::service::calls::Calls, user: &UserId, id: &CallId) -> Value {
    let call = calls.get_for(user, id.as_str()).await.unwrap();
    serde_json::to_value(purse::service::calls::CallView::of(&call, user)).unwrap()
}

#[tokio::test]
async fn a_hang_up_that_crosses_the_answer_still_ends_the_call() {
    let app = TestApp::spawn_serving_ws().await;
    let (Party { id: caller_id, token: caller_token, ws: mut caller }, Party { id: callee_id, ws: mut callee, .. }) =
        two_parties(&app, "100.00").await;
    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    let call_id = caller.next_of_type("call.ringing", WAIT).await["call_id"].as_str().unwrap().to_owned();
    callee.next_of_type("call.incoming", WAIT).await;
    // Both at once: the answer and the caller's hang-up.
    callee.send(&json!({"action": "call.accept", "call_id": call_id})).await;
    caller.send(&json!({"action": "call.end", "call_id": call_id})).await;
    let told = caller.next_of_type("call.ended", WAIT).await;
    assert!(told["reason"] == "canceled" || told["reason"] == "hangup", "{told}");
    let call = ended(&app, &caller_token, &call_id).await;
    assert_eq!(call["status"], "ENDED");
    assert_eq!(app.wallet_of(&caller_id).await.2, "0.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_device_in_a_call_can_neither_answer_nor_place_another() {
    let app = TestApp::spawn_serving_ws().await;
    let (Party { id: caller_id, ws: mut caller, .. }, Party { id: callee_id, ws: mut callee, .. }) =
        two_parties(&app, "100.00").await;
    let call_id = start_call(&mut caller, &mut callee, &callee_id).await;

    // A second caller rings the callee's busy device: it cannot answer without hanging up first.
    let (_, other_token) = app.user_with("100.00").await;
    let mut other = phone(&app, &other_token).await;
    other.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    let second = other.next_of_type("call.ringing", WAIT).await["call_id"].as_str().unwrap().to_owned();
    assert_eq!(callee.next_of_type("call.incoming", WAIT).await["call_id"], second.as_str());
    callee.send(&json!({"action": "call.accept", "call_id": second})).await;
    let refused = callee.next_of_type("error", WAIT).await;
    assert_eq!((refused["code"].as_str(), refused["call_id"].as_str()), (Some("device_busy"), Some(second.as_str())));
    // Nor can the busy caller place a second call from the same device.
    caller.send(&json!({"action": "call.invite", "callee_id": callee_id})).await;
    assert_eq!(caller.next_of_type("error", WAIT).await["code"], "device_busy");

    // The first call goes on, billed as ever; the second rings out unanswered.
    caller.send(&json!({"action": "call.end", "call_id": call_id})).await;
    assert_eq!(callee.next_of_type("call.ended", WAIT).await["call_id"], call_id.as_str());
    assert_eq!(other.next_of_type("call.ended", Duration::from_secs(30)).await["reason"], "no_answer");
    assert_eq!(app.wallet_of(&caller_id).await.2, "0.00");
    app.assert_ledger_balanced().await;
}
