//! Training TRM as the reference `pretrain.py` does (spec section 4), natively on burn.
//!
//! - [`config`]: the TOML training config with the reference's names.
//! - [`collective`]: the gradient all-reduce over this process's devices (burn-collective).
//! - [`cluster`]: training across processes (`mpirun`/`srun`), the gradients summed with MPI.
//! - [`loss`]: stablemax cross-entropy (f64), the Q-halt loss and the step metrics.
//! - [`optim`]: AdamATan2 (a burn `SimpleOptimizer`) and SignSGD for the puzzle embedding.
//! - [`schedule`]: linear warmup, then cosine down to `lr_min_ratio`.
//! - [`ema`]: the exponential moving average of the trainable weights.
//! - [`params`]: stable names for a module's parameters (for saving optimizer and EMA state).
//! - [`data`]: the reference's data order (seeded group shuffles, one example per group).
//! - [`checkpoint`]: the run directory and its atomic, resumable checkpoints.
//! - [`metrics_log`]: `metrics.jsonl`, appended line by line and trimmed on resume.
//! - [`curves`]: the learning curves of a run as an SVG figure.
//! - [`hooks`]: stopping a run and following its progress from outside (the server's jobs).
//! - [`step`]: one step's forward and backward split over data-parallel workers.
//! - [`run`]: a run's mazes (read or generated), and training on the chosen backend.
//! - [`update`]: one optimizer update (AdamATan2, SignSGD on the step's puzzle rows).
//! - [`local`]: training the size-general model (local mixer) on generated mazes of many sizes.
//! - [`trainer`]: the [`trainer::Trainer`] (model, EMA, optimizers, workers, data position) and
//!   the loop that drives it (evaluation, checkpoints, logging).

pub mod checkpoint;
pub mod cluster;
pub mod collective;
pub mod config;
pub mod curves;
pub mod data;
pub mod ema;
pub mod hooks;
pub mod local;
pub mod loss;
pub mod metrics_log;
pub mod optim;
pub mod params;
pub mod run;
pub mod schedule;
pub mod step;
pub mod trainer;
pub mod update;

/// The CPU training backend: Flex under autodiff.
pub type CpuTrain = burn::backend::Autodiff<burn::backend::Flex>;
