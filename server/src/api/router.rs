//! The routes: the API under `/api`, the web app everywhere else, and the safety layers.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use super::error::ApiError;
use super::state::AppState;
use super::{datasets, generate, health, predict, static_files};

/// The whole application.
pub fn router(state: Arc<AppState>, dist: &Path) -> Router {
    let limits = state.limits.clone();
    let api = Router::new()
        .route("/health", get(health::health))
        .route("/models", get(health::models))
        .route("/predict", post(predict::predict))
        .route("/generate", post(generate::generate))
        .route("/datasets", get(datasets::list))
        .route("/datasets/{name}/{split}", get(datasets::page))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state);
    let app = Router::new().nest("/api", api);
    static_files::with_static_files(app, dist)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
}

// OriginalUri: inside the nested router, the plain Uri has lost its `/api` prefix.
async fn unknown_endpoint(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no endpoint {}; see GET /api/health, /api/models, /api/datasets, POST /api/predict, /api/generate", uri.path()))
}

async fn wrong_method(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}
