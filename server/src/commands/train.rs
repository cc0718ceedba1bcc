//! `trm train`: train a model per a TOML config, in a run directory, resumable.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::backend::BackendKind;
use crate::train::config::TrainConfig;
use crate::train::run::{cpu_workers, load_run_data, train_on};
use crate::train::trainer::{RunSetup, create_run_dir};

/// Arguments of `trm train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training config (TOML, the reference's names; see configs/). Not with --resume.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Backend to train on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Folder that receives the new run directory.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Continue the run in this directory from its latest checkpoint.
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Stop after this many optimizer steps in total (a short trial; resumable).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Data-parallel workers sharing each batch (threads; the gradients are summed, so the
    /// result is the same global batch). 0 = one per CPU core. Default 1: on burn 0.21's
    /// CPU backend two workers were measured no faster than one (their autodiff graphs
    /// serialise), so the extra threads only add nondeterminism.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

/// Runs `trm train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let (cfg, dir, resume) = match (&args.resume, &args.config) {
        (Some(run), _) => {
            let cfg = TrainConfig::from_file(&run.join("config.toml"))?;
            (cfg, run.clone(), true)
        }
        (None, Some(path)) => {
            let cfg = TrainConfig::from_file(path)?;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let dir = args.out.join(format!("{stem}-{stamp}"));
            create_run_dir(&dir, &cfg)?;
            (cfg, dir, false)
        }
        (None, None) => bail!("give --config FILE or --resume RUN_DIR"),
    };
    eprintln!("run directory: {}", dir.display());
    let (train_split, test_split) = load_run_data(&cfg, &dir)?;
    let setup = RunSetup { dir: dir.clone(), train: train_split, test: test_split, resume, max_steps: args.max_steps, progress: true, workers: cpu_workers(args.workers), hooks: Default::default() };
    let summary = train_on(args.backend, &cfg, setup)?;
    match summary.last_eval {
        Some(e) => eprintln!("done: {} steps; last eval exact accuracy {:.3} (token {:.3})", summary.steps, e.exact_accuracy, e.accuracy),
        None => eprintln!("done: {} steps (no evaluation reached); checkpoint in {}", summary.steps, dir.display()),
    }
    Ok(())
}
