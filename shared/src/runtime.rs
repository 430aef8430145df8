//! How a function crate becomes a Lambda: the [`HttpFunction`] contract and its runner.
//!
//! A function declares who may call it ([`Access`]), how it starts ([`HttpFunction::init`], once
//! per cold start) and how it answers ([`HttpFunction::handle`]). Everything every route shares
//! lives here, in one place: the per-invocation tracing span, authentication and role checks
//! before the handler runs, and turning an [`ApiError`] into the JSON error shape. The Lambda
//! binary, the local dev server and the tests all call [`Loaded::call`], so they run the very
//! same code path.

use crate::auth::{Caller, Guard, ServiceCaller, ServiceGuard};
use crate::config::{Env, InitError};
use crate::error::ApiError;
use crate::http;
use futures::future::BoxFuture;
use lambda_http::{Body, Request, Response};
use std::future::Future;
use tracing::Instrument;

/// Who may call a route. Roles always come from the verified access token; a service's scopes
/// from its stored credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no token is read.
    Public,
    /// Any signed-in user with a valid access token.
    User,
    /// A signed-in user holding the `admin` role.
    Admin,
    /// A game service (a program, not a person) whose active credential holds this scope
    /// (`games:fees`, ...), sent as `Authorization: Basic base64(<client id>:<secret>)`
    /// ([`crate::auth::service`]). A user's access token is refused here (401), and a service
    /// credential is refused on every user route (it is not a Bearer token).
    Service(&'static str),
}

/// What a function is given at cold start.
#[derive(Clone)]
pub struct InitContext {
    /// The function's environment variables.
    pub env: Env,
    /// Shared AWS SDK configuration (region, credentials, endpoint).
    pub aws: aws_config::SdkConfig,
}

impl InitContext {
    /// The process environment and the default AWS configuration.
    pub async fn from_process() -> Self {
        Self { env: Env::from_process(), aws: crate::config::load_aws().await }
    }
}

/// Per-request facts the runner establishes before the handler runs.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    /// API Gateway's request id; echoed in error bodies.
    pub request_id: String,
    /// The authenticated caller; always `Some` for [`Access::User`] and [`Access::Admin`].
    pub caller: Option<Caller>,
    /// The authenticated game service; always `Some` for [`Access::Service`].
    pub service: Option<ServiceCaller>,
}

impl RequestCtx {
    /// The authenticated caller.
    ///
    /// # Errors
    /// 401 when the route is public and nobody is signed in.
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(|| ApiError::unauthorized("sign in first"))
    }

    /// The authenticated game service.
    ///
    /// # Errors
    /// 401 when the route is not a service route.
    pub fn service(&self) -> Result<&ServiceCaller, ApiError> {
        self.service.as_ref().ok_or_else(|| ApiError::unauthorized("send a service credential"))
    }
}

/// One HTTP Lambda function.
pub trait HttpFunction: Sized + Send + Sync + 'static {
    /// Who may call this function.
    const ACCESS: Access;

    /// Reads configuration and builds clients and services, once per cold start.
    ///
    /// # Errors
    /// An [`InitError`] naming the missing or invalid setting.
    fn init(ctx: &InitContext) -> impl Future<Output = Result<Self, InitError>> + Send;

    /// Answers one request. Expected failures are `Err(ApiError)`, never a panic.
    fn handle(&self, ctx: &RequestCtx, req: Request) -> impl Future<Output = Result<Response<Body>, ApiError>> + Send;
}

/// A function with what the runner needs around it (the token guard for protected routes, the
/// credential guard for service routes).
pub struct Loaded<F> {
    function: F,
    guard: Option<Guard>,
    services: Option<ServiceGuard>,
}

/// Who the runner found calling: a user, a service, or nobody (public routes).
type Callers = (Option<Caller>, Option<ServiceCaller>);

impl<F: HttpFunction> Loaded<F> {
    /// Initialises the function and, for protected routes, the token guard (service routes:
    /// the credential guard).
    ///
    /// # Errors
    /// Whatever [`HttpFunction::init`] or loading the token keys fails with.
    pub async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        let (guard, services) = match F::ACCESS {
            Access::Public => (None, None),
            Access::User | Access::Admin => (Some(Guard::from_env(ctx).await?), None),
            Access::Service(_) => (None, Some(ServiceGuard::from_env(ctx)?)),
        };
        Ok(Self { function: F::init(ctx).await?, guard, services })
    }

    /// The function itself, for tests that reach past HTTP.
    pub fn function(&self) -> &F {
        &self.function
    }

    /// Answers one API Gateway request: authenticate, authorise, handle, shape errors.
    pub async fn call(&self, req: Request) -> Response<Body> {
        let request_id = http::request_id(&req);
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %req.method(),
            path = %req.uri().path(),
            user_id = tracing::field::Empty,
            service_id = tracing::field::Empty,
        );
        async {
            let (caller, service) = match self.authenticate(&req).await {
                Ok(callers) => callers,
                Err(e) => return http::error_response(&e, &request_id),
            };
            if let Some(c) = &caller {
                tracing::Span::current().record("user_id", c.user_id.as_str());
            }
            if let Some(s) = &service {
                tracing::Span::current().record("service_id", s.service_id.as_str());
            }
            let ctx = RequestCtx { request_id: request_id.clone(), caller, service };
            match crate::retry::with_budget(crate::retry::REQUEST_BUDGET, self.function.handle(&ctx, req)).await {
                Ok(resp) => {
                    tracing::info!(status = resp.status().as_u16(), "request handled");
                    resp
                }
                Err(e) => http::error_response(&e, &request_id),
            }
        }
        .instrument(span)
        .await
    }

    async fn authenticate(&self, req: &Request) -> Result<Callers, ApiError> {
        if let (Access::Service(scope), Some(services)) = (F::ACCESS, &self.services) {
            return Ok((None, Some(services.authenticate(req, scope).await?)));
        }
        let Some(guard) = &self.guard else { return Ok((None, None)) };
        let caller = guard.authenticate(req)?;
        if F::ACCESS == Access::Admin && !caller.is_admin() {
            return Err(ApiError::forbidden("this route is for administrators"));
        }
        Ok((Some(caller), None))
    }
}

/// A loaded HTTP function behind a trait object, for the local dev server's route table.
pub trait DynHttpFunction: Send + Sync {
    /// See [`Loaded::call`].
    fn call_dyn(&self, req: Request) -> BoxFuture<'_, Response<Body>>;
}

impl<F: HttpFunction> DynHttpFunction for Loaded<F> {
    fn call_dyn(&self, req: Request) -> BoxFuture<'_, Response<Body>> {
        Box::pin(self.call(req))
    }
}

/// The cold start every Lambda binary shares: logging, configuration, and the function's own
/// initialisation, whose failure is logged before Lambda reports it.
async fn cold_start<T, Fut>(init: impl FnOnce(InitContext) -> Fut) -> Result<T, InitError>
where
    Fut: Future<Output = Result<T, InitError>>,
{
    crate::telemetry::init();
    let ctx = InitContext::from_process().await;
    init(ctx).await.inspect_err(|e| tracing::error!(error = %e, "function failed to initialise"))
}

/// Initialises `F` from the process environment and serves it on the Lambda runtime API.
///
/// # Errors
/// Initialisation errors (logged, then returned so Lambda reports an init failure).
pub async fn run_http<F: HttpFunction>() -> Result<(), lambda_http::Error> {
    let loaded = cold_start(|ctx| async move { Loaded::<F>::init(&ctx).await }).await?;
    let loaded = &loaded;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(loaded.call(req).await)
    }))
    .await
}

/// Why one SQS message could not be processed; it is reported back and redelivered, and after
/// `maxReceiveCount` attempts SQS moves it to the queue's dead-letter queue.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MessageError(pub String);

/// One SQS-triggered Lambda function that processes messages one by one.
pub trait SqsFunction: Sized + Send + Sync + 'static {
    /// Reads configuration and builds clients, once per cold start.
    ///
    /// # Errors
    /// An [`InitError`] naming the missing or invalid setting.
    fn init(ctx: &InitContext) -> impl Future<Output = Result<Self, InitError>> + Send;

    /// Processes one message. Must be idempotent: SQS delivers at least once.
    ///
    /// # Errors
    /// A [`MessageError`] makes this message (and only this one) be redelivered.
    fn handle_message(&self, message: &SqsMessage) -> impl Future<Output = Result<(), MessageError>> + Send;

    /// The receives the function's queue allows before SQS moves a message to its dead-letter
    /// queue: its `maxReceiveCount` in `template.yaml`. A failure on that receive is counted
    /// as `MessagesParked`.
    fn max_receives(&self) -> u32 {
        DEFAULT_MAX_RECEIVES
    }
}

/// The `maxReceiveCount` of every queue in `template.yaml` but the payouts queue (whose worker
/// says its own, [`SqsFunction::max_receives`]).
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

/// The queues of `template.yaml` by their name after `purse-<stage>-`: the values of
/// `MessagesParked`'s `Queue` dimension (`other` for a queue not listed here).
pub const QUEUES: [&str; 5] = ["revio-events", "kyc-events", "rewards", "payouts", "call-billing"];

/// The `Queue` dimension of a message from the queue `arn` (`arn:aws:sqs:<region>:<account>:purse-<stage>-<queue>`).
fn queue_dimension(arn: Option<&str>) -> &'static str {
    let name = arn.and_then(|a| a.rsplit(':').next()).unwrap_or("");
    QUEUES
        .iter()
        .find(|q| name.strip_suffix(**q).is_some_and(|prefix| prefix.starts_with("purse-") && prefix.ends_with('-')))
        .copied()
        .unwrap_or("other")
}

pub use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

/// Processes a batch, reporting only the messages that failed (`ReportBatchItemFailures`).
///
/// The batch's messages run concurrently, each within its own time budget
/// ([`crate::retry::REQUEST_BUDGET`]), so one slow provider call cannot hold the others until
/// the function times out (which would redeliver messages that had already been settled).
pub async fn handle_batch<F: SqsFunction>(function: &F, event: SqsEvent) -> SqsBatchResponse {
    let runs = event.records.iter().map(|message| async move {
        let id = message.message_id.clone().unwrap_or_default();
        let receive_count = message.attributes.get("ApproximateReceiveCount").cloned().unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id, receive_count = %receive_count);
        let result = crate::retry::with_budget(crate::retry::REQUEST_BUDGET, function.handle_message(message))
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        match result {
            Ok(()) => {
                tracing::info!("message processed");
                None
            }
            Err(e) => {
                let receives: u32 = receive_count.parse().unwrap_or(1);
                if receives >= function.max_receives() {
                    tracing::error!(error = %e, receives, "message failed on its last receive; SQS moves it to the dead-letter queue");
                    crate::metrics::Metric::count("MessagesParked", 1)
                        .dimension("Queue", queue_dimension(message.event_source_arn.as_deref()))
                        .property("message_id", &id)
                        .emit();
                } else {
                    tracing::warn!(error = %e, "message failed; it will be redelivered");
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                Some(failure)
            }
        }
    });
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = futures::future::join_all(runs).await.into_iter().flatten().collect();
    response
}

/// A loaded SQS function behind a trait object, for the local dev server's pollers.
pub trait DynSqsFunction: Send + Sync {
    /// See [`handle_batch`].
    fn call_dyn(&self, event: SqsEvent) -> BoxFuture<'_, SqsBatchResponse>;
}

/// An initialised [`SqsFunction`].
pub struct LoadedSqs<F>(pub F);

impl<F: SqsFunction> LoadedSqs<F> {
    /// Initialises the function.
    ///
    /// # Errors
    /// Whatever [`SqsFunction::init`] fails with.
    pub async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self(F::init(ctx).await?))
    }
}

impl<F: SqsFunction> DynSqsFunction for LoadedSqs<F> {
    fn call_dyn(&self, event: SqsEvent) -> BoxFuture<'_, SqsBatchResponse> {
        Box::pin(handle_batch(&self.0, event))
    }
}

/// Initialises `F` from the process environment and serves SQS batches on the runtime API.
///
/// # Errors
/// Initialisation errors (logged, then returned so Lambda reports an init failure).
pub async fn run_sqs<F: SqsFunction>() -> Result<(), lambda_runtime::Error> {
    let function = cold_start(|ctx| async move { F::init(&ctx).await }).await?;
    let function = &function;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
        Ok::<_, std::convert::Infallible>(handle_batch(function, event.payload).await)
    }))
    .await
}

/// A function run on a schedule (EventBridge), such as reconciliation.
pub trait ScheduledFunction: Sized + Send + Sync + 'static {
    /// Reads configuration and builds clients, once per cold start.
    ///
    /// # Errors
    /// An [`InitError`] naming the missing or invalid setting.
    fn init(ctx: &InitContext) -> impl Future<Output = Result<Self, InitError>> + Send;

    /// Runs one pass and returns a summary for the log.
    ///
    /// # Errors
    /// A message when the pass could not run at all; Lambda records the failure and the next
    /// scheduled run tries again.
    fn run(&self) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
}

/// A loaded scheduled function behind a trait object, for the local dev server.
pub trait DynScheduledFunction: Send + Sync {
    /// See [`ScheduledFunction::run`].
    fn run_dyn(&self) -> BoxFuture<'_, Result<serde_json::Value, String>>;
}

/// An initialised [`ScheduledFunction`].
pub struct LoadedScheduled<F>(pub F);

impl<F: ScheduledFunction> LoadedScheduled<F> {
    /// Initialises the function.
    ///
    /// # Errors
    /// Whatever [`ScheduledFunction::init`] fails with.
    pub async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self(F::init(ctx).await?))
    }
}

impl<F: ScheduledFunction> DynScheduledFunction for LoadedScheduled<F> {
    fn run_dyn(&self) -> BoxFuture<'_, Result<serde_json::Value, String>> {
        Box::pin(async move {
            let span = tracing::info_span!("scheduled_run");
            self.0.run().instrument(span).await
        })
    }
}

/// Initialises `F` and runs it for every scheduled event.
///
/// # Errors
/// Initialisation errors.
pub async fn run_scheduled<F: ScheduledFunction>() -> Result<(), lambda_runtime::Error> {
    let function = cold_start(|ctx| async move { F::init(&ctx).await }).await?;
    let function = &function;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            function.run().await.map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}

// ------------------------------------------------------------------------------------------
// WebSocket routes (API Gateway WebSocket API)
// ------------------------------------------------------------------------------------------

pub use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

/// What a WebSocket route's handler is given: the facts of API Gateway's event that matter.
#[derive(Debug, Clone)]
pub struct WsRequest {
    /// API Gateway's id of the connection (the address of pushes to it).
    pub connection_id: String,
    /// The route (`$connect`, `$disconnect`, `$default`, `call.invite`, ...).
    pub route_key: String,
    /// `CONNECT`, `MESSAGE` or `DISCONNECT`.
    pub event_type: String,
    /// API Gateway's request id.
    pub request_id: String,
    /// The frame's text, for `MESSAGE` events.
    pub body: Option<String>,
    /// The query string of the handshake (`$connect` only), such as `ticket`.
    pub query: std::collections::HashMap<String, String>,
}

impl WsRequest {
    /// Reads API Gateway's event.
    pub fn from_event(event: &ApiGatewayWebsocketProxyRequest) -> Self {
        let ctx = &event.request_context;
        let query = event
            .query_string_parameters
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<std::collections::HashMap<_, _>>();
        Self {
            connection_id: ctx.connection_id.clone().unwrap_or_default(),
            route_key: ctx.route_key.clone().unwrap_or_default(),
            event_type: ctx.event_type.clone().unwrap_or_default(),
            request_id: ctx.request_id.clone().unwrap_or_default(),
            body: event.body.clone(),
            query,
        }
    }
}

/// One WebSocket route's Lambda function.
///
/// A `$connect` handler's error refuses the handshake with the error's status. Any other
/// route's error is sent to the connection as an `error` frame (`{"type":"error","code",...}`)
/// through the Management API: a WebSocket client never sees an HTTP status.
pub trait WsFunction: Sized + Send + Sync + 'static {
    /// Reads configuration and builds clients, once per cold start.
    ///
    /// # Errors
    /// An [`InitError`] naming the missing or invalid setting.
    fn init(ctx: &InitContext) -> impl Future<Output = Result<Self, InitError>> + Send;

    /// Handles one event.
    fn handle(&self, req: &WsRequest) -> impl Future<Output = Result<(), crate::ws::WsError>> + Send;

    /// The client that pushes frames to connections (the runner sends error frames with it).
    fn pusher(&self) -> &crate::ws::Pusher;
}

/// An initialised [`WsFunction`].
pub struct LoadedWs<F>(pub F);

impl<F: WsFunction> LoadedWs<F> {
    /// Initialises the function.
    ///
    /// # Errors
    /// Whatever [`WsFunction::init`] fails with.
    pub async fn init(ctx: &InitContext) -> Result<Self, InitError> {
        Ok(Self(F::init(ctx).await?))
    }

    /// Handles one API Gateway WebSocket event: the status answers a `$connect` (200 accepts
    /// the handshake); for a message, an error becomes an `error` frame to the sender.
    pub async fn call(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let req = WsRequest::from_event(&event);
        let span = tracing::info_span!(
            "ws",
            request_id = %req.request_id,
            route = %req.route_key,
            connection_id = %req.connection_id,
        );
        async {
            let result = crate::retry::with_budget(crate::retry::REQUEST_BUDGET, self.0.handle(&req)).await;
            let status = match result {
                Ok(()) => 200,
                Err(e) => {
                    if e.status >= 500 {
                        tracing::error!(code = e.code, cause = e.cause.as_deref().unwrap_or(""), "ws route failed");
                    } else {
                        tracing::info!(code = e.code, "ws route refused");
                    }
                    if req.event_type == "MESSAGE" {
                        let frame = e.frame();
                        if let Err(push) = self.0.pusher().send(&req.connection_id, &frame).await {
                            tracing::warn!(error = %push, "could not send the error frame");
                        }
                        200
                    } else {
                        e.status
                    }
                }
            };
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = i64::from(status);
            response
        }
        .instrument(span)
        .await
    }
}

/// A loaded WebSocket function behind a trait object, for the local WebSocket endpoint.
pub trait DynWsFunction: Send + Sync {
    /// See [`LoadedWs::call`].
    fn call_dyn(&self, event: ApiGatewayWebsocketProxyRequest) -> BoxFuture<'_, ApiGatewayProxyResponse>;
}

impl<F: WsFunction> DynWsFunction for LoadedWs<F> {
    fn call_dyn(&self, event: ApiGatewayWebsocketProxyRequest) -> BoxFuture<'_, ApiGatewayProxyResponse> {
        Box::pin(self.call(event))
    }
}

/// Initialises `F` and serves WebSocket route events on the runtime API.
///
/// # Errors
/// Initialisation errors.
pub async fn run_ws<F: WsFunction>() -> Result<(), lambda_runtime::Error> {
    let function = cold_start(|ctx| async move { LoadedWs::<F>::init(&ctx).await }).await?;
    let function = &function;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            // Boxed: the handler's future is deep enough to overflow the compiler's layout limit.
            let response: BoxFuture<'_, ApiGatewayProxyResponse> = Box::pin(function.call(event.payload));
            Ok::<_, std::convert::Infallible>(response.await)
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_dimension_is_the_queue_name_without_the_stage_and_never_an_arbitrary_string() {
        assert_eq!(queue_dimension(Some("arn:aws:sqs:af-south-1:123456789012:purse-prod-payouts")), "payouts");
        assert_eq!(queue_dimension(Some("arn:aws:sqs:af-south-1:123456789012:purse-staging-kyc-events")), "kyc-events");
        assert_eq!(queue_dimension(Some("arn:aws:sqs:af-south-1:123456789012:purse-prod-payouts-dlq")), "other");
        assert_eq!(queue_dimension(Some("arn:aws:sqs:af-south-1:123456789012:someone-elses")), "other");
        assert_eq!(queue_dimension(None), "other");
    }

    /// `template.yaml`'s queues: (name after `purse-${Stage}-`, `maxReceiveCount`).
    fn template_queues() -> Vec<(String, u32)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let text = std::fs::read_to_string(path).expect("template.yaml");
        let mut queues = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("QueueName: !Sub purse-${Stage}-") {
                current = Some(name.to_owned());
            } else if let Some(count) = line.strip_prefix("maxReceiveCount:") {
                let name = current.take().expect("a maxReceiveCount after its QueueName");
                queues.push((name, count.trim().parse().expect("a number")));
            }
        }
        queues
    }

    #[test]
    fn every_queue_of_the_template_is_a_queue_dimension_with_the_receives_its_consumer_assumes() {
        let queues = template_queues();
        let mut names: Vec<&str> = queues.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let mut known = QUEUES.to_vec();
        known.sort_unstable();
        assert_eq!(names, known, "QUEUES must list the template's queues (MessagesParked's Queue dimension)");
        for (name, count) in &queues {
            if name != "payouts" {
                // The payouts worker reads its own (PAYOUT_MAX_ATTEMPTS, equal to its queue's).
                assert_eq!(*count, DEFAULT_MAX_RECEIVES, "queue {name}: its consumer assumes {DEFAULT_MAX_RECEIVES}");
            }
        }
    }
}
