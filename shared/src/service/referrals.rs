//! Referral rewards: paid to the referrer exactly once when the referee's first deposit has
//! completed and both the referee's and the referrer's KYC have verified (in any order), within
//! a cap per referrer.
//!
//! The events record themselves on the referral in their own writes (the outbox, see
//! [`crate::store::referrals`]); [`RewardsRelay`] announces them on the rewards queue, and the
//! rewards consumer calls [`pay_reward`]. `GET /v1/referrals` is [`overview`].

use crate::config::{Env, InitError};
use crate::domain::ids::{TransactionId, UserId};
use crate::error::ApiError;
use crate::ledger::store::{self as ledger, LedgerError};
use crate::ledger::{AccountId, CreditCounter, NewTransaction, Side, SystemAccount, TransactionType};
use crate::money::{Amount, Currency};
use crate::runtime::MessageError;
use crate::store::item::ItemExt;
use crate::store::referrals::{self, Referral};
use crate::store::{transact, StoreError, Table, TransactError};
use serde::{Deserialize, Serialize};

/// What a reward pays and how many one referrer may earn.
#[derive(Debug, Clone)]
pub struct RewardRules {
    pub amount: Amount,
    pub max_rewards_per_referrer: u32,
}

impl RewardRules {
    /// Reads `REFERRAL_REWARD_AMOUNT` (coins, e.g. `50.00`) and `REFERRAL_MAX_REWARDS`.
    ///
    /// # Errors
    /// [`InitError`] naming the variable.
    pub fn from_env(env: &Env) -> Result<Self, InitError> {
        let raw = env.require("REFERRAL_REWARD_AMOUNT")?;
        let amount = Amount::parse(&raw, Currency::Coin)
            .map_err(|e| InitError::InvalidEnv { name: "REFERRAL_REWARD_AMOUNT".into(), reason: e.to_string() })?;
        Ok(Self { amount, max_rewards_per_referrer: env.require_parsed("REFERRAL_MAX_REWARDS")? })
    }
}

/// The message on the rewards queue: only the referee's id.
#[derive(Debug, Serialize, Deserialize)]
pub struct RewardEvent {
    pub referee_id: UserId,
}

/// The message announcing that a user verified: their own referrals (as referrer) may be owed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferrerVerified {
    pub verified_referrer_id: UserId,
}

/// Announces reward events on the rewards queue.
#[derive(Debug, Clone)]
pub struct RewardsRelay {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl RewardsRelay {
    /// The relay to `REWARDS_QUEUE_URL`.
    ///
    /// # Errors
    /// [`InitError::MissingEnv`].
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, InitError> {
        Ok(Self { sqs: crate::store::sqs_client(aws), queue_url: env.require("REWARDS_QUEUE_URL")? })
    }

    /// The relay, when the function is configured with one.
    pub fn from_env_optional(env: &Env, aws: &aws_config::SdkConfig) -> Option<Self> {
        Self::from_env(env, aws).ok()
    }

    /// Sends the event. Best effort: the outbox marker written with the event stays until the
    /// reward is processed, and the scheduled relay sends it again if this send is lost.
    pub async fn notify(&self, referee: &UserId) {
        if let Err(e) = self.send(referee).await {
            tracing::warn!(referee_id = %referee, error = %e, "reward event not sent now; the scheduled relay will send it");
        }
    }

    /// Announces that `user` verified, for the rewards consumer to look at their referrals
    /// (one message, whatever their number). Best effort: the verification's marker stays for
    /// the scheduled relay.
    pub async fn notify_verified_referrer(&self, user: &UserId) {
        let body = serde_json::to_string(&ReferrerVerified { verified_referrer_id: user.clone() }).unwrap_or_default();
        if let Err(e) = self.send_body(body).await {
            tracing::warn!(user_id = %user, error = %e, "referrer verification not announced now; the scheduled relay will");
        }
    }

    async fn send(&self, referee: &UserId) -> Result<(), String> {
        let body = serde_json::to_string(&RewardEvent { referee_id: referee.clone() }).map_err(|e| e.to_string())?;
        self.send_body(body).await
    }

    async fn send_body(&self, body: String) -> Result<(), String> {
        crate::store::send_message(&self.sqs, &self.queue_url, body).await
    }

    /// After `user`'s KYC verified: their own referrals (as a referrer) that waited only for
    /// that are marked due and announced, then the user's verification marker is cleared.
    /// Returns how many were announced. Safe to repeat; the scheduled relay does the same for
    /// every marker left behind.
    ///
    /// # Errors
    /// [`StoreError`] on storage failure (the marker stays for the relay).
    pub async fn referrer_verified(&self, table: &Table, user: &UserId) -> Result<usize, StoreError> {
        let profile = crate::store::get_item(table, crate::store::item::key(format!("USER#{user}"), "PROFILE")).await?;
        let marker = profile
            .as_ref()
            .filter(|p| p.opt_str("gsi2pk") == Some(referrals::VERIFIED_REFERRERS_PARTITION))
            .and_then(|p| p.opt_str("gsi2sk").map(str::to_owned));
        let announced = self.announce_owed(table, user).await?;
        if let Some(marker) = marker {
            referrals::clear_verified_referrer(table, user, &marker).await?;
        }
        Ok(announced)
    }

    /// Marks due and announces `referrer`'s PENDING referrals.
    async fn announce_owed(&self, table: &Table, referrer: &UserId) -> Result<usize, StoreError> {
        let mut after = None;
        let mut announced = 0;
        loop {
            let (items, next) = referrals::of_referrer(table, referrer, 100, after).await?;
            for r in items {
                // Every PENDING one, whatever the index says of its facts: index reads may lag
                // behind, and the reward re-checks everything with consistent reads.
                if r.status == "PENDING" {
                    referrals::mark_due(table, &r.referee).await?;
                    self.notify(&r.referee).await;
                    announced += 1;
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(announced),
            }
        }
    }

    /// Sends every referral still marked due, and handles every referrer verification not yet
    /// looked at (the outbox relay, run on a schedule). Returns how many events were sent.
    ///
    /// # Errors
    /// [`StoreError`] when the marked items cannot be listed.
    pub async fn relay_due(&self, table: &Table, limit: i32) -> Result<usize, StoreError> {
        let mut sent = 0;
        // Due referrals first: those a referrer's verification marks due below are announced
        // there, not twice in one run.
        for referee in referrals::due(table, limit).await? {
            match self.send(&referee).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    tracing::warn!(referee_id = %referee, error = %e, "reward event relay failed; next run retries")
                }
            }
        }
        for (referrer, marker) in referrals::verified_referrers(table, limit).await? {
            sent += self.announce_owed(table, &referrer).await?;
            referrals::clear_verified_referrer(table, &referrer, &marker).await?;
        }
        if sent > 0 {
            tracing::info!(sent, "referral reward events relayed from the outbox");
        }
        Ok(sent)
    }
}

/// What processing a reward event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewardOutcome {
    /// The reward was paid now.
    Paid(TransactionId),
    /// It had been paid, or the referral completed, before (a duplicate event).
    AlreadyCompleted,
    /// The referrer reached the cap: the referral completed without a reward.
    CapReached,
    /// Waiting for the referee's first deposit.
    WaitingForDeposit,
    /// Waiting for the referee's KYC.
    WaitingForKyc,
    /// Waiting for the referrer's own KYC.
    WaitingForReferrerKyc,
    /// The user was not referred.
    NotReferred,
}

/// The reward's movement id, derived from the referral: every attempt meets the first one's.
pub fn reward_transaction_id(referral: &Referral) -> TransactionId {
    TransactionId::derived_from(&format!("referral-reward#{}", referral.referral_id))
}

/// The counter on the referrer's wallet that enforces the cap in the reward's own write.
fn counter(rules: &RewardRules) -> CreditCounter {
    CreditCounter {
        count_attribute: "referral_rewards",
        sum_attribute: "referral_earned",
        limit: rules.max_rewards_per_referrer,
    }
}

/// Pays the referrer of `referee` if the reward is owed, exactly once: one transaction moves
/// the reward from the rewards pool to the referrer's wallet (counted under the cap on that
/// wallet) and completes the referral, conditioned on it being PENDING with both facts
/// recorded; its movement id is derived from the referral. Concurrent or repeated events meet
/// a refused condition or the existing movement and change nothing.
///
/// # Errors
/// [`StoreError`] on storage failure (the event is retried).
pub async fn pay_reward(table: &Table, rules: &RewardRules, referee: &UserId) -> Result<RewardOutcome, StoreError> {
    let Some(referral) = referrals::get(table, referee).await? else { return Ok(RewardOutcome::NotReferred) };
    let waiting = |outcome: RewardOutcome| async {
        if let Some(due) = &referral.due_since {
            referrals::clear_due(table, referee, due).await?;
        }
        Ok::<_, StoreError>(outcome)
    };
    if referral.status != "PENDING" {
        return waiting(RewardOutcome::AlreadyCompleted).await;
    }
    let Some(first_deposit) = referral.first_deposit_txn.as_deref() else {
        return waiting(RewardOutcome::WaitingForDeposit).await;
    };
    // A first deposit taken back (refund, chargeback) does not count: forget it, so that the
    // referee's next completed deposit does.
    let deposit_id =
        TransactionId::parse(first_deposit).map_err(|_| StoreError::Corrupt("first_deposit_txn".into()))?;
    if ledger::get_transaction(table, &deposit_id).await?.is_some_and(|d| d.reversed_by.is_some()) {
        referrals::forget_first_deposit(table, referee, first_deposit).await?;
        return waiting(RewardOutcome::WaitingForDeposit).await;
    }
    if referral.kyc_verified_at.is_none() {
        return waiting(RewardOutcome::WaitingForKyc).await;
    }
    // The referrer must be verified too, with their own PAN (one PAN verifies one account): so
    // one person cannot earn a reward by referring a second account of their own. A referrer's
    // verification never reverts, so reading it here (not in the write) is enough.
    let referrer_verified = crate::store::kyc::profile(table, &referral.referrer)
        .await?
        .is_some_and(|p| p.status == crate::domain::user::KycStatus::Verified);
    if !referrer_verified {
        return waiting(RewardOutcome::WaitingForReferrerKyc).await;
    }
    let id = reward_transaction_id(&referral);
    let new = NewTransaction {
        id: id.clone(),
        user_id: referral.referrer.clone(),
        kind: TransactionType::ReferralReward,
        amount: rules.amount,
        currency: Currency::Coin,
        debit: Side::System(SystemAccount::RewardsPool),
        credit: Side::Account(AccountId::wallet(&referral.referrer)),
        description: format!(
            "Referral reward: {} joined with your code",
            referral.referee_email_masked.as_deref().unwrap_or("a friend")
        ),
        reference: Some(referral.referral_id.clone()),
    };
    if rules.max_rewards_per_referrer == 0 {
        return close_at_cap(table, &referral).await;
    }
    let complete = referrals::complete(table, referee, "rewarded", Some((&id, rules.amount.value())))?;
    match ledger::transfer_counted(table, &new, vec![complete], Some(&counter(rules))).await {
        Ok(_) => {
            tracing::info!(referee_id = %referee, referrer_id = %referral.referrer, transaction_id = %id, "referral reward paid");
            let (value, txn) = (rules.amount.value(), id.as_str());
            crate::metrics::counted_with_coins(
                "ReferralRewardsPaid",
                1,
                "ReferralRewardCoins",
                value,
                "transaction_id",
                txn,
            );
            Ok(RewardOutcome::Paid(id))
        }
        Err(LedgerError::Duplicate | LedgerError::ConditionFailed) => Ok(RewardOutcome::AlreadyCompleted),
        Err(LedgerError::LimitExceeded) => {
            // The counted credit was refused: the cap, unless the wallet is missing or in
            // another currency (a bug, never a reason to close the referral).
            let wallet =
                crate::store::get_item(table, ledger::account_key(&AccountId::wallet(&referral.referrer))).await?;
            let count = wallet.as_ref().and_then(|w| w.opt_int("referral_rewards")).unwrap_or(0);
            if wallet.is_some() && count >= i64::from(rules.max_rewards_per_referrer) {
                close_at_cap(table, &referral).await
            } else {
                Err(StoreError::Corrupt(format!(
                    "the referrer's wallet refused the reward credit (referral {})",
                    referral.referral_id
                )))
            }
        }
        Err(LedgerError::Store(e)) => Err(e),
        Err(other) => Err(StoreError::Dynamo(format!("referral reward refused: {other}"))),
    }
}

/// Completes a referral without a reward: its referrer has reached the cap.
async fn close_at_cap(table: &Table, referral: &Referral) -> Result<RewardOutcome, StoreError> {
    let closing = referrals::complete(table, &referral.referee, "cap_reached", None)?;
    match transact(table, vec![closing]).await {
        Ok(()) => {
            tracing::info!(referee_id = %referral.referee, referrer_id = %referral.referrer, "referrer reached the reward cap; referral completed without a reward");
            Ok(RewardOutcome::CapReached)
        }
        Err(TransactError::Refused(_)) => Ok(RewardOutcome::AlreadyCompleted),
        Err(TransactError::Store(e)) => Err(e),
    }
}

/// Processes one message of the rewards queue ([`pay_reward`]).
///
/// # Errors
/// A [`MessageError`] (redelivered, then parked in the DLQ) when the message is unreadable or
/// storage failed.
pub async fn process(table: &Table, rules: &RewardRules, relay: &RewardsRelay, body: &str) -> Result<(), MessageError> {
    if let Ok(verified) = serde_json::from_str::<ReferrerVerified>(body) {
        let announced = relay
            .referrer_verified(table, &verified.verified_referrer_id)
            .await
            .map_err(|e| MessageError(e.to_string()))?;
        tracing::info!(referrer_id = %verified.verified_referrer_id, announced, "referrals of a newly verified referrer announced");
        return Ok(());
    }
    let event: RewardEvent =
        serde_json::from_str(body).map_err(|e| MessageError(format!("unreadable reward event: {e}")))?;
    let outcome = pay_reward(table, rules, &event.referee_id).await.map_err(|e| MessageError(e.to_string()))?;
    tracing::info!(referee_id = %event.referee_id, outcome = ?outcome, "reward event processed");
    Ok(())
}

/// One referee as the referrer sees them.
#[derive(Debug, Serialize)]
pub struct RefereeView {
    pub referral_id: String,
    /// `a***@example.com`.
    pub email: Option<String>,
    /// `PENDING` or `COMPLETED`.
    pub status: String,
    pub joined_at: String,
    pub first_deposit: bool,
    pub kyc_verified: bool,
    /// `rewarded` or `cap_reached` once COMPLETED.
    pub outcome: Option<String>,
    /// The reward paid for this referee, with the currency's places.
    pub reward: Option<String>,
    pub reward_transaction_id: Option<String>,
}

/// `GET /v1/referrals`.
#[derive(Debug, Serialize)]
pub struct ReferralsView {
    pub referral_code: String,
    pub share_url: String,
    pub rewards_earned: String,
    pub rewards_count: i64,
    pub rewards_limit: u32,
    pub reward_per_referral: String,
    pub referees: Vec<RefereeView>,
    pub next_cursor: Option<String>,
}

/// Largest page of referees.
pub const MAX_PAGE: i32 = 100;

fn encode_cursor(sk: &str, referee: &UserId) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{sk}|{referee}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, UserId), ApiError> {
    use base64::Engine;
    let bad = || ApiError::bad_request("invalid_cursor", "cursor is not one this API returned");
    if cursor.len() > 256 {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (sk, user) = text.split_once('|').ok_or_else(bad)?;
    if sk.is_empty() || sk.len() > 64 {
        return Err(bad());
    }
    Ok((sk.to_owned(), UserId::parse(user).map_err(|_| bad())?))
}

/// The caller's referral code, share link, referees (newest first, paged) and rewards. A
/// cursor only moves within the caller's own referees: the query's partition is the caller's.
///
/// # Errors
/// 400 `invalid_cursor` / `invalid_limit`, or a storage failure.
pub async fn overview(
    table: &Table,
    rules: &RewardRules,
    share_base_url: &str,
    user: &UserId,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<ReferralsView, ApiError> {
    let limit = match limit {
        None => 20,
        Some(l) => match l.parse::<i32>() {
            Ok(n @ 1..=MAX_PAGE) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {MAX_PAGE}"),
                ))
            }
        },
    };
    let after = cursor.map(decode_cursor).transpose()?;
    let profile =
        crate::store::users::get_user(table, user).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
    // The list first, the wallet's counters after: a referral shown COMPLETED is always
    // already counted in the totals (the reward and the completion are one write).
    let (items, next) = referrals::of_referrer(table, user, limit, after).await?;
    let wallet = crate::store::get_item(table, ledger::account_key(&AccountId::wallet(user))).await?;
    let count = wallet.as_ref().and_then(|w| w.opt_int("referral_rewards")).unwrap_or(0);
    let earned = wallet.as_ref().and_then(|w| w.decimal("referral_earned").ok()).unwrap_or_default();
    let code = profile.referral_code.as_str().to_owned();
    Ok(ReferralsView {
        share_url: format!("{}{}", share_base_url, code),
        referral_code: code,
        rewards_earned: crate::money::format(earned, Currency::Coin),
        rewards_count: count,
        rewards_limit: rules.max_rewards_per_referrer,
        reward_per_referral: crate::money::format(rules.amount.value(), Currency::Coin),
        referees: items
            .into_iter()
            .map(|r| RefereeView {
                email: r.referee_email_masked.clone(),
                status: r.status.clone(),
                joined_at: r.created_at.clone(),
                first_deposit: r.first_deposit_txn.is_some(),
                kyc_verified: r.kyc_verified_at.is_some(),
                outcome: r.outcome.clone(),
                reward: r
                    .reward_amount
                    .as_deref()
                    .and_then(|a| a.parse::<rust_decimal::Decimal>().ok())
                    .map(|a| crate::money::format(a, Currency::Coin)),
                reward_transaction_id: r.reward_txn.clone(),
                referral_id: r.referral_id,
            })
            .collect(),
        next_cursor: next.map(|(sk, referee)| encode_cursor(&sk, &referee)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_forgeries_are_refused() {
        let u = UserId::generate();
        let c = encode_cursor("2026-12-02T03:00:00.000Z", &u);
        assert_eq!(decode_cursor(&c).unwrap(), ("2026-12-02T03:00:00.000Z".to_owned(), u));
        for bad in ["", "!!!", "bm90LWEtY3Vyc29y", &"A".repeat(300)] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
