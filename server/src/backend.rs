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
use trm_shared::model::{GridShape, LocalConfig, LocalTrm, PredictOptions, Predictions, StateDict, Trm, TrmConfig, predict, predict_local};

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

/// Reads a 1-D int32 (or int64) npy of puzzle identifiers.
pub fn read_puzzle_identifiers(path: &Path, n: usize) -> anyhow::Result<Vec<i32>> {
    use ndarray::Array1;
    use ndarray_npy::ReadNpyExt;
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    let ids: Vec<i32> = match Array1::<i32>::read_npy(open()?) {
        Ok(a) => a.to_vec(),
        Err(_) => {
            let a = Array1::<i64>::read_npy(open()?)
                .with_context(|| format!("{}: expected a 1-D int32 array of puzzle identifiers", path.display()))?;
            a.iter()
                .map(|&v| i32::try_from(v).map_err(|_| anyhow::anyhow!("{}: id {v} does not fit int32", path.display())))
                .collect::<anyhow::Result<_>>()?
        }
    };
    if ids.len() != n {
        bail!("{}: {} puzzle identifiers for {n} mazes", path.display(), ids.len());
    }
    Ok(ids)
}

/// A model of either family, as [`load_model`] reads it.
pub enum AnyModel<B: Backend> {
    /// The reference TRM (attention or MLP-t), for mazes of its one size.
    Reference(Trm<B>),
    /// The size-general TRM (`[arch] mixer = "local"`), for mazes of any size.
    Local(LocalTrm<B>),
}

impl<B: Backend> AnyModel<B> {
    /// The default number of ACT steps: exactly this many for the reference model (as its
    /// evaluation runs), at most this many for the size-general one (it halts on its own).
    pub fn halt_max_steps(&self) -> usize {
        match self {
            AnyModel::Reference(m) => m.config().halt_max_steps,
            AnyModel::Local(m) => m.config().halt_max_steps,
        }
    }

    /// Answers of every maze of `inputs` after each ACT step.
    pub fn predict(&self, inputs: &Inputs, opts: &PredictOptions, device: &B::Device, progress: impl FnMut(usize)) -> anyhow::Result<Predictions> {
        Ok(match self {
            AnyModel::Reference(m) => predict(m, &inputs.tokens, &inputs.puzzle_identifiers, opts, device, progress)?,
            AnyModel::Local(m) => {
                let grid = GridShape { rows: inputs.shape.0, cols: inputs.shape.1 };
                predict_local(m, &inputs.tokens, grid, opts, device, progress)?
            }
        })
    }
}

/// Reads the config and checkpoint and builds the model for inputs of `seq_len` cells. A
/// config whose `[arch]` says `mixer = "local"` gives the size-general model (any size).
pub fn load_model<B: Backend>(
    checkpoint: &Path,
    config: &Path,
    seq_len: usize,
    device: &B::Device,
) -> anyhow::Result<AnyModel<B>> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading the config {}", config.display()))?;
    if LocalConfig::is_local_toml(&text) {
        let cfg = LocalConfig::from_toml_str(&text).with_context(|| format!("reading the config {}", config.display()))?;
        let sd = StateDict::read(checkpoint).with_context(|| format!("reading the checkpoint {}", checkpoint.display()))?;
        let model = LocalTrm::from_state_dict(&cfg, &sd, device)
            .with_context(|| format!("building the model from {}", checkpoint.display()))?;
        tracing::info!(
            "model: size-general (local mixer), hidden {}, L_layers {}, H_cycles {}, L_cycles {} ({} ticks per ACT step), at most {} ACT steps",
            cfg.hidden_size,
            cfg.l_layers,
            cfg.h_cycles,
            cfg.l_cycles,
            cfg.ticks_per_step(),
            cfg.halt_max_steps
        );
        return Ok(AnyModel::Local(model));
    }
    let mut cfg = TrmConfig::from_file(config).with_context(|| format!("reading the config {}", config.display()))?;
    TrmConfig::fill(&mut cfg.seq_len, "seq_len", seq_len, "the inputs")?;
    let sd = StateDict::read(checkpoint).with_context(|| format!("reading the checkpoint {}", checkpoint.display()))?;
    let dtype = compute_dtype::<B>(&cfg)?;
    let model = Trm::from_state_dict(&cfg, &sd, device)
        .with_context(|| format!("building the model from {}", checkpoint.display()))?
        .with_compute_dtype(dtype);
    let c = model.config();
    tracing::info!(
        "model: hidden {}, {} heads, L_layers {}, H_cycles {}, L_cycles {}, halt_max_steps {}, {}{}; computing in {dtype:?}",
        c.hidden_size,
        c.num_heads,
        c.l_layers,
        c.h_cycles,
        c.l_cycles,
        c.halt_max_steps,
        if c.mlp_t { "mlp_t" } else { "attention" },
        if c.forward_dtype != "float32" { format!(" (trained in {})", c.forward_dtype) } else { String::new() },
    );
    Ok(AnyModel::Reference(model))
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
    let preds = model.predict(inputs, opts, device, |done| bar.set_position(done as u64))?;
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
