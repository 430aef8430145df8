//! `docs/openapi.yaml` stays true to what is deployed and to what the code answers.
//!
//! - Its paths and methods are exactly the routes of `template.yaml`: every HttpApi event, and
//!   every Function URL (mounted at `Metadata.LocalPath`, always POST).
//! - Every operation has an `operationId` and a 2xx answer; protected routes declare the bearer
//!   scheme, public ones do not, webhooks declare their signature header, and the game service
//!   routes (`/v1/games/…`) the HTTP Basic service credential instead of the bearer scheme.
//! - Every error `code` the code can answer with is listed, under the status it is sent with, and
//!   no listed code is invented.
//!
//! None of these tests needs the emulator.

use purse_local::template::{project_root, Template};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    let path = project_root().join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("docs/openapi.yaml is not valid YAML: {e}"))
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(Value::String(key.to_owned())))
}

/// Every `(METHOD, path)` the document describes, with its operation object.
fn operations(doc: &Value) -> BTreeMap<Route, Value> {
    let mut out = BTreeMap::new();
    let paths = get(doc, "paths").and_then(Value::as_mapping).expect("the document has paths");
    for (path, item) in paths {
        let path = path.as_str().expect("path keys are strings");
        for method in METHODS {
            if let Some(op) = get(item, method) {
                out.insert((method.to_uppercase(), path.to_owned()), op.clone());
            }
        }
    }
    out
}

/// `(METHOD, path)`.
type Route = (String, String);

/// Every `(METHOD, path)` the template deploys, and the subset reached through a Function URL.
fn deployed_routes() -> (BTreeSet<Route>, BTreeSet<Route>) {
    let template = Template::project().expect("template.yaml");
    let mut routes = BTreeSet::new();
    let mut url_routes = BTreeSet::new();
    for f in template.functions().expect("functions") {
        for (method, path) in f.http_routes {
            routes.insert((method.to_uppercase(), path));
        }
        if let Some(path) = f.url_path {
            routes.insert(("POST".to_owned(), path.clone()));
            url_routes.insert(("POST".to_owned(), path));
        }
    }
    (routes, url_routes)
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let Some(reference) = get(v, "$ref").and_then(Value::as_str) else {
        return v;
    };
    let pointer = reference.strip_prefix("#/").unwrap_or_else(|| panic!("only local references are used: {reference}"));
    let target = pointer.split('/').try_fold(doc, |node, part| get(node, part));
    resolve(doc, target.unwrap_or_else(|| panic!("{reference} does not resolve")))
}

#[test]
fn the_document_describes_exactly_the_routes_the_template_deploys() {
    let doc = document();
    let documented: BTreeSet<_> = operations(&doc).into_keys().collect();
    let (deployed, _) = deployed_routes();
    let missing: Vec<_> = deployed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&deployed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/openapi.yaml and template.yaml disagree.\n  deployed but not documented: {missing:?}\n  documented but not deployed: {extra:?}"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let doc = document();
    let version = get(&doc, "openapi").and_then(Value::as_str).unwrap_or("");
    assert!(version.starts_with("3.1."), "openapi: {version}");
    fn walk(doc: &Value, v: &Value, refs: &mut usize) {
        match v {
            Value::Mapping(m) => {
                if get(v, "$ref").is_some() {
                    resolve(doc, v);
                    *refs += 1;
                }
                m.values().for_each(|x| walk(doc, x, refs));
            }
            Value::Sequence(s) => s.iter().for_each(|x| walk(doc, x, refs)),
            _ => {}
        }
    }
    let mut refs = 0;
    walk(&doc, &doc, &mut refs);
    assert!(refs > 0);
}

#[test]
fn every_operation_has_an_id_a_success_answer_and_the_security_its_route_needs() {
    let doc = document();
    let (_, url_routes) = deployed_routes();
    let schemes = get(&doc, "components").and_then(|c| get(c, "securitySchemes")).expect("securitySchemes");
    let scheme_is = |name: &str, check: &dyn Fn(&Value) -> bool| get(schemes, name).is_some_and(check);
    let is_bearer = |s: &Value| {
        get(s, "type").and_then(Value::as_str) == Some("http")
            && get(s, "scheme").and_then(Value::as_str).is_some_and(|x| x.eq_ignore_ascii_case("bearer"))
    };
    // Revio signs with `X-Signature`, the KYC provider per Standard Webhooks (`webhook-signature`),
    // the telephony provider with `X-Twilio-Signature`.
    let is_signature = |s: &Value| {
        get(s, "type").and_then(Value::as_str) == Some("apiKey")
            && get(s, "in").and_then(Value::as_str) == Some("header")
            && get(s, "name").and_then(Value::as_str).is_some_and(|n| {
                n.eq_ignore_ascii_case("x-signature")
                    || n.eq_ignore_ascii_case("webhook-signature")
                    || n.eq_ignore_ascii_case("x-twilio-signature")
            })
    };
    // Game services authenticate with HTTP Basic (client id and secret).
    let is_service = |s: &Value| {
        get(s, "type").and_then(Value::as_str) == Some("http")
            && get(s, "scheme").and_then(Value::as_str).is_some_and(|x| x.eq_ignore_ascii_case("basic"))
    };
    let global_security = get(&doc, "security").cloned().unwrap_or(Value::Sequence(vec![]));
    let mut ids = BTreeSet::new();
    for ((method, path), op) in operations(&doc) {
        let what = format!("{method} {path}");
        let id = get(&op, "operationId").and_then(Value::as_str).unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{what}: operationId {id} is used twice");

        let responses =
            get(&op, "responses").and_then(Value::as_mapping).unwrap_or_else(|| panic!("{what}: no responses"));
        let statuses: Vec<String> = responses
            .keys()
            .map(|k| k.as_str().map(str::to_owned).or_else(|| k.as_u64().map(|n| n.to_string())).unwrap_or_default())
            .collect();
        assert!(statuses.iter().any(|s| s.starts_with('2')), "{what}: no 2xx answer among {statuses:?}");

        // Operation-level security replaces the document's.
        let security = get(&op, "security").unwrap_or(&global_security);
        let names: BTreeSet<String> = security
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_mapping)
            .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)))
            .collect();
        let bearer = names.iter().any(|n| scheme_is(n, &is_bearer));
        if url_routes.contains(&(method.clone(), path.clone())) {
            assert!(!bearer, "{what}: the webhook is not called with a bearer token");
            assert!(
                names.iter().any(|n| scheme_is(n, &is_signature)),
                "{what}: must declare its signature scheme (X-Signature or webhook-signature), has {names:?}"
            );
        } else if path.starts_with("/v1/auth/") {
            assert!(!bearer, "{what}: a sign-in route must be public, has {names:?}");
        } else if path.starts_with("/v1/games/") {
            assert!(!bearer, "{what}: a game service route does not take a user's bearer token");
            assert!(
                names.iter().any(|n| scheme_is(n, &is_service)),
                "{what}: a game service route must declare the HTTP Basic service scheme, has {names:?}"
            );
            for status in ["401", "403"] {
                assert!(statuses.iter().any(|s| s == status), "{what}: a game service route answers {status}");
            }
        } else {
            assert!(bearer, "{what}: a protected route must declare the bearer scheme, has {names:?}");
            assert!(statuses.iter().any(|s| s == "401"), "{what}: a protected route answers 401");
        }
    }
}

/// The status an `ApiError` constructor answers with (`None`: decided elsewhere).
fn constructor_status(constructor: &str, first_argument: &str) -> Option<u16> {
    match constructor {
        "bad_request" => Some(400),
        "unprocessable" => Some(422),
        "conflict" => Some(409),
        "new" => {
            let name = first_argument.trim().trim_end_matches(',').rsplit("::").next().unwrap_or("").trim();
            let status = match name {
                "BAD_REQUEST" => 400,
                "UNAUTHORIZED" => 401,
                "FORBIDDEN" => 403,
                "NOT_FOUND" => 404,
                "CONFLICT" => 409,
                "PAYLOAD_TOO_LARGE" => 413,
                "UNSUPPORTED_MEDIA_TYPE" => 415,
                "UNPROCESSABLE_ENTITY" => 422,
                "TOO_MANY_REQUESTS" => 429,
                "INTERNAL_SERVER_ERROR" => 500,
                "BAD_GATEWAY" => 502,
                "SERVICE_UNAVAILABLE" => 503,
                "GATEWAY_TIMEOUT" => 504,
                other => panic!("add the status {other} to constructor_status"),
            };
            Some(status)
        }
        _ => None,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every error code the functions can answer with, each with the statuses it is sent with
/// (`None` when the status is set apart from the code, as for `err.code = "..."`).
///
/// Found in the source of `shared/` and `functions/`: the first string literal of
/// `ApiError::bad_request(`, `ApiError::unprocessable(`, `ApiError::conflict(`, the second
/// argument of `ApiError::new(<status>, `, assignments `.code = "..."` and `.with_code("...")`
/// (another constructor's error under a more precise code), and the fixed codes of
/// `ApiError::unauthorized`, `forbidden`, `not_found` and `internal`.
fn codes_in_source() -> BTreeMap<String, BTreeSet<Option<u16>>> {
    let root = project_root();
    let mut files = Vec::new();
    rust_files(&root.join("shared/src"), &mut files);
    rust_files(&root.join("functions"), &mut files);
    let mut codes: BTreeMap<String, BTreeSet<Option<u16>>> = BTreeMap::new();
    let mut add = |code: &str, status: Option<u16>| {
        codes.entry(code.to_owned()).or_default().insert(status);
    };
    // Every route can fail on our side, and be briefly unavailable when DynamoDB or SQS throttle
    // or fail beyond the retries that fit in its budget (`ApiError::from(StoreError)`).
    add("internal_error", Some(500));
    add("temporarily_unavailable", Some(503));
    for file in files {
        if file.ends_with("shared/src/error.rs") {
            continue; // the constructors themselves
        }
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        for (constructor, code, status) in
            [("unauthorized", "unauthorized", 401), ("forbidden", "forbidden", 403), ("not_found", "not_found", 404)]
        {
            if text.contains(&format!("ApiError::{constructor}(")) {
                add(code, Some(status));
            }
        }
        for constructor in ["bad_request", "unprocessable", "conflict", "new"] {
            let needle = format!("ApiError::{constructor}(");
            for (at, _) in text.match_indices(&needle) {
                let rest = &text[at + needle.len()..];
                let Some(quote) = rest.find('"') else {
                    continue;
                };
                let before = &rest[..quote];
                let arguments_before = if constructor == "new" { 1 } else { 0 };
                if before.matches(',').count() != arguments_before || before.contains(')') {
                    continue; // the code is not a literal here
                }
                let literal = &rest[quote + 1..];
                let code = &literal[..literal.find('"').unwrap_or(0)];
                add(code, constructor_status(constructor, before));
            }
        }
        for needle in [".code = \"", ".with_code(\""] {
            for (at, _) in text.match_indices(needle) {
                let literal = &text[at + needle.len()..];
                add(&literal[..literal.find('"').unwrap_or(0)], None);
            }
        }
    }
    codes
}

/// Every `error.code` enum value in the document, with the statuses it is listed under.
fn codes_in_document(doc: &Value) -> BTreeMap<String, BTreeSet<u16>> {
    fn enums_under_code(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, x) in m {
                    if k.as_str() == Some("code") {
                        if let Some(values) = get(x, "enum").and_then(Value::as_sequence) {
                            out.extend(values.iter().filter_map(Value::as_str).map(str::to_owned));
                        }
                    }
                    enums_under_code(x, out);
                }
            }
            Value::Sequence(s) => s.iter().for_each(|x| enums_under_code(x, out)),
            _ => {}
        }
    }
    let mut documented: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for ((method, path), op) in operations(doc) {
        let responses = get(&op, "responses").and_then(Value::as_mapping).cloned().unwrap_or_default();
        for (status, response) in &responses {
            let status: u16 = status
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| status.as_u64().and_then(|n| u16::try_from(n).ok()))
                .unwrap_or_else(|| panic!("{method} {path}: status {status:?}"));
            let response = resolve(doc, response);
            let mut codes = Vec::new();
            enums_under_code(response, &mut codes);
            if status >= 400 {
                assert!(!codes.is_empty(), "{method} {path} {status}: list the error codes in an enum on error.code");
                let schema = get(response, "content")
                    .and_then(|c| get(c, "application/json"))
                    .and_then(|c| get(c, "schema"))
                    .unwrap_or_else(|| panic!("{method} {path} {status}: no application/json schema"));
                let text = serde_yaml::to_string(schema).unwrap();
                assert!(
                    text.contains("#/components/schemas/Error"),
                    "{method} {path} {status}: an error answer uses the Error schema"
                );
            }
            for code in codes {
                documented.entry(code).or_default().insert(status);
            }
        }
    }
    documented
}

#[test]
fn every_operation_documents_the_503_it_answers_when_storage_is_briefly_unavailable() {
    let doc = document();
    for ((method, path), op) in operations(&doc) {
        let responses = get(&op, "responses").cloned().unwrap_or(Value::Null);
        let answer =
            get(&responses, "503").map(|r| resolve(&doc, r)).unwrap_or_else(|| panic!("{method} {path}: no 503"));
        let text = serde_yaml::to_string(answer).unwrap();
        assert!(text.contains("temporarily_unavailable"), "{method} {path}: 503 without temporarily_unavailable");
        assert!(text.contains("Retry-After"), "{method} {path}: 503 without Retry-After");
    }
}

#[test]
fn every_error_code_the_code_answers_with_is_documented_under_its_status_and_none_is_invented() {
    let doc = document();
    let documented = codes_in_document(&doc);
    let in_source = codes_in_source();
    assert!(in_source.len() > 10, "the source scan found too little: {in_source:?}");
    let mut problems = Vec::new();
    for (code, statuses) in &in_source {
        match documented.get(code) {
            None => problems.push(format!("`{code}` is answered by the code but not listed in docs/openapi.yaml")),
            Some(listed) => {
                for status in statuses.iter().flatten() {
                    if !listed.contains(status) {
                        problems
                            .push(format!("`{code}` is sent with status {status} but listed only under {listed:?}"));
                    }
                }
            }
        }
    }
    for (code, listed) in &documented {
        match in_source.get(code) {
            None => {
                problems.push(format!("`{code}` is listed in docs/openapi.yaml but the code never answers with it"))
            }
            Some(statuses) if !statuses.contains(&None) => {
                for status in listed {
                    if !statuses.contains(&Some(*status)) {
                        problems
                            .push(format!("`{code}` is listed under {status} but the code sends it with {statuses:?}"));
                    }
                }
            }
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
