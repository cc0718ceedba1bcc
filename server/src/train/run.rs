//! Starting a run: its mazes (read or generated into the run) and its backend. Shared by
//! `trm train` and the server's training jobs.

use std::path::Path;

use anyhow::{Context, bail};
use trm_shared::dataset::{SplitData, read_split, write_dataset};
use trm_shared::generate::{GenerateConfig, generate_splits};

use super::config::TrainConfig;
use super::devices::DeviceSet;
use super::trainer::{RunSetup, RunSummary, train};
use crate::backend::BackendKind;

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

/// Checks `devices` against what the machine has for `backend`: on the CPU, at most one
/// worker per core; on CUDA, the driver and nvrtc load and every index exists.
pub fn check_devices(backend: BackendKind, devices: &DeviceSet) -> anyhow::Result<()> {
    match backend {
        BackendKind::Cpu => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Ok(devices.check_against(cores, "the CPU (one worker per core at most)")?)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            let count = crate::gpu::cuda_device_count().context("--backend cuda")?;
            Ok(devices.check_against(count, "this machine's CUDA driver")?)
        }
        _ => Ok(()),
    }
}

/// Checks `setup.devices` ([`check_devices`]) and trains on `backend`: every entry of
/// `--devices` is one data-parallel worker (a GPU, or on the CPU a thread).
pub fn train_on(backend: BackendKind, cfg: &TrainConfig, setup: RunSetup) -> anyhow::Result<RunSummary> {
    check_devices(backend, &setup.devices)?;
    let first = setup.devices.indices().first().copied().unwrap_or(0);
    match backend {
        BackendKind::Cpu => train::<super::CpuTrain>(cfg, setup, Default::default()),
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let device = burn::backend::cuda::CudaDevice::new(first);
                train::<burn::backend::Autodiff<burn::backend::Cuda>>(cfg, setup, device)
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = first;
                bail!("this trm was built without CUDA; rebuild with `cargo build --release -p trm-server --features cuda`")
            }
        }
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                // Device 0 alone: whatever adapter wgpu prefers; listed indices: discrete GPUs.
                let device = if setup.devices == DeviceSet::default() {
                    burn::backend::wgpu::WgpuDevice::DefaultDevice
                } else {
                    burn::backend::wgpu::WgpuDevice::DiscreteGpu(first)
                };
                train::<burn::backend::Autodiff<burn::backend::Wgpu>>(cfg, setup, device)
            }
            #[cfg(not(feature = "wgpu"))]
            {
                bail!("this trm was built without wgpu; rebuild with `cargo build --release -p trm-server --features wgpu`")
            }
        }
    }
}
