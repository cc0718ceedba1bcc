//! `trm train`: train a model per a TOML config, in a run directory, resumable.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use trm_shared::dataset::{SplitData, read_split, write_dataset};
use trm_shared::generate::{GenerateConfig, generate_splits};

use crate::backend::BackendKind;
use crate::train::config::TrainConfig;
use crate::train::trainer::{RunSetup, create_run_dir, train};

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
}

/// The mazes of a run: read from the config's dataset, or generated once into `RUN/data`
/// (seeded by the config) so that a resumed run reads the very same mazes.
fn load_data(cfg: &TrainConfig, run: &Path) -> anyhow::Result<(SplitData, SplitData)> {
    let dir = match (&cfg.data.dir, cfg.data.size) {
        (Some(dir), _) => dir.clone(),
        (None, Some(size)) => {
            let dir = run.join("data");
            if !dir.join("train").exists() {
                let gen_cfg = GenerateConfig { rows: size, cols: size, min_moves: cfg.data.min_moves, seed: cfg.seed, ..GenerateConfig::default() };
                eprintln!("generating {} + {} mazes of {size}x{size}", cfg.data.train_count, cfg.data.test_count);
                let splits = generate_splits(&gen_cfg, &[cfg.data.train_count, cfg.data.test_count], &mut |_| {})
                    .context("generating the mazes")?;
                let to_split = |m: &Vec<trm_shared::generate::GeneratedMaze>| {
                    SplitData::from_examples(size * size, m.iter().map(|m| (m.puzzle.tokens(), m.label.tokens())).collect())
                };
                let (train, test) = (to_split(&splits[0]), to_split(&splits[1]));
                write_dataset(&dir, &[("train", &train), ("test", &test)]).context("writing the generated mazes")?;
            }
            dir
        }
        (None, None) => bail!("[data] needs `dir` or `size`"),
    };
    let train = read_split(&dir.join("train")).with_context(|| format!("reading {}/train", dir.display()))?;
    let test = read_split(&dir.join("test")).with_context(|| format!("reading {}/test", dir.display()))?;
    Ok((train, test))
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
    let (train_split, test_split) = load_data(&cfg, &dir)?;
    let setup = RunSetup { dir: dir.clone(), train: train_split, test: test_split, resume, max_steps: args.max_steps, progress: true };
    let summary = match args.backend {
        BackendKind::Cpu => train::<crate::train::CpuTrain>(&cfg, setup, Default::default())?,
        other => bail!("training on {other:?} is not built in yet; use --backend cpu"),
    };
    match summary.last_eval {
        Some(e) => eprintln!("done: {} steps; last eval exact accuracy {:.3} (token {:.3})", summary.steps, e.exact_accuracy, e.accuracy),
        None => eprintln!("done: {} steps (no evaluation reached); checkpoint in {}", summary.steps, dir.display()),
    }
    Ok(())
}
