//! Logging set-up: JSON lines inside Lambda, readable lines on a developer's terminal.
//!
//! Never log tokens, passwords, signatures, whole webhook bodies or personal data: log ids,
//! codes and outcomes.

/// Installs the global subscriber once; later calls do nothing.
///
/// The level comes from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if in_lambda {
        builder.json().with_current_span(true).without_time().try_init()
    } else {
        builder.compact().try_init()
    };
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
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(make_writer)
        .finish()
        .try_init()
}
