//! A local SQS event source mapping: what Lambda does for a function with an `SQS` event and
//! `FunctionResponseTypes: [ReportBatchItemFailures]`.
//!
//! One poller per (function, queue) long-polls the queue, hands the messages to the function as
//! the very [`SqsEvent`] Lambda would send ([`sqs_event`]), and deletes the messages the function
//! did not report in `batchItemFailures` ([`settle`]). Reported messages are left alone: they
//! reappear after the queue's visibility timeout, and after `maxReceiveCount` receives the
//! queue's redrive policy moves them to the dead-letter queue — the same life cycle as in AWS.

use crate::stopped;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName};
use base64::Engine;
use purse::runtime::{SqsBatchResponse, SqsEvent};
use purse_local::router::Consumer;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;

/// Long-poll wait of each ReceiveMessage call.
pub const WAIT_TIME_SECONDS: i32 = 2;
/// Most messages one ReceiveMessage call may return (an SQS limit).
pub const MAX_MESSAGES: u32 = 10;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The JSON record Lambda sends for one SQS message.
pub fn record_json(message: &Message, queue_arn: &str, region: &str) -> Value {
    let b64 = |blob: &aws_sdk_sqs::primitives::Blob| base64::engine::general_purpose::STANDARD.encode(blob.as_ref());
    let attributes: Map<String, Value> = message
        .attributes
        .iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), Value::String(value.clone())))
        .collect();
    let message_attributes: Map<String, Value> = message
        .message_attributes
        .iter()
        .flatten()
        .map(|(name, value)| {
            let mut attr = Map::new();
            if let Some(s) = value.string_value() {
                attr.insert("stringValue".into(), json!(s));
            }
            if let Some(b) = value.binary_value() {
                attr.insert("binaryValue".into(), json!(b64(b)));
            }
            attr.insert("stringListValues".into(), json!(value.string_list_values()));
            attr.insert(
                "binaryListValues".into(),
                json!(value.binary_list_values().iter().map(b64).collect::<Vec<_>>()),
            );
            attr.insert("dataType".into(), json!(value.data_type()));
            (name.clone(), Value::Object(attr))
        })
        .collect();
    let mut record = json!({
        "messageId": message.message_id().unwrap_or_default(),
        "receiptHandle": message.receipt_handle().unwrap_or_default(),
        "body": message.body().unwrap_or_default(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body().unwrap_or_default(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    });
    if let Some(md5) = message.md5_of_message_attributes() {
        record["md5OfMessageAttributes"] = json!(md5);
    }
    record
}

/// The event Lambda would invoke the function with for these messages, parsed by the same
/// `aws_lambda_events` types the Lambda runtime uses.
///
/// # Errors
/// When the JSON does not parse as an [`SqsEvent`] (it always should).
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Result<SqsEvent, serde_json::Error> {
    let records: Vec<Value> = messages.iter().map(|m| record_json(m, queue_arn, region)).collect();
    serde_json::from_value(json!({ "Records": records }))
}

/// The function's answer named a message that is not in the batch, or none at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("batchItemFailures names {0:?}, which is not a message of this batch; the whole batch counts as failed")]
pub struct InvalidItemIdentifier(pub String);

/// Which messages to delete after the function answered `response`, following Lambda's rules
/// for partial batch responses:
///
/// - no `batchItemFailures`: every message succeeded;
/// - otherwise every message except the ones listed succeeded.
///
/// # Errors
/// [`InvalidItemIdentifier`] when an identifier is empty or names no message of the batch;
/// Lambda then treats the whole batch as failed, so nothing may be deleted.
pub fn settle<'a>(
    messages: &'a [Message],
    response: &SqsBatchResponse,
) -> Result<Vec<&'a Message>, InvalidItemIdentifier> {
    let ids: HashSet<&str> = messages.iter().filter_map(Message::message_id).collect();
    let mut failed = HashSet::new();
    for f in &response.batch_item_failures {
        if f.item_identifier.is_empty() || !ids.contains(f.item_identifier.as_str()) {
            return Err(InvalidItemIdentifier(f.item_identifier.clone()));
        }
        failed.insert(f.item_identifier.as_str());
    }
    Ok(messages.iter().filter(|m| !m.message_id().is_some_and(|id| failed.contains(id))).collect())
}

/// One event source mapping: a function and the queue it consumes.
pub struct Poller {
    pub consumer: Consumer,
    pub client: aws_sdk_sqs::Client,
    /// The region put in each record's `awsRegion`.
    pub region: String,
}

impl Poller {
    /// The queue's name (the last segment of its URL).
    pub fn queue_name(&self) -> &str {
        queue_name(&self.consumer.queue_url)
    }

    /// Polls until `stop` turns true. The batch in hand when it does is finished first.
    /// Errors from SQS are logged and retried with a growing pause; they never end the loop.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        while !*stop.borrow() {
            let receive = self.receive();
            let received = tokio::select! {
                r = receive => r,
                () = stopped(&mut stop) => break,
            };
            match received {
                Ok(messages) => {
                    backoff = FIRST_BACKOFF;
                    if !messages.is_empty() {
                        self.process(&messages).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = self.queue_name(), error = %e, "ReceiveMessage failed; retrying in {}s", backoff.as_secs());
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stopped(&mut stop) => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::debug!(queue = self.queue_name(), "poller stopped");
    }

    async fn receive(&self) -> Result<Vec<Message>, String> {
        #[allow(deprecated)]
        // AttributeNames too, for emulators that predate MessageSystemAttributeNames.
        let request = self
            .client
            .receive_message()
            .queue_url(&self.consumer.queue_url)
            .wait_time_seconds(WAIT_TIME_SECONDS)
            .max_number_of_messages(self.consumer.batch_size.clamp(1, MAX_MESSAGES) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .attribute_names(QueueAttributeName::All)
            .message_attribute_names("All");
        let out = request.send().await.map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Invokes the function with one batch and deletes what succeeded.
    async fn process(&self, messages: &[Message]) {
        let queue = self.queue_name();
        let event = match sqs_event(messages, &self.consumer.queue_arn, &self.region) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(queue, error = %e, "cannot build the SQS event; the messages will reappear");
                return;
            }
        };
        let handler = self.consumer.handler.clone();
        let response = match tokio::spawn(async move { handler.call_dyn(event).await }).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(queue, function = %self.consumer.function, error = %e, "the function panicked; the whole batch will reappear");
                return;
            }
        };
        let done = match settle(messages, &response) {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(queue, function = %self.consumer.function, error = %e, "invalid batch response");
                return;
            }
        };
        let failed = messages.len() - done.len();
        tracing::info!(queue, function = %self.consumer.function, received = messages.len(), failed, "batch processed");
        self.delete(&done).await;
    }

    async fn delete(&self, messages: &[&Message]) {
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        let result = self
            .client
            .delete_message_batch()
            .queue_url(&self.consumer.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match result {
            Ok(out) if out.failed.is_empty() => {}
            Ok(out) => {
                for f in out.failed {
                    tracing::warn!(
                        queue = self.queue_name(),
                        id = f.id,
                        code = f.code,
                        "DeleteMessageBatch entry failed; the message will reappear"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(queue = self.queue_name(), error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "DeleteMessageBatch failed; the messages will reappear");
            }
        }
    }
}

/// The name of a queue from its URL.
pub fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageAttributeValue;

    const ARN: &str = "arn:aws:sqs:us-east-1:123456789012:purse-dev-RevioEventsQueue";

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body(format!("{{\"event\":\"{id}\"}}"))
            .md5_of_body("fce0ea8dd236ccb3ed9b37dae260836f")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1520621625029")
            .attributes(MessageSystemAttributeName::SenderId, "AROAIWPX5BD2BHG722MW4:sender")
            .attributes(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp, "1520621634884")
            .build()
    }

    fn failures(ids: &[&str]) -> SqsBatchResponse {
        serde_json::from_value(json!({
            "batchItemFailures": ids.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    #[test]
    fn the_event_carries_every_field_lambda_sends() {
        let event = sqs_event(&[message("m-1")], ARN, "us-east-1").unwrap();
        assert_eq!(event.records.len(), 1);
        let r = &event.records[0];
        assert_eq!(r.message_id.as_deref(), Some("m-1"));
        assert_eq!(r.receipt_handle.as_deref(), Some("rh-m-1"));
        assert_eq!(r.body.as_deref(), Some("{\"event\":\"m-1\"}"));
        assert_eq!(r.md5_of_body.as_deref(), Some("fce0ea8dd236ccb3ed9b37dae260836f"));
        assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
        assert_eq!(r.event_source_arn.as_deref(), Some(ARN));
        assert_eq!(r.aws_region.as_deref(), Some("us-east-1"));
        assert_eq!(r.attributes["ApproximateReceiveCount"], "2");
        assert_eq!(r.attributes["SentTimestamp"], "1520621625029");
        assert_eq!(r.attributes["SenderId"], "AROAIWPX5BD2BHG722MW4:sender");
        assert_eq!(r.attributes["ApproximateFirstReceiveTimestamp"], "1520621634884");
        assert!(r.message_attributes.is_empty());
    }

    #[test]
    fn the_record_json_has_lambdas_field_names() {
        let v = record_json(&message("m-1"), ARN, "us-east-1");
        for key in [
            "messageId",
            "receiptHandle",
            "body",
            "attributes",
            "messageAttributes",
            "md5OfBody",
            "eventSource",
            "eventSourceARN",
            "awsRegion",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
    }

    #[test]
    fn message_attributes_of_every_type_survive() {
        let m = Message::builder()
            .message_id("m-1")
            .md5_of_message_attributes("582c92c5c5b6ac403040a4f3ab3115c9")
            .message_attributes(
                "kind",
                MessageAttributeValue::builder().data_type("String").string_value("deposit").build().unwrap(),
            )
            .message_attributes(
                "n",
                MessageAttributeValue::builder().data_type("Number").string_value("123").build().unwrap(),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"1100".to_vec()))
                    .build()
                    .unwrap(),
            )
            .build();
        assert_eq!(record_json(&m, ARN, "us-east-1")["messageAttributes"]["raw"]["binaryValue"], "MTEwMA==");
        let event = sqs_event(&[m], ARN, "us-east-1").unwrap();
        let r = &event.records[0];
        assert_eq!(r.md5_of_message_attributes.as_deref(), Some("582c92c5c5b6ac403040a4f3ab3115c9"));
        let kind = &r.message_attributes["kind"];
        assert_eq!(kind.string_value.as_deref(), Some("deposit"));
        assert_eq!(kind.data_type.as_deref(), Some("String"));
        assert_eq!(r.message_attributes["n"].data_type.as_deref(), Some("Number"));
        let raw = &r.message_attributes["raw"];
        assert_eq!(raw.binary_value.as_ref().map(|b| b.0.clone()), Some(b"1100".to_vec()));
        assert!(raw.string_value.is_none());
    }

    #[test]
    fn the_event_keeps_the_batch_order() {
        let batch = [message("a"), message("b"), message("c")];
        let event = sqs_event(&batch, ARN, "eu-west-1").unwrap();
        let ids: Vec<_> = event.records.iter().map(|r| r.message_id.clone().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn an_empty_batch_response_deletes_every_message() {
        let batch = [message("a"), message("b")];
        let done = settle(&batch, &SqsBatchResponse::default()).unwrap();
        assert_eq!(done.len(), 2);
    }

    #[test]
    fn reported_failures_are_kept_for_redelivery_and_the_rest_deleted() {
        let batch = [message("a"), message("b"), message("c")];
        let done = settle(&batch, &failures(&["b"])).unwrap();
        let ids: Vec<_> = done.iter().map(|m| m.message_id().unwrap()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert!(settle(&batch, &failures(&["a", "b", "c"])).unwrap().is_empty());
    }

    #[test]
    fn an_unknown_or_empty_identifier_fails_the_whole_batch() {
        let batch = [message("a"), message("b")];
        assert_eq!(settle(&batch, &failures(&["zzz"])).unwrap_err(), InvalidItemIdentifier("zzz".into()));
        assert!(settle(&batch, &failures(&["a", ""])).is_err());
    }

    #[test]
    fn the_queue_name_is_the_last_segment_of_its_url() {
        assert_eq!(
            queue_name("http://127.0.0.1:4566/123456789012/purse-dev-RevioEventsQueue"),
            "purse-dev-RevioEventsQueue"
        );
    }
}
