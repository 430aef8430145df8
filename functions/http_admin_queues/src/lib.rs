//! `GET /v1/admin/queues`: the dead-letter queues and how many messages wait in each, so an
//! operator sees at a glance that work is parked (a message lands in a DLQ after its consumer
//! failed it `maxReceiveCount` times; `purse-admin dlq peek|redrive|discard` deals with it).
//! Administrators only.
//!
//! Each queue's URL comes from the function's environment (`template.yaml`), one variable per
//! dead-letter queue; a missing one fails the cold start naming it. The counts are SQS's
//! `ApproximateNumberOfMessages` (waiting) and `ApproximateNumberOfMessagesNotVisible` (received
//! by someone right now, e.g. an operator's `dlq peek`), read with one `GetQueueAttributes` per
//! queue, all at once.

use aws_sdk_sqs::types::QueueAttributeName;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use purse::config::InitError;
use purse::{http, Access, ApiError, HttpFunction, InitContext, RequestCtx};

/// The dead-letter queues shown, in this order: (name in the answer, environment variable
/// holding its URL, the queue whose failures it parks).
pub const DEAD_LETTER_QUEUES: [(&str, &str, &str); 5] = [
    ("revio-events-dlq", "REVIO_EVENTS_DLQ_URL", "revio-events"),
    ("kyc-events-dlq", "KYC_EVENTS_DLQ_URL", "kyc-events"),
    ("rewards-dlq", "REWARDS_DLQ_URL", "rewards"),
    ("payouts-dlq", "PAYOUTS_DLQ_URL", "payouts"),
    ("call-billing-dlq", "CALL_BILLING_DLQ_URL", "call-billing"),
];

/// The `http_admin_queues` Lambda function.
pub struct Function {
    sqs: aws_sdk_sqs::Client,
    /// (name, source queue name, URL), in [`DEAD_LETTER_QUEUES`] order.
    queues: Vec<(&'static str, &'static str, String)>,
}

/// One dead-letter queue's depth.
#[derive(Debug, serde::Serialize)]
pub struct QueueDepth {
    /// The dead-letter queue (`payouts-dlq`).
    pub name: &'static str,
    /// The queue whose failed messages it keeps (`payouts`).
    pub source: &'static str,
    /// Messages waiting (`ApproximateNumberOfMessages`).
    pub messages: u64,
    /// Messages received by someone and not yet deleted or released
    /// (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
}

#[derive(serde::Serialize)]
struct Listing {
    queues: Vec<QueueDepth>,
    /// Sum of `messages` over every queue: 0 means nothing is parked.
    total: u64,
}

impl Function {
    async fn depth(&self, name: &'static str, source: &'static str, url: &str) -> Result<QueueDepth, ApiError> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| {
                ApiError::temporarily_unavailable(format!(
                    "reading {name}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ))
            })?;
        let attrs = out.attributes.unwrap_or_default();
        let count = |attr: &QueueAttributeName| -> Result<u64, ApiError> {
            let text =
                attrs.get(attr).ok_or_else(|| ApiError::internal(format!("{name}: no {attr:?} in the answer")))?;
            text.parse().map_err(|_| ApiError::internal(format!("{name}: {attr:?} is not a count")))
        };
        Ok(QueueDepth {
            name,
            source,
            messages: count(&QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
        })
    }
}

impl HttpFunction for Function {
    const ACCESS: Access = Access::Admin;

    async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let mut queues = Vec::with_capacity(DEAD_LETTER_QUEUES.len());
        for (name, var, source) in DEAD_LETTER_QUEUES {
            queues.push((name, source, ctx.env.require(var)?));
        }
        Ok(Self { sqs: purse::store::sqs_client(&ctx.aws), queues })
    }

    async fn handle(&self, _ctx: &RequestCtx, _req: Request) -> Result<Response<Body>, ApiError> {
        // Five small reads, together: one round trip's time instead of five.
        let reads = self.queues.iter().map(|(name, source, url)| self.depth(name, source, url));
        let queues = futures::future::join_all(reads).await.into_iter().collect::<Result<Vec<_>, _>>()?;
        let total = queues.iter().map(|q| q.messages).sum();
        http::json(StatusCode::OK, &Listing { queues, total })
    }
}
