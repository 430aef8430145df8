//! Reading and writing DynamoDB attribute maps without boilerplate.

use super::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use rust_decimal::Decimal;
use std::collections::HashMap;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute (DynamoDB numbers are exact decimals).
pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The `pk`/`sk` key of an item.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// Typed getters that report which attribute is missing or mistyped.
pub trait ItemExt {
    /// A required string attribute.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when absent or not a string.
    fn str(&self, name: &str) -> Result<&str, StoreError>;
    /// An optional string attribute.
    fn opt_str(&self, name: &str) -> Option<&str>;
    /// A required number attribute as an exact decimal.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when absent or not a number.
    fn decimal(&self, name: &str) -> Result<Decimal, StoreError>;
    /// A required integer attribute.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when absent or not an integer.
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    /// An optional integer attribute.
    fn opt_int(&self, name: &str) -> Option<i64>;
    /// A boolean attribute, `false` when absent.
    fn flag(&self, name: &str) -> bool;
    /// A string-list attribute (`L` of `S`), empty when absent.
    fn str_list(&self, name: &str) -> Vec<String>;
}

impl ItemExt for Item {
    fn str(&self, name: &str) -> Result<&str, StoreError> {
        self.opt_str(name).ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing or not a string")))
    }

    fn opt_str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(AttributeValue::S(v)) => Some(v.as_str()),
            _ => None,
        }
    }

    fn decimal(&self, name: &str) -> Result<Decimal, StoreError> {
        match self.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse::<Decimal>()
                .or_else(|_| Decimal::from_scientific(v))
                .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not a decimal"))),
            _ => Err(StoreError::Corrupt(format!("attribute {name} missing or not a number"))),
        }
    }

    fn int(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_int(name).ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing or not an integer")))
    }

    fn opt_int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(AttributeValue::N(v)) => v.parse().ok(),
            _ => None,
        }
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(AttributeValue::Bool(true)))
    }

    fn str_list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(AttributeValue::L(items)) => {
                items.iter().filter_map(|v| if let AttributeValue::S(s) = v { Some(s.clone()) } else { None }).collect()
            }
            _ => Vec::new(),
        }
    }
}
