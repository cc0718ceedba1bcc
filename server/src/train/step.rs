//! One training step split across workers: data parallelism inside one process.
//!
//! The global batch is cut into contiguous row ranges, one per worker. Every worker keeps the
//! ACT carry of its rows, runs the ACT step, the loss and the backward pass of its rows on its
//! own device (in its own thread), and the gradients are summed on the first worker's device
//! before the one optimizer step. Because the loss is a sum over rows divided by the global
//! batch size, and every ACT row is independent of the others (its own carry, halting and
//! exploration), the summed gradient is the full batch's gradient: the reference's global
//! batch semantics hold for any worker count.
//!
//! On the CPU the workers are threads over the same device: burn's Flex runs most element-wise
//! ops on one thread, so two workers on a 2-core machine nearly halve the step time. On GPUs
//! each worker is one device.

use anyhow::Context;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trm_shared::model::act::ActBatch;
use trm_shared::model::{ActCarry, ActMode, ActModel, Trm};

use super::loss::{MetricSums, act_loss};
use super::params::ParamInfo;

/// What one worker hands back after its backward pass.
struct WorkerOutput<B: AutodiffBackend> {
    grads: GradientsParams,
    metrics: MetricSums,
    /// Puzzle ids of the rows this step trained on (for the sparse puzzle-embedding update).
    puzzle_ids: Vec<i64>,
    carry: ActCarry<B>,
}

/// The summed result of one step over all workers.
pub struct StepOutput {
    /// Gradients of `loss / global_batch`, on the first worker's device.
    pub grads: GradientsParams,
    /// Metric sums over every row.
    pub metrics: MetricSums,
    /// Puzzle ids of every row.
    pub puzzle_ids: Vec<i64>,
}

/// The workers of a run: their devices and the carry each keeps for its rows.
pub struct Workers<B: AutodiffBackend> {
    devices: Vec<B::Device>,
    carries: Vec<Option<ActCarry<B>>>,
}

impl<B: AutodiffBackend> Workers<B> {
    /// One worker per device (the same CPU device may be listed several times).
    pub fn new(devices: Vec<B::Device>) -> Workers<B> {
        let carries = devices.iter().map(|_| None).collect();
        Workers { devices, carries }
    }

    /// How many workers.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Always false: a run has at least one worker.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Row ranges of a global batch of `rows`: as equal as possible, in order.
    pub fn split(&self, rows: usize) -> Vec<std::ops::Range<usize>> {
        let n = self.len().max(1);
        (0..n).map(|i| (i * rows / n)..((i + 1) * rows / n)).collect()
    }

    /// Runs one ACT step + loss + backward on every worker. `batch_for(worker, device)`
    /// uploads that worker's rows of the incoming batch; `seeds` gives each worker's
    /// exploration RNG for this step (drawn from the run's RNG, so resuming replays them).
    pub fn step(
        &mut self,
        trm: &Trm<B>,
        global_batch: usize,
        seeds: &[u64],
        params: &[ParamInfo],
        batch_for: impl Fn(usize, &B::Device) -> anyhow::Result<ActBatch<B>> + Sync,
    ) -> anyhow::Result<StepOutput> {
        let devices = self.devices.clone();
        let carries: Vec<Option<ActCarry<B>>> = self.carries.iter_mut().map(Option::take).collect();
        let run = |w: usize, carry: Option<ActCarry<B>>| -> anyhow::Result<WorkerOutput<B>> {
            let device = &devices[w];
            let batch = batch_for(w, device)?;
            let model = if w == 0 { trm.clone() } else { trm.clone().fork(device) };
            let mut rng = ChaCha8Rng::seed_from_u64(seeds[w]);
            worker_step(model, carry, &batch, global_batch, &mut rng)
        };
        let outputs: Vec<anyhow::Result<WorkerOutput<B>>> = if devices.len() == 1 {
            carries.into_iter().enumerate().map(|(w, c)| run(w, c)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = carries.into_iter().enumerate().map(|(w, c)| scope.spawn(move || run(w, c))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    .collect()
            })
        };

        let mut total: Option<StepOutput> = None;
        for (w, out) in outputs.into_iter().enumerate() {
            let out = out.with_context(|| format!("training worker {w}"))?;
            self.carries[w] = Some(out.carry);
            total = Some(match total {
                None => StepOutput { grads: out.grads, metrics: out.metrics, puzzle_ids: out.puzzle_ids },
                Some(mut t) => {
                    add_grads::<B>(&mut t.grads, out.grads, params, &self.devices[0]);
                    t.metrics.add(&out.metrics);
                    t.puzzle_ids.extend(out.puzzle_ids);
                    t
                }
            });
        }
        total.context("a training step with no workers")
    }
}

/// One worker's share: ACT step, loss of its rows (divided by the global batch), backward.
fn worker_step<B: AutodiffBackend>(
    trm: Trm<B>,
    carry: Option<ActCarry<B>>,
    batch: &ActBatch<B>,
    global_batch: usize,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<WorkerOutput<B>> {
    let act = ActModel::new(trm);
    let carry = carry.unwrap_or_else(|| act.initial_carry(batch));
    let (carry, out) = act.step(carry, batch, ActMode::Train(rng));
    let labels = carry.current_data.labels.clone().context("training carry without labels")?;
    let puzzle_ids: Vec<i64> = carry.current_data.puzzle_identifiers.clone().into_data().convert::<i64>().iter::<i64>().collect();
    let loss = act_loss(out.output.logits, out.output.q_halt, labels, carry.halted.clone(), carry.steps.clone());
    let metrics = loss.metrics();
    let grads = loss.loss.div_scalar(global_batch as f64).backward();
    let grads = GradientsParams::from_grads(grads, &act.trm);
    Ok(WorkerOutput { grads, metrics, puzzle_ids, carry })
}

/// `into += from`, parameter by parameter, on `device`.
fn add_grads<B: AutodiffBackend>(into: &mut GradientsParams, mut from: GradientsParams, params: &[ParamInfo], device: &B::Device) {
    for p in params {
        match p.shape.len() {
            1 => add_one::<B, 1>(into, &mut from, p, device),
            2 => add_one::<B, 2>(into, &mut from, p, device),
            3 => add_one::<B, 3>(into, &mut from, p, device),
            _ => add_one::<B, 4>(into, &mut from, p, device),
        }
    }
}

fn add_one<B: AutodiffBackend, const D: usize>(into: &mut GradientsParams, from: &mut GradientsParams, p: &ParamInfo, device: &B::Device) {
    let Some(g) = from.remove::<B::InnerBackend, D>(p.id) else { return };
    let g = g.to_device(device);
    let sum = match into.remove::<B::InnerBackend, D>(p.id) {
        Some(mine) => mine + g,
        None => g,
    };
    into.register(p.id, sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::*;
    use crate::train::CpuTrain;
    use crate::train::params::param_infos;
    use trm_shared::model::act::make_batch;
    use trm_shared::model::{RandomInit, TrmConfig};

    fn tiny() -> Trm<CpuTrain> {
        let cfg = TrmConfig {
            hidden_size: 16,
            num_heads: 2,
            l_layers: 1,
            h_cycles: 2,
            l_cycles: 1,
            halt_max_steps: 2,
            // No exploration: the workers' RNG streams then do not matter.
            halt_exploration_prob: 0.0,
            puzzle_emb_ndim: 16,
            puzzle_emb_len: 1,
            seq_len: Some(4),
            vocab_size: Some(6),
            num_puzzle_identifiers: Some(2),
            ..TrmConfig::default()
        };
        Trm::build(&cfg, &mut RandomInit::new(5), &Default::default()).unwrap()
    }

    /// Rows `range` of a fixed 6-row batch with labels.
    fn rows(trm: &Trm<CpuTrain>, range: std::ops::Range<usize>, first: i32) -> ActBatch<CpuTrain> {
        let tokens: Vec<i32> = range.clone().flat_map(|r| (0..4).map(move |c| 1 + (first + (r * 4 + c) as i32 * 7) % 5)).collect();
        let ids: Vec<i32> = range.clone().map(|r| (r % 2) as i32).collect();
        let mut b = make_batch::<CpuTrain>(trm.config(), &tokens, &ids, &Default::default()).unwrap();
        let labels: Vec<i32> = tokens.iter().map(|t| if *t == 2 { 5 } else { *t }).collect();
        b.labels = Some(Tensor::from_data(TensorData::new(labels, [range.len(), 4]), &Default::default()));
        b
    }

    fn grad_values(g: &mut GradientsParams, params: &[ParamInfo]) -> Vec<Vec<f32>> {
        params
            .iter()
            .map(|p| match p.shape.len() {
                1 => g.remove::<burn::backend::Flex, 1>(p.id).map(|t| t.into_data().to_vec().unwrap()).unwrap_or_default(),
                _ => g.remove::<burn::backend::Flex, 2>(p.id).map(|t| t.into_data().to_vec().unwrap()).unwrap_or_default(),
            })
            .collect()
    }

    #[test]
    fn two_workers_give_the_one_worker_gradient_and_metrics() {
        let trm = tiny();
        let params = param_infos(&trm);
        let mut results = Vec::new();
        for n in [1usize, 2] {
            let mut workers = Workers::<CpuTrain>::new(vec![Default::default(); n]);
            let ranges = workers.split(6);
            let mut last = None;
            // Two steps, so that the second one runs on carries the workers kept.
            for first in [0, 3] {
                let out = workers.step(&trm, 6, &vec![9; n], &params, |w, _| Ok(rows(&trm, ranges[w].clone(), first))).unwrap();
                last = Some(out);
            }
            let mut out = last.unwrap();
            results.push((grad_values(&mut out.grads, &params), out.metrics, out.puzzle_ids));
        }
        let (one, two) = (&results[0], &results[1]);
        assert_eq!(one.2, two.2, "puzzle ids in row order");
        // f32 matmuls over 6 rows or 3 round differently in the last bits.
        let (a, b) = (one.1.lm_loss, two.1.lm_loss);
        assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "lm_loss {a} vs {b}");
        assert_eq!(one.1.count, two.1.count);
        let mut compared = 0;
        for (a, b) in one.0.iter().zip(&two.0) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 + 1e-4 * x.abs(), "{x} vs {y}");
                compared += 1;
            }
        }
        assert!(compared > 1000, "only {compared} gradient values compared");
    }

    #[test]
    fn split_covers_the_batch_in_order() {
        let w = Workers::<CpuTrain>::new(vec![Default::default(); 3]);
        assert_eq!(w.split(8), vec![0..2, 2..5, 5..8]);
    }
}
