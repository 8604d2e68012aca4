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

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Content-Security-Policy of the pages: everything from this origin only,
/// except media (`{media}`: the origins the pages play from when those are
/// other nodes); hls.js needs `blob:` for its transmuxing worker and media
/// source.
fn page_csp(media: &[String]) -> String {
    let media = media.join(" ");
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; \
         img-src 'self' data:; media-src 'self' blob: {media}; worker-src 'self' blob:; \
         connect-src 'self' {media}; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self'"
    )
}

/// The other origins (`http://host:port`) the pages may play from, asked
/// for each page served: a control plane's origins nodes.
pub type MediaOrigins =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// The origin (`scheme://host[:port]`) of `url` as a CSP source, when it
/// is `http(s)://` with a host of plain characters (a node reports its own
/// host; nothing it says may add a directive).
fn csp_source(url: &str) -> Option<String> {
    let (scheme, rest) = url
        .strip_prefix("http://")
        .map(|r| ("http://", r))
        .or_else(|| url.strip_prefix("https://").map(|r| ("https://", r)))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let plain = !authority.is_empty()
        && authority.len() <= 300
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then(|| format!("{scheme}{authority}"))
}

#[derive(Clone)]
struct Pages {
    dir: Arc<Path>,
    media: Option<MediaOrigins>,
}

impl Pages {
    async fn csp(&self) -> String {
        let mut media: Vec<String> = match &self.media {
            Some(f) => f().await.iter().filter_map(|u| csp_source(u)).collect(),
            None => Vec::new(),
        };
        media.sort();
        media.dedup();
        media.truncate(64);
        page_csp(&media)
    }
}

/// The panels' routes over the files of `dir` (see the [module docs](self)).
/// Mount next to the API and the origin:
/// `Router::new().nest("/api/v1", cp.router()).merge(web::router(dir))`.
/// It sets no fallback, so it merges with routers that do.
pub fn router(dir: impl Into<PathBuf>) -> Router {
    router_with(dir, None)
}

/// [`router`] whose pages may also play from `media` (a control plane
/// whose play URLs name origin nodes: the creator panel's preview plays
/// from there).
pub fn router_with(dir: impl Into<PathBuf>, media: Option<MediaOrigins>) -> Router {
    let pages = Pages {
        dir: Arc::from(dir.into()),
        media,
    };
    Router::new()
        .route("/", get(index))
        .merge(viewer_routes())
        .with_state(pages)
}

/// The viewer's page alone (`/watch/<stream>` with its assets and hls.js),
/// for an origin node: the page plays the HLS and WHEP of the server that
/// serves it.
pub fn viewer_router(dir: impl Into<PathBuf>) -> Router {
    let pages = Pages {
        dir: Arc::from(dir.into()),
        media: None,
    };
    viewer_routes().with_state(pages)
}

fn viewer_routes() -> Router<Pages> {
    Router::new()
        .route("/watch/{stream}", get(watch))
        .route("/assets/{file}", get(asset))
        .route("/vendor/{file}", get(vendor))
}

/// Whether `dir` looks like the panels' directory (has `index.html`).
pub fn is_web_dir(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

async fn index(State(pages): State<Pages>) -> Response {
    page(&pages, "index.html").await
}

async fn watch(State(pages): State<Pages>, UrlPath(stream): UrlPath<String>) -> Response {
    if crate::validate::stream_name(&stream).is_err() {
        return not_found();
    }
    page(&pages, "watch.html").await
}

async fn asset(State(pages): State<Pages>, UrlPath(file): UrlPath<String>) -> Response {
    file_in(&pages.dir.join("assets"), &file).await
}

async fn vendor(State(pages): State<Pages>, UrlPath(file): UrlPath<String>) -> Response {
    file_in(&pages.dir.join("dist"), &file).await
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

async fn page(pages: &Pages, file: &str) -> Response {
    let mut r = match tokio::fs::read(pages.dir.join(file)).await {
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
    let csp = HeaderValue::from_str(&pages.csp().await)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
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
    use super::{content_type, csp_source};

    #[test]
    fn only_plain_origins_go_into_the_policy() {
        for (url, want) in [
            ("http://10.0.0.5:8082", "http://10.0.0.5:8082"),
            ("https://cdn.example.com/ugc/", "https://cdn.example.com"),
            ("http://[::1]:80", "http://[::1]:80"),
        ] {
            assert_eq!(csp_source(url).as_deref(), Some(want), "{url}");
        }
        for bad in [
            "",
            "http://",
            "ftp://x",
            "http://a; script-src *",
            "http://a b",
            "http://a'",
            "javascript:x",
        ] {
            assert_eq!(csp_source(bad), None, "{bad:?}");
        }
    }

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
