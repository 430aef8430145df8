//! `GET /v1/admin/queues`: the depth of every dead-letter queue, for the operators' screen.
//! Administrators only; it reads the queues the template wires to the function and changes
//! nothing.

use purse_tests::TestApp;
use serde_json::Value;

const QUEUES: &str = "/v1/admin/queues";

/// (name, messages) of every queue in the answer, in its order.
fn depths(listing: &Value) -> Vec<(String, u64)> {
    listing["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| (q["name"].as_str().expect("name").to_owned(), q["messages"].as_u64().expect("messages")))
        .collect()
}

#[tokio::test]
async fn an_administrator_sees_every_dead_letter_queue_and_a_message_parked_in_one() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    let fresh = app.get(QUEUES, Some(&admin)).await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(
        depths(&fresh.json),
        [
            ("revio-events-dlq".to_owned(), 0),
            ("kyc-events-dlq".to_owned(), 0),
            ("rewards-dlq".to_owned(), 0),
            ("payouts-dlq".to_owned(), 0),
            ("call-billing-dlq".to_owned(), 0),
        ]
    );
    assert_eq!(fresh.json["total"], 0);
    assert_eq!(fresh.json["queues"][3]["source"], "payouts");
    assert_eq!(fresh.header("cache-control"), Some("no-store"));

    // A payout message its consumer gave up on, parked in this stack's payouts DLQ.
    let dlq = app.stack.get("PayoutsDLQ").expect("PayoutsDLQ").reference.clone();
    let sqs = aws_sdk_sqs::Client::new(&app.aws);
    sqs.send_message()
        .queue_url(&dlq)
        .message_body(r#"{"transaction_id":"txn_01J00000000000000000000000"}"#)
        .send()
        .await
        .expect("send");

    let after = app.get(QUEUES, Some(&admin)).await;
    assert_eq!(after.status, 200, "{}", after.text);
    let counts = depths(&after.json);
    assert_eq!(counts[3], ("payouts-dlq".to_owned(), 1), "{}", after.text);
    assert!(counts.iter().filter(|(n, _)| n != "payouts-dlq").all(|(_, m)| *m == 0), "{}", after.text);
    assert_eq!(after.json["total"], 1);

    // Reading counted it and left it where it was.
    let again = app.get(QUEUES, Some(&admin)).await;
    assert_eq!(again.json["total"], 1, "{}", again.text);
}

#[tokio::test]
async fn the_queue_depths_are_refused_to_anyone_but_an_administrator() {
    let app = TestApp::spawn().await;
    let (_, user) = app.user_token().await;
    let r = app.get(QUEUES, Some(&user)).await;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "{}", r.text);
    let r = app.get(QUEUES, None).await;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "{}", r.text);
}
