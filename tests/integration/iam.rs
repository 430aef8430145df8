//! IAM: every function runs as its own principal holding exactly its template policy, and the
//! emulator refuses a request the policy does not allow with the service's AccessDeniedException,
//! as AWS does (`tools/local/src/iam.rs`, `tools/stack/iam_policy.py`). The whole suite runs so:
//! a function whose `Policies` lack something it does fails its tests here, not in AWS.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use purse_local::iam::principal;
use purse_tests::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn every_function_of_the_template_signs_as_its_own_principal_with_a_registered_policy() {
    let app = TestApp::spawn().await;
    let principals = app.iam_principals().await;
    let functions = app.template.functions().expect("functions");
    for f in &functions {
        let p = &principals[principal(&app.stack.prefix, &f.logical_id)];
        assert_eq!(p["function"], f.logical_id.as_str(), "{} is registered: {principals:#}", f.logical_id);
        assert!(p["statements"].as_u64().unwrap_or(0) > 0, "{} has statements", f.logical_id);
    }
    assert_eq!(principals.as_object().map(|p| p.len()), Some(functions.len()), "one principal per function");

    // The functions' clients sign as their principal: what no function's role allows (here
    // ListTables) is refused to them, not to the harness.
    for consumer in &app.router.consumers {
        let akid = principal(&app.stack.prefix, &consumer.function);
        if principals[&akid]["mode"] != "enforce" {
            continue; // PURSE_IAM=record/off: refusals are only logged
        }
        let refused = aws_sdk_dynamodb::Client::new(&consumer.aws).list_tables().send().await;
        assert_eq!(refused.expect_err("no function may list tables").code(), Some("AccessDeniedException"));
    }
    app.table.client.list_tables().send().await.expect("the harness is not governed");
}

#[tokio::test]
async fn a_principal_is_served_what_its_policy_allows_and_refused_the_rest_with_access_denied() {
    let app = TestApp::spawn().await;
    let table = app.stack.get("PurseTable").expect("table");
    let queue = app.stack.get("PayoutsQueue").expect("queue");
    let aws = app
        .iam_principal(
            "IamProbe",
            json!([{
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
                "Resource": table.arn,
                "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["USER#*"]}},
            }]),
        )
        .await;
    let ddb = aws_sdk_dynamodb::Client::new(&aws);
    let item = |pk: &str| {
        [("pk".to_owned(), AttributeValue::S(pk.to_owned())), ("sk".to_owned(), AttributeValue::S("IAM".to_owned()))]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
    };

    ddb.put_item().table_name(&table.reference).set_item(Some(item("USER#iam"))).send().await.expect("allowed put");
    let got = ddb.get_item().table_name(&table.reference).set_key(Some(item("USER#iam"))).send().await.expect("get");
    assert!(got.item.is_some());

    let refused = ddb
        .put_item()
        .table_name(&table.reference)
        .set_item(Some(item("WALLET#iam")))
        .send()
        .await
        .expect_err("denied");
    assert_eq!(refused.code(), Some("AccessDeniedException"), "{refused:?}");
    let message = refused.message().unwrap_or_default();
    assert!(
        message.contains(&format!("is not authorized to perform: dynamodb:PutItem on resource: {}", table.arn)),
        "{message}"
    );
    let refused = ddb.delete_item().table_name(&table.reference).set_key(Some(item("USER#iam"))).send().await;
    assert_eq!(refused.expect_err("no DeleteItem").code(), Some("AccessDeniedException"));

    let sqs = aws_sdk_sqs::Client::new(&aws);
    let refused = sqs.send_message().queue_url(&queue.reference).message_body("{}").send().await.expect_err("denied");
    assert!(refused.code().is_some_and(|c| c.starts_with("AccessDenied")), "{refused:?}");

    // Nothing refused was applied (read with the harness's own, unrestricted credentials).
    let wallet =
        app.table.client.get_item().table_name(&table.reference).set_key(Some(item("WALLET#iam"))).send().await;
    assert!(wallet.expect("harness read").item.is_none());
    let user = app.table.client.get_item().table_name(&table.reference).set_key(Some(item("USER#iam"))).send().await;
    assert!(user.expect("harness read").item.is_some());
}

#[tokio::test]
async fn the_usage_record_shows_what_a_function_did_under_its_own_name() {
    let app = TestApp::spawn().await;
    app.register().await;
    let usage: Value = reqwest::Client::new()
        .get(format!("{}/_emulator/iam/usage", std::env::var("AWS_ENDPOINT_URL").expect("endpoint")))
        .send()
        .await
        .expect("emulator")
        .json()
        .await
        .expect("json");
    if usage["mode"] == "off" {
        return; // PURSE_IAM=off: nothing is checked, nothing recorded
    }
    let entries = usage["functions"]["AuthRegisterFunction"].as_array().cloned().unwrap_or_default();
    assert!(
        entries.iter().any(|e| e["action"].as_str().is_some_and(|a| a.starts_with("dynamodb:"))
            && e["resource"].as_str().is_some_and(|r| r.ends_with("table/{prefix}PurseTable"))),
        "{entries:#?}"
    );
}
