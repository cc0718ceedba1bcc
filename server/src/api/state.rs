//! What every handler shares: the models, the dataset catalog, the jobs, the token and the limits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use trm_shared::api::ModelInfo;

use super::batcher::{BatchConfig, BatcherHandle};
use super::catalog::Catalog;
use super::engine::ModelSource;
use super::models::ModelRegistry;
use crate::backend::BackendKind;
use crate::jobs::JobManager;

/// Caps that keep one client from exhausting the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Most mazes in one predict request.
    pub max_mazes_per_request: usize,
    /// Most ACT steps a predict request may ask for.
    pub max_steps: usize,
    /// Largest side of a generated maze.
    pub max_generate_side: usize,
    /// Mazes being generated at the same time (503 beyond).
    pub max_concurrent_generate: usize,
    /// Most examples on one dataset page.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 << 20,
            request_timeout: Duration::from_secs(120),
            max_mazes_per_request: 64,
            max_steps: 64,
            max_generate_side: 64,
            max_concurrent_generate: 2,
            max_page: 100,
        }
    }
}

/// A model being served.
pub struct LoadedModel {
    /// What it is.
    pub info: ModelInfo,
    /// Where it was loaded from (eval jobs read the same files).
    pub source: ModelSource,
    /// The queue to its worker thread.
    pub batcher: BatcherHandle,
}

/// State shared by all handlers.
pub struct AppState {
    /// The backend, in words.
    pub backend: String,
    /// The backend models and jobs run on.
    pub backend_kind: BackendKind,
    /// Batching of every model's worker.
    pub batch: BatchConfig,
    /// The models: the one the server started with, then the registered ones.
    pub models: ModelRegistry,
    /// Where `POST /api/models` and eval jobs may read checkpoints (canonical paths).
    pub model_roots: Vec<PathBuf>,
    /// Evaluations and training runs.
    pub jobs: Arc<JobManager>,
    /// The bearer token of the endpoints that start work.
    pub token: String,
    /// Why there is no model, for the 503 message.
    pub no_model_reason: String,
    /// Datasets to browse.
    pub catalog: Arc<Catalog>,
    /// Request caps.
    pub limits: Limits,
    /// Permits for concurrent maze generation.
    pub generate_permits: Arc<Semaphore>,
}

impl AppState {
    /// The message of a predict request without a model.
    pub fn no_model_message(&self) -> String {
        format!("no model is loaded: {}", self.no_model_reason)
    }
}
