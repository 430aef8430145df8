//! `purse-admin`: what an operator runs by hand. Reads the same configuration as the functions
//! (`PURSE_TABLE`, AWS credentials and region; `AWS_ENDPOINT_URL` for the local emulator).
//!
//! ```text
//! purse-admin grant-admin <email>         give an existing account the admin role
//! purse-admin audit                       verify the whole ledger (exit 1 on any difference)
//! purse-admin reconcile [min-age-seconds] settle PENDING deposits by asking Revio
//! purse-admin cases [limit]               the open cases (deposits that need a person), oldest first, as JSON
//! purse-admin resolve-case <case-id> <credit|refund> <reason...>
//!                                         close a case: credit the user or refund at Revio
//! purse-admin jwt-rotate <secret-id>      add a signing key and make it active at once (first key; a leak)
//! purse-admin key-add <secret-id>         rotation phase 1: publish a new key that verifies, not signs
//! purse-admin key-activate <secret-id> <kid>
//!                                         rotation phase 2: sign with it (after every function recycled)
//! purse-admin key-retire <secret-id>      rotation phase 3: drop every key but the active one
//!                                         (JWT keys and the history-cursor keys alike; runbook 6.2)
//! purse-admin kyc-reviews [limit]         KYC attempts awaiting a person, oldest first, as JSON
//! purse-admin kyc-resolve <kyc-id> <approve|reject> <admin-email> <reason...>
//!                                         decide a PENDING KYC attempt, recorded with that admin's id
//! purse-admin pay-reward <referee-user-id> pay a referral reward now if it is owed (exactly once)
//! purse-admin new-pii-keys                print a fresh value for the PII keys secret
//! purse-admin dlq list [--prefix <p>]     every dead-letter queue of the stack, its depth and source queue
//! purse-admin dlq peek <dlq-name> [n]     up to n (default 10) dead letters: id, receive count, body; left in place
//! purse-admin dlq redrive <dlq-name> [--message <id>]
//!                                         move dead letters (or one) back to their source queue
//! purse-admin dlq discard <dlq-name> <message-id> --reason <text...>
//!                                         delete one dead letter, logged with the reason and the operator
//! purse-admin service-create --name <name> --scopes <games:fees,games:rewards>
//!                                         a game service credential: prints its client id and secret, once
//! purse-admin service-list [--name <name>] every game service credential (revoked ones too), as JSON
//! purse-admin service-revoke <client-id>  revoke a game service credential; refused from its next request
//! ```
//!
//! `pay-reward` reads `REFERRAL_REWARD_AMOUNT` and `REFERRAL_MAX_REWARDS` (defaults 50.00 and 25,
//! the template's).
//!
//! `reconcile` and `resolve-case` also read the Revio configuration (`REVIO_BASE_URL`,
//! `REVIO_SECRET_ID`). A case resolved here records `operator:<$USER>` (or `operator:cli`) as
//! who resolved it.
//!
//! The `dlq` commands find the stack's queues by name prefix: the one `PURSE_TABLE` implies
//! (`purse-dev-PurseTable` → `purse-dev-`, `purse-prod` → `purse-prod-`) unless `--prefix` is
//! given; a `<dlq-name>` may omit the prefix (`RewardsDLQ`, `rewards-dlq`). Bodies are
//! identifiers only, and every consumer is idempotent, so a redrive is always safe (see `dlq.rs`).

mod dlq;
mod services;

use purse::config::Env;
use purse::domain::user::{Email, Role};
use purse::service::cases;
use purse::store::Table;
use std::process::ExitCode;

const USAGE: &str = "usage: purse-admin grant-admin <email> | audit | reconcile [min-age-seconds] | cases [limit] \
                     | resolve-case <case-id> <credit|refund> <reason...> | jwt-rotate <secret-id> \
                     | key-add <secret-id> | key-activate <secret-id> <kid> | key-retire <secret-id> \
                     | kyc-reviews [limit] | kyc-resolve <kyc-id> <approve|reject> <admin-email> <reason...> \
                     | pay-reward <referee-user-id> | new-pii-keys \
                     | dlq list [--prefix <p>] | dlq peek <dlq-name> [n] | dlq redrive <dlq-name> [--message <id>] \
                     | dlq discard <dlq-name> <message-id> --reason <text...> \
                     | service-create --name <name> --scopes <games:fees,games:rewards> \
                     | service-list [--name <name>] | service-revoke <client-id>";

#[tokio::main]
async fn main() -> ExitCode {
    purse::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("purse-admin: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<(), String> {
    let env = Env::from_process();
    let aws = purse::config::load_aws().await;
    let table = || Table::from_env(&env, &aws).map_err(|e| e.to_string());
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["grant-admin", email] => {
            let table = table()?;
            let email = Email::parse(email).map_err(|e| e.to_string())?;
            let creds = purse::store::users::credentials_by_email(&table, &email)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no account with e-mail {email}; sign up first"))?;
            purse::store::users::grant_role(&table, &creds.user.id, Role::Admin).await.map_err(|e| e.to_string())?;
            println!(
                "{} ({}) is now an admin; the role is in tokens issued from the next sign-in or refresh",
                email, creds.user.id
            );
            Ok(())
        }
        ["audit"] => {
            let report = purse::ledger::audit::run(&table()?).await.map_err(|e| e.to_string())?;
            println!(
                "accounts: {}  transactions: {}  sum of balances: {}",
                report.accounts, report.transactions, report.total
            );
            if report.is_clean() {
                println!("ledger is balanced: every balance equals its movements, and all balances sum to zero");
                Ok(())
            } else {
                for d in &report.differences {
                    println!("DIFFERENCE: {d}");
                }
                Err(format!("{} difference(s) found", report.differences.len()))
            }
        }
        ["reconcile", rest @ ..] => {
            let min_age: i64 =
                rest.first().map(|s| s.parse().map_err(|_| USAGE.to_owned())).transpose()?.unwrap_or(300);
            let revio = purse::revio::RevioClient::from_env(&env, &aws).await.map_err(|e| e.to_string())?;
            let config = purse::service::settlement::ReconcileConfig {
                min_age_seconds: min_age,
                abandon_after_seconds: 900,
                expire_after_seconds: 86_400,
                budget: std::time::Duration::from_secs(300),
            };
            let report = purse::service::settlement::reconcile_pending_deposits(&table()?, &revio, config)
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            Ok(())
        }
        ["cases", rest @ ..] if rest.len() <= 1 => {
            let limit = cases::parse_list_limit(rest.first().copied()).map_err(|e| e.message)?;
            let items = cases::list_open(&table()?, limit).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "items": items })).unwrap_or_default());
            Ok(())
        }
        ["resolve-case", id, action, reason @ ..] if !reason.is_empty() => {
            let id = cases::parse_case_id(id).map_err(|e| e.message)?;
            let action = match *action {
                "credit" => cases::ResolveAction::Credit,
                "refund" => cases::ResolveAction::Refund,
                _ => return Err(USAGE.to_owned()),
            };
            let input = cases::ResolveInput { action, reason: reason.join(" ") };
            let by = operator();
            let table = table()?;
            let revio = purse::revio::RevioClient::from_env(&env, &aws).await.map_err(|e| e.to_string())?;
            match cases::resolve(&table, &revio, id, &input, &by).await {
                Ok(case) => {
                    println!("{}", serde_json::to_string_pretty(&case).unwrap_or_default());
                    Ok(())
                }
                Err(cases::ResolveError::AlreadyResolved) => {
                    // Show how, by whom and why, so a repeat is easy to tell from a clash.
                    if let Ok(Some(case)) = cases::get(&table, id).await {
                        println!("{}", serde_json::to_string_pretty(&case).unwrap_or_default());
                    }
                    Err(format!("case {id} is already resolved; nothing changed"))
                }
                Err(e) => Err(format!("case {id} not resolved: {e}")),
            }
        }
        ["jwt-rotate", secret_id] => rotate(&aws, secret_id).await,
        ["key-add", secret_id] => {
            let mut keys = load_key_set(&aws, secret_id).await?;
            let millis =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            let kid = format!("k{millis}");
            keys.add_random(&kid)?;
            store_key_set(&aws, secret_id, &keys).await?;
            println!(
                "secret {secret_id}: key {kid} published (verifies, does not sign; active is still {}). \
                 Recycle every function that loads this set (runbook 6.3), then: key-activate {secret_id} {kid}",
                keys.active().0
            );
            Ok(())
        }
        ["key-activate", secret_id, kid] => {
            let mut keys = load_key_set(&aws, secret_id).await?;
            keys.activate(kid)?;
            store_key_set(&aws, secret_id, &keys).await?;
            println!(
                "secret {secret_id}: key {kid} signs from each function's next cold start; recycle them (runbook 6.3). \
                 Keys kept for verifying: {}. Retire the old ones once what they signed has expired: key-retire {secret_id}",
                keys.kids().join(", ")
            );
            Ok(())
        }
        ["key-retire", secret_id] => {
            let mut keys = load_key_set(&aws, secret_id).await?;
            let removed = keys.retire_inactive();
            store_key_set(&aws, secret_id, &keys).await?;
            println!(
                "secret {secret_id}: removed {}; only {} remains",
                if removed.is_empty() { "nothing".to_owned() } else { removed.join(", ") },
                keys.active().0
            );
            Ok(())
        }
        ["kyc-reviews", rest @ ..] if rest.len() <= 1 => {
            let limit: i32 = rest.first().map(|l| l.parse().map_err(|_| USAGE.to_owned())).transpose()?.unwrap_or(100);
            let items =
                purse::service::kyc::reviews(&table()?, limit.clamp(1, 1000)).await.map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "reviews": items })).unwrap_or_default());
            Ok(())
        }
        ["kyc-resolve", id, decision, admin, reason @ ..] if !reason.is_empty() => {
            let table = table()?;
            let email = Email::parse(admin).map_err(|e| e.to_string())?;
            let creds = purse::store::users::credentials_by_email(&table, &email)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no account with e-mail {email}"))?;
            if !creds.user.roles.contains(&Role::Admin) {
                return Err(format!("{email} is not an admin (purse-admin grant-admin {email})"));
            }
            let relay = purse::service::referrals::RewardsRelay::from_env_optional(&env, &aws);
            let input =
                purse::service::kyc::ResolveInput { decision: (*decision).to_owned(), reason: reason.join(" ") };
            let view = purse::service::kyc::resolve(&table, relay.as_ref(), &creds.user.id, id, input)
                .await
                .map_err(|e| format!("{}: {}", e.code, e.message))?;
            println!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
            Ok(())
        }
        ["pay-reward", referee] => {
            let referee = purse::domain::ids::UserId::parse(referee).map_err(|_| "not a user id".to_owned())?;
            let rules_env = env
                .clone()
                .with(
                    "REFERRAL_REWARD_AMOUNT",
                    env.optional("REFERRAL_REWARD_AMOUNT").unwrap_or_else(|| "50.00".into()),
                )
                .with("REFERRAL_MAX_REWARDS", env.optional("REFERRAL_MAX_REWARDS").unwrap_or_else(|| "25".into()));
            let rules = purse::service::referrals::RewardRules::from_env(&rules_env).map_err(|e| e.to_string())?;
            let outcome =
                purse::service::referrals::pay_reward(&table()?, &rules, &referee).await.map_err(|e| e.to_string())?;
            println!("{outcome:?}");
            Ok(())
        }
        ["dlq", rest @ ..] => {
            let command = dlq::Command::parse(rest)?;
            dlq::run(&aws, env.optional("PURSE_TABLE"), command).await
        }
        [command, ..] if command.starts_with("service-") => {
            let parsed: Vec<&str> = args.iter().map(String::as_str).collect();
            let command = services::Command::parse(&parsed)?;
            services::run(&table()?, command, &operator()).await
        }
        ["new-pii-keys"] => {
            println!("{}", purse::pii::PiiKeys::random_json("k1"));
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// Who runs the command, as recorded: `operator:<$USER>`, or `operator:cli`.
fn operator() -> String {
    let user = std::env::var("USER").ok().filter(|u| !u.trim().is_empty());
    format!("operator:{}", user.as_deref().unwrap_or("cli"))
}

/// Adds a fresh key, makes it active, and keeps only the previous active key beside it (still
/// verifying tokens it signed until they expire).
async fn rotate(aws: &aws_config::SdkConfig, secret_id: &str) -> Result<(), String> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let current = client.get_secret_value().secret_id(secret_id).send().await.ok().and_then(|o| o.secret_string);
    let kid = format!("k{}", chrono_like_now());
    let fresh = purse::auth::tokens::SigningKeys::random(&kid);
    let doc: serde_json::Value = serde_json::from_str(&fresh.to_json()).map_err(|e| e.to_string())?;
    let mut keys = doc["keys"].as_array().cloned().unwrap_or_default();
    if let Some(text) = current {
        if let Ok(old) = serde_json::from_str::<serde_json::Value>(&text) {
            let active = old["active_kid"].as_str().unwrap_or_default().to_owned();
            keys.extend(old["keys"].as_array().into_iter().flatten().filter(|k| k["kid"] == active.as_str()).cloned());
        }
    }
    let next = serde_json::json!({"active_kid": kid, "keys": keys}).to_string();
    client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(next)
        .send()
        .await
        .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())?;
    println!("secret {secret_id}: new active key {kid}; functions pick it up at their next cold start");
    Ok(())
}

/// The key set stored in `secret_id` (the JWT keys' or the cursor keys' document).
async fn load_key_set(
    aws: &aws_config::SdkConfig,
    secret_id: &str,
) -> Result<purse::auth::tokens::SigningKeys, String> {
    let client = aws_sdk_secretsmanager::Client::new(aws);
    let text = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())?
        .secret_string
        .ok_or_else(|| format!("secret {secret_id} has no value yet: jwt-rotate writes the first key"))?;
    purse::auth::tokens::SigningKeys::from_json(&text).map_err(|e| format!("secret {secret_id}: {e}"))
}

async fn store_key_set(
    aws: &aws_config::SdkConfig,
    secret_id: &str,
    keys: &purse::auth::tokens::SigningKeys,
) -> Result<(), String> {
    aws_sdk_secretsmanager::Client::new(aws)
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(keys.to_json())
        .send()
        .await
        .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())?;
    Ok(())
}

fn chrono_like_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
