//! The web app (`web/`) at `/app/`, on the same origin as the API, as CloudFront serves it in
//! a deployed stack: the built files of `web/dist/` (`node web/build.mjs`; `make dev` runs it),
//! fingerprinted assets cached for a year, `index.html` never cached, and any other path under
//! `/app/` without a file extension answered with `index.html`, so the deep links the app hands
//! out (the payment page's return `/app/wallet/deposits/<id>?result=paid`, a referral link
//! `/app/signup?ref=CODE`) open the app.
//!
//! `PURSE_WEB_DIR` serves another folder, e.g. `PURSE_WEB_DIR=web` serves the unbundled sources
//! (edit and reload, no build). Files are read on every request, so a rebuild shows at once.

use crate::gateway::HyperResponse;
use bytes::Bytes;
use http_body_util::Full;
use std::path::{Path, PathBuf};

/// The path the app is served under.
pub const PREFIX: &str = "/app";

/// Long-lived caching for fingerprinted files: their name changes whenever their content does.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else is revalidated on every load, so a new build is picked up at once.
pub const REVALIDATE: &str = "no-cache";

/// Whether the dev server answers `path` from the web app rather than the API.
pub fn is_app_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/app/")
}

/// The folder served: `PURSE_WEB_DIR`, or `web/dist` of this repository.
pub fn web_root() -> PathBuf {
    match std::env::var_os("PURSE_WEB_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist"),
    }
}

/// What a request path under `/app/` maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/app` itself: redirect to `/app/`, so relative URLs resolve.
    Redirect,
    /// A file under the root (a relative path of plain segments).
    File(PathBuf),
    /// A path that no file can have (`..`, a backslash, a hidden segment).
    Refused,
}

/// Maps a request path to what to serve. `/app/` and extensionless paths are `index.html`.
pub fn target(path: &str) -> Target {
    if path == PREFIX {
        return Target::Redirect;
    }
    let rest = path.strip_prefix("/app/").unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| s.starts_with('.') || s.contains('\\') || s.contains('\0')) {
        return Target::Refused;
    }
    match segments.last() {
        None => Target::File(PathBuf::from("index.html")),
        Some(last) if !last.contains('.') => Target::File(PathBuf::from("index.html")),
        Some(_) => Target::File(segments.iter().collect()),
    }
}

/// The `Content-Type` of a file, by extension.
pub fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The `Cache-Control` of a file: immutable under `assets/` (fingerprinted names), else no-cache.
pub fn cache_control(file: &Path) -> &'static str {
    if file.starts_with("assets") {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

/// Answers a GET or HEAD for a path under `/app`.
pub async fn serve(path: &str, head: bool) -> HyperResponse {
    let root = web_root();
    let file = match target(path) {
        Target::Redirect => return respond(308, &[("location", "/app/")], Bytes::new(), head),
        Target::Refused => return not_found(head),
        Target::File(file) => file,
    };
    match tokio::fs::read(root.join(&file)).await {
        Ok(body) => respond(
            200,
            &[
                ("content-type", content_type(&file)),
                ("cache-control", cache_control(&file)),
                ("x-content-type-options", "nosniff"),
            ],
            Bytes::from(body),
            head,
        ),
        Err(_) if file == Path::new("index.html") => {
            let body = format!(
                "<!doctype html><meta charset=utf-8><title>Purse (dev)</title><h1>The web app is not built</h1>\
                 <p>No <code>index.html</code> in <code>{}</code>. Build it with</p>\
                 <pre>npm --prefix web ci &amp;&amp; node web/build.mjs</pre><p>(<code>make dev</code> does this), \
                 or serve the sources with <code>PURSE_WEB_DIR=web</code>.</p>",
                root.display()
            );
            respond(
                503,
                &[("content-type", "text/html; charset=utf-8"), ("cache-control", "no-store")],
                Bytes::from(body),
                head,
            )
        }
        Err(_) => not_found(head),
    }
}

fn not_found(head: bool) -> HyperResponse {
    respond(
        404,
        &[("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")],
        Bytes::from_static(b"not found\n"),
        head,
    )
}

fn respond(status: u16, headers: &[(&str, &str)], body: Bytes, head: bool) -> HyperResponse {
    let mut b = hyper::Response::builder().status(status);
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    let body = if head { Bytes::new() } else { body };
    b.body(Full::new(body)).unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_root_and_deep_links_are_index_html() {
        assert_eq!(target("/app"), Target::Redirect);
        assert_eq!(target("/app/"), Target::File("index.html".into()));
        assert_eq!(target("/app/wallet/deposits/txn_01ABC"), Target::File("index.html".into()));
        assert_eq!(target("/app/signup"), Target::File("index.html".into()));
    }

    #[test]
    fn files_are_served_by_their_path_and_nothing_escapes_the_root() {
        assert_eq!(target("/app/assets/app-X1.js"), Target::File("assets/app-X1.js".into()));
        assert_eq!(target("/app/../Cargo.toml"), Target::Refused);
        assert_eq!(target("/app/assets/../../secret.txt"), Target::Refused);
        assert_eq!(target("/app/.env"), Target::Refused);
        assert_eq!(target("/app/a\\b.js"), Target::Refused);
    }

    #[test]
    fn fingerprinted_assets_are_immutable_and_the_page_is_revalidated() {
        assert_eq!(cache_control(Path::new("assets/app-X1.js")), IMMUTABLE);
        assert_eq!(cache_control(Path::new("index.html")), REVALIDATE);
        assert_eq!(content_type(Path::new("assets/app-X1.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
    }

    #[test]
    fn only_paths_under_app_are_the_apps() {
        assert!(is_app_path("/app"));
        assert!(is_app_path("/app/x"));
        assert!(!is_app_path("/apple"));
        assert!(!is_app_path("/v1/wallet"));
    }
}
