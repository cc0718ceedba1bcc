//! `GET /api/health`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use trm_shared::wire::Health;

use super::state::AppState;

/// Status, version, backend, and whether (and which) default model is loaded, with its
/// batcher's counters.
#[utoipa::path(get, path = "/api/health", tag = "server", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    let model = state.models.default_model();
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backend: state.backend.clone(),
        model_loaded: model.is_some(),
        model: model.as_ref().map(|m| m.info.clone()),
        batcher: model.as_ref().map(|m| m.batcher.stats()),
    })
}
