//! `trm loadtest`: concurrent predict requests against a running `trm serve`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use trm_server::loadtest::run_load;
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
    /// Dataset split directory the mazes come from (cycled through).
    #[arg(long, default_value = "../shared/data/maze-30x30-hard-1k/test")]
    pub split: PathBuf,
}

/// Runs `trm loadtest` and prints its report.
pub fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let split = trm_shared::dataset::read_split(&args.split)
        .with_context(|| format!("reading the split {}", args.split.display()))?;
    let side = square_side(split.seq_len).context("the split's mazes are not square")?;
    let n = split.inputs.len() / split.seq_len;
    if n == 0 || args.requests == 0 || args.mazes_per_request == 0 {
        bail!("nothing to send: {n} mazes, {} requests of {} mazes", args.requests, args.mazes_per_request);
    }
    let maze = |k: usize| -> anyhow::Result<String> {
        let i = k % n;
        Ok(Grid::from_tokens(side, side, &split.inputs[i * split.seq_len..(i + 1) * split.seq_len])?.to_row_major())
    };
    let bodies = (0..args.requests)
        .map(|r| {
            let mazes = (0..args.mazes_per_request).map(|j| maze(r * args.mazes_per_request + j)).collect::<anyhow::Result<Vec<_>>>()?;
            Ok(serde_json::json!({ "mazes": mazes }).to_string())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
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
