//! Building Lambda requests exactly as API Gateway's HTTP API (payload format 2.0) and Lambda
//! Function URLs do, so that locally served functions see what they will see in AWS.
//!
//! The request is built as the JSON event AWS would send and then parsed by `lambda_http`'s own
//! event parser — the same code the Lambda runtime runs on a real event.

use base64::Engine;
use std::collections::BTreeMap;

/// An HTTP request as it arrived on the wire.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string without `?`.
    pub query: String,
    /// Header names and values in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source_ip: String,
}

/// Matches a concrete path against a route path with `{name}` and `{name+}` segments.
pub fn match_route(route: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let route_parts: Vec<&str> = route.trim_matches('/').split('/').collect();
    let path_parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut params = BTreeMap::new();
    for (i, r) in route_parts.iter().enumerate() {
        if let Some(name) = r.strip_prefix('{').and_then(|r| r.strip_suffix("+}")) {
            params.insert(name.to_owned(), path_parts.get(i..)?.join("/"));
            return Some(params);
        }
        let p = path_parts.get(i)?;
        if let Some(name) = r.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            if p.is_empty() {
                return None;
            }
            params.insert(name.to_owned(), percent_decode(p));
        } else if r != p {
            return None;
        }
    }
    (route_parts.len() == path_parts.len()).then_some(params)
}

/// Decodes `%XX` escapes and `+` (a query string's space).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The payload-2.0 event API Gateway would send for `raw` on `route_key`
/// (`"POST /v1/auth/register"`, or `"$default"` for a Function URL).
pub fn event(
    raw: &RawRequest,
    route_key: &str,
    path_params: &BTreeMap<String, String>,
    request_id: &str,
) -> serde_json::Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &raw.headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        headers
            .entry(name)
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        query
            .entry(k)
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let (body, is_base64) = match std::str::from_utf8(&raw.body) {
        _ if raw.body.is_empty() => (serde_json::Value::Null, false),
        Ok(text) => (serde_json::Value::String(text.to_owned()), false),
        Err(_) => (serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(&raw.body)), true),
    };
    let now = chrono::Utc::now();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let host = headers.get("host").cloned().unwrap_or_else(|| "127.0.0.1".into());
    serde_json::json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw.path,
        "rawQueryString": raw.query,
        "cookies": if cookies.is_empty() { serde_json::Value::Null } else { serde_json::json!(cookies) },
        "headers": headers,
        "queryStringParameters": if query.is_empty() { serde_json::Value::Null } else { serde_json::json!(query) },
        "pathParameters": if path_params.is_empty() { serde_json::Value::Null } else { serde_json::json!(path_params) },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "http": {
                "method": raw.method.to_uppercase(),
                "path": raw.path,
                "protocol": "HTTP/1.1",
                "sourceIp": raw.source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

/// Parses an event with `lambda_http`'s own parser, as the Lambda runtime does.
///
/// # Errors
/// The parser's message when the event is not one `lambda_http` understands.
pub fn request_from_event(event: &serde_json::Value) -> Result<lambda_http::Request, String> {
    lambda_http::request::from_str(&event.to_string()).map_err(|e| e.to_string())
}

/// A new API Gateway-style request id.
pub fn new_request_id() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_extracted() {
        let p = match_route("/v1/transactions/{id}", "/v1/transactions/txn_1").unwrap();
        assert_eq!(p["id"], "txn_1");
        assert!(match_route("/v1/transactions/{id}", "/v1/transactions").is_none());
        assert!(match_route("/v1/me", "/v1/me/x").is_none());
        assert!(match_route("/v1/me", "/v1/me").unwrap().is_empty());
    }

    #[test]
    fn an_event_parses_into_a_request_with_headers_query_and_body() {
        use lambda_http::RequestExt;
        let raw = RawRequest {
            method: "POST".into(),
            path: "/v1/things/a%20b".into(),
            query: "limit=5&type=DEPOSIT".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"a":1}"#.to_vec(),
            source_ip: "127.0.0.1".into(),
        };
        let params = match_route("/v1/things/{id}", &raw.path).unwrap();
        let req = request_from_event(&event(&raw, "POST /v1/things/{id}", &params, "req-1")).unwrap();
        assert_eq!(req.method(), "POST");
        assert_eq!(req.headers()["content-type"], "application/json");
        assert_eq!(req.query_string_parameters_ref().unwrap().first("limit"), Some("5"));
        assert_eq!(req.path_parameters_ref().unwrap().first("id"), Some("a b"));
        assert_eq!(purse::http::request_id(&req), "req-1");
        assert_eq!(purse::http::body_bytes(&req), br#"{"a":1}"#);
    }
}
