//! The domain: values that cannot be invalid once built, and the rules of the product.
//!
//! Nothing here knows about DynamoDB, SQS or HTTP.

pub mod bank;
pub mod ids;
pub mod kyc;
pub mod user;
