//! The served models: the one `trm serve` started with and those registered by
//! `POST /api/models` (checkpoints already on the server, under the configured model roots).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use trm_shared::wire::jobs::RegisterModelRequest;
use trm_shared::wire::{ModelInfo, ModelList};

use super::auth::RequireToken;
use super::body::{JsonBody, RequestShape};
use crate::serving::model_thread::{self, ModelSource};
use crate::serving::registry::LoadedModel;
use super::error::ApiError;
use super::state::AppState;
use crate::serving::model_roots::resolve_under_roots;
use crate::jobs::store::StoredModel;

/// `GET /api/models`: the models the server can run.
#[utoipa::path(get, path = "/api/models", tag = "models", responses((status = 200, body = ModelList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList { models: state.models.infos(), default: state.models.default_model().map(|m| m.info.name.clone()) })
}

/// `POST /api/models`: loads a checkpoint that is already on the server and serves it under
/// `name` (predict selects it with `?model=NAME`). Paths must lie under a model root.
#[utoipa::path(post, path = "/api/models", tag = "models", request_body = RegisterModelRequest,
    security(("bearer" = [])),
    responses((status = 201, body = ModelInfo), (status = 401, body = trm_shared::wire::ErrorBody),
        (status = 403, description = "a path outside the model roots", body = trm_shared::wire::ErrorBody),
        (status = 409, description = "the name is taken", body = trm_shared::wire::ErrorBody),
        (status = 422, description = "bad name or a checkpoint that does not load", body = trm_shared::wire::ErrorBody)))]
pub async fn register(
    _auth: RequireToken,
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<RegisterModelRequest>,
) -> Result<(StatusCode, Json<ModelInfo>), ApiError> {
    check_name(&request.name)?;
    let source = ModelSource {
        name: request.name.clone(),
        checkpoint: resolve_under_roots(&request.checkpoint, &state.model_roots, "checkpoint")?,
        config: resolve_under_roots(&request.config, &state.model_roots, "config")?,
    };
    let info = load_and_insert(&state, source.clone()).await?;
    let stored = StoredModel {
        name: source.name,
        checkpoint: source.checkpoint.display().to_string(),
        config: source.config.display().to_string(),
    };
    // Served now either way; a failure here only means it is not reloaded after a restart.
    if let Err(e) = state.jobs.put_model(&stored) {
        tracing::warn!("model {} is served but not recorded: {e}", stored.name);
    }
    tracing::info!("registered model {} ({})", info.name, info.checkpoint);
    Ok((StatusCode::CREATED, Json(info)))
}

/// Loads `source` on its own worker thread and adds it to the registry.
pub async fn load_and_insert(state: &AppState, source: ModelSource) -> Result<ModelInfo, ApiError> {
    let slot = state.models.reserve(&source.name)?;
    let (backend, batch) = (state.backend_kind, state.batch.clone());
    let loading = source.clone();
    let thread = tokio::task::spawn_blocking(move || model_thread::start(loading, backend, batch))
        .await
        .map_err(|e| ApiError::internal(format!("loading the model: {e}")))?
        .map_err(ApiError::from)?;
    let info = thread.info.clone();
    slot.insert(LoadedModel { info: thread.info, source, batcher: thread.batcher });
    Ok(info)
}

impl RequestShape for RegisterModelRequest {
    const EXPECTED: &'static str = r#"{"name": "...", "checkpoint": "<path under a model root>", "config": "<path under a model root>"}"#;
}

/// Names go into URLs and logs: keep them plain.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "model name {name:?} is not allowed: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_plain() {
        assert!(check_name("tiny-1.v2_x").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
