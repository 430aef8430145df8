//! The request guard: who is calling, from the `Authorization: Bearer` access token.

use super::tokens::AccessTokens;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::user::Role;
use crate::error::ApiError;
use crate::runtime::InitContext;
use lambda_http::Request;

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub roles: Vec<Role>,
    pub session_id: SessionId,
    /// The e-mail address the token carries (tokens issued before it was added carry none).
    pub email: Option<String>,
}

impl Caller {
    /// Whether the token grants the admin role.
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// Verifies access tokens for protected routes.
#[derive(Debug, Clone)]
pub struct Guard {
    tokens: AccessTokens,
}

impl Guard {
    /// A guard over these token settings.
    pub fn new(tokens: AccessTokens) -> Self {
        Self { tokens }
    }

    /// Loads the token keys named by the function's environment.
    ///
    /// # Errors
    /// See [`AccessTokens::from_env`].
    pub async fn from_env(ctx: &InitContext) -> Result<Self, crate::config::InitError> {
        Ok(Self::new(AccessTokens::from_env(&ctx.env, &ctx.aws).await?))
    }

    /// The caller of `req`.
    ///
    /// # Errors
    /// 401 `unauthorized` for a missing, malformed, expired, or otherwise invalid token; the
    /// reason is logged, not returned.
    pub fn authenticate(&self, req: &Request) -> Result<Caller, ApiError> {
        let header = crate::http::header(req, "authorization")
            .ok_or_else(|| ApiError::unauthorized("send an access token: Authorization: Bearer <token>"))?;
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must use the Bearer scheme"))?;
        let claims = self.tokens.verify(token).map_err(|e| {
            tracing::info!(reason = %e, "access token refused");
            if e == super::tokens::TokenError::Expired {
                ApiError::new(
                    http::StatusCode::UNAUTHORIZED,
                    "token_expired",
                    "the access token has expired; refresh it",
                )
            } else {
                ApiError::unauthorized("the access token is not valid")
            }
        })?;
        let user_id =
            UserId::parse(&claims.sub).map_err(|_| ApiError::unauthorized("the access token is not valid"))?;
        let session_id =
            SessionId::parse(&claims.sid).map_err(|_| ApiError::unauthorized("the access token is not valid"))?;
        Ok(Caller { user_id, roles: claims.roles, session_id, email: claims.email })
    }
}
