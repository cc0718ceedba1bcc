//! The built web app (Trunk's `dist/`) at `/`, with caching headers.
//!
//! Files come from tower-http's `ServeDir`, which resolves request paths inside its root
//! only (`..` segments, encoded or not, never leave it).

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

/// Hashed assets never change under their name: cache them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else (index.html above all) is revalidated on every use, so that a new
/// build is picked up at once.
const REVALIDATE: &str = "no-cache";

/// Adds the app's files (or, when `dist` is missing, a 404 that says how to build it) as
/// the fallback of `router`, with caching headers.
pub fn with_static_files(router: Router, dist: &Path) -> Router {
    let router = if dist.is_dir() {
        router.fallback_service(ServeDir::new(dist))
    } else {
        let message = format!(
            "the web app is not built: {} does not exist (build it with `trunk build --release`); the API is under /api",
            dist.display()
        );
        router.fallback(move || async move { (StatusCode::NOT_FOUND, message).into_response() })
    };
    router.layer(axum::middleware::from_fn(cache_headers))
}

/// Sets `Cache-Control` on successful answers outside `/api`.
async fn cache_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let ok = response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED;
    if ok && !path.starts_with("/api/") {
        let value = if is_hashed_asset(&path) { IMMUTABLE } else { REVALIDATE };
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}

/// Whether a file name carries a content hash, as Trunk writes them:
/// `app-0123456789abcdef.js`, `app-0123456789abcdef_bg.wasm`, `style-0123456789abcdef.css`.
pub fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let stem = name.split('.').next().unwrap_or(name);
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    match stem.rsplit_once('-') {
        Some((base, hash)) => !base.is_empty() && hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_hashed_assets_from_the_rest() {
        assert!(is_hashed_asset("/trm-app-0123456789abcdef.js"));
        assert!(is_hashed_asset("/trm-app-0123456789abcdef_bg.wasm"));
        assert!(is_hashed_asset("/assets/style-89abcdef01234567.css"));
        assert!(!is_hashed_asset("/index.html"));
        assert!(!is_hashed_asset("/"));
        assert!(!is_hashed_asset("/favicon.svg"));
        assert!(!is_hashed_asset("/trm-app.js"));
        assert!(!is_hashed_asset("/my-page.html"));
    }
}
