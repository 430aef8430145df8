//! Logging set-up: JSON lines inside Lambda, readable lines on a developer's terminal.
//!
//! Never log tokens, passwords, signatures, whole webhook bodies or personal data: log ids,
//! codes and outcomes.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the global subscriber once; later calls do nothing.
///
/// The level comes from `RUST_LOG` (default `info`): a level (`debug`), or comma-separated
/// `target=level` directives (`info,purse=debug`). An unreadable value means `info`.
///
/// The filter is `tracing_subscriber`'s `Targets`, not `EnvFilter`: the template sets a plain
/// level (`LogLevel`), and `EnvFilter`'s span and field directives would link a regex engine
/// into every binary (about 0.4 MB) for nothing.
pub fn init() {
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let _ = if in_lambda {
        let layer = tracing_subscriber::fmt::layer().json().with_current_span(true).without_time().with_target(false);
        tracing_subscriber::registry().with(layer.with_filter(filter)).try_init()
    } else {
        let layer = tracing_subscriber::fmt::layer().compact().with_target(false);
        tracing_subscriber::registry().with(layer.with_filter(filter)).try_init()
    };
}

/// The filter `RUST_LOG` asks for; `info` when it is unset, empty or unreadable.
fn filter_from(raw: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(LevelFilter::INFO);
    match raw.map(str::trim) {
        None | Some("") => info(),
        Some(raw) => raw.parse::<Targets>().unwrap_or_else(|_| info()),
    }
}

/// Installs the Lambda (JSON) format writing to `make_writer`, at debug level, for tests that
/// inspect what is logged.
///
/// # Errors
/// When a global subscriber is already installed.
pub fn subscriber_with_writer<W>(
    make_writer: impl Fn() -> W + Send + Sync + 'static,
) -> Result<(), tracing_subscriber::util::TryInitError>
where
    W: std::io::Write + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(make_writer)
        .finish()
        .try_init()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_sets_the_level_and_anything_unreadable_means_info() {
        let debug = filter_from(Some("debug"));
        assert!(debug.would_enable("purse", &Level::DEBUG) && !debug.would_enable("purse", &Level::TRACE));
        let per_target = filter_from(Some("warn,purse=debug"));
        assert!(per_target.would_enable("purse::service", &Level::DEBUG));
        assert!(!per_target.would_enable("aws_config", &Level::INFO));
        for info in [None, Some(""), Some("  "), Some("purse=loud")] {
            let filter = filter_from(info);
            assert!(
                filter.would_enable("purse", &Level::INFO) && !filter.would_enable("purse", &Level::DEBUG),
                "{info:?}"
            );
        }
    }
}
