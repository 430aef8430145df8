//! The webhook pipeline, one for every provider, and Revio's half of it.
//!
//! Receiving ([`WebhookPipeline::receive`], a Function URL per provider): cap the body, verify
//! the signature (Revio: RSA over the raw bytes; KYC: Standard Webhooks, [`crate::service::kyc`]), log the delivery whatever happens (hash and size, never the
//! body), de-duplicate by event (the event's first delivery is logged with one conditional write
//! that is also its claim, [`crate::store::webhooks::record_first`]), and hand the event to SQS
//! before answering 200. Anything
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
use crate::service::referrals::RewardsRelay;
use crate::service::settlement::{self, Outcome};
use crate::store::webhooks::{self as log, Delivery, FirstDelivery, Verification};
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
    /// `purchase` (absent in older deliveries) or `payout`.
    #[serde(default, rename = "type")]
    object: Option<String>,
}

/// What goes on the queue: identifiers only, never the webhook body.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub delivery_id: String,
    /// The purchase a purchase event is about (empty for a payout event).
    #[serde(default)]
    pub purchase_id: String,
    /// The payout a payout event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    pub event_type: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What the receiving pipeline needs from one provider: how its deliveries are signed and what
/// a verified delivery means. The pipeline itself (cap, verify, log, de-duplicate, queue) is
/// [`WebhookPipeline`], the same for every provider.
pub trait WebhookSource: Send + Sync {
    /// The provider's name in the log and in de-duplication keys.
    const PROVIDER: &'static str;

    /// What the body claims, for the log only (trusted only once verified): event type, the
    /// provider's id, and our reference.
    fn claims(&self, body: &[u8]) -> Claims;

    /// Checks the delivery's signature.
    ///
    /// # Errors
    /// How it failed and a short detail for the log (never the signature itself).
    fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), (Verification, &'static str)>;

    /// The event of a verified delivery: its de-duplication key and the queue message
    /// (identifiers only, never the body) as a JSON object whose `delivery_id` the pipeline
    /// sets, or `None` when the body is not an event of ours.
    fn event(&self, headers: &http::HeaderMap, body: &[u8]) -> Option<(String, serde_json::Value)>;
}

/// Why a webhook delivery was refused: the `Reason` dimension of `DeliveriesRejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The body is over [`MAX_WEBHOOK_BODY_BYTES`].
    Size,
    /// The signature is missing or does not verify.
    Signature,
    /// The signature's timestamp is outside the accepted window.
    StaleTimestamp,
    /// Verified, but not an event we know.
    Shape,
}

impl Rejection {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Size => "size",
            Rejection::Signature => "signature",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::Shape => "shape",
        }
    }
}

/// Publishes one refused delivery: `DeliveriesRejected` by `Provider` and `Reason`, with the
/// delivery's id (its record in the delivery log), when it has one, as a property.
pub fn count_rejected(provider: &'static str, reason: Rejection, delivery_id: Option<&str>) {
    let mut metric = crate::metrics::Metric::count("DeliveriesRejected", 1)
        .dimension("Provider", provider)
        .dimension("Reason", reason.as_str());
    if let Some(id) = delivery_id {
        metric = metric.property("delivery_id", id);
    }
    metric.emit();
}

/// What a delivery's body claims, before anything is trusted.
#[derive(Debug, Default)]
pub struct Claims {
    pub event_type: Option<String>,
    pub provider_reference: Option<String>,
    pub reference: Option<String>,
}

/// Revio's deliveries: RSA over the raw body in `X-Signature`; events keyed by purchase and type.
pub struct RevioSource {
    verifier: WebhookVerifier,
}

impl WebhookSource for RevioSource {
    const PROVIDER: &'static str = PROVIDER;

    fn claims(&self, body: &[u8]) -> Claims {
        let claimed: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        Claims {
            event_type: claimed["event_type"].as_str().map(str::to_owned),
            provider_reference: claimed["id"].as_str().map(str::to_owned),
            reference: claimed["reference"].as_str().map(str::to_owned),
        }
    }

    fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), (Verification, &'static str)> {
        match headers.get("x-signature").and_then(|v| v.to_str().ok()) {
            None => Err((Verification::Missing, "no X-Signature")),
            Some(sig) if self.verifier.verify(body, sig) => Ok(()),
            Some(_) => Err((Verification::Invalid, "signature does not verify")),
        }
    }

    fn event(&self, _headers: &http::HeaderMap, body: &[u8]) -> Option<(String, serde_json::Value)> {
        let event: RevioEvent =
            serde_json::from_slice(body).ok().filter(|e: &RevioEvent| !e.id.is_empty() && !e.event_type.is_empty())?;
        let payout = event.object.as_deref() == Some("payout") || event.event_type.starts_with("payout.");
        let message = QueuedEvent {
            delivery_id: String::new(),
            purchase_id: if payout { String::new() } else { event.id.clone() },
            payout_id: payout.then(|| event.id.clone()),
            event_type: event.event_type.clone(),
        };
        Some((format!("{}#{}", event.id, event.event_type), serde_json::to_value(&message).ok()?))
    }
}

/// The receiving half of a provider's webhooks, built once per cold start.
pub struct WebhookPipeline<S> {
    table: Table,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    source: S,
}

/// Revio's receiving pipeline.
pub type RevioWebhooks = WebhookPipeline<RevioSource>;

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
        WebhookPipeline::with_source(table, sqs, queue_url, RevioSource { verifier })
    }
}

impl<S: WebhookSource> WebhookPipeline<S> {
    /// The pipeline for `source`, queueing to `queue_url`.
    pub fn with_source(table: Table, sqs: aws_sdk_sqs::Client, queue_url: String, source: S) -> Self {
        Self { table, sqs, queue_url, source }
    }

    /// Handles one delivery: cap, verify, log (always), de-duplicate, queue.
    ///
    /// # Errors
    /// 413 `payload_too_large`, 401 `invalid_signature`, 400 `malformed_event` (all logged), or a
    /// 5xx when the event could not be queued — the provider then retries.
    pub async fn receive(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<Receipt, ApiError> {
        let mut delivery = Delivery {
            id: Delivery::new_id(),
            provider: S::PROVIDER,
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
            count_rejected(S::PROVIDER, Rejection::Size, Some(&delivery.id));
            tracing::warn!(delivery_id = %delivery.id, provider = S::PROVIDER, size = body.len(), "webhook refused: body too large");
            return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "webhook body too large"));
        }
        // What the body claims, for the log only. Nothing is trusted before verification: an
        // unverified claim is kept (truncated) but links the delivery to no transaction.
        let claims = self.source.claims(body);
        delivery.event_type = claims.event_type;
        delivery.provider_reference = claims.provider_reference;
        delivery.reference = claims.reference;

        if let Err((verification, detail)) = self.source.verify(headers, body) {
            delivery.verification = verification;
            delivery.outcome = "REJECTED_SIGNATURE".into();
            delivery.detail = Some(detail.to_owned());
            log::record(&self.table, &delivery).await?;
            let reason =
                if verification == Verification::Stale { Rejection::StaleTimestamp } else { Rejection::Signature };
            count_rejected(S::PROVIDER, reason, Some(&delivery.id));
            tracing::warn!(delivery_id = %delivery.id, provider = S::PROVIDER, verification = ?delivery.verification, detail, "webhook refused: signature");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "the webhook signature is missing, invalid or outside its time window",
            ));
        }
        delivery.verification = Verification::Valid;
        let Some((event_key, mut message)) = self.source.event(headers, body) else {
            delivery.outcome = "MALFORMED".into();
            log::record(&self.table, &delivery).await?;
            count_rejected(S::PROVIDER, Rejection::Shape, Some(&delivery.id));
            tracing::warn!(delivery_id = %delivery.id, provider = S::PROVIDER, "webhook refused: malformed event");
            return Err(ApiError::bad_request("malformed_event", "the webhook body is not an event we know"));
        };

        // One conditional write logs the event's first delivery under an id derived from the
        // event and claims the event: a later delivery meets it.
        let first_id = log::first_delivery_id(S::PROVIDER, &event_key);
        delivery.id.clone_from(&first_id);
        delivery.outcome = "QUEUED".into();
        let seen = log::record_first(&self.table, &delivery, &ulid::Ulid::new().to_string()).await?;
        let duplicate = seen != FirstDelivery::New;
        if duplicate {
            // A later delivery: logged under its own id, and handed over again only when the
            // first was never queued (see `needs_requeue`); processing is idempotent and records
            // its outcome on the first delivery's record.
            delivery.id = Delivery::new_id();
            delivery.outcome = if seen.needs_requeue() { "REQUEUED" } else { "DUPLICATE" }.into();
            log::record(&self.table, &delivery).await?;
            if !seen.needs_requeue() {
                tracing::info!(delivery_id = %delivery.id, provider = S::PROVIDER, "duplicate webhook acknowledged");
                return Ok(Receipt { received: true, delivery_id: delivery.id, duplicate: true });
            }
        }
        message["delivery_id"] = serde_json::Value::String(first_id.clone());
        if let Err(e) =
            self.sqs.send_message().queue_url(&self.queue_url).message_body(message.to_string()).send().await
        {
            // Not queued: the provider retries the delivery (any answer but 2xx), and the first
            // delivery's record, left unprocessed, lets that retry queue it. A 503, not a 500:
            // nothing is wrong with the delivery, SQS was briefly unavailable.
            let cause = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
            if duplicate {
                log::set_outcome(&self.table, &delivery.id, log::QUEUE_FAILED, Some(&cause), None).await?;
            } else {
                log::mark_queue_failed(&self.table, &first_id, &cause).await?;
            }
            return Err(ApiError::temporarily_unavailable(format!("could not queue webhook event: {cause}")));
        }
        tracing::info!(delivery_id = %delivery.id, provider = S::PROVIDER, event_type = ?delivery.event_type, duplicate, "webhook queued");
        Ok(Receipt { received: true, delivery_id: delivery.id, duplicate })
    }
}

/// The processing half, built once per cold start.
pub struct RevioEventProcessor {
    table: Table,
    revio: RevioClient,
    relay: Option<RewardsRelay>,
}

impl RevioEventProcessor {
    /// Reads `PURSE_TABLE`, the Revio client settings, and optional `REWARDS_QUEUE_URL` (where a
    /// referred user's first deposit is announced at once; the scheduled relay covers it too).
    ///
    /// # Errors
    /// [`InitError`] naming what is missing.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(env, aws)?,
            revio: RevioClient::from_env(env, aws).await?,
            relay: RewardsRelay::from_env_optional(env, aws),
        })
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
        if let Some(payout_id) = &event.payout_id {
            return match crate::service::withdrawals::settle_payout(&self.table, &self.revio, payout_id).await {
                Ok(outcome) => {
                    log::set_outcome(&self.table, &event.delivery_id, outcome.name(), None, outcome.transaction_id())
                        .await
                        .map_err(store)?;
                    tracing::info!(delivery_id = %event.delivery_id, payout_id = %payout_id, outcome = outcome.name(), "payout event processed");
                    Ok(())
                }
                Err(e) => {
                    log::set_outcome(&self.table, &event.delivery_id, "RETRYING", Some(&e.0), None)
                        .await
                        .map_err(store)?;
                    Err(MessageError(e.0))
                }
            };
        }
        match settlement::settle_purchase_with(&self.table, &self.revio, self.relay.as_ref(), &event.purchase_id).await
        {
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
