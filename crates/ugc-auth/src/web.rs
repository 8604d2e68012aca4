//! The web panels: the creator panel at `/` and the viewer page at
//! `/watch/<stream>`, served from a directory (the repository's `web/`).
//!
//! The pages are plain HTML, CSS and JavaScript modules that talk to the
//! REST API (`/api/v1`) and play the origin's HLS (`/live/...`) with hls.js;
//! the server only hands out files. Layout of the directory:
//!
//! | URL | file |
//! |---|---|
//! | `/` | `index.html` |
//! | `/watch/<stream>` | `watch.html` (the page reads the stream name from its URL) |
//! | `/assets/<file>` | `assets/<file>` |
//! | `/vendor/<file>` | `dist/<file>` (hls.js, copied there by `scripts/build-web.sh`) |
//!
//! File names are matched against a strict allow-list (one path segment of
//! `[A-Za-z0-9_.-]`, no leading dot, a known extension), so no request
//! reaches outside the directory. A missing file is a 404; the watch page
//! explains a missing player itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Content-Security-Policy of the pages: everything from this origin only;
/// hls.js needs `blob:` for its transmuxing worker and media source.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
     form-action 'self'";

/// The panels' routes over the files of `dir` (see the [module docs](self)).
/// Mount next to the API and the origin:
/// `Router::new().nest("/api/v1", cp.router()).merge(web::router(dir))`.
/// It sets no fallback, so it merges with routers that do.
pub fn router(dir: impl Into<PathBuf>) -> Router {
    let dir: Arc<Path> = Arc::from(dir.into());
    Router::new()
        .route("/", get(index))
        .route("/watch/{stream}", get(watch))
        .route("/assets/{file}", get(asset))
        .route("/vendor/{file}", get(vendor))
        .with_state(dir)
}

/// Whether `dir` looks like the panels' directory (has `index.html`).
pub fn is_web_dir(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

async fn index(State(dir): State<Arc<Path>>) -> Response {
    page(&dir, "index.html").await
}

async fn watch(State(dir): State<Arc<Path>>, UrlPath(stream): UrlPath<String>) -> Response {
    if crate::validate::stream_name(&stream).is_err() {
        return not_found();
    }
    page(&dir, "watch.html").await
}

async fn asset(State(dir): State<Arc<Path>>, UrlPath(file): UrlPath<String>) -> Response {
    file_in(&dir.join("assets"), &file).await
}

async fn vendor(State(dir): State<Arc<Path>>, UrlPath(file): UrlPath<String>) -> Response {
    file_in(&dir.join("dist"), &file).await
}

/// The content type of an allowed file name, `None` when not allowed.
fn content_type(file: &str) -> Option<&'static str> {
    let ok = !file.is_empty()
        && file.len() <= 128
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return None;
    }
    let ext = file.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "map" | "json" => "application/json",
        _ => return None,
    })
}

async fn file_in(dir: &Path, file: &str) -> Response {
    let Some(ct) = content_type(file) else {
        return not_found();
    };
    match tokio::fs::read(dir.join(file)).await {
        Ok(body) => {
            let mut r = (StatusCode::OK, body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        Err(_) => not_found(),
    }
}

async fn page(dir: &Path, file: &str) -> Response {
    let mut r = match tokio::fs::read(dir.join(file)).await {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "The web panel files are not installed ({} is missing). \
                     Start ugc-server with --web <repo>/web.\n",
                    file
                ),
            )
                .into_response();
        }
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Watch URLs may carry a play token: never leak it in a Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn only_plain_file_names_are_served() {
        assert_eq!(
            content_type("panel.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            content_type("hls.min.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(content_type("style.css"), Some("text/css; charset=utf-8"));
        for bad in [
            "",
            ".env",
            "..",
            "../x.js",
            "a/b.js",
            "a\\b.js",
            "x.sh",
            "noext",
            "x.js\0",
            "%2e%2e.js",
            ".hidden.js",
        ] {
            assert_eq!(content_type(bad), None, "{bad:?}");
        }
    }
}
