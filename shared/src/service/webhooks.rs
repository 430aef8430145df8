//! The Revio webhook pipeline.
//!
//! Receiving ([`RevioWebhooks::receive`], the Function URL): cap the body, verify the RSA
//! signature over the raw bytes, log the delivery whatever happens (hash and size, never the
//! body), de-duplicate by event, and hand the event to SQS before answering 200. Anything
//! refused is answered with a 4xx and stays in the log — for 7 days and indexed nowhere when the
//! signature did not verify, so forgeries can neither be linked to a transaction nor crowd its
//! webhook list or an index partition ([`crate::store::webhooks`]).
//!
//! Processing ([`RevioEventProcessor::process`], the SQS consumer): settle the purchase from
//! Revio's API ([`crate::service::settlement`]) and record the outcome on the delivery. A
//! failure is returned so SQS redelivers, and after `maxReceiveCount` parks the message in the
//! dead-letter queue.

use crate::config::{Env, InitError};
use crate::error::ApiError;
use crate::revio::{RevioClient, WebhookVerifier};
use crate::runtime::MessageError;
use crate::service::settlement::{self, Outcome};
use crate::store::webhooks::{self as log, Delivery, EventClaim, Verification};
use crate::store::Table;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest webhook body accepted (Revio's purchase JSON is a few KiB).
pub const MAX_WEBHOOK_BODY_BYTES: usize = 64 * 1024;

const PROVIDER: &str = "revio";

/// The answer to an accepted delivery.
#[derive(Debug, Serialize)]
pub struct Receipt {
    pub received: bool,
    pub delivery_id: String,
    pub duplicate: bool,
}

/// The fields of a Revio event we use. Everything else in the body is ignored.
#[derive(Debug, Deserialize)]
struct RevioEvent {
    id: String,
    event_type: String,
}

/// What goes on the queue: identifiers only, never the webhook body.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub delivery_id: String,
    pub purchase_id: String,
    pub event_type: String,
}

/// The receiving half, built once per cold start.
pub struct RevioWebhooks {
    table: Table,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    verifier: WebhookVerifier,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl RevioWebhooks {
    /// Reads `PURSE_TABLE`, `REVIO_EVENTS_QUEUE_URL`, and Revio's public key once: pinned by
    /// `REVIO_PUBLIC_KEY_PEM`, else fetched ([`WebhookVerifier::from_env`]).
    ///
    /// # Errors
    /// [`InitError`] naming what is missing or invalid, or when the key cannot be fetched.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let revio = RevioClient::from_env(env, aws).await?;
        let verifier = WebhookVerifier::from_env(env, &revio).await?;
        Ok(Self::new(
            Table::from_env(env, aws)?,
            aws_sdk_sqs::Client::new(aws),
            env.require("REVIO_EVENTS_QUEUE_URL")?,
            verifier,
        ))
    }

    /// The pipeline over these parts.
    pub fn new(table: Table, sqs: aws_sdk_sqs::Client, queue_url: String, verifier: WebhookVerifier) -> Self {
        Self { table, sqs, queue_url, verifier }
    }

    /// Handles one delivery.
    ///
    /// # Errors
    /// 413 `payload_too_large`, 401 `invalid_signature`, 400 `malformed_event` (all logged), or a
    /// 5xx when the event could not be queued — Revio then retries.
    pub async fn receive(&self, body: &[u8], signature: Option<&str>) -> Result<Receipt, ApiError> {
        let mut delivery = Delivery {
            id: Delivery::new_id(),
            provider: PROVIDER,
            body_sha256: sha256_hex(body),
            body_size: body.len(),
            verification: Verification::NotChecked,
            event_type: None,
            provider_reference: None,
            reference: None,
            outcome: String::new(),
            detail: None,
        };
        if body.len() > MAX_WEBHOOK_BODY_BYTES {
            delivery.outcome = "TOO_LARGE".into();
            log::record(&self.table, &delivery).await?;
            tracing::warn!(delivery_id = %delivery.id, size = body.len(), "webhook refused: body too large");
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "webhook body too large"));
        }
        // What the body claims, for the log only. Nothing is trusted before verification: an
        // unverified claim is kept (truncated) but links the delivery to no transaction.
        let claimed: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        delivery.event_type = claimed["event_type"].as_str().map(str::to_owned);
        delivery.provider_reference = claimed["id"].as_str().map(str::to_owned);
        delivery.reference = claimed["reference"].as_str().map(str::to_owned);

        delivery.verification = match signature {
            None => Verification::Missing,
            Some(sig) if self.verifier.verify(body, sig) => Verification::Valid,
            Some(_) => Verification::Invalid,
        };
        if delivery.verification != Verification::Valid {
            delivery.outcome = "REJECTED_SIGNATURE".into();
            log::record(&self.table, &delivery).await?;
            tracing::warn!(delivery_id = %delivery.id, verification = ?delivery.verification, "webhook refused: signature");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "the webhook signature is missing or invalid",
            ));
        }
        let event: RevioEvent = match serde_json::from_slice(body) {
            Ok(e @ RevioEvent { .. }) if !e.id.is_empty() && !e.event_type.is_empty() => e,
            _ => {
                delivery.outcome = "MALFORMED".into();
                log::record(&self.table, &delivery).await?;
                tracing::warn!(delivery_id = %delivery.id, "webhook refused: malformed event");
                return Err(ApiError::bad_request("malformed_event", "the webhook body is not a Revio purchase event"));
            }
        };

        let event_key = format!("{}#{}", event.id, event.event_type);
        let claim = log::claim_event(&self.table, PROVIDER, &event_key, &delivery.id).await?;
        if claim == EventClaim::AlreadyQueued {
            delivery.outcome = "DUPLICATE".into();
            log::record(&self.table, &delivery).await?;
            tracing::info!(delivery_id = %delivery.id, purchase_id = %event.id, "duplicate webhook acknowledged");
            return Ok(Receipt { received: true, delivery_id: delivery.id, duplicate: true });
        }
        delivery.outcome = "QUEUED".into();
        log::record(&self.table, &delivery).await?;
        let message = QueuedEvent {
            delivery_id: delivery.id.clone(),
            purchase_id: event.id.clone(),
            event_type: event.event_type.clone(),
        };
        let body = serde_json::to_string(&message).map_err(ApiError::internal)?;
        if let Err(e) = self.sqs.send_message().queue_url(&self.queue_url).message_body(body).send().await {
            // Not queued: Revio retries the delivery (any answer but 2xx), and the event claim,
            // never marked QUEUED, lets that retry queue it. A 503, not a 500: nothing is wrong
            // with the delivery, SQS was briefly unavailable.
            let cause = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
            log::set_outcome(&self.table, &delivery.id, "QUEUE_FAILED", Some(&cause), None).await?;
            return Err(ApiError::temporarily_unavailable(format!("could not queue webhook event: {cause}")));
        }
        log::mark_event_queued(&self.table, PROVIDER, &event_key).await?;
        tracing::info!(delivery_id = %delivery.id, purchase_id = %event.id, event_type = %event.event_type, "webhook queued");
        Ok(Receipt { received: true, delivery_id: delivery.id, duplicate: claim == EventClaim::SeenNotQueued })
    }
}

/// The processing half, built once per cold start.
pub struct RevioEventProcessor {
    table: Table,
    revio: RevioClient,
}

impl RevioEventProcessor {
    /// Reads `PURSE_TABLE` and the Revio client settings.
    ///
    /// # Errors
    /// [`InitError`] naming what is missing.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self { table: Table::from_env(env, aws)?, revio: RevioClient::from_env(env, aws).await? })
    }

    /// Applies one queued event.
    ///
    /// # Errors
    /// A [`MessageError`] (the message is redelivered) when Revio or storage failed, when Revio
    /// does not yet confirm a payment the event announced, or when the message is unreadable
    /// (it then ends in the dead-letter queue, visible).
    pub async fn process(&self, body: &str) -> Result<(), MessageError> {
        let event: QueuedEvent =
            serde_json::from_str(body).map_err(|e| MessageError(format!("unreadable message: {e}")))?;
        let store = |e: crate::store::StoreError| MessageError(e.to_string());
        match settlement::settle_purchase(&self.table, &self.revio, &event.purchase_id).await {
            Ok(outcome) => {
                log::set_outcome(&self.table, &event.delivery_id, outcome.name(), None, outcome.transaction_id())
                    .await
                    .map_err(store)?;
                tracing::info!(delivery_id = %event.delivery_id, purchase_id = %event.purchase_id, outcome = outcome.name(), "webhook event processed");
                if matches!(outcome, Outcome::NotFinal(_)) && event.event_type == "purchase.paid" {
                    return Err(MessageError("Revio does not confirm the payment yet; retrying".into()));
                }
                Ok(())
            }
            Err(e) => {
                log::set_outcome(&self.table, &event.delivery_id, "RETRYING", Some(&e.0), None).await.map_err(store)?;
                Err(MessageError(e.0))
            }
        }
    }
}
