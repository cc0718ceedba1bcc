//! The model worker: a dedicated thread that loads the model on the chosen backend and then
//! serves the batcher's queue until the server stops.
//!
//! Either family: a reference model (one maze size, exactly the steps asked for) or the
//! size-general one (`[arch] mixer = "local"`: each maze on its own grid, mazes of one size
//! batched together, each stopping where the model halts).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel as std_channel};
use std::sync::{Arc, Mutex};

use burn::prelude::Backend;
use trm_shared::wire::{BatcherStats, ModelInfo};
use trm_shared::maze::DEFAULT_SIZE;
use trm_shared::model::{AnyModel, GridShape, LocalTrm, MazeSize, ModelConfig, PredictOptions, Trm, predict, solve};

use super::batcher::{self, BatchConfig, BatcherHandle, PredictJob, MazeOutput, MazeRef};
use crate::backend::{BackendJob, BackendKind, with_backend};
use crate::solve::load_model_sized;

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
pub enum ModelThreadError {
    /// The model could not be loaded or does not suit serving.
    #[error("loading the model {name}: {message}")]
    Load { name: String, message: String },
    /// The worker thread could not be started.
    #[error("starting the model thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running model worker.
pub struct ModelThread {
    /// What was loaded.
    pub info: ModelInfo,
    /// The backend it runs on, in words.
    pub backend: String,
    /// The queue to it.
    pub batcher: BatcherHandle,
}

/// Loads `source` on `backend` in a new thread and starts serving batches there. Blocks until
/// the model is loaded (or failed to load). The thread ends once every [`BatcherHandle`] is dropped.
pub fn start(source: ModelSource, backend: BackendKind, config: BatchConfig) -> Result<ModelThread, ModelThreadError> {
    let (handle, rx, stats) = batcher::channel(&config);
    let (ready_tx, ready_rx) = std_channel();
    let name = source.name.clone();
    let job = Worker { source, rx, config, stats, ready: ready_tx.clone() };
    std::thread::Builder::new().name("trm-model".into()).spawn(move || {
        // with_backend fails before running the job when the backend cannot run here.
        if let Err(e) = with_backend(backend, job) {
            let _ = ready_tx.send(Err(format!("{e:#}")));
        }
    })?;
    match ready_rx.recv() {
        Ok(Ok((info, backend))) => Ok(ModelThread { info, backend, batcher: handle }),
        Ok(Err(message)) => Err(ModelThreadError::Load { name, message }),
        Err(_) => Err(ModelThreadError::Load { name, message: "the model thread ended before loading".into() }),
    }
}

type Ready = Result<(ModelInfo, String), String>;

struct Worker {
    source: ModelSource,
    rx: Receiver<PredictJob>,
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
        if info.any_size {
            tracing::info!(
                "model {} loaded on {backend_name}: size-general (mazes of any size), at most {} ACT steps",
                info.name,
                info.halt_max_steps
            );
        } else {
            tracing::info!(
                "model {} loaded on {backend_name}: {}x{} mazes, {} ACT steps",
                info.name,
                info.rows,
                info.cols,
                info.halt_max_steps
            );
        }
        let _ = ready.send(Ok((info, backend_name.to_string())));
        let max_batch = config.max_batch.max(1);
        let mut runner = |mazes: &[MazeRef<'_>], gone: &dyn Fn() -> bool| match &model {
            AnyModel::Reference(m) => run_reference(m, mazes, max_batch, &device),
            AnyModel::Local(m) => run_local(m, mazes, max_batch, &device, gone),
        };
        batcher::run_loop(&rx, &config, &stats, &mut runner);
        tracing::info!("model worker stopped");
        Ok(())
    }
}

/// Runs a reference model on mazes of its size (in its frame): every maze for exactly its
/// job's steps, in chunks of `max_batch`.
fn run_reference<B: Backend>(model: &Trm<B>, mazes: &[MazeRef<'_>], max_batch: usize, device: &B::Device) -> Result<Vec<MazeOutput>, String> {
    let steps = mazes.iter().map(|m| m.steps).max().unwrap_or(1);
    let tokens: Vec<u8> = mazes.iter().flat_map(|m| m.tokens.iter().copied()).collect();
    // Mazes all use the blank puzzle identifier 0, as in the benchmark.
    let opts = PredictOptions { steps, batch_size: max_batch, stop_when_all_halt: false, keep_logits: false };
    let preds = predict(model, &tokens, &vec![0; mazes.len()], &opts, device, |_| {}).map_err(|e| e.to_string())?;
    let seq = preds.seq_len;
    Ok(mazes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let kept: Vec<usize> = if m.keep_steps { (0..m.steps).collect() } else { vec![m.steps - 1] };
            MazeOutput {
                answers: kept.iter().map(|&s| preds.answers[s][i * seq..(i + 1) * seq].to_vec()).collect(),
                q_halt: kept.iter().map(|&s| preds.q_halt[s][i]).collect(),
                steps_run: m.steps,
                halted_at: None,
            }
        })
        .collect())
}

/// Runs the size-general model on mazes of any sizes: grouped by size, in chunks of at most
/// `max_batch` mazes, each chunk for ACT steps until every maze in it has halted or reached
/// its job's cap. A maze's answer is frozen at its halt (or cap). Stops early, leaving the
/// rest unanswered, once `gone()` (nobody waits for the answers).
pub fn run_local<B: Backend>(
    model: &LocalTrm<B>,
    mazes: &[MazeRef<'_>],
    max_batch: usize,
    device: &B::Device,
    gone: &dyn Fn() -> bool,
) -> Result<Vec<MazeOutput>, String> {
    let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, m) in mazes.iter().enumerate() {
        groups.entry((m.shape.rows, m.shape.cols)).or_default().push(i);
    }
    let mut outputs = vec![MazeOutput::default(); mazes.len()];
    for ((rows, cols), members) in groups {
        let grid = GridShape { rows, cols };
        let cells = grid.cells();
        for chunk in members.chunks(max_batch.max(1)) {
            if gone() {
                return Ok(outputs);
            }
            let tokens: Vec<u8> = chunk.iter().flat_map(|&i| mazes[i].tokens.iter().copied()).collect();
            let cap = chunk.iter().map(|&i| mazes[i].steps).max().unwrap_or(1);
            let mut done = vec![false; chunk.len()];
            solve(model, &tokens, grid, cap, device, |step, answers, q| {
                for (k, &i) in chunk.iter().enumerate() {
                    if done[k] {
                        continue;
                    }
                    let (maze, out) = (&mazes[i], &mut outputs[i]);
                    let answer = answers[k * cells..(k + 1) * cells].to_vec();
                    if maze.keep_steps || out.answers.is_empty() {
                        out.answers.push(answer);
                        out.q_halt.push(q[k]);
                    } else {
                        out.answers[0] = answer;
                        out.q_halt[0] = q[k];
                    }
                    out.steps_run = step;
                    if q[k] > 0.0 {
                        out.halted_at = Some(step);
                    }
                    done[k] = out.halted_at.is_some() || step >= maze.steps;
                }
                !done.iter().all(|&d| d) && !gone()
            })
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(outputs)
}

/// Reads the config and checkpoint and builds the model of either family. A reference model
/// whose config and weights do not give its size serves the benchmark's 30x30; the
/// size-general one takes any size, and 30x30 is what generated mazes default to.
fn load<B: Backend>(source: &ModelSource, device: &B::Device) -> Result<(AnyModel<B>, ModelInfo), String> {
    let model = load_model_sized::<B>(&source.checkpoint, &source.config, MazeSize::Default(DEFAULT_SIZE), device)
        .map_err(|e| format!("{e:#}"))?;
    let config = model.config();
    let side = config.side().unwrap_or(DEFAULT_SIZE);
    let (hidden_size, l_layers, h_cycles, l_cycles) = match &config {
        ModelConfig::Reference { config: c, .. } => (c.hidden_size, c.l_layers, c.h_cycles, c.l_cycles),
        ModelConfig::Local { config: c } => (c.hidden_size, c.l_layers, c.h_cycles, c.l_cycles),
    };
    let info = ModelInfo {
        name: source.name.clone(),
        checkpoint: source.checkpoint.display().to_string(),
        config: source.config.display().to_string(),
        rows: side,
        cols: side,
        any_size: config.side().is_none(),
        halt_max_steps: config.halt_max_steps(),
        hidden_size,
        l_layers,
        h_cycles,
        l_cycles,
    };
    Ok((model, info))
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::prelude::{Tensor, TensorData};
    use trm_shared::model::{Cpu, LocalConfig, RandomInit};

    use super::*;

    fn tiny() -> LocalTrm<Cpu> {
        let cfg = LocalConfig { hidden_size: 8, expansion: 2.0, l_layers: 1, h_cycles: 1, l_cycles: 1, ..LocalConfig::default() };
        LocalTrm::build(&cfg, &mut RandomInit::new(9), &Default::default()).unwrap()
    }

    fn maze(shape: GridShape, seed: usize) -> Vec<u8> {
        (0..shape.cells()).map(|i| (1 + (i * 7 + seed) % 4) as u8).collect()
    }

    #[test]
    fn the_size_general_model_runs_mazes_grouped_by_size_each_to_its_own_cap() {
        let model = tiny();
        let device = Default::default();
        let (a, b) = (GridShape { rows: 3, cols: 5 }, GridShape { rows: 4, cols: 4 });
        let tokens: Vec<Vec<u8>> = vec![maze(a, 0), maze(b, 1), maze(a, 2), maze(b, 3)];
        let refs: Vec<MazeRef<'_>> = [(a, 3, true), (b, 2, false), (a, 5, false), (b, 4, true)]
            .iter()
            .zip(&tokens)
            .map(|(&(shape, steps, keep_steps), t)| MazeRef { tokens: t, shape, steps, keep_steps })
            .collect();
        // max_batch 1: every maze in a chunk of its own; 8: both of a size together.
        for max_batch in [1, 8] {
            let out = run_local(&model, &refs, max_batch, &device, &|| false).unwrap();
            // The fresh Q head says -5 everywhere: no maze halts, each runs to its cap.
            let runs: Vec<(usize, Option<usize>, usize)> = out.iter().map(|o| (o.steps_run, o.halted_at, o.answers.len())).collect();
            assert_eq!(runs, vec![(3, None, 3), (2, None, 1), (5, None, 1), (4, None, 4)], "max_batch {max_batch}");
            for (i, m) in refs.iter().enumerate() {
                // The same maze alone, step by step.
                let mut alone = Vec::new();
                solve(&model, m.tokens, m.shape, m.steps, &device, |_, answers, _| {
                    alone.push(answers.to_vec());
                    true
                })
                .unwrap();
                let kept = if m.keep_steps { alone.clone() } else { vec![alone[m.steps - 1].clone()] };
                assert_eq!(out[i].answers, kept, "maze {i}, max_batch {max_batch}");
                assert!(out[i].answers.iter().all(|a| a.len() == m.shape.cells()));
            }
        }
        // Nobody waiting: nothing runs.
        let out = run_local(&model, &refs, 8, &device, &|| true).unwrap();
        assert!(out.iter().all(|o| o.answers.is_empty() && o.steps_run == 0));
    }

    #[test]
    fn a_maze_stops_where_the_model_halts() {
        let mut model = tiny();
        let device = Default::default();
        model.q_head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![5.0f32], [1]), &device)));
        let shape = GridShape { rows: 2, cols: 3 };
        let t = maze(shape, 0);
        let refs = [MazeRef { tokens: &t, shape, steps: 50, keep_steps: true }];
        let out = run_local(&model, &refs, 4, &device, &|| false).unwrap();
        assert_eq!((out[0].steps_run, out[0].halted_at, out[0].answers.len()), (1, Some(1), 1));
        assert!(out[0].q_halt[0] > 0.0);
    }
}
