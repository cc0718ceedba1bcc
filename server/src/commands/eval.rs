//! `trm eval`: accuracy of a checkpoint on a dataset split, scored as the reference scores it
//! (every cell equals the label after the last ACT step), plus a fairer "valid shortest path"
//! score, the accuracy after each ACT step and halting statistics.

use std::path::PathBuf;

use anyhow::bail;
use burn::prelude::Backend;
use clap::Args;
use serde::Serialize;
use trm_shared::maze::check_answer;
use trm_shared::model::PredictOptions;

use crate::backend::{BackendJob, BackendKind, Inputs, load_model, predict_with_bar, read_inputs, with_backend};

/// Arguments of `trm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint: a reference `step_N` file (torch.save) or safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Config: the reference's `all_config.yaml` or our TOML.
    #[arg(long)]
    pub config: PathBuf,
    /// Dataset directory holding the split folders (e.g. data/maze-30x30-hard-1k).
    #[arg(long)]
    pub data: PathBuf,
    /// Split to evaluate.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Mazes per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// ACT steps (default: halt_max_steps, as the reference).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Only the first N mazes.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// Scores after one ACT step.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Serialize)]
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
    /// Checkpoint evaluated.
    pub checkpoint: String,
    /// Split directory evaluated.
    pub data: String,
}

/// Runs `trm eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let dir = args.data.join(&args.split);
    let dir = if dir.is_dir() { dir } else { args.data.clone() };
    let mut inputs = read_inputs(&dir)?;
    if inputs.labels.is_none() {
        bail!("{} is not a dataset split (no labels)", dir.display());
    }
    if let Some(n) = args.limit {
        inputs.truncate(n);
    }
    if inputs.len() == 0 {
        bail!("no mazes in {}", dir.display());
    }
    let backend = args.backend;
    let report = with_backend(backend, Job { args, inputs, data: dir.display().to_string() })?;
    Ok(report)
}

struct Job {
    args: EvalArgs,
    inputs: Inputs,
    data: String,
}

impl BackendJob for Job {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<()> {
        let Job { args, inputs, data } = self;
        let model = load_model::<B>(&args.checkpoint, &args.config, inputs.seq_len, &device)?;
        let steps = args.steps.unwrap_or(model.config().halt_max_steps);
        let opts = PredictOptions { steps, batch_size: args.batch_size, stop_when_all_halt: false, keep_logits: false };
        let n = inputs.len();
        if !args.json {
            tracing::info!("evaluating {n} mazes of {data}, {steps} ACT steps, on {backend_name}");
        }
        let (preds, seconds) = predict_with_bar(&model, &inputs, &opts, &device, "eval")?;
        let report = score(&inputs, &preds.answers, &preds.q_halt, seconds, backend_name, &args, data)?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_report(&report);
        }
        Ok(())
    }
}

/// Scores per-step answers against the labels.
fn score(
    inputs: &Inputs,
    answers: &[Vec<u8>],
    q_halt: &[Vec<f32>],
    seconds: f64,
    backend: &str,
    args: &EvalArgs,
    data: String,
) -> anyhow::Result<EvalReport> {
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
    let last = per_step.last().cloned().ok_or_else(|| anyhow::anyhow!("no steps were run"))?;
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
        checkpoint: args.checkpoint.display().to_string(),
        data,
    })
}

fn print_report(r: &EvalReport) {
    println!("{} mazes from {}, checkpoint {}", r.count, r.data, r.checkpoint);
    println!("exact accuracy (all cells = label):   {:6.2}%", 100.0 * r.exact_accuracy);
    println!("valid shortest path (any optimum):   {:6.2}%", 100.0 * r.valid_shortest_accuracy);
    println!("token accuracy:                      {:6.2}%", 100.0 * r.token_accuracy);
    println!();
    println!("step  exact%  shortest%  token%  mean q_halt  q_halt>0");
    for s in &r.per_step {
        println!(
            "{:>4}  {:>6.2}  {:>9.2}  {:>6.2}  {:>11.3}  {:>7.1}%",
            s.step,
            100.0 * s.exact_accuracy,
            100.0 * s.valid_shortest_accuracy,
            100.0 * s.token_accuracy,
            s.mean_q_halt,
            100.0 * s.q_halt_positive
        );
    }
    println!();
    let h = &r.halting;
    match h.mean_first_halt_step {
        Some(m) => println!(
            "q_halt turns positive for {:.1}% of mazes, first at step {m:.2} on average; stopping there would score {:.2}% exact",
            100.0 * h.halted_fraction,
            100.0 * h.exact_accuracy_at_first_halt
        ),
        None => println!("q_halt never turns positive"),
    }
    println!("{:.2} mazes/s on {} ({:.1} s)", r.mazes_per_second, r.backend, r.seconds);
}
