//! Revio's purchase, as sent and as read back.
//!
//! Reading is lenient on purpose: Revio adds fields over time and its JSON carries much we do not
//! use, so unknown fields are ignored and only what Purse acts on (`id`, `status`,
//! `purchase.total`, `purchase.currency`, `reference`, `checkout_url`) is required or parsed.
//! Amounts are integers in minor units (cents) and never pass through a float.

use super::{json_error_kind, RevioError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// What to ask Revio for: one product, paid by one person.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPurchase {
    /// The payer's e-mail, shown on Revio's checkout page (`client.email`).
    pub email: String,
    /// The price in minor units (cents), strictly positive.
    pub amount_minor: i64,
    /// ISO 4217 code such as `ZAR` (`purchase.currency`).
    pub currency: String,
    /// The product line shown to the payer.
    pub product_name: String,
    /// Our own id for the purchase (Purse's transaction id), echoed back by Revio.
    pub reference: String,
    /// Where the payer's browser goes after paying.
    pub success_redirect: Option<String>,
    /// Where the payer's browser goes after a failed or declined payment.
    pub failure_redirect: Option<String>,
    /// Where Revio POSTs this purchase's webhook.
    pub success_callback: Option<String>,
}

/// The e-mail is personal data: it is not printed.
impl fmt::Debug for NewPurchase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPurchase")
            .field("email", &"<redacted>")
            .field("amount_minor", &self.amount_minor)
            .field("currency", &self.currency)
            .field("product_name", &self.product_name)
            .field("reference", &self.reference)
            .field("success_redirect", &self.success_redirect)
            .field("failure_redirect", &self.failure_redirect)
            .field("success_callback", &self.success_callback)
            .finish()
    }
}

/// The JSON body of `POST /api/v1/purchases/`.
#[derive(Serialize)]
pub(crate) struct CreateBody<'a> {
    brand_id: &'a str,
    client: ClientBody<'a>,
    purchase: PurchaseBody<'a>,
    reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    success_redirect: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_redirect: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    success_callback: Option<&'a str>,
}

#[derive(Serialize)]
struct ClientBody<'a> {
    email: &'a str,
}

#[derive(Serialize)]
struct PurchaseBody<'a> {
    currency: &'a str,
    products: [ProductBody<'a>; 1],
}

#[derive(Serialize)]
struct ProductBody<'a> {
    name: &'a str,
    price: i64,
}

impl<'a> CreateBody<'a> {
    pub(crate) fn new(brand_id: &'a str, p: &'a NewPurchase) -> Self {
        Self {
            brand_id,
            client: ClientBody { email: &p.email },
            purchase: PurchaseBody {
                currency: &p.currency,
                products: [ProductBody { name: &p.product_name, price: p.amount_minor }],
            },
            reference: &p.reference,
            success_redirect: p.success_redirect.as_deref(),
            failure_redirect: p.failure_redirect.as_deref(),
            success_callback: p.success_callback.as_deref(),
        }
    }
}

/// Where a purchase stands, as Revio reports it.
///
/// Only [`PurchaseStatus::Paid`] means the money arrived. [`PurchaseStatus::Error`],
/// [`PurchaseStatus::Cancelled`] and [`PurchaseStatus::Expired`] mean it never will for this
/// purchase. Anything Purse does not recognise is kept verbatim in [`PurchaseStatus::Other`] and
/// must be treated as "not final yet", never as paid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PurchaseStatus {
    /// Created and waiting for the payer (also Revio's `sent`, `viewed`, `pending_execute`,
    /// `pending_charge`: the payment is not decided yet).
    Created,
    /// Paid (also `cleared` and `settled`, the states a paid purchase moves on to).
    Paid,
    /// The payment failed or was declined (`error`, `failed`, `declined`).
    Error,
    /// Cancelled before payment (`cancelled`, `canceled`).
    Cancelled,
    /// The purchase expired unpaid.
    Expired,
    /// Paid, then refunded in full.
    Refunded,
    /// Paid, then taken back by the payer's bank (`chargeback`, `charged_back`).
    Chargeback,
    /// Any other status, verbatim (for example `hold`, `pending_refund`).
    Other(String),
}

impl PurchaseStatus {
    /// Maps Revio's status string (case and surrounding spaces ignored).
    pub fn parse(raw: &str) -> Self {
        match raw.trim().to_ascii_lowercase().as_str() {
            "created" | "sent" | "viewed" | "pending_execute" | "pending_charge" => Self::Created,
            "paid" | "cleared" | "settled" => Self::Paid,
            "error" | "failed" | "declined" => Self::Error,
            "cancelled" | "canceled" => Self::Cancelled,
            "expired" => Self::Expired,
            "refunded" => Self::Refunded,
            "chargeback" | "charged_back" => Self::Chargeback,
            _ => Self::Other(raw.trim().to_owned()),
        }
    }

    /// A stable lower-case name, for logs (`other` statuses as Revio sent them).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Created => "created",
            Self::Paid => "paid",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Refunded => "refunded",
            Self::Chargeback => "chargeback",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for PurchaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A purchase as Revio reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// Revio's id of the purchase.
    pub id: String,
    /// Where it stands.
    pub status: PurchaseStatus,
    /// The total to pay, in minor units (`purchase.total`).
    pub total_minor: i64,
    /// ISO 4217 code, upper case (`purchase.currency`).
    pub currency: String,
    /// Our reference, as sent at creation.
    pub reference: Option<String>,
    /// The hosted checkout page to send the payer to.
    pub checkout_url: Option<String>,
}

#[derive(Deserialize)]
struct Wire {
    id: Option<Value>,
    status: Option<Value>,
    purchase: Option<WireDetails>,
    reference: Option<Value>,
    checkout_url: Option<Value>,
}

#[derive(Deserialize)]
struct WireDetails {
    currency: Option<Value>,
    total: Option<Value>,
    products: Option<Vec<WireProduct>>,
}

#[derive(Deserialize)]
struct WireProduct {
    price: Option<Value>,
    quantity: Option<Value>,
}

/// A non-empty string, or absent.
fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// An integer amount: a JSON integer or a string of digits. Never a float.
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Purchase {
    /// Parses Revio's purchase JSON (an API answer or a webhook body).
    ///
    /// `purchase.total` is used when present; otherwise the sum of `price × quantity` over the
    /// products.
    ///
    /// # Errors
    /// [`RevioError::Malformed`] when the body is not JSON, or `id`, `status`, the currency or an
    /// integer total is missing. The message names the field, never the body.
    pub fn from_json(body: &[u8]) -> Result<Self, RevioError> {
        let wire: Wire = serde_json::from_slice(body)
            .map_err(|e| RevioError::Malformed(format!("purchase is not a JSON object ({})", json_error_kind(&e))))?;
        let missing = |field: &str| RevioError::Malformed(format!("purchase has no valid `{field}`"));
        let id = text(wire.id.as_ref()).ok_or_else(|| missing("id"))?;
        let status = text(wire.status.as_ref()).map(|s| PurchaseStatus::parse(&s)).ok_or_else(|| missing("status"))?;
        let details = wire.purchase.ok_or_else(|| missing("purchase"))?;
        let currency = text(details.currency.as_ref())
            .map(|c| c.to_ascii_uppercase())
            .ok_or_else(|| missing("purchase.currency"))?;
        let total_minor = match &details.total {
            Some(total) => integer(total).ok_or_else(|| missing("purchase.total"))?,
            None => sum_of_products(details.products.as_deref()).ok_or_else(|| missing("purchase.total"))?,
        };
        Ok(Self {
            id,
            status,
            total_minor,
            currency,
            reference: text(wire.reference.as_ref()),
            checkout_url: text(wire.checkout_url.as_ref()),
        })
    }
}

fn sum_of_products(products: Option<&[WireProduct]>) -> Option<i64> {
    let products = products.filter(|p| !p.is_empty())?;
    products.iter().try_fold(0i64, |sum, p| {
        let price = integer(p.price.as_ref()?)?;
        let quantity = match &p.quantity {
            None | Some(Value::Null) => 1,
            Some(q) => integer(q)?,
        };
        sum.checked_add(price.checked_mul(quantity)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Purchase, RevioError> {
        Purchase::from_json(v.to_string().as_bytes())
    }

    /// What the sandbox (and Revio's platform family) answers to a purchase creation.
    fn revio_purchase() -> Value {
        json!({
            "id": "d6c9b0a4-3c1e-4b7a-9d55-0c1f7f2a9e10",
            "type": "purchase",
            "status": "created",
            "brand_id": "sandbox-brand",
            "client": {"email": "payer@example.com", "phone": "", "full_name": ""},
            "purchase": {
                "currency": "ZAR",
                "products": [{"name": "25.00 Purse coins", "price": 2500, "quantity": 1}],
                "total": 2500,
                "language": "en",
                "notes": null
            },
            "reference": "01JTRANSACTION",
            "success_redirect": "https://app.example/ok",
            "failure_redirect": null,
            "success_callback": "https://hooks.example/revio",
            "checkout_url": "https://gate.reviopay.com/p/d6c9b0a4-3c1e-4b7a-9d55-0c1f7f2a9e10/",
            "created_on": 1_700_000_000,
            "updated_on": 1_700_000_000,
            "is_test": true,
            "payment": null,
            "transaction_data": {"attempts": []}
        })
    }

    #[test]
    fn a_revio_purchase_is_read_with_unknown_fields_ignored() {
        let p = parse(revio_purchase()).unwrap();
        assert_eq!(
            p,
            Purchase {
                id: "d6c9b0a4-3c1e-4b7a-9d55-0c1f7f2a9e10".into(),
                status: PurchaseStatus::Created,
                total_minor: 2500,
                currency: "ZAR".into(),
                reference: Some("01JTRANSACTION".into()),
                checkout_url: Some("https://gate.reviopay.com/p/d6c9b0a4-3c1e-4b7a-9d55-0c1f7f2a9e10/".into()),
            }
        );
    }

    #[test]
    fn a_paid_webhook_body_is_read_like_an_api_answer() {
        let mut body = revio_purchase();
        body["status"] = json!("paid");
        body["event_type"] = json!("purchase.paid");
        assert_eq!(parse(body).unwrap().status, PurchaseStatus::Paid);
    }

    #[test]
    fn the_total_is_summed_from_the_products_when_absent() {
        let mut body = revio_purchase();
        body["purchase"] = json!({"currency": "zar", "products": [{"price": 1000, "quantity": 2}, {"price": 5}]});
        let p = parse(body).unwrap();
        assert_eq!(p.total_minor, 2005);
        assert_eq!(p.currency, "ZAR");
    }

    #[test]
    fn a_total_written_as_a_string_of_digits_is_accepted() {
        let mut body = revio_purchase();
        body["purchase"]["total"] = json!("2500");
        assert_eq!(parse(body).unwrap().total_minor, 2500);
    }

    #[test]
    fn a_fractional_total_is_malformed_never_rounded() {
        let mut body = revio_purchase();
        body["purchase"]["total"] = json!(25.5);
        assert!(matches!(parse(body), Err(RevioError::Malformed(m)) if m.contains("purchase.total")));
    }

    #[test]
    fn missing_required_fields_are_malformed_and_named() {
        for (field, path) in [("id", "/id"), ("status", "/status"), ("currency", "/purchase/currency")] {
            let mut body = revio_purchase();
            *body.pointer_mut(path).unwrap() = Value::Null;
            match parse(body) {
                Err(RevioError::Malformed(m)) => assert!(m.contains(field), "{m}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut body = revio_purchase();
        body.as_object_mut().unwrap().remove("purchase");
        assert!(matches!(parse(body), Err(RevioError::Malformed(_))));
    }

    #[test]
    fn empty_optional_fields_read_as_absent() {
        let mut body = revio_purchase();
        body["reference"] = json!("");
        body.as_object_mut().unwrap().remove("checkout_url");
        let p = parse(body).unwrap();
        assert_eq!((p.reference, p.checkout_url), (None, None));
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed_without_echoing_it() {
        let err = Purchase::from_json(b"<html>payer@example.com</html>").unwrap_err();
        assert!(matches!(&err, RevioError::Malformed(m) if !m.contains("payer@example.com")), "{err:?}");
    }

    #[test]
    fn revio_statuses_map_to_what_purse_acts_on() {
        let cases = [
            ("created", PurchaseStatus::Created),
            ("pending_execute", PurchaseStatus::Created),
            ("viewed", PurchaseStatus::Created),
            ("paid", PurchaseStatus::Paid),
            ("PAID", PurchaseStatus::Paid),
            ("settled", PurchaseStatus::Paid),
            ("error", PurchaseStatus::Error),
            ("failed", PurchaseStatus::Error),
            ("declined", PurchaseStatus::Error),
            ("cancelled", PurchaseStatus::Cancelled),
            ("canceled", PurchaseStatus::Cancelled),
            ("expired", PurchaseStatus::Expired),
            ("refunded", PurchaseStatus::Refunded),
            ("chargeback", PurchaseStatus::Chargeback),
            ("Charged_Back", PurchaseStatus::Chargeback),
            (" hold ", PurchaseStatus::Other("hold".into())),
        ];
        for (raw, want) in cases {
            assert_eq!(PurchaseStatus::parse(raw), want, "{raw}");
        }
    }

    #[test]
    fn the_creation_body_has_revio_s_shape_and_omits_absent_urls() {
        let new = NewPurchase {
            email: "payer@example.com".into(),
            amount_minor: 2500,
            currency: "ZAR".into(),
            product_name: "25.00 Purse coins".into(),
            reference: "01JTRANSACTION".into(),
            success_redirect: Some("https://app.example/ok".into()),
            failure_redirect: None,
            success_callback: Some("https://hooks.example/revio".into()),
        };
        let body = serde_json::to_value(CreateBody::new("brand-1", &new)).unwrap();
        assert_eq!(
            body,
            json!({
                "brand_id": "brand-1",
                "client": {"email": "payer@example.com"},
                "purchase": {"currency": "ZAR", "products": [{"name": "25.00 Purse coins", "price": 2500}]},
                "reference": "01JTRANSACTION",
                "success_redirect": "https://app.example/ok",
                "success_callback": "https://hooks.example/revio"
            })
        );
        assert!(!format!("{new:?}").contains("payer@example.com"));
    }
}
