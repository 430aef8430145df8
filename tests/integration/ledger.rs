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
// Escrow: held minutes posted into a call, then paid out as one movement with several legs
// ------------------------------------------------------------------------------------------

/// An ACTIVE call from `caller` to `callee` (its item is the call's escrow account).
async fn active_call(app: &TestApp, caller: &UserId, callee: &UserId) -> purse::domain::ids::CallId {
    use purse::store::calls::{self as calls, Call, CallStatus};
    let call = Call {
        id: purse::domain::ids::CallId::generate(),
        caller: caller.clone(),
        callee: callee.clone(),
        status: CallStatus::Ringing,
        channel: "app".into(),
        price_per_minute: coins("10.00").value(),
        callee_share_percent: 70,
        period_seconds: 60,
        created_at: purse::store::now_rfc3339(),
        created_ms: 0,
        accepted_ms: None,
        ended_at: None,
        end_reason: None,
        billed_minutes: 0,
        charged: rust_decimal::Decimal::ZERO,
        earned: rust_decimal::Decimal::ZERO,
        duration_seconds: None,
        caller_connection: None,
        callee_connection: None,
        next_tick_ms: None,
        provider_call_id: None,
        pin: None,
        paid_seconds: None,
        settled: false,
    };
    purse::store::transact(&app.table, calls::new_call_items(&app.table, &call).unwrap()).await.unwrap();
    let activate = calls::call_update(
        &app.table,
        &call.id,
        CallStatus::Ringing,
        None,
        "SET #status = :active",
        vec![(":active", aws_sdk_dynamodb::types::AttributeValue::S("ACTIVE".into()))],
    )
    .unwrap();
    purse::store::transact(&app.table, vec![activate]).await.unwrap();
    call.id
}

/// What a call's escrow holds (its item is the account).
async fn escrow_balance(app: &TestApp, call: &purse::domain::ids::CallId) -> rust_decimal::Decimal {
    let item = purse::store::get_item(&app.table, purse::store::calls::call_key(call)).await.unwrap().unwrap();
    store::account_from_item(&item).unwrap().balance
}

/// A funded caller in an ACTIVE call with a callee (id, token), its first minute (10.00) held,
/// and the second minute ready to be held.
async fn call_with_minute_held(
    app: &TestApp,
    funds: &str,
) -> (UserId, (String, String), purse::domain::ids::CallId, NewHold, NewHold) {
    let caller = funded_user(app, funds).await;
    let callee = app.user_token().await;
    let call = active_call(app, &caller, &UserId::parse(&callee.0).unwrap()).await;
    let escrow = Side::Account(AccountId::call(&call));
    let first = hold_of(&caller, TransactionType::CallCharge, "10.00", escrow.clone());
    store::hold(&app.table, &first).await.unwrap();
    let next = hold_of(&caller, TransactionType::CallCharge, "10.00", escrow);
    (caller, callee, call, first, next)
}

/// Minute `billed + 1` of `call` posted at `charge` into its escrow, holding `next` too.
fn minute_posting<'a>(
    app: &TestApp,
    call: &purse::domain::ids::CallId,
    billed: u32,
    charge: &str,
    next: Option<&'a NewHold>,
) -> store::HeldPosting<'a> {
    store::HeldPosting {
        charge: charge.parse().unwrap(),
        escrow: minute_into(app, call, billed, charge),
        next,
        extra: vec![],
    }
}

fn minute_into(app: &TestApp, call: &purse::domain::ids::CallId, billed: u32, charge: &str) -> store::Escrow {
    let credit = purse::store::calls::EscrowCredit {
        billed,
        charge: charge.parse().unwrap(),
        whole_minute: true,
        ..Default::default()
    };
    store::Escrow {
        account: AccountId::call(call),
        update: purse::store::calls::escrow_update(&app.table, call, credit).unwrap(),
    }
}

#[tokio::test]
async fn a_held_minute_is_posted_into_the_escrow_and_the_next_held_in_one_write() {
    let app = TestApp::spawn().await;
    let (caller, (callee_id, callee_token), call, first, next) = call_with_minute_held(&app, "25.00").await;
    let callee = UserId::parse(&callee_id).unwrap();

    let posting = minute_posting(&app, &call, 0, "10.00", Some(&next));
    assert!(store::post_held(&app.table, &first.id, posting).await.unwrap().changed);
    // Paid 10 of 25 into the call; the next 10 is held: available 5.
    assert_eq!(app.wallet_of(caller.as_str()).await, ("15.00".into(), "5.00".into(), "10.00".into()));
    assert_eq!(escrow_balance(&app, &call).await, coins("10.00").value());
    app.assert_ledger_balanced().await;

    // Posting it again changes nothing (and its escrow condition would refuse a second credit).
    let again = minute_posting(&app, &call, 0, "10.00", Some(&next));
    assert!(!store::post_held(&app.table, &first.id, again).await.unwrap().changed);
    // A second minute posted against the wrong count is refused whole.
    let stale = minute_posting(&app, &call, 0, "10.00", None);
    assert!(matches!(store::post_held(&app.table, &next.id, stale).await, Err(LedgerError::ConditionFailed)));

    // The last, partial minute: 4.17 charged, 5.83 of the hold released, nothing held next.
    let last = minute_posting(&app, &call, 1, "4.17", None);
    store::post_held(&app.table, &next.id, last).await.unwrap();
    assert_eq!(app.wallet_of(caller.as_str()).await, ("10.83".into(), "10.83".into(), "0.00".into()));
    app.assert_ledger_balanced().await;

    // The payout: one movement, two legs, in the callee's history; the escrow is emptied.
    let end = purse::store::calls::call_update(
        &app.table,
        &call,
        purse::store::calls::CallStatus::Active,
        None,
        "SET #status = :ended",
        vec![(":ended", aws_sdk_dynamodb::types::AttributeValue::S("ENDED".into()))],
    )
    .unwrap();
    purse::store::transact(&app.table, vec![end]).await.unwrap();
    let payout = store::NewSplit {
        id: TransactionId::generate(),
        user_id: callee.clone(),
        kind: TransactionType::CallEarning,
        currency: Currency::Coin,
        debit: AccountId::call(&call),
        legs: vec![
            store::Leg { account: Side::Account(AccountId::wallet(&callee)), amount: "9.91".parse().unwrap() },
            store::Leg { account: Side::System(SystemAccount::PlatformRevenue), amount: "4.26".parse().unwrap() },
        ],
        description: "test payout".into(),
        reference: Some(call.to_string()),
    };
    let settle =
        purse::store::calls::settle_update(&app.table, &call, "14.17".parse().unwrap(), "9.91".parse().unwrap())
            .unwrap();
    let paid = store::transfer_split(&app.table, &payout, settle).await.unwrap();
    assert_eq!(paid.legs.len(), 2);
    assert_eq!(app.wallet_of(&callee_id).await, ("9.91".into(), "9.91".into(), "0.00".into()));
    assert!(escrow_balance(&app, &call).await.is_zero());
    let history = app.get("/v1/transactions", Some(&callee_token)).await;
    let items = history.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", history.text);
    assert_eq!((items[0]["type"].as_str(), items[0]["amount"].as_str()), (Some("CALL_EARNING"), Some("9.91")));
    // Paying it out twice is refused whole.
    let settle =
        purse::store::calls::settle_update(&app.table, &call, "14.17".parse().unwrap(), "9.91".parse().unwrap())
            .unwrap();
    let twice = store::NewSplit { id: TransactionId::generate(), ..payout.clone() };
    assert!(matches!(store::transfer_split(&app.table, &twice, settle).await, Err(LedgerError::ConditionFailed)));
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_held_posting_whose_next_hold_does_not_fit_writes_nothing() {
    let app = TestApp::spawn().await;
    let (caller, _, call, first, next) = call_with_minute_held(&app, "15.00").await;
    let posting = minute_posting(&app, &call, 0, "10.00", Some(&next));
    assert!(matches!(store::post_held(&app.table, &first.id, posting).await, Err(LedgerError::InsufficientFunds)));
    assert_eq!(app.wallet_of(caller.as_str()).await, ("15.00".into(), "5.00".into(), "10.00".into()));
    assert!(store::get_transaction(&app.table, &next.id).await.unwrap().is_none());
    // More than was held, or nothing, is refused before anything is written.
    for charge in ["10.01", "0.00"] {
        let posting = store::HeldPosting {
            charge: charge.parse().unwrap(),
            escrow: minute_into(&app, &call, 0, charge),
            next: None,
            extra: vec![],
        };
        assert!(
            matches!(store::post_held(&app.table, &first.id, posting).await, Err(LedgerError::Store(_))),
            "{charge}"
        );
    }
    app.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_split_with_repeated_negative_or_self_legs_is_refused_and_the_audit_checks_legs() {
    let app = TestApp::spawn().await;
    let caller = funded_user(&app, "15.00").await;
    let (callee_id, _) = app.user_token().await;
    let callee = UserId::parse(&callee_id).unwrap();
    let call = active_call(&app, &caller, &callee).await;
    let leg = |account: AccountId, amount: &str| store::Leg {
        account: Side::Account(account),
        amount: amount.parse().unwrap(),
    };
    let split = |legs| store::NewSplit {
        id: TransactionId::generate(),
        user_id: callee.clone(),
        kind: TransactionType::CallEarning,
        currency: Currency::Coin,
        debit: AccountId::call(&call),
        legs,
        description: "test".into(),
        reference: None,
    };
    let settle = || {
        purse::store::calls::settle_update(&app.table, &call, "1.00".parse().unwrap(), "1.00".parse().unwrap()).unwrap()
    };
    for legs in [
        vec![leg(AccountId::wallet(&callee), "0.50"), leg(AccountId::wallet(&callee), "0.50")],
        vec![leg(AccountId::wallet(&callee), "1.50"), leg(AccountId::wallet(&caller), "-0.50")],
        vec![leg(AccountId::call(&call), "1.00")],
        vec![],
    ] {
        assert!(
            matches!(
                store::transfer_split(&app.table, &split(legs.clone()), settle()).await,
                Err(LedgerError::Store(_))
            ),
            "{legs:?}"
        );
    }

    // A payout whose legs were tampered with afterwards is named by the audit.
    let escrow = Side::Account(AccountId::call(&call));
    let first = hold_of(&caller, TransactionType::CallCharge, "10.00", escrow);
    store::hold(&app.table, &first).await.unwrap();
    let posting = minute_posting(&app, &call, 0, "10.00", None);
    store::post_held(&app.table, &first.id, posting).await.unwrap();
    let end = purse::store::calls::call_update(
        &app.table,
        &call,
        purse::store::calls::CallStatus::Active,
        None,
        "SET #status = :ended",
        vec![(":ended", aws_sdk_dynamodb::types::AttributeValue::S("ENDED".into()))],
    )
    .unwrap();
    purse::store::transact(&app.table, vec![end]).await.unwrap();
    let payout = split(vec![
        leg(AccountId::wallet(&callee), "7.00"),
        store::Leg { account: Side::System(SystemAccount::PlatformRevenue), amount: "3.00".parse().unwrap() },
    ]);
    let settle =
        purse::store::calls::settle_update(&app.table, &call, "10.00".parse().unwrap(), "7.00".parse().unwrap())
            .unwrap();
    store::transfer_split(&app.table, &payout, settle).await.unwrap();
    app.assert_ledger_balanced().await;
    app.table
        .client
        .update_item()
        .table_name(&app.table.name)
        .set_key(Some(store::transaction_key(&payout.id)))
        .update_expression("SET legs[0].amount = :x")
        .expression_attribute_values(":x", aws_sdk_dynamodb::types::AttributeValue::N("6.00".into()))
        .send()
        .await
        .unwrap();
    let report = purse::ledger::audit::run(&app.table).await.unwrap();
    assert!(
        report.differences.iter().any(|d| d.contains(payout.id.as_str()) && d.contains("legs")),
        "{:?}",
        report.differences
    );
}
