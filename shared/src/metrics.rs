//! Business and health metrics as CloudWatch embedded-metric-format (EMF) log lines.
//!
//! Inside Lambda, [`Metric::emit`] prints one JSON object per call on stdout, which CloudWatch
//! Logs turns into a metric in the `Purse` namespace (no API call, no latency). Elsewhere (tests,
//! `make dev`) it logs the same document as the `emf` field of an ordinary `tracing` line, so a
//! test can read exactly what Lambda would print.
//!
//! **Every metric, its unit, dimensions, when it is emitted and which alarm watches it:
//! [`docs/metrics.md`](../../docs/metrics.md)** (the one table; keep it and the calls in step).
//! Alarms live in `template.yaml`; `docs/runbook.md` says what to do when one fires.
//!
//! Dimensions keep cardinality low by construction: a dimension's value is a `&'static str`
//! (a provider, a reason, a queue, a kind — never an id, an amount or a secret). A metric with
//! dimensions is published twice in one document, without dimensions (the total, which the
//! alarms watch) and with them (the breakdown). Ids that help find the cause go in
//! [`Metric::property`]: a property is a plain member of the log line, searchable in Logs
//! Insights, and never becomes part of a metric's identity.
//!
//! Coin amounts are published as numbers for graphs only; nothing reads them back, and no
//! balance is ever computed from a metric.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// The namespace every metric is published in.
pub const NAMESPACE: &str = "Purse";

/// Every metric Purse publishes: its name, unit and dimension keys, as `docs/metrics.md` lists
/// them (a unit test compares the two; a metric not listed here fails in debug builds).
pub const CATALOGUE: &[(&str, Unit, &[&str])] = &[
    ("DepositsCreated", Unit::Count, &[]),
    ("DepositCoinsCreated", Unit::None, &[]),
    ("DepositsCredited", Unit::Count, &[]),
    ("DepositCoinsCredited", Unit::None, &[]),
    ("DepositsReversed", Unit::Count, &[]),
    ("ReversalShortfalls", Unit::Count, &[]),
    ("WithdrawalsRequested", Unit::Count, &[]),
    ("WithdrawalCoinsRequested", Unit::None, &[]),
    ("PayoutsSubmitted", Unit::Count, &[]),
    ("WithdrawalsCompleted", Unit::Count, &[]),
    ("WithdrawalCoinsPaidOut", Unit::None, &[]),
    ("PayoutsFailed", Unit::Count, &["Reason"]),
    ("WithdrawalsReturned", Unit::Count, &[]),
    ("ReferralRewardsPaid", Unit::Count, &[]),
    ("ReferralRewardCoins", Unit::None, &[]),
    ("CallMinutesBilled", Unit::Count, &[]),
    ("CallCoinsBilled", Unit::None, &[]),
    ("CallPayoutsPaid", Unit::Count, &[]),
    ("CallCoinsEarned", Unit::None, &[]),
    ("GameFeesCharged", Unit::Count, &[]),
    ("GameFeeCoins", Unit::None, &[]),
    ("GameRewardsPaid", Unit::Count, &[]),
    ("GameRewardCoins", Unit::None, &[]),
    ("KycSubmitted", Unit::Count, &[]),
    ("KycReviewsOpened", Unit::Count, &[]),
    ("CasesOpened", Unit::Count, &["Kind"]),
    ("DeliveriesRejected", Unit::Count, &["Provider", "Reason"]),
    ("ReconcileFindings", Unit::Count, &[]),
    ("WithdrawalReconcileFindings", Unit::Count, &[]),
    ("ReconcileErrors", Unit::Count, &[]),
    ("PayoutsStuck", Unit::Count, &[]),
    ("PayoutMismatches", Unit::Count, &[]),
    ("PstnCallsStuck", Unit::Count, &[]),
    ("MessagesParked", Unit::Count, &["Queue"]),
    ("Retries", Unit::Count, &["Kind"]),
    ("RetriesExhausted", Unit::Count, &[]),
];

/// A CloudWatch unit (the two Purse uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// How many times something happened.
    Count,
    /// A quantity without a CloudWatch unit: coins.
    None,
}

impl Unit {
    /// CloudWatch's name of the unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::None => "None",
        }
    }
}

/// One value of one metric, with its dimensions and properties, ready to [`emit`](Metric::emit).
#[derive(Debug, Clone)]
#[must_use = "a metric is published only by emit()"]
pub struct Metric<'a> {
    name: &'static str,
    unit: Unit,
    value: f64,
    dimensions: Vec<(&'static str, &'static str)>,
    properties: Vec<(&'static str, &'a str)>,
}

impl<'a> Metric<'a> {
    /// `n` occurrences of the event `name`.
    pub fn count(name: &'static str, n: u64) -> Self {
        #[allow(clippy::cast_precision_loss)] // counts stay far below 2^53
        Self::new(name, Unit::Count, n as f64)
    }

    /// An amount of coins under the name `name` (unit `None`).
    pub fn coins(name: &'static str, amount: Decimal) -> Self {
        Self::new(name, Unit::None, amount.to_f64().unwrap_or(0.0))
    }

    fn new(name: &'static str, unit: Unit, value: f64) -> Self {
        Self { name, unit, value, dimensions: Vec::new(), properties: Vec::new() }
    }

    /// Adds the dimension `key` = `value` (fixed strings only: see the module's notes).
    pub fn dimension(mut self, key: &'static str, value: &'static str) -> Self {
        self.dimensions.push((key, value));
        self
    }

    /// Adds a property: a member of the log line for finding the cause (a transaction id), not
    /// a dimension. Never a secret or personal data.
    pub fn property(mut self, key: &'static str, value: &'a str) -> Self {
        self.properties.push((key, value));
        self
    }

    /// The EMF document of this value, timestamped `now_ms` (milliseconds since the epoch).
    pub fn emf(&self, now_ms: i64) -> serde_json::Value {
        let keys: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        let sets = if keys.is_empty() { vec![vec![]] } else { vec![vec![], keys] };
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": sets,
                    "Metrics": [{"Name": self.name, "Unit": self.unit.as_str()}],
                }],
            },
        });
        let root = doc.as_object_mut().expect("a JSON object");
        for (k, v) in &self.properties {
            root.insert((*k).to_owned(), (*v).into());
        }
        // Dimensions and the value last: a property can never overwrite them.
        for (k, v) in &self.dimensions {
            root.insert((*k).to_owned(), (*v).into());
        }
        root.insert(self.name.to_owned(), self.value.into());
        doc
    }

    /// Publishes the value: an EMF line on stdout inside Lambda, a `tracing` line elsewhere. A
    /// zero is not published (a quiet metric is a healthy one).
    ///
    /// # Panics
    /// In debug builds (tests), when the name, unit and dimension keys are not an entry of
    /// [`CATALOGUE`].
    pub fn emit(self) {
        debug_assert!(
            CATALOGUE.iter().any(|(name, unit, keys)| {
                *name == self.name && *unit == self.unit && keys.iter().eq(self.dimensions.iter().map(|(k, _)| k))
            }),
            "metric {} ({:?}, dimensions {:?}) is not in metrics::CATALOGUE and docs/metrics.md",
            self.name,
            self.unit,
            self.dimensions
        );
        if self.value == 0.0 {
            return;
        }
        let line = self.emf(chrono::Utc::now().timestamp_millis()).to_string();
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            println!("{line}");
        } else {
            tracing::info!(metric = self.name, value = self.value, emf = %line, "metric");
        }
    }
}

/// Publishes one money event: `n` of the count `count` and `amount` of the coin figure `coins`,
/// both carrying the property `key` = `id` (the transaction or call they are about).
pub fn counted_with_coins(
    count: &'static str,
    n: u64,
    coins: &'static str,
    amount: Decimal,
    key: &'static str,
    id: &str,
) {
    Metric::count(count, n).property(key, id).emit();
    Metric::coins(coins, amount).property(key, id).emit();
}

/// Publishes `value` of the count `name`, without dimensions.
pub fn count(name: &'static str, value: u64) {
    Metric::count(name, value).emit();
}

/// The EMF document for one count without dimensions, as text.
pub fn emf_line(name: &'static str, value: u64, now_ms: i64) -> String {
    Metric::count(name, value).emf(now_ms).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_the_metric_and_carries_its_value() {
        let line: serde_json::Value = serde_json::from_str(&emf_line("CasesOpened", 2, 1_700_000_000_000)).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Purse");
        assert_eq!(directive["Metrics"][0]["Name"], "CasesOpened");
        assert_eq!(directive["Metrics"][0]["Unit"], "Count");
        assert_eq!(directive["Dimensions"], serde_json::json!([[]]), "no dimensions: one empty dimension set");
        assert_eq!(line["CasesOpened"], 2.0);
    }

    #[test]
    fn a_dimensioned_metric_is_published_as_a_total_and_per_dimension_with_string_targets() {
        let doc = Metric::count("DeliveriesRejected", 1)
            .dimension("Provider", "kyc")
            .dimension("Reason", "stale_timestamp")
            .emf(1);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Dimensions"], serde_json::json!([[], ["Provider", "Reason"]]));
        // The EMF specification: every dimension key is a root member with a string value.
        assert_eq!(doc["Provider"], "kyc");
        assert_eq!(doc["Reason"], "stale_timestamp");
        assert_eq!(doc["DeliveriesRejected"], 1.0);
    }

    #[test]
    fn properties_are_root_members_but_never_dimensions() {
        let doc = Metric::count("DepositsCredited", 1).property("transaction_id", "tx_01").emf(1);
        assert_eq!(doc["transaction_id"], "tx_01");
        let sets = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
        assert!(!sets.contains("transaction_id"), "{sets}");
    }

    #[test]
    fn a_property_cannot_overwrite_a_dimension_or_the_value() {
        let doc = Metric::count("Retries", 3)
            .dimension("Kind", "throttle")
            .property("Kind", "evil")
            .property("Retries", "x")
            .emf(1);
        assert_eq!((doc["Kind"].as_str(), doc["Retries"].as_f64()), (Some("throttle"), Some(3.0)));
    }

    /// `docs/metrics.md`'s table: (metric, unit, dimension keys).
    fn documented() -> Vec<(String, String, Vec<String>)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        let text = std::fs::read_to_string(path).expect("docs/metrics.md");
        text.lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split(" | ").collect();
                let keys = cells[2]
                    .split('`')
                    .collect::<Vec<_>>()
                    .windows(2)
                    .filter(|w| w[1].starts_with(':'))
                    .map(|w| w[0].to_owned())
                    .collect();
                (cells[0].trim_start_matches("| ").trim_matches('`').to_owned(), cells[1].to_owned(), keys)
            })
            .collect()
    }

    #[test]
    fn the_catalogue_and_docs_metrics_md_list_the_same_metrics() {
        let mut docs = documented();
        docs.sort();
        let mut code: Vec<(String, String, Vec<String>)> = CATALOGUE
            .iter()
            .map(|(n, u, k)| ((*n).to_owned(), u.as_str().to_owned(), k.iter().map(|k| (*k).to_owned()).collect()))
            .collect();
        code.sort();
        assert_eq!(docs, code, "docs/metrics.md (left) and metrics::CATALOGUE (right) differ");
    }

    #[test]
    fn every_purse_metric_an_alarm_watches_is_published() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let text = std::fs::read_to_string(path).expect("template.yaml");
        // Each top-level entry (a resource): its lines up to the next one, indented two spaces.
        let mut blocks: Vec<Vec<&str>> = Vec::new();
        for line in text.lines() {
            let top = line.starts_with("  ") && !line[2..].starts_with(' ') && !line.trim_start().starts_with('#');
            match blocks.last_mut() {
                Some(block) if !top => block.push(line),
                _ => blocks.push(vec![line]),
            }
        }
        let mut watched = Vec::new();
        for block in blocks.iter().filter(|b| b.iter().any(|l| l.trim() == "Type: AWS::CloudWatch::Alarm")) {
            let field = |name: &str| {
                block.iter().find_map(|l| l.trim().strip_prefix(name)).map(|v| v.trim().trim_matches('"').to_owned())
            };
            if field("Namespace:").as_deref() == Some(NAMESPACE) {
                watched.push(field("MetricName:").expect("an alarm on a Purse metric names it"));
            }
        }
        assert!(!watched.is_empty(), "the template alarms on Purse metrics");
        for metric in watched {
            assert!(
                CATALOGUE.iter().any(|(n, _, _)| *n == metric),
                "an alarm watches {metric}, which nothing publishes"
            );
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not in metrics::CATALOGUE")]
    fn a_metric_missing_from_the_catalogue_is_refused_in_tests() {
        Metric::count("SomethingNew", 1).emit();
    }

    #[test]
    fn coins_are_published_as_a_number_without_a_unit() {
        let doc = Metric::coins("DepositCoinsCredited", Decimal::new(12_345, 2)).emf(1);
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "None");
        assert_eq!(doc["DepositCoinsCredited"], 123.45);
    }
}
