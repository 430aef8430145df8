//! Turning API Gateway requests into typed input and typed results into responses.
//!
//! The same rules hold for every route: JSON bodies only, at most [`MAX_BODY_BYTES`], unknown
//! fields rejected by the request types themselves (`#[serde(deny_unknown_fields)]`), and every
//! answer JSON.

use crate::error::ApiError;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{de::DeserializeOwned, Serialize};

/// Largest request body any JSON route accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The bytes of a request body.
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Parses a JSON request body into `T`.
///
/// # Errors
/// - 415 `unsupported_media_type` when the content type is not `application/json`;
/// - 413 `payload_too_large` when the body exceeds [`MAX_BODY_BYTES`];
/// - 400 `malformed_json` when the body is not JSON;
/// - 400 `invalid_request` when it is JSON of the wrong shape (missing/unknown/mistyped field).
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    let bytes = body_bytes(req);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::bad_request("invalid_request", format!("the request body is not valid: {e}"))
        }
        _ => ApiError::bad_request("malformed_json", "the request body is not well-formed JSON"),
    })
}

/// A JSON response with this status.
pub fn json<T: Serialize>(status: http::StatusCode, value: &T) -> Result<Response<Body>, ApiError> {
    let body = serde_json::to_string(value).map_err(ApiError::internal)?;
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::Text(body))
        .map_err(ApiError::internal)
}

/// A response with no body.
pub fn empty(status: http::StatusCode) -> Result<Response<Body>, ApiError> {
    Response::builder()
        .status(status)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::Empty)
        .map_err(ApiError::internal)
}

/// The JSON error response for `err`, logging the cause of a 5xx.
pub fn error_response(err: &ApiError, request_id: &str) -> Response<Body> {
    if err.status.is_server_error() {
        tracing::error!(code = err.code, cause = err.cause.as_deref().unwrap_or(""), "request failed");
    } else {
        tracing::info!(status = err.status.as_u16(), code = err.code, "request rejected");
    }
    let body = serde_json::to_string(&err.body(request_id)).unwrap_or_else(|_| "{}".to_owned());
    let mut builder = Response::builder()
        .status(err.status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store");
    if let Some(secs) = err.retry_after {
        builder = builder.header(http::header::RETRY_AFTER, secs.to_string());
    }
    builder.body(Body::Text(body)).unwrap_or_else(|_| Response::new(Body::Empty))
}

/// The API Gateway request id, or the Lambda request id, or `-`.
pub fn request_id(req: &Request) -> String {
    use lambda_http::request::RequestContext;
    if let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() {
        if let Some(id) = &ctx.request_id {
            return id.clone();
        }
    }
    req.lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_else(|| "-".to_owned())
}

/// A path parameter such as `{id}`.
///
/// # Errors
/// 404 `not_found` when absent (the route did not match it).
pub fn path_param(req: &Request, name: &str) -> Result<String, ApiError> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::not_found("no such resource"))
}

/// A query string parameter.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_owned)
}

/// A header's value as text.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}
