//! The one retry policy of Purse: bounded retries, exponential backoff with full jitter, and a
//! time budget per request.
//!
//! The delay before retry `n` (1 for the first retry) is drawn uniformly from
//! `[0, min(cap, base × 2^(n-1))]` ("full jitter", AWS Architecture Blog, "Exponential Backoff
//! And Jitter"), so that many clients retrying after the same outage do not arrive together.
//!
//! Who retries what:
//!
//! - **The AWS SDK** retries throttling (`ThrottlingException`,
//!   `ProvisionedThroughputExceededException`), 5xx and timeouts itself, configured once in
//!   [`crate::config::load_aws`] ([`SDK_MAX_ATTEMPTS`] attempts, backoff from
//!   [`SDK_INITIAL_BACKOFF`]); every DynamoDB call is also bounded by
//!   [`DYNAMODB_OPERATION_TIMEOUT`].
//! - **[`crate::store::transact`]** retries a `TransactWriteItems` that DynamoDB cancelled with
//!   `TransactionConflict` (which the SDK does not retry) or that still failed transiently after
//!   the SDK's attempts, with [`TRANSACT_POLICY`] — always the *same* request with the same
//!   `ClientRequestToken`, so an attempt whose answer was lost is not applied twice.
//! - **The Revio client** retries its reads with [`RetryPolicy::default`].
//!
//! Every retry, whoever makes it, is counted as the `Retries` metric by [`RetryKind`]
//! ([`record_retry`]): the SDK's through the [`SdkRetryMetrics`] interceptor on the DynamoDB and
//! SQS clients, ours where the loop decides to go round again; a loop of ours that gives up
//! counts `RetriesExhausted` ([`record_exhausted`]). `docs/metrics.md` lists them.
//!
//! Every retry loop also stops at the request's [`deadline`]: the runtime gives each HTTP
//! request and each SQS message a budget well inside the function's timeout
//! ([`REQUEST_BUDGET`]), so that a request that cannot finish answers 503 in time instead of
//! being killed half-way.

use rand::Rng;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Attempts the AWS SDK makes per call (the first included).
pub const SDK_MAX_ATTEMPTS: u32 = 4;
/// The ceiling of the SDK's first backoff (it doubles, with jitter, up to [`SDK_MAX_BACKOFF`]).
pub const SDK_INITIAL_BACKOFF: Duration = Duration::from_millis(25);
/// The SDK's largest backoff.
pub const SDK_MAX_BACKOFF: Duration = Duration::from_millis(400);
/// The longest one DynamoDB call may take, all of the SDK's attempts included.
pub const DYNAMODB_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest one attempt of a DynamoDB call may take.
pub const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// How [`crate::store::transact`] repeats a conflicted or transiently failed transaction.
pub const TRANSACT_POLICY: RetryPolicy =
    RetryPolicy { max_attempts: 6, base: Duration::from_millis(20), cap: Duration::from_millis(400) };

/// The time budget of one HTTP request or SQS message. The functions' timeout in
/// `template.yaml` is 10 s or more; the budget leaves room to answer.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(6);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `f` with a deadline `budget` from now; [`deadline`] reads it inside.
pub async fn with_budget<F: Future>(budget: Duration, f: F) -> F::Output {
    DEADLINE.scope(Instant::now() + budget, f).await
}

/// The deadline of the current request, if one was set with [`with_budget`].
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Whether waiting `delay` (and then trying once more) still fits in the current request's
/// budget. Without a budget, always `true`: the retry policy's attempt count bounds it.
pub fn fits(delay: Duration) -> bool {
    deadline().is_none_or(|d| Instant::now() + delay < d)
}

/// Counts of retries made by our own loops since the process started, for tests and the
/// metrics log.
#[derive(Debug, Default)]
pub struct RetryCounters {
    /// Transactions repeated after `TransactionConflict`.
    pub conflicts: AtomicU64,
    /// Transactions repeated after a transient failure the SDK gave up on.
    pub transient: AtomicU64,
    /// Transactions given up on when the budget or the attempts ran out.
    pub exhausted: AtomicU64,
}

/// The process-wide retry counters.
pub static COUNTERS: RetryCounters =
    RetryCounters { conflicts: AtomicU64::new(0), transient: AtomicU64::new(0), exhausted: AtomicU64::new(0) };

impl RetryCounters {
    /// `(conflicts, transient, exhausted)` so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.conflicts.load(Ordering::Relaxed),
            self.transient.load(Ordering::Relaxed),
            self.exhausted.load(Ordering::Relaxed),
        )
    }
}

/// Why a call is being repeated: the `Kind` dimension of the `Retries` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// The service said slow down (DynamoDB's throughput exceptions, HTTP 429).
    Throttle,
    /// DynamoDB cancelled a transaction for a `TransactionConflict` with another one.
    Conflict,
    /// The service answered with a 5xx.
    ServerError,
    /// No usable answer came: a timeout, a dropped connection (the call may have been applied).
    LostResponse,
    /// Anything else a retry classifier called retryable.
    Other,
}

impl RetryKind {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryKind::Throttle => "throttle",
            RetryKind::Conflict => "conflict",
            RetryKind::ServerError => "server_error",
            RetryKind::LostResponse => "lost_response",
            RetryKind::Other => "other",
        }
    }

    fn of_sdk(kind: aws_smithy_types::retry::ErrorKind) -> Self {
        use aws_smithy_types::retry::ErrorKind;
        match kind {
            ErrorKind::ThrottlingError => RetryKind::Throttle,
            ErrorKind::ServerError => RetryKind::ServerError,
            ErrorKind::TransientError => RetryKind::LostResponse,
            _ => RetryKind::Other,
        }
    }
}

/// The kind of an AWS SDK call's failure, for a retry loop of ours that repeats it.
pub fn kind_of_sdk_error<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> RetryKind
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            RetryKind::LostResponse
        }
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) if code.contains("Throttl") || code.contains("LimitExceeded") || code.contains("Throughput") => {
                RetryKind::Throttle
            }
            Some(code) if code.contains("TransactionConflict") || code.contains("TransactionInProgress") => {
                RetryKind::Conflict
            }
            _ => RetryKind::ServerError,
        },
        _ => RetryKind::Other,
    }
}

/// Publishes one retry (`Retries`, by `Kind`), whoever is about to make it.
pub fn record_retry(kind: RetryKind) {
    crate::metrics::Metric::count("Retries", 1).dimension("Kind", kind.as_str()).emit();
}

/// Publishes one retry loop of ours giving up (`RetriesExhausted`): its caller now fails.
pub fn record_exhausted() {
    crate::metrics::count("RetriesExhausted", 1);
}

/// An AWS SDK interceptor that counts the SDK's own retries as [`record_retry`] does: after a
/// failed attempt it asks the client's retry classifiers what kind of failure it was (the same
/// answer the SDK's retry strategy acts on) and keeps it with the call; when another attempt
/// starts, that kind is counted. A call that is not retried counts nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct SdkRetryMetrics;

/// The kind of the last failed attempt of one SDK call, kept in the call's state.
#[derive(Debug, Clone, Copy)]
struct FailedAttempt(RetryKind);

impl aws_smithy_types::config_bag::Storable for FailedAttempt {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for SdkRetryMetrics {
    fn name(&self) -> &'static str {
        "SdkRetryMetrics"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(failed) = cfg.load::<FailedAttempt>().copied() {
            record_retry(failed.0);
            cfg.interceptor_state().unset::<FailedAttempt>();
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction, RetryReason};
        if !matches!(context.output_or_error(), Some(Err(_))) {
            return Ok(());
        }
        // As the SDK's orchestrator runs them: in order, a later opinion replacing an earlier
        // one, and a refusal final.
        let mut action = RetryAction::NoActionIndicated;
        for classifier in components.retry_classifiers() {
            let next = classifier.classify_retry_v2(context.inner(), &action);
            if next == RetryAction::NoActionIndicated {
                continue;
            }
            action = next;
            if action == RetryAction::RetryForbidden {
                break;
            }
        }
        if let RetryAction::RetryIndicated(RetryReason::RetryableError { kind, .. }) = action {
            // The SDK calls a plain 5xx "transient" too: an answer came, so it was not lost.
            let answered_5xx = context.inner().response().is_some_and(|r| r.status().is_server_error());
            let kind = match RetryKind::of_sdk(kind) {
                RetryKind::LostResponse if answered_5xx => RetryKind::ServerError,
                other => other,
            };
            cfg.interceptor_state().store_put(FailedAttempt(kind));
        }
        Ok(())
    }
}

/// How often and how patiently a call is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// The ceiling of the first retry's delay.
    pub base: Duration,
    /// The largest delay ever waited.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, base 100 ms, cap 1 s.
    fn default() -> Self {
        Self { max_attempts: 3, base: Duration::from_millis(100), cap: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// The longest delay before retry `retry` (1-based): `min(cap, base × 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A delay before retry `retry` (1-based), uniformly drawn in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.gen_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_budget_bounds_what_fits_and_nothing_bounds_without_one() {
        assert!(fits(Duration::from_secs(3600)), "no budget: the attempt count is the bound");
        with_budget(Duration::from_millis(200), async {
            assert!(deadline().is_some());
            assert!(fits(Duration::from_millis(10)));
            assert!(!fits(Duration::from_millis(500)));
        })
        .await;
        assert!(deadline().is_none(), "the budget ends with its scope");
    }

    #[test]
    fn the_transaction_policy_waits_under_two_seconds_in_all() {
        let worst: Duration = (1..TRANSACT_POLICY.max_attempts).map(|n| TRANSACT_POLICY.ceiling(n)).sum();
        assert!(worst < Duration::from_secs(2), "{worst:?}");
    }

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ms: Vec<u128> = (1..=7).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn the_ceiling_never_overflows() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(40), Duration::from_secs(1));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn every_delay_lies_between_zero_and_the_ceiling_and_they_spread() {
        let p = RetryPolicy::default();
        let mut rng = rand::thread_rng();
        for retry in 1..=5 {
            let delays: Vec<Duration> = (0..500).map(|_| p.delay(retry, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= p.ceiling(retry)), "retry {retry}");
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            // full jitter: the draws cover most of the range, not a narrow band around the ceiling
            assert!(*min < p.ceiling(retry) / 4 && *max > p.ceiling(retry) * 3 / 4, "retry {retry}: {min:?}..{max:?}");
        }
    }
}
