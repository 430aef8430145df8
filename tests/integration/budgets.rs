//! The per-flow budgets of `make bench` (docs/benchmarks.md, "Budget per flow"): every flow
//! the product runs, one Lambda event at a time, each event handed to its function as Lambda
//! would hand it (an API Gateway request, a webhook on the Function URL, an SQS batch), with
//! the emulator's counters and the thread's CPU time read around that one invocation.
//!
//! A measurement, not a test: ignored, run alone (the emulator's counters are global) and in
//! release by `tools/bench/run.sh`:
//! `tools/stack/with-stack.sh cargo test --release -p purse-tests --test integration budgets:: -- --ignored --nocapture`
//! It writes `target/bench/flows.json` (or `$PURSE_BENCH_FLOWS`); `tools/bench/flows.py` puts
//! every flow beside its budget.
//!
//! `#[tokio::test]` runs on one thread, and the functions' AWS clients, their connections and
//! the handler all run on it: the thread's CPU time around an invocation is that invocation's
//! CPU, the harness's own work (creating users, reading queues, reading counters) falls outside.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use purse::domain::ids::UserId;
use purse_tests::{
    catch_webhook, emulator_stats, eventually, fresh_pan, Caught, KycSandbox, Sandbox, TestApp, CALL_PERIOD_SECONDS,
};
use serde_json::{json, Value};
use std::time::Duration;

/// How many times each flow runs: the first run's events are the functions' first (new
/// connections), the CPU figures are the medians of the rest.
const RUNS: usize = 6;

/// CPU time this thread has used, in milliseconds (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_ms() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: f64 = text.split_whitespace().next().expect("a figure").parse().expect("a number");
    ns / 1e6
}

/// One measured invocation.
struct Step {
    flow: &'static str,
    function: String,
    event: &'static str,
    run: usize,
    cpu_ms: f64,
    wall_ms: f64,
    stats: Value,
}

#[derive(Default)]
struct Meter {
    steps: Vec<Step>,
}

impl Meter {
    /// Runs `invocation` as one measured event of `function` in `flow`.
    async fn event<T>(
        &mut self,
        flow: &'static str,
        run: usize,
        function: &str,
        event: &'static str,
        invocation: impl std::future::Future<Output = T>,
    ) -> T {
        emulator_stats(true).await;
        let (cpu, wall) = (thread_cpu_ms(), std::time::Instant::now());
        let out = invocation.await;
        let (cpu_ms, wall_ms) = (thread_cpu_ms() - cpu, wall.elapsed().as_secs_f64() * 1e3);
        let stats = emulator_stats(false).await;
        self.steps.push(Step { flow, function: function.to_owned(), event, run, cpu_ms, wall_ms, stats });
        out
    }

    fn json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                json!({"flow": s.flow, "function": s.function, "event": s.event, "run": s.run,
                       "cpu_ms": s.cpu_ms, "wall_ms": s.wall_ms, "stats": s.stats})
            })
            .collect();
        json!({"runs": RUNS, "steps": steps})
    }
}

/// Hands a caught webhook to `function`, the receiver behind `path`, measured.
async fn receive(app: &TestApp, meter: &mut Meter, flow: &'static str, run: usize, function: &str, hook: &Caught) {
    let path = if function == "webhook_kyc" { "/webhooks/kyc" } else { "/webhooks/revio" };
    let headers: Vec<(&str, &str)> = hook.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let r = meter.event(flow, run, function, "webhook", app.send("POST", path, &headers, &hook.body)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
}

/// Waits (at most 30 s) for the message on a queue whose body contains `matching`, hands it to
/// the queue's consumer as an SQS event of one record, measured, and deletes it as Lambda's
/// event source mapping does. Other messages met meanwhile (of the set-up) are deleted unseen.
async fn consume(app: &TestApp, meter: &mut Meter, flow: &'static str, run: usize, queue: &str, matching: &str) {
    let function = match queue {
        "RevioEventsQueue" => "sqs_revio_events",
        "KycEventsQueue" => "sqs_kyc_events",
        "RewardsQueue" => "sqs_referral_rewards",
        "PayoutsQueue" => "sqs_payouts",
        "CallBillingQueue" => "sqs_call_billing",
        other => other,
    };
    let consumer = app.router.consumer(queue).expect("a consumer").clone();
    let sqs = aws_sdk_sqs::Client::new(&app.aws);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let message = loop {
        assert!(std::time::Instant::now() < deadline, "{queue}: no message containing {matching}");
        let out = sqs
            .receive_message()
            .queue_url(&consumer.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let mut found = None;
        for m in out.messages.unwrap_or_default() {
            if found.is_none() && m.body.as_deref().is_some_and(|b| b.contains(matching)) {
                found = Some(m);
            } else {
                let handle = m.receipt_handle.unwrap_or_default();
                let _ = sqs.delete_message().queue_url(&consumer.queue_url).receipt_handle(handle).send().await;
            }
        }
        if let Some(m) = found {
            break m;
        }
    };
    let mut record = SqsMessage::default();
    record.message_id.clone_from(&message.message_id);
    record.receipt_handle.clone_from(&message.receipt_handle);
    record.body.clone_from(&message.body);
    record.event_source_arn = Some(consumer.queue_arn.clone());
    record.attributes.insert("ApproximateReceiveCount".into(), "1".into());
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let handler = consumer.handler.clone();
    let answer = meter.event(flow, run, function, "sqs message", handler.call_dyn(event)).await;
    assert!(answer.batch_item_failures.is_empty(), "{queue}: {:?}", answer.batch_item_failures);
    let handle = message.receipt_handle.unwrap_or_default();
    let _ = sqs.delete_message().queue_url(&consumer.queue_url).receipt_handle(handle).send().await;
}

/// Empties a queue without measuring (messages of the set-up).
async fn drain(app: &TestApp, queue: &str) {
    let url = app.router.consumer(queue).expect("a consumer").queue_url.clone();
    let sqs = aws_sdk_sqs::Client::new(&app.aws);
    let _ = sqs.purge_queue().queue_url(url).send().await;
}

/// Starts a deposit (`POST /v1/deposits`); returns the Revio purchase id.
async fn create_deposit(app: &TestApp, token: &str, amount: &str) -> String {
    let key = format!("bench-{}", ulid::Ulid::new());
    let r = app.post_with("/v1/deposits", &json!({"amount": amount}), Some(token), &[("idempotency-key", &key)]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["reference"].as_str().expect("a purchase").to_owned()
}

/// [`create_deposit`], measured as the flow "deposit creation".
async fn deposit(app: &TestApp, meter: &mut Meter, run: usize, token: &str, amount: &str) -> String {
    meter
        .event("deposit creation", run, "http_deposits_create", "POST /v1/deposits", create_deposit(app, token, amount))
        .await
}

async fn settle(app: &TestApp, meter: &mut Meter, flow: &'static str, run: usize, purchase: &str) {
    let sandbox = Sandbox::new();
    sandbox.pay(purchase).await;
    let hook = catch_webhook(|url| async move {
        sandbox.deliver(purchase, json!({"url": url})).await;
    })
    .await;
    receive(app, meter, flow, run, "webhook_revio", &hook).await;
    consume(app, meter, flow, run, "RevioEventsQueue", purchase).await;
}

#[tokio::test]
#[ignore = "a measurement, run by make bench"]
async fn flows() {
    let app = TestApp::spawn().await;
    let mut meter = Meter::default();
    let sandbox = Sandbox::new();
    let kyc = KycSandbox::new();
    let (fee_auth, _) = {
        let (client_id, secret) = app.service_credential("bench-arena", "games:fees").await;
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
        (format!("Basic {basic}"), client_id)
    };

    for run in 0..RUNS {
        // Deposit creation and settlement.
        let (_, token) = app.user_token().await;
        let purchase = deposit(&app, &mut meter, run, &token, "50.00").await;
        settle(&app, &mut meter, "deposit settlement", run, &purchase).await;

        // KYC submission -> VERIFIED (the provider's webhook path), by a referred user of a
        // verified referrer.
        let (referrer_profile, referrer_tokens) = app.signed_in_user().await;
        let code = referrer_profile["referral_code"].as_str().expect("a code").to_owned();
        let referrer_token = referrer_tokens["access_token"].as_str().expect("a token");
        assert_eq!(app.submit_kyc(referrer_token, &fresh_pan("3333")).await.json["status"], "VERIFIED");
        let (referee, referee_token, _) = app.referred_user(&code).await;
        let submitted = meter
            .event(
                "KYC submission -> VERIFIED",
                run,
                "http_kyc_submit",
                "POST /v1/kyc",
                app.submit_kyc(&referee_token, &fresh_pan("1111")),
            )
            .await;
        assert!(submitted.status < 300 && submitted.json["status"] == "PENDING", "{}", submitted.text);
        let request = app.kyc_reference(submitted.json["kyc_id"].as_str().expect("a kyc id")).await;
        kyc.complete(&request, "verified").await;
        let hook = catch_webhook(|url| {
            let kyc = &kyc;
            let request = request.clone();
            async move {
                kyc.deliver(&request, json!({"url": url})).await;
            }
        })
        .await;
        // The submission's follow-up poll (delayed) is left out: the webhook decides first, and
        // the poll then finds the check decided.
        drain(&app, "KycEventsQueue").await;
        receive(&app, &mut meter, "KYC submission -> VERIFIED", run, "webhook_kyc", &hook).await;
        consume(&app, &mut meter, "KYC submission -> VERIFIED", run, "KycEventsQueue", "webhook").await;
        app.kyc_becomes(&referee_token, "VERIFIED", 1).await;

        // Referral reward: the referee's first deposit makes it due; the rewards consumer pays it.
        drain(&app, "RewardsQueue").await;
        // Its creation is not measured again ("deposit creation" above).
        let purchase = create_deposit(&app, &referee_token, "20.00").await;
        settle(&app, &mut meter, "first deposit of a referred user", run, &purchase).await;
        consume(&app, &mut meter, "referral reward", run, "RewardsQueue", &referee).await;

        // Withdrawal request -> COMPLETED.
        let (user, token) = app.user_with("100.00").await;
        let pan = fresh_pan("3333");
        assert_eq!(app.submit_kyc(&token, &pan).await.json["status"], "VERIFIED");
        let account = app.bank_account(&token, "110000001").await;
        drain(&app, "PayoutsQueue").await;
        let key = format!("bench-{}", ulid::Ulid::new());
        let body = json!({"amount": "30.00", "bank_account_id": account});
        let r = meter
            .event(
                "withdrawal -> COMPLETED",
                run,
                "http_withdrawals_create",
                "POST /v1/withdrawals",
                app.post_with("/v1/withdrawals", &body, Some(&token), &[("idempotency-key", &key)]),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.json["transaction_id"].as_str().expect("an id").to_owned();
        consume(&app, &mut meter, "withdrawal -> COMPLETED", run, "PayoutsQueue", &id).await;
        let payout = eventually(20, "the payout exists at Revio", || async {
            sandbox.payouts_for(&id).await.first().map(|p| p["id"].as_str().unwrap().to_owned())
        })
        .await;
        sandbox.settle_payout(&payout, "paid").await;
        let hook = catch_webhook(|url| {
            let sandbox = &sandbox;
            let payout = payout.clone();
            async move {
                sandbox.deliver_payout(&payout, json!({"url": url})).await;
            }
        })
        .await;
        receive(&app, &mut meter, "withdrawal -> COMPLETED", run, "webhook_revio", &hook).await;
        consume(&app, &mut meter, "withdrawal -> COMPLETED", run, "RevioEventsQueue", &payout).await;
        app.movement_becomes(&token, &id, "COMPLETED", 5).await;
        let _ = user;

        // One billed call minute (the tick the billing queue delivers each period).
        let (caller_id, _) = app.user_with("100.00").await;
        let (callee_id, _) = app.user_with("0.00").await;
        let calls = purse::service::calls::Calls::from_env(&app.function_env("sqs_call_billing"), &app.aws).unwrap();
        let (caller, callee) = (UserId::parse(&caller_id).unwrap(), UserId::parse(&callee_id).unwrap());
        drain(&app, "CallBillingQueue").await;
        let call = calls.place(&caller, &callee, "app", None, None).await.unwrap();
        calls.accept(&callee, call.id.as_str(), None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(CALL_PERIOD_SECONDS)).await;
        let tick = format!(r#""kind":"tick","call_id":"{}""#, call.id);
        consume(&app, &mut meter, "one billed call minute", run, "CallBillingQueue", &tick).await;
        let _ = calls.finish(&call.id, "hangup").await;
        drain(&app, "CallBillingQueue").await;

        // A game fee.
        let (player, _) = app.user_with("50.00").await;
        let body =
            json!({"user_id": player, "amount": "5.00", "game_session_id": format!("match-{}", ulid::Ulid::new())});
        let r = meter
            .event(
                "game fee",
                run,
                "http_games_fees",
                "POST /v1/games/fees",
                app.post_authorized("/v1/games/fees", &body, Some(&fee_auth)),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    app.assert_ledger_balanced().await;

    // Calibration: what one DynamoDB request costs the calling thread, alone (a GetItem of an
    // absent key through a client built as the functions build theirs, warm).
    let client = purse::store::dynamodb_client(&app.aws);
    let get = || {
        client
            .get_item()
            .table_name(&app.table.name)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("BENCH#absent".into()))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("BENCH".into()))
            .send()
    };
    get().await.expect("warm-up");
    let (cpu, n) = (thread_cpu_ms(), 100);
    for _ in 0..n {
        get().await.expect("get");
    }
    let per_request = (thread_cpu_ms() - cpu) / f64::from(n);
    println!("calibration: {per_request:.3} ms of CPU per DynamoDB GetItem");
    let mut out = meter.json();
    out["calibration"] = json!({"dynamodb_get_item_cpu_ms": per_request});

    let path = std::env::var("PURSE_BENCH_FLOWS").unwrap_or_else(|_| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
        std::fs::create_dir_all(&root).expect("target/bench");
        root.join("flows.json").to_string_lossy().into_owned()
    });
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).expect("written");
    println!("flows: {} events measured, written to {path}", meter.steps.len());
}

/// A profiling aid, not a measurement of a flow: `PURSE_BENCH_LOOP` (default 2,000) DynamoDB
/// GetItems through a client built as the functions build theirs, on one thread, for `perf
/// record` on the `profiling` build (docs/benchmarks.md, "Where a handler's CPU goes").
#[tokio::test]
#[ignore = "a profiling aid, run by hand"]
async fn get_item_loop() {
    let aws = purse_tests::emulator_config().await;
    let client = purse::store::dynamodb_client(&aws);
    let table = std::env::var("PURSE_BENCH_TABLE").unwrap_or_else(|_| "bench-loop".into());
    let _ = client
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await;
    let n: u32 = std::env::var("PURSE_BENCH_LOOP").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let cpu = thread_cpu_ms();
    for _ in 0..n {
        client
            .get_item()
            .table_name(&table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("absent".into()))
            .send()
            .await
            .expect("get");
    }
    println!("{:.3} ms of CPU per GetItem over {n}", (thread_cpu_ms() - cpu) / f64::from(n));
}
