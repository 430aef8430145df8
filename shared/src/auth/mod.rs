//! Authentication: password hashing, access tokens, refresh tokens, and the request guard.
//!
//! Authorization is enforced in one place: [`crate::runtime::Loaded::call`] runs [`Guard`] for
//! every route whose [`crate::runtime::Access`] is not public, before the handler sees the
//! request. Roles come only from the verified token.

pub mod guard;
pub mod password;
pub mod tokens;

pub use guard::{Caller, Guard};
