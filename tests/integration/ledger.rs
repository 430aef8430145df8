//! The double-entry ledger against the emulator: exact, balanced, never overdrawn.

use purse::domain::ids::{TransactionId, UserId};
use purse::ledger::store::{self, LedgerError};
use purse::ledger::{AccountId, NewHold, NewTransaction, Side, SystemAccount, TransactionStatus, TransactionType};
use purse::money::{Amount, Currency};
use purse_tests::TestApp;

fn coins(text: &str) -> Amount {
    Amount::parse(text, Currency::Coin).unwrap()
}

fn movement(user: &UserId, kind: TransactionType, amount: &str, debit: Side, credit: Side) -> NewTransaction {
    NewTransaction {
        id: TransactionId::generate(),
        user_id: user.clone(),
        kind,
        amount: coins(amount),
        currency: Currency::Coin,
        debit,
        credit,
        description: "test".into(),
        reference: None,
    }
}

fn hold_of(user: &UserId, kind: TransactionType, amount: &str, credit: Side) -> NewHold {
    NewHold {
        id: TransactionId::generate(),
        user_id: user.clone(),
        kind,
        amount: coins(amount),
        currency: Currency::Coin,
        credit,
        description: "test".into(),
        reference: None,
    }
}

/// A new user whose wallet was funded through a posted deposit.
async fn funded_user(app: &TestApp, amount: &str) -> UserId {
    let (id, _) = app.user_token().await;
    let user = UserId::parse(&id).unwrap();
    let deposit = movement(
        &user,
        TransactionType::Deposit,
        amount,
        Side::System(SystemAccount::RevioClearing),
        Side::Account(AccountId::wallet(&user)),
    );
    store::record_pending(&app.table, &deposit, None).await.unwrap();
    assert!(store::post(&app.table, &deposit.id).await.unwrap().changed);
    user
}

#[tokio::test]
async fn a_posted_deposit_credits_the_wallet_and_the_ledger_stays_balanced() {
    let app = TestApp::spawn().await;
    let user = funded_user(&app, "125.50").await;
    assert_eq!(app.wallet_of(user.as_str()).await, ("125.50".into(), "125.50".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn posting_the_same_movement_concurrently_moves_money_once() {
    let app = TestApp::spawn().await;
    let (id, _) = app.user_token().await;
    let user = UserId::parse(&id).unwrap();
    let deposit = movement(
        &user,
        TransactionType::Deposit,
        "10.00",
        Side::System(SystemAccount::RevioClearing),
        Side::Account(AccountId::wallet(&user)),
    );
    store::record_pending(&app.table, &deposit, None).await.unwrap();
    let results = futures::future::join_all((0..20).map(|_| store::post(&app.table, &deposit.id))).await;
    let changed = results.iter().filter(|r| matches!(r, Ok(s) if s.changed)).count();
    assert_eq!(changed, 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(s) if s.transaction.status == TransactionStatus::Completed)));
    assert_eq!(app.wallet_of(&id).await.0, "10.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn concurrent_debits_never_overdraw_a_wallet() {
    let app = TestApp::spawn().await;
    let user = funded_user(&app, "100.00").await;
    let fees: Vec<_> = (0..30)
        .map(|_| {
            movement(
                &user,
                TransactionType::GameFee,
                "10.00",
                Side::Account(AccountId::wallet(&user)),
                Side::System(SystemAccount::PlatformRevenue),
            )
        })
        .collect();
    let results = futures::future::join_all(fees.iter().map(|f| store::transfer(&app.table, f))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let short = results.iter().filter(|r| matches!(r, Err(LedgerError::InsufficientFunds))).count();
    assert_eq!((ok, short), (10, 20), "{results:?}");
    assert_eq!(app.wallet_of(user.as_str()).await, ("0.00".into(), "0.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_hold_reserves_available_money_and_is_then_posted_or_released() {
    let app = TestApp::spawn().await;
    let user = funded_user(&app, "50.00").await;

    let withdrawal = hold_of(&user, TransactionType::Withdrawal, "20.00", Side::System(SystemAccount::RevioClearing));
    store::hold(&app.table, &withdrawal).await.unwrap();
    assert_eq!(app.wallet_of(user.as_str()).await, ("50.00".into(), "30.00".into(), "20.00".into()));
    app.assert_ledger_balanced().await;

    let too_much = hold_of(&user, TransactionType::Withdrawal, "30.01", Side::System(SystemAccount::RevioClearing));
    assert!(matches!(store::hold(&app.table, &too_much).await, Err(LedgerError::InsufficientFunds)));

    let call = hold_of(&user, TransactionType::CallCharge, "5.00", Side::System(SystemAccount::PlatformRevenue));
    store::hold(&app.table, &call).await.unwrap();
    assert_eq!(app.wallet_of(user.as_str()).await, ("50.00".into(), "25.00".into(), "25.00".into()));

    assert!(store::post(&app.table, &withdrawal.id).await.unwrap().changed);
    assert_eq!(app.wallet_of(user.as_str()).await, ("30.00".into(), "25.00".into(), "5.00".into()));
    let released = store::fail(&app.table, &call.id, "call not connected").await.unwrap();
    assert_eq!(released.transaction.failure_reason.as_deref(), Some("call not connected"));
    assert_eq!(app.wallet_of(user.as_str()).await, ("30.00".into(), "30.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_settled_movement_cannot_be_settled_the_other_way() {
    let app = TestApp::spawn().await;
    let user = funded_user(&app, "5.00").await;
    let (id, _) = app.user_token().await;
    let other = UserId::parse(&id).unwrap();
    let gift = movement(
        &user,
        TransactionType::Adjustment,
        "1.00",
        Side::System(SystemAccount::Adjustments),
        Side::Account(AccountId::wallet(&other)),
    );
    store::record_pending(&app.table, &gift, None).await.unwrap();
    store::fail(&app.table, &gift.id, "declined").await.unwrap();
    assert!(matches!(
        store::post(&app.table, &gift.id).await,
        Err(LedgerError::AlreadyFinal(TransactionStatus::Failed))
    ));
    assert!(!store::fail(&app.table, &gift.id, "again").await.unwrap().changed);
    assert_eq!(app.wallet_of(&id).await.0, "0.00");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn money_cannot_move_into_a_wallet_that_does_not_exist() {
    let app = TestApp::spawn().await;
    let user = funded_user(&app, "5.00").await;
    let ghost = UserId::generate();
    let t = movement(
        &user,
        TransactionType::Reward,
        "1.00",
        Side::Account(AccountId::wallet(&user)),
        Side::Account(AccountId::wallet(&ghost)),
    );
    assert!(matches!(store::transfer(&app.table, &t).await, Err(LedgerError::AccountMissing)));
    assert!(store::get_transaction(&app.table, &t.id).await.unwrap().is_none(), "nothing half-written");
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_audit_reports_a_balance_that_does_not_match_its_movements() {
    let app = TestApp::spawn().await;
    let user = funded_user(&app, "10.00").await;
    app.table
        .client
        .update_item()
        .table_name(&app.table.name)
        .set_key(Some(store::account_key(&AccountId::wallet(&user))))
        .update_expression("SET balance = balance + :x, available = available + :x")
        .expression_attribute_values(":x", aws_sdk_dynamodb::types::AttributeValue::N("0.01".into()))
        .send()
        .await
        .unwrap();
    let report = purse::ledger::audit::run(&app.table).await.unwrap();
    assert!(!report.is_clean());
    assert!(
        report.differences.iter().any(|d| d.contains(&user.to_string()) && d.contains("10.01")),
        "{:?}",
        report.differences
    );
    assert!(report.differences.iter().any(|d| d.contains("sum to 0.01")), "{:?}", report.differences);
}

// ------------------------------------------------------------------------------------------
// Split movements (a call minute: the caller pays, the callee and the platform share it)
// ------------------------------------------------------------------------------------------

fn split(callee: &UserId, callee_part: &str, platform_part: &str) -> Vec<store::Leg> {
    vec![
        store::Leg { account: Side::Account(AccountId::wallet(callee)), amount: callee_part.parse().unwrap() },
        store::Leg { account: Side::System(SystemAccount::PlatformRevenue), amount: platform_part.parse().unwrap() },
    ]
}

#[tokio::test]
async fn a_split_posting_pays_each_leg_releases_the_rest_and_holds_the_next_in_one_write() {
    let app = TestApp::spawn().await;
    let caller = funded_user(&app, "25.00").await;
    let (callee_id, callee_token) = app.user_token().await;
    let callee = UserId::parse(&callee_id).unwrap();
    let first = hold_of(&caller, TransactionType::CallCharge, "10.00", Side::Account(AccountId::wallet(&callee)));
    store::hold(&app.table, &first).await.unwrap();
    let next = hold_of(&caller, TransactionType::CallCharge, "10.00", Side::Account(AccountId::wallet(&callee)));

    let posting = store::SplitPosting {
        charge: coins("10.00").value(),
        legs: split(&callee, "7.00", "3.00"),
        next: Some(&next),
        extra: Vec::new(),
    };
    let settled = store::post_split(&app.table, &first.id, posting).await.unwrap();
    assert!(settled.changed);
    // Paid 10 of 25; the next 10 is held: available 5.
    assert_eq!(app.wallet_of(caller.as_str()).await, ("15.00".into(), "5.00".into(), "10.00".into()));
    assert_eq!(app.wallet_of(&callee_id).await, ("7.00".into(), "7.00".into(), "0.00".into()));
    app.assert_ledger_balanced().await;

    // The callee sees their leg in their own history, as a credit.
    let history = app.get("/v1/transactions", Some(&callee_token)).await;
    let items = history.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", history.json);
    assert_eq!(items[0]["id"], first.id.as_str());
    assert_eq!(items[0]["amount"], "7.00");
    assert_eq!(items[0]["direction"], "credit");
    assert_eq!(items[0]["type"], "CALL_CHARGE");
    let one = app.get(&format!("/v1/transactions/{}", first.id), Some(&callee_token)).await;
    assert_eq!(one.status, 200, "{}", one.json);
    assert_eq!(one.json["amount"], "7.00");

    // Posting it again changes nothing.
    let again = store::SplitPosting {
        charge: coins("10.00").value(),
        legs: split(&callee, "7.00", "3.00"),
        next: Some(&next),
        extra: Vec::new(),
    };
    assert!(!store::post_split(&app.table, &first.id, again).await.unwrap().changed);

    // The last, partial period: 4.17 charged, 5.83 of the hold released, nothing held next.
    let last = store::SplitPosting {
        charge: coins("4.17").value(),
        legs: split(&callee, "2.91", "1.26"),
        next: None,
        extra: Vec::new(),
    };
    store::post_split(&app.table, &next.id, last).await.unwrap();
    assert_eq!(app.wallet_of(caller.as_str()).await, ("10.83".into(), "10.83".into(), "0.00".into()));
    assert_eq!(app.wallet_of(&callee_id).await, ("9.91".into(), "9.91".into(), "0.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_split_posting_whose_next_hold_does_not_fit_writes_nothing() {
    let app = TestApp::spawn().await;
    let caller = funded_user(&app, "15.00").await;
    let (callee_id, _) = app.user_token().await;
    let callee = UserId::parse(&callee_id).unwrap();
    let first = hold_of(&caller, TransactionType::CallCharge, "10.00", Side::Account(AccountId::wallet(&callee)));
    store::hold(&app.table, &first).await.unwrap();
    let next = hold_of(&caller, TransactionType::CallCharge, "10.00", Side::Account(AccountId::wallet(&callee)));
    let posting = store::SplitPosting {
        charge: coins("10.00").value(),
        legs: split(&callee, "7.00", "3.00"),
        next: Some(&next),
        extra: Vec::new(),
    };
    assert!(matches!(store::post_split(&app.table, &first.id, posting).await, Err(LedgerError::InsufficientFunds)));
    assert_eq!(app.wallet_of(caller.as_str()).await, ("15.00".into(), "5.00".into(), "10.00".into()));
    assert!(store::get_transaction(&app.table, &next.id).await.unwrap().is_none());
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_split_posting_whose_legs_do_not_sum_to_the_charge_is_refused() {
    let app = TestApp::spawn().await;
    let caller = funded_user(&app, "15.00").await;
    let (callee_id, _) = app.user_token().await;
    let callee = UserId::parse(&callee_id).unwrap();
    let first = hold_of(&caller, TransactionType::CallCharge, "10.00", Side::Account(AccountId::wallet(&callee)));
    store::hold(&app.table, &first).await.unwrap();
    for (charge, a, b) in [("10.00", "7.00", "2.99"), ("10.01", "7.01", "3.00"), ("0.00", "0.00", "0.00")] {
        let posting = store::SplitPosting {
            charge: charge.parse().unwrap(),
            legs: split(&callee, a, b),
            next: None,
            extra: Vec::new(),
        };
        assert!(store::post_split(&app.table, &first.id, posting).await.is_err(), "{charge} = {a} + {b}");
    }
    assert_eq!(app.wallet_of(caller.as_str()).await, ("15.00".into(), "5.00".into(), "10.00".into()));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_audit_catches_a_split_movement_whose_legs_do_not_match_its_amount() {
    let app = TestApp::spawn().await;
    let caller = funded_user(&app, "15.00").await;
    let (callee_id, _) = app.user_token().await;
    let callee = UserId::parse(&callee_id).unwrap();
    let first = hold_of(&caller, TransactionType::CallCharge, "10.00", Side::Account(AccountId::wallet(&callee)));
    store::hold(&app.table, &first).await.unwrap();
    let posting = store::SplitPosting {
        charge: coins("10.00").value(),
        legs: split(&callee, "7.00", "3.00"),
        next: None,
        extra: Vec::new(),
    };
    store::post_split(&app.table, &first.id, posting).await.unwrap();
    app.assert_ledger_balanced().await;
    // Tamper with one leg, as a bug would: the audit names the movement.
    let mut key = store::transaction_key(&first.id);
    key.remove("gsi1pk");
    app.table
        .client
        .update_item()
        .table_name(&app.table.name)
        .set_key(Some(key))
        .update_expression("SET legs[0].amount = :x")
        .expression_attribute_values(":x", aws_sdk_dynamodb::types::AttributeValue::N("6.00".into()))
        .send()
        .await
        .unwrap();
    let report = purse::ledger::audit::run(&app.table).await.unwrap();
    assert!(
        report.differences.iter().any(|d| d.contains(first.id.as_str()) && d.contains("legs")),
        "{:?}",
        report.differences
    );
}
