//! KYC: submitting a PAN for verification, learning the result (synchronously, by the
//! provider's webhook, or by polling), and deciding by hand what polling could not.
//!
//! Submission ([`KycService::submit`]) asks the provider first and writes afterwards, so a
//! provider that is down or slow leaves nothing behind (503, retry). When the answer is not
//! final it first queues a delayed follow-up on the KYC queue, then records the attempt: if the
//! process dies between the two, the follow-up finds no attempt and stops; if the queueing
//! fails, nothing is recorded. Either way no attempt waits without a follow-up.
//!
//! Results ([`KycService::process`], the KYC queue's consumer) arrive as a verified webhook or
//! a follow-up. Either way the provider's API is asked for the check's state (the webhook is a
//! trigger, the API the truth) and a final answer is applied once ([`kyc::finish`]). A
//! follow-up that still finds the check pending asks again later with backoff, up to a limit,
//! then marks the attempt for a person ([`KycService::resolve`]).
//!
//! The PAN is personal data: it is sent to the provider, stored encrypted ([`PiiKeys`]) and as a
//! keyed hash (uniqueness across accounts), and shown masked. It is in no log line, error,
//! queue message or webhook log.

use crate::config::{Env, InitError};
use crate::domain::ids::{KycId, UserId};
use crate::domain::kyc::{KycFieldError, KycSubmission};
use crate::domain::user::KycStatus;
use crate::error::ApiError;
use crate::kyc::{KycProvider, KycWebhookVerifier, ProviderError, ProviderStatus, WebhookRefusal};
use crate::pii::PiiKeys;
use crate::runtime::MessageError;
use crate::service::referrals::RewardsRelay;
use crate::service::webhooks::{Claims, WebhookPipeline, WebhookSource};
use crate::store::kyc::{self, Attempt, DecidedBy, Decision, Finished, NewAttempt, RecordError};
use crate::store::webhooks::{self as log, Verification};
use crate::store::{StoreError, Table};
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// `POST /v1/kyc` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitInput {
    pub pan: String,
    pub full_name: String,
    pub date_of_birth: String,
    #[serde(default)]
    pub consent: bool,
}

/// Why a submission was refused. Nothing was recorded in any case.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Field(#[from] KycFieldError),
    #[error("a verification is already in progress; wait for its result")]
    Pending,
    #[error("your identity is already verified")]
    AlreadyVerified,
    #[error("this PAN is already registered to another account")]
    PanInUse,
    #[error("the verification service is unavailable; nothing was submitted, please retry shortly")]
    ProviderUnavailable(String),
    #[error("the verification service refused the request")]
    ProviderRejected(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let message = e.to_string();
        match e {
            SubmitError::Field(f) => match f {
                KycFieldError::InvalidPan => ApiError::bad_request("invalid_pan", message),
                KycFieldError::InvalidName => ApiError::bad_request("invalid_full_name", message),
                KycFieldError::InvalidDateOfBirth => ApiError::bad_request("invalid_date_of_birth", message),
                KycFieldError::Underage(_) => ApiError::unprocessable("underage", message),
                KycFieldError::ConsentRequired => ApiError::bad_request("consent_required", message),
            },
            SubmitError::Pending => ApiError::conflict("kyc_pending", message),
            SubmitError::AlreadyVerified => ApiError::conflict("kyc_already_verified", message),
            SubmitError::PanInUse => ApiError::conflict("pan_already_registered", message),
            SubmitError::ProviderUnavailable(cause) => {
                let mut err = ApiError::unavailable(cause, 30);
                err.code = "kyc_provider_unavailable";
                err.message = message;
                err
            }
            SubmitError::ProviderRejected(cause) => {
                let mut err = ApiError::new(StatusCode::BAD_GATEWAY, "kyc_provider_rejected", message);
                err.cause = Some(cause);
                err
            }
            SubmitError::Store(s) => ApiError::from(s),
        }
    }
}

/// `GET /v1/kyc` and the answer to a submission.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct KycView {
    /// `NOT_STARTED`, `PENDING`, `VERIFIED` or `REJECTED`.
    pub status: KycStatus,
    pub kyc_id: Option<String>,
    /// `ABCxxxxx1Q`.
    pub pan_masked: Option<String>,
    /// Why it was rejected (`name_mismatch`, ...), when REJECTED.
    pub rejection_reason: Option<String>,
    /// Whether `POST /v1/kyc` would accept a submission now.
    pub can_submit: bool,
    pub updated_at: Option<String>,
}

impl KycView {
    /// The view of a profile's KYC fields.
    pub fn of(p: &kyc::ProfileKyc) -> Self {
        Self {
            status: p.status,
            kyc_id: p.kyc_id.as_ref().map(|k| k.to_string()),
            pan_masked: p.pan_masked.clone(),
            rejection_reason: if p.status == KycStatus::Rejected { p.rejection_reason.clone() } else { None },
            can_submit: matches!(p.status, KycStatus::NotStarted | KycStatus::Rejected),
            updated_at: p.updated_at.clone(),
        }
    }
}

/// The KYC queue's messages: identifiers only, never personal data.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KycMessage {
    /// The provider's webhook said this check has a result.
    Webhook { delivery_id: String, kyc_id: KycId, reference: String },
    /// Ask the provider (the `poll`-th time) whether the check has a result.
    FollowUp {
        kyc_id: KycId,
        poll: u32,
        /// How often this follow-up already found no attempt (it is queued before the attempt
        /// is written, so it may arrive first): looked for once more, then dropped.
        #[serde(default, skip_serializing_if = "is_zero")]
        missing_checks: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Receives of one KYC queue message before SQS parks it in the dead-letter queue (the
/// template's `maxReceiveCount`): on the last one a still-undecided attempt goes to a person.
pub const KYC_QUEUE_MAX_RECEIVES: u32 = 5;

/// Timing of the follow-ups.
#[derive(Debug, Clone, Copy)]
pub struct FollowUps {
    /// Seconds after submission of the first follow-up; then doubling, at most 900 (SQS's
    /// longest delay).
    pub first_after_seconds: u32,
    /// Follow-ups before the attempt is handed to a person.
    pub max_polls: u32,
}

impl FollowUps {
    /// The delay before follow-up `poll` (1-based).
    pub fn delay(&self, poll: u32) -> i32 {
        let d = u64::from(self.first_after_seconds) << poll.saturating_sub(1).min(20);
        d.min(900) as i32
    }
}

/// The KYC use cases, built once per cold start.
pub struct KycService<P> {
    table: Table,
    provider: P,
    keys: PiiKeys,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    callback_url: String,
    follow_ups: FollowUps,
    relay: Option<RewardsRelay>,
}

impl<P: KycProvider> KycService<P> {
    /// Reads `PURSE_TABLE`, `KYC_EVENTS_QUEUE_URL`, `KYC_WEBHOOK_URL`,
    /// `KYC_FOLLOW_UP_AFTER_SECONDS`, `KYC_MAX_POLLS`, the PII keys, and optional
    /// `REWARDS_QUEUE_URL`.
    ///
    /// # Errors
    /// [`InitError`] naming what is missing.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig, provider: P) -> Result<Self, InitError> {
        Ok(Self {
            table: Table::from_env(env, aws)?,
            provider,
            keys: PiiKeys::from_env(env, aws).await?,
            sqs: crate::store::sqs_client(aws),
            queue_url: env.require("KYC_EVENTS_QUEUE_URL")?,
            callback_url: env.require("KYC_WEBHOOK_URL")?,
            follow_ups: FollowUps {
                first_after_seconds: env.require_parsed("KYC_FOLLOW_UP_AFTER_SECONDS")?,
                max_polls: env.require_parsed("KYC_MAX_POLLS")?,
            },
            relay: RewardsRelay::from_env_optional(env, aws),
        })
    }

    /// The caller's KYC status.
    ///
    /// # Errors
    /// 404 for an unknown user, or a storage failure.
    pub async fn status(&self, user: &UserId) -> Result<KycView, ApiError> {
        let p = kyc::profile(&self.table, user).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
        Ok(KycView::of(&p))
    }

    /// Submits the caller's PAN for verification.
    ///
    /// # Errors
    /// See [`SubmitError`]; nothing is recorded when it fails.
    pub async fn submit(&self, user: &UserId, input: SubmitInput) -> Result<KycView, SubmitError> {
        let today = chrono::Utc::now().date_naive();
        let submission =
            KycSubmission::parse(&input.pan, &input.full_name, &input.date_of_birth, input.consent, today)?;
        let profile = kyc::profile(&self.table, user)
            .await?
            .ok_or_else(|| StoreError::Corrupt("caller has no profile".into()))?;
        match profile.status {
            KycStatus::Pending => return Err(SubmitError::Pending),
            KycStatus::Verified => return Err(SubmitError::AlreadyVerified),
            KycStatus::NotStarted | KycStatus::Rejected => {}
        }
        let pan_hash = self.keys.keyed_hash("pan", submission.pan.expose());
        if let Some((holder, state)) = kyc::pan_holder(&self.table, &pan_hash).await? {
            if &holder != user && state != "RELEASED" {
                tracing::info!(user_id = %user, "KYC refused: PAN registered to another account");
                return Err(SubmitError::PanInUse);
            }
        }
        let id = KycId::generate();
        let answer = self.provider.submit(&id, &submission, &self.callback_url).await.map_err(|e| match e {
            ProviderError::Unavailable(c) | ProviderError::Malformed(c) => SubmitError::ProviderUnavailable(c),
            ProviderError::Rejected(c) => SubmitError::ProviderRejected(c),
            ProviderError::NotFound => SubmitError::ProviderRejected("not found".into()),
        })?;
        let (status, reason) = match &answer.status {
            ProviderStatus::Pending => (KycStatus::Pending, None),
            ProviderStatus::Verified => (KycStatus::Verified, None),
            ProviderStatus::Rejected(r) => (KycStatus::Rejected, Some(r.clone())),
        };
        if status == KycStatus::Pending {
            self.follow_up(&id, 1).await.map_err(|e| SubmitError::Store(StoreError::Unavailable(e)))?;
        }
        let context = format!("kyc:{user}");
        let details = serde_json::json!({
            "full_name": submission.full_name.expose(),
            "date_of_birth": submission.date_of_birth.iso(),
        })
        .to_string();
        let new = NewAttempt {
            id: id.clone(),
            user_id: user.clone(),
            provider: self.provider.name(),
            provider_reference: answer.reference.clone(),
            status,
            rejection_reason: reason.clone(),
            pan_masked: submission.pan.masked(),
            pan_hash,
            pan_ciphertext: self.keys.encrypt(submission.pan.expose(), &format!("{context}:pan")),
            details_ciphertext: self.keys.encrypt(&details, &format!("{context}:details")),
            referred: profile.referred,
        };
        let attempt = kyc::record(&self.table, &new).await.map_err(|e| match e {
            RecordError::NotAllowed => SubmitError::Pending,
            RecordError::PanInUse => SubmitError::PanInUse,
            RecordError::Store(s) => SubmitError::Store(s),
        })?;
        tracing::info!(user_id = %user, kyc_id = %id, status = status.as_str(), "KYC submitted");
        crate::metrics::count("KycSubmitted", 1);
        if status == KycStatus::Verified {
            self.announce_reward(user, attempt.referred).await;
        }
        Ok(KycView {
            status,
            kyc_id: Some(id.to_string()),
            pan_masked: Some(attempt.pan_masked),
            rejection_reason: reason,
            can_submit: status == KycStatus::Rejected,
            updated_at: Some(attempt.updated_at),
        })
    }

    async fn follow_up(&self, id: &KycId, poll: u32) -> Result<(), String> {
        self.queue_follow_up(
            &KycMessage::FollowUp { kyc_id: id.clone(), poll, missing_checks: 0 },
            self.follow_ups.delay(poll),
        )
        .await
    }

    async fn queue_follow_up(&self, message: &KycMessage, delay: i32) -> Result<(), String> {
        let body = serde_json::to_string(message).map_err(|e| e.to_string())?;
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| {
                format!("could not queue the KYC follow-up: {}", aws_sdk_sqs::error::DisplayErrorContext(&e))
            })?;
        Ok(())
    }

    async fn announce_reward(&self, user: &UserId, referred: bool) {
        if let Some(relay) = &self.relay {
            after_verification(relay, user, referred).await;
        }
    }

    /// Processes one message of the KYC queue: confirms with the provider and applies a final
    /// result once; a pending check is asked again later, then handed to a person.
    ///
    /// # Errors
    /// A [`MessageError`] (the message is redelivered, and parked in the DLQ after its last
    /// attempt) when the provider or storage failed, or the provider does not yet confirm a
    /// result its webhook announced.
    pub async fn process(&self, body: &str, receive_count: u32) -> Result<(), MessageError> {
        let message: KycMessage =
            serde_json::from_str(body).map_err(|e| MessageError(format!("unreadable KYC message: {e}")))?;
        let (kyc_id, delivery, poll) = match &message {
            KycMessage::Webhook { delivery_id, kyc_id, .. } => (kyc_id, Some(delivery_id.as_str()), None),
            KycMessage::FollowUp { kyc_id, poll, .. } => (kyc_id, None, Some(*poll)),
        };
        let mut result = self.apply(kyc_id, &message, poll).await;
        if let (Err(e), true) = (&result, receive_count >= KYC_QUEUE_MAX_RECEIVES) {
            // The last delivery before the dead-letter queue: the attempt must not wait forever.
            if let Ok(Some(attempt)) = kyc::get(&self.table, kyc_id).await {
                if kyc::mark_for_review(&self.table, &attempt, "provider_unreachable").await.unwrap_or(false) {
                    tracing::warn!(kyc_id = %kyc_id, error = %e.0, "KYC result could not be fetched; handed to a person");
                    crate::metrics::count("KycReviewsOpened", 1);
                }
            }
        }
        if let (Ok("UNKNOWN_ATTEMPT"), KycMessage::FollowUp { kyc_id, poll, missing_checks: 0 }) = (&result, &message) {
            // Queued before its attempt was written: look once more, after the write's budget.
            let again = KycMessage::FollowUp { kyc_id: kyc_id.clone(), poll: *poll, missing_checks: 1 };
            if let Err(e) = self.queue_follow_up(&again, 10).await {
                result = Err(MessageError(e));
            }
        }
        if let Some(delivery) = delivery {
            let (outcome, detail) = match &result {
                Ok(o) => (*o, None),
                Err(e) => ("RETRYING", Some(e.0.as_str())),
            };
            log::set_outcome(&self.table, delivery, outcome, detail, None)
                .await
                .map_err(|e| MessageError(e.to_string()))?;
        }
        let outcome = result?;
        tracing::info!(kyc_id = %kyc_id, outcome, "KYC event processed");
        if outcome == "NOT_CONFIRMED" {
            return Err(MessageError("the provider does not confirm the result its webhook announced yet".into()));
        }
        Ok(())
    }

    async fn apply(&self, id: &KycId, message: &KycMessage, poll: Option<u32>) -> Result<&'static str, MessageError> {
        let store = |e: StoreError| MessageError(e.to_string());
        let Some(attempt) = kyc::get(&self.table, id).await.map_err(store)? else {
            return Ok("UNKNOWN_ATTEMPT");
        };
        if attempt.status != KycStatus::Pending {
            return Ok("ALREADY_FINAL");
        }
        if let KycMessage::Webhook { reference, .. } = message {
            if reference != &attempt.provider_reference {
                tracing::warn!(kyc_id = %id, "KYC webhook names another provider reference; ignored");
                return Ok("REFERENCE_MISMATCH");
            }
        }
        let answer = match self.provider.status(&attempt.provider_reference).await {
            Ok(a) => a,
            Err(ProviderError::NotFound) => {
                kyc::mark_for_review(&self.table, &attempt, "provider_lost_check").await.map_err(store)?;
                crate::metrics::count("KycReviewsOpened", 1);
                return Ok("NEEDS_REVIEW");
            }
            Err(e) => return Err(MessageError(e.to_string())),
        };
        let decision = match answer.status {
            ProviderStatus::Verified => Decision::Verified,
            ProviderStatus::Rejected(reason) => Decision::Rejected(reason),
            ProviderStatus::Pending => {
                let Some(poll) = poll else { return Ok("NOT_CONFIRMED") };
                if poll >= self.follow_ups.max_polls {
                    if kyc::mark_for_review(&self.table, &attempt, "no_result_after_polling").await.map_err(store)? {
                        tracing::warn!(kyc_id = %id, polls = poll, "KYC result never came; handed to a person");
                        crate::metrics::count("KycReviewsOpened", 1);
                    }
                    return Ok("NEEDS_REVIEW");
                }
                self.follow_up(id, poll + 1).await.map_err(MessageError)?;
                return Ok("STILL_PENDING");
            }
        };
        self.conclude(&attempt, &decision, &DecidedBy::Provider).await.map_err(store)
    }

    async fn conclude(
        &self,
        attempt: &Attempt,
        decision: &Decision,
        by: &DecidedBy,
    ) -> Result<&'static str, StoreError> {
        match kyc::finish(&self.table, attempt, decision, by).await? {
            Finished::Applied => {
                tracing::info!(kyc_id = %attempt.id, user_id = %attempt.user_id, verified = matches!(decision, Decision::Verified), "KYC result applied");
                if matches!(decision, Decision::Verified) {
                    self.announce_reward(&attempt.user_id, attempt.referred).await;
                }
                Ok("APPLIED")
            }
            Finished::AlreadyFinal(_) => Ok("ALREADY_FINAL"),
        }
    }
}

/// What a verification announces at once (both are also recorded in its own write, for the
/// scheduled relay): the user's own referral, when they were referred, and the referrals the
/// user made, which may have waited for their verification.
async fn after_verification(relay: &RewardsRelay, user: &UserId, referred: bool) {
    if referred {
        relay.notify(user).await;
    }
    // One message, however many referrals the user made: the rewards consumer looks at them.
    relay.notify_verified_referrer(user).await;
}

/// An attempt as an administrator sees it (masked PAN only).
#[derive(Debug, Serialize)]
pub struct ReviewView {
    pub kyc_id: String,
    pub user_id: String,
    pub provider: String,
    pub provider_reference: String,
    pub status: KycStatus,
    pub pan_masked: String,
    pub needs_review: bool,
    pub submitted_at: String,
    pub updated_at: String,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
    pub rejection_reason: Option<String>,
}

impl From<Attempt> for ReviewView {
    fn from(a: Attempt) -> Self {
        Self {
            kyc_id: a.id.to_string(),
            user_id: a.user_id.to_string(),
            provider: a.provider,
            provider_reference: a.provider_reference,
            status: a.status,
            pan_masked: a.pan_masked,
            needs_review: a.needs_review,
            submitted_at: a.submitted_at,
            updated_at: a.updated_at,
            resolved_by: a.resolved_by,
            resolution_note: a.resolution_note,
            rejection_reason: a.rejection_reason,
        }
    }
}

/// `GET /v1/admin/kyc/reviews`.
#[derive(Debug, Serialize)]
pub struct Reviews {
    pub reviews: Vec<ReviewView>,
}

/// `POST /v1/admin/kyc/{kyc_id}/resolve` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveInput {
    /// `approve` or `reject`.
    pub decision: String,
    /// Why: mandatory, kept on the attempt with the administrator's id.
    pub reason: String,
}

/// The reason a person sees when an administrator rejects an attempt.
pub const REJECTED_ON_REVIEW: &str = "rejected_on_review";

/// Attempts awaiting a person, oldest first.
///
/// # Errors
/// A storage failure.
pub async fn reviews(table: &Table, limit: i32) -> Result<Vec<ReviewView>, StoreError> {
    Ok(kyc::awaiting_review(table, limit).await?.into_iter().map(ReviewView::from).collect())
}

/// Decides a PENDING attempt by hand, exactly once, recording who and why.
///
/// # Errors
/// 400 `invalid_decision` / `reason_required`, 404 for an unknown attempt, 409
/// `kyc_not_pending` when it is already final, or a storage failure.
pub async fn resolve(
    table: &Table,
    relay: Option<&RewardsRelay>,
    admin: &UserId,
    id: &str,
    input: ResolveInput,
) -> Result<ReviewView, ApiError> {
    let decision = match input.decision.as_str() {
        "approve" => Decision::Verified,
        "reject" => Decision::Rejected(REJECTED_ON_REVIEW.into()),
        _ => return Err(ApiError::bad_request("invalid_decision", "decision must be approve or reject")),
    };
    let note = input.reason.trim();
    if note.is_empty() || note.chars().count() > 500 {
        return Err(ApiError::bad_request("reason_required", "reason must be 1 to 500 characters"));
    }
    let id = KycId::parse(id).map_err(|_| ApiError::not_found("no such KYC attempt"))?;
    let attempt = kyc::get(table, &id).await?.ok_or_else(|| ApiError::not_found("no such KYC attempt"))?;
    if attempt.status != KycStatus::Pending {
        return Err(ApiError::conflict(
            "kyc_not_pending",
            format!("this attempt is already {}", attempt.status.as_str()),
        ));
    }
    let by = DecidedBy::Admin { admin_id: admin.clone(), note: note.to_owned() };
    match kyc::finish(table, &attempt, &decision, &by).await? {
        Finished::Applied => {
            tracing::info!(kyc_id = %id, admin_id = %admin, user_id = %attempt.user_id, decision = %input.decision, "KYC decided by an administrator");
            if let (Decision::Verified, Some(relay)) = (&decision, relay) {
                after_verification(relay, &attempt.user_id, attempt.referred).await;
            }
        }
        Finished::AlreadyFinal(s) => {
            return Err(ApiError::conflict("kyc_not_pending", format!("this attempt is already {}", s.as_str())))
        }
    }
    let now = kyc::get(table, &id).await?.ok_or_else(|| ApiError::not_found("no such KYC attempt"))?;
    Ok(ReviewView::from(now))
}

/// The KYC provider's webhook deliveries: Standard Webhooks signatures, de-duplicated by
/// `webhook-id`, queued as [`KycMessage::Webhook`].
pub struct KycSource {
    verifier: KycWebhookVerifier,
}

/// The KYC provider's receiving pipeline.
pub type KycWebhooks = WebhookPipeline<KycSource>;

impl KycSource {
    /// A source verifying with these secrets.
    pub fn new(verifier: KycWebhookVerifier) -> Self {
        Self { verifier }
    }
}

impl WebhookSource for KycSource {
    const PROVIDER: &'static str = "kyc";

    fn claims(&self, body: &[u8]) -> Claims {
        let claimed: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        Claims {
            event_type: claimed["type"].as_str().map(str::to_owned),
            provider_reference: claimed["data"]["request_id"].as_str().map(str::to_owned),
            reference: claimed["data"]["client_ref"].as_str().map(str::to_owned),
        }
    }

    fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), (Verification, &'static str)> {
        self.verifier.verify(headers, body).map_err(|r| match r {
            WebhookRefusal::Missing => (Verification::Missing, "Standard Webhooks headers missing or malformed"),
            WebhookRefusal::StaleOrFuture => (Verification::Stale, "timestamp more than 5 minutes away"),
            WebhookRefusal::Invalid => (Verification::Invalid, "signature does not verify"),
        })
    }

    fn event(&self, headers: &http::HeaderMap, body: &[u8]) -> Option<(String, serde_json::Value)> {
        let webhook_id = headers.get("webhook-id")?.to_str().ok()?.to_owned();
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        let kyc_id = KycId::parse(json["data"]["client_ref"].as_str()?).ok()?;
        let reference = json["data"]["request_id"].as_str().filter(|r| !r.is_empty() && r.len() <= 128)?.to_owned();
        if webhook_id.is_empty() || webhook_id.len() > 128 {
            return None;
        }
        let message = KycMessage::Webhook { delivery_id: String::new(), kyc_id, reference };
        Some((webhook_id, serde_json::to_value(&message).ok()?))
    }
}

impl KycWebhooks {
    /// Reads `PURSE_TABLE`, `KYC_EVENTS_QUEUE_URL` and the KYC secret's webhook secrets.
    ///
    /// # Errors
    /// [`InitError`] naming what is missing or invalid.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let secret = crate::kyc::KycSecret::from_env(env, aws).await?;
        Ok(WebhookPipeline::with_source(
            Table::from_env(env, aws)?,
            aws_sdk_sqs::Client::new(aws),
            env.require("KYC_EVENTS_QUEUE_URL")?,
            KycSource::new(KycWebhookVerifier::new(&secret.webhook_secrets)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_ups_back_off_up_to_sqs_longest_delay() {
        let f = FollowUps { first_after_seconds: 60, max_polls: 8 };
        assert_eq!((1..=6).map(|p| f.delay(p)).collect::<Vec<_>>(), vec![60, 120, 240, 480, 900, 900]);
        assert_eq!(FollowUps { first_after_seconds: 1, max_polls: 3 }.delay(40), 900);
    }

    #[test]
    fn queue_messages_carry_identifiers_only() {
        let m = KycMessage::FollowUp { kyc_id: KycId::generate(), poll: 2, missing_checks: 0 };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.starts_with(r#"{"kind":"follow_up","kyc_id":"kyc_"#), "{text}");
        assert_eq!(serde_json::from_str::<KycMessage>(&text).unwrap(), m);
    }
}
