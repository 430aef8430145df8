//! The SQS event source mapping against the emulator, through the real SDK: a consumer that
//! fails one message of a batch gets the others deleted and the failed one redelivered until the
//! redrive policy moves it to the dead-letter queue.
//!
//! Needs the emulator: `tools/stack/with-stack.sh cargo test -p purse-devserver`.

use aws_sdk_sqs::types::QueueAttributeName;
use purse::runtime::{BatchItemFailure, DynSqsFunction, SqsBatchResponse, SqsEvent};
use purse_devserver::sqs::Poller;
use purse_local::router::Consumer;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fails every message whose body is `"fail"`; remembers every record it saw.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, String, SqsEvent)>>,
}

impl DynSqsFunction for Recorder {
    fn call_dyn(&self, event: SqsEvent) -> Pin<Box<dyn Future<Output = SqsBatchResponse> + Send + '_>> {
        Box::pin(async move {
            let mut response = SqsBatchResponse::default();
            for r in &event.records {
                let body = r.body.clone().unwrap_or_default();
                let count = r.attributes.get("ApproximateReceiveCount").cloned().unwrap_or_default();
                if body == "fail" {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = r.message_id.clone().unwrap_or_default();
                    response.batch_item_failures.push(failure);
                }
                self.seen.lock().unwrap().push((body, count, event.clone()));
            }
            response
        })
    }
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attrs: &[(QueueAttributeName, String)],
) -> (String, String) {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), v);
    }
    let url = req.send().await.expect("create queue").queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    (url, arn)
}

async fn bodies_in(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    out.messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect()
}

#[tokio::test]
async fn a_failed_message_is_redelivered_then_dead_lettered_while_the_rest_are_deleted() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run with tools/stack/with-stack.sh cargo test -p purse-devserver"
    );
    let aws = purse::config::load_aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let (dlq_url, dlq_arn) = create_queue(&sqs, &format!("devserver-{unique}-dlq"), &[]).await;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}).to_string();
    let (url, arn) = create_queue(
        &sqs,
        &format!("devserver-{unique}"),
        &[(QueueAttributeName::VisibilityTimeout, "1".into()), (QueueAttributeName::RedrivePolicy, redrive)],
    )
    .await;
    for body in ["ok-1", "fail", "ok-2"] {
        sqs.send_message().queue_url(&url).message_body(body).send().await.expect("send");
    }

    let recorder = Arc::new(Recorder::default());
    let consumer = Consumer {
        function: "TestConsumer".into(),
        queue_logical_id: "TestQueue".into(),
        queue_url: url.clone(),
        queue_arn: arn.clone(),
        batch_size: 10,
        handler: recorder.clone(),
        aws: aws.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let poller = Poller { consumer, client: sqs.clone(), region: "us-east-1".into() };
    let running = tokio::spawn(poller.run(stop_rx));

    // The failed message comes back once (maxReceiveCount 2), then goes to the DLQ.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fails = recorder.seen.lock().unwrap().iter().filter(|(b, _, _)| b == "fail").count();
        if fails >= 2 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let a third receive happen if the queue (wrongly) still had the message.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running).await.expect("the poller stops when told").unwrap();

    let seen = recorder.seen.lock().unwrap().clone();
    let count = |body: &str| seen.iter().filter(|(b, _, _)| b == body).count();
    assert_eq!(count("ok-1"), 1, "a processed message is deleted, not redelivered: {seen:?}");
    assert_eq!(count("ok-2"), 1, "{seen:?}");
    assert_eq!(count("fail"), 2, "a failed message is redelivered up to maxReceiveCount: {seen:?}");
    let receive_counts: Vec<_> = seen.iter().filter(|(b, _, _)| b == "fail").map(|(_, c, _)| c.as_str()).collect();
    assert_eq!(receive_counts, ["1", "2"]);

    let (_, _, event) = &seen[0];
    let r = &event.records[0];
    assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(r.event_source_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(r.aws_region.as_deref(), Some("us-east-1"));
    assert!(r.receipt_handle.as_deref().is_some_and(|h| !h.is_empty()));
    assert!(r.md5_of_body.as_deref().is_some_and(|h| h.len() == 32));
    assert!(r.attributes.contains_key("SentTimestamp"), "{:?}", r.attributes);

    assert!(bodies_in(&sqs, &url).await.is_empty(), "nothing is left in the queue");
    assert_eq!(bodies_in(&sqs, &dlq_url).await, ["fail"], "the failed message is dead-lettered");

    sqs.delete_queue().queue_url(&url).send().await.expect("delete queue");
    sqs.delete_queue().queue_url(&dlq_url).send().await.expect("delete dlq");
}

#[tokio::test]
async fn a_poller_survives_sqs_errors_and_still_stops_when_told() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run with tools/stack/with-stack.sh cargo test -p purse-devserver"
    );
    let aws = purse::config::load_aws().await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let recorder = Arc::new(Recorder::default());
    let consumer = Consumer {
        function: "TestConsumer".into(),
        queue_logical_id: "Missing".into(),
        queue_url: format!("{endpoint}/123456789012/devserver-no-such-queue"),
        queue_arn: "arn:aws:sqs:us-east-1:123456789012:devserver-no-such-queue".into(),
        batch_size: 10,
        handler: recorder.clone(),
        aws: aws.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let poller = Poller { consumer, client: aws_sdk_sqs::Client::new(&aws), region: "us-east-1".into() };
    let running = tokio::spawn(poller.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!running.is_finished(), "an SQS error does not end the poller");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), running).await.expect("the poller stops during its back-off").unwrap();
    assert!(recorder.seen.lock().unwrap().is_empty());
}
