//! Revio's payout API: create (idempotent by reference), read by id, find by reference.

use super::{is_plausible_id, Repeat, RevioClient};
use crate::revio::payout::{CreatePayoutBody, NewPayout, Payout};
use crate::revio::{json_error_kind, RevioError};
use http::{Method, StatusCode};

impl RevioClient {
    /// Submits a payout (`POST /api/v1/payouts/`). Revio keeps one payout per `reference`: a
    /// repeat answers the existing payout. Sent once; only a connection that could not be
    /// opened is tried again. A timeout is ambiguous (Revio may have accepted it): ask
    /// [`RevioClient::find_payout`] before submitting again.
    ///
    /// # Errors
    /// [`RevioError::Unavailable`] (ambiguous when it was a timeout), [`RevioError::Rejected`]
    /// for a refusal (bad account details), [`RevioError::Malformed`].
    pub async fn create_payout(&self, payout: &NewPayout) -> Result<Payout, RevioError> {
        let body = serde_json::to_vec(&CreatePayoutBody::new(&self.brand_id, payout))
            .map_err(|e| RevioError::Malformed(format!("payout could not be encoded ({})", json_error_kind(&e))))?;
        let answer = self.call(Method::POST, "/api/v1/payouts/", Some(body), Repeat::IfNothingSent).await?;
        if !answer.status.is_success() {
            return Err(self.refusal(&answer));
        }
        answer.usable()?;
        Payout::from_json(&answer.body)
    }

    /// Reads a payout (`GET /api/v1/payouts/<id>/`), retrying transient failures.
    ///
    /// # Errors
    /// [`RevioError::NotFound`], [`RevioError::Unavailable`], [`RevioError::Rejected`],
    /// [`RevioError::Malformed`].
    pub async fn get_payout(&self, id: &str) -> Result<Payout, RevioError> {
        if !is_plausible_id(id) {
            return Err(RevioError::NotFound);
        }
        let answer = self.call(Method::GET, &format!("/api/v1/payouts/{id}/"), None, Repeat::Safe).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(RevioError::NotFound);
        }
        if !answer.status.is_success() {
            return Err(self.refusal(&answer));
        }
        answer.usable()?;
        Payout::from_json(&answer.body)
    }

    /// The payout with our `reference`, if Revio has one (`GET /api/v1/payouts/?reference=`).
    ///
    /// # Errors
    /// [`RevioError::Unavailable`], [`RevioError::Rejected`], [`RevioError::Malformed`].
    pub async fn find_payout(&self, reference: &str) -> Result<Option<Payout>, RevioError> {
        if !is_plausible_id(reference) {
            return Ok(None);
        }
        let answer =
            self.call(Method::GET, &format!("/api/v1/payouts/?reference={reference}"), None, Repeat::Safe).await?;
        if !answer.status.is_success() {
            return Err(self.refusal(&answer));
        }
        answer.usable()?;
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| RevioError::Malformed(format!("payout list is not JSON ({})", json_error_kind(&e))))?;
        let results = json["results"].as_array().ok_or_else(|| RevioError::Malformed("no `results`".into()))?;
        match results.first() {
            None => Ok(None),
            Some(p) => {
                let payout = Payout::from_value(p.clone())?;
                Ok((payout.reference.as_deref() == Some(reference)).then_some(payout))
            }
        }
    }
}
