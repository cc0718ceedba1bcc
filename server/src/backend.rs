//! Picking a burn backend at run time and loading model inputs, for the model commands
//! (`predict`, `eval`, `bench`).
//!
//! The CPU backend is burn's Flex: pure Rust, SIMD (AVX2/AVX-512/NEON), multi-threaded gemm
//! matmuls and a tiled attention kernel. It is the fastest CPU backend burn 0.21 offers that
//! builds here: burn-cpu (CubeCL/LLVM JIT) needs an LLVM download at build time, and
//! ndarray is deprecated and slower (see docs/rust-stack.md). wgpu and cuda are cargo features.

use std::path::Path;

use anyhow::{Context, bail};
use burn::prelude::Backend;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use trm_shared::maze::Grid;
pub use trm_shared::model::AnyModel;
use trm_shared::model::{GridShape, MazeSize, PredictOptions, Predictions, TrmConfig, load_files};

/// Backends a command can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// burn Flex on the CPU, f32.
    Cpu,
    /// burn wgpu (Vulkan, Metal, DX12); needs the `wgpu` cargo feature.
    Wgpu,
    /// burn CUDA; needs the `cuda` cargo feature and libcuda/libnvrtc at run time.
    Cuda,
}

/// Work that runs on whichever backend was chosen (Rust has no generic closures).
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs the job on backend `B`.
    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on the backend `kind`, or explains how to get it.
pub fn with_backend<J: BackendJob>(kind: BackendKind, job: J) -> anyhow::Result<J::Output> {
    match kind {
        BackendKind::Cpu => job.run::<burn::backend::Flex>(Default::default(), "cpu (flex)"),
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                let adapter = crate::wgpu_probe::default_adapter().context("--backend wgpu")?;
                tracing::info!("wgpu adapter: {}", crate::wgpu_probe::describe(&adapter));
                job.run::<burn::backend::Wgpu>(Default::default(), "wgpu")
            }
            #[cfg(not(feature = "wgpu"))]
            {
                bail!("this trm was built without wgpu; rebuild with `cargo build -p trm-server --features wgpu`")
            }
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                job.run::<burn::backend::Cuda>(Default::default(), "cuda")
            }
            #[cfg(not(feature = "cuda"))]
            {
                bail!("this trm was built without CUDA; rebuild with `cargo build -p trm-server --features cuda`")
            }
        }
    }
}

/// The dtype a model computes in on backend `B` (weights stay f32 either way): the config's
/// `forward_dtype` on CUDA, as the reference trains and evaluates (bf16 there); f32 on the
/// CPU, where Flex would only round every bf16 op through f32 (slower, nothing gained), and on
/// wgpu, where WebGPU has no bf16.
pub fn compute_dtype<B: Backend>(cfg: &TrmConfig) -> anyhow::Result<burn::tensor::FloatDType> {
    // Checked on every backend, so that a bad value fails on the CPU too.
    let configured = cfg.forward_float_dtype()?;
    Ok(if is_cuda::<B>() { configured } else { burn::tensor::FloatDType::F32 })
}

/// Whether `B` is burn's CUDA backend, plain or under autodiff.
fn is_cuda<B: Backend>() -> bool {
    #[cfg(feature = "cuda")]
    {
        use std::any::TypeId;
        type Cuda = burn::backend::Cuda;
        TypeId::of::<B>() == TypeId::of::<Cuda>() || TypeId::of::<B>() == TypeId::of::<burn::backend::Autodiff<Cuda>>()
    }
    #[cfg(not(feature = "cuda"))]
    false
}

/// Mazes to run the model on, with labels when the source has them.
pub struct Inputs {
    /// Row-major `[n, seq_len]` tokens.
    pub tokens: Vec<u8>,
    /// Labels `[n, seq_len]`, from a dataset split.
    pub labels: Option<Vec<u8>>,
    /// Puzzle identifiers `[n]`.
    pub puzzle_identifiers: Vec<i32>,
    /// Cells per maze.
    pub seq_len: usize,
    /// Grid shape (rows, cols), `rows * cols == seq_len`.
    pub shape: (usize, usize),
}

impl Inputs {
    /// Number of mazes.
    pub fn len(&self) -> usize {
        self.puzzle_identifiers.len()
    }

    /// Keeps only the first `n` mazes.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.tokens.truncate(n * self.seq_len);
        if let Some(l) = self.labels.as_mut() {
            l.truncate(n * self.seq_len);
        }
        self.puzzle_identifiers.truncate(n);
    }

    /// Row `i` of `tokens` (inputs, labels or answers, all `[n, seq_len]`) as a grid.
    pub fn grid_of(&self, tokens: &[u8], i: usize) -> Result<Grid, trm_shared::maze::MazeError> {
        self.grid_row(&tokens[i * self.seq_len..(i + 1) * self.seq_len])
    }

    /// One row of `seq_len` tokens as a grid of this input's shape.
    pub fn grid_row(&self, row: &[u8]) -> Result<Grid, trm_shared::maze::MazeError> {
        Grid::from_tokens(self.shape.0, self.shape.1, row)
    }
}

/// Reads `src`: a dataset split directory (`all__inputs.npy` ...), an npy of token grids
/// `[N, seq_len]` (uint8/int32/int64), or a text file of mazes separated by blank lines.
pub fn read_inputs(src: &Path) -> anyhow::Result<Inputs> {
    if src.is_dir() {
        let split = trm_shared::dataset::read_split(src)
            .with_context(|| format!("reading the dataset split {}", src.display()))?;
        return Ok(Inputs {
            tokens: split.inputs,
            labels: Some(split.labels),
            puzzle_identifiers: split.puzzle_identifiers,
            seq_len: split.seq_len,
            shape: square(split.seq_len, src)?,
        });
    }
    let is_npy = src.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let grids = trm_shared::dataset::read_token_grids(src)
            .with_context(|| format!("reading token grids from {}", src.display()))?;
        let (n, seq_len) = grids.dim();
        if n == 0 || seq_len == 0 {
            bail!("{} holds no mazes (shape [{n}, {seq_len}])", src.display());
        }
        return Ok(Inputs {
            tokens: grids.iter().copied().collect(),
            labels: None,
            puzzle_identifiers: vec![0; n],
            seq_len,
            shape: square(seq_len, src)?,
        });
    }
    let text = std::fs::read_to_string(src).with_context(|| format!("reading {}", src.display()))?;
    let mut tokens = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    let mut n = 0;
    for (k, block) in split_blocks(&text).into_iter().enumerate() {
        let grid = Grid::parse_any(&block).with_context(|| format!("{}: maze {k}", src.display()))?;
        let puzzle = grid.without_path();
        puzzle.validate_puzzle().with_context(|| format!("{}: maze {k}", src.display()))?;
        let this = (puzzle.rows(), puzzle.cols());
        match shape {
            None => shape = Some(this),
            Some(s) if s != this => {
                bail!("{}: maze {k} is {}x{}, the first is {}x{}", src.display(), this.0, this.1, s.0, s.1)
            }
            _ => {}
        }
        tokens.extend(puzzle.tokens());
        n += 1;
    }
    let Some(shape) = shape else { bail!("{}: no maze found", src.display()) };
    Ok(Inputs { tokens, labels: None, puzzle_identifiers: vec![0; n], seq_len: shape.0 * shape.1, shape })
}

/// The side of a square grid of `len` cells (npy files do not record the grid's shape).
fn square(len: usize, src: &Path) -> anyhow::Result<(usize, usize)> {
    let side = trm_shared::maze::square_side(len)
        .with_context(|| format!("{}: rows of {len} cells are not square grids", src.display()))?;
    Ok((side, side))
}

/// Splits text into mazes at empty lines (an all-open row is spaces, never empty).
fn split_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current = String::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// Reads a 1-D int32 (or other integer) npy of puzzle identifiers.
pub fn read_puzzle_identifiers(path: &Path, n: usize) -> anyhow::Result<Vec<i32>> {
    let ids = trm_shared::dataset::read_index_array(path).context("reading the puzzle identifiers")?;
    if ids.len() != n {
        bail!("{}: {} puzzle identifiers for {n} mazes", path.display(), ids.len());
    }
    Ok(ids)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_mazes_split_on_blank_lines_only() {
        let text = "#S #\n    \n# G#\n\n\n#S  \n#  G\n#   \n";
        let blocks = split_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], "#S #\n    \n# G#\n");
    }

    #[test]
    fn reads_a_text_file_of_mazes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.txt");
        std::fs::write(&p, "S  \n## \nG  \n\nS# \n   \n #G\n").unwrap();
        let inputs = read_inputs(&p).unwrap();
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs.seq_len, 9);
        assert_eq!(&inputs.tokens[0..3], &[3, 2, 2]);
        std::fs::write(&p, "S  \nG  \n\nS# \n   \n #G\n").unwrap();
        assert!(read_inputs(&p).is_err());
        std::fs::write(&p, "\n\n").unwrap();
        assert!(read_inputs(&p).is_err());
    }
}
