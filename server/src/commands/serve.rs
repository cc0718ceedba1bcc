//! `trm serve`: the HTTP API over the model and the datasets, and the web app, in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use trm_server::api::{self, BatchConfig, Limits, ModelSource, ServeConfig};
use trm_server::backend::BackendKind;
use trm_server::train::devices::DeviceSet;

/// Where the default model lives (written by the training work).
const DEFAULT_MODEL_DIR: &str = "public/models/default";

/// Arguments of `trm serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Checkpoint to serve (reference `step_N` or safetensors). Default:
    /// public/models/default/model.safetensors when it exists; else no model is loaded.
    #[arg(long, requires = "config")]
    pub model: Option<PathBuf>,
    /// Config of --model (reference `all_config.yaml` or our TOML).
    #[arg(long, requires = "model")]
    pub config: Option<PathBuf>,
    /// Directory of datasets to browse (repeatable). Default: data/ and ../shared/data,
    /// those that exist.
    #[arg(long = "data")]
    pub data: Vec<PathBuf>,
    /// Backend of the model.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Devices of training jobs, one data-parallel worker each (as `trm train --devices`):
    /// GPU indices, or on the CPU one worker thread per entry. One training job runs at a
    /// time on this device set.
    #[arg(long, default_value = "0")]
    pub devices: DeviceSet,
    /// The built web app (Trunk's output), served at /.
    #[arg(long, default_value = "dist")]
    pub dist: PathBuf,
    /// Most mazes per forward batch.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Milliseconds the batcher waits for more requests after the first of a batch.
    #[arg(long, default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// Most mazes in one predict request.
    #[arg(long, default_value_t = 64)]
    pub max_mazes_per_request: usize,
    /// Seconds before a request is answered 408.
    #[arg(long, default_value_t = 120)]
    pub request_timeout_secs: u64,
    /// Bearer token of the endpoints that start work (train, eval, model registration,
    /// cancel). Default: a random one, printed at start.
    #[arg(long, env = "TRM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where job records (SQLite) and training runs are kept.
    #[arg(long, default_value = "data/state")]
    pub state_dir: PathBuf,
    /// Directory whose checkpoints `POST /api/models` and eval jobs may name (repeatable).
    /// Default: public/models and the state directory's runs/.
    #[arg(long = "model-root")]
    pub model_roots: Vec<PathBuf>,
}

/// Runs `trm serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Training jobs would fail one by one on a device set the machine does not have.
    trm_server::train::run::check_devices(args.backend, &args.devices)?;
    let (model, no_model_reason) = model_source(&args)?;
    let data_dirs = if args.data.is_empty() {
        ["data", "../shared/data"].iter().map(PathBuf::from).filter(|p| p.is_dir()).collect()
    } else {
        args.data.clone()
    };
    let (token, generated) = match args.token.clone().filter(|t| !t.trim().is_empty()) {
        Some(token) => (token.trim().to_string(), false),
        None => (api::auth::generate_token().context("generating the API token")?, true),
    };
    let model_roots = if args.model_roots.is_empty() {
        vec![PathBuf::from("public/models"), args.state_dir.join("runs")]
    } else {
        args.model_roots.clone()
    };
    let config = ServeConfig {
        token,
        state_dir: args.state_dir.clone(),
        model_roots,
        model,
        no_model_reason,
        backend: args.backend,
        train_devices: args.devices.clone(),
        data_dirs,
        dist: args.dist.clone(),
        batch: BatchConfig {
            max_batch: args.max_batch.max(1),
            wait: Duration::from_millis(args.batch_wait_ms),
            ..BatchConfig::default()
        },
        limits: Limits {
            max_mazes_per_request: args.max_mazes_per_request.max(1),
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            ..Limits::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        match &config.model {
            Some(m) => tracing::info!("serving {} ({})", m.name, m.checkpoint.display()),
            None => tracing::warn!("no model loaded: {}", config.no_model_reason),
        }
        let roots: Vec<String> = config.data_dirs.iter().map(|d| d.display().to_string()).collect();
        tracing::info!("datasets from: {}", if roots.is_empty() { "(none)".into() } else { roots.join(", ") });
        if !config.dist.is_dir() {
            tracing::warn!("{} not found: the web app is not served (build it with `trunk build --release`)", config.dist.display());
        }
        if generated {
            // Printed, not logged: the operator needs it whatever the log filter.
            eprintln!("API token (Authorization: Bearer ...) for train, eval, model registration and cancel: {}", config.token);
        }
        tracing::info!("jobs and runs in {}", config.state_dir.display());
        tracing::info!("listening on http://{addr} (API under /api, docs at /docs)");
        api::serve(config, listener, shutdown_signal()).await.context("serving")?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The model to load: --model/--config, else the default model when its files exist.
fn model_source(args: &ServeArgs) -> anyhow::Result<(Option<ModelSource>, String)> {
    if let (Some(checkpoint), Some(config)) = (&args.model, &args.config) {
        for path in [checkpoint, config] {
            if !path.is_file() {
                bail!("{} does not exist", path.display());
            }
        }
        let name = checkpoint.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
        return Ok((Some(ModelSource { name, checkpoint: checkpoint.clone(), config: config.clone() }), String::new()));
    }
    let dir = Path::new(DEFAULT_MODEL_DIR);
    let (checkpoint, config) = (dir.join("model.safetensors"), dir.join("config.toml"));
    if checkpoint.is_file() && config.is_file() {
        return Ok((Some(ModelSource { name: "default".into(), checkpoint, config }), String::new()));
    }
    let reason = format!(
        "{} (relative to {}) has no model.safetensors and config.toml; start `trm serve --model FILE --config FILE`, or register one with POST /api/models",
        dir.display(),
        std::env::current_dir().map_or_else(|_| "the working directory".into(), |d| d.display().to_string())
    );
    Ok((None, reason))
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
