//! `trm bench`: seconds per ACT step of the maze models, on the chosen backend.
//!
//! One ACT step of the 7M maze model (hidden 512, 8 heads, L_layers 2, H_cycles 3,
//! L_cycles 4) is 30 block applications over 916 positions. The reference PyTorch code,
//! same configs in f32 on the project's 2-core machine, takes 9.80 s (7M, batch 1) and
//! 7.21 s (hidden 128, batch 8) per step; the goal is at most 0.8 of that.

use std::time::Instant;

use burn::prelude::*;
use clap::Args;
use serde::Serialize;
use trm_shared::model::act::make_batch;
use trm_shared::model::{RandomInit, Trm, TrmConfig};

use crate::backend::{BackendJob, BackendKind, with_backend};

/// Arguments of `trm bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Timed ACT steps per model (after one untimed warm-up step).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Only the named cases (`7m`, `h128`); default both.
    #[arg(long)]
    pub only: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One benchmark case.
struct Case {
    name: &'static str,
    config: TrmConfig,
    batch: usize,
    /// The reference's seconds per step on the project machine (f32, CPU).
    reference_s: f64,
}

fn cases() -> Vec<Case> {
    let maze = TrmConfig::maze_7m();
    vec![
        Case { name: "7m", config: maze.clone(), batch: 1, reference_s: 9.80 },
        Case {
            name: "h128",
            config: TrmConfig { hidden_size: 128, num_heads: 2, puzzle_emb_ndim: 128, ..maze },
            batch: 8,
            reference_s: 7.21,
        },
    ]
}

/// One result row.
#[derive(Debug, Serialize)]
struct Row {
    case: String,
    hidden: usize,
    heads: usize,
    batch: usize,
    parameters: usize,
    median_s: f64,
    min_s: f64,
    reference_s: f64,
    ratio_to_reference: f64,
}

/// Runs `trm bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let backend = args.backend;
    with_backend(backend, Job { args })
}

struct Job {
    args: BenchArgs,
}

impl BackendJob for Job {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device, backend_name: &'static str) -> anyhow::Result<()> {
        let args = self.args;
        let mut rows = Vec::new();
        for case in cases() {
            if args.only.as_deref().is_some_and(|o| !o.split(',').any(|x| x.trim() == case.name)) {
                continue;
            }
            let mut model = Trm::<B>::build(&case.config, &mut RandomInit::new(0), &device)?;
            crate::backend::tune_for_backend(&mut model);
            let parameters: usize = model.to_state_dict().tensors.values().map(|t| t.values.len()).sum();
            let seq = case.config.require_seq_len()?;
            // A benchmark maze: walls on a fixed pattern, S and G in the corners.
            let mut tokens: Vec<i32> = (0..case.batch * seq).map(|i| if i % 7 == 3 { 1 } else { 2 }).collect();
            for b in 0..case.batch {
                tokens[b * seq] = 3;
                tokens[b * seq + seq - 1] = 4;
            }
            let batch = make_batch::<B>(&case.config, &tokens, &vec![0; case.batch], &device)?;
            let step = || {
                let carry = model.initial_carry(case.batch);
                let (_, out) = model.forward(carry, batch.inputs.clone(), batch.puzzle_identifiers.clone());
                // Reading the result back waits for the backend to finish (async on GPUs).
                let _ = out.q_halt.into_data();
            };
            tracing::info!("{}: warm-up step", case.name);
            step();
            let mut times = Vec::new();
            for r in 0..args.repeats.max(1) {
                let t = Instant::now();
                step();
                let s = t.elapsed().as_secs_f64();
                tracing::info!("{}: step {} took {s:.3} s", case.name, r + 1);
                times.push(s);
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            rows.push(Row {
                case: case.name.into(),
                hidden: case.config.hidden_size,
                heads: case.config.num_heads,
                batch: case.batch,
                parameters,
                median_s: median,
                min_s: times[0],
                reference_s: case.reference_s,
                ratio_to_reference: median / case.reference_s,
            });
        }
        if args.json {
            println!("{}", serde_json::json!({ "backend": backend_name, "results": rows }));
            return Ok(());
        }
        println!("one ACT step (H_cycles 3, L_cycles 4, L_layers 2, 30x30 + 16 prefix) on {backend_name}");
        println!("case   hidden heads batch  params     median s  min s    reference s  ratio");
        for r in &rows {
            println!(
                "{:<6} {:>6} {:>5} {:>5}  {:>9}  {:>8.3}  {:>7.3}  {:>11.2}  {:>5.2}",
                r.case, r.hidden, r.heads, r.batch, r.parameters, r.median_s, r.min_s, r.reference_s, r.ratio_to_reference
            );
        }
        println!("(goal: ratio <= 0.80; reference = the PyTorch code in f32 on a 2-core CPU)");
        Ok(())
    }
}
