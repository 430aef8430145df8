//! The local stack is made from template.yaml, and the code's names agree with it.

use purse_local::provision;
use purse_tests::TestApp;

#[tokio::test]
async fn the_emulator_stack_matches_the_template_keys_indexes_and_redrive_policies() {
    let app = TestApp::spawn().await;
    let diffs = provision::differences(&app.template, &app.aws, &app.stack).await.unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn the_template_declares_the_keys_the_code_uses() {
    let template = purse_local::template::Template::project().unwrap();
    let table = template.tables().into_iter().find(|t| t.logical_id == "PurseTable").expect("PurseTable");
    let keys: Vec<_> = table.keys.iter().map(|k| (k.attribute.as_str(), k.key_type.as_str())).collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    let gsi1 = table.indexes.iter().find(|i| i.name == "gsi1").expect("gsi1");
    let keys: Vec<_> = gsi1.keys.iter().map(|k| (k.attribute.as_str(), k.key_type.as_str())).collect();
    assert_eq!(keys, [("gsi1pk", "HASH"), ("gsi1sk", "RANGE")]);
    assert_eq!(table.ttl_attribute.as_deref(), Some("expires_at"));
}

#[test]
fn every_function_in_the_template_is_registered_and_every_registered_function_is_in_the_template() {
    let template = purse_local::template::Template::project().unwrap();
    let mut declared: Vec<String> = template.functions().unwrap().into_iter().map(|f| f.binary).collect();
    let mut registered: Vec<String> = purse_local::registry::BINARIES.iter().map(|s| (*s).to_owned()).collect();
    declared.sort();
    registered.sort();
    assert_eq!(declared, registered);
    let root = purse_local::template::project_root();
    for binary in &declared {
        assert!(root.join("functions").join(binary).join("Cargo.toml").exists(), "functions/{binary} missing");
    }
}
