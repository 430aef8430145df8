//! The local API Gateway's own answers: a known path with the wrong method is a 405 that says,
//! in an `Allow` header (RFC 9110, section 15.5.6), which methods the path accepts.

use purse_tests::TestApp;
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test]
async fn a_405_names_the_methods_the_path_accepts_in_an_allow_header() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/auth/login", None).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    assert_eq!(r.header("allow"), Some("POST"), "{:?}", r.headers);
    let r = app.send("DELETE", "/v1/transactions/txn_01J00000000000000000000000", &[], b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = app.get("/v1/nothing-here", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("allow"), None, "a 404 has no Allow");
}

#[tokio::test]
async fn every_route_s_405_lists_exactly_the_methods_its_path_declares_in_the_template() {
    let app = TestApp::spawn().await;
    let mut declared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in app.template.functions().unwrap() {
        for (method, path) in f.http_routes {
            declared.entry(path).or_default().insert(method);
        }
    }
    assert!(!declared.is_empty());
    for path in declared.keys() {
        let concrete = path.replace("{id}", "txn_01J00000000000000000000000");
        // Every route the concrete path matches counts, as in API Gateway: `/v1/calls/phone`
        // (POST) is also `/v1/calls/{id}` (GET).
        let methods: BTreeSet<String> = declared
            .iter()
            .filter(|(route, _)| purse_local::apigw::match_route(route, &concrete).is_some())
            .flat_map(|(_, m)| m.iter().cloned())
            .collect();
        let wrong = ["GET", "POST", "PUT", "PATCH", "DELETE"].into_iter().find(|m| !methods.contains(*m)).unwrap();
        let r = app.send(wrong, &concrete, &[], b"").await;
        assert_eq!(r.status, 405, "{wrong} {path}: {}", r.text);
        let allow: BTreeSet<String> =
            r.header("allow").unwrap_or_default().split(',').map(|m| m.trim().to_owned()).collect();
        assert_eq!(allow, methods, "{wrong} {path}");
    }
}
