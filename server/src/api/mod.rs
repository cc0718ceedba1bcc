//! The HTTP server of `trm serve`: the API over the model and the datasets, and the web app.
//!
//! - [`connections`]: the accept loop (connection cap, header-read timeout).
//! - [`router`]: routes and safety layers (body limit, timeout, [`hosts`]); [`openapi`]: the document.
//! - [`state`]: what handlers share, and the request [`Limits`]; [`auth`]: the bearer token.
//! - [`body`]: JSON bodies ([`body::JsonBody`]); [`error`]: the error answer and the one
//!   mapping of domain errors to statuses.
//! - the models themselves run in [`crate::serving`] (no HTTP there).
//! - one file per endpoint group: [`health`], [`models`], [`predict`], [`generate`],
//!   [`datasets`] (over the [`catalog`]), [`jobs`] (over [`crate::jobs`]), [`static_files`].

pub mod auth;
pub mod body;
pub mod catalog;
pub mod connections;
pub mod datasets;
pub mod error;
pub mod generate;
pub mod health;
pub mod hosts;
pub mod jobs;
pub mod maze_input;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod router;
pub mod state;
pub mod static_files;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use crate::serving::batcher::BatchConfig;
pub use crate::serving::model_thread::{ModelSource, ModelThreadError};
pub use hosts::AllowedHosts;
pub use state::Limits;

use crate::backend::BackendKind;
use crate::serving::model_roots::resolve_under_roots;
use crate::jobs::{JobError, JobManager};
use crate::backend::devices::DeviceSet;
use state::AppState;

/// Everything `trm serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The models to serve, the default first; none serves without a model (predict answers 503).
    pub models: Vec<ModelSource>,
    /// Why there is no model, shown in the 503 message when `models` is empty.
    pub no_model_reason: String,
    /// Backend of the model and of training jobs.
    pub backend: BackendKind,
    /// Devices of training jobs (`--devices`; see `trm train`).
    pub train_devices: DeviceSet,
    /// Directories holding dataset directories, searched in order.
    pub data_dirs: Vec<PathBuf>,
    /// The built web app.
    pub dist: PathBuf,
    /// Dynamic batching.
    pub batch: BatchConfig,
    /// Request caps.
    pub limits: Limits,
    /// The bearer token of the endpoints that start work.
    pub token: String,
    /// Where the job database and the training runs live.
    pub state_dir: PathBuf,
    /// Directories whose checkpoints `POST /api/models` and eval jobs may name.
    pub model_roots: Vec<PathBuf>,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model could not be loaded.
    #[error(transparent)]
    ModelThread(#[from] ModelThreadError),
    /// Accepting connections failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// The loading task failed.
    #[error("loading the model: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The job database could not be opened.
    #[error("opening the job records in the state directory: {0}")]
    Jobs(#[from] JobError),
}

/// Loads the models and opens the job records, then serves on `listener` until `shutdown`
/// completes. Then running jobs are stopped (a training run writes a checkpoint) and marked
/// interrupted, and requests in flight finish, before this returns.
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let backend_kind = config.backend;
    let registry = crate::serving::registry::ModelRegistry::default();
    let mut backend = format!("{backend_kind:?}").to_lowercase();
    for source in config.models.clone() {
        let batch = config.batch.clone();
        let loading = source.clone();
        let thread = tokio::task::spawn_blocking(move || crate::serving::model_thread::start(loading, backend_kind, batch)).await??;
        backend = thread.backend;
        registry
            .insert(crate::serving::registry::LoadedModel { info: thread.info, source, batcher: thread.batcher })
            .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
    }
    let (state_dir, kind, devices) = (config.state_dir.clone(), backend_kind, config.train_devices.clone());
    let jobs = tokio::task::spawn_blocking(move || JobManager::open(&state_dir, kind, devices)).await??;
    // Absolute now (the working directory could change); resolved at each request.
    let model_roots: Vec<PathBuf> = config.model_roots.iter().map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone())).collect();
    let state = Arc::new(AppState {
        backend,
        backend_kind,
        batch: config.batch.clone(),
        models: registry,
        model_roots,
        jobs: jobs.clone(),
        token: config.token.clone(),
        no_model_reason: config.no_model_reason.clone(),
        catalog: Arc::new(catalog::Catalog::new(config.data_dirs.clone())),
        limits: config.limits.clone(),
        generate_permits: Arc::new(Semaphore::new(config.limits.max_concurrent_generate.max(1))),
        event_stream_permits: Arc::new(Semaphore::new(config.limits.max_event_streams.max(1))),
    });
    reload_registered_models(&state).await;
    let app = router::router(state, &config.dist);
    let stopping_jobs = jobs.clone();
    // Jobs are told first: their event streams end with the final status, so that the
    // connections following them can close and the graceful shutdown completes.
    let shutdown = async move {
        shutdown.await;
        stopping_jobs.begin_shutdown();
    };
    connections::serve_connections(listener, app, &config.limits, shutdown).await?;
    jobs.begin_shutdown();
    tokio::task::spawn_blocking(move || jobs.join_all()).await?;
    // The router and its state are gone now; model threads end once their queues close.
    Ok(())
}

/// Serves again the models registered before a restart; those that no longer load, or lie
/// outside the model roots now, are skipped with a warning.
async fn reload_registered_models(state: &AppState) {
    let stored = match state.jobs.models() {
        Ok(stored) => stored,
        Err(e) => return tracing::warn!("registered models not reloaded: {e}"),
    };
    for m in stored {
        let paths = resolve_under_roots(&m.checkpoint, &state.model_roots, "checkpoint")
            .and_then(|c| Ok((c, resolve_under_roots(&m.config, &state.model_roots, "config")?)))
            .map_err(error::ApiError::from);
        let loaded = match paths {
            Ok((checkpoint, config)) => {
                models::load_and_insert(state, ModelSource { name: m.name.clone(), checkpoint, config }).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match loaded {
            Ok(()) => tracing::info!("serving registered model {}", m.name),
            Err(e) => tracing::warn!("registered model {} not served: {}", m.name, e.message),
        }
    }
}
