//! `purse-devserver`: the whole system on localhost. Wiring only; the pieces live in the library.
//!
//! Reads [`Config`], provisions the stack from `template.yaml` in the emulator, starts every
//! function through the shared router, prints the banner, serves HTTP and the WebSocket API and
//! polls the queues until Ctrl-C or SIGTERM, then drains and exits 0.

use purse_devserver::banner::{banner, Summary};
use purse_devserver::config::{Config, ConfigError};
use purse_devserver::sqs::Poller;
use purse_devserver::websocket::WsEndpoint;
use purse_devserver::{gateway, schedule, shutdown_signal, websocket};
use purse_local::provision::{self, ProvisionError};
use purse_local::router::{Router, RouterError};
use purse_local::template::{Template, TemplateError};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long in-flight requests may take to finish after a stop signal.
const REQUEST_GRACE: Duration = Duration::from_secs(10);
/// How long a poller may take to finish its batch after a stop signal.
const POLLER_GRACE: Duration = Duration::from_secs(15);

/// Why the dev server could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("no AWS region configured; set AWS_REGION (e.g. us-east-1)")]
    NoRegion,
    #[error("cannot listen on {addr}: {source} (set {port_var} or PURSE_HOST to use another address)")]
    Bind { addr: String, port_var: &'static str, source: std::io::Error },
    #[error(
        "cannot provision the local stack in the emulator at {endpoint} (is it running? tools/stack/up.sh): {source}"
    )]
    Provision { endpoint: String, source: ProvisionError },
    #[error(transparent)]
    Router(#[from] RouterError),
}

#[tokio::main]
async fn main() -> ExitCode {
    purse::telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("purse-devserver: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), StartError> {
    let config = Config::from_env()?;
    let template = Template::project()?;
    let aws = purse::config::load_aws().await;
    let region = aws.region().map(ToString::to_string).ok_or(StartError::NoRegion)?;

    // Bind before the slow part, so a busy port fails at once.
    let addr = format!("{}:{}", config.host, config.port);
    let listener = TcpListener::bind((config.host.as_str(), config.port)).await.map_err(|source| StartError::Bind {
        addr,
        port_var: "PURSE_PORT",
        source,
    })?;
    let ws_addr = format!("{}:{}", config.host, config.ws_port);
    let ws_listener = TcpListener::bind((config.host.as_str(), config.ws_port))
        .await
        .map_err(|source| StartError::Bind { addr: ws_addr, port_var: "PURSE_WS_PORT", source })?;

    let base_url = config.base_url();
    let params = provision::local_parameters(&template, &base_url);
    let mut stack = provision::provision(&template, &aws, &config.prefix, params)
        .await
        .map_err(|source| StartError::Provision { endpoint: config.endpoint.clone(), source })?;
    // The WebSocket functions push to this server's @connections, and tell clients its ws:// URL.
    let ws_base_url = config.ws_base_url();
    stack.serve_ws_at(&ws_base_url);
    let ws_url = provision::local_ws_env(&ws_base_url).remove(provision::WS_URL_VAR).unwrap_or_default();
    let ws_url = ws_url.trim_end_matches('/');
    let router = Arc::new(Router::start(&template, &stack, &aws).await?);

    println!("{}", banner(&base_url, ws_url, &config.endpoint, &config.prefix, &Summary::of(&router)));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut pollers = tokio::task::JoinSet::new();
    for consumer in &router.consumers {
        // With the function's own credentials, as Lambda's event source mapping polls with its role.
        let client = aws_sdk_sqs::Client::new(&consumer.aws);
        let poller = Poller { consumer: consumer.clone(), client, region: region.clone() };
        pollers.spawn(poller.run(stop_rx.clone()));
    }
    for job in &router.jobs {
        match schedule::rate_period(&job.schedule) {
            Some(period) => {
                pollers.spawn(schedule::run(job.clone(), period, stop_rx.clone()));
            }
            None => {
                tracing::warn!(function = %job.function, schedule = %job.schedule, "only rate(...) schedules run locally")
            }
        }
    }

    // One signal stops both servers.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal_tx.send(true);
    });
    let signalled = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let stage = stack.parameters.get("Stage").cloned().unwrap_or_else(|| "local".into());
    let endpoint = Arc::new(WsEndpoint::new(router.clone(), &stage));
    let (cut, ws_cut) = tokio::join!(
        gateway::serve(listener, router.clone(), signalled(signal_rx.clone()), REQUEST_GRACE),
        websocket::serve(ws_listener, endpoint, signalled(signal_rx), REQUEST_GRACE),
    );
    tracing::info!("stopping");
    if cut + ws_cut > 0 {
        tracing::warn!(
            connections = cut + ws_cut,
            "requests still running after {}s were cut",
            REQUEST_GRACE.as_secs()
        );
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(POLLER_GRACE, async { while pollers.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("pollers still busy after {}s were cut", POLLER_GRACE.as_secs());
        pollers.abort_all();
    }
    tracing::info!("stopped");
    Ok(())
}
