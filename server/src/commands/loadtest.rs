//! `trm loadtest`: concurrent predict requests against a running `trm serve`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use trm_server::loadtest::{run_load, served_model_size};
use trm_shared::generate::{GenerateConfig, generate_splits};
use trm_shared::maze::{Grid, square_side};

/// Arguments of `trm loadtest`.
#[derive(Args, Debug)]
pub struct LoadtestArgs {
    /// Base URL of a running `trm serve`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Requests to send.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Mazes per request.
    #[arg(long, default_value_t = 1)]
    pub mazes_per_request: usize,
    /// Dataset split directory the mazes come from (cycled through). Default: up to 256 new
    /// mazes generated here (seed 0) at the size of the model the server serves.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// The ACT step cap each request asks for (the API's `steps`). Default: the served
    /// model's own (for the size-general model, `halt_max_steps`).
    #[arg(long)]
    pub steps: Option<usize>,
}

/// Distinct mazes generated for a load run, at most this many (then cycled).
const GENERATED_MAZES: usize = 256;

/// Runs `trm loadtest` and prints its report.
pub fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let wanted = args.requests * args.mazes_per_request;
    if wanted == 0 {
        bail!("nothing to send: {} requests of {} mazes", args.requests, args.mazes_per_request);
    }
    let mazes = match &args.split {
        Some(dir) => split_mazes(dir)?,
        None => generated_mazes(&args.url, wanted.min(GENERATED_MAZES))?,
    };
    let bodies: Vec<String> = (0..args.requests)
        .map(|r| {
            let batch: Vec<&String> = (0..args.mazes_per_request).map(|j| &mazes[(r * args.mazes_per_request + j) % mazes.len()]).collect();
            let mut body = serde_json::json!({ "mazes": batch });
            if let Some(steps) = args.steps {
                body["steps"] = steps.into();
            }
            body.to_string()
        })
        .collect();
    let report = run_load(&args.url, &bodies, args.concurrency)?;
    let secs = report.wall.as_secs_f64();
    println!("{} requests ({} mazes each), {} at a time, in {secs:.2} s", report.requests, args.mazes_per_request, args.concurrency);
    println!(
        "throughput: {:.1} requests/s, {:.1} mazes/s",
        report.ok as f64 / secs,
        (report.ok * args.mazes_per_request) as f64 / secs
    );
    println!("latency: p50 {:.1} ms, p99 {:.1} ms", report.p50.as_secs_f64() * 1e3, report.p99.as_secs_f64() * 1e3);
    println!("batches: {} formed, {:.2} mazes each on average", report.batches, report.mean_batch_mazes);
    println!("errors: {}", report.error_count);
    for e in &report.errors {
        println!("  {e}");
    }
    if report.error_count > 0 {
        bail!("{} of {} requests failed", report.error_count, report.requests);
    }
    Ok(())
}

/// Every maze of a dataset split, row-major.
fn split_mazes(dir: &Path) -> anyhow::Result<Vec<String>> {
    let split = trm_shared::dataset::read_split(dir).with_context(|| format!("reading the split {}", dir.display()))?;
    let side = square_side(split.seq_len).context("the split's mazes are not square")?;
    let mazes = split
        .inputs
        .chunks_exact(split.seq_len)
        .map(|tokens| Ok(Grid::from_tokens(side, side, tokens)?.to_row_major()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if mazes.is_empty() {
        bail!("the split {} holds no mazes", dir.display());
    }
    Ok(mazes)
}

/// `count` new mazes (seed 0, the generator's default difficulty for the size) at the size of
/// the model the server at `url` serves.
fn generated_mazes(url: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let (rows, cols) = served_model_size(url)?;
    let config = GenerateConfig { rows, cols, ..GenerateConfig::default() };
    let splits = generate_splits(&config, &[count], &mut |_| {}).with_context(|| format!("generating {count} {rows}x{cols} mazes"))?;
    Ok(splits.into_iter().flatten().map(|m| m.puzzle.to_row_major()).collect())
}
