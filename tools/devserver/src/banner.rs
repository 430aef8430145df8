//! What the dev server prints when it is ready: where it listens, what it serves, and a curl
//! walk-through to try it.

use purse_local::router::Router;
use std::fmt::Write;

/// What the server serves, as plain text for the banner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// (method, path, function) of every API route.
    pub routes: Vec<(String, String, String)>,
    /// (path, function) of every Function URL (webhook).
    pub webhooks: Vec<(String, String)>,
    /// (queue name, function, batch size) of every polled queue.
    pub queues: Vec<(String, String, u32)>,
    /// (function, schedule expression) of every scheduled job.
    pub jobs: Vec<(String, String)>,
    /// (route key, function) of every WebSocket API route, by route key.
    pub ws_routes: Vec<(String, String)>,
}

impl Summary {
    /// What `router` serves, routes ordered by path then method.
    pub fn of(router: &Router) -> Self {
        let mut routes: Vec<_> =
            router.routes.iter().map(|r| (r.method.clone(), r.path.clone(), r.function.clone())).collect();
        routes.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        Self {
            routes,
            webhooks: router.urls.iter().map(|u| (u.path.clone(), u.function.clone())).collect(),
            queues: router
                .consumers
                .iter()
                .map(|c| (crate::sqs::queue_name(&c.queue_url).to_owned(), c.function.clone(), c.batch_size))
                .collect(),
            jobs: router.jobs.iter().map(|j| (j.function.clone(), j.schedule.clone())).collect(),
            ws_routes: router.ws_routes.iter().map(|r| (r.route_key.clone(), r.function.clone())).collect(),
        }
    }
}

/// The text printed on start; `ws_url` is the WebSocket API's `ws://` address.
pub fn banner(base_url: &str, ws_url: &str, emulator: &str, prefix: &str, summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nPurse dev server: {base_url}   (emulator {emulator}, stack prefix {prefix})");
    let _ = writeln!(out, "Web app: {base_url}/app/   (open it in a browser)\n");
    let _ = writeln!(out, "Routes (API Gateway HTTP API):");
    let path_width = summary.routes.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (method, path, function) in &summary.routes {
        let _ = writeln!(out, "  {method:<6} {path:<path_width$}  -> {function}");
    }
    if summary.routes.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "Webhooks (Function URLs, any method):");
    for (path, function) in &summary.webhooks {
        let _ = writeln!(out, "  {base_url}{path}  -> {function}");
    }
    if summary.webhooks.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(
        out,
        "WebSocket API: {ws_url}/?ticket=...  (PURSE_WS_PORT; routes by $request.body.action, @connections on the same port):"
    );
    let key_width = summary.ws_routes.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (route_key, function) in &summary.ws_routes {
        let _ = writeln!(out, "  {route_key:<key_width$}  -> {function}");
    }
    if summary.ws_routes.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "Queues polled (SQS event source mappings):");
    for (queue, function, batch) in &summary.queues {
        let _ = writeln!(out, "  {queue}  -> {function} (batch {batch})");
    }
    if summary.queues.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "Scheduled jobs:");
    for (function, schedule) in &summary.jobs {
        let _ = writeln!(out, "  {schedule}  -> {function}");
    }
    if summary.jobs.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let creds = r#"'{"email":"ada@example.com","password":"correct-horse-battery"}'"#;
    let json = "-H 'content-type: application/json'";
    let _ = writeln!(out, "\nTry it:");
    let _ = writeln!(out, "  B={base_url}");
    let _ = writeln!(out, "  curl -s -X POST $B/v1/auth/register {json} -d {creds}");
    let _ = writeln!(
        out,
        "  TOKEN=$(curl -s -X POST $B/v1/auth/login {json} -d {creds} | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')"
    );
    let _ = writeln!(out, "  curl -s $B/v1/me -H \"Authorization: Bearer $TOKEN\"");
    let _ = writeln!(out, "  curl -s $B/v1/wallet -H \"Authorization: Bearer $TOKEN\"");
    let _ = writeln!(out, "\nBuy coins (open checkout_url in a browser and click Pay, then read the wallet again):");
    let _ = writeln!(
        out,
        "  curl -s -X POST $B/v1/deposits {json} -H \"Authorization: Bearer $TOKEN\" -H \"Idempotency-Key: $(date +%s%N)\" -d '{{\"amount\":\"25.00\"}}'"
    );
    let _ = writeln!(out, "  curl -s $B/v1/transactions -H \"Authorization: Bearer $TOKEN\"");
    let _ = writeln!(
        out,
        "\nVerify your identity (the KYC sandbox verifies a PAN with digits 1111 by webhook a second later):"
    );
    let _ = writeln!(
        out,
        "  curl -s -X POST $B/v1/kyc {json} -H \"Authorization: Bearer $TOKEN\" -d '{{\"pan\":\"ABCPV1111Q\",\"full_name\":\"Ada Lovelace\",\"date_of_birth\":\"1990-01-31\",\"consent\":true}}'"
    );
    let _ = writeln!(out, "  curl -s $B/v1/kyc -H \"Authorization: Bearer $TOKEN\"        # PENDING, then VERIFIED");
    let _ = writeln!(
        out,
        "  curl -s $B/v1/referrals -H \"Authorization: Bearer $TOKEN\"  # your code, share link, referees, rewards"
    );
    let _ = writeln!(out, "\nCtrl-C to stop.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            routes: vec![
                ("POST".into(), "/v1/auth/register".into(), "AuthRegisterFunction".into()),
                ("GET".into(), "/v1/me".into(), "MeGetFunction".into()),
            ],
            webhooks: vec![("/webhooks/revio".into(), "RevioWebhookFunction".into())],
            queues: vec![("purse-dev-RevioEventsQueue".into(), "RevioEventsConsumer".into(), 10)],
            jobs: vec![("ReconcileDepositsFunction".into(), "rate(5 minutes)".into())],
            ws_routes: vec![("$connect".into(), "WsConnectFunction".into()), ("ping".into(), "WsPingFunction".into())],
        }
    }

    #[test]
    fn the_banner_names_the_url_every_route_webhook_and_queue() {
        let text =
            banner("http://127.0.0.1:3000", "ws://127.0.0.1:3001", "http://127.0.0.1:4566", "purse-dev-", &summary());
        assert!(text.contains("http://127.0.0.1:3000"));
        assert!(text.contains("Web app: http://127.0.0.1:3000/app/"), "{text}");
        assert!(text.contains("POST   /v1/auth/register  -> AuthRegisterFunction"), "{text}");
        assert!(text.contains("GET    /v1/me             -> MeGetFunction"), "{text}");
        assert!(text.contains("http://127.0.0.1:3000/webhooks/revio  -> RevioWebhookFunction"));
        assert!(text.contains("purse-dev-RevioEventsQueue  -> RevioEventsConsumer (batch 10)"));
        assert!(text.contains("rate(5 minutes)  -> ReconcileDepositsFunction"));
        assert!(text.contains("WebSocket API: ws://127.0.0.1:3001/?ticket="), "{text}");
        assert!(text.contains("  $connect  -> WsConnectFunction"), "{text}");
        assert!(text.contains("  ping      -> WsPingFunction"), "{text}");
    }

    #[test]
    fn the_walk_through_registers_logs_in_and_reads_me_and_the_wallet() {
        let text = banner("http://h:1", "ws://h:2", "e", "p", &Summary::default());
        for needle in ["/v1/auth/register", "/v1/auth/login", "access_token", "/v1/me", "/v1/wallet", "Bearer $TOKEN"] {
            assert!(text.contains(needle), "missing {needle}");
        }
        assert_eq!(text.matches("(none)").count(), 5);
        assert!(text.contains("/v1/deposits") && text.contains("Idempotency-Key"));
    }
}
