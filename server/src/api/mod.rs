//! The HTTP server of `trm serve`: the API over the model and the datasets, and the web app.
//!
//! - [`router`]: routes and safety layers (body limit, timeout).
//! - [`state`]: what handlers share, and the request [`Limits`].
//! - [`batcher`] and [`engine`]: dynamic batching on a thread that owns the model.
//! - one file per endpoint group: [`health`], [`predict`], [`generate`], [`datasets`]
//!   (over the [`catalog`]), [`static_files`].

pub mod batcher;
pub mod body;
pub mod catalog;
pub mod datasets;
pub mod engine;
pub mod error;
pub mod generate;
pub mod health;
pub mod maze_input;
pub mod predict;
pub mod router;
pub mod state;
pub mod static_files;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use batcher::BatchConfig;
pub use engine::{EngineError, ModelSource};
pub use state::Limits;

use crate::backend::BackendKind;
use state::{AppState, LoadedModel};

/// Everything `trm serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The model to serve; `None` serves without one (predict answers 503).
    pub model: Option<ModelSource>,
    /// Why there is no model, shown in the 503 message when `model` is `None`.
    pub no_model_reason: String,
    /// Backend of the model.
    pub backend: BackendKind,
    /// Directories holding dataset directories, searched in order.
    pub data_dirs: Vec<PathBuf>,
    /// The built web app.
    pub dist: PathBuf,
    /// Dynamic batching.
    pub batch: BatchConfig,
    /// Request caps.
    pub limits: Limits,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model could not be loaded.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Accepting connections failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// The loading task failed.
    #[error("loading the model: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Loads the model, then serves on `listener` until `shutdown` completes; requests in flight
/// then finish before this returns.
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let backend_kind = config.backend;
    let (model, backend) = match config.model.clone() {
        Some(source) => {
            let batch = config.batch.clone();
            let engine = tokio::task::spawn_blocking(move || engine::start(source, backend_kind, batch)).await??;
            (Some(LoadedModel { info: engine.info, batcher: engine.batcher }), engine.backend)
        }
        None => (None, format!("{backend_kind:?}").to_lowercase()),
    };
    let state = Arc::new(AppState {
        backend,
        model,
        no_model_reason: config.no_model_reason.clone(),
        catalog: Arc::new(catalog::Catalog::new(config.data_dirs.clone())),
        limits: config.limits.clone(),
        generate_permits: Arc::new(Semaphore::new(config.limits.max_concurrent_generate.max(1))),
    });
    let app = router::router(state, &config.dist);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    // The router and its state are gone now; the model thread ends once its queue closes.
    Ok(())
}
