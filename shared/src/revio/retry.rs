//! Revio's calls use the one retry policy of the crate ([`crate::retry`]).

pub use crate::retry::RetryPolicy;
