//! `trm bench`: seconds per ACT step of the maze models, and optionally of the reference
//! PyTorch code on the same cases in the same run.
//!
//! Each case runs in a child process (`trm bench --in-process --only CASE --json`), so that
//! its peak RSS is its own. With `--reference DIR` (a checkout of the reference code) the
//! small driver `scripts/reference_bench.py`, built into this binary, times the reference
//! model on the same case right after trm, under the same thread count. No reference
//! timing is written into this code: a ratio is only printed for a side-by-side run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use trm_shared::model::act::make_batch;
use trm_shared::model::cpu::linear::MatmulPrecision;
use trm_shared::model::{GridShape, InnerCarry, LocalConfig, LocalTrm, RandomInit, Trm, TrmConfig};

use trm_server::train::CpuTrain;
use trm_server::train::ema::Ema;
use trm_server::train::local::{masked_bce_sum, masked_ce_sum, run_shares};
use trm_server::train::optim::AdamAtan2;
use trm_server::train::params::param_infos;
use trm_server::train::step::{Workers, worker_pools};

use crate::backend::devices::DeviceSet;
use crate::backend::{BackendJob, BackendKind, Matmul, probe, with_backend};

/// The reference driver, carried in the binary so that `trm bench` works from anywhere.
const DRIVER: &str = include_str!("../../../scripts/reference_bench.py");
/// The size-general model's training config: its `[arch]` and batch are the bench's.
const LOCAL_CONFIG: &str = include_str!("../../../configs/maze-any-size-cpu.toml");

/// Arguments of `trm bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Timed ACT steps per case (after one untimed warm-up step).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Rounds per case: trm and the reference take turns this many times (each round a fresh
    /// process and its warm-up step) and each side's steps are pooled, so that a change of
    /// the machine's speed during the run falls on both sides.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Only the named cases, comma-separated (7m, h128, train-7m, train-h128, local-16,
    /// local-30, train-local-16, train-local-30); default all.
    #[arg(long)]
    pub only: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub matmul: Matmul,
    /// A checkout of the reference code (TinyRecursiveModels): time it side by side (with
    /// --matmul bf16 it runs its own bf16 recipe, `forward_dtype` bfloat16).
    #[arg(long, env = "TRM_REFERENCE_DIR")]
    pub reference: Option<PathBuf>,
    /// The Python (with torch, pydantic, einops) that runs the reference; default `python3`.
    #[arg(long, env = "TRM_REFERENCE_PYTHON")]
    pub python: Option<PathBuf>,
    /// Run the cases in this process, without children or reference (what each child does).
    #[arg(long, hide = true)]
    pub in_process: bool,
    /// Tiny models of the same shapes of work (the tests' runs; the times mean nothing).
    #[arg(long, hide = true)]
    pub tiny: bool,
}

/// What a case times.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// One eval-mode ACT step (forward only).
    Infer,
    /// One training step: ACT step, loss, backward and the AdamATan2 update (CPU only).
    Train,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Infer => "infer",
            Kind::Train => "train",
        }
    }
}

/// The network a case runs.
#[derive(Clone, Debug)]
enum Net {
    /// The reference's attention TRM over the 30x30 maze plus its prefix.
    Attention(TrmConfig),
    /// The size-general model (local 2D mixer) on a `side x side` canvas.
    Local { config: LocalConfig, side: usize },
}

/// One benchmark case.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    kind: Kind,
    net: Net,
    batch: usize,
}

/// Every case, in the order they run. `tiny`: the same cases on tiny models (tests).
fn cases(tiny: bool) -> anyhow::Result<Vec<Case>> {
    let (maze, h128) = if tiny {
        let t = TrmConfig::tiny(16, 1);
        (t.clone(), t)
    } else {
        let maze = TrmConfig::maze_7m();
        let h128 = TrmConfig { hidden_size: 128, num_heads: 2, puzzle_emb_ndim: 128, ..maze.clone() };
        (maze, h128)
    };
    let mut local = LocalConfig::from_toml_str(LOCAL_CONFIG).context("configs/maze-any-size-cpu.toml")?;
    let doc: toml::Table = toml::from_str(LOCAL_CONFIG).context("configs/maze-any-size-cpu.toml")?;
    let mut local_batch = doc.get("global_batch_size").and_then(toml::Value::as_integer).unwrap_or(32) as usize;
    let (mut small, mut large) = (local_side_of_training(&doc), 30);
    if tiny {
        local = LocalConfig { hidden_size: 8, l_layers: 1, l_cycles: 1, ..local };
        (small, large, local_batch) = (4, 5, 2);
    }
    let (b_small, b_train) = if tiny { (2, 2) } else { (8, 8) };
    let attn = |name, kind, config: &TrmConfig, batch| Case { name, kind, net: Net::Attention(config.clone()), batch };
    let loc = |name, kind, side, batch| Case { name, kind, net: Net::Local { config: local.clone(), side }, batch };
    Ok(vec![
        attn("7m", Kind::Infer, &maze, 1),
        attn("h128", Kind::Infer, &h128, b_small),
        attn("train-7m", Kind::Train, &maze, 2),
        attn("train-h128", Kind::Train, &h128, b_train),
        // One maze, as the app and `trm predict` run the size-general model.
        loc("local-16", Kind::Infer, small, 1),
        loc("local-30", Kind::Infer, large, 1),
        loc("train-local-16", Kind::Train, small, local_batch),
        loc("train-local-30", Kind::Train, large, local_batch),
    ])
}

/// The canvas side the size-general model trains on (`[data] max_side`).
fn local_side_of_training(doc: &toml::Table) -> usize {
    doc.get("data").and_then(|d| d.get("max_side")).and_then(toml::Value::as_integer).unwrap_or(16) as usize
}

/// trm's measurement of one case (what a child prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    case: String,
    /// `infer` or `train`.
    kind: String,
    /// `attention` or `local`.
    model: String,
    hidden: usize,
    batch: usize,
    parameters: usize,
    times_s: Vec<f64>,
    median_s: f64,
    min_s: f64,
    /// Peak resident memory of the process that ran the case (Linux only).
    peak_rss_mib: Option<f64>,
    /// Training: batch rows through one ACT step per second (at the median time).
    rows_per_s: Option<f64>,
}

/// The reference's measurement of one case (the driver's JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefMeasured {
    times_s: Vec<f64>,
    #[serde(default)]
    median_s: f64,
    #[serde(default)]
    min_s: f64,
    #[serde(default, skip_serializing)]
    peak_rss_kib: Option<u64>,
    #[serde(default)]
    peak_rss_mib: Option<f64>,
    /// The driver's peak after importing torch, before building the model.
    #[serde(default, skip_serializing)]
    import_rss_kib: Option<u64>,
    #[serde(default)]
    import_rss_mib: Option<f64>,
    #[serde(default)]
    torch: Option<String>,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    optimizer: Option<String>,
}

/// One row of the side-by-side output.
#[derive(Debug, Serialize)]
struct Compared {
    #[serde(flatten)]
    trm: Measured,
    reference: Option<RefMeasured>,
    /// trm's median over the reference's (all rounds pooled); below 1 is faster.
    ratio: Option<f64>,
    /// The same ratio in each round alone: how much the machine moved during the run.
    round_ratios: Vec<f64>,
}

/// The median and minimum of `times` (not empty).
fn median_min(times: &[f64]) -> (f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[sorted.len() / 2], sorted[0])
}

/// All rounds' steps of one side: the times, their median and minimum, the highest peak.
fn pool<'a>(rounds: impl Iterator<Item = (&'a [f64], Option<f64>)>) -> (Vec<f64>, f64, f64, Option<f64>) {
    let (mut times, mut peak) = (Vec::new(), None::<f64>);
    for (t, p) in rounds {
        times.extend_from_slice(t);
        peak = match (peak, p) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    let (median, min) = median_min(&times);
    (times, median, min, peak)
}

impl Measured {
    /// One measurement of all rounds' steps (`None` without rounds).
    fn pooled(rounds: Vec<Measured>) -> Option<Measured> {
        let mut all = rounds.first()?.clone();
        (all.times_s, all.median_s, all.min_s, all.peak_rss_mib) = pool(rounds.iter().map(|m| (&m.times_s[..], m.peak_rss_mib)));
        all.rows_per_s = all.rows_per_s.map(|_| all.batch as f64 / all.median_s);
        Some(all)
    }
}

impl RefMeasured {
    /// One measurement of all rounds' steps (`None` without rounds).
    fn pooled(rounds: Vec<RefMeasured>) -> Option<RefMeasured> {
        let mut all = rounds.first()?.clone();
        (all.times_s, all.median_s, all.min_s, all.peak_rss_mib) = pool(rounds.iter().map(|m| (&m.times_s[..], m.peak_rss_mib)));
        Some(all)
    }
}

/// Runs `trm bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let all = cases(args.tiny)?;
    let chosen = select(&all, args.only.as_deref())?;
    args.matmul.apply(args.backend)?;
    if args.in_process {
        let backend = args.backend;
        let (backend_name, rows) = with_backend(backend, Job { cases: chosen, repeats: args.repeats })?;
        println!("{}", serde_json::json!({ "backend": backend_name, "results": rows }));
        return Ok(());
    }
    // A backend that cannot run here is one error line of ours, not one per child.
    probe(args.backend, &DeviceSet::default())?;
    let reference = Reference::from_args(args.reference.as_deref(), args.python.as_deref())?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    let mut rows = Vec::new();
    let mut backend_name = String::new();
    for case in &chosen {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            let (name, trm) = run_child(case, &args)?;
            backend_name = name;
            let Some(trm) = trm else { break };
            ours.push(trm);
            if let (Some(r), Net::Attention(config)) = (&reference, &case.net) {
                theirs.push(r.time_case(case, config, args.repeats, threads, args.matmul.precision)?);
            }
        }
        let round_ratios = ours.iter().zip(&theirs).map(|(o, t)| o.median_s / t.median_s).collect();
        let Some(trm) = Measured::pooled(ours) else { continue };
        let theirs = RefMeasured::pooled(theirs);
        let ratio = theirs.as_ref().map(|r| trm.median_s / r.median_s);
        rows.push(Compared { trm, reference: theirs, ratio, round_ratios });
    }
    let load_after = load_average();
    if args.json {
        let about = reference.as_ref().map(|r| {
            serde_json::json!({ "dir": r.dir, "python": r.python, "torch": r.torch, "optimizer": r.optimizer })
        });
        println!(
            "{}",
            serde_json::json!({
                "backend": backend_name, "threads": threads, "rounds": args.rounds, "matmul": args.matmul.precision.to_string(), "load_before": load_before,
                "load_after": load_after, "reference": about, "results": rows,
            })
        );
        return Ok(());
    }
    print_table(&rows, &backend_name, threads, args.rounds, args.matmul.precision, reference.as_ref(), load_before.as_deref(), load_after.as_deref());
    Ok(())
}

/// The cases named in `only` (all without it); an unknown name is an error listing the names.
fn select(all: &[Case], only: Option<&str>) -> anyhow::Result<Vec<Case>> {
    let Some(only) = only else { return Ok(all.to_vec()) };
    let names: Vec<&str> = only.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let known: Vec<&str> = all.iter().map(|c| c.name).collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
        bail!("--only: no case {bad:?}; the cases are {}", known.join(", "));
    }
    Ok(all.iter().filter(|c| names.contains(&c.name)).cloned().collect())
}

/// The 1, 5 and 15 minute load averages (Linux), to print beside the times.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Peak resident memory of this process in MiB (`VmHWM`, Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs one case in a child `trm bench --in-process`: the backend's name and the
/// measurement (none when the child skipped the case, as training on a GPU backend).
fn run_child(case: &Case, args: &BenchArgs) -> anyhow::Result<(String, Option<Measured>)> {
    let exe = std::env::current_exe().context("finding the trm binary to run a case in")?;
    let backend = args.backend.to_possible_value().context("backend without a name")?;
    let mut cmd = Command::new(&exe);
    cmd.args(["bench", "--in-process", "--json", "--only", case.name, "--backend", backend.get_name()]);
    cmd.args(["--repeats", &args.repeats.to_string(), "--matmul", &args.matmul.precision.to_string()]);
    if args.tiny {
        cmd.arg("--tiny");
    }
    // The child's progress lines go straight to our stderr; its stdout is its JSON.
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!("case {}: the child trm bench failed ({})", case.name, out.status);
    }
    #[derive(Deserialize)]
    struct ChildOut {
        backend: String,
        results: Vec<Measured>,
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let parsed: ChildOut = serde_json::from_str(line).with_context(|| format!("case {}: unreadable child output {line:?}", case.name))?;
    Ok((parsed.backend, parsed.results.into_iter().next()))
}

/// The reference's `forward_dtype` beside trm's matmul precision: its own recipe at that precision.
fn reference_dtype(matmul: MatmulPrecision) -> &'static str {
    match matmul {
        MatmulPrecision::F32 => "float32",
        MatmulPrecision::Bf16 => "bfloat16",
    }
}

/// How to run the reference: its checkout, the Python, and the driver written out for it.
struct Reference {
    dir: PathBuf,
    python: PathBuf,
    driver: PathBuf,
    torch: String,
    optimizer: String,
}

impl Reference {
    /// Checks the flags and the Python once (before any timing), or `None` without `--reference`.
    fn from_args(dir: Option<&Path>, python: Option<&Path>) -> anyhow::Result<Option<Reference>> {
        let Some(dir) = dir else {
            if let Some(p) = python {
                bail!("--python {} needs --reference DIR (a checkout of the reference code)", p.display());
            }
            return Ok(None);
        };
        if !dir.is_dir() {
            bail!("--reference {}: no such directory (give a checkout of the reference TinyRecursiveModels code)", dir.display());
        }
        if !dir.join("models/recursive_reasoning/trm.py").is_file() {
            bail!("--reference {}: no models/recursive_reasoning/trm.py there (not a checkout of the reference code)", dir.display());
        }
        let dir = dir.canonicalize().with_context(|| format!("--reference {}", dir.display()))?;
        let python = python.map_or_else(|| PathBuf::from("python3"), Path::to_path_buf);
        // One file per process: parallel runs never share or delete each other's driver.
        let driver = std::env::temp_dir().join(format!("trm-reference-bench-{}.py", std::process::id()));
        std::fs::write(&driver, DRIVER).with_context(|| format!("writing {}", driver.display()))?;
        let mut r = Reference { dir, python, driver, torch: String::new(), optimizer: String::new() };
        let probe = r.call(&["--probe"]).context("checking the reference's Python")?;
        r.torch = probe.get("torch").and_then(|v| v.as_str()).unwrap_or("?").to_string();
        r.optimizer = probe.get("optimizer").and_then(|v| v.as_str()).unwrap_or("?").to_string();
        Ok(Some(r))
    }

    /// Runs the driver with `extra` arguments and reads its JSON line.
    fn call(&self, extra: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.driver).arg("--reference").arg(&self.dir).args(extra);
        let out = cmd.output().map_err(|e| anyhow::anyhow!("cannot run --python {}: {e}", self.python.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            bail!("{} {} failed ({}): {last}", self.python.display(), self.driver.display(), out.status);
        }
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("{}: the reference driver printed {line:?}, not JSON", self.python.display()))
    }

    /// Times the reference on `case` (same config, batch, repeats and threads as trm).
    fn time_case(&self, case: &Case, config: &TrmConfig, repeats: usize, threads: usize, matmul: MatmulPrecision) -> anyhow::Result<RefMeasured> {
        tracing::info!("{}: the reference", case.name);
        let config = serde_json::to_string(config).context("the case's config as JSON")?;
        let (batch, repeats, threads) = (case.batch.to_string(), repeats.to_string(), threads.to_string());
        let dtype = reference_dtype(matmul);
        let args = ["--case", case.name, "--kind", case.kind.name(), "--config", &config, "--batch", &batch, "--repeats", &repeats, "--threads", &threads, "--dtype", dtype];
        let value = self.call(&args).with_context(|| format!("reference on case {}", case.name))?;
        let mut m: RefMeasured = serde_json::from_value(value).with_context(|| format!("reference on case {}: unexpected JSON", case.name))?;
        if m.times_s.is_empty() || m.times_s.iter().any(|t| !t.is_finite() || *t <= 0.0) {
            bail!("reference on case {}: no usable times in {:?}", case.name, m.times_s);
        }
        (m.median_s, m.min_s) = median_min(&m.times_s);
        m.peak_rss_mib = m.peak_rss_kib.map(|k| k as f64 / 1024.0);
        m.import_rss_mib = m.import_rss_kib.map(|k| k as f64 / 1024.0);
        Ok(m)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.driver);
    }
}

fn print_table(rows: &[Compared], backend: &str, threads: usize, rounds: u32, matmul: MatmulPrecision, reference: Option<&Reference>, before: Option<&str>, after: Option<&str>) {
    println!("seconds per step on {backend}, {threads} threads, {matmul} matmuls; infer = one ACT step,");
    println!("train = the same step with loss, backward and the AdamATan2 update; local-* = the size-general model");
    match reference {
        Some(r) => println!(
            "reference: {} (PyTorch {}, forward_dtype {}, eager, {threads} threads; training optimizer {})",
            r.dir.display(),
            r.torch,
            reference_dtype(matmul),
            r.optimizer
        ),
        None => println!("reference: not run (give --reference DIR and --python PATH to time it side by side)"),
    }
    let na = || "-".to_string();
    let f = |v: Option<f64>, p: usize| v.map_or_else(na, |v| format!("{v:.p$}"));
    // Seconds: three decimals, more for the millisecond steps of the small model.
    let secs = |v: Option<f64>| f(v, if v.is_some_and(|v| v < 0.1) { 5 } else { 3 });
    println!(
        "{:<15} {:<5} {:>5} {:>9}  {:>8} {:>8}  {:>8} {:>8}  {:>5}  {:>8} {:>8}  {:>7}",
        "case", "kind", "batch", "params", "trm med", "trm min", "ref med", "ref min", "ratio", "trm MiB", "ref MiB", "rows/s"
    );
    for r in rows {
        let t = &r.trm;
        let rf = r.reference.as_ref();
        println!(
            "{:<15} {:<5} {:>5} {:>9}  {:>8} {:>8}  {:>8} {:>8}  {:>5}  {:>8} {:>8}  {:>7}",
            t.case,
            t.kind,
            t.batch,
            t.parameters,
            secs(Some(t.median_s)),
            secs(Some(t.min_s)),
            secs(rf.map(|m| m.median_s)),
            secs(rf.map(|m| m.min_s)),
            f(r.ratio, 2),
            f(t.peak_rss_mib, 0),
            f(rf.and_then(|m| m.peak_rss_mib), 0),
            f(t.rows_per_s, 1),
        );
    }
    println!("ratio = trm median / reference median (below 1: trm is faster); MiB = peak RSS of the case's process");
    if rounds > 1 {
        println!("{rounds} rounds, trm and the reference in turn, each side's steps pooled; the ratio of each round alone:");
        for r in rows.iter().filter(|r| !r.round_ratios.is_empty()) {
            let each: Vec<String> = r.round_ratios.iter().map(|x| format!("{x:.2}")).collect();
            println!("  {:<15} {}", r.trm.case, each.join(" "));
        }
    }
    if let Some(m) = rows.iter().find_map(|r| r.reference.as_ref()?.import_rss_mib) {
        println!("(the reference's process holds {m:.0} MiB after importing torch, before building a model)");
    }
    println!(
        "load average (1/5/15 min) before: {}, after: {}",
        before.unwrap_or("?"),
        after.unwrap_or("?")
    );
}

/// Runs the chosen cases in this process.
struct Job {
    cases: Vec<Case>,
    repeats: usize,
}

impl BackendJob for Job {
    type Output = (String, Vec<Measured>);

    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<(String, Vec<Measured>)> {
        let mut rows = Vec::new();
        for case in &self.cases {
            if case.kind == Kind::Train && !backend_name.starts_with("cpu") {
                tracing::warn!("{}: training is benchmarked on the CPU backend only; skipped", case.name);
                continue;
            }
            let (parameters, hidden, model, times) = match &case.net {
                Net::Attention(config) => {
                    let model = Trm::<B>::build(config, &mut RandomInit::new(0), &device)?;
                    let parameters = model.to_state_dict().tensors.values().map(|t| t.values.len()).sum();
                    let tokens = maze_tokens(case.batch, model.sizes().seq_len);
                    let times = match case.kind {
                        Kind::Infer => time_inference(&model, case, &tokens, self.repeats, &device)?,
                        Kind::Train => {
                            // Training builds its own copy; this one would only add to the peak.
                            drop(model);
                            time_training(config, case, &tokens, self.repeats)?
                        }
                    };
                    (parameters, config.hidden_size, "attention", times)
                }
                Net::Local { config, side } => {
                    let model = LocalTrm::<B>::build(config, &mut RandomInit::new(0), &device)?;
                    let parameters = model.to_state_dict().tensors.values().map(|t| t.values.len()).sum();
                    let times = match case.kind {
                        Kind::Infer => time_local_inference(&model, case, *side, self.repeats, &device)?,
                        Kind::Train => {
                            drop(model);
                            time_local_training(config, case, *side, self.repeats)?
                        }
                    };
                    (parameters, config.hidden_size, "local", times)
                }
            };
            let (median, min) = median_min(&times);
            rows.push(Measured {
                case: case.name.into(),
                kind: case.kind.name().into(),
                model: model.into(),
                hidden,
                batch: case.batch,
                parameters,
                times_s: times,
                median_s: median,
                min_s: min,
                peak_rss_mib: peak_rss_mib(),
                rows_per_s: (case.kind == Kind::Train).then(|| case.batch as f64 / median),
            });
        }
        Ok((backend_name.to_string(), rows))
    }
}

/// A benchmark maze per row: walls on a fixed pattern, S and G in the corners (the reference
/// driver builds the same one).
fn maze_tokens(batch: usize, seq: usize) -> Vec<i32> {
    let mut tokens: Vec<i32> = (0..batch * seq).map(|i| if i % seq % 7 == 3 { 1 } else { 2 }).collect();
    for b in 0..batch {
        tokens[b * seq] = 3;
        tokens[b * seq + seq - 1] = 4;
    }
    tokens
}

/// Seconds of `repeats` eval-mode ACT steps (after one warm-up step).
fn time_inference<B: Backend>(model: &Trm<B>, case: &Case, tokens: &[i32], repeats: usize, device: &B::Device) -> anyhow::Result<Vec<f64>> {
    let batch = make_batch::<B>(model.sizes(), tokens, &vec![0; case.batch], device)?;
    let step = || {
        let carry = model.initial_carry(case.batch);
        let (_, out) = model.forward(carry, batch.inputs.clone(), batch.puzzle_identifiers.clone());
        // Reading the result back waits for the backend to finish (async on GPUs).
        let _ = out.q_halt.into_data();
    };
    timed(case.name, repeats, || {
        step();
        Ok(())
    })
}

/// Seconds of `repeats` training steps on the CPU, split over one worker per core as
/// `trm train` does: ACT step with the carry kept, loss, backward, AdamATan2 update.
fn time_training(config: &TrmConfig, case: &Case, tokens: &[i32], repeats: usize) -> anyhow::Result<Vec<f64>> {
    let device = Default::default();
    let mut trm = Trm::<CpuTrain>::build(config, &mut RandomInit::new(0), &device)?;
    trm.h_init = trm.h_init.clone().set_require_grad(false);
    trm.l_init = trm.l_init.clone().set_require_grad(false);
    let params = param_infos(&trm);
    let sizes = trm.sizes();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut workers = Workers::<CpuTrain>::new(vec![device; cores.min(case.batch)]);
    let ranges = workers.split(case.batch);
    let seq = sizes.seq_len;
    let adam = AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.1 };
    let mut optim: OptimizerAdaptor<AdamAtan2, Trm<CpuTrain>, CpuTrain> = OptimizerAdaptor::from(adam);
    let mut model = Some(trm);
    timed(case.name, repeats, || {
        let trm = model.take().context("model lost in a failed step")?;
        let out = workers.step(&trm, case.batch, &vec![0; ranges.len()], &params, |w, dev| {
            let rows = ranges[w].clone();
            let part = &tokens[rows.start * seq..rows.end * seq];
            let mut b = make_batch::<CpuTrain>(sizes, part, &vec![0; rows.len()], dev)?;
            // Labels: the input itself (any valid tokens serve for timing).
            b.labels = Some(Tensor::from_data(TensorData::new(part.to_vec(), [rows.len(), seq]), dev));
            Ok(b)
        })?;
        model = Some(optim.step(1e-4, trm, out.grads));
        Ok(())
    })
}

/// Seconds of `repeats` ACT steps of the size-general model on one `side x side` maze per
/// row, as the app and `trm predict` run it (no mask: the maze fills the canvas).
fn time_local_inference<B: Backend>(model: &LocalTrm<B>, case: &Case, side: usize, repeats: usize, device: &B::Device) -> anyhow::Result<Vec<f64>> {
    let grid = GridShape { rows: side, cols: side };
    let cells = grid.cells();
    let tokens: Vec<i64> = maze_tokens(case.batch, cells).into_iter().map(i64::from).collect();
    let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [case.batch, cells]), device);
    timed(case.name, repeats, || {
        let x = model.input_embeddings(inputs.clone(), None);
        let carry = model.initial_carry(case.batch, cells, None);
        let (_, out) = model.step(carry, &x, grid, None, false);
        let _ = out.logits.argmax(2).into_data();
        let _ = out.q_halt.into_data();
        Ok(())
    })
}

/// Seconds of `repeats` training steps of the size-general model on a `side x side` canvas,
/// shaped as `trm train` runs it (server/src/train/local.rs): rows split over one worker
/// thread per core, one ACT step with every tick of the gradient round read out, the token,
/// process and Q losses, backward, AdamATan2 and the EMA update. The targets are fixed (the
/// wave process of real mazes costs no tensor work).
fn time_local_training(config: &LocalConfig, case: &Case, side: usize, repeats: usize) -> anyhow::Result<Vec<f64>> {
    type B = CpuTrain;
    let device = Default::default();
    let grid = GridShape { rows: side, cols: side };
    let cells = grid.cells();
    let mut model = LocalTrm::<B>::build(config, &mut RandomInit::new(0), &device)?;
    model.h_init = model.h_init.clone().set_require_grad(false);
    model.l_init = model.l_init.clone().set_require_grad(false);
    let skip: HashSet<_> = [model.h_init.id, model.l_init.id].into();
    let mut ema = Ema::new(&model.valid(), &skip, 0.995);
    let mut optim: OptimizerAdaptor<AdamAtan2, LocalTrm<B>, B> = OptimizerAdaptor::from(AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.01 });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = case.batch.div_ceil(cores.clamp(1, case.batch));
    let tokens: Vec<i64> = maze_tokens(case.batch, cells).into_iter().map(i64::from).collect();
    let shares: Vec<&[i64]> = tokens.chunks(chunk * cells).collect();
    let pools = worker_pools(shares.len());
    let mut carries: Vec<Option<InnerCarry<B>>> = shares.iter().map(|_| None).collect();
    let norm = ((config.l_cycles + 1) * case.batch * cells) as f64;
    let rows_norm = case.batch as f64;
    let mut live = Some(model);
    timed(case.name, repeats, || {
        let model = live.take().context("model lost in a failed step")?;
        let parts = shares.iter().zip(carries.iter_mut().map(Option::take));
        let results = run_shares(&model, &device, &pools, parts, |model, (share, carry)| local_share(model, share, carry, grid, norm, rows_norm, &device))?;
        let mut grads = GradientsAccumulator::new();
        for (k, (g, carry)) in results.into_iter().enumerate() {
            grads.accumulate(&model, g);
            carries[k] = Some(carry);
        }
        let model = optim.step(1e-4, model, grads.grads());
        ema.update(&model.valid());
        live = Some(model);
        Ok(())
    })
}

/// One worker's share of a size-general training step: its gradient and its next carry.
fn local_share<B: AutodiffBackend>(
    model: &LocalTrm<B>,
    tokens: &[i64],
    carry: Option<InnerCarry<B>>,
    grid: GridShape,
    norm: f64,
    rows_norm: f64,
    device: &B::Device,
) -> anyhow::Result<(GradientsParams, InnerCarry<B>)> {
    let cells = grid.cells();
    let rows = tokens.len() / cells;
    let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens.to_vec(), [rows, cells]), device);
    let mask = Tensor::<B, 3>::ones([rows, cells, 1], device);
    let x = model.input_embeddings(inputs.clone(), Some(&mask));
    let carry = match carry {
        Some(c) => model.reset_rows(c, Tensor::<B, 1, Int>::zeros([rows], device).equal_elem(1), Some(&mask)),
        None => model.initial_carry(rows, cells, Some(&mask)),
    };
    let (next, out) = model.step(carry, &x, grid, Some(&mask), true);
    let n = out.ticks.len() * rows;
    let (logits, wave) = model.readout(Tensor::cat(out.ticks, 0));
    let targets = inputs.repeat_dim(0, n / rows);
    let weight = Tensor::<B, 2>::ones([n, cells], device);
    let zeros = Tensor::<B, 2, Int>::zeros([n, cells], device);
    let lm = masked_ce_sum(logits, targets, weight.clone()).div_scalar(norm);
    let reach = wave.clone().narrow(2, 0, 1).squeeze_dim::<2>(2);
    let choice = wave.narrow(2, 1, trm_shared::maze::wave::dir::COUNT);
    let aux = (masked_bce_sum(reach, weight.zeros_like(), weight.clone()) + masked_ce_sum(choice, zeros, weight)).div_scalar(norm);
    // The trainer reads the answers back to set the Q target: the same sync point here.
    let _ = out.logits.argmax(2).into_data();
    let q = masked_bce_sum(out.q_halt, Tensor::zeros([rows], device), Tensor::ones([rows], device)).div_scalar(rows_norm);
    let loss = lm + aux + q.mul_scalar(0.5);
    Ok((GradientsParams::from_grads(loss.backward(), model), next))
}

/// Runs `step` once untimed, then `repeats` times timed.
fn timed(name: &str, repeats: usize, mut step: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    tracing::info!("{name}: warm-up step");
    step()?;
    let mut times = Vec::new();
    for r in 0..repeats.max(1) {
        let t = Instant::now();
        step()?;
        let s = t.elapsed().as_secs_f64();
        tracing::info!("{name}: step {} took {s:.3} s", r + 1);
        times.push(s);
    }
    Ok(times)
}
