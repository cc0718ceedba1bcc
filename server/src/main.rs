//! `trm`: the command line of the Tiny Recursive Model for mazes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
// The backend choice and training live in the library (the server uses them too);
// `crate::backend` and `crate::train` still name them.
use trm_server::{backend, inputs, solve, train};

/// Tensor buffers of a few hundred KiB are allocated and freed thousands of times per training
/// step; mimalloc (told to keep freed pages, in `main`) reuses them without page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod hub;

/// Tiny Recursive Model for mazes: datasets, generation, model, training and serving.
#[derive(Parser)]
#[command(name = "trm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate new hard mazes in the reference dataset layout.
    Generate(commands::generate::GenerateArgs),
    /// Build the benchmark in the reference npy layout from the CSV release (downloaded from
    /// the Hugging Face hub, or --from a local copy) or from an npy copy.
    PrepareDataset(commands::prepare_dataset::PrepareDatasetArgs),
    /// Inspect datasets (statistics).
    Dataset(commands::dataset::DatasetArgs),
    /// Inspect single mazes (draw a maze and its path).
    Maze(commands::maze::MazeArgs),
    /// Run a TRM checkpoint on mazes and print (or dump) its answers.
    Predict(commands::predict::PredictArgs),
    /// Score a TRM checkpoint on a dataset split.
    Eval(commands::eval::EvalArgs),
    /// Train a model per a TOML config (configs/), in a resumable run directory.
    Train(commands::train::TrainArgs),
    /// Look at training runs: learning curves as SVG, checkpoints and metrics.
    Runs(commands::runs::RunsArgs),
    /// Time one ACT step of the maze models on a backend.
    Bench(commands::bench::BenchArgs),
    /// Download a published TRM checkpoint and its config from the Hugging Face hub.
    DownloadWeights(commands::download_weights::DownloadWeightsArgs),
    /// Serve the HTTP API (predict, generate, datasets) and the web app.
    Serve(commands::serve::ServeArgs),
    /// Send concurrent predict requests to a running server: throughput, latency, batch sizes.
    Loadtest(commands::loadtest::LoadtestArgs),
}

/// `trm train`, as one process of a multi-process run when `mpirun` or `srun` started it
/// (`--features mpi`; see `train::cluster`). An error in one process ends them all
/// (MPI_Abort): the others would wait for it in their next all-reduce forever.
fn train_in_cluster(args: commands::train::TrainArgs) -> anyhow::Result<()> {
    let _mpi = train::cluster::init()?;
    let cluster = train::cluster::Cluster::current();
    let result = commands::train::run(args);
    if let Err(err) = &result
        && cluster.is_multi()
    {
        eprintln!("error: rank {} of {}: {err:#}", cluster.rank(), cluster.size());
        cluster.abort(1);
    }
    result
}

/// `mi_option_purge_delay` of the bundled mimalloc v2 (`mimalloc.h`; the -sys crate names
/// the options before and after it, 14 and 16, but not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Never hand freed pages back to the OS: a training step frees and reallocates the same
    // tensor sizes thousands of times, and each returned page costs a fault and a zeroing
    // when reused (measured: 225k faults in 20 steps, ~20% of the step time, down to 1k).
    // SAFETY: sets a process-wide allocator option; mimalloc allows this at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // wgpu-hal logs the Vulkan loader's own errors while wgpu looks for an adapter; without
    // one, `--backend wgpu` ends with a clear error of ours, so they are noise by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,wgpu_hal=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => commands::generate::run(args),
        Command::PrepareDataset(args) => commands::prepare_dataset::run(args),
        Command::Dataset(args) => commands::dataset::run(args),
        Command::Maze(args) => commands::maze::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Train(args) => train_in_cluster(args),
        Command::Runs(args) => commands::runs::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::DownloadWeights(args) => commands::download_weights::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Loadtest(args) => commands::loadtest::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, with the whole chain of causes.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
