//! The model worker: a dedicated thread that loads the model on the chosen backend and then
//! serves the batcher's queue until the server stops.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel as std_channel};
use std::sync::{Arc, Mutex};

use burn::prelude::Backend;
use trm_shared::api::{BatcherStats, ModelInfo};
use trm_shared::maze::{DEFAULT_SIZE, square_side};
use trm_shared::model::{PredictOptions, StateDict, Trm, TrmConfig, predict};

use super::batcher::{self, BatchConfig, BatcherHandle, Job};
use crate::backend::{BackendJob, BackendKind, with_backend};

/// A checkpoint and the config to build it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSource {
    /// Short name shown by the API.
    pub name: String,
    /// A reference `step_N` file (torch.save) or safetensors.
    pub checkpoint: PathBuf,
    /// The reference's `all_config.yaml` or our TOML.
    pub config: PathBuf,
}

/// Why the model worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model could not be loaded or does not suit serving.
    #[error("loading the model {name}: {message}")]
    Load { name: String, message: String },
    /// The worker thread could not be started.
    #[error("starting the model thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running model worker.
pub struct Engine {
    /// What was loaded.
    pub info: ModelInfo,
    /// The backend it runs on, in words.
    pub backend: String,
    /// The queue to it.
    pub batcher: BatcherHandle,
}

/// Loads `source` on `backend` in a new thread and starts serving batches there. Blocks until
/// the model is loaded (or failed to load). The thread ends once every [`BatcherHandle`] is dropped.
pub fn start(source: ModelSource, backend: BackendKind, config: BatchConfig) -> Result<Engine, EngineError> {
    let (handle, rx, stats) = batcher::channel(&config);
    let (ready_tx, ready_rx) = std_channel();
    let name = source.name.clone();
    let job = Worker { source, rx, config, stats, ready: ready_tx.clone() };
    std::thread::Builder::new().name("trm-model".into()).spawn(move || {
        // with_backend fails before running the job when the backend is not built in.
        if let Err(e) = with_backend(backend, job) {
            let _ = ready_tx.send(Err(format!("{e:#}")));
        }
    })?;
    match ready_rx.recv() {
        Ok(Ok((info, backend))) => Ok(Engine { info, backend, batcher: handle }),
        Ok(Err(message)) => Err(EngineError::Load { name, message }),
        Err(_) => Err(EngineError::Load { name, message: "the model thread ended before loading".into() }),
    }
}

type Ready = Result<(ModelInfo, String), String>;

struct Worker {
    source: ModelSource,
    rx: Receiver<Job>,
    config: BatchConfig,
    stats: Arc<Mutex<BatcherStats>>,
    ready: Sender<Ready>,
}

impl BackendJob for Worker {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<()> {
        let Worker { source, rx, config, stats, ready } = self;
        let (model, info) = match load::<B>(&source, &device) {
            Ok(loaded) => loaded,
            Err(message) => {
                let _ = ready.send(Err(message));
                return Ok(());
            }
        };
        tracing::info!(
            "model {} loaded on {backend_name}: {}x{} mazes, {} ACT steps",
            info.name,
            info.rows,
            info.cols,
            info.halt_max_steps
        );
        let _ = ready.send(Ok((info, backend_name.to_string())));
        let max_batch = config.max_batch.max(1);
        let mut runner = |tokens: &[u8], rows: usize, steps: usize| {
            // Mazes all use the blank puzzle identifier 0, as in the benchmark.
            let opts = PredictOptions { steps, batch_size: max_batch, stop_when_all_halt: false, keep_logits: false };
            predict(&model, tokens, &vec![0; rows], &opts, &device, |_| {}).map_err(|e| e.to_string())
        };
        batcher::run_loop(&rx, &config, &stats, &mut runner);
        tracing::info!("model worker stopped");
        Ok(())
    }
}

/// Reads the config and checkpoint and builds the model; the maze size comes from the config
/// or the weights, else it is the benchmark's 30x30.
fn load<B: Backend>(source: &ModelSource, device: &B::Device) -> Result<(Trm<B>, ModelInfo), String> {
    let mut cfg = TrmConfig::from_file(&source.config)
        .map_err(|e| format!("reading the config {}: {e}", source.config.display()))?;
    let sd = StateDict::read(&source.checkpoint)
        .map_err(|e| format!("reading the checkpoint {}: {e}", source.checkpoint.display()))?;
    sd.fill_config(&mut cfg).map_err(|e| e.to_string())?;
    if cfg.seq_len.is_none() {
        // RoPE models do not record their sequence length; the benchmark's mazes are 30x30.
        tracing::info!("the config gives no seq_len; serving {DEFAULT_SIZE}x{DEFAULT_SIZE} mazes");
        cfg.seq_len = Some(DEFAULT_SIZE * DEFAULT_SIZE);
    }
    let dtype = crate::backend::compute_dtype::<B>(&cfg).map_err(|e| format!("{e:#}"))?;
    let model = Trm::from_state_dict(&cfg, &sd, device)
        .map_err(|e| format!("building the model from {}: {e}", source.checkpoint.display()))?
        .with_compute_dtype(dtype);
    let c = model.config();
    let seq_len = c.require_seq_len().map_err(|e| e.to_string())?;
    let side = square_side(seq_len).map_err(|_| format!("seq_len {seq_len} is not a square maze; serving needs square mazes"))?;
    let info = ModelInfo {
        name: source.name.clone(),
        checkpoint: source.checkpoint.display().to_string(),
        config: source.config.display().to_string(),
        rows: side,
        cols: side,
        halt_max_steps: c.halt_max_steps,
        hidden_size: c.hidden_size,
        l_layers: c.l_layers,
        h_cycles: c.h_cycles,
        l_cycles: c.l_cycles,
    };
    Ok((model, info))
}
