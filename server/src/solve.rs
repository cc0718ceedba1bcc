//! Loading a model from its files and running it over mazes, for the commands and the
//! server's model threads.

use std::path::Path;

use anyhow::Context;
use burn::prelude::Backend;
use indicatif::{ProgressBar, ProgressStyle};
pub use trm_shared::model::AnyModel;
use trm_shared::model::{GridShape, MazeSize, PredictOptions, Predictions, load_files};

use crate::backend::compute_dtype;
use crate::inputs::Inputs;

/// Reads the config and checkpoint and builds the model (either family) for inputs of
/// `seq_len` cells.
pub fn load_model<B: Backend>(checkpoint: &Path, config: &Path, seq_len: usize, device: &B::Device) -> anyhow::Result<AnyModel<B>> {
    load_model_sized(checkpoint, config, MazeSize::Inputs(seq_len), device)
}

/// Reads the config and checkpoint and builds the model (either family) for mazes of `size`;
/// the reference model computes in the config's dtype where the backend has it. The commands
/// and the server's model thread all load through here.
pub fn load_model_sized<B: Backend>(checkpoint: &Path, config: &Path, size: MazeSize, device: &B::Device) -> anyhow::Result<AnyModel<B>> {
    let model = load_files::<B>(checkpoint, config, size, device)
        .with_context(|| format!("loading the model {} (config {})", checkpoint.display(), config.display()))?;
    let model = match model {
        AnyModel::Reference(m) => {
            let dtype = compute_dtype::<B>(m.config())?;
            tracing::info!("computing in {dtype:?} (the config says {})", m.config().forward_dtype);
            AnyModel::Reference(m.with_compute_dtype(dtype))
        }
        local => local,
    };
    tracing::info!("model: {}", model.config().describe());
    Ok(model)
}

/// A progress bar over mazes.
pub fn maze_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_prefix(what.to_string());
    let style = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} mazes {elapsed_precise} eta {eta} {per_sec}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Runs the model over every input behind a progress bar labelled `what`; returns the
/// predictions and the seconds they took.
pub fn predict_with_bar<B: Backend>(
    model: &AnyModel<B>,
    inputs: &Inputs,
    opts: &PredictOptions,
    device: &B::Device,
    what: &str,
) -> anyhow::Result<(Predictions, f64)> {
    let bar = maze_bar(inputs.len() as u64, what);
    let started = std::time::Instant::now();
    let grid = GridShape { rows: inputs.shape.0, cols: inputs.shape.1 };
    let preds = model.predict(&inputs.tokens, &inputs.puzzle_identifiers, grid, opts, device, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    Ok((preds, started.elapsed().as_secs_f64()))
}
