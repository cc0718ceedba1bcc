//! Adaptive computation time: the reference's `TinyRecursiveReasoningModel_ACTV1` wrapper.
//!
//! A carry holds, per row, the recurrent state, the number of ACT steps taken and whether the
//! row halted, plus the data the row is working on. Each call resets halted rows (fresh
//! `H_init`/`L_init`, step 0, new data from the incoming batch), runs one step of the network
//! and decides who halts: in eval every row runs exactly `halt_max_steps`; in training a row
//! also halts when `q_halt > 0`, unless exploration gave it a random minimum of steps.

use std::borrow::Cow;

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use rand::{Rng, RngCore};

use super::ModelError;
use super::config::DataSizes;
use super::steps::{ActRun, Halting, RunOutput};
use super::trm::{InnerCarry, StepOutput, Trm};

/// A batch as the ACT wrapper sees it.
#[derive(Debug, Clone)]
pub struct ActBatch<B: Backend> {
    /// `[B, S]` token ids.
    pub inputs: Tensor<B, 2, Int>,
    /// `[B]` puzzle ids.
    pub puzzle_identifiers: Tensor<B, 1, Int>,
    /// `[B, S]` labels (training only).
    pub labels: Option<Tensor<B, 2, Int>>,
}

/// The ACT carry (`TinyRecursiveReasoningModel_ACTV1Carry`).
#[derive(Debug, Clone)]
pub struct ActCarry<B: Backend> {
    /// Recurrent state.
    pub inner: InnerCarry<B>,
    /// `[B]` steps taken by each row since its reset.
    pub steps: Tensor<B, 1, Int>,
    /// `[B]` rows that halted (they are reset and refilled on the next call).
    pub halted: Tensor<B, 1, Bool>,
    /// The data each row is working on.
    pub current_data: ActBatch<B>,
}

/// Eval runs every row to `halt_max_steps`; training halts on Q and explores.
pub enum ActMode<'a> {
    /// The reference's `model.eval()`.
    Eval,
    /// The reference's `model.train()`, with the random source for exploration.
    Train(&'a mut dyn RngCore),
}

/// What one ACT call returns besides the carry.
#[derive(Debug, Clone)]
pub struct ActStep<B: Backend> {
    /// Logits and Q values of this step.
    pub output: StepOutput<B>,
    /// Training with `no_ACT_continue = false` only: the Q-learning target for `q_continue`.
    /// (The reference's code for this path unpacks the wrong number of values and crashes;
    /// this computes what it evidently intends.)
    pub target_q_continue: Option<Tensor<B, 1>>,
}

/// The ACT wrapper around the network.
#[derive(Debug)]
pub struct ActModel<B: Backend> {
    /// The network.
    pub trm: Trm<B>,
}

impl<B: Backend> ActModel<B> {
    /// Wraps a network.
    pub fn new(trm: Trm<B>) -> ActModel<B> {
        ActModel { trm }
    }

    /// A carry in which every row is halted, so that the first call loads the whole batch.
    pub fn initial_carry(&self, batch: &ActBatch<B>) -> ActCarry<B> {
        let [b, _] = batch.inputs.dims();
        let device = batch.inputs.device();
        ActCarry {
            inner: self.trm.initial_carry(b),
            steps: Tensor::zeros([b], &device),
            halted: Tensor::<B, 1, Int>::ones([b], &device).equal_elem(1),
            current_data: batch.clone(),
        }
    }

    /// One ACT step (the reference's `forward(carry, batch)`).
    pub fn step(&self, carry: ActCarry<B>, batch: &ActBatch<B>, mode: ActMode<'_>) -> (ActCarry<B>, ActStep<B>) {
        let cfg = self.trm.config();
        let max_steps = cfg.halt_max_steps as i64;
        let [b, s] = batch.inputs.dims();
        let reset = carry.halted;

        // Halted rows start over on new data.
        let inner = self.trm.reset_carry(reset.clone(), carry.inner);
        let steps = carry.steps.mask_fill(reset.clone(), 0);
        let rows = reset.clone().reshape([b, 1]).expand([b, s]);
        let data = ActBatch {
            inputs: carry.current_data.inputs.mask_where(rows.clone(), batch.inputs.clone()),
            puzzle_identifiers: carry
                .current_data
                .puzzle_identifiers
                .mask_where(reset.clone(), batch.puzzle_identifiers.clone()),
            labels: match (carry.current_data.labels, &batch.labels) {
                (Some(old), Some(new)) => Some(old.mask_where(rows, new.clone())),
                (_, new) => new.clone(),
            },
        };

        let (inner, output) = self.trm.forward(inner, data.inputs.clone(), data.puzzle_identifiers.clone());

        let steps = steps.add_scalar(1);
        let is_last = steps.clone().greater_equal_elem(max_steps);
        let mut halted = is_last.clone();
        let mut target_q_continue = None;
        if let ActMode::Train(rng) = mode
            && max_steps > 1
        {
            let q_halt = output.q_halt.clone().detach();
            let q_continue = output.q_continue.clone().detach();
            halted = if cfg.no_act_continue {
                halted.bool_or(q_halt.greater_elem(0.0))
            } else {
                halted.bool_or(q_halt.greater(q_continue))
            };
            // Exploration: with probability p a row must run at least U{2..max} steps.
            let min_halt: Vec<i32> = (0..b)
                .map(|_| {
                    let explore = rng.random::<f32>() < cfg.halt_exploration_prob as f32;
                    let min = rng.random_range(2..=max_steps as i32);
                    if explore { min } else { 0 }
                })
                .collect();
            let min_halt = Tensor::<B, 1, Int>::from_data(TensorData::new(min_halt, [b]), &steps.device());
            halted = halted.bool_and(steps.clone().greater_equal(min_halt));

            if !cfg.no_act_continue {
                let (_, next) = self.trm.forward(inner.clone(), data.inputs.clone(), data.puzzle_identifiers.clone());
                let next_halt = next.q_halt.detach();
                let best = next_halt.clone().max_pair(next.q_continue.detach());
                target_q_continue = Some(sigmoid(best.mask_where(is_last, next_halt)));
            }
        }

        (ActCarry { inner, steps, halted, current_data: data }, ActStep { output, target_q_continue })
    }
}

/// Checks inputs against a model's sizes ([`Trm::sizes`]) and uploads them: `tokens`
/// row-major `[n, seq_len]`, `puzzle_ids` `[n]`. Out-of-range values are errors here rather
/// than panics in a gather.
pub fn make_batch<B: Backend>(
    sizes: DataSizes,
    tokens: &[i32],
    puzzle_ids: &[i32],
    device: &B::Device,
) -> Result<ActBatch<B>, ModelError> {
    let DataSizes { seq_len: seq, vocab_size: vocab, num_puzzle_identifiers: ids } = sizes;
    let n = puzzle_ids.len();
    if tokens.len() != n * seq {
        return Err(ModelError::Input(format!(
            "{} tokens for {n} rows of seq_len {seq} (expected {})",
            tokens.len(),
            n * seq
        )));
    }
    if let Some((i, t)) = tokens.iter().enumerate().find(|(_, t)| **t < 0 || **t as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "token {t} at row {} cell {} is outside the vocabulary 0..{vocab}",
            i / seq,
            i % seq
        )));
    }
    if let Some((i, p)) = puzzle_ids.iter().enumerate().find(|(_, p)| **p < 0 || **p as usize >= ids) {
        return Err(ModelError::Input(format!("puzzle identifier {p} of row {i} is outside 0..{ids}")));
    }
    Ok(ActBatch {
        inputs: Tensor::from_data(TensorData::new(tokens.to_vec(), [n, seq]), device),
        puzzle_identifiers: Tensor::from_data(TensorData::new(puzzle_ids.to_vec(), [n]), device),
        labels: None,
    })
}

/// How an inference run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inference {
    /// ACT steps run.
    pub steps_run: usize,
    /// `Some(k)` when the run stopped after step `k` (1-based) because every row had
    /// `q_halt > 0` — our option, beyond the reference, which always runs all steps.
    pub stopped_early_at: Option<usize>,
}

/// Eval-mode inference: fresh carry, then `steps` ACT steps on the same batch, calling
/// `on_step(step_index, &output)` after each. For `steps ≤ halt_max_steps` this is exactly
/// the reference's evaluation; more steps keep recursing instead of resetting.
/// With `stop_when_all_halt`, stops once every row's `q_halt > 0`. A thin use of [`ActRun`].
pub fn run_inference<B: Backend>(
    trm: &Trm<B>,
    batch: &ActBatch<B>,
    steps: usize,
    stop_when_all_halt: bool,
    mut on_step: impl FnMut(usize, &StepOutput<B>) -> Result<(), ModelError>,
) -> Result<Inference, ModelError> {
    let halting = if stop_when_all_halt { Halting::AllRows } else { Halting::Never };
    let mut run = ActRun::reference(Cow::Borrowed(trm), batch, steps, halting);
    while let Some(step) = run.next()? {
        let RunOutput { logits, q_halt, q_continue } = step.output;
        let q_continue = q_continue.ok_or_else(|| ModelError::Input("the reference network gave no q_continue".into()))?;
        on_step(step.step - 1, &StepOutput { logits, q_halt, q_continue })?;
    }
    Ok(Inference { steps_run: run.steps_run(), stopped_early_at: run.all_halted_at() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cpu, RandomInit, TrmConfig};
    use rand::SeedableRng;

    fn tiny(max_steps: usize) -> ActModel<Cpu> {
        let cfg = TrmConfig { halt_max_steps: max_steps, ..TrmConfig::tiny(4, 2) };
        let trm = Trm::build(&cfg, &mut RandomInit::new(3), &Default::default()).unwrap();
        ActModel::new(trm)
    }

    fn batch(model: &ActModel<Cpu>, first: i32) -> ActBatch<Cpu> {
        let tokens: Vec<i32> = (0..12).map(|i| 1 + (first + i) % 5).collect();
        make_batch(model.trm.sizes(), &tokens, &[0, 1, 0], &Default::default()).unwrap()
    }

    fn ints(t: Tensor<Cpu, 1, Int>) -> Vec<i64> {
        t.into_data().iter::<i64>().collect()
    }
    fn bools(t: Tensor<Cpu, 1, Bool>) -> Vec<bool> {
        t.int().into_data().iter::<i64>().map(|v| v != 0).collect()
    }

    #[test]
    fn eval_runs_every_row_to_max_steps_then_resets() {
        let model = tiny(3);
        let b = batch(&model, 0);
        let mut carry = model.initial_carry(&b);
        for step in 1..=3 {
            let (c, _) = model.step(carry, &b, ActMode::Eval);
            assert_eq!(ints(c.steps.clone()), vec![step; 3]);
            assert_eq!(bools(c.halted.clone()), vec![step == 3; 3]);
            carry = c;
        }
        // The next call resets every row and takes the new batch.
        let b2 = batch(&model, 2);
        let (c, _) = model.step(carry, &b2, ActMode::Eval);
        assert_eq!(ints(c.steps), vec![1; 3]);
        let got: Vec<i64> = c.current_data.inputs.into_data().iter::<i64>().collect();
        let want: Vec<i64> = b2.inputs.into_data().iter::<i64>().collect();
        assert_eq!(got, want);
    }

    #[test]
    fn only_halted_rows_are_reset_and_refilled() {
        let model = tiny(4);
        let b = batch(&model, 0);
        let (mut carry, _) = model.step(model.initial_carry(&b), &b, ActMode::Eval);
        // Pretend row 1 halted.
        carry.halted = Tensor::<Cpu, 1, Int>::from_data(TensorData::new(vec![0i32, 1, 0], [3]), &Default::default()).equal_elem(1);
        let before_z = carry.inner.z_h.clone();
        let b2 = batch(&model, 3);
        // The z that row 1 starts from must be H_init: compare against a fresh reset.
        let reset = model.trm.reset_carry(carry.halted.clone(), carry.inner.clone());
        let z: Vec<f32> = reset.z_h.clone().narrow(0, 1, 1).into_data().iter::<f32>().collect();
        let h: Vec<f32> = model.trm.h_init.val().into_data().iter::<f32>().collect();
        assert!(z.chunks(16).all(|row| row == h.as_slice()));
        let kept: Vec<f32> = reset.z_h.narrow(0, 0, 1).into_data().iter::<f32>().collect();
        let was: Vec<f32> = before_z.narrow(0, 0, 1).into_data().iter::<f32>().collect();
        assert_eq!(kept, was);
        let (c, _) = model.step(carry, &b2, ActMode::Eval);
        assert_eq!(ints(c.steps), vec![2, 1, 2]);
        let rows: Vec<i64> = c.current_data.inputs.into_data().iter::<i64>().collect();
        let old: Vec<i64> = b.inputs.into_data().iter::<i64>().collect();
        let new: Vec<i64> = b2.inputs.into_data().iter::<i64>().collect();
        assert_eq!(&rows[0..4], &old[0..4]);
        assert_eq!(&rows[4..8], &new[4..8]);
        assert_eq!(&rows[8..12], &old[8..12]);
    }

    #[test]
    fn training_halts_on_positive_q_and_exploration_can_delay_it() {
        let mut model = tiny(5);
        model.trm.config.halt_exploration_prob = 0.0;
        // q_halt = bias = +1 > 0 everywhere: every row wants to halt after one step.
        model.trm.q_head.bias = Some(burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32, 0.0], [2]),
            &Default::default(),
        )));
        let b = batch(&model, 0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (c, _) = model.step(model.initial_carry(&b), &b, ActMode::Train(&mut rng));
        assert_eq!(bools(c.halted), vec![true; 3]);

        // With exploration certain, a minimum of >= 2 steps holds every row back at step 1.
        let mut cfg = model.trm.config.clone();
        cfg.halt_exploration_prob = 1.0;
        model.trm.config = cfg;
        let (c, _) = model.step(model.initial_carry(&b), &b, ActMode::Train(&mut rng));
        assert_eq!(bools(c.halted), vec![false; 3]);
        // Eval ignores q entirely.
        let (c, _) = model.step(model.initial_carry(&b), &b, ActMode::Eval);
        assert_eq!(bools(c.halted), vec![false; 3]);
    }

    #[test]
    fn inference_can_stop_early_when_all_rows_halt() {
        let mut model = tiny(6);
        let b = batch(&model, 0);
        let full = run_inference(&model.trm, &b, 6, true, |_, _| Ok(())).unwrap();
        // q_head starts at W = 0, b = -5: never halts.
        assert_eq!(full, Inference { steps_run: 6, stopped_early_at: None });
        model.trm.q_head.bias = Some(burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![2.0f32, 0.0], [2]),
            &Default::default(),
        )));
        let mut seen = 0;
        let early = run_inference(&model.trm, &b, 6, true, |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(early, Inference { steps_run: 1, stopped_early_at: Some(1) });
        assert_eq!(seen, 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let model = tiny(2);
        let sizes = model.trm.sizes();
        let dev = Default::default();
        let e = make_batch::<Cpu>(sizes, &[1; 11], &[0, 0, 0], &dev).unwrap_err().to_string();
        assert!(e.contains("11 tokens"), "{e}");
        let e = make_batch::<Cpu>(sizes, &[1, 1, 9, 1], &[0], &dev).unwrap_err().to_string();
        assert!(e.contains("token 9"), "{e}");
        let e = make_batch::<Cpu>(sizes, &[1, 1, 1, 1], &[2], &dev).unwrap_err().to_string();
        assert!(e.contains("puzzle identifier 2"), "{e}");
    }
}
