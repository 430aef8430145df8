//! Sign-up, sign-in, token refresh, sign-out, profile and wallet.

use crate::auth::password;
use crate::auth::tokens::{hash_refresh_token, AccessTokens, NewRefreshToken};
use crate::domain::ids::{SessionId, UserId};
use crate::domain::user::{Email, FieldError, Password, ReferralCode};
use crate::error::ApiError;
use crate::ledger::{Account, AccountId};
use crate::store::sessions::{self, RefreshError};
use crate::store::users::{self, CreateUserError, LoginAttempt, LoginThrottle, NewUser, User};
use crate::store::{StoreError, Table};
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// `POST /v1/auth/register` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub referral_code: Option<String>,
}

/// Why sign-up failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("no user has this referral code")]
    UnknownReferralCode,
    /// Storage failed; [`ApiError::from`] decides the answer (503 when it is transient).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Field(FieldError::InvalidEmail) => ApiError::bad_request("invalid_email", e.to_string()),
            RegisterError::Field(FieldError::WeakPassword(_)) => ApiError::bad_request("weak_password", e.to_string()),
            RegisterError::Field(FieldError::InvalidReferralCode) => {
                ApiError::bad_request("invalid_referral_code", e.to_string())
            }
            RegisterError::EmailTaken => ApiError::conflict("email_taken", e.to_string()),
            RegisterError::UnknownReferralCode => ApiError::unprocessable("unknown_referral_code", e.to_string()),
            RegisterError::Store(e) => ApiError::from(e),
            RegisterError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// Attempts at a sign-up transaction (referral-code collisions and write conflicts retry).
const CREATE_ATTEMPTS: usize = 4;

/// Creates an account with its wallet and, if a referral code was given, a PENDING referral.
///
/// # Errors
/// See [`RegisterError`].
pub async fn register(table: &Table, input: RegisterInput) -> Result<User, RegisterError> {
    let email = Email::parse(&input.email)?;
    let password = Password::parse_new(&input.password, &email)?;
    let referred_by = match input.referral_code.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(text) => {
            let code = ReferralCode::parse(text)?;
            let referrer =
                users::user_id_by_referral_code(table, &code).await?.ok_or(RegisterError::UnknownReferralCode)?;
            Some((referrer, code))
        }
    };
    let password_hash = tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| RegisterError::Internal(e.to_string()))?
        .map_err(|e| RegisterError::Internal(e.to_string()))?;

    let id = UserId::generate();
    let mut last = RegisterError::Internal("no attempt made".into());
    for _ in 0..CREATE_ATTEMPTS {
        let new = NewUser {
            id: id.clone(),
            email: email.clone(),
            password_hash: password_hash.clone(),
            referral_code: ReferralCode::generate(),
            referred_by: referred_by.clone(),
        };
        match users::create(table, &new).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, referred = user.referred_by.is_some(), "user registered");
                return Ok(user);
            }
            Err(CreateUserError::EmailTaken) => return Err(RegisterError::EmailTaken),
            Err(CreateUserError::ReferrerMissing) => return Err(RegisterError::UnknownReferralCode),
            Err(CreateUserError::ReferralCodeTaken) => {
                last = RegisterError::Internal("every generated referral code collided".into());
            }
            // Concurrent writes kept racing ours: transient, the client may retry.
            Err(CreateUserError::Conflict) => {
                last = RegisterError::Store(StoreError::Unavailable("sign-up kept conflicting".into()));
            }
            Err(CreateUserError::Store(e)) => return Err(RegisterError::Store(e)),
        }
    }
    Err(last)
}

/// `POST /v1/auth/login` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

/// Access and refresh token pair.
#[derive(Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

/// Why sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong password or unknown e-mail: answered alike.
    #[error("email or password is incorrect")]
    InvalidCredentials,
    /// Too many failures for this e-mail.
    #[error("too many failed sign-ins; try again later")]
    Locked { retry_after: i64 },
    /// Storage failed; [`ApiError::from`] decides the answer (503 when it is transient). The
    /// password was not checked, or the session was not started.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", e.to_string())
            }
            LoginError::Locked { retry_after } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", e.to_string())
                    .with_retry_after(retry_after.max(1).unsigned_abs())
            }
            LoginError::Store(e) => ApiError::from(e),
            LoginError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// Checks the password and starts a session.
///
/// Every attempt first claims a slot of the e-mail's allowance
/// ([`users::claim_login_attempt`], [`LoginThrottle::SIGN_IN`]) in one conditional write, and
/// only then reads the account and hashes: concurrent guesses cannot slip past the limit. An
/// unknown e-mail is counted and hashed exactly like a wrong password, so neither the answer,
/// the lock nor the time taken tells whether an account exists. A successful sign-in gives the
/// allowance back.
///
/// # Errors
/// See [`LoginError`].
pub async fn login(table: &Table, tokens: &AccessTokens, input: LoginInput) -> Result<TokenPair, LoginError> {
    let password = Password::for_login(&input.password);
    let Ok(email) = Email::parse(&input.email) else {
        // No account can have this address, so there is nothing to protect or count.
        tokio::task::spawn_blocking(move || password::verify_dummy(&password)).await.ok();
        return Err(LoginError::InvalidCredentials);
    };
    if let LoginAttempt::Locked { retry_after } =
        users::claim_login_attempt(table, &email, LoginThrottle::SIGN_IN).await?
    {
        tracing::info!(retry_after, "sign-in throttled");
        return Err(LoginError::Locked { retry_after });
    }
    let credentials = users::credentials_by_email(table, &email).await?;
    let (user, ok) = tokio::task::spawn_blocking(move || match credentials {
        Some(c) => {
            let ok = password::verify(&password, &c.password_hash);
            (Some(c.user), ok)
        }
        None => {
            password::verify_dummy(&password);
            (None, false)
        }
    })
    .await
    .map_err(|e| LoginError::Internal(e.to_string()))?;
    let user = match (user, ok) {
        (Some(user), true) => user,
        _ => {
            tracing::info!("sign-in refused");
            return Err(LoginError::InvalidCredentials);
        }
    };
    // The password was right; failing to give the allowance back only leaves the e-mail with
    // fewer attempts until the window expires, which is safe. Do not refuse the sign-in for it.
    if let Err(e) = users::clear_login_attempts(table, &email).await {
        tracing::warn!(user_id = %user.id, error = %e, "could not clear the sign-in throttle");
    }
    let session = SessionId::generate();
    let refresh = NewRefreshToken::generate();
    sessions::start(table, &user.id, &session, &refresh.hash).await?;
    let access = tokens
        .issue(&user.id, user.email.as_str(), &user.roles, &session)
        .map_err(|e| LoginError::Internal(e.to_string()))?;
    tracing::info!(user_id = %user.id, session_id = %session, "signed in");
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: refresh.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
    })
}

/// `POST /v1/auth/refresh` and `POST /v1/auth/logout` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshInput {
    pub refresh_token: String,
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Invalid => ApiError::new(StatusCode::UNAUTHORIZED, "invalid_refresh_token", e.to_string()),
            RefreshError::Reused => ApiError::new(StatusCode::UNAUTHORIZED, "refresh_token_reused", e.to_string()),
            RefreshError::Revoked => ApiError::new(StatusCode::UNAUTHORIZED, "session_revoked", e.to_string()),
            RefreshError::Store(e) => ApiError::from(e),
        }
    }
}

/// Rotates a refresh token: the old one is spent, a new pair is issued.
///
/// # Errors
/// See [`RefreshError`]; the user's current roles are re-read so a revoked role takes effect.
pub async fn refresh(table: &Table, tokens: &AccessTokens, input: RefreshInput) -> Result<TokenPair, RefreshError> {
    let old_hash = hash_refresh_token(input.refresh_token.trim());
    let next = NewRefreshToken::generate();
    let rotated = sessions::rotate(table, &old_hash, &next.hash).await?;
    let user = users::get_user(table, &rotated.user_id).await?.ok_or(RefreshError::Invalid)?;
    let access = tokens
        .issue(&user.id, user.email.as_str(), &user.roles, &rotated.session_id)
        .map_err(|e| RefreshError::Store(StoreError::Corrupt(e.to_string())))?;
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: next.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
    })
}

/// Ends the session a refresh token belongs to. Unknown tokens are ignored (nothing to end).
///
/// # Errors
/// [`StoreError`] on storage failure.
pub async fn logout(table: &Table, input: RefreshInput) -> Result<(), StoreError> {
    if let Some(session) = sessions::session_of(table, &hash_refresh_token(input.refresh_token.trim())).await? {
        sessions::revoke(table, &session).await?;
        tracing::info!(session_id = %session, "signed out");
    }
    Ok(())
}

/// `GET /v1/me` answer.
#[derive(Serialize)]
pub struct Profile {
    pub id: String,
    pub email: String,
    pub roles: Vec<crate::domain::user::Role>,
    pub kyc_status: crate::domain::user::KycStatus,
    pub referral_code: String,
    pub created_at: String,
}

/// The caller's profile.
///
/// # Errors
/// 404 when the account no longer exists.
pub async fn profile(table: &Table, user: &UserId) -> Result<Profile, ApiError> {
    let user = users::get_user(table, user).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Profile::from(user))
}

/// `GET /v1/wallet` answer: exact decimals as strings.
#[derive(Serialize)]
pub struct WalletView {
    pub account_id: String,
    pub currency: crate::money::Currency,
    pub balance: String,
    pub available: String,
    pub held: String,
    pub updated_at: String,
}

impl From<Account> for WalletView {
    fn from(a: Account) -> Self {
        use crate::money::format;
        Self {
            account_id: a.id.to_string(),
            currency: a.currency,
            balance: format(a.balance, a.currency),
            available: format(a.available, a.currency),
            held: format(a.held, a.currency),
            updated_at: a.updated_at,
        }
    }
}

/// The caller's wallet.
///
/// # Errors
/// 404 when the wallet does not exist.
pub async fn wallet(table: &Table, user: &UserId) -> Result<WalletView, ApiError> {
    crate::ledger::store::get_account(table, &AccountId::wallet(user))
        .await?
        .map(WalletView::from)
        .ok_or_else(|| ApiError::not_found("no wallet for this user"))
}

impl From<User> for Profile {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.to_string(),
            roles: user.roles,
            kyc_status: user.kyc_status,
            referral_code: user.referral_code.as_str().to_owned(),
            created_at: user.created_at,
        }
    }
}
