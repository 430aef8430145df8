//! Building Lambda events exactly as an API Gateway WebSocket API does, so that the WebSocket
//! route functions served locally see what they will see in AWS.
//!
//! Each event is built as the JSON API Gateway sends (`$connect`: headers and query string;
//! a message: the frame's text as `body`; `$disconnect`: the close code and reason) and then
//! parsed into `ApiGatewayWebsocketProxyRequest` by the same `aws_lambda_events` types the
//! Lambda runtime uses. Route selection follows the template's `$request.body.action`.

use base64::Engine;
use purse::runtime::ApiGatewayWebsocketProxyRequest;
use rand::RngCore;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The route of the handshake; a non-200 answer refuses the connection.
pub const CONNECT: &str = "$connect";
/// The route told, best effort, that a connection closed.
pub const DISCONNECT: &str = "$disconnect";
/// The route of a message whose selected key has no route of its own.
pub const DEFAULT: &str = "$default";
/// The only route selection expression the local endpoint understands.
pub const ROUTE_SELECTION_EXPRESSION: &str = "$request.body.action";

/// The largest message API Gateway accepts from a client (128 KB); a larger one closes the
/// connection with 1009.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// API Gateway closes a connection that has been idle this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// API Gateway closes every connection after this long.
pub const MAX_CONNECTION_DURATION: Duration = Duration::from_secs(2 * 60 * 60);

/// A connection as API Gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// API Gateway's id (`L0SM9cOFvHcCIhw=`), the address of pushes to the connection.
    pub connection_id: String,
    /// When the handshake arrived, milliseconds since the epoch.
    pub connected_at_ms: i64,
    pub source_ip: String,
    pub user_agent: String,
    /// The `Host` the client connected to (`requestContext.domainName`).
    pub domain_name: String,
    /// The stage (`requestContext.stage`).
    pub stage: String,
    /// The API's id (`requestContext.apiId`).
    pub api_id: String,
}

/// A new id in API Gateway's shape: 11 random bytes, base64 (URL-safe alphabet) with `=`.
pub fn new_connection_id() -> String {
    let mut bytes = [0u8; 11];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// The route key a message selects by `$request.body.action`: the `action` string of a JSON
/// object; `None` (meaning `$default`) for anything else.
pub fn selection_key(body: &str) -> Option<String> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => map.get("action").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The `$connect` event for a handshake with this query string (without `?`) and headers.
///
/// # Errors
/// When the JSON does not parse as an [`ApiGatewayWebsocketProxyRequest`] (it always should).
pub fn connect_event(
    conn: &Connection,
    raw_query: &str,
    headers: &[(String, String)],
    request_id: &str,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let mut event = base(conn, CONNECT, "CONNECT", request_id);
    let mut single: BTreeMap<String, String> = BTreeMap::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        single.insert(name.clone(), value.clone());
        multi.entry(name.clone()).or_default().push(value.clone());
    }
    single.insert("X-Forwarded-For".into(), conn.source_ip.clone());
    multi.insert("X-Forwarded-For".into(), vec![conn.source_ip.clone()]);
    event["headers"] = json!(single);
    event["multiValueHeaders"] = json!(multi);
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    let mut multi_query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (crate::apigw::percent_decode(k), crate::apigw::percent_decode(v));
        // Like API Gateway: the single-value map keeps the last value of a repeated name.
        query.insert(k.clone(), v.clone());
        multi_query.entry(k).or_default().push(v);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
        event["multiValueQueryStringParameters"] = json!(multi_query);
    }
    serde_json::from_value(event)
}

/// The event of one text message routed to `route_key`.
///
/// # Errors
/// See [`connect_event`].
pub fn message_event(
    conn: &Connection,
    route_key: &str,
    body: &str,
    request_id: &str,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let mut event = base(conn, route_key, "MESSAGE", request_id);
    event["requestContext"]["messageId"] = json!(new_connection_id());
    event["body"] = json!(body);
    serde_json::from_value(event)
}

/// The `$disconnect` event of a connection that closed with `status_code` and `reason`
/// (API Gateway's `disconnectStatusCode` and `disconnectReason`).
///
/// # Errors
/// See [`connect_event`].
pub fn disconnect_event(
    conn: &Connection,
    status_code: u16,
    reason: &str,
    request_id: &str,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let mut event = base(conn, DISCONNECT, "DISCONNECT", request_id);
    let headers = json!({"Host": conn.domain_name, "X-Forwarded-For": conn.source_ip});
    event["multiValueHeaders"] = json!({"Host": [conn.domain_name], "X-Forwarded-For": [conn.source_ip]});
    event["headers"] = headers;
    event["requestContext"]["disconnectStatusCode"] = json!(status_code);
    event["requestContext"]["disconnectReason"] = json!(reason);
    serde_json::from_value(event)
}

/// What every event carries.
fn base(conn: &Connection, route_key: &str, event_type: &str, request_id: &str) -> Value {
    let now = chrono::Utc::now();
    let mut ctx = Map::new();
    ctx.insert("routeKey".into(), json!(route_key));
    ctx.insert("eventType".into(), json!(event_type));
    ctx.insert("extendedRequestId".into(), json!(request_id));
    ctx.insert("requestTime".into(), json!(now.format("%d/%b/%Y:%H:%M:%S +0000").to_string()));
    ctx.insert("messageDirection".into(), json!("IN"));
    ctx.insert("stage".into(), json!(conn.stage));
    ctx.insert("connectedAt".into(), json!(conn.connected_at_ms));
    ctx.insert("requestTimeEpoch".into(), json!(now.timestamp_millis()));
    ctx.insert("identity".into(), json!({"sourceIp": conn.source_ip, "userAgent": conn.user_agent}));
    ctx.insert("requestId".into(), json!(request_id));
    ctx.insert("domainName".into(), json!(conn.domain_name));
    ctx.insert("connectionId".into(), json!(conn.connection_id));
    ctx.insert("apiId".into(), json!(conn.api_id));
    json!({"requestContext": ctx, "isBase64Encoded": false})
}

#[cfg(test)]
mod tests {
    use super::*;
    use purse::runtime::WsRequest;

    fn conn() -> Connection {
        Connection {
            connection_id: "L0SM9cOFvHcCIhw=".into(),
            connected_at_ms: 1_700_000_000_000,
            source_ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            domain_name: "127.0.0.1:3001".into(),
            stage: "local".into(),
            api_id: "local".into(),
        }
    }

    #[test]
    fn a_connection_id_looks_like_api_gateways() {
        let id = new_connection_id();
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.ends_with('='), "{id}");
        assert!(id.trim_end_matches('=').chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
        assert_ne!(id, new_connection_id());
    }

    #[test]
    fn the_action_of_a_json_object_selects_the_route_and_anything_else_selects_none() {
        assert_eq!(selection_key(r#"{"action":"call.invite","to":"u"}"#).as_deref(), Some("call.invite"));
        assert_eq!(selection_key(r#"{"action":7}"#), None);
        assert_eq!(selection_key(r#"{"type":"ping"}"#), None);
        assert_eq!(selection_key(r#"["action"]"#), None);
        assert_eq!(selection_key("ping"), None);
        assert_eq!(selection_key(""), None);
    }

    #[test]
    fn the_connect_event_carries_the_ticket_headers_and_connection() {
        let headers = vec![("host".to_owned(), "127.0.0.1:3001".to_owned()), ("x-a".to_owned(), "1".to_owned())];
        let event = connect_event(&conn(), "ticket=t%2B1&x=a&x=b", &headers, "req-1").unwrap();
        let ctx = &event.request_context;
        assert_eq!(ctx.route_key.as_deref(), Some("$connect"));
        assert_eq!(ctx.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(ctx.connection_id.as_deref(), Some("L0SM9cOFvHcCIhw="));
        assert_eq!(ctx.connected_at, 1_700_000_000_000);
        assert_eq!(ctx.stage.as_deref(), Some("local"));
        assert_eq!(ctx.domain_name.as_deref(), Some("127.0.0.1:3001"));
        assert_eq!(ctx.apiid.as_deref(), Some("local"));
        assert_eq!(ctx.identity.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(event.headers["x-a"], "1");
        assert_eq!(event.headers["x-forwarded-for"], "127.0.0.1");
        let req = WsRequest::from_event(&event);
        assert_eq!(req.query["ticket"], "t+1");
        assert_eq!(req.query["x"], "b");
        assert_eq!(req.request_id, "req-1");
        assert!(req.body.is_none());
    }

    #[test]
    fn a_connect_without_a_query_string_has_no_parameters() {
        let event = connect_event(&conn(), "", &[], "req-1").unwrap();
        assert!(WsRequest::from_event(&event).query.is_empty());
    }

    #[test]
    fn a_message_event_carries_the_frame_text_as_body() {
        let event = message_event(&conn(), "ping", r#"{"action":"ping"}"#, "req-2").unwrap();
        let req = WsRequest::from_event(&event);
        assert_eq!(req.route_key, "ping");
        assert_eq!(req.event_type, "MESSAGE");
        assert_eq!(req.body.as_deref(), Some(r#"{"action":"ping"}"#));
        assert_eq!(req.connection_id, "L0SM9cOFvHcCIhw=");
        assert!(event.request_context.message_id.is_some());
    }

    #[test]
    fn a_disconnect_event_carries_the_close_code_and_reason() {
        let event = disconnect_event(&conn(), 1001, "Going away", "req-3").unwrap();
        let ctx = &event.request_context;
        assert_eq!(ctx.route_key.as_deref(), Some("$disconnect"));
        assert_eq!(ctx.event_type.as_deref(), Some("DISCONNECT"));
        assert_eq!(ctx.disconnect_status_code, Some(1001));
        assert_eq!(ctx.disconnect_reason.as_deref(), Some("Going away"));
    }
}
