//! Business and health metrics as CloudWatch embedded-metric-format (EMF) log lines.
//!
//! Inside Lambda, [`count`] prints one JSON object per call on stdout, which CloudWatch Logs
//! turns into a metric in the `Purse` namespace (no API call, no latency). Elsewhere (tests,
//! `make dev`) it logs the same figure as an ordinary `tracing` line. Alarms in `template.yaml`
//! watch these metrics; `docs/runbook.md` lists them with what to do.
//!
//! | metric | when |
//! |---|---|
//! | `CasesOpened` | a deposit needs a person (paid after failed, amount mismatch, unknown purchase paid) |
//! | `DepositsReversed` | a refund or chargeback took a credited deposit back |
//! | `ReversalShortfalls` | ... and the wallet could not cover it (wallet restricted) |
//! | `ReconcileFindings` | reconciliation settled, expired or escalated deposits the webhooks had not |
//! | `ReconcileErrors` | reconciliation could not settle a deposit (retried next run) |
//! | `DeliveriesRejected` | a webhook delivery was refused (signature, size, shape) |
//! | `KycSubmitted` | a KYC attempt was recorded |
//! | `KycReviewsOpened` | a KYC attempt needs a person (no result after polling, or the provider lost it) |
//! | `ReferralRewardsPaid` | a referral reward was paid |
//! | `PstnCallsStuck` | a phone call is past its time limit, its provider callbacks never came and the provider has not finished it (left ACTIVE, held) |

/// The namespace every metric is published in.
pub const NAMESPACE: &str = "Purse";

/// The EMF document for one count.
pub fn emf_line(name: &str, value: f64, now_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": name, "Unit": "Count"}],
            }],
        },
        name: value,
    })
    .to_string()
}

/// Publishes `value` of the count `name` (see the table above for the names in use).
pub fn count(name: &str, value: u64) {
    if value == 0 {
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let value_f = value as f64;
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        println!("{}", emf_line(name, value_f, chrono::Utc::now().timestamp_millis()));
    } else {
        tracing::info!(metric = name, value, "metric");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_the_metric_and_carries_its_value() {
        let line: serde_json::Value = serde_json::from_str(&emf_line("CasesOpened", 2.0, 1_700_000_000_000)).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Purse");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "CasesOpened");
        assert_eq!(line["CasesOpened"], 2.0);
    }
}
