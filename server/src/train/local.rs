//! Training the size-general model ([`LocalTrm`], `[arch] mixer = "local"`) on small generated
//! mazes, as TRM trains: every optimizer step is one ACT step of a batch of mazes in progress,
//! from their detached carries (deep supervision); a maze whose answer is complete (plus
//! `extra_steps`) leaves the batch and a fresh one takes its row.
//!
//! Beside the answer, every tick of the recursion is supervised with the state of the label
//! rule's local process after that many updates ([`Wave`]): which cells the wave from G has
//! reached, each reached cell's choice, and the part of the path traced so far. That is what
//! makes a tick one update of a rule that works at any size. The Q head learns to halt when
//! the answer is right, as the reference's does.
//!
//! The mazes are drawn on the fly, deterministically from the seed: a random side per axis
//! (growing over `curriculum_steps` from `start_side` to `max_side`), walls on a random share
//! of the cells (loops included, as in Maze-Hard), S and G at least `max(rows, cols)` moves
//! apart, padded onto a `max_side` square canvas whose padding the model sees as the outside.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use trm_shared::generate::default_min_moves;
use trm_shared::maze::{Cell, Grid, Wave, check_answer};
use trm_shared::model::{GridShape, InnerCarry, LocalConfig, LocalTrm, RandomInit, solve};

use super::cluster::Cluster;
use super::ema::Ema;
use super::metrics_log::MetricsLog;
use super::optim::AdamAtan2;
use super::schedule::LrSchedule;
use super::step::{on_worker_pool, worker_pools};

/// A training config for the size-general model (TOML; see `configs/maze-any-cpu.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTrainConfig {
    /// Mazes in flight (rows of every batch).
    pub global_batch_size: usize,
    /// Optimizer steps of the run.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a share of `lr` (cosine decay).
    pub lr_min_ratio: f64,
    /// Linear warmup steps.
    pub lr_warmup_steps: u64,
    /// AdamATan2 β1.
    pub beta1: f64,
    /// AdamATan2 β2.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// EMA rate of the saved weights (0 = no EMA).
    pub ema_rate: f64,
    /// Weight of the per-tick process loss against the answer loss.
    pub aux_weight: f64,
    /// Extra weight of the cells where the process *decides* at a tick: the wave reaching a
    /// cell (its choice, the label's tie-break, is made then) and the trace reaching one.
    /// They are a few in a thousand of the cell-ticks, so the plain mean barely sees them.
    /// Default 0 (every cell-tick alike).
    #[serde(default)]
    pub event_weight: f64,
    /// Loss weight of the answer update's tick (the last of each ACT step, read from `y`)
    /// against the thinking ticks' 1. The answer update copies the process state from `z`
    /// into `y`; choices that flip on large mazes mostly flip there. Default 1.
    #[serde(default = "one")]
    pub answer_tick_weight: f64,
    /// Loss weight of each ACT step's first thinking tick, the first to see the new `y`.
    /// Default 1.
    #[serde(default = "one")]
    pub first_tick_weight: f64,
    /// Seed of the initial weights and of every maze.
    pub seed: u64,
    /// Evaluate (held-out generated mazes) every this many steps.
    pub eval_interval: u64,
    /// Save a checkpoint every this many steps.
    pub checkpoint_interval: u64,
    /// Log a training line every this many steps.
    pub log_interval: u64,
    /// The model.
    pub arch: LocalConfig,
    /// The mazes.
    pub data: LocalDataConfig,
}

fn one() -> f64 {
    1.0
}

/// How the training mazes are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDataConfig {
    /// Smallest side.
    pub min_side: usize,
    /// Largest side at the start of the curriculum.
    pub start_side: usize,
    /// Largest side (and the canvas) once the curriculum is done.
    pub max_side: usize,
    /// Steps over which the largest side grows from `start_side` to `max_side`.
    pub curriculum_steps: u64,
    /// Walls cover a share of the cells drawn uniformly from this range (Maze-Hard: 0.28-0.45).
    pub wall_share: [f64; 2],
    /// ACT steps a maze stays in the batch after its answer is complete (to learn to hold it and halt).
    pub extra_steps: u32,
    /// Share of the mazes drawn *long*: S at least [`default_min_moves`] moves from G, the
    /// benchmark's path-length rule scaled to the maze's size (52 moves at 16x16, against 16
    /// for the others), so that training sees the long traces Maze-Hard asks for. Default 0.
    #[serde(default)]
    pub long_share: f64,
    /// Held-out mazes per evaluation side.
    pub eval_count: usize,
    /// Sides of the evaluation mazes.
    pub eval_sides: Vec<usize>,
}

impl LocalTrainConfig {
    /// Loss weight of each of the `recorded` ticks of an ACT step, oldest first: the first
    /// thinking tick's, 1 for the others, the answer update's last.
    fn tick_weights(&self, recorded: usize) -> Vec<f32> {
        let mut weights = vec![1.0; recorded];
        weights[0] = self.first_tick_weight as f32;
        weights[recorded - 1] = self.answer_tick_weight as f32;
        weights
    }

    /// Reads and checks a config file.
    pub fn from_file(path: &Path) -> anyhow::Result<LocalTrainConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: LocalTrainConfig = toml::from_str(&text).with_context(|| format!("{}: invalid training config", path.display()))?;
        cfg.validate().with_context(|| path.display().to_string())?;
        Ok(cfg)
    }

    /// Checks the fields against each other and against sane bounds.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.arch.validate()?;
        let d = &self.data;
        if self.global_batch_size == 0 || self.global_batch_size > 4096 {
            bail!("global_batch_size must be in 1..=4096");
        }
        if !(2 <= d.min_side && d.min_side <= d.start_side && d.start_side <= d.max_side && d.max_side <= 64) {
            bail!("[data] needs 2 <= min_side <= start_side <= max_side <= 64");
        }
        if !(0.0 <= d.wall_share[0] && d.wall_share[0] <= d.wall_share[1] && d.wall_share[1] < 0.8) {
            bail!("[data] wall_share must be an increasing pair in [0, 0.8)");
        }
        if !(0.0..=1.0).contains(&d.long_share) {
            bail!("[data] long_share must be in [0, 1]");
        }
        if d.eval_sides.iter().any(|&s| !(2..=64).contains(&s)) {
            bail!("[data] eval_sides must be in 2..=64");
        }
        for (name, w) in [("answer_tick_weight", self.answer_tick_weight), ("first_tick_weight", self.first_tick_weight)] {
            if !(w > 0.0 && w <= 1000.0) {
                bail!("{name} must be in (0, 1000]");
            }
        }
        if !(self.event_weight >= 0.0 && self.event_weight <= 1000.0) {
            bail!("event_weight must be in [0, 1000]");
        }
        if !(self.lr > 0.0 && self.lr < 1.0) || self.steps == 0 {
            bail!("lr must be in (0, 1) and steps at least 1");
        }
        if self.log_interval == 0 || self.eval_interval == 0 || self.checkpoint_interval == 0 {
            bail!("log_interval, eval_interval and checkpoint_interval must be at least 1");
        }
        Ok(())
    }
}

/// How a maze of the stream is drawn (the `[data]` fields that shape one maze).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MazeDraw {
    /// Smallest side.
    pub min_side: usize,
    /// Largest side.
    pub max_side: usize,
    /// Range of the wall share.
    pub wall_share: [f64; 2],
    /// Share of long mazes (see [`LocalDataConfig::long_share`]).
    pub long_share: f64,
}

/// One maze of the stream: `k` picks its random stream, so the data is a function of the seed.
///
/// A plain maze takes the first S and G (uniform open cells) at least `max(rows, cols)` moves
/// apart. A long one (drawn with probability `long_share`) needs [`default_min_moves`] moves:
/// such pairs are rare, so G is drawn first and S uniformly among the cells far enough from it.
pub fn draw_maze(seed: u64, k: u64, how: MazeDraw) -> Grid {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(k);
    // Drawn only when asked for, so that configs without long mazes keep their old stream.
    let long = how.long_share > 0.0 && rng.random_bool(how.long_share);
    loop {
        let rows = rng.random_range(how.min_side..=how.max_side);
        let cols = rng.random_range(how.min_side..=how.max_side);
        let share = rng.random_range(how.wall_share[0]..=how.wall_share[1]);
        let mut grid = Grid::open(rows, cols);
        for i in 0..rows * cols {
            if rng.random_bool(share) {
                grid.set(i, Cell::Wall);
            }
        }
        let open: Vec<usize> = (0..rows * cols).filter(|&i| grid.at(i) == Cell::Open).collect();
        if open.len() < 2 {
            continue;
        }
        if long {
            let g = open[rng.random_range(0..open.len())];
            let dist = trm_shared::maze::distances_from(&grid, g);
            let need = default_min_moves(rows, cols);
            let far: Vec<usize> = open.iter().copied().filter(|&i| dist[i] != u32::MAX && dist[i] >= need).collect();
            if far.is_empty() {
                continue;
            }
            grid.set(far[rng.random_range(0..far.len())], Cell::Start);
            grid.set(g, Cell::Goal);
            return grid;
        }
        let s = open[rng.random_range(0..open.len())];
        let g = open[rng.random_range(0..open.len())];
        if s == g {
            continue;
        }
        grid.set(s, Cell::Start);
        grid.set(g, Cell::Goal);
        let dist = trm_shared::maze::distances_from(&grid, g)[s];
        if dist != u32::MAX && dist as usize >= rows.max(cols) {
            return grid;
        }
    }
}

/// A maze in flight: its process, where it sits on the canvas, and how far it has run.
struct Row {
    wave: Wave,
    label: Vec<u8>,
    tick: u32,
    end_tick: u32,
}

/// Targets of one tick for all rows, on the canvas.
#[derive(Default)]
struct TickTargets {
    tokens: Vec<i64>,
    reached: Vec<f32>,
    choice: Vec<i64>,
    /// Loss weight of each cell: 0 off the maze, 1, or `1 + event_weight` where the wave or
    /// the trace reaches the cell at this tick.
    weight: Vec<f32>,
}

impl TickTargets {
    fn push(&mut self, rows: &[Row], canvas: usize, event_weight: f32, tick_weight: f32, tick_of: impl Fn(&Row) -> u32) {
        for row in rows {
            let t = tick_of(row);
            let (r, c) = (row.wave.rows(), row.wave.cols());
            for y in 0..canvas {
                for x in 0..canvas {
                    if y < r && x < c {
                        let i = y * c + x;
                        let (re, ch, tok) = row.wave.state_at(i, t);
                        self.tokens.push(i64::from(tok));
                        self.reached.push(if re { 1.0 } else { 0.0 });
                        self.choice.push(i64::from(ch));
                        let event = row.wave.dist[i] == t || row.wave.traced[i] == t;
                        self.weight.push(tick_weight * if event { 1.0 + event_weight } else { 1.0 });
                    } else {
                        self.tokens.push(0);
                        self.reached.push(0.0);
                        self.choice.push(0);
                        self.weight.push(0.0);
                    }
                }
            }
        }
    }
}

/// Sum over masked cells of `-log p(target)` for logits `[N, C, K]`, targets `[N, C]`, mask `[N, C]`.
pub fn masked_ce_sum<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 1> {
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, targets.unsqueeze_dim(2)).squeeze_dim::<2>(2);
    (picked * mask).sum().neg()
}

/// Binary cross-entropy with logits, summed over the masked entries.
pub fn masked_bce_sum<B: Backend, const D: usize>(logits: Tensor<B, D>, targets: Tensor<B, D>, mask: Tensor<B, D>) -> Tensor<B, 1> {
    let per = (targets.clone() * log_sigmoid(logits.clone()) + (targets.neg() + 1.0) * log_sigmoid(logits.neg())).neg();
    (per * mask).sum()
}

/// A training line of `metrics.jsonl` (the fields `trm runs plot` reads, and the process loss).
#[derive(Debug, Serialize)]
struct TrainLine {
    kind: &'static str,
    step: u64,
    lr: f64,
    accuracy: f64,
    exact_accuracy: Option<f64>,
    lm_loss: f64,
    aux_loss: f64,
    q_halt_loss: f64,
    examples_per_s: f64,
    elapsed_s: f64,
    max_side: usize,
}

/// An evaluation line: exact and valid-shortest shares per side.
#[derive(Debug, Serialize)]
struct EvalLine {
    kind: &'static str,
    step: u64,
    exact_accuracy: f64,
    accuracy: f64,
    sides: Vec<SideScore>,
    elapsed_s: f64,
}

/// Scores on the held-out mazes of one side.
#[derive(Debug, Clone, Serialize)]
pub struct SideScore {
    /// Side of the mazes.
    pub side: usize,
    /// Mazes scored.
    pub mazes: usize,
    /// Share equal to the label.
    pub exact: f64,
    /// Share with a valid shortest path (any tie-break).
    pub valid_shortest: f64,
    /// Share of cells equal to the label.
    pub cells: f64,
    /// Mean ACT step at which the model halted (the cap where it did not).
    pub mean_steps: f64,
}

/// Scores `model` on `mazes` (all of one size), solving them in batches.
pub fn score_mazes<B: Backend>(model: &LocalTrm<B>, mazes: &[Grid], max_steps: usize, batch: usize, device: &B::Device) -> anyhow::Result<SideScore> {
    let (rows, cols) = (mazes[0].rows(), mazes[0].cols());
    let (mut exact, mut valid, mut cells_ok, mut steps) = (0usize, 0usize, 0usize, 0usize);
    for chunk in mazes.chunks(batch.max(1)) {
        let tokens: Vec<u8> = chunk.iter().flat_map(|g| g.tokens()).collect();
        let out = solve(model, &tokens, GridShape { rows, cols }, max_steps, device, |_, _, _| true)?;
        for (maze, (answer, halted)) in chunk.iter().zip(out.answers.iter().zip(&out.halted_at)) {
            steps += halted.unwrap_or(out.steps_run);
            match Grid::from_tokens(rows, cols, answer) {
                Ok(grid) => {
                    let check = check_answer(maze, &grid)?;
                    exact += usize::from(check.exact);
                    valid += usize::from(check.shortest);
                    cells_ok += rows * cols - check.wrong_cells.len();
                }
                // A PAD token in the answer: nothing is right about it but what matches by chance.
                Err(_) => {}
            }
        }
    }
    let n = mazes.len() as f64;
    Ok(SideScore {
        side: rows.max(cols),
        mazes: mazes.len(),
        exact: exact as f64 / n,
        valid_shortest: valid as f64 / n,
        cells: cells_ok as f64 / (n * (rows * cols) as f64),
        mean_steps: steps as f64 / n,
    })
}

/// Held-out mazes of one side: a stream the training draws never use (stream ids from 2^62).
pub fn eval_mazes(seed: u64, side: usize, count: usize, wall_share: [f64; 2]) -> Vec<Grid> {
    let how = MazeDraw { min_side: side, max_side: side, wall_share, long_share: 0.0 };
    (0..count as u64).map(|k| draw_maze(seed, (1 << 62) + ((side as u64) << 32) + k, how)).collect()
}

/// What a finished run leaves.
pub struct LocalSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Seconds of training (evaluations excluded).
    pub train_seconds: f64,
}

/// Saves `model` as `dir/name` atomically.
fn save_model<B: Backend>(model: &LocalTrm<B>, path: &Path) -> anyhow::Result<()> {
    let bytes = model.to_safetensors_bytes()?;
    trm_shared::atomic::write_file(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Divisors of the batch's losses: masked cells over the recorded ticks, and rows.
#[derive(Debug, Clone, Copy)]
struct Norms {
    cells: f64,
    rows: f64,
}

/// What every worker's share of a step needs besides its rows.
struct StepCtx<'a> {
    canvas: usize,
    recorded: u32,
    first_recorded: u32,
    aux_weight: f64,
    event_weight: f64,
    /// Loss weight of each recorded tick, oldest first ([`LocalTrainConfig::tick_weights`]).
    tick_weights: &'a [f32],
    norms: Norms,
}

/// One worker's share of an optimizer step: its gradient, its rows' next carries, its part of
/// the batch's losses, and which of its rows hold the label after the step.
struct Share<B: AutodiffBackend> {
    grads: GradientsParams,
    carry: InnerCarry<B>,
    lm: f64,
    aux: f64,
    q: f64,
    cell_hits: usize,
    cell_total: usize,
    correct: Vec<f32>,
}

/// Runs one ACT step of `live` (fresh rows marked in `reset`) from `carry`, with the per-tick
/// process loss, the answer loss and the Q loss, and takes their gradient.
fn step_share<B: AutodiffBackend>(
    model: &LocalTrm<B>,
    live: &[Row],
    reset: &[bool],
    carry: Option<InnerCarry<B>>,
    ctx: &StepCtx<'_>,
    device: &B::Device,
) -> anyhow::Result<Share<B>> {
    let (canvas, recorded, first_recorded) = (ctx.canvas, ctx.recorded, ctx.first_recorded);
    let grid = GridShape { rows: canvas, cols: canvas };
    let cells = grid.cells();
    let batch = live.len();
    // Inputs and mask on the canvas.
    let (mut inputs, mut mask) = (Vec::with_capacity(batch * cells), Vec::with_capacity(batch * cells));
    for row in live {
        let (r, c) = (row.wave.rows(), row.wave.cols());
        for y in 0..canvas {
            for x in 0..canvas {
                let inside = y < r && x < c;
                mask.push(if inside { 1.0f32 } else { 0.0 });
                inputs.push(if inside { i64::from(row.wave.state_at(y * c + x, 0).2) } else { 0 });
            }
        }
    }
    let inputs_t = Tensor::<B, 2, Int>::from_data(TensorData::new(inputs, [batch, cells]), device);
    let mask_t = Tensor::<B, 3>::from_data(TensorData::new(mask, [batch, cells, 1]), device);
    let reset_t = Tensor::<B, 1, Int>::from_data(TensorData::new(reset.iter().map(|&r| i64::from(r)).collect::<Vec<_>>(), [batch]), device).equal_elem(1);
    let x = model.input_embeddings(inputs_t, Some(&mask_t));
    let c = match carry {
        Some(c) => model.reset_rows(c, reset_t, Some(&mask_t)),
        None => model.initial_carry(batch, cells, Some(&mask_t)),
    };
    let (next, out) = model.step(c, &x, grid, Some(&mask_t), true);

    // Per-tick targets of the recorded ticks, stacked like the states.
    let mut targets = TickTargets::default();
    for (j, &tick_weight) in (0..recorded).zip(ctx.tick_weights) {
        targets.push(live, canvas, ctx.event_weight as f32, tick_weight, |r| r.tick + first_recorded + j);
    }
    let n = recorded as usize * batch;
    let states = Tensor::cat(out.ticks, 0);
    let (logits, wave) = model.readout(states);
    let tokens_t = Tensor::<B, 2, Int>::from_data(TensorData::new(targets.tokens, [n, cells]), device);
    let reached_t = Tensor::<B, 2>::from_data(TensorData::new(targets.reached, [n, cells]), device);
    let choice_t = Tensor::<B, 2, Int>::from_data(TensorData::new(targets.choice, [n, cells]), device);
    // The cells' loss weights; without events, exactly the maze mask.
    let mask_n = Tensor::<B, 2>::from_data(TensorData::new(targets.weight, [n, cells]), device);
    let lm_loss = masked_ce_sum(logits, tokens_t, mask_n.clone()).div_scalar(ctx.norms.cells);
    let reach_logit = wave.clone().narrow(2, 0, 1).squeeze_dim::<2>(2);
    let choice_logits = wave.narrow(2, 1, trm_shared::maze::wave::dir::COUNT);
    let aux_loss = (masked_bce_sum(reach_logit, reached_t, mask_n.clone()) + masked_ce_sum(choice_logits, choice_t, mask_n)).div_scalar(ctx.norms.cells);

    // The Q target: the answer after this step equals the label, as the reference's.
    let answers: Vec<i64> = out.logits.clone().argmax(2).into_data().convert::<i64>().iter::<i64>().collect();
    let mut correct = vec![0.0f32; batch];
    let (mut cell_hits, mut cell_total) = (0usize, 0usize);
    for (i, row) in live.iter().enumerate() {
        let (r, c) = (row.wave.rows(), row.wave.cols());
        let mut all = true;
        for y in 0..r {
            for x in 0..c {
                let ok = answers[i * cells + y * canvas + x] == i64::from(row.label[y * c + x]);
                all &= ok;
                cell_hits += usize::from(ok);
            }
        }
        cell_total += r * c;
        correct[i] = if all { 1.0 } else { 0.0 };
    }
    let q_target = Tensor::<B, 1>::from_data(TensorData::new(correct.clone(), [batch]), device);
    let q_loss = masked_bce_sum(out.q_halt, q_target, Tensor::ones([batch], device)).div_scalar(ctx.norms.rows);
    let loss = lm_loss.clone() + aux_loss.clone().mul_scalar(ctx.aux_weight) + q_loss.clone().mul_scalar(0.5);
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let scalar = |t: Tensor<B, 1>| t.into_scalar().elem::<f64>();
    Ok(Share { grads, carry: next, lm: scalar(lm_loss), aux: scalar(aux_loss), q: scalar(q_loss), cell_hits, cell_total, correct })
}

/// Runs one step's shares, `share(model, part)` for each part, and returns them in order:
/// the first on this thread with `model` itself, the others on threads of their own with
/// forked copies; each on its worker's pool ([`worker_pools`]).
pub fn run_shares<B, P, R>(
    model: &LocalTrm<B>,
    device: &B::Device,
    pools: &[rayon::ThreadPool],
    parts: impl IntoIterator<Item = P>,
    share: impl Fn(&LocalTrm<B>, P) -> anyhow::Result<R> + Sync,
) -> anyhow::Result<Vec<R>>
where
    B: AutodiffBackend,
    P: Send,
    R: Send,
{
    let mut parts = parts.into_iter();
    let first = parts.next().context("a batch has rows")?;
    std::thread::scope(|scope| {
        let share = &share;
        let others: Vec<_> = parts
            .enumerate()
            .map(|(k, part)| {
                // Fresh autodiff leaves (same parameter ids): workers sharing the leaves
                // would share one autodiff graph, and their backward passes deadlock.
                let model = model.clone().fork(device);
                scope.spawn(move || on_worker_pool(pools, k + 1, || share(&model, part)))
            })
            .collect();
        let mut results = vec![on_worker_pool(pools, 0, || share(model, first))?];
        for h in others {
            results.push(h.join().map_err(|_| anyhow::anyhow!("a training worker panicked"))??);
        }
        Ok(results)
    })
}

/// Sums of a step beside the rows' answers: lm, aux and Q losses, cells right, cells.
const STEP_SUMS: usize = 5;

/// How a run starts and how it is spread.
#[derive(Debug, Clone, Default)]
pub struct LocalRunOptions {
    /// Continue from the run directory's newest `checkpoint.safetensors` and `checkpoint.json`
    /// (the optimizer's moments start again; the maze stream continues where it was).
    pub resume: bool,
    /// Weights to start from instead of random ones (a second training stage); a checkpoint
    /// found on `resume` wins.
    pub init: Option<PathBuf>,
    /// Stop after this many optimizer steps in total.
    pub max_steps: Option<u64>,
    /// Data-parallel workers (threads on one device), each running its share of the rows.
    pub workers: usize,
    /// The processes of the run (`mpirun`/`srun`); a single one by default. Each runs its
    /// share of the rows on its workers; rank 0 alone writes the run's files and evaluates.
    pub cluster: Cluster,
}

/// Trains per `cfg` in `dir` (created by the caller, holding `config.toml`).
pub fn train_local<B: AutodiffBackend>(cfg: &LocalTrainConfig, dir: &Path, opts: &LocalRunOptions, device: &B::Device) -> anyhow::Result<LocalSummary> {
    let (resume, max_steps) = (opts.resume, opts.max_steps);
    let arch = &cfg.arch;
    let data = &cfg.data;
    let canvas = data.max_side;
    let batch = cfg.global_batch_size;
    let cluster = opts.cluster;
    let leader = cluster.is_leader();
    // Contiguous shares of the rows, one per worker of every process; this process runs its own.
    let workers = opts.workers.clamp(1, (batch / cluster.size()).max(1));
    if batch < cluster.size() * workers {
        bail!("global_batch_size {batch} is smaller than the {} processes of the run", cluster.size());
    }
    let shares_at = cluster.split_rows(batch, workers);
    let pools = worker_pools(workers);
    let mine = shares_at[0].start..shares_at[shares_at.len() - 1].end;
    let ticks_per_step = arch.ticks_per_step() as u32;
    // The ticks the trainer sees are those of the last (gradient) recursion round.
    let recorded = (arch.l_cycles + 1) as u32;
    let first_recorded = ticks_per_step - recorded + 1;
    let tick_weights = cfg.tick_weights(recorded as usize);

    let mut model: LocalTrm<B> = LocalTrm::build(arch, &mut RandomInit::new(cfg.seed), device)?;
    let (mut step, mut next_maze) = (0u64, 0u64);
    let ckpt = dir.join("checkpoint.safetensors");
    let ckpt_state = dir.join("checkpoint.json");
    if let Some(init) = opts.init.as_ref().filter(|_| !(resume && ckpt.exists())) {
        let bytes = std::fs::read(init).with_context(|| format!("reading {}", init.display()))?;
        model = LocalTrm::from_safetensors_bytes(arch, &bytes, &init.display().to_string(), device)
            .with_context(|| format!("{}: the initial weights must fit the config's [arch]", init.display()))?;
        tracing::info!("starting from the weights in {}", init.display());
    }
    if resume && ckpt.exists() {
        let bytes = std::fs::read(&ckpt).with_context(|| format!("reading {}", ckpt.display()))?;
        model = LocalTrm::from_safetensors_bytes(arch, &bytes, &ckpt.display().to_string(), device)?;
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ckpt_state)?)?;
        step = state["step"].as_u64().context("checkpoint.json: no step")?;
        next_maze = state["next_maze"].as_u64().context("checkpoint.json: no next_maze")?;
        tracing::info!("resuming from step {step}");
    }
    model.h_init = model.h_init.clone().set_require_grad(false);
    model.l_init = model.l_init.clone().set_require_grad(false);
    let skip: HashSet<_> = [model.h_init.id, model.l_init.id].into();
    // The average lives on the inner backend: updated on autodiff tensors, each update would
    // chain a graph node to the previous one and every step would grow slower.
    let mut ema: Option<Ema<B::InnerBackend>> = None;
    if cfg.ema_rate > 0.0 {
        let live = model.valid();
        let saved = dir.join("model.safetensors");
        ema = Some(if resume && ckpt.exists() && saved.exists() {
            // The saved weights are the average at the checkpoint: it goes on from there.
            let bytes = std::fs::read(&saved).with_context(|| format!("reading {}", saved.display()))?;
            let averaged = LocalTrm::<B::InnerBackend>::from_safetensors_bytes(arch, &bytes, &saved.display().to_string(), device)?;
            Ema::resume(&live, &averaged, &skip, cfg.ema_rate).with_context(|| saved.display().to_string())?
        } else {
            Ema::new(&live, &skip, cfg.ema_rate)
        });
    }
    let mut optim: OptimizerAdaptor<AdamAtan2, LocalTrm<B>, B> =
        OptimizerAdaptor::from(AdamAtan2 { beta1: cfg.beta1, beta2: cfg.beta2, weight_decay: cfg.weight_decay });
    let schedule = LrSchedule { base: cfg.lr, warmup_steps: cfg.lr_warmup_steps, total_steps: cfg.steps, min_ratio: cfg.lr_min_ratio };
    let params = super::params::param_infos(&model);
    if cluster.is_multi() {
        let config = toml::to_string(cfg).context("writing the config as TOML")?;
        let init = opts.init.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let dir_text = dir.to_string_lossy();
        let parts: [&[u8]; 6] = [config.as_bytes(), dir_text.as_bytes(), init.as_bytes(), &step.to_le_bytes(), &next_maze.to_le_bytes(), &(workers as u64).to_le_bytes()];
        let what = "the config, the run directory, --init, the step resumed from or the --devices count";
        cluster.agree_at_start(what, &parts, &params, &format!("{workers} workers"))?;
    }
    let mut log = if leader { Some(MetricsLog::open(dir, resume.then_some(step))?) } else { None };

    let evals: Vec<Vec<Grid>> = data.eval_sides.iter().map(|&s| eval_mazes(cfg.seed, s, data.eval_count, data.wall_share)).collect();
    // Each set runs at most two ACT steps past the longest answer it needs, so that an
    // evaluation costs a bounded time even before the Q head has learned to halt.
    let eval_caps: Vec<usize> = evals
        .iter()
        .map(|mazes| {
            let ticks = mazes.iter().filter_map(|m| Wave::new(m).ok()?.done_at).max().unwrap_or(0) as usize;
            (arch.steps_for_ticks(ticks) + 2).min(arch.halt_max_steps)
        })
        .collect();
    let last = max_steps.map_or(cfg.steps, |m| m.min(cfg.steps));
    let bar = if leader { ProgressBar::new(last) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps {elapsed_precise} eta {eta} {msg}").expect("valid template"));
    bar.set_position(step);

    let side_at = |step: u64| {
        let f = (step as f64 / data.curriculum_steps.max(1) as f64).min(1.0);
        data.start_side + ((data.max_side - data.start_side) as f64 * f).round() as usize
    };
    let mut rows: Vec<Option<Row>> = (0..batch).map(|_| None).collect();
    let mut carries: Vec<Option<InnerCarry<B>>> = (0..workers).map(|_| None).collect();
    let began = Instant::now();
    let mut train_seconds = 0.0;
    let (mut sum_lm, mut sum_aux, mut sum_q, mut sum_acc, mut n_logged) = (0.0, 0.0, 0.0, 0.0, 0u64);
    let (mut ended, mut ended_exact, mut examples) = (0u64, 0u64, 0u64);
    let mut window_start = Instant::now();

    while step < last {
        let t0 = Instant::now();
        // Fresh mazes into the rows that are free.
        let max_side = side_at(step);
        let mut reset = vec![false; batch];
        for (i, slot) in rows.iter_mut().enumerate() {
            if slot.as_ref().is_none_or(|r| r.tick >= r.end_tick) {
                let maze = draw_maze(cfg.seed, next_maze, MazeDraw { min_side: data.min_side, max_side, wall_share: data.wall_share, long_share: data.long_share });
                next_maze += 1;
                let wave = Wave::new(&maze)?;
                let done = wave.done_at.context("drawn mazes are connected")?;
                let end_tick = done.div_ceil(ticks_per_step) * ticks_per_step + data.extra_steps * ticks_per_step;
                let label = wave.answer_at(done);
                *slot = Some(Row { wave, label, tick: 0, end_tick });
                reset[i] = true;
                examples += 1;
            }
        }
        let live: Vec<Row> = rows.iter_mut().map(|r| r.take().expect("filled above")).collect();

        // Each worker runs its share of the rows from its own carries; the losses are divided
        // by the whole batch's counts, so the shares' gradients sum to the batch's gradient.
        let norms = Norms {
            cells: (recorded as usize * live.iter().map(|r| r.wave.rows() * r.wave.cols()).sum::<usize>()) as f64,
            rows: batch as f64,
        };
        let ctx = StepCtx {
            canvas,
            recorded,
            first_recorded,
            aux_weight: cfg.aux_weight,
            event_weight: cfg.event_weight,
            tick_weights: &tick_weights,
            norms,
        };
        let parts = shares_at.iter().map(|r| (&live[r.clone()], &reset[r.clone()])).zip(carries.iter_mut().map(Option::take));
        let shares = run_shares(&model, device, &pools, parts, |model, ((rows, reset), carry)| step_share(model, rows, reset, carry, &ctx, device))?;
        let mut grads = GradientsAccumulator::new();
        // The step's sums, then whether each row of the whole batch holds its label (this
        // process's rows filled in): summed over the processes, every row's.
        let mut sums = vec![0.0f64; STEP_SUMS + batch];
        let mut at = STEP_SUMS + mine.start;
        for (k, share) in shares.into_iter().enumerate() {
            grads.accumulate(&model, share.grads);
            carries[k] = Some(share.carry);
            for c in share.correct {
                sums[at] = f64::from(c);
                at += 1;
            }
            for (slot, x) in sums.iter_mut().zip([share.lm, share.aux, share.q, share.cell_hits as f64, share.cell_total as f64]) {
                *slot += x;
            }
        }
        let grads = cluster.sum_grads::<B::InnerBackend>(grads.grads(), &params, device).context("summing the gradients over the processes")?;
        cluster.sum_scalars(&mut sums);
        sum_lm += sums[0];
        sum_aux += sums[1];
        sum_q += sums[2];
        let (cell_hits, cell_total) = (sums[3], sums[4]);
        let correct: Vec<bool> = sums[STEP_SUMS..].iter().map(|&c| c > 0.5).collect();

        let lr = schedule.lr(step + 1);
        model = optim.step(lr, model, grads);
        if let Some(e) = ema.as_mut() {
            e.update(&model.valid());
        }
        step += 1;

        // Advance the rows; count the answers of those that leave.
        rows = live
            .into_iter()
            .enumerate()
            .map(|(i, mut row)| {
                row.tick += ticks_per_step;
                if row.tick >= row.end_tick {
                    ended += 1;
                    ended_exact += u64::from(correct[i]);
                }
                Some(row)
            })
            .collect();
        sum_acc += cell_hits / cell_total;
        n_logged += 1;
        train_seconds += t0.elapsed().as_secs_f64();
        bar.set_position(step);

        // Rank 0 alone logs, saves and evaluates; the others go on to the next step and wait
        // for it in the next all-reduce.
        let Some(log) = log.as_mut() else { continue };
        if step % cfg.log_interval == 0 || step == last {
            let secs = window_start.elapsed().as_secs_f64();
            let line = TrainLine {
                kind: "train",
                step,
                lr,
                accuracy: sum_acc / n_logged as f64,
                exact_accuracy: (ended > 0).then(|| ended_exact as f64 / ended as f64),
                lm_loss: sum_lm / n_logged as f64,
                aux_loss: sum_aux / n_logged as f64,
                q_halt_loss: sum_q / n_logged as f64,
                examples_per_s: examples as f64 / secs.max(1e-9),
                elapsed_s: began.elapsed().as_secs_f64(),
                max_side,
            };
            bar.set_message(format!(
                "lm {:.4} aux {:.4} q {:.3} exact {:.1}% side {max_side}",
                line.lm_loss,
                line.aux_loss,
                line.q_halt_loss,
                100.0 * line.exact_accuracy.unwrap_or(0.0)
            ));
            log.append(&line)?;
            (sum_lm, sum_aux, sum_q, sum_acc, n_logged, ended, ended_exact, examples) = (0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0);
            window_start = Instant::now();
        }
        // The saved and evaluated weights: the EMA's when there is one.
        let eval_model = || match &ema {
            Some(e) => e.apply(model.valid()),
            None => model.valid(),
        };
        if step % cfg.checkpoint_interval == 0 || step == last {
            let m = eval_model();
            save_model(&m, &dir.join("model.safetensors"))?;
            save_model(&model.valid(), &ckpt)?;
            let state = serde_json::json!({ "step": step, "next_maze": next_maze });
            trm_shared::atomic::write_file(&ckpt_state, state.to_string().as_bytes())?;
            // The maze stream restarts from `next_maze` with fresh carries on resume.
        }
        if step % cfg.eval_interval == 0 || step == last {
            let m = eval_model();
            let t = Instant::now();
            let mut sides = Vec::new();
            for (mazes, &cap) in evals.iter().zip(&eval_caps) {
                sides.push(score_mazes(&m, mazes, cap, 64, &m.devices()[0])?);
            }
            let n: usize = sides.iter().map(|s| s.mazes).sum();
            let exact = sides.iter().map(|s| s.exact * s.mazes as f64).sum::<f64>() / n.max(1) as f64;
            let cells = sides.iter().map(|s| s.cells * s.mazes as f64).sum::<f64>() / n.max(1) as f64;
            let summary: Vec<String> = sides.iter().map(|s| format!("{}: {:.0}%/{:.0}%", s.side, 100.0 * s.exact, 100.0 * s.valid_shortest)).collect();
            bar.println(format!("step {step}: eval exact/valid-shortest {} ({:.0} s)", summary.join(", "), t.elapsed().as_secs_f64()));
            log.append(&EvalLine { kind: "eval", step, exact_accuracy: exact, accuracy: cells, sides, elapsed_s: began.elapsed().as_secs_f64() })?;
        }
    }
    bar.finish();
    Ok(LocalSummary { dir: dir.to_path_buf(), steps: step, train_seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_preset_and_model_config_read() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let stages = [
            "configs/maze-any-size-cpu.toml",
            "configs/maze-any-size-cpu-stage2.toml",
            "configs/maze-any-size-cpu-stage3.toml",
            "configs/maze-any-size-cpu-stage4.toml",
            "configs/maze-any-size-cpu-stage5.toml",
        ];
        let mut archs = Vec::new();
        for file in stages.iter().chain(["public/models/default/config.toml"].iter()) {
            let cfg = LocalTrainConfig::from_file(&root.join(file)).unwrap();
            assert_eq!(cfg.arch.ticks_per_step(), 8, "{file}");
            archs.push(cfg.arch);
        }
        // Each stage starts from the previous one's weights: one architecture throughout.
        assert!(archs.windows(2).all(|w| w[0] == w[1]));
        let stage3 = LocalTrainConfig::from_file(&root.join(stages[2])).unwrap();
        assert_eq!(stage3.tick_weights(8), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 128.0]);
        // The committed model is the last stage's output, described by its config.
        let last = std::fs::read_to_string(root.join(stages[stages.len() - 1])).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("public/models/default/config.toml")).unwrap(), last);
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bad.path(), "global_batch_size = 0\n").unwrap();
        assert!(LocalTrainConfig::from_file(bad.path()).is_err());
    }

    /// A small run of the preset's shape: hidden 8, mazes of sides 4-6, 4 rows.
    fn tiny_config() -> LocalTrainConfig {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut cfg = LocalTrainConfig::from_file(&root.join("configs/maze-any-size-cpu.toml")).unwrap();
        cfg.arch.hidden_size = 8;
        cfg.global_batch_size = 4;
        cfg.steps = 6;
        cfg.log_interval = 2;
        cfg.eval_interval = 100;
        cfg.checkpoint_interval = 3;
        cfg.data = LocalDataConfig { min_side: 4, start_side: 6, max_side: 6, curriculum_steps: 1, eval_count: 2, eval_sides: vec![5], ..cfg.data };
        cfg.validate().unwrap();
        cfg
    }

    /// The `train` lines of a run's metrics log.
    fn train_lines(dir: &Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["kind"] == "train").collect()
    }

    #[test]
    fn two_workers_take_the_steps_of_one() {
        let cfg = tiny_config();
        let runs: Vec<_> = [1, 2]
            .iter()
            .map(|&workers| {
                let dir = tempfile::tempdir().unwrap();
                let opts = LocalRunOptions { workers, ..Default::default() };
                train_local::<crate::train::CpuTrain>(&cfg, dir.path(), &opts, &Default::default()).unwrap();
                let model = std::fs::read(dir.path().join("model.safetensors")).unwrap();
                (train_lines(dir.path()), model)
            })
            .collect();
        let ((one, weights_one), (two, weights_two)) = (&runs[0], &runs[1]);
        assert_eq!(one.len(), 3);
        assert_eq!(one.len(), two.len());
        for (a, b) in one.iter().zip(two) {
            for key in ["lm_loss", "aux_loss", "q_halt_loss", "accuracy"] {
                let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
                assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "step {}: {key} {x} with one worker, {y} with two", a["step"]);
            }
        }
        // The gradients differ only in summation order, so the weights agree closely, not bitwise.
        let device = Default::default();
        let load = |bytes: &[u8]| LocalTrm::<burn::backend::Flex>::from_safetensors_bytes(&cfg.arch, bytes, "model", &device).unwrap();
        let (m1, m2) = (load(weights_one), load(weights_two));
        let diff = (m1.embed_tokens.val() - m2.embed_tokens.val()).abs().max().into_scalar();
        assert!(diff < 1e-4, "embeddings differ by {diff}");
    }

    #[test]
    fn a_second_stage_starts_from_the_given_weights() {
        let mut cfg = tiny_config();
        (cfg.steps, cfg.lr_warmup_steps) = (30, 1);
        let first = tempfile::tempdir().unwrap();
        train_local::<crate::train::CpuTrain>(&cfg, first.path(), &LocalRunOptions { workers: 1, ..Default::default() }, &Default::default()).unwrap();
        let init = first.path().join("model.safetensors");
        let second = tempfile::tempdir().unwrap();
        let opts = LocalRunOptions { workers: 1, init: Some(init.clone()), max_steps: Some(2), ..Default::default() };
        train_local::<crate::train::CpuTrain>(&cfg, second.path(), &opts, &Default::default()).unwrap();
        let fresh = tempfile::tempdir().unwrap();
        let opts = LocalRunOptions { workers: 1, max_steps: Some(2), ..Default::default() };
        train_local::<crate::train::CpuTrain>(&cfg, fresh.path(), &opts, &Default::default()).unwrap();
        // Trained weights fit the mazes better than random ones from the first step.
        let (warm, cold) = (train_lines(second.path()), train_lines(fresh.path()));
        let loss = |v: &serde_json::Value| v["lm_loss"].as_f64().unwrap();
        assert!(loss(&warm[0]) < loss(&cold[0]), "from trained weights {} vs random {}", loss(&warm[0]), loss(&cold[0]));
        // Weights of another shape are refused with the file's name.
        let mut wide = cfg.clone();
        wide.arch.hidden_size = 16;
        let other = tempfile::tempdir().unwrap();
        let err = train_local::<crate::train::CpuTrain>(&wide, other.path(), &LocalRunOptions { workers: 1, init: Some(init.clone()), ..Default::default() }, &Default::default())
            .err()
            .expect("a hidden size 8 model cannot start a hidden size 16 run");
        assert!(format!("{err:#}").contains("model.safetensors"), "{err:#}");
    }

    #[test]
    fn a_resumed_run_goes_on_from_the_saved_average() {
        let mut cfg = tiny_config();
        (cfg.ema_rate, cfg.lr_warmup_steps) = (0.999, 1);
        let dir = tempfile::tempdir().unwrap();
        let run = |max_steps| {
            let opts = LocalRunOptions { workers: 1, resume: true, max_steps: Some(max_steps), ..Default::default() };
            train_local::<crate::train::CpuTrain>(&cfg, dir.path(), &opts, &Default::default()).unwrap();
        };
        let device = Default::default();
        let embeddings = |file: &str| {
            let bytes = std::fs::read(dir.path().join(file)).unwrap();
            LocalTrm::<burn::backend::Flex>::from_safetensors_bytes(&cfg.arch, &bytes, file, &device).unwrap().embed_tokens.val()
        };
        run(3);
        let (average, live) = (embeddings("model.safetensors"), embeddings("checkpoint.safetensors"));
        run(6);
        // At rate 0.999 three more steps barely move the average; an average started again
        // from the live weights would sit by them.
        let moved = (embeddings("model.safetensors") - average.clone()).abs().max().into_scalar();
        let apart = (live - average).abs().max().into_scalar();
        assert!(moved < 0.1 * apart, "the average moved {moved}, the live weights are {apart} from it");
    }

    #[test]
    fn drawn_mazes_follow_the_config_and_the_seed() {
        let how = MazeDraw { min_side: 5, max_side: 9, wall_share: [0.3, 0.5], long_share: 0.0 };
        for k in 0..200 {
            let g = draw_maze(5, k, how);
            assert!((5..=9).contains(&g.rows()) && (5..=9).contains(&g.cols()));
            let wave = Wave::new(&g).unwrap();
            let d = wave.done_at.unwrap() / 2;
            assert!(d as usize >= g.rows().max(g.cols()));
            assert_eq!(draw_maze(5, k, how), g);
        }
        assert_ne!(draw_maze(5, 0, how), draw_maze(6, 0, how));
    }

    #[test]
    fn long_mazes_have_the_benchmark_path_length_for_their_size() {
        let how = MazeDraw { min_side: 10, max_side: 16, wall_share: [0.28, 0.45], long_share: 0.5 };
        let mut long = 0;
        for k in 0..200 {
            let g = draw_maze(3, k, how);
            let moves = Wave::new(&g).unwrap().done_at.unwrap() / 2;
            let need = default_min_moves(g.rows(), g.cols());
            assert!(moves as usize >= g.rows().max(g.cols()));
            if moves >= need {
                long += 1;
            }
            assert_eq!(draw_maze(3, k, how), g);
        }
        // About half are drawn long; a few plain ones are long by chance.
        assert!((80..=140).contains(&long), "{long} of 200 long");
    }

    #[test]
    fn decisive_cells_weigh_more_when_asked() {
        let maze = Grid::parse_row_major("S   #   G", 3, 3).unwrap();
        let wave = Wave::new(&maze).unwrap();
        let row = Row { label: wave.answer_at(wave.done_at.unwrap()), wave, tick: 0, end_tick: 8 };
        let (canvas, t) = (4, 2);
        let mut plain = TickTargets::default();
        plain.push(std::slice::from_ref(&row), canvas, 0.0, 1.0, |_| t);
        let mut weighted = TickTargets::default();
        weighted.push(std::slice::from_ref(&row), canvas, 4.0, 1.0, |_| t);
        assert_eq!((plain.tokens.clone(), plain.choice.clone()), (weighted.tokens.clone(), weighted.choice.clone()));
        for y in 0..canvas {
            for x in 0..canvas {
                let k = y * canvas + x;
                if y >= 3 || x >= 3 {
                    assert_eq!((plain.weight[k], weighted.weight[k]), (0.0, 0.0), "padding");
                    continue;
                }
                let i = y * 3 + x;
                let event = row.wave.dist[i] == t || row.wave.traced[i] == t;
                assert_eq!(plain.weight[k], 1.0);
                assert_eq!(weighted.weight[k], if event { 5.0 } else { 1.0 }, "cell {y},{x}");
            }
        }
        // Two moves from G, the wave reaches (0,2) and (2,0) at tick 2.
        assert_eq!(weighted.weight[2], 5.0);
        assert_eq!(weighted.weight[2 * canvas], 5.0);
        // A tick's weight scales every cell of it, decisive ones included.
        let mut answer_tick = TickTargets::default();
        answer_tick.push(std::slice::from_ref(&row), canvas, 4.0, 3.0, |_| t);
        let tripled: Vec<f32> = weighted.weight.iter().map(|w| 3.0 * w).collect();
        assert_eq!(answer_tick.weight, tripled);
    }
}
