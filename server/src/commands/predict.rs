//! `trm predict`: run a checkpoint on mazes, print the answers, optionally dump every ACT step.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use burn::prelude::Backend;
use clap::Args;
use trm_shared::maze::check_answer;
use trm_shared::model::PredictOptions;

use crate::backend::{BackendJob, BackendKind, Matmul, with_backend};
use crate::inputs::{Inputs, read_inputs, read_puzzle_identifiers};
use crate::solve::{load_model, predict_with_bar};

/// Arguments of `trm predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Checkpoint: a reference `step_N` file (torch.save) or safetensors.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Config: the reference's `all_config.yaml` (its `arch:` section) or our TOML.
    #[arg(long)]
    pub config: PathBuf,
    /// Mazes: an npy of token grids [N, seq_len] (uint8/int32), a dataset split directory,
    /// or a text file of mazes separated by blank lines.
    #[arg(long)]
    pub inputs: PathBuf,
    /// int32 npy of N puzzle identifiers (default: all 0, or the split's own).
    #[arg(long)]
    pub puzzle_identifiers: Option<PathBuf>,
    /// ACT steps (default: the config's halt_max_steps, as the reference evaluates). For the
    /// size-general model, a cap: each maze stops when its Q head says halt.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Stop a batch once every maze in it has q_halt > 0 (not in the reference, which always
    /// runs all steps); reported per maze.
    #[arg(long)]
    pub stop_early: bool,
    /// Write logits.npy (f32 [steps, N, seq_len, vocab]) and q_halt.npy (f32 [steps, N]) here.
    #[arg(long)]
    pub dump_dir: Option<PathBuf>,
    /// Write the predicted mazes to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Only the first N mazes.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Mazes per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    #[command(flatten)]
    pub matmul: Matmul,
}

/// Runs `trm predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    args.matmul.apply(args.backend)?;
    let mut inputs = read_inputs(&args.inputs)?;
    if let Some(p) = &args.puzzle_identifiers {
        inputs.puzzle_identifiers = read_puzzle_identifiers(p, inputs.len())?;
    }
    if let Some(n) = args.limit {
        inputs.truncate(n);
    }
    if inputs.len() == 0 {
        bail!("no mazes to predict");
    }
    let backend = args.backend;
    with_backend(backend, Job { args, inputs })
}

struct Job {
    args: PredictArgs,
    inputs: Inputs,
}

impl BackendJob for Job {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<()> {
        let Job { args, inputs } = self;
        let model = load_model::<B>(&args.checkpoint, &args.config, inputs.seq_len, &device)?;
        let steps = args.steps.unwrap_or(model.halt_max_steps());
        let opts = PredictOptions {
            steps,
            batch_size: args.batch_size,
            // The size-general model always stops each maze where its Q head says halt.
            stop_when_all_halt: args.stop_early || model.is_local(),
            keep_logits: args.dump_dir.is_some(),
        };
        let n = inputs.len();
        tracing::info!("predicting {n} mazes, {steps} ACT steps each, on {backend_name}, {} matmuls", args.matmul.precision);
        let (preds, seconds) = predict_with_bar(&model, &inputs, &opts, &device, "predict")?;
        tracing::info!("{n} mazes in {seconds:.2} s ({:.2} mazes/s)", n as f64 / seconds);

        let mut text = String::new();
        let (mut shortest, mut exact) = (0, 0);
        for i in 0..n {
            let answer_tokens = preds.final_answer(i);
            let q = preds.q_halt.last().map_or(0.0, |q| q[i]);
            let maze = inputs.grid_of(&inputs.tokens, i).with_context(|| format!("maze {i}"))?;
            let verdict = match inputs.grid_row(answer_tokens) {
                Err(e) => format!("invalid answer ({e})"),
                Ok(answer) => match check_answer(&maze, &answer) {
                    Err(e) => format!("cannot check ({e})"),
                    Ok(c) => {
                        let matches_label = match &inputs.labels {
                            Some(labels) => labels[i * inputs.seq_len..(i + 1) * inputs.seq_len] == *answer_tokens,
                            None => c.exact,
                        };
                        exact += usize::from(matches_label);
                        shortest += usize::from(c.shortest);
                        match (c.shortest, c.path_moves) {
                            (true, _) => format!(
                                "valid shortest path, {} moves{}",
                                c.optimal_moves,
                                if matches_label { ", equals the label" } else { ", differs from the label" }
                            ),
                            (false, Some(m)) => format!("valid path of {m} moves, not shortest ({})", c.optimal_moves),
                            (false, None) => format!("not a valid path ({} cells differ from the label)", c.wrong_cells.len()),
                        }
                    }
                },
            };
            let early = match preds.stopped_early_at[i] {
                Some(k) => format!(", halted after step {k} (q_halt > 0)"),
                None => String::new(),
            };
            writeln!(text, "maze {i}: {verdict}; q_halt {q:.3}{early}")?;
            match inputs.grid_row(answer_tokens) {
                Ok(g) => writeln!(text, "{}", g.to_lines())?,
                Err(_) => writeln!(text, "{:?}\n", answer_tokens)?,
            }
        }
        writeln!(
            text,
            "{n} mazes: {shortest} valid shortest paths ({:.1}%), {exact} equal the label ({:.1}%)",
            100.0 * shortest as f64 / n as f64,
            100.0 * exact as f64 / n as f64
        )?;
        match &args.output {
            Some(path) => std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?,
            None => print!("{text}"),
        }

        if let Some(dir) = &args.dump_dir {
            dump(dir, &preds, steps)?;
            tracing::info!("wrote {}/logits.npy and q_halt.npy", dir.display());
        }
        Ok(())
    }
}

/// Writes `logits.npy` [steps, N, seq_len, vocab] and `q_halt.npy` [steps, N], f32.
fn dump(dir: &std::path::Path, preds: &trm_shared::model::Predictions, steps: usize) -> anyhow::Result<()> {
    use ndarray::{Array2, Array4};
    use ndarray_npy::WriteNpyExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let logits = preds.logits.as_ref().context("logits were not kept")?;
    let flat: Vec<f32> = logits.iter().flatten().copied().collect();
    let logits = Array4::from_shape_vec((steps, preds.n, preds.seq_len, preds.vocab_size), flat)?;
    let q: Vec<f32> = preds.q_halt.iter().flatten().copied().collect();
    let q = Array2::from_shape_vec((steps, preds.n), q)?;
    let write = |name: &str, f: &dyn Fn(std::io::BufWriter<std::fs::File>) -> Result<(), ndarray_npy::WriteNpyError>| {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f(std::io::BufWriter::new(file)).with_context(|| format!("writing {}", path.display()))
    };
    write("logits.npy", &|w| logits.write_npy(w))?;
    write("q_halt.npy", &|w| q.write_npy(w))?;
    Ok(())
}
