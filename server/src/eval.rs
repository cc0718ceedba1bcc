//! Scoring a checkpoint on a dataset split, as the reference scores it (every cell equals the
//! label after the last ACT step), plus a fairer "valid shortest path" score, the accuracy
//! after each ACT step and halting statistics. `trm eval` and the server's eval jobs run it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use burn::prelude::Backend;
use serde::{Deserialize, Serialize};
use trm_shared::maze::check_answer;
use trm_shared::model::{GridShape, PredictOptions, Predictions};

use crate::backend::{BackendJob, BackendKind, with_backend};
use crate::inputs::{Inputs, read_inputs};
use crate::solve::load_model;

/// What to evaluate, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalSpec {
    /// A reference `step_N` file (torch.save) or safetensors.
    pub checkpoint: PathBuf,
    /// The reference's `all_config.yaml` or our TOML.
    pub config: PathBuf,
    /// A split directory (`all__inputs.npy`, `all__labels.npy`, ...).
    pub split_dir: PathBuf,
    /// Mazes per forward pass.
    pub batch_size: usize,
    /// ACT steps (default: the model's `halt_max_steps`).
    pub steps: Option<usize>,
    /// Only the first N mazes.
    pub limit: Option<usize>,
    /// Backend.
    pub backend: BackendKind,
    /// Threads running batches side by side, each with its own copy of the model (on the
    /// CPU, one per core; a GPU runs one).
    pub workers: usize,
}

/// Why an evaluation did not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The split or the options cannot be evaluated.
    #[error("{0}")]
    Input(String),
    /// The model could not be loaded or run.
    #[error("{0}")]
    Model(String),
    /// Stopped on request before the end.
    #[error("stopped after {done} of {total} mazes")]
    Stopped {
        /// Mazes evaluated.
        done: usize,
        /// Mazes asked for.
        total: usize,
    },
}

/// Evaluates `spec`; `progress(done, total)` is called after each batch, and `stop`, when
/// set, ends the evaluation after the batch in flight.
pub fn run_eval(spec: &EvalSpec, progress: &mut dyn FnMut(usize, usize), stop: Option<&AtomicBool>) -> Result<EvalReport, EvalError> {
    // The backend first: an unusable one is the same error whatever the data.
    crate::backend::probe(spec.backend, &Default::default()).map_err(|e| EvalError::Model(format!("{e:#}")))?;
    let mut inputs = read_inputs(&spec.split_dir).map_err(|e| EvalError::Input(format!("{e:#}")))?;
    if inputs.labels.is_none() {
        return Err(EvalError::Input(format!("{} is not a dataset split (no labels)", spec.split_dir.display())));
    }
    if let Some(n) = spec.limit {
        inputs.truncate(n);
    }
    if inputs.len() == 0 {
        return Err(EvalError::Input(format!("no mazes in {}", spec.split_dir.display())));
    }
    if spec.batch_size == 0 || spec.steps == Some(0) {
        return Err(EvalError::Input("batch_size and steps must be at least 1".into()));
    }
    let job = Job { spec, inputs, progress, stop };
    match with_backend(spec.backend, job) {
        Ok(result) => result,
        Err(e) => Err(EvalError::Model(format!("{e:#}"))),
    }
}

struct Job<'a> {
    spec: &'a EvalSpec,
    inputs: Inputs,
    progress: &'a mut dyn FnMut(usize, usize),
    stop: Option<&'a AtomicBool>,
}

impl BackendJob for Job<'_> {
    type Output = Result<EvalReport, EvalError>;

    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<Self::Output> {
        let Job { spec, inputs, progress, stop } = self;
        let model = load_model::<B>(&spec.checkpoint, &spec.config, inputs.seq_len, &device)?;
        let steps = spec.steps.unwrap_or(model.halt_max_steps());
        // The reference is scored after exactly `steps` ACT steps, as its evaluation runs. The
        // size-general model halts on its own: by default each maze stops where its Q head says
        // so (at most halt_max_steps); with `steps` given, every maze runs all of them, to score
        // each step (the halting statistics still say where the Q head would have stopped).
        let halt = model.is_local() && spec.steps.is_none();
        let opts = PredictOptions { steps, batch_size: spec.batch_size, stop_when_all_halt: halt, keep_logits: false };
        let (n, seq) = (inputs.len(), inputs.seq_len);
        tracing::info!("evaluating {n} mazes of {}, {steps} ACT steps, on {backend_name}", spec.split_dir.display());
        // Batch by batch, so that a stop request takes effect between batches; `workers`
        // threads take the batches in turn and the answers are merged in the mazes' order.
        let grid = GridShape { rows: inputs.shape.0, cols: inputs.shape.1 };
        let starts: Vec<usize> = (0..n).step_by(spec.batch_size).collect();
        let workers = spec.workers.clamp(1, starts.len());
        let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
        let stopped = || stop.is_some_and(|s| s.load(Ordering::Relaxed)) || failed.load(Ordering::Relaxed);
        let mut all = Predictions::default();
        let began = Instant::now();
        let merged = std::thread::scope(|scope| -> anyhow::Result<usize> {
            let (tx, rx) = mpsc::channel();
            for _ in 0..workers {
                let (tx, model, starts, inputs, opts, device) = (tx.clone(), model.clone(), &starts, &inputs, &opts, &device);
                let (next, failed, stopped) = (&next, &failed, &stopped);
                scope.spawn(move || {
                    while !stopped() {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&start) = starts.get(k) else { break };
                        let end = (start + opts.batch_size).min(n);
                        let part = model.predict(&inputs.tokens[start * seq..end * seq], &inputs.puzzle_identifiers[start..end], grid, opts, device, |_| {});
                        failed.fetch_or(part.is_err(), Ordering::Relaxed);
                        if tx.send((k, part)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let (mut pending, mut merged) = (std::collections::BTreeMap::new(), 0);
            for (k, part) in rx {
                pending.insert(k, part?);
                while let Some(part) = pending.remove(&merged) {
                    merge(&mut all, part, n * seq, n);
                    merged += 1;
                    progress((starts[merged - 1] + spec.batch_size).min(n), n);
                }
            }
            Ok(merged)
        })?;
        if merged < starts.len() {
            return Ok(Err(EvalError::Stopped { done: starts.get(merged).copied().unwrap_or(n), total: n }));
        }
        let seconds = began.elapsed().as_secs_f64();
        let data = spec.split_dir.display().to_string();
        Ok(score(&inputs, &all.answers, &all.q_halt, seconds, backend_name, &spec.checkpoint, data))
    }
}

/// Appends a batch's answers and Q values after each step to `all`. A size-general model's
/// batch runs until its mazes halt, so batches may run different numbers of steps: a maze
/// keeps its last answer over the steps it did not run (the reference model's batches all run
/// the same steps).
fn merge(all: &mut Predictions, part: Predictions, cells: usize, rows: usize) {
    while all.answers.len() < part.answers.len() {
        let answers = all.answers.last().cloned().unwrap_or_else(|| Vec::with_capacity(cells));
        let q = all.q_halt.last().cloned().unwrap_or_else(|| Vec::with_capacity(rows));
        all.answers.push(answers);
        all.q_halt.push(q);
    }
    let last = part.answers.len() - 1;
    for (s, (a, q)) in all.answers.iter_mut().zip(all.q_halt.iter_mut()).enumerate() {
        a.extend_from_slice(&part.answers[s.min(last)]);
        q.extend_from_slice(&part.q_halt[s.min(last)]);
    }
}

/// Scores after one ACT step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepScores {
    /// 1-based ACT step.
    pub step: usize,
    /// Share of mazes whose every cell equals the label.
    pub exact_accuracy: f64,
    /// Share of cells equal to the label.
    pub token_accuracy: f64,
    /// Share of mazes answered with a valid shortest path (any optimal path).
    pub valid_shortest_accuracy: f64,
    /// Mean q_halt logit.
    pub mean_q_halt: f64,
    /// Share of mazes with q_halt > 0 at this step.
    pub q_halt_positive: f64,
}

/// Halting behaviour of the Q head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HaltingStats {
    /// Share of mazes whose q_halt turned positive at some step.
    pub halted_fraction: f64,
    /// Mean (over those mazes) of the first step with q_halt > 0.
    pub mean_first_halt_step: Option<f64>,
    /// Count of mazes by first step with q_halt > 0 (index 0 = step 1); never = not counted.
    pub first_halt_histogram: Vec<usize>,
    /// Exact accuracy if each maze stopped at its first q_halt > 0 (else the last step).
    pub exact_accuracy_at_first_halt: f64,
}

/// The whole evaluation, as `--json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    /// Mazes evaluated.
    pub count: usize,
    /// After the last step (the reference's `exact_accuracy`).
    pub exact_accuracy: f64,
    /// After the last step.
    pub token_accuracy: f64,
    /// After the last step.
    pub valid_shortest_accuracy: f64,
    /// ACT steps run.
    pub steps: usize,
    /// Scores after each step.
    pub per_step: Vec<StepScores>,
    /// Q-head halting statistics.
    pub halting: HaltingStats,
    /// Throughput.
    pub mazes_per_second: f64,
    /// Wall time of the model runs.
    pub seconds: f64,
    /// Backend used.
    pub backend: String,
    /// How the CPU kernels' matmuls multiplied (`--matmul`: f32 or bf16); a GPU computes in
    /// the config's `forward_dtype` whatever this says.
    pub matmul: String,
    /// Checkpoint evaluated.
    pub checkpoint: String,
    /// Split directory evaluated.
    pub data: String,
}

/// Scores per-step answers against the labels.
fn score(
    inputs: &Inputs,
    answers: &[Vec<u8>],
    q_halt: &[Vec<f32>],
    seconds: f64,
    backend: &str,
    checkpoint: &Path,
    data: String,
) -> Result<EvalReport, EvalError> {
    let n = inputs.len();
    let seq = inputs.seq_len;
    let labels = inputs.labels.as_ref().map(Vec::as_slice).unwrap_or_default();
    let mazes: Vec<_> = (0..n).map(|i| inputs.grid_of(&inputs.tokens, i).ok()).collect();
    let mut per_step = Vec::new();
    let mut exact_by_step = vec![vec![false; n]; answers.len()];
    for (s, answer) in answers.iter().enumerate() {
        let (mut exact, mut tokens, mut shortest, mut q_sum, mut q_pos) = (0usize, 0usize, 0usize, 0.0f64, 0usize);
        for i in 0..n {
            let a = &answer[i * seq..(i + 1) * seq];
            let l = &labels[i * seq..(i + 1) * seq];
            let same = a.iter().zip(l).filter(|(x, y)| x == y).count();
            tokens += same;
            if same == seq {
                exact += 1;
                exact_by_step[s][i] = true;
            }
            let ok = match (&mazes[i], inputs.grid_of(answer, i)) {
                (Some(maze), Ok(ans)) => check_answer(maze, &ans).map(|c| c.shortest).unwrap_or(false),
                _ => false,
            };
            shortest += usize::from(ok);
            let q = q_halt[s][i];
            q_sum += f64::from(q);
            q_pos += usize::from(q > 0.0);
        }
        per_step.push(StepScores {
            step: s + 1,
            exact_accuracy: exact as f64 / n as f64,
            token_accuracy: tokens as f64 / (n * seq) as f64,
            valid_shortest_accuracy: shortest as f64 / n as f64,
            mean_q_halt: q_sum / n as f64,
            q_halt_positive: q_pos as f64 / n as f64,
        });
    }
    let steps = answers.len();
    let mut histogram = vec![0usize; steps];
    let mut first_sum = 0usize;
    let mut halted = 0usize;
    let mut exact_at_halt = 0usize;
    for i in 0..n {
        let first = (0..steps).find(|&s| q_halt[s][i] > 0.0);
        if let Some(s) = first {
            histogram[s] += 1;
            first_sum += s + 1;
            halted += 1;
        }
        exact_at_halt += usize::from(exact_by_step[first.unwrap_or(steps - 1)][i]);
    }
    let last = per_step.last().cloned().ok_or_else(|| EvalError::Input("no ACT steps were run".into()))?;
    Ok(EvalReport {
        count: n,
        exact_accuracy: last.exact_accuracy,
        token_accuracy: last.token_accuracy,
        valid_shortest_accuracy: last.valid_shortest_accuracy,
        steps,
        per_step,
        halting: HaltingStats {
            halted_fraction: halted as f64 / n as f64,
            mean_first_halt_step: (halted > 0).then(|| first_sum as f64 / halted as f64),
            first_halt_histogram: histogram,
            exact_accuracy_at_first_halt: exact_at_halt as f64 / n as f64,
        },
        mazes_per_second: n as f64 / seconds.max(1e-9),
        seconds,
        backend: backend.to_string(),
        matmul: trm_shared::model::cpu::linear::matmul_precision().to_string(),
        checkpoint: checkpoint.display().to_string(),
        data,
    })
}
