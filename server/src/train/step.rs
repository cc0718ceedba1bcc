//! One training step split across workers: data parallelism.
//!
//! The global batch is cut into contiguous row ranges, one per worker over all processes.
//! Every worker keeps the ACT carry of its rows, runs the ACT step, the loss and the backward
//! pass of its rows on its own device (in its own thread), and the gradients are summed over
//! this process's workers by burn-collective's all-reduce ([`super::collective`]), then over
//! the processes by MPI's ([`super::cluster`]), before the one optimizer step. Because the loss is a sum over rows divided by the global batch size, and every ACT
//! row is independent of the others (its own carry, halting and exploration), the summed
//! gradient is the full batch's gradient: the reference's global batch semantics hold for any
//! device or node count.
//!
//! On the CPU the workers are threads over the same Flex device (`--devices 0,1`); on GPUs
//! each worker is one device. In a multi-process run every process keeps a full replica: all
//! of them get the same summed gradient and take the same optimizer step.

use std::panic::AssertUnwindSafe;

use anyhow::{Context, anyhow};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trm_shared::model::act::ActBatch;
use trm_shared::model::{ActCarry, ActMode, ActModel, Trm};

use super::cluster::Cluster;
use super::collective::Group;
use super::loss::{MetricSums, act_loss};
use super::params::ParamInfo;

/// What one worker hands back after its backward pass (and the all-reduce).
struct WorkerOutput<B: AutodiffBackend> {
    grads: GradientsParams,
    metrics: MetricSums,
    /// Puzzle ids of the rows this step trained on (for the sparse puzzle-embedding update).
    puzzle_ids: Vec<i64>,
    carry: ActCarry<B>,
}

/// The summed result of one step over all workers.
pub struct SummedStep {
    /// Gradients of `loss / global_batch`, summed over every worker, on the first device.
    pub grads: GradientsParams,
    /// Metric sums over every row (of every process).
    pub metrics: MetricSums,
    /// Puzzle ids of every row, in row order (of every process).
    pub puzzle_ids: Vec<i64>,
}

/// The workers of a run in this process: their devices, the carry each keeps for its rows,
/// the collective group that sums their gradients, and the processes of the run.
pub struct Workers<B: AutodiffBackend> {
    devices: Vec<B::Device>,
    carries: Vec<Option<ActCarry<B>>>,
    group: Group<B::InnerBackend>,
    cluster: Cluster,
    /// See [`worker_pools`].
    pools: Vec<rayon::ThreadPool>,
}

/// With several training workers (threads on one machine), one single-thread rayon pool
/// each: a worker's CPU kernels then run on a core of their own instead of taking turns with
/// the other workers' tasks on rayon's shared pool (see the README's performance section).
/// None for one worker, which has the whole shared pool; none either if the threads cannot
/// be made (the workers then share rayon's pool).
pub fn worker_pools(workers: usize) -> Vec<rayon::ThreadPool> {
    if workers < 2 {
        return Vec::new();
    }
    let built: Result<Vec<_>, _> = (0..workers)
        .map(|w| rayon::ThreadPoolBuilder::new().num_threads(1).thread_name(move |_| format!("trm-worker-{w}")).build())
        .collect();
    built.unwrap_or_else(|e| {
        tracing::warn!("no thread pool per training worker ({e}); the workers share rayon's");
        Vec::new()
    })
}

/// Runs worker `w`'s `f` on its pool from [`worker_pools`], or on the calling thread without one.
pub fn on_worker_pool<R: Send>(pools: &[rayon::ThreadPool], w: usize, f: impl FnOnce() -> R + Send) -> R {
    match pools.get(w) {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

impl<B: AutodiffBackend> Workers<B> {
    /// One worker per device (the same CPU device may be listed several times), this process
    /// alone.
    pub fn new(devices: Vec<B::Device>) -> Workers<B> {
        Workers::in_cluster(devices, Cluster::default())
    }

    /// One worker per local device; this process is one of `cluster`'s.
    pub fn in_cluster(devices: Vec<B::Device>, cluster: Cluster) -> Workers<B> {
        let carries = devices.iter().map(|_| None).collect();
        let group = Group::new(devices.len());
        let pools = worker_pools(devices.len());
        Workers { devices, carries, group, cluster, pools }
    }

    /// The processes of the run.
    pub fn cluster(&self) -> Cluster {
        self.cluster
    }

    /// Workers over all processes.
    pub fn global_len(&self) -> usize {
        self.len() * self.cluster.size()
    }

    /// The global index of this process's first worker.
    pub fn global_offset(&self) -> usize {
        self.len() * self.cluster.rank()
    }

    /// How many workers in this process.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Always false: a run has at least one worker.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// This process's workers' row ranges of a global batch of `rows` (split over every worker
    /// of every process, as equal as possible, in order).
    pub fn split(&self, rows: usize) -> Vec<std::ops::Range<usize>> {
        self.cluster.split_rows(rows, self.len())
    }

    /// Runs one ACT step + loss + backward on every worker and sums the gradients over all of
    /// them. `batch_for(worker, device)` uploads that worker's rows of the incoming batch;
    /// `seeds` gives each local worker's exploration RNG for this step (drawn from the run's
    /// RNG, so resuming replays them).
    pub fn step(
        &mut self,
        trm: &Trm<B>,
        global_batch: usize,
        seeds: &[u64],
        params: &[ParamInfo],
        batch_for: impl Fn(usize, &B::Device) -> anyhow::Result<ActBatch<B>> + Sync,
    ) -> anyhow::Result<SummedStep> {
        let devices = self.devices.clone();
        let carries: Vec<Option<ActCarry<B>>> = self.carries.iter_mut().map(Option::take).collect();
        let group = &self.group;
        let run = |w: usize, carry: Option<ActCarry<B>>| -> anyhow::Result<WorkerOutput<B>> {
            let device = &devices[w];
            if group.active() && !group.is_registered() {
                group.register(w, device.clone())?;
            }
            // A failed or panicking worker still takes part in every all-reduce below (with
            // zeros): the other peers would otherwise wait for it forever.
            let computed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let batch = batch_for(w, device)?;
                let model = if w == 0 { trm.clone() } else { trm.clone().fork(device) };
                let mut rng = ChaCha8Rng::seed_from_u64(seeds[w]);
                worker_step(model, carry, &batch, global_batch, &mut rng)
            }));
            let mut out = match computed {
                Ok(r) => r,
                Err(panic) => Err(anyhow!("panicked: {}", panic_message(&*panic))),
            };
            if !group.active() {
                return out;
            }
            let grads = out.as_mut().ok().map(|o| std::mem::take(&mut o.grads));
            let summed = group.all_reduce_grads(w, grads, params, device)?;
            let mut out = out?;
            out.grads = summed.context("a worker lost its gradients in the all-reduce")?;
            Ok(out)
        };
        let outputs: Vec<anyhow::Result<WorkerOutput<B>>> = if devices.len() == 1 {
            carries.into_iter().enumerate().map(|(w, c)| run(w, c)).collect()
        } else {
            std::thread::scope(|scope| {
                let pools = &self.pools;
                let handles: Vec<_> =
                    carries.into_iter().enumerate().map(|(w, c)| scope.spawn(move || on_worker_pool(pools, w, || run(w, c)))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    .collect()
            })
        };

        // Worker 0's gradients are already this process's sum; its workers' metrics and ids
        // are combined here.
        let mut total: Option<SummedStep> = None;
        for (w, out) in outputs.into_iter().enumerate() {
            let out = out.with_context(|| format!("training worker {w}"))?;
            self.carries[w] = Some(out.carry);
            total = Some(match total {
                None => SummedStep { grads: out.grads, metrics: out.metrics, puzzle_ids: out.puzzle_ids },
                Some(mut t) => {
                    t.metrics.add(&out.metrics);
                    t.puzzle_ids.extend(out.puzzle_ids);
                    t
                }
            });
        }
        let total = total.context("a training step with no workers")?;
        if !self.cluster.is_multi() {
            return Ok(total);
        }
        // Then over the processes: the gradients, and the metrics and ids of every row.
        let grads = self.cluster.sum_grads::<B::InnerBackend>(total.grads, params, &self.devices[0]).context("summing the gradients over the processes")?;
        let first_row = self.split(global_batch).first().map_or(0, |r| r.start);
        let mut values = process_values(&total.metrics, &total.puzzle_ids, first_row, global_batch);
        self.cluster.sum_scalars(&mut values);
        let (metrics, puzzle_ids) = from_process_values(&values);
        Ok(SummedStep { grads, metrics, puzzle_ids })
    }
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(no message)".into())
}

/// The metric sums, then one slot per row of the global batch holding the puzzle id of that
/// row where this process trained it (zeros elsewhere): summed over the processes, this is
/// every row's metrics and ids (f64 holds ids exactly).
fn process_values(m: &MetricSums, ids: &[i64], first_row: usize, rows: usize) -> Vec<f64> {
    let mut v = vec![0f64; METRICS + rows];
    let sums = [m.count, m.accuracy, m.exact_accuracy, m.q_halt_accuracy, m.steps, m.lm_loss, m.q_halt_loss];
    v[..METRICS].copy_from_slice(&sums);
    for (slot, &id) in v[METRICS + first_row..].iter_mut().zip(ids) {
        *slot = id as f64;
    }
    v
}

/// Fields of [`MetricSums`] in [`process_values`].
const METRICS: usize = 7;

fn from_process_values(v: &[f64]) -> (MetricSums, Vec<i64>) {
    let f = |i: usize| v.get(i).copied().unwrap_or(0.0);
    let metrics = MetricSums { count: f(0), accuracy: f(1), exact_accuracy: f(2), q_halt_accuracy: f(3), steps: f(4), lm_loss: f(5), q_halt_loss: f(6) };
    let ids = v.iter().skip(METRICS).map(|&x| x.round() as i64).collect();
    (metrics, ids)
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::*;
    use crate::train::CpuTrain;
    use crate::train::params::param_infos;
    use crate::train::optim::AdamAtan2;
    use trm_shared::model::act::make_batch;
    use trm_shared::model::{RandomInit, TrmConfig};

    fn tiny() -> Trm<CpuTrain> {
        // No exploration: the workers' RNG streams then do not matter.
        let cfg = TrmConfig { halt_exploration_prob: 0.0, ..TrmConfig::tiny(4, 2) };
        Trm::build(&cfg, &mut RandomInit::new(5), &Default::default()).unwrap()
    }

    /// Rows `range` of a fixed 6-row batch with labels.
    fn rows(trm: &Trm<CpuTrain>, range: std::ops::Range<usize>, first: i32) -> ActBatch<CpuTrain> {
        let tokens: Vec<i32> = range.clone().flat_map(|r| (0..4).map(move |c| 1 + (first + (r * 4 + c) as i32 * 7) % 5)).collect();
        let ids: Vec<i32> = range.clone().map(|r| (r % 2) as i32).collect();
        let mut b = make_batch::<CpuTrain>(trm.sizes(), &tokens, &ids, &Default::default()).unwrap();
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

    /// Two steps (the second on the carries the workers kept) of `n` workers, then one
    /// AdamATan2 step: the last gradients, metrics, puzzle ids and the updated weights.
    fn two_steps(trm: &Trm<CpuTrain>, n: usize) -> (Vec<Vec<f32>>, MetricSums, Vec<i64>, Vec<f32>) {
        use burn::optim::Optimizer;
        use burn::optim::adaptor::OptimizerAdaptor;
        let params = param_infos(trm);
        let mut workers = Workers::<CpuTrain>::new(vec![Default::default(); n]);
        let ranges = workers.split(6);
        let mut last = None;
        for first in [0, 3] {
            let out = workers.step(trm, 6, &vec![9; n], &params, |w, _| Ok(rows(trm, ranges[w].clone(), first))).unwrap();
            last = Some(out);
        }
        let out = last.unwrap();
        let grads = grad_values(&mut copy_grads(&out.grads, &params), &params);
        let mut optim: OptimizerAdaptor<AdamAtan2, Trm<CpuTrain>, CpuTrain> =
            OptimizerAdaptor::from(AdamAtan2 { beta1: 0.9, beta2: 0.95, weight_decay: 0.1 });
        let stepped = optim.step(1e-2, trm.clone(), out.grads);
        let weights = stepped.to_state_dict().tensors.into_values().flat_map(|t| t.values).collect();
        (grads, out.metrics, out.puzzle_ids, weights)
    }

    /// A copy of the gradients (reading them consumes them).
    fn copy_grads(g: &GradientsParams, params: &[ParamInfo]) -> GradientsParams {
        let mut copy = GradientsParams::new();
        for p in params {
            if p.shape.len() == 1 {
                g.get::<burn::backend::Flex, 1>(p.id).into_iter().for_each(|t| copy.register(p.id, t));
            } else {
                g.get::<burn::backend::Flex, 2>(p.id).into_iter().for_each(|t| copy.register(p.id, t));
            }
        }
        copy
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) -> usize {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 + 1e-4 * x.abs(), "{what}: {x} vs {y}");
        }
        a.len()
    }

    /// Mixed precision as on CUDA (`forward_dtype = "bfloat16"`): the weights stay f32 and
    /// get f32 gradients (reading them as f32 would fail otherwise), which follow the f32
    /// run's to bf16 accuracy; the loss too.
    #[test]
    fn bf16_compute_gives_f32_gradients_close_to_f32_ones() {
        use burn::tensor::FloatDType;
        let run = |trm: Trm<CpuTrain>| {
            let params = param_infos(&trm);
            let mut workers = Workers::<CpuTrain>::new(vec![Default::default()]);
            let out = workers.step(&trm, 6, &[9], &params, |_, _| Ok(rows(&trm, 0..6, 0))).unwrap();
            (grad_values(&mut copy_grads(&out.grads, &params), &params).concat(), out.metrics.lm_loss)
        };
        let (g32, loss32) = run(tiny());
        let (g16, loss16) = run(tiny().with_compute_dtype(FloatDType::BF16));
        assert_eq!(g32.len(), g16.len());
        assert!(g32.len() > 1000, "only {} gradient values", g32.len());
        let dot: f64 = g32.iter().zip(&g16).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
        let norm = |g: &[f32]| g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (norm(&g32) * norm(&g16));
        eprintln!("bf16 vs f32: gradient cosine {cosine}, lm_loss {loss16} vs {loss32}");
        assert!(cosine > 0.99, "bf16 gradients point elsewhere: cosine {cosine}");
        assert!(g32 != g16, "bf16 compute changed nothing: it did not run in bf16");
        assert!((loss16 - loss32).abs() < 0.02 * loss32.abs(), "lm_loss {loss16} in bf16 vs {loss32} in f32");
    }

    /// The all-reduce through burn-collective on two Flex peers gives the one-worker gradient,
    /// metrics and optimizer step.
    #[test]
    fn two_workers_give_the_one_worker_gradient_metrics_and_step() {
        let trm = tiny();
        let (one, two) = (two_steps(&trm, 1), two_steps(&trm, 2));
        assert_eq!(one.2, two.2, "puzzle ids in row order");
        // f32 matmuls over 6 rows or 3 round differently in the last bits.
        let (a, b) = (one.1.lm_loss, two.1.lm_loss);
        assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "lm_loss {a} vs {b}");
        assert_eq!(one.1.count, two.1.count);
        let compared: usize = one.0.iter().zip(&two.0).map(|(a, b)| assert_close(a, b, "gradient")).sum();
        assert!(compared > 1000, "only {compared} gradient values compared");
        assert!(one.0.iter().flatten().any(|g| g.abs() > 1e-6), "all gradients are zero");
        let weights = assert_close(&one.3, &two.3, "weights after one AdamATan2 step");
        assert!(weights > 1000, "only {weights} weights compared");
        let before: Vec<f32> = trm.to_state_dict().tensors.into_values().flat_map(|t| t.values).collect();
        assert!(before.iter().zip(&one.3).any(|(x, y)| x != y), "the optimizer step changed nothing");
    }

    /// A worker whose batch fails still answers the all-reduce: the step errors, nothing
    /// hangs, and the next group on this backend can start.
    #[test]
    fn a_failing_worker_fails_the_step_without_hanging() {
        let trm = tiny();
        let params = param_infos(&trm);
        let mut workers = Workers::<CpuTrain>::new(vec![Default::default(); 2]);
        let ranges = workers.split(6);
        let err = workers
            .step(&trm, 6, &[1, 2], &params, |w, _| if w == 1 { anyhow::bail!("no rows for worker 1") } else { Ok(rows(&trm, ranges[w].clone(), 0)) })
            .err()
            .expect("the step must fail");
        assert!(format!("{err:#}").contains("no rows for worker 1"), "{err:#}");
        drop(workers);
        let (grads, ..) = two_steps(&trm, 2);
        assert!(!grads.is_empty());
    }

    #[test]
    fn split_covers_the_batch_in_order() {
        let w = Workers::<CpuTrain>::new(vec![Default::default(); 3]);
        assert_eq!(w.split(8), vec![0..2, 2..5, 5..8]);
    }
}
