//! The served models: the one `trm serve` started with and those registered by
//! `POST /api/models` (checkpoints already on the server, under the configured model roots).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use trm_shared::wire::jobs::RegisterModelRequest;
use trm_shared::wire::{ModelInfo, ModelList};

use super::auth::RequireToken;
use super::body::require_json;
use super::engine::{self, ModelSource};
use super::error::ApiError;
use super::state::{AppState, LoadedModel};
use crate::jobs::store::StoredModel;

/// Most models served at once (each holds its weights and a worker thread).
pub const MAX_MODELS: usize = 8;
const EXPECTED: &str = r#"{"name": "...", "checkpoint": "<path under a model root>", "config": "<path under a model root>"}"#;

/// The models, in registration order; the first is the default.
#[derive(Default)]
pub struct ModelRegistry {
    models: RwLock<Vec<Arc<LoadedModel>>>,
    // Names of the models being loaded: they hold their names and count against the cap, so
    // that concurrent registrations cannot load more than MAX_MODELS models at once.
    loading: Mutex<Vec<String>>,
}

/// A slot held while a model loads ([`ModelRegistry::reserve`]); dropped, it frees the slot.
pub struct Reservation<'a> {
    registry: &'a ModelRegistry,
    name: String,
}

impl Reservation<'_> {
    /// Serves the loaded model in the reserved slot.
    pub fn insert(self, model: LoadedModel) {
        let mut models = self.registry.models.write().unwrap_or_else(PoisonError::into_inner);
        models.push(Arc::new(model));
        // The name moves from loading to served under the models lock (dropping `self`).
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.registry.loading_names().retain(|n| *n != self.name);
    }
}

impl ModelRegistry {
    /// The default model (the first), if any.
    pub fn default_model(&self) -> Option<Arc<LoadedModel>> {
        self.read().first().cloned()
    }

    /// Every model, the default first.
    pub fn all(&self) -> Vec<Arc<LoadedModel>> {
        self.read().clone()
    }

    /// The model named `name`, or a 404 naming those there are.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>, ApiError> {
        let models = self.read();
        models.iter().find(|m| m.info.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = models.iter().map(|m| m.info.name.as_str()).collect();
            ApiError::not_found(format!(
                "no model {name:?}; there are: {}",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            ))
        })
    }

    /// Every model's info.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.read().iter().map(|m| m.info.clone()).collect()
    }

    /// Adds a model, unless its name is taken or the registry is full.
    pub fn insert(&self, model: LoadedModel) -> Result<(), ApiError> {
        let mut models = self.models.write().unwrap_or_else(PoisonError::into_inner);
        check_free(&models, &self.loading_names(), &model.info.name)?;
        models.push(Arc::new(model));
        Ok(())
    }

    /// Holds a slot and the name `name` for a model about to be loaded, unless the name is
    /// taken or every slot is (served or loading): the cap is checked before any loading.
    pub fn reserve(&self, name: &str) -> Result<Reservation<'_>, ApiError> {
        let models = self.read();
        let mut loading = self.loading_names();
        check_free(&models, &loading, name)?;
        loading.push(name.to_string());
        Ok(Reservation { registry: self, name: name.to_string() })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<LoadedModel>>> {
        self.models.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn loading_names(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.loading.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn check_free(models: &[Arc<LoadedModel>], loading: &[String], name: &str) -> Result<(), ApiError> {
    if models.iter().any(|m| m.info.name == name) {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("a model named {name:?} is already served")));
    }
    if loading.iter().any(|n| n == name) {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("a model named {name:?} is being loaded")));
    }
    if models.len() + loading.len() >= MAX_MODELS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{MAX_MODELS} models are served or being loaded already, the most this server holds"),
        ));
    }
    Ok(())
}

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
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ModelInfo>), ApiError> {
    let request: RegisterModelRequest = require_json(body, EXPECTED)?;
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
    let engine = tokio::task::spawn_blocking(move || engine::start(loading, backend, batch))
        .await
        .map_err(|e| ApiError::internal(format!("loading the model: {e}")))?
        .map_err(ApiError::from)?;
    let info = engine.info.clone();
    slot.insert(LoadedModel { info: engine.info, source, batcher: engine.batcher });
    Ok(info)
}

/// Each directory of `root` holding model.safetensors and config.toml, as a model named after
/// the directory: `default` first, then the others by name. No `root` means no models.
pub fn committed_models(root: &Path, default: &str) -> std::io::Result<Vec<ModelSource>> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut models = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let dir = entry?.path();
        let (checkpoint, config) = (dir.join("model.safetensors"), dir.join("config.toml"));
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if checkpoint.is_file() && config.is_file() {
            models.push(ModelSource { name, checkpoint, config });
        }
    }
    models.sort_by_key(|m| (m.name != default, m.name.clone()));
    Ok(models)
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

/// The canonical form of `path` (relative paths are taken relative to each root in turn),
/// if it names an existing file under one of `roots` (canonical already). Symbolic links and
/// `..` are resolved before the check, so neither can leave the roots.
pub fn resolve_under_roots(path: &str, roots: &[PathBuf], what: &str) -> Result<PathBuf, ApiError> {
    if roots.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this server has no model roots, so no files can be named (start it with --model-root DIR)",
        ));
    }
    // Resolved at each request: a root that did not exist when the server started (a fresh
    // runs/ directory) counts once it does.
    let roots: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let given = Path::new(path);
    let candidates: Vec<PathBuf> =
        if given.is_absolute() { vec![given.to_path_buf()] } else { roots.iter().map(|r| r.join(given)).collect() };
    let Some(canonical) = candidates.iter().find_map(|c| c.canonicalize().ok()) else {
        return Err(ApiError::unprocessable(format!("{what} {path:?} does not exist under the model roots")));
    };
    if !roots.iter().any(|root| canonical.starts_with(root)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what} {path:?} is outside the model roots ({})", display_roots(&roots)),
        ));
    }
    if !canonical.is_file() {
        return Err(ApiError::unprocessable(format!("{what} {path:?} is not a file")));
    }
    Ok(canonical)
}

fn display_roots(roots: &[PathBuf]) -> String {
    roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_only_under_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("models");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/m.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        let roots = vec![root.canonicalize().unwrap()];
        let inside = resolve_under_roots("a/m.safetensors", &roots, "checkpoint").unwrap();
        assert_eq!(inside, roots[0].join("a/m.safetensors"));
        let absolute = root.join("a/m.safetensors").display().to_string();
        assert_eq!(resolve_under_roots(&absolute, &roots, "checkpoint").unwrap(), inside);
        assert_eq!(resolve_under_roots("../secret", &roots, "checkpoint").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(resolve_under_roots("a/../../secret", &roots, "x").unwrap_err().status, StatusCode::FORBIDDEN);
        let outside = dir.path().join("secret").display().to_string();
        assert_eq!(resolve_under_roots(&outside, &roots, "x").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(resolve_under_roots("a", &roots, "x").unwrap_err().status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(resolve_under_roots("nope", &roots, "x").unwrap_err().status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(resolve_under_roots("a/m.safetensors", &[], "x").unwrap_err().status, StatusCode::FORBIDDEN);
        // A root made after the start (a fresh runs/ directory) counts once it exists.
        let later = dir.path().join("later");
        let roots = vec![root.canonicalize().unwrap(), later.clone()];
        assert_eq!(resolve_under_roots("job-1/m.safetensors", &roots, "x").unwrap_err().status, StatusCode::UNPROCESSABLE_ENTITY);
        std::fs::create_dir_all(later.join("job-1")).unwrap();
        std::fs::write(later.join("job-1/m.safetensors"), b"x").unwrap();
        let found = resolve_under_roots("job-1/m.safetensors", &roots, "x").unwrap();
        assert_eq!(found, later.canonicalize().unwrap().join("job-1/m.safetensors"));
    }

    #[test]
    fn committed_models_are_the_complete_directories_default_first() {
        let dir = tempfile::tempdir().unwrap();
        for (name, complete) in [("b-model", true), ("default", true), ("a-model", true), ("half", false)] {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("model.safetensors"), b"x").unwrap();
            if complete {
                std::fs::write(d.join("config.toml"), b"x").unwrap();
            }
        }
        let names: Vec<String> = committed_models(dir.path(), "default").unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["default", "a-model", "b-model"]);
        assert!(committed_models(&dir.path().join("none"), "default").unwrap().is_empty());
    }

    #[test]
    fn the_cap_counts_models_being_loaded() {
        let registry = ModelRegistry::default();
        let slots: Vec<_> = (0..MAX_MODELS).map(|i| registry.reserve(&format!("m{i}")).unwrap()).collect();
        let full = registry.reserve("one-more").err().expect("every slot is taken");
        assert_eq!(full.status, StatusCode::CONFLICT);
        assert!(full.message.contains("being loaded"), "{}", full.message);
        drop(slots);
        let slot = registry.reserve("m0").unwrap();
        let taken = registry.reserve("m0").err().expect("the name is held while it loads");
        assert!(taken.message.contains("is being loaded"), "{}", taken.message);
        drop(slot);
        assert!(registry.reserve("m0").is_ok());
    }

    #[test]
    fn model_names_are_plain() {
        assert!(check_name("tiny-1.v2_x").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
