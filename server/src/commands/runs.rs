//! `trm runs ...`: looking at training run directories (`trm train`'s output).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use trm_server::train::checkpoint::step_dir_name;
use trm_server::train::curves::render_svg;
use trm_server::train::metrics_log::{METRICS_FILE, MetricsRecord, read_metrics};

/// Arguments of `trm runs`.
#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// Subcommands of `trm runs`.
#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Draw a run's learning curves from its metrics.jsonl: training loss, training exact and
    /// token accuracy, evaluation exact and token accuracy, and the learning rate, against the
    /// step. SVG only (it needs no font; PNG would need one compiled in): `.png` is refused.
    Plot(PlotArgs),
    /// Print a run's checkpoints, its evaluations and its last training line.
    Show(ShowArgs),
    /// Compare two weight files (safetensors or PyTorch) tensor by tensor: the largest
    /// absolute difference, e.g. between a one-process run and an `mpirun` one.
    DiffWeights(DiffWeightsArgs),
}

/// Arguments of `trm runs diff-weights`.
#[derive(Args, Debug)]
pub struct DiffWeightsArgs {
    /// First weight file.
    pub a: PathBuf,
    /// Second weight file (the same tensor names and shapes).
    pub b: PathBuf,
    /// Fail (exit status 1) if any value differs by more than this.
    #[arg(long)]
    pub max_abs: Option<f64>,
}

/// Arguments of `trm runs plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A run directory (holding metrics.jsonl).
    pub run: PathBuf,
    /// The SVG file to write (default RUN/curves.svg).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `trm runs show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// A run directory (holding metrics.jsonl).
    pub run: PathBuf,
}

/// Runs `trm runs`.
pub fn run(args: RunsArgs) -> anyhow::Result<()> {
    match args.command {
        RunsCommand::Plot(args) => plot(args),
        RunsCommand::Show(args) => show(args),
        RunsCommand::DiffWeights(args) => diff_weights(args),
    }
}

fn metrics_of(run: &Path) -> anyhow::Result<Vec<MetricsRecord>> {
    if !run.is_dir() {
        bail!("{} is not a directory (give a run directory made by trm train)", run.display());
    }
    read_metrics(&run.join(METRICS_FILE)).with_context(|| format!("reading the metrics of run {}", run.display()))
}

fn plot(args: PlotArgs) -> anyhow::Result<()> {
    let out = args.out.unwrap_or_else(|| args.run.join("curves.svg"));
    match out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("svg") => {}
        Some("png") => bail!("{}: only SVG is drawn (a PNG would need a font compiled in); give --out FILE.svg", out.display()),
        _ => bail!("{}: the output must be an .svg file", out.display()),
    }
    let records = metrics_of(&args.run)?;
    let title = args.run.file_name().map_or_else(|| args.run.display().to_string(), |n| n.to_string_lossy().into_owned());
    let svg = render_svg(&records, &title).with_context(|| format!("plotting run {}", args.run.display()))?;
    trm_shared::atomic::write_file(&out, svg.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    let evals = records.iter().filter(|r| r.kind == "eval").count();
    println!("{}: {} lines ({evals} evaluations) up to step {}", out.display(), records.len(), records.iter().map(|r| r.step).max().unwrap_or(0));
    Ok(())
}

/// `step_N` directories of the run, by step.
fn checkpoint_steps(run: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("step_")?.parse().ok())
        .collect();
    steps.sort_unstable();
    steps
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let records = metrics_of(&args.run)?;
    let latest = std::fs::read_to_string(args.run.join("latest")).ok().map(|s| s.trim().to_string());
    let steps = checkpoint_steps(&args.run);
    println!("run {}", args.run.display());
    let names: Vec<String> = steps
        .iter()
        .map(|&s| {
            let name = step_dir_name(s);
            if latest.as_deref() == Some(name.as_str()) { format!("{name} (latest)") } else { name }
        })
        .collect();
    println!("checkpoints: {}", if names.is_empty() { "none".to_string() } else { names.join(", ") });
    println!("{:<6} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}", "kind", "step", "lm_loss", "q_halt", "exact", "token", "lr");
    let last_train = records.iter().rev().find(|r| r.kind == "train");
    for r in records.iter().filter(|r| r.kind == "eval").chain(last_train) {
        println!(
            "{:<6} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
            r.kind,
            r.step,
            cell(r.lm_loss),
            cell(r.q_halt_loss),
            cell(r.exact_accuracy),
            cell(r.accuracy),
            r.lr.map_or_else(|| "-".into(), |v| format!("{v:.2e}"))
        );
    }
    Ok(())
}

fn diff_weights(args: DiffWeightsArgs) -> anyhow::Result<()> {
    use trm_shared::model::StateDict;
    let a = StateDict::read(&args.a).with_context(|| format!("reading {}", args.a.display()))?;
    let b = StateDict::read(&args.b).with_context(|| format!("reading {}", args.b.display()))?;
    let names = |sd: &StateDict| sd.tensors.keys().cloned().collect::<Vec<_>>();
    if names(&a) != names(&b) {
        let only_a: Vec<_> = a.tensors.keys().filter(|k| !b.tensors.contains_key(*k)).collect();
        let only_b: Vec<_> = b.tensors.keys().filter(|k| !a.tensors.contains_key(*k)).collect();
        bail!("the files hold different tensors: only in the first {only_a:?}, only in the second {only_b:?}");
    }
    let (mut worst, mut worst_name, mut values) = (0f64, String::new(), 0usize);
    for (name, ta) in &a.tensors {
        let tb = &b.tensors[name];
        if ta.shape != tb.shape {
            bail!("{name}: shape {:?} against {:?}", ta.shape, tb.shape);
        }
        for (x, y) in ta.values.iter().zip(&tb.values) {
            let d = (f64::from(*x) - f64::from(*y)).abs();
            // NaN compares false: a NaN on one side only counts as an infinite difference.
            let d = if d.is_nan() && !(x.is_nan() && y.is_nan()) { f64::INFINITY } else if d.is_nan() { 0.0 } else { d };
            if d > worst {
                (worst, worst_name) = (d, name.clone());
            }
        }
        values += ta.values.len();
    }
    let at = if worst > 0.0 { format!(" (in {worst_name})") } else { String::new() };
    println!("max abs difference {worst:.3e} over {values} values in {} tensors{at}", a.tensors.len());
    if let Some(limit) = args.max_abs
        && worst > limit
    {
        bail!("the weights differ by {worst:.3e}, more than --max-abs {limit:e}");
    }
    Ok(())
}
