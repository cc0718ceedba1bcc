//! `GET /api/health` and `GET /api/models`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use trm_shared::api::{Health, ModelList};

use super::state::AppState;

/// Status, version, backend, and whether (and which) model is loaded, with the batcher's counters.
pub async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backend: state.backend.clone(),
        model_loaded: state.model.is_some(),
        model: state.model.as_ref().map(|m| m.info.clone()),
        batcher: state.model.as_ref().map(|m| m.batcher.stats()),
    })
}

/// The models the server can run.
pub async fn models(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        models: state.model.iter().map(|m| m.info.clone()).collect(),
        default: state.model.as_ref().map(|m| m.info.name.clone()),
    })
}
