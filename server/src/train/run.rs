//! Starting a run: its mazes (read or generated into the run) and its backend. Shared by
//! `trm train` and the server's training jobs.

use std::path::Path;

use anyhow::{Context, bail};
use trm_shared::dataset::{SplitData, read_split, write_dataset};
use trm_shared::generate::{GenerateConfig, generate_splits};

use burn::tensor::backend::AutodiffBackend;

use super::config::TrainConfig;
use super::trainer::{RunSetup, RunSummary, train};
use crate::backend::{BackendKind, TrainJob, with_train_backend};

/// The mazes of a run: read from the config's dataset, or generated once into `RUN/data`
/// (seeded by the config) so that a resumed run reads the very same mazes.
pub fn load_run_data(cfg: &TrainConfig, run: &Path) -> anyhow::Result<(SplitData, SplitData)> {
    let dir = match (&cfg.data.dir, cfg.data.size) {
        (Some(dir), _) => dir.clone(),
        (None, Some(size)) => {
            let dir = run.join("data");
            if !dir.join("train").exists() {
                let gen_cfg = GenerateConfig { rows: size, cols: size, min_moves: cfg.data.min_moves, seed: cfg.seed, ..GenerateConfig::default() };
                tracing::info!("generating {} + {} mazes of {size}x{size}", cfg.data.train_count, cfg.data.test_count);
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

/// Trains per `cfg` on `backend` after [`crate::backend::probe`]: every entry of
/// `setup.devices` is one data-parallel worker (a GPU, or on the CPU a thread).
pub fn train_on(backend: BackendKind, cfg: &TrainConfig, setup: RunSetup) -> anyhow::Result<RunSummary> {
    struct Job<'a> {
        cfg: &'a TrainConfig,
        setup: RunSetup,
    }
    impl TrainJob for Job<'_> {
        type Output = RunSummary;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> anyhow::Result<RunSummary> {
            train::<B>(self.cfg, self.setup, device)
        }
    }
    let devices = setup.devices.clone();
    with_train_backend(backend, &devices, Job { cfg, setup })
}
