//! `trm train`: train a model per a TOML config, in a run directory, resumable.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::backend::BackendKind;
use crate::train::config::TrainConfig;
use crate::backend::devices::DeviceSet;
use crate::backend::{Matmul, probe};
use crate::train::cluster::Cluster;
use crate::train::run::{load_run_data, train_on};
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
    /// Start the size-general model from these weights (a `model.safetensors` of the same
    /// `[arch]`) instead of random ones: a second training stage. Not with --resume.
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Stop after this many optimizer steps in total (a short trial; resumable).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Devices sharing each batch, one data-parallel worker each, their gradients summed by
    /// burn-collective's all-reduce (the same global batch whatever the count): GPU indices
    /// with --backend cuda|wgpu; on --backend cpu, N entries = N worker threads (indices below
    /// the core count; on 2 cores `--devices 0,1` trains 1.6x the examples/s of one worker).
    /// Default 0, one worker. Under `mpirun`/`srun` (--features mpi) every process trains on
    /// its own --devices and the batch is split over processes x devices.
    #[arg(long, default_value = "0")]
    pub devices: DeviceSet,
    /// Under `mpirun`/`srun` with one process per GPU: train on the device whose index is this
    /// process's rank on its node (instead of --devices).
    #[arg(long, conflicts_with = "devices")]
    pub device_per_rank: bool,
    // Not kept in the run: given again with --resume.
    #[command(flatten)]
    pub matmul: Matmul,
}

/// Runs `trm train`.
pub fn run(mut args: TrainArgs) -> anyhow::Result<()> {
    args.matmul.apply(args.backend)?;
    let cluster = Cluster::current();
    if args.device_per_rank {
        args.devices = DeviceSet::one(cluster.local_rank());
    }
    let config_path = match (&args.resume, &args.config) {
        (Some(run), _) => run.join("config.toml"),
        (None, Some(path)) => path.clone(),
        (None, None) => bail!("give --config FILE or --resume RUN_DIR"),
    };
    let text = std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", config_path.display()))?;
    if trm_shared::model::LocalConfig::is_local_toml(&text) {
        return run_local(&args, &config_path, &text, cluster);
    }
    if args.init.is_some() {
        bail!("--init is for the size-general model (`[arch] mixer = \"local\"`); a reference run starts from its config");
    }
    // Before a run directory exists: a wrong device list leaves nothing behind.
    probe(args.backend, &args.devices)?;
    let leader = cluster.is_leader();
    let (cfg, dir, resume) = match (&args.resume, &args.config) {
        (Some(run), _) => {
            let cfg = TrainConfig::from_file(&run.join("config.toml"))?;
            (cfg, run.clone(), true)
        }
        (None, Some(path)) => {
            let cfg = TrainConfig::from_file(path)?;
            let dir = new_run_dir(&args.out, path, cluster);
            if leader {
                create_run_dir(&dir, &cfg)?;
            }
            (cfg, dir, false)
        }
        (None, None) => bail!("give --config FILE or --resume RUN_DIR"),
    };
    // Rank 0 writes the run directory and generates its mazes; the others read them after it
    // (a filesystem all processes share).
    let data = if leader {
        eprintln!("run directory: {}", dir.display());
        Some(load_run_data(&cfg, &dir)?)
    } else {
        None
    };
    cluster.barrier();
    let (train_split, test_split) = match data {
        Some(d) => d,
        None => {
            // Where rank 0's directory is not visible (no shared filesystem), generated mazes
            // are made again here: they are seeded, so the same.
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            load_run_data(&cfg, &dir)?
        }
    };
    let setup = RunSetup { dir: dir.clone(), train: train_split, test: test_split, resume, max_steps: args.max_steps, progress: true, devices: args.devices, cluster, hooks: Default::default() };
    let summary = train_on(args.backend, &cfg, setup)?;
    if !leader {
        return Ok(());
    }
    match summary.last_eval {
        Some(e) => eprintln!("done: {} steps; last eval exact accuracy {:.3} (token {:.3})", summary.steps, e.exact_accuracy, e.accuracy),
        None => eprintln!("done: {} steps (no evaluation reached); checkpoint in {}", summary.steps, dir.display()),
    }
    Ok(())
}

/// `trm train` for the size-general model (`[arch] mixer = "local"`): one process, mazes drawn
/// on the fly (no dataset), the run directory holding `config.toml`, `metrics.jsonl`,
/// `model.safetensors` (the EMA weights) and a resumable checkpoint.
fn run_local(args: &TrainArgs, config_path: &std::path::Path, text: &str, cluster: Cluster) -> anyhow::Result<()> {
    use crate::train::local::{LocalRunOptions, LocalTrainConfig, train_local};
    let cfg = LocalTrainConfig::from_file(config_path)?;
    if args.backend != BackendKind::Cpu && args.devices.len() > 1 {
        bail!("the size-general model trains on one GPU for now; --devices lists several only with --backend cpu (worker threads)");
    }
    if args.backend == BackendKind::Wgpu {
        bail!("the size-general model trains on --backend cpu or cuda for now, not wgpu");
    }
    probe(args.backend, &args.devices)?;
    if let Some(init) = &args.init
        && !init.is_file()
    {
        bail!("--init {}: no such file", init.display());
    }
    let (dir, resume) = match &args.resume {
        Some(run) => (run.clone(), true),
        None => {
            let dir = new_run_dir(&args.out, config_path, cluster);
            if cluster.is_leader() {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                trm_shared::atomic::write_file(&dir.join("config.toml"), text.as_bytes())
                    .with_context(|| format!("writing {}", dir.join("config.toml").display()))?;
            }
            (dir, false)
        }
    };
    if cluster.is_leader() {
        eprintln!("run directory: {}", dir.display());
    }
    cluster.barrier();
    let opts = LocalRunOptions { resume, init: args.init.clone(), max_steps: args.max_steps, workers: args.devices.len(), cluster };
    struct Job<'a> {
        cfg: &'a LocalTrainConfig,
        dir: &'a std::path::Path,
        opts: LocalRunOptions,
    }
    impl crate::backend::TrainJob for Job<'_> {
        type Output = crate::train::local::LocalSummary;
        fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: B::Device) -> anyhow::Result<Self::Output> {
            train_local::<B>(self.cfg, self.dir, &self.opts, &device)
        }
    }
    let summary = crate::backend::with_train_backend(args.backend, &args.devices, Job { cfg: &cfg, dir: &dir, opts })?;
    if !cluster.is_leader() {
        return Ok(());
    }
    eprintln!(
        "done: {} steps, {:.0} s of training; weights in {}",
        summary.steps,
        summary.train_seconds,
        summary.dir.join("model.safetensors").display()
    );
    Ok(())
}

/// `OUT/STEM-SECONDS` for a new run of the config at `config`; under MPI every process gets
/// rank 0's name (their clocks may differ by a second).
fn new_run_dir(out: &std::path::Path, config: &std::path::Path, cluster: Cluster) -> PathBuf {
    let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    out.join(format!("{stem}-{}", cluster.broadcast_u64(stamp)))
}
