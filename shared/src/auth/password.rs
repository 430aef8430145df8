//! Password hashing with argon2id at (or above) OWASP's minimum: 19 MiB, t=2, p=1.

use crate::domain::user::Password;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB (19 MiB).
const MEMORY_KIB: u32 = 19 * 1024;
/// Iterations.
const TIME_COST: u32 = 2;
/// Lanes.
const PARALLELISM: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, TIME_COST, PARALLELISM, None).unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
///
/// # Errors
/// Only if the hashing library fails, which is an internal error.
pub fn hash(password: &Password) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher().hash_password(password.expose().as_bytes(), &salt)?.to_string())
}

/// Checks a password against a stored PHC hash. Parameters are read from the hash, so older
/// hashes keep working after the cost is raised.
pub fn verify(password: &Password, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher().verify_password(password.expose().as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real verification, for sign-ins with an unknown e-mail, so that
/// response time does not reveal whether an account exists.
pub fn verify_dummy(password: &Password) {
    use std::sync::OnceLock;
    static DUMMY: OnceLock<String> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash(&Password::for_login("dummy-password-for-timing")).unwrap_or_default());
    let _ = verify(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_own_password() {
        let h = hash(&Password::for_login("correct horse battery")).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&Password::for_login("correct horse battery"), &h));
        assert!(!verify(&Password::for_login("correct horse battery!"), &h));
    }

    #[test]
    fn a_garbage_hash_never_verifies() {
        assert!(!verify(&Password::for_login("x"), "not-a-hash"));
    }
}
