//! The routes: the API under `/api`, its docs at `/docs`, the web app everywhere else, and
//! the safety layers.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::error::ApiError;
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
        .with_state(state);
    // The UI reads the document from its URL; it registers no route of its own for it.
    let docs = SwaggerUi::new("/docs").config(Config::from("/api/openapi.json"));
    let app = Router::new().nest("/api", api).merge(docs);
    static_files::with_static_files(app, dist)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
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
