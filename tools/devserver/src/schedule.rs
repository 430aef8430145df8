//! Scheduled functions (EventBridge `Schedule` events) run locally on their template rate.

use purse_local::router::Job;
use std::time::Duration;
use tokio::sync::watch;

/// The period of an EventBridge `rate(...)` expression; `None` for `cron(...)` and anything
/// else this local runner does not understand.
pub fn rate_period(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (value, unit) = inner.trim().split_once(' ')?;
    let value: u64 = value.parse().ok().filter(|v| *v > 0)?;
    let seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(value * seconds))
}

/// Runs `job` every `period` until `stop` turns true. A failed run is logged; the next tick
/// tries again, as EventBridge would.
pub async fn run(job: Job, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = crate::stopped(&mut stop) => break,
        }
        match job.handler.run_dyn().await {
            Ok(summary) => tracing::info!(function = %job.function, %summary, "scheduled run finished"),
            Err(e) => tracing::warn!(function = %job.function, error = %e, "scheduled run failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_expressions_become_periods() {
        assert_eq!(rate_period("rate(5 minutes)"), Some(Duration::from_secs(300)));
        assert_eq!(rate_period("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(rate_period("rate(2 days)"), Some(Duration::from_secs(172_800)));
    }

    #[test]
    fn cron_and_malformed_expressions_are_not_rates() {
        for e in ["cron(0 12 * * ? *)", "rate(0 minutes)", "rate(five minutes)", "rate(5 fortnights)", "5 minutes"] {
            assert_eq!(rate_period(e), None, "{e}");
        }
    }
}
