//! Transaction history: newest first, filters, bounded pages, and cursors nobody can forge.

use purse::domain::ids::{TransactionId, UserId};
use purse::ledger::store;
use purse::ledger::{AccountId, NewTransaction, Side, SystemAccount, TransactionType};
use purse::money::{Amount, Currency};
use purse_tests::TestApp;
use serde_json::Value;

/// Records `n` movements for `user`: deposits (posted) and game fees alternating.
async fn movements(app: &TestApp, user: &str, n: usize) -> Vec<String> {
    let user = UserId::parse(user).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let (kind, debit, credit) = if i % 2 == 0 {
            (
                TransactionType::Deposit,
                Side::System(SystemAccount::RevioClearing),
                Side::Account(AccountId::wallet(&user)),
            )
        } else {
            (
                TransactionType::GameFee,
                Side::Account(AccountId::wallet(&user)),
                Side::System(SystemAccount::PlatformRevenue),
            )
        };
        let t = NewTransaction {
            id: TransactionId::generate(),
            user_id: user.clone(),
            kind,
            amount: Amount::parse("1.00", Currency::Coin).unwrap(),
            currency: Currency::Coin,
            debit,
            credit,
            description: format!("movement {i}"),
            reference: None,
        };
        if kind == TransactionType::Deposit {
            store::record_pending(&app.table, &t, None).await.unwrap();
            store::post(&app.table, &t.id).await.unwrap();
        } else {
            store::transfer(&app.table, &t).await.unwrap();
        }
        ids.push(t.id.to_string());
        // Distinct creation times (millisecond resolution) keep the expected order exact.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    ids
}

fn ids_of(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn history_pages_newest_first_with_a_cursor_until_the_end() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let mut ids = movements(&app, &user, 7).await;
    ids.reverse();

    let first = app.get("/v1/transactions?limit=3", Some(&token)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(ids_of(&first.json), ids[0..3]);
    let cursor = first.json["next_cursor"].as_str().expect("a next page");
    let second = app.get(&format!("/v1/transactions?limit=3&cursor={cursor}"), Some(&token)).await;
    assert_eq!(ids_of(&second.json), ids[3..6]);
    let cursor = second.json["next_cursor"].as_str().expect("a last page");
    let third = app.get(&format!("/v1/transactions?limit=3&cursor={cursor}"), Some(&token)).await;
    assert_eq!(ids_of(&third.json), ids[6..7]);
    assert!(third.json["next_cursor"].is_null());
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn history_filters_by_type_status_and_time() {
    let app = TestApp::spawn().await;
    let (user, token) = app.user_token().await;
    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // `to` is inclusive to the millisecond: start the movements strictly after it.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let ids = movements(&app, &user, 6).await;
    let deposits = app.get("/v1/transactions?type=DEPOSIT&limit=2", Some(&token)).await;
    let items = deposits.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["type"] == "DEPOSIT" && i["direction"] == "credit"));
    let fees = app.get("/v1/transactions?type=GAME_FEE&status=COMPLETED", Some(&token)).await;
    assert_eq!(fees.json["items"].as_array().unwrap().len(), 3);
    assert!(fees.json["items"].as_array().unwrap().iter().all(|i| i["direction"] == "debit"));
    let pending = app.get("/v1/transactions?status=PENDING", Some(&token)).await;
    assert!(pending.json["items"].as_array().unwrap().is_empty());
    let until = app.get(&format!("/v1/transactions?to={before}"), Some(&token)).await;
    assert!(
        until.json["items"].as_array().unwrap().is_empty(),
        "nothing before the first movement: {before} {}",
        until.text
    );
    let since = app.get(&format!("/v1/transactions?from={before}&limit=100"), Some(&token)).await;
    assert_eq!(since.json["items"].as_array().unwrap().len(), ids.len());
}

#[tokio::test]
async fn bad_filters_and_limits_are_refused_with_their_codes() {
    let app = TestApp::spawn().await;
    let (_, token) = app.user_token().await;
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("type=LOTTERY", "invalid_filter"),
        ("status=DONE", "invalid_filter"),
        ("from=yesterday", "invalid_filter"),
        ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "invalid_filter"),
        ("cursor=garbage", "invalid_cursor"),
    ] {
        let r = app.get(&format!("/v1/transactions?{query}"), Some(&token)).await;
        assert_eq!((r.status, r.code()), (400, code), "{query}: {}", r.text);
    }
    // A cursor longer than the document's maxLength is refused before any work is done on it.
    for query in [format!("cursor={}.{}", "a".repeat(600), "b".repeat(600))] {
        let code = "invalid_cursor";
        let r = app.get(&format!("/v1/transactions?{query}"), Some(&token)).await;
        assert_eq!((r.status, r.code()), (400, code), "{query}: {}", r.text);
    }
}

#[tokio::test]
async fn a_cursor_cannot_be_edited_used_by_another_user_or_moved_to_other_filters() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user_token().await;
    let (_, bob_token) = app.user_token().await;
    movements(&app, &alice, 4).await;
    let page = app.get("/v1/transactions?limit=2", Some(&alice_token)).await;
    let cursor = page.json["next_cursor"].as_str().unwrap().to_owned();

    let bob = app.get(&format!("/v1/transactions?limit=2&cursor={cursor}"), Some(&bob_token)).await;
    assert_eq!((bob.status, bob.code()), (400, "invalid_cursor"), "another user's cursor");
    let other_filters = app.get(&format!("/v1/transactions?limit=3&cursor={cursor}"), Some(&alice_token)).await;
    assert_eq!((other_filters.status, other_filters.code()), (400, "invalid_cursor"));

    // Edit the position inside the cursor (`<kid>.<payload>.<tag>`) and keep its signature.
    let mut parts = cursor.splitn(3, '.');
    let (kid, payload, tag) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut position: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    position["k"] = Value::String("9999-12-31T00:00:00.000Z#txn_x".into());
    let forged = format!("{kid}.{}.{tag}", b64.encode(position.to_string()));
    let r = app.get(&format!("/v1/transactions?limit=2&cursor={forged}"), Some(&alice_token)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_cursor"), "an edited cursor");

    let ok = app.get(&format!("/v1/transactions?limit=2&cursor={cursor}"), Some(&alice_token)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn another_users_transaction_answers_exactly_like_a_missing_one() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.user_token().await;
    let (_, bob_token) = app.user_token().await;
    let ids = movements(&app, &alice, 1).await;

    let own = app.get(&format!("/v1/transactions/{}", ids[0]), Some(&alice_token)).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.json["amount"], "1.00");
    let foreign = app.get(&format!("/v1/transactions/{}", ids[0]), Some(&bob_token)).await;
    let missing = app.get(&format!("/v1/transactions/{}", TransactionId::generate()), Some(&bob_token)).await;
    let malformed = app.get("/v1/transactions/not-an-id", Some(&bob_token)).await;
    for r in [&foreign, &missing, &malformed] {
        assert_eq!((r.status, r.code()), (404, "not_found"));
        assert_eq!(r.json["error"]["message"], missing.json["error"]["message"]);
    }
    let bobs_list = app.get("/v1/transactions", Some(&bob_token)).await;
    assert!(bobs_list.json["items"].as_array().unwrap().is_empty());
}
