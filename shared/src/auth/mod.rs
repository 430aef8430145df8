//! Authentication: password hashing, access tokens, refresh tokens, and the request guard.
//!
//! Authorization is enforced in one place: [`crate::runtime::Loaded::call`] runs [`Guard`] for
//! every route whose [`crate::runtime::Access`] is not public, before the handler sees the
//! request. Roles come only from the verified token. Game services (programs, not people)
//! authenticate with a client id and secret instead ([`service`]), on their own routes only.

pub mod guard;
pub mod password;
pub mod service;
pub mod tokens;

pub use guard::{Caller, Guard};
pub use service::{ServiceCaller, ServiceGuard};
