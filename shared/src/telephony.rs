//! The telephony provider (Twilio, or anything that speaks its webhooks and REST API): request
//! signatures, form bodies, TwiML answers, and the Calls resource. No business rules live here;
//! [`crate::service::phone`] decides what a call means.
//!
//! ## Request signatures
//!
//! Twilio signs every request it makes to us with `X-Twilio-Signature`:
//! `base64(HMAC-SHA1(auth token, url + k1 + v1 + k2 + v2 + ...))`, where `url` is the full URL
//! the provider called (scheme, host, port when given, path and query string) and the POST
//! parameters are sorted by key (then by value for a repeated key), each key followed by its
//! value ([`sign`], [`verify`]). There is no timestamp: a retry or a duplicate carries the very
//! same signature, so a receiver de-duplicates by `CallSid`, never by signature.
//!
//! Behind a Lambda Function URL the URL the provider called must be rebuilt ([`request_url`]):
//! from `TELEPHONY_PUBLIC_BASE_URL` when set (a custom domain in front of the Function URL: the
//! provider was given that domain), else from the request's `Host` header and
//! `X-Forwarded-Proto` (which a Function URL always sets, to `https`). The path is the raw path
//! as received and the query string is kept byte for byte: re-encoding either would change
//! what was signed.

use crate::config::{Env, InitError};
use crate::http_client::{HttpClient, HttpClientConfig, Request, Response};
use crate::secrets::SecretString;
use hmac::{Hmac, Mac};
use std::time::Duration;

/// The header Twilio signs its requests with (lower case, as HTTP/2 and API Gateway send it).
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The signature of a request to `url` with the POST parameters `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is the signature of a request to `url` with `params`, compared in
/// constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    use subtle::ConstantTimeEq;
    sign(auth_token, url, params).as_bytes().ct_eq(signature.trim().as_bytes()).into()
}

/// The URL the provider called, rebuilt as the module documentation says; `None` when the
/// request names no host (nothing could have been signed for it).
pub fn request_url(
    public_base: Option<&str>,
    headers: &http::HeaderMap,
    raw_path: &str,
    raw_query: Option<&str>,
) -> Option<String> {
    let base = match public_base {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(http::header::HOST)?.to_str().ok()?.trim();
            if host.is_empty() {
                return None;
            }
            // A Function URL sets X-Forwarded-Proto (https); the local dev gateway, which
            // terminates no TLS, does not: plain http there.
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or("http");
            format!("{scheme}://{host}")
        }
    };
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    Some(match raw_query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{base}{path}?{query}"),
        None => format!("{base}{path}"),
    })
}

/// Reads `TELEPHONY_PUBLIC_BASE_URL`: absent or empty, the URL is rebuilt from the request;
/// set, it must be `http(s)://host[:port]` without a path.
///
/// # Errors
/// [`InitError::InvalidEnv`] for anything else.
pub fn public_base_from_env(env: &Env) -> Result<Option<String>, InitError> {
    let Some(raw) = env.optional("TELEPHONY_PUBLIC_BASE_URL") else { return Ok(None) };
    let invalid =
        |reason: &str| InitError::InvalidEnv { name: "TELEPHONY_PUBLIC_BASE_URL".into(), reason: reason.into() };
    let url = url::Url::parse(raw.trim()).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(invalid("must be http(s)://host[:port]"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(invalid("must name no path or query: the request's own path and query are appended"));
    }
    Ok(Some(raw.trim().trim_end_matches('/').to_owned()))
}

/// One request from the provider, as the Function URL received it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub headers: &'a http::HeaderMap,
    /// The path as received (`rawPath`), not decoded.
    pub raw_path: &'a str,
    /// The query string as received (`rawQueryString`), without `?`.
    pub raw_query: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> WebhookRequest<'a> {
    /// The parts of a Lambda request the signature covers.
    pub fn of(req: &'a lambda_http::Request) -> Self {
        use lambda_http::RequestExt;
        Self {
            headers: req.headers(),
            raw_path: req.raw_http_path(),
            raw_query: req.uri().query(),
            body: crate::http::body_bytes(req),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Form bodies
// ------------------------------------------------------------------------------------------

/// An `application/x-www-form-urlencoded` body (or query string): its pairs in order, a key
/// repeated as often as it was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Decodes `text` (`+` is a space, `%XX` a byte; the result must be UTF-8).
    ///
    /// # Errors
    /// A short reason when a pair is not valid UTF-8 once decoded or an escape is malformed.
    pub fn parse(text: &[u8]) -> Result<Self, &'static str> {
        let text = std::str::from_utf8(text).map_err(|_| "the body is not UTF-8")?;
        let mut pairs = Vec::new();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode(key)?, decode(value)?));
        }
        Ok(Self(pairs))
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every pair, in the order sent.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

fn decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("a % escape is cut short")?;
                let hex = std::str::from_utf8(hex).map_err(|_| "a % escape is not hexadecimal")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "a % escape is not hexadecimal")?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a value is not UTF-8 once decoded")
}

// ------------------------------------------------------------------------------------------
// TwiML
// ------------------------------------------------------------------------------------------

/// A TwiML document (`<Response>...</Response>`), answered as `text/xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twiml(String);

/// The content type of a TwiML answer.
pub const TWIML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

impl Twiml {
    fn document(verbs: &str) -> Self {
        Self(format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{verbs}</Response>"#))
    }

    /// Nothing to do (the answer to a status callback).
    pub fn empty() -> Self {
        Self::document("")
    }

    /// Asks for `digits` digits, posted to `action`; says `prompt` first, and `goodbye` before
    /// hanging up when nothing is entered.
    pub fn gather(digits: u32, action: &str, prompt: &str, goodbye: &str) -> Self {
        Self::document(&format!(
            r#"<Gather numDigits="{digits}" action="{}" method="POST" timeout="10"><Say>{}</Say></Gather><Say>{}</Say><Hangup/>"#,
            escape(action),
            escape(prompt),
            escape(goodbye)
        ))
    }

    /// Connects the caller to the app user `identity` for at most `time_limit` seconds; the
    /// outcome is posted to `action`.
    pub fn dial_client(identity: &str, time_limit: u64, action: &str) -> Self {
        Self::document(&format!(
            r#"<Dial timeLimit="{time_limit}" action="{}" method="POST"><Client>{}</Client></Dial>"#,
            escape(action),
            escape(identity)
        ))
    }

    /// Says `text`, then hangs up.
    pub fn say_and_hang_up(text: &str) -> Self {
        Self::document(&format!("<Say>{}</Say><Hangup/>", escape(text)))
    }

    /// Hangs up.
    pub fn hang_up() -> Self {
        Self::document("<Hangup/>")
    }

    /// The document's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 200 answer carrying the document.
    ///
    /// # Errors
    /// 500 if the response cannot be built.
    pub fn into_response(self) -> Result<lambda_http::Response<lambda_http::Body>, crate::ApiError> {
        lambda_http::Response::builder()
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, TWIML_CONTENT_TYPE)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(lambda_http::Body::Text(self.0))
            .map_err(crate::ApiError::internal)
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Credentials and the Calls resource
// ------------------------------------------------------------------------------------------

/// The provider secret: `{"account_sid": "AC...", "auth_token": "..."}`. The auth token keys
/// every request signature and, with the account SID, authenticates our REST calls.
#[derive(Clone)]
pub struct TelephonySecret {
    pub account_sid: String,
    pub auth_token: SecretString,
}

impl TelephonySecret {
    /// Loads the secret named by `TELEPHONY_SECRET_ID`.
    ///
    /// # Errors
    /// [`InitError`] naming the variable or the secret; its value is never quoted.
    pub async fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        let id = env.require("TELEPHONY_SECRET_ID")?;
        let raw = crate::secrets::load(aws, &id).await?;
        Self::parse(&raw).map_err(|reason| InitError::Secret { id, reason: reason.to_owned() })
    }

    /// Reads the secret's JSON.
    ///
    /// # Errors
    /// Which field is wrong; never the value.
    pub fn parse(raw: &SecretString) -> Result<Self, &'static str> {
        let json: serde_json::Value = serde_json::from_str(raw.expose())
            .map_err(|_| "must be JSON {\"account_sid\": \"AC...\", \"auth_token\": \"...\"}")?;
        let account_sid = json["account_sid"]
            .as_str()
            .filter(|s| s.len() == 34 && s.starts_with("AC") && s[2..].bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or("account_sid must be AC followed by 32 letters or digits")?;
        let auth_token = json["auth_token"]
            .as_str()
            .filter(|t| !t.trim().is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or("auth_token is missing or not a usable value")?;
        Ok(Self { account_sid: account_sid.to_owned(), auth_token: SecretString::new(auth_token.to_owned()) })
    }
}

/// A call as the provider's Calls resource describes it (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ProviderCall {
    pub sid: String,
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    /// `client:<identity>` for a Dial leg to an app user.
    #[serde(default)]
    pub to: Option<String>,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `no-answer`, `failed`, `canceled`.
    pub status: String,
    /// Seconds, as a decimal string; `null` until the call ended.
    #[serde(default)]
    pub duration: Option<String>,
}

impl ProviderCall {
    /// Whether the call is over (its duration is final).
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "busy" | "no-answer" | "failed" | "canceled")
    }

    /// Its duration in whole seconds (0 while unknown).
    pub fn seconds(&self) -> u64 {
        self.duration.as_deref().and_then(|d| d.trim().parse().ok()).unwrap_or(0)
    }
}

/// Whether `sid` looks like a provider id (`CA` + letters and digits): safe in a URL path.
fn is_sid(sid: &str) -> bool {
    (3..=64).contains(&sid.len()) && sid.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Why the provider's API gave no answer we can use.
#[derive(Debug, thiserror::Error)]
pub enum TelephonyError {
    #[error("telephony provider unreachable: {0}")]
    Unreachable(String),
    #[error("telephony provider answered {0}")]
    Status(u16),
    #[error("telephony provider answered something unreadable: {0}")]
    Unreadable(String),
}

/// The provider's REST API, for reading calls (reconciliation).
#[derive(Clone)]
pub struct TelephonyClient {
    http: HttpClient,
    base_url: String,
    secret: TelephonySecret,
}

impl TelephonyClient {
    /// An authenticated GET of the provider's REST API (basic auth: account SID and token).
    async fn get(&self, url: String) -> Result<Response, TelephonyError> {
        let request = Request::get(url).basic_auth(&self.secret.account_sid, self.secret.auth_token.expose());
        self.http.send(request).await.map_err(|_| TelephonyError::Unreachable("error sending request".into()))
    }

    /// The JSON body of a successful answer.
    async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, TelephonyError> {
        let body = response
            .read_body(usize::MAX)
            .await
            .map_err(|_| TelephonyError::Unreadable("request or response body error".into()))?;
        serde_json::from_slice(&body.bytes)
            .map_err(|_| TelephonyError::Unreadable("error decoding response body".into()))
    }

    /// Bound on one whole request.
    pub const TIMEOUT: Duration = Duration::from_secs(3);

    /// Reads `TELEPHONY_BASE_URL` (https, or http with `TELEPHONY_ALLOW_INSECURE_HTTP=true` in a
    /// local stack only), with the credentials of an already loaded secret.
    ///
    /// # Errors
    /// [`InitError`] naming the variable.
    pub fn from_env(env: &Env, secret: &TelephonySecret) -> Result<Self, InitError> {
        let raw = env.require("TELEPHONY_BASE_URL")?;
        let invalid = |name: &str, reason: &str| InitError::InvalidEnv { name: name.into(), reason: reason.into() };
        let insecure_ok = match env.optional("TELEPHONY_ALLOW_INSECURE_HTTP").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(invalid("TELEPHONY_ALLOW_INSECURE_HTTP", "must be true or false")),
        };
        let url = url::Url::parse(raw.trim()).map_err(|_| invalid("TELEPHONY_BASE_URL", "not an absolute URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if insecure_ok => {}
            _ => {
                return Err(invalid(
                    "TELEPHONY_BASE_URL",
                    "must be https (http only in a local stack, with TELEPHONY_ALLOW_INSECURE_HTTP=true)",
                ))
            }
        }
        // Redirects are not followed: the shared client returns every answer as it came.
        let http = HttpClient::new(&HttpClientConfig::new(Duration::from_secs(2), Self::TIMEOUT))?;
        Ok(Self { http, base_url: url.as_str().trim_end_matches('/').to_owned(), secret: secret.clone() })
    }

    /// One call (`None` when the provider does not know it).
    ///
    /// # Errors
    /// [`TelephonyError`] when the provider cannot be read.
    pub async fn call(&self, sid: &str) -> Result<Option<ProviderCall>, TelephonyError> {
        if !is_sid(sid) {
            return Ok(None);
        }
        let url = format!("{}/2010-04-01/Accounts/{}/Calls/{sid}.json", self.base_url, self.secret.account_sid);
        let response = self.get(url).await?;
        match response.status() {
            http::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(Self::json(response).await?)),
            status => Err(TelephonyError::Status(status.as_u16())),
        }
    }

    /// The child calls (the `<Dial>` legs) of the call `parent_sid`, newest first.
    ///
    /// # Errors
    /// [`TelephonyError`] when the provider cannot be read.
    pub async fn dial_legs(&self, parent_sid: &str) -> Result<Vec<ProviderCall>, TelephonyError> {
        #[derive(serde::Deserialize)]
        struct Page {
            calls: Vec<ProviderCall>,
        }
        if !is_sid(parent_sid) {
            return Ok(Vec::new());
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Calls.json?ParentCallSid={parent_sid}",
            self.base_url, self.secret.account_sid
        );
        let response = self.get(url).await?;
        if !response.status().is_success() {
            return Err(TelephonyError::Status(response.status().as_u16()));
        }
        let page: Page = Self::json(response).await?;
        Ok(page.calls.into_iter().filter(|c| c.parent_call_sid.as_deref() == Some(parent_sid)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn twilios_documented_examples_sign_to_their_published_signatures() {
        // twilio.com/docs/usage/webhooks/webhooks-security, today's example and its older version.
        let today = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(sign("12345", URL, &today), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        let older = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(sign("12345", URL, &older), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    }

    #[test]
    fn twilios_library_vectors_sign_alike_whatever_order_the_parameters_came_in() {
        // twilio/twilio-python tests/unit/test_request_validator.py
        let params = pairs(&[
            ("To", "+18005551212"),
            ("CallSid", "CA1234567890ABCDE"),
            ("From", "+14158675309"),
            ("Digits", "1234"),
            ("Caller", "+14158675309"),
        ]);
        assert_eq!(sign("12345", URL, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        // A repeated key is sorted by value too.
        let repeated = pairs(&[("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]);
        assert_eq!(sign("12345", URL, &repeated), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn verification_refuses_any_change_to_the_url_the_parameters_or_the_token() {
        let params = pairs(&[("CallSid", "CA1"), ("Digits", "1234")]);
        let signature = sign("12345", URL, &params);
        assert!(verify("12345", URL, &params, &signature));
        assert!(!verify("12345", URL, &pairs(&[("CallSid", "CA1"), ("Digits", "9999")]), &signature));
        assert!(!verify("12345", URL, &pairs(&[("CallSid", "CA1"), ("Digits", "1234"), ("X", "")]), &signature));
        assert!(!verify("12345", &URL.replace("https", "http"), &params, &signature));
        assert!(!verify("12345", &format!("{URL}&x=1"), &params, &signature));
        assert!(!verify("54321", URL, &params, &signature));
        assert!(!verify("12345", URL, &params, &signature[..signature.len() - 1]));
        assert!(!verify("12345", URL, &params, ""));
    }

    #[test]
    fn form_bodies_decode_plus_and_escapes_and_keep_repeated_keys() {
        let form =
            Form::parse(b"CallSid=CA1&From=%2B14155550100&Say=hello+there&Digits=1&Digits=2&Empty=&Bare").unwrap();
        assert_eq!(form.get("From"), Some("+14155550100"));
        assert_eq!(form.get("Say"), Some("hello there"));
        assert_eq!(form.get("Digits"), Some("1"));
        assert_eq!(form.get("Empty"), Some(""));
        assert_eq!(form.get("Bare"), Some(""));
        assert_eq!(form.pairs().len(), 7);
        assert!(Form::parse(b"a=%zz").is_err());
        assert!(Form::parse(b"a=%4").is_err());
        assert!(Form::parse(b"a=%ff").is_err());
        assert_eq!(Form::parse(b"").unwrap(), Form::default());
    }

    #[test]
    fn a_request_the_sandbox_signs_verifies_against_the_url_rebuilt_from_its_host() {
        // As tools/sandbox/telephony.py sends it to the local dev gateway: no X-Forwarded-Proto.
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "127.0.0.1:3000".parse().unwrap());
        let url = request_url(None, &headers, "/webhooks/telephony/voice", Some("leg=dial")).unwrap();
        assert_eq!(url, "http://127.0.0.1:3000/webhooks/telephony/voice?leg=dial");
        // Behind a Function URL: https, the URL's own host, the path Twilio was given.
        headers.insert(http::header::HOST, "abc.lambda-url.eu-west-1.on.aws".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(request_url(None, &headers, "/", None).unwrap(), "https://abc.lambda-url.eu-west-1.on.aws/");
        // A configured public base wins over the Host header.
        assert_eq!(
            request_url(Some("https://calls.purse.example/"), &headers, "/voice", Some("")).unwrap(),
            "https://calls.purse.example/voice"
        );
        assert_eq!(request_url(None, &http::HeaderMap::new(), "/", None), None);
    }

    #[test]
    fn the_public_base_url_is_a_scheme_and_a_host_only() {
        let env = |v: &str| Env::default().with("TELEPHONY_PUBLIC_BASE_URL", v);
        assert_eq!(public_base_from_env(&Env::default()).unwrap(), None);
        assert_eq!(
            public_base_from_env(&env("https://calls.example/")).unwrap().as_deref(),
            Some("https://calls.example")
        );
        assert!(public_base_from_env(&env("https://calls.example/voice")).is_err());
        assert!(public_base_from_env(&env("ftp://calls.example")).is_err());
        assert!(public_base_from_env(&env("calls.example")).is_err());
    }

    #[test]
    fn twiml_escapes_what_it_embeds() {
        let dial = Twiml::dial_client("usr_01", 95, "https://x.example/voice?leg=dial&a=<b>");
        assert!(dial
            .as_str()
            .contains(r#"<Dial timeLimit="95" action="https://x.example/voice?leg=dial&amp;a=&lt;b&gt;""#));
        assert!(dial.as_str().contains("<Client>usr_01</Client>"));
        assert!(dial.as_str().starts_with("<?xml") && dial.as_str().ends_with("</Response>"));
        let gather = Twiml::gather(6, "https://x.example/voice", "Enter \"PIN\"", "Bye");
        assert!(gather.as_str().contains(r#"<Gather numDigits="6" action="https://x.example/voice""#));
        assert!(gather.as_str().contains("Enter &quot;PIN&quot;"));
        assert_eq!(
            Twiml::hang_up().as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#
        );
    }

    #[test]
    fn the_secret_needs_an_account_sid_and_a_token_and_never_prints_them() {
        let ok =
            SecretString::new(r#"{"account_sid": "AC00000000000000000000000000000001", "auth_token": "t0k"}"#.into());
        let secret = TelephonySecret::parse(&ok).unwrap();
        assert_eq!(secret.account_sid, "AC00000000000000000000000000000001");
        assert_eq!(format!("{:?}", secret.auth_token), "<redacted>");
        for bad in [
            r#"{"account_sid": "AC1", "auth_token": "t"}"#,
            r#"{"account_sid": "AC00000000000000000000000000000001"}"#,
            "x",
        ] {
            let err = TelephonySecret::parse(&SecretString::new(bad.into())).err().unwrap();
            assert!(!err.contains("t0k"));
        }
    }

    #[test]
    fn a_provider_call_reports_its_final_duration() {
        let call: ProviderCall = serde_json::from_value(serde_json::json!({
            "sid": "CA2", "parent_call_sid": "CA1", "to": "client:usr_1", "status": "completed", "duration": "95"
        }))
        .unwrap();
        assert!(call.is_final());
        assert_eq!(call.seconds(), 95);
        let live: ProviderCall =
            serde_json::from_value(serde_json::json!({"sid": "CA3", "status": "in-progress", "duration": null}))
                .unwrap();
        assert!(!live.is_final());
        assert_eq!(live.seconds(), 0);
    }
}
