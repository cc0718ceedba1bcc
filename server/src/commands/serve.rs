//! `trm serve`: the HTTP API over the model and the datasets, and the web app, in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use trm_server::api::{self, BatchConfig, Limits, ModelSource, ServeConfig};
use trm_server::backend::{BackendKind, Matmul};
use trm_server::backend::devices::DeviceSet;

/// Where the committed models live, one directory each (model.safetensors + config.toml).
const MODELS_DIR: &str = "public/models";
/// The default model's directory under [`MODELS_DIR`] (scripts/train-default-model.sh writes it).
const DEFAULT_MODEL: &str = "default";

/// Arguments of `trm serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Checkpoint to serve (reference `step_N` or safetensors, or a size-general model's
    /// safetensors with a config whose [arch] says mixer = "local"). Default: the committed
    /// models, each directory of public/models with model.safetensors and config.toml, named
    /// after it, `default` first: the size-general model, which answers a maze of any size up
    /// to 64x64 on its own grid and halts per maze on its own. Predict requests without
    /// ?model= go to the default when it takes their mazes, else to the first model that does.
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
    /// Connections served at once; more clients wait in the listen queue.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers; idle kept-alive connections are
    /// closed after as long.
    #[arg(long, default_value_t = 20)]
    pub header_read_timeout_secs: u64,
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
    /// A host name the server answers besides its address's own (repeatable; `*`: any). On a
    /// loopback address only localhost, 127.0.0.1 and ::1 are answered by default, so that no
    /// web page can reach the API by pointing its own name at this machine (DNS rebinding);
    /// on any other address every name is, unless this lists some.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// Also for the eval and training jobs this server runs.
    #[command(flatten)]
    pub matmul: Matmul,
}

/// Runs `trm serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Training jobs would fail one by one on a device set the machine does not have.
    trm_server::backend::probe(args.backend, &args.devices)?;
    args.matmul.apply(args.backend)?;
    let (models, no_model_reason) = model_sources(&args)?;
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
    let mut config = ServeConfig {
        token,
        state_dir: args.state_dir.clone(),
        model_roots,
        models,
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
            max_connections: args.max_connections.max(1),
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs.max(1)),
            ..Limits::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        config.limits.allowed_hosts = api::AllowedHosts::for_bind(addr.ip(), &args.allowed_hosts);
        if let api::AllowedHosts::Only(names) = &config.limits.allowed_hosts {
            tracing::info!("answering the hosts {} (--allowed-host adds one)", names.join(", "));
        }
        for m in &config.models {
            tracing::info!("serving {} ({}), {} matmuls", m.name, m.checkpoint.display(), args.matmul.precision);
        }
        if config.models.is_empty() {
            tracing::warn!("no model loaded: {}", config.no_model_reason);
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

/// The models to load: --model/--config, else the committed models (the default first).
fn model_sources(args: &ServeArgs) -> anyhow::Result<(Vec<ModelSource>, String)> {
    if let (Some(checkpoint), Some(config)) = (&args.model, &args.config) {
        for path in [checkpoint, config] {
            if !path.is_file() {
                bail!("{} does not exist", path.display());
            }
        }
        let name = checkpoint.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
        return Ok((vec![ModelSource { name, checkpoint: checkpoint.clone(), config: config.clone() }], String::new()));
    }
    let models = trm_server::serving::registry::committed_models(Path::new(MODELS_DIR), DEFAULT_MODEL)
        .with_context(|| format!("listing the committed models in {MODELS_DIR}"))?;
    let reason = format!(
        "{} (relative to {}) has no model directory with model.safetensors and config.toml; start `trm serve --model FILE --config FILE`, or register one with POST /api/models",
        MODELS_DIR,
        std::env::current_dir().map_or_else(|_| "the working directory".into(), |d| d.display().to_string())
    );
    Ok((models, reason))
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
