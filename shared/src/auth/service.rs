//! Service credentials: how a game service — a program, not a person — authenticates.
//!
//! Game services charge game fees and pay rewards (`POST /v1/games/fees`,
//! `POST /v1/games/rewards`). Each holds a credential an operator created with
//! `purse-admin service-create`: a client id (`svc_…`) and a secret (`sk_` and 32 random bytes,
//! base64url), sent with every request as HTTP Basic authentication (RFC 7617):
//!
//! ```text
//! Authorization: Basic base64("<client id>:<secret>")
//! ```
//!
//! Only the SHA-256 of the secret is stored ([`crate::store::services`]). A password needs a slow
//! KDF (argon2id) because people choose guessable ones; this secret is 256 random bits, so
//! guessing it from its hash is as hopeless as guessing it outright, and one fast hash protects it
//! as well as any KDF would while keeping verification at microseconds per request. The hashes
//! are compared in constant time ([`subtle`]). A credential carries scopes ([`SCOPES`]); each
//! service route requires one, checked by the runner before the handler runs
//! ([`crate::runtime::Access::Service`]). A revoked credential stops working at once: every
//! request reads its credential (one consistent read), nothing is cached.
//!
//! A credential belongs to a service **name** (`chess-arena`). The name, not the client id, is
//! what a game's movements are keyed by ([`crate::service::games`]), so a rotation (a second
//! credential under the same name, then the first revoked) keeps retries exactly-once.

use crate::domain::ids::ServiceId;
use crate::error::ApiError;
use crate::runtime::InitContext;
use crate::store::Table;
use base64::Engine;
use lambda_http::Request;
use sha2::{Digest, Sha256};
use std::fmt;

/// The scope of `POST /v1/games/fees`.
pub const SCOPE_GAME_FEES: &str = "games:fees";
/// The scope of `POST /v1/games/rewards`.
pub const SCOPE_GAME_REWARDS: &str = "games:rewards";
/// Every scope a credential may hold.
pub const SCOPES: [&str; 2] = [SCOPE_GAME_FEES, SCOPE_GAME_REWARDS];

/// The prefix of every secret (so a leaked one is recognisable, e.g. by secret scanners).
pub const SECRET_PREFIX: &str = "sk_";

/// A game service's name: 2 to 64 characters of `a-z`, `0-9` and `-`, starting with a letter or
/// digit. It names the service across credential rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName(String);

impl ServiceName {
    /// Checks a name's shape.
    ///
    /// # Errors
    /// A message saying what a name must be.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = (2..=64).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !raw.starts_with('-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("{raw:?} is not a service name: 2 to 64 of a-z, 0-9 and '-', not starting with '-'"))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A credential's scopes: a non-empty set of [`SCOPES`], sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Parses a comma-separated list such as `games:fees,games:rewards`.
    ///
    /// # Errors
    /// A message naming an unknown scope, or saying none was given.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut scopes = Vec::new();
        for scope in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !SCOPES.contains(&scope) {
                return Err(format!("unknown scope {scope:?}; the scopes are {}", SCOPES.join(", ")));
            }
            scopes.push(scope.to_owned());
        }
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(format!("give at least one scope: {}", SCOPES.join(", ")));
        }
        Ok(Self(scopes))
    }

    /// The scopes, sorted.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A credential's secret, shown once at creation and never stored. Never printed by `Debug`.
pub struct ServiceSecret(String);

impl fmt::Debug for ServiceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceSecret(<redacted>)")
    }
}

impl ServiceSecret {
    /// `sk_` and 32 bytes from the operating system's CSPRNG, base64url without padding.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The secret itself, to show the operator once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored: [`hash_secret`] of it.
    pub fn hash(&self) -> String {
        hash_secret(&self.0)
    }
}

/// SHA-256 of a secret, lower-case hex: the only form a secret is kept in.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` hashes to `stored_hash`, compared in constant time.
pub fn secret_matches(presented: &str, stored_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    let presented = hash_secret(presented);
    presented.len() == stored_hash.len() && bool::from(presented.as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// The `Authorization` header value of a credential: `Basic base64(<client id>:<secret>)`.
pub fn authorization_header(client_id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}")))
}

/// Why a request's `Authorization` header is not a service credential. All answer 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("no Authorization header")]
    Missing,
    #[error("a user's access token (Bearer) on a service route")]
    Bearer,
    #[error("not the Basic scheme, or not base64 of <client id>:<secret>")]
    Malformed,
    #[error("unknown client id")]
    UnknownClient,
    #[error("the secret does not match")]
    WrongSecret,
    #[error("the credential is revoked")]
    Revoked,
}

/// The client id and secret of an `Authorization: Basic …` header value.
///
/// # Errors
/// [`CredentialError::Bearer`] for a bearer token, [`CredentialError::Malformed`] for anything
/// else that is not Basic credentials of a `svc_…` client id.
pub fn parse_basic(header: &str) -> Result<(ServiceId, String), CredentialError> {
    let (scheme, rest) = header.trim().split_once(' ').ok_or(CredentialError::Malformed)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Err(CredentialError::Bearer);
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(CredentialError::Malformed);
    }
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(rest.trim()).map_err(|_| CredentialError::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| CredentialError::Malformed)?;
    let (id, secret) = text.split_once(':').ok_or(CredentialError::Malformed)?;
    let id = ServiceId::parse(id).map_err(|_| CredentialError::Malformed)?;
    if secret.is_empty() {
        return Err(CredentialError::Malformed);
    }
    Ok((id, secret.to_owned()))
}

/// The verified caller of a service route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCaller {
    /// The credential used.
    pub service_id: ServiceId,
    /// The service it belongs to (stable across rotations).
    pub name: String,
    /// The credential's scopes.
    pub scopes: Vec<String>,
}

/// Verifies service credentials for service routes.
#[derive(Debug, Clone)]
pub struct ServiceGuard {
    table: Table,
}

impl ServiceGuard {
    /// A guard reading credentials from `table`.
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    /// The guard over the function's table (`PURSE_TABLE`).
    ///
    /// # Errors
    /// [`crate::config::InitError::MissingEnv`] when `PURSE_TABLE` is not set.
    pub fn from_env(ctx: &InitContext) -> Result<Self, crate::config::InitError> {
        Ok(Self::new(Table::from_env(&ctx.env, &ctx.aws)?))
    }

    /// The service calling `req`, which must hold `scope`.
    ///
    /// # Errors
    /// 401 `unauthorized` for a missing, malformed, unknown, wrong or revoked credential (the
    /// reason is logged, not returned, beyond telling a user's token from no credential);
    /// 403 `insufficient_scope` when the credential lacks `scope`; 503 when the credential cannot
    /// be read.
    pub async fn authenticate(&self, req: &Request, scope: &str) -> Result<ServiceCaller, ApiError> {
        let refused = |reason: CredentialError| {
            tracing::info!(reason = %reason, "service credential refused");
            let message = match reason {
                CredentialError::Missing => {
                    "send the service credential: Authorization: Basic base64(<client id>:<secret>)"
                }
                CredentialError::Bearer => {
                    "this route is for game services: send Authorization: Basic base64(<client id>:<secret>), not a user's access token"
                }
                _ => "the service credential is not valid",
            };
            ApiError::unauthorized(message)
        };
        let header = crate::http::header(req, "authorization").ok_or_else(|| refused(CredentialError::Missing))?;
        let (id, secret) = parse_basic(header).map_err(refused)?;
        let Some(credential) = crate::store::services::get_for_request(&self.table, &id).await? else {
            // Spend the hashing time anyway: an unknown id answers like a wrong secret.
            let _ = secret_matches(&secret, "");
            return Err(refused(CredentialError::UnknownClient));
        };
        if !secret_matches(&secret, &credential.secret_sha256) {
            return Err(refused(CredentialError::WrongSecret));
        }
        if !credential.is_active() {
            return Err(refused(CredentialError::Revoked));
        }
        if !credential.scopes.iter().any(|s| s == scope) {
            tracing::info!(service_id = %id, scope, "service credential lacks the route's scope");
            return Err(ApiError::new(
                http::StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this credential does not hold the scope {scope}"),
            ));
        }
        Ok(ServiceCaller { service_id: credential.id, name: credential.name, scopes: credential.scopes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_256_random_bits_matched_only_by_its_own_hash() {
        let secret = ServiceSecret::generate();
        assert!(secret.expose().starts_with(SECRET_PREFIX));
        assert_eq!(secret.expose().len(), SECRET_PREFIX.len() + 43);
        assert_ne!(secret.expose(), ServiceSecret::generate().expose());
        let stored = secret.hash();
        assert_eq!(stored.len(), 64);
        assert!(secret_matches(secret.expose(), &stored));
        assert!(!secret_matches(&format!("{}x", secret.expose()), &stored));
        assert!(!secret_matches(secret.expose(), ""));
        assert!(!format!("{secret:?}").contains(secret.expose()));
    }

    #[test]
    fn basic_credentials_parse_and_everything_else_is_refused() {
        let id = ServiceId::generate();
        let header = authorization_header(id.as_str(), "sk_abc");
        assert_eq!(parse_basic(&header).unwrap(), (id.clone(), "sk_abc".to_owned()));
        assert_eq!(parse_basic(&header.replacen("Basic", "basic", 1)).unwrap().0, id);
        assert_eq!(parse_basic("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"), Err(CredentialError::Bearer));
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for bad in [
            "Basic".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {}", b64("no-colon")),
            format!("Basic {}", b64("usr_01J00000000000000000000000:sk_abc")),
            format!("Basic {}", b64(&format!("{id}:"))),
            format!("Digest {}", b64(&format!("{id}:sk_abc"))),
            format!("Service {id}.sk_abc"),
        ] {
            assert_eq!(parse_basic(&bad), Err(CredentialError::Malformed), "{bad}");
        }
    }

    #[test]
    fn names_and_scopes_are_checked() {
        assert!(ServiceName::parse("chess-arena").is_ok());
        assert!(ServiceName::parse("2048").is_ok());
        for bad in ["", "a", "Chess", "-chess", "chess arena", "chess:arena", &"x".repeat(65)] {
            assert!(ServiceName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Scopes::parse("games:rewards, games:fees,games:fees").unwrap().as_slice(),
            ["games:fees", "games:rewards"]
        );
        assert!(Scopes::parse("").is_err());
        assert!(Scopes::parse("games:fees,admin").is_err());
    }
}
