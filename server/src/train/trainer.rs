//! The training loop of `pretrain.py`: one ACT step, one backward and one optimizer step per
//! batch, with the carry kept across batches (halted rows take the next batch's rows, the
//! others keep their state — the reference's whole "deep supervision").

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use trm_shared::dataset::SplitData;
use trm_shared::model::act::{ActBatch, make_batch};
use trm_shared::model::{ActRun, DataSizes, Halting, RandomInit, Trm, TrmConfig};

use super::checkpoint::{TrainState, latest_name, read_latest, remove_partials, write_checkpoint};
use super::config::TrainConfig;
use super::data::{DataPosition, host_batch, iteration_batches};
use super::cluster::Cluster;
use crate::backend::devices::{DeviceSet, backend_devices};
use super::ema::Ema;
use super::hooks::TrainHooks;
use super::loss::{MetricMeans, MetricSums, act_loss};
use super::metrics_log::MetricsLog;
use super::optim::{AdamAtan2, SignSgd, moments_from_state_dict, moments_to_state_dict};
use super::params::{ParamInfo, param_infos};
use super::schedule::LrSchedule;
use super::step::Workers;
use super::update::{apply_update, buffer_ids, freeze_buffers};

/// What a run needs besides its config.
pub struct RunSetup {
    /// The run directory (created by the caller, holding `config.toml`).
    pub dir: PathBuf,
    /// Training split.
    pub train: SplitData,
    /// Held-out split for the periodic evaluation.
    pub test: SplitData,
    /// Continue from the run's latest checkpoint.
    pub resume: bool,
    /// Stop after this many optimizer steps in total (for tests and short trials).
    pub max_steps: Option<u64>,
    /// Draw a progress bar.
    pub progress: bool,
    /// Local devices sharing each batch, one data-parallel worker each; see [`super::step`].
    /// On the CPU every entry is a thread over the same device (two workers train the CPU
    /// preset 1.6x as fast as one on 2 cores).
    pub devices: DeviceSet,
    /// The processes of the run (`mpirun`/`srun`); a single one by default. Rank 0 alone
    /// writes checkpoints, the metrics log and progress, and evaluates.
    pub cluster: Cluster,
    /// Stop flag and progress/metrics listeners (the server's jobs).
    pub hooks: TrainHooks,
}

impl RunSetup {
    /// A fresh run in `dir` with the defaults: no resume, no step limit, no progress bar, one
    /// worker, no hooks. (Callers set the rest with struct update syntax, so a new field needs
    /// a default here only.)
    pub fn new(dir: PathBuf, train: SplitData, test: SplitData) -> RunSetup {
        RunSetup { dir, train, test, resume: false, max_steps: None, progress: false, devices: DeviceSet::default(), cluster: Cluster::default(), hooks: TrainHooks::default() }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Optimizer steps taken in total.
    pub steps: u64,
    /// The last evaluation, if any.
    pub last_eval: Option<MetricMeans>,
}

/// One line of `metrics.jsonl`.
#[derive(Serialize)]
struct LogLine<'a> {
    kind: &'a str,
    step: u64,
    lr: f64,
    #[serde(flatten)]
    metrics: MetricMeans,
    examples_per_s: f64,
    elapsed_s: f64,
}

/// The model config for a split: dataset fields filled in.
pub fn resolved_arch(cfg: &TrainConfig, train: &SplitData) -> anyhow::Result<TrmConfig> {
    let mut arch = cfg.arch.clone();
    TrmConfig::fill(&mut arch.seq_len, "seq_len", train.seq_len, "the training data")?;
    TrmConfig::fill(&mut arch.vocab_size, "vocab_size", 6, "the maze vocabulary")?;
    let ids = train.puzzle_identifiers.iter().copied().max().unwrap_or(0).max(0) as usize + 1;
    if arch.num_puzzle_identifiers.is_none() {
        arch.num_puzzle_identifiers = Some(ids);
    }
    arch.validate()?;
    Ok(arch)
}

fn batch_on<B: Backend>(sizes: DataSizes, split: &SplitData, rows: &[usize], device: &B::Device) -> anyhow::Result<ActBatch<B>> {
    let h = host_batch(split, rows);
    let mut b = make_batch::<B>(sizes, &h.inputs, &h.puzzle_identifiers, device)?;
    b.labels = Some(Tensor::from_data(TensorData::new(h.labels, [rows.len(), split.seq_len]), device));
    Ok(b)
}

/// Evaluates `trm` on (a prefix of) `split` as the reference does: fresh carry, exactly
/// `halt_max_steps` ACT steps, metrics of the last step.
pub fn evaluate<B: Backend>(trm: &Trm<B>, split: &SplitData, batch: usize, limit: Option<usize>, device: &B::Device) -> anyhow::Result<MetricMeans> {
    let n = limit.unwrap_or(split.len()).min(split.len());
    let steps = trm.config().halt_max_steps;
    let mut sums = MetricSums::default();
    let rows: Vec<usize> = (0..n).collect();
    for chunk in rows.chunks(batch.max(1)) {
        let b = batch_on::<B>(trm.sizes(), split, chunk, device)?;
        let labels = b.labels.clone().context("eval batch without labels")?;
        let mut run = ActRun::reference(Cow::Borrowed(trm), &b, steps, Halting::Never);
        let mut last = None;
        while let Some(step) = run.next()? {
            last = Some(step.output);
        }
        let out = last.context("evaluation ran no ACT step")?;
        let k = chunk.len();
        let halted = Tensor::<B, 1, Int>::ones([k], device).equal_elem(1);
        let st = Tensor::<B, 1, Int>::full([k], steps as i64, device);
        sums.add(&act_loss(out.logits, out.q_halt, labels, halted, st).metrics());
    }
    Ok(sums.means(n as f64))
}

/// One training run's state: the model, its EMA, the optimizers and schedules, the
/// data-parallel workers, and where the run is in its data. [`train`] drives it.
pub struct Trainer<B: AutodiffBackend> {
    cfg: TrainConfig,
    device: B::Device,
    /// The live weights; `None` only inside [`Trainer::step`], which moves them through the
    /// optimizer (so that no second reference keeps the optimizer from updating in place).
    trm: Option<Trm<B>>,
    ema: Option<Ema<B::InnerBackend>>,
    optim: OptimizerAdaptor<AdamAtan2, Trm<B>, B>,
    sign: SignSgd,
    schedule: LrSchedule,
    pe_schedule: LrSchedule,
    workers: Workers<B>,
    params: Vec<ParamInfo>,
    rng: ChaCha8Rng,
    /// Optimizer steps taken.
    pub steps_taken: u64,
    /// The next batch: iteration and batch within it.
    pub pos: DataPosition,
}

/// A step whose loss was NaN or infinite; the weights were left as they were.
#[derive(Debug, thiserror::Error)]
#[error("the loss became {kind} at step {step} (lm_loss {lm_loss}, q_halt_loss {q_halt_loss})")]
pub struct NonFiniteLoss {
    kind: &'static str,
    step: u64,
    lm_loss: f64,
    q_halt_loss: f64,
}

/// What one optimizer step measured.
pub struct StepReport {
    /// The batch's metric sums.
    pub metrics: MetricSums,
    /// The learning rate the step used.
    pub lr: f64,
}

impl<B: AutodiffBackend> Trainer<B> {
    fn optimizer(cfg: &TrainConfig) -> OptimizerAdaptor<AdamAtan2, Trm<B>, B> {
        let adam = AdamAtan2 { beta1: cfg.beta1, beta2: cfg.beta2, weight_decay: cfg.weight_decay };
        let optim = OptimizerAdaptor::from(adam);
        match cfg.grad_clip_norm {
            Some(c) => optim.with_grad_clipping(burn::optim::grad_clipping::GradientClippingConfig::Norm(c as f32).init()),
            None => optim,
        }
    }

    /// bf16 activations on CUDA when the config says so (weights, gradients, moments and the
    /// EMA stay f32, as in the reference); f32 elsewhere (see `backend::compute_dtype`).
    fn dtype(arch: &TrmConfig) -> anyhow::Result<burn::tensor::FloatDType> {
        let dtype = crate::backend::compute_dtype::<B::InnerBackend>(arch)?;
        tracing::info!("computing in {dtype:?} with f32 weights");
        Ok(dtype)
    }

    fn assemble(cfg: &TrainConfig, trm: Trm<B>, ema: Option<Ema<B::InnerBackend>>, optim: OptimizerAdaptor<AdamAtan2, Trm<B>, B>, workers: Workers<B>, device: B::Device, total_steps: u64) -> Trainer<B> {
        let schedule = LrSchedule { base: cfg.lr, warmup_steps: cfg.lr_warmup_steps, total_steps, min_ratio: cfg.lr_min_ratio };
        if let Some(e) = &ema {
            tracing::info!("EMA (rate {}) over {} parameter tensors", e.rate, e.tracked());
        }
        // H_init / L_init are buffers: never trained.
        let trm = freeze_buffers(trm);
        Trainer {
            params: param_infos(&trm),
            cfg: cfg.clone(),
            device,
            trm: Some(trm),
            ema,
            optim,
            sign: SignSgd { weight_decay: cfg.puzzle_emb_weight_decay },
            schedule,
            pe_schedule: LrSchedule { base: cfg.puzzle_emb_lr, ..schedule },
            workers,
            rng: <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(cfg.seed),
            steps_taken: 0,
            pos: DataPosition::default(),
        }
    }

    /// A new run: random weights from the config's seed, fresh optimizer moments and EMA.
    pub fn fresh(cfg: &TrainConfig, arch: TrmConfig, workers: Workers<B>, device: B::Device, total_steps: u64) -> anyhow::Result<Trainer<B>> {
        let dtype = Trainer::<B>::dtype(&arch)?;
        let trm = Trm::<B>::build(&arch, &mut RandomInit::new(cfg.seed), &device)?.with_compute_dtype(dtype);
        let live = trm.valid();
        let ema = cfg.ema.then(|| Ema::new(&live, &buffer_ids(&live), cfg.ema_rate));
        Ok(Trainer::assemble(cfg, trm, ema, Trainer::optimizer(cfg), workers, device, total_steps))
    }

    /// The run in `dir` from its latest checkpoint: weights, EMA, optimizer moments, data
    /// position and RNG state as they were saved.
    pub fn resume(cfg: &TrainConfig, arch: TrmConfig, dir: &Path, workers: Workers<B>, device: B::Device, total_steps: u64) -> anyhow::Result<Trainer<B>> {
        let dtype = Trainer::<B>::dtype(&arch)?;
        let ck = read_latest(dir)?;
        let trm = Trm::<B>::from_state_dict(&arch, &ck.live, &device).context("checkpoint weights")?.with_compute_dtype(dtype);
        let ema = if cfg.ema {
            let averaged = Trm::<B::InnerBackend>::from_state_dict(&arch, &ck.eval_model, &device).context("checkpoint EMA weights")?;
            let live = trm.valid();
            let skip_inner = buffer_ids(&live);
            Some(Ema::resume(&live, &averaged, &skip_inner, cfg.ema_rate)?)
        } else {
            None
        };
        let optim = moments_from_state_dict(Trainer::optimizer(cfg), &trm, &ck.optim, &ck.state.optim_time, &device)?;
        let mut trainer = Trainer::assemble(cfg, trm, ema, optim, workers, device, total_steps);
        let word: u128 = ck.state.rng_word_pos.parse().context("RNG position in state.json")?;
        trainer.rng.set_word_pos(word);
        (trainer.steps_taken, trainer.pos) = (ck.state.step, ck.state.position);
        if trainer.workers.cluster().is_leader() {
            eprintln!("resuming {} at step {}", ck.dir.display(), ck.state.step);
        }
        Ok(trainer)
    }

    /// One optimizer step on `rows` of `split`: an ACT step, the loss and its backward on
    /// every worker, the summed gradients applied (AdamATan2, SignSGD on the puzzle
    /// embeddings), the EMA updated. A non-finite loss is an error and changes nothing.
    pub fn step(&mut self, split: &SplitData, rows: &[usize]) -> anyhow::Result<StepReport> {
        let gbs = self.cfg.global_batch_size;
        self.steps_taken += 1;
        self.pos.batch += 1;
        let lr = self.schedule.lr(self.steps_taken);
        // Each worker's exploration draws come from its own stream, seeded from the run's: one
        // seed per worker of every process, this process's workers taking theirs, so that the
        // run's RNG and each row's stream do not depend on how the workers are spread.
        let seeds: Vec<u64> = (0..self.workers.global_len()).map(|_| rand::RngCore::next_u64(&mut self.rng)).collect();
        let seeds = &seeds[self.workers.global_offset()..][..self.workers.len()];
        let ranges = self.workers.split(rows.len());
        let trm = self.trm.take().expect("the model is only taken inside step");
        let sizes = trm.sizes();
        let out = self.workers.step(&trm, gbs, seeds, &self.params, |w, dev| batch_on::<B>(sizes, split, &rows[ranges[w].clone()], dev));
        let out = match out {
            Ok(out) if out.metrics.lm_loss.is_finite() && out.metrics.q_halt_loss.is_finite() => out,
            Ok(out) => {
                self.trm = Some(trm);
                let m = out.metrics;
                let kind = if m.lm_loss.is_nan() || m.q_halt_loss.is_nan() { "NaN" } else { "infinite" };
                return Err(NonFiniteLoss { kind, step: self.steps_taken, lm_loss: m.lm_loss, q_halt_loss: m.q_halt_loss }.into());
            }
            Err(e) => {
                self.trm = Some(trm);
                return Err(e);
            }
        };
        let m = out.metrics;
        let trm = apply_update(trm, &mut self.optim, &self.sign, out.grads, &out.puzzle_ids, lr, self.pe_schedule.lr(self.steps_taken));
        if let Some(e) = self.ema.as_mut() {
            e.update(&trm.valid());
        }
        self.trm = Some(trm);
        Ok(StepReport { metrics: m, lr })
    }

    fn trm(&self) -> &Trm<B> {
        self.trm.as_ref().expect("the model is only taken inside step")
    }

    /// The learning rate at the current step.
    pub fn lr(&self) -> f64 {
        self.schedule.lr(self.steps_taken)
    }

    /// The weights that are saved and evaluated: the EMA's when there is one.
    pub fn eval_model(&self) -> Trm<B::InnerBackend> {
        let live = self.trm().valid();
        match &self.ema {
            Some(e) => e.apply(live),
            None => live,
        }
    }

    /// Scores [`Trainer::eval_model`] on (a prefix of) `split`, as the reference evaluates.
    pub fn evaluate(&self, split: &SplitData, limit: Option<usize>) -> anyhow::Result<MetricMeans> {
        evaluate(&self.eval_model(), split, self.cfg.global_batch_size, limit, &self.device)
    }

    /// Writes a checkpoint of the current step into the run directory `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let eval = self.eval_model();
        let (osd, times) = moments_to_state_dict(&self.optim, self.trm());
        let state = TrainState { step: self.steps_taken, position: self.pos, rng_word_pos: self.rng.get_word_pos().to_string(), optim_time: times };
        write_checkpoint(dir, &state, &eval.to_safetensors_bytes()?, &self.trm().to_state_dict(), &osd)?;
        Ok(())
    }
}

/// Trains per `cfg` in `setup.dir`: the reference's loop of batches, an evaluation and a
/// checkpoint at the end of every iteration (`eval_interval` epochs), a log line every 50 steps.
pub fn train<B: AutodiffBackend>(cfg: &TrainConfig, setup: RunSetup, device: B::Device) -> anyhow::Result<RunSummary> {
    let arch = resolved_arch(cfg, &setup.train)?;
    let gbs = cfg.global_batch_size;
    let groups = setup.train.total_groups();
    if groups < gbs {
        bail!("the training split has {groups} groups, fewer than global_batch_size {gbs}: no full batch");
    }
    let total_steps = cfg.total_steps(groups);

    let cluster = setup.cluster;
    let leader = cluster.is_leader();
    if gbs < cluster.size() * setup.devices.len() {
        bail!("global_batch_size {gbs} is smaller than the {} workers ({} processes x {} devices)", cluster.size() * setup.devices.len(), cluster.size(), setup.devices.len());
    }
    // A run killed before its first checkpoint resumes by starting over in the same directory.
    // Rank 0 tidies; the others read the checkpoint after it.
    if setup.resume && leader {
        let n = remove_partials(&setup.dir)?;
        if n > 0 {
            tracing::info!("removed {n} partial write(s) left by the interrupted run");
        }
    }
    cluster.barrier();
    let has_checkpoint = latest_name(&setup.dir)?.is_some();
    if setup.resume && !has_checkpoint && leader {
        eprintln!("{} has no checkpoint yet: starting it from step 0", setup.dir.display());
    }
    let workers = Workers::<B>::in_cluster(backend_devices::<B>(&device, &setup.devices), cluster);
    let mut trainer = if setup.resume && has_checkpoint {
        Trainer::resume(cfg, arch, &setup.dir, workers, device, total_steps)?
    } else {
        Trainer::fresh(cfg, arch, workers, device, total_steps)?
    };
    // Serialised only when there are processes to compare.
    if cluster.is_multi() {
        let config = cfg.to_toml_string()?;
        let dir = setup.dir.to_string_lossy();
        let parts: [&[u8]; 4] = [config.as_bytes(), dir.as_bytes(), &trainer.steps_taken.to_le_bytes(), &(setup.devices.len() as u64).to_le_bytes()];
        let what = "the config, the run directory, the step resumed from or the --devices count";
        cluster.agree_at_start(what, &parts, &trainer.params, &format!("{} devices", setup.devices.len()))?;
    }

    let end = setup.max_steps.map_or(total_steps, |m| m.min(total_steps));
    let bar = if setup.progress && leader { ProgressBar::new(end) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]").unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_position(trainer.steps_taken);
    let mut log = if leader { Some(MetricsLog::open(&setup.dir, setup.resume.then_some(trainer.steps_taken))?) } else { None };
    let started = Instant::now();
    let mut window = MetricSums::default();
    let mut window_rows = 0usize;
    let mut window_start = Instant::now();
    let log_every = 50u64.min(end.max(1));
    let mut last_eval = None;

    'outer: while trainer.steps_taken < end {
        let batches = iteration_batches(&setup.train, cfg.seed, trainer.pos.iteration, cfg.eval_interval, gbs);
        while (trainer.pos.batch as usize) < batches.len() {
            // A stop request ends the run like max_steps: the checkpoint after the loop is written.
            if trainer.steps_taken >= end || setup.hooks.stop_requested() {
                break 'outer;
            }
            let report = match trainer.step(&setup.train, &batches[trainer.pos.batch as usize]) {
                Ok(r) => r,
                Err(e) if e.is::<NonFiniteLoss>() => {
                    bar.abandon();
                    if !leader {
                        return Err(e);
                    }
                    let kept = match read_latest(&setup.dir) {
                        Ok(c) => format!("the last good checkpoint ({}) is kept; to go on, lower lr in {} and run --resume {}", c.dir.display(), setup.dir.join("config.toml").display(), setup.dir.display()),
                        Err(_) => "no checkpoint had been written yet".to_string(),
                    };
                    bail!("{e:#}; stopping: {kept}");
                }
                Err(e) => return Err(e),
            };
            let step = trainer.steps_taken;
            window.add(&report.metrics);
            window_rows += gbs;
            bar.set_position(step);
            setup.hooks.progress(step, end);

            if (step % log_every == 0 || step == end) && let Some(log) = log.as_mut() {
                let means = window.means(window_rows as f64);
                let secs = window_start.elapsed().as_secs_f64();
                let line = LogLine { kind: "train", step, lr: report.lr, metrics: means, examples_per_s: window_rows as f64 / secs.max(1e-9), elapsed_s: started.elapsed().as_secs_f64() };
                log.append(&line)?;
                setup.hooks.metrics(&line);
                bar.set_message(format!("loss {:.4} exact {:.3} lr {:.2e} {:.0} ex/s", means.lm_loss + 0.5 * means.q_halt_loss, means.exact_accuracy, report.lr, line.examples_per_s));
                window = MetricSums::default();
                window_rows = 0;
                window_start = Instant::now();
            }
            // Not on an iteration's last batch: the evaluation's checkpoint follows at the same
            // step, and writing a step twice would replace the directory `latest` names.
            if leader && cfg.checkpoint_every_steps > 0 && step % cfg.checkpoint_every_steps == 0 && (trainer.pos.batch as usize) < batches.len() {
                trainer.save(&setup.dir)?;
            }
        }
        // End of an iteration (eval_interval epochs): evaluate and checkpoint, as the reference.
        trainer.pos = DataPosition { iteration: trainer.pos.iteration + 1, batch: 0 };
        // The other processes go on to the next step and wait for rank 0 in its all-reduce.
        let Some(log) = log.as_mut() else { continue };
        let means = trainer.evaluate(&setup.test, cfg.data.eval_limit)?;
        let line = LogLine { kind: "eval", step: trainer.steps_taken, lr: trainer.lr(), metrics: means, examples_per_s: 0.0, elapsed_s: started.elapsed().as_secs_f64() };
        log.append(&line)?;
        setup.hooks.metrics(&line);
        bar.println(format!("step {}: eval exact {:.3}, token accuracy {:.3}", trainer.steps_taken, means.exact_accuracy, means.accuracy));
        last_eval = Some(means);
        trainer.save(&setup.dir)?;
    }
    // Stopped by max_steps mid-iteration: save where we are, so that --resume continues.
    if leader && read_latest(&setup.dir).map(|c| c.state.step).ok() != Some(trainer.steps_taken) {
        trainer.save(&setup.dir)?;
    }
    bar.finish();
    Ok(RunSummary { steps: trainer.steps_taken, last_eval })
}

/// Writes a new run directory's config.
pub fn create_run_dir(dir: &Path, cfg: &TrainConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    trm_shared::atomic::write_file(&dir.join("config.toml"), cfg.to_toml_string()?.as_bytes())
        .with_context(|| format!("writing {}/config.toml", dir.display()))
}
