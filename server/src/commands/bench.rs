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

use anyhow::Context;
use burn::optim::Optimizer;
use burn::optim::adaptor::OptimizerAdaptor;
use trm_server::train::CpuTrain;
use trm_server::train::optim::AdamAtan2;
use trm_server::train::params::param_infos;
use trm_server::train::step::Workers;

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
    /// Only the named cases (`7m`, `h128`, `train-h128`); default all.
    #[arg(long)]
    pub only: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What a case times.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// One eval-mode ACT step (forward only).
    Infer,
    /// One training step: ACT step, loss, backward and the AdamATan2 update (CPU only).
    Train,
}

/// One benchmark case.
struct Case {
    name: &'static str,
    kind: Kind,
    config: TrmConfig,
    batch: usize,
    /// The reference's seconds per step on the project machine (f32, CPU).
    reference_s: f64,
}

fn cases() -> Vec<Case> {
    let maze = TrmConfig::maze_7m();
    let h128 = TrmConfig { hidden_size: 128, num_heads: 2, puzzle_emb_ndim: 128, ..maze.clone() };
    vec![
        Case { name: "7m", kind: Kind::Infer, config: maze.clone(), batch: 1, reference_s: 9.80 },
        Case { name: "h128", kind: Kind::Infer, config: h128.clone(), batch: 8, reference_s: 7.21 },
        // The reference takes 18.6 s for this training step on the project machine.
        Case { name: "train-h128", kind: Kind::Train, config: h128, batch: 8, reference_s: 18.6 },
    ]
}

/// One result row.
#[derive(Debug, Serialize)]
struct Row {
    case: String,
    /// `infer` or `train`.
    kind: &'static str,
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
            let model = Trm::<B>::build(&case.config, &mut RandomInit::new(0), &device)?;
            let parameters: usize = model.to_state_dict().tensors.values().map(|t| t.values.len()).sum();
            let seq = model.sizes().seq_len;
            // A benchmark maze: walls on a fixed pattern, S and G in the corners.
            let mut tokens: Vec<i32> = (0..case.batch * seq).map(|i| if i % 7 == 3 { 1 } else { 2 }).collect();
            for b in 0..case.batch {
                tokens[b * seq] = 3;
                tokens[b * seq + seq - 1] = 4;
            }
            let mut times = match case.kind {
                Kind::Infer => time_inference(&model, &case, &tokens, args.repeats, &device)?,
                Kind::Train if backend_name.starts_with("cpu") => {
                    time_training(&case, &tokens, args.repeats)?
                }
                Kind::Train => {
                    tracing::warn!("{}: training is benchmarked on the CPU backend only; skipped", case.name);
                    continue;
                }
            };
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            rows.push(Row {
                case: case.name.into(),
                kind: if case.kind == Kind::Train { "train" } else { "infer" },
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
        println!("one ACT step (H_cycles 3, L_cycles 4, L_layers 2, 30x30 + 16 prefix) on {backend_name};");
        println!("train = the same step with loss, backward and the AdamATan2 update");
        println!("case        kind   hidden heads batch  params     median s  min s    reference s  ratio");
        for r in &rows {
            println!(
                "{:<11} {:<5} {:>6} {:>5} {:>5}  {:>9}  {:>8.3}  {:>7.3}  {:>11.2}  {:>5.2}",
                r.case, r.kind, r.hidden, r.heads, r.batch, r.parameters, r.median_s, r.min_s, r.reference_s, r.ratio_to_reference
            );
        }
        println!("(goal: ratio <= 0.80; reference = the PyTorch code in f32 on a 2-core CPU)");
        Ok(())
    }
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
fn time_training(case: &Case, tokens: &[i32], repeats: usize) -> anyhow::Result<Vec<f64>> {
    let device = Default::default();
    let mut trm = Trm::<CpuTrain>::build(&case.config, &mut RandomInit::new(0), &device)?;
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
