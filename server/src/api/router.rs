//! The routes: the API under `/api`, its docs at `/docs`, the web app everywhere else, and
//! the safety layers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::error::ApiError;
use super::hosts::AllowedHosts;
use super::state::AppState;
use super::{datasets, generate, health, jobs, models, openapi, predict, static_files};

/// The whole application.
pub fn router(state: Arc<AppState>, dist: &Path) -> Router {
    let limits = state.limits.clone();
    let api = Router::new()
        .route("/health", get(health::health))
        .route("/models", get(models::list).post(models::register))
        .route("/predict", post(predict::predict))
        .route("/generate", post(generate::generate))
        .route("/datasets", get(datasets::list))
        .route("/datasets/{name}/{split}", get(datasets::page))
        .route("/eval", post(jobs::submit_eval))
        .route("/train", post(jobs::submit_train))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/jobs/{id}/resume", post(jobs::resume))
        .route("/openapi.json", get(openapi::document))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn(json_bodies_only))
        .with_state(state);
    // The UI reads the document from its URL; it registers no route of its own for it.
    let docs = SwaggerUi::new("/docs").config(Config::from("/api/openapi.json"));
    let app = Router::new().nest("/api", api).merge(docs);
    static_files::with_static_files(app, dist)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(limits.request_timeout, time_limit))
        .layer(middleware::from_fn_with_state(Arc::new(limits.allowed_hosts), known_hosts_only))
}

/// A request not answered within `--request-timeout-secs` gets a 408 naming that limit (an
/// event stream counts until its headers are sent, not while it streams).
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "not answered within the server's limit of {} s (`trm serve --request-timeout-secs`); for a predict, send fewer mazes or a lower `steps` cap",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Requests for a host name the server does not answer get 421 before anything else runs
/// (see [`AllowedHosts`]). A request without a `Host` header (HTTP/1.0) comes from no browser.
async fn known_hosts_only(State(hosts): State<Arc<AllowedHosts>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).map(|v| v.to_str().unwrap_or("(not text)"));
    if let Some(host) = host
        && !hosts.allows(host)
    {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this server does not answer for host {host:?}; to reach it under that name, start it with `trm serve --allowed-host NAME`"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

// OriginalUri: inside the nested router, the plain Uri has lost its `/api` prefix.
async fn unknown_endpoint(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {}; see GET /api/openapi.json (or /docs) for the endpoints there are",
        uri.path()
    ))
}

async fn wrong_method(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

/// Request bodies are JSON and say so. A browser page on another origin can send a "simple"
/// cross-origin POST (text/plain, form data) without a CORS preflight; requiring
/// `Content-Type: application/json` on every body makes such a request fail before a handler
/// reads it. Requests without a body (a job's resume) need no content type.
async fn json_bodies_only(request: Request, next: Next) -> Response {
    let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if has_body && !is_json(request.headers().get(header::CONTENT_TYPE)) {
        let got = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("request bodies must be sent as Content-Type: application/json (got {got})"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether a Content-Type header is JSON (`application/json`, parameters such as a charset allowed).
fn is_json(value: Option<&header::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_content_types_pass() {
        let v = |s: &'static str| Some(header::HeaderValue::from_static(s));
        assert!(is_json(v("application/json").as_ref()));
        assert!(is_json(v("Application/JSON; charset=utf-8").as_ref()));
        for bad in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"] {
            assert!(!is_json(v(bad).as_ref()), "{bad}");
        }
        assert!(!is_json(None));
    }
}
