//! The local API Gateway: every function initialised from the template and routed by it.
//!
//! Used by the dev server (over a real socket) and by the integration tests (in process), so
//! both exercise the same routing and the same request building. The WebSocket API's routes are
//! here too ([`Router::ws_routes`]); the dev server's WebSocket endpoint serves them.

use crate::apigw::{self, RawRequest};
use crate::provision::{ProvisionError, Stack};
use crate::registry::{self, Handler};
use crate::template::{FunctionSpec, Template};
use lambda_http::{Body, Response};
use purse::runtime::{DynHttpFunction, DynScheduledFunction, DynSqsFunction, DynWsFunction, InitContext};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error("function {function} failed to initialise: {error}")]
    Init { function: String, error: purse::config::InitError },
    #[error(transparent)]
    Iam(#[from] crate::iam::IamError),
}

/// One HTTP route.
#[derive(Clone)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
    handler: Arc<dyn DynHttpFunction>,
}

/// A Function URL mount (a webhook).
#[derive(Clone)]
pub struct UrlMount {
    pub path: String,
    pub function: String,
    handler: Arc<dyn DynHttpFunction>,
}

/// An SQS-triggered function and the queue it consumes.
#[derive(Clone)]
pub struct Consumer {
    pub function: String,
    pub queue_logical_id: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: u32,
    pub handler: Arc<dyn DynSqsFunction>,
    /// The function's own AWS configuration (its credentials, see [`crate::iam`]): the event
    /// source mapping receives and deletes messages with the function's role, as in AWS.
    pub aws: aws_config::SdkConfig,
}

/// A function run on a schedule.
#[derive(Clone)]
pub struct Job {
    pub function: String,
    /// The template's schedule expression, e.g. `rate(5 minutes)`.
    pub schedule: String,
    pub handler: Arc<dyn DynScheduledFunction>,
}

/// One route of the WebSocket API: a route key (`$connect`, `ping`, ...) and its function.
#[derive(Clone)]
pub struct WsRoute {
    pub route_key: String,
    pub function: String,
    pub handler: Arc<dyn DynWsFunction>,
}

/// What [`Router::resolve`] found for a request.
pub enum Resolved<'a> {
    Route(&'a Route, BTreeMap<String, String>),
    Url(&'a UrlMount),
    /// The path exists but not for this method; these are the methods it accepts, sorted.
    MethodNotAllowed(Vec<String>),
    NotFound,
}

/// Every function of the template, initialised, with its routes.
#[derive(Default)]
pub struct Router {
    pub routes: Vec<Route>,
    pub urls: Vec<UrlMount>,
    pub consumers: Vec<Consumer>,
    pub jobs: Vec<Job>,
    /// The WebSocket API's routes, sorted by route key.
    pub ws_routes: Vec<WsRoute>,
}

impl Router {
    /// Initialises every function of `template` against `stack`. On the emulator each function
    /// signs with its own credentials and its template policy is registered first, so that it
    /// gets exactly what its role would allow in AWS ([`crate::iam`]).
    ///
    /// # Errors
    /// A function whose policy cannot be resolved or registered; the first function that fails
    /// to initialise, named.
    pub async fn start(template: &Template, stack: &Stack, aws: &aws_config::SdkConfig) -> Result<Self, RouterError> {
        Self::start_with(template, stack, aws, |_, env| env).await
    }

    /// Like [`Router::start`], letting the caller adjust each function's environment.
    ///
    /// # Errors
    /// See [`Router::start`].
    pub async fn start_with(
        template: &Template,
        stack: &Stack,
        aws: &aws_config::SdkConfig,
        adjust: impl Fn(&FunctionSpec, purse::config::Env) -> purse::config::Env,
    ) -> Result<Self, RouterError> {
        let mut router = Router::default();
        let local = crate::iam::is_local(aws);
        if local {
            crate::iam::register(aws, template, stack).await?;
        }
        for f in template.functions()? {
            let function_aws =
                if local { crate::iam::function_config(aws, &stack.prefix, &f.logical_id) } else { aws.clone() };
            let ctx = InitContext { env: adjust(&f, stack.function_env(&f)?), aws: function_aws.clone() };
            let handler = registry::init(&f.binary, &ctx)
                .await
                .map_err(|error| RouterError::Init { function: f.logical_id.clone(), error })?;
            match handler {
                Handler::Http(h) => {
                    let h: Arc<dyn DynHttpFunction> = Arc::from(h);
                    for (method, path) in &f.http_routes {
                        router.routes.push(Route {
                            method: method.clone(),
                            path: path.clone(),
                            function: f.logical_id.clone(),
                            handler: h.clone(),
                        });
                    }
                    if let Some(path) = &f.url_path {
                        router.urls.push(UrlMount {
                            path: path.clone(),
                            function: f.logical_id.clone(),
                            handler: h.clone(),
                        });
                    }
                }
                Handler::Scheduled(h) => {
                    let h: Arc<dyn DynScheduledFunction> = Arc::from(h);
                    for schedule in &f.schedules {
                        router.jobs.push(Job {
                            function: f.logical_id.clone(),
                            schedule: schedule.clone(),
                            handler: h.clone(),
                        });
                    }
                }
                Handler::Ws(h) => {
                    let h: Arc<dyn DynWsFunction> = Arc::from(h);
                    for route_key in &f.ws_routes {
                        router.ws_routes.push(WsRoute {
                            route_key: route_key.clone(),
                            function: f.logical_id.clone(),
                            handler: h.clone(),
                        });
                    }
                }
                Handler::Sqs(h) => {
                    let h: Arc<dyn DynSqsFunction> = Arc::from(h);
                    for src in &f.sqs_sources {
                        let q = stack.get(&src.queue_logical_id).ok_or_else(|| {
                            ProvisionError::Unresolved(format!("{}: queue {}", f.logical_id, src.queue_logical_id))
                        })?;
                        router.consumers.push(Consumer {
                            function: f.logical_id.clone(),
                            queue_logical_id: src.queue_logical_id.clone(),
                            queue_url: q.reference.clone(),
                            queue_arn: q.arn.clone(),
                            batch_size: src.batch_size,
                            handler: h.clone(),
                            aws: function_aws.clone(),
                        });
                    }
                }
            }
        }
        // Literal routes win over parameterised ones, as in API Gateway.
        router.routes.sort_by_key(|r| r.path.matches('{').count());
        router.ws_routes.sort_by(|a, b| a.route_key.cmp(&b.route_key));
        Ok(router)
    }

    /// The WebSocket route with exactly this key (`$connect`, `$disconnect`, `ping`, ...).
    pub fn ws_route(&self, route_key: &str) -> Option<&WsRoute> {
        self.ws_routes.iter().find(|r| r.route_key == route_key)
    }

    /// The route a message's text selects, as API Gateway does for `$request.body.action`: the
    /// route named by the `action` of a JSON object when there is one (never `$connect` or
    /// `$disconnect`), else `$default`; `None` when there is no `$default` either.
    pub fn select_ws_route(&self, body: &str) -> Option<&WsRoute> {
        crate::wsapi::selection_key(body)
            .filter(|key| !key.starts_with('$'))
            .and_then(|key| self.ws_route(&key))
            .or_else(|| self.ws_route(crate::wsapi::DEFAULT))
    }

    /// The HTTP function behind a logical id (for feeding it a raw event).
    pub fn http_function(&self, function: &str) -> Option<Arc<dyn DynHttpFunction>> {
        self.routes
            .iter()
            .find(|r| r.function == function)
            .map(|r| r.handler.clone())
            .or_else(|| self.urls.iter().find(|u| u.function == function).map(|u| u.handler.clone()))
    }

    /// The consumer of a queue, by the queue's logical id.
    pub fn consumer(&self, queue_logical_id: &str) -> Option<&Consumer> {
        self.consumers.iter().find(|c| c.queue_logical_id == queue_logical_id)
    }

    /// The scheduled job of a function, by logical id.
    pub fn job(&self, function: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.function == function)
    }

    /// Finds what serves `method path`.
    pub fn resolve(&self, method: &str, path: &str) -> Resolved<'_> {
        let mut allowed = std::collections::BTreeSet::new();
        for r in &self.routes {
            if let Some(params) = apigw::match_route(&r.path, path) {
                if r.method.eq_ignore_ascii_case(method) {
                    return Resolved::Route(r, params);
                }
                allowed.insert(r.method.to_ascii_uppercase());
            }
        }
        if let Some(u) = self.urls.iter().find(|u| u.path == path) {
            return Resolved::Url(u);
        }
        if allowed.is_empty() {
            Resolved::NotFound
        } else {
            Resolved::MethodNotAllowed(allowed.into_iter().collect())
        }
    }

    /// Serves one request as API Gateway (or a Function URL) and Lambda would.
    pub async fn dispatch(&self, raw: RawRequest) -> Response<Body> {
        let request_id = apigw::new_request_id();
        let (handler, route_key, params) = match self.resolve(&raw.method, &raw.path) {
            Resolved::Route(r, params) => (r.handler.clone(), format!("{} {}", r.method, r.path), params),
            Resolved::Url(u) => (u.handler.clone(), "$default".to_owned(), BTreeMap::new()),
            Resolved::MethodNotAllowed(allowed) => {
                let mut answer =
                    local_error(405, "method_not_allowed", "this path does not accept this method", &request_id);
                // RFC 9110, 15.5.6: a 405 lists the methods the target accepts.
                if let Ok(value) = lambda_http::http::HeaderValue::from_str(&allowed.join(", ")) {
                    answer.headers_mut().insert(lambda_http::http::header::ALLOW, value);
                }
                return answer;
            }
            Resolved::NotFound => {
                return local_error(404, "route_not_found", "no route matches this path", &request_id)
            }
        };
        let event = apigw::event(&raw, &route_key, &params, &request_id);
        match apigw::request_from_event(&event) {
            Ok(req) => handler.call_dyn(req).await,
            Err(e) => local_error(400, "bad_request", &format!("request could not be parsed: {e}"), &request_id),
        }
    }
}

/// An error answered by the local gateway itself, in the API's error shape.
pub fn local_error(status: u16, code: &str, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message, "request_id": request_id}}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use purse::runtime::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

    struct Nothing;

    impl DynWsFunction for Nothing {
        fn call_dyn(
            &self,
            _event: ApiGatewayWebsocketProxyRequest,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApiGatewayProxyResponse> + Send + '_>> {
            Box::pin(async { ApiGatewayProxyResponse::default() })
        }
    }

    fn router(keys: &[&str]) -> Router {
        let ws_routes = keys
            .iter()
            .map(|k| WsRoute { route_key: (*k).to_owned(), function: format!("F{k}"), handler: Arc::new(Nothing) })
            .collect();
        Router { ws_routes, ..Router::default() }
    }

    fn selected(router: &Router, body: &str) -> Option<String> {
        router.select_ws_route(body).map(|r| r.route_key.clone())
    }

    #[test]
    fn a_message_goes_to_the_route_its_action_names_else_to_default() {
        let r = router(&["$connect", "$default", "$disconnect", "ping"]);
        assert_eq!(selected(&r, r#"{"action":"ping"}"#).as_deref(), Some("ping"));
        assert_eq!(selected(&r, r#"{"action":"nope"}"#).as_deref(), Some("$default"));
        assert_eq!(selected(&r, "not json").as_deref(), Some("$default"));
        assert_eq!(selected(&r, r#"{"action":"$connect"}"#).as_deref(), Some("$default"));
        assert_eq!(selected(&router(&["ping"]), r#"{"action":"nope"}"#), None);
    }
}
