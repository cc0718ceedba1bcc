//! Inference's ACT loop, once for both families: an [`ActRun`] owns the carry and the inputs
//! and yields one step at a time, with its answers, its Q values and who halted, honouring a
//! step cap and a [`Halting`] rule. `predict`, `solve`, `trm eval`, the server's model thread,
//! the trainer's evaluation and the app's step-by-step view all step through it.
//!
//! Eval mode only: a fresh carry and the same inputs every step, as the reference evaluates
//! (training's resets and exploration are [`super::ActModel::step`]'s).

use std::borrow::Cow;

use burn::prelude::*;

use super::act::{ActBatch, make_batch};
use super::load::AnyModel;
use super::local::{GridShape, LocalTrm, MAX_SIDE};
use super::trm::{InnerCarry, Trm};
use super::ModelError;

/// When a run stops before its step cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halting {
    /// Never: every step up to the cap (the reference's evaluation). Each row's first step
    /// with `q_halt > 0` is still recorded.
    Never,
    /// After the first step at which every row has `q_halt > 0` (beyond the reference).
    AllRows,
    /// Each row stops after its first step with `q_halt > 0`: it leaves the batch (rows never
    /// interact, so later steps cost only the rows still running) and keeps that step's
    /// answer; the run ends when every row has (the size-general model as it is used).
    EachRow,
}

/// The network and what it runs on, the same every step.
#[derive(Debug)]
enum Net<'m, B: Backend> {
    Reference { trm: Cow<'m, Trm<B>>, inputs: Tensor<B, 2, Int>, puzzle_identifiers: Tensor<B, 1, Int> },
    /// `x`: the embedded mazes, `[rows, cells, D]`.
    Local { model: Cow<'m, LocalTrm<B>>, x: Tensor<B, 3>, grid: GridShape },
}

/// One step's tensors, for the rows that ran it.
#[derive(Debug, Clone)]
pub struct RunOutput<B: Backend> {
    /// `[rows, cells, V]` token logits.
    pub logits: Tensor<B, 3>,
    /// `[rows]`: halt if > 0.
    pub q_halt: Tensor<B, 1>,
    /// `[rows]`: the reference model's "continue" Q value; `None` for the size-general model.
    pub q_continue: Option<Tensor<B, 1>>,
}

/// What one step of a run hands out.
#[derive(Debug, Clone)]
pub struct RunStep<B: Backend> {
    /// 1-based ACT step.
    pub step: usize,
    /// Every row's answer after this step, row-major; a row that left the batch
    /// ([`Halting::EachRow`]) keeps the answer of the step where it halted.
    pub answers: Vec<u8>,
    /// Every row's `q_halt` after this step, likewise.
    pub q_halt: Vec<f32>,
    /// The rows that ran this step, in the order of `output`'s rows.
    pub rows: Vec<usize>,
    /// This step's tensors.
    pub output: RunOutput<B>,
}

/// One inference run of ACT steps over a batch of mazes.
#[derive(Debug)]
pub struct ActRun<'m, B: Backend> {
    net: Net<'m, B>,
    /// `None` once a step failed half-way (its outputs could not be read).
    carry: Option<InnerCarry<B>>,
    cells: usize,
    cap: usize,
    halting: Halting,
    step: usize,
    /// The rows still in the batch, in batch order.
    active: Vec<usize>,
    answers: Vec<u8>,
    q_halt: Vec<f32>,
    halted_at: Vec<Option<usize>>,
    all_halted_at: Option<usize>,
}

impl<'m, B: Backend> ActRun<'m, B> {
    /// A reference model on `batch` (its labels are ignored), for at most `cap` steps.
    pub fn reference(trm: Cow<'m, Trm<B>>, batch: &ActBatch<B>, cap: usize, halting: Halting) -> ActRun<'m, B> {
        let [rows, cells] = batch.inputs.dims();
        let carry = trm.initial_carry(rows);
        let net = Net::Reference { trm, inputs: batch.inputs.clone(), puzzle_identifiers: batch.puzzle_identifiers.clone() };
        ActRun::with(net, carry, rows, cells, cap, halting)
    }

    /// The size-general model on `rows x cols` mazes (`tokens`: row-major, whole mazes), for
    /// at most `cap` steps.
    pub fn local(
        model: Cow<'m, LocalTrm<B>>,
        tokens: &[u8],
        grid: GridShape,
        cap: usize,
        halting: Halting,
        device: &B::Device,
    ) -> Result<ActRun<'m, B>, ModelError> {
        let cells = grid.cells();
        if grid.rows == 0 || grid.cols == 0 || grid.rows > MAX_SIDE || grid.cols > MAX_SIDE {
            return Err(ModelError::Input(format!("maze size {}x{} is outside 1..={MAX_SIDE}", grid.rows, grid.cols)));
        }
        if tokens.is_empty() || tokens.len() % cells != 0 {
            return Err(ModelError::Input(format!("{} tokens are not whole {}x{} mazes", tokens.len(), grid.rows, grid.cols)));
        }
        let vocab = model.config().vocab_size;
        if let Some(t) = tokens.iter().find(|&&t| usize::from(t) >= vocab) {
            return Err(ModelError::Input(format!("token {t} is outside the vocabulary 0..{vocab}")));
        }
        let rows = tokens.len() / cells;
        let ids: Vec<i32> = tokens.iter().map(|&t| i32::from(t)).collect();
        let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [rows, cells]), device);
        let x = model.input_embeddings(inputs, None);
        let carry = model.initial_carry(rows, cells, None);
        Ok(ActRun::with(Net::Local { model, x, grid }, carry, rows, cells, cap, halting))
    }

    /// A model of either family solving `rows x cols` mazes as it is used: the reference model
    /// every step up to `cap` on mazes of its size (puzzle identifier 0, as the benchmark has
    /// it), the size-general one each maze until it halts, at most `cap` steps.
    pub fn solving(model: Cow<'m, AnyModel<B>>, tokens: &[u8], grid: GridShape, cap: usize, device: &B::Device) -> Result<ActRun<'m, B>, ModelError> {
        let trm = match model {
            Cow::Borrowed(AnyModel::Local(m)) => return ActRun::local(Cow::Borrowed(m), tokens, grid, cap, Halting::EachRow, device),
            Cow::Owned(AnyModel::Local(m)) => return ActRun::local(Cow::Owned(m), tokens, grid, cap, Halting::EachRow, device),
            Cow::Borrowed(AnyModel::Reference(m)) => Cow::Borrowed(m),
            Cow::Owned(AnyModel::Reference(m)) => Cow::Owned(m),
        };
        let sizes = trm.sizes();
        let ids: Vec<i32> = tokens.iter().map(|&t| i32::from(t)).collect();
        let batch = make_batch::<B>(sizes, &ids, &vec![0; tokens.len() / sizes.seq_len.max(1)], device)?;
        Ok(ActRun::reference(trm, &batch, cap, Halting::Never))
    }

    fn with(net: Net<'m, B>, carry: InnerCarry<B>, rows: usize, cells: usize, cap: usize, halting: Halting) -> ActRun<'m, B> {
        ActRun {
            net,
            carry: Some(carry),
            cells,
            cap,
            halting,
            step: 0,
            active: (0..rows).collect(),
            answers: vec![0; rows * cells],
            q_halt: vec![0.0; rows],
            halted_at: vec![None; rows],
            all_halted_at: None,
        }
    }

    /// Rows (mazes) in the run.
    pub fn rows(&self) -> usize {
        self.halted_at.len()
    }

    /// Steps run so far.
    pub fn steps_run(&self) -> usize {
        self.step
    }

    /// Per row, the first step after which its `q_halt > 0`, if any yet.
    pub fn halted_at(&self) -> &[Option<usize>] {
        &self.halted_at
    }

    /// With [`Halting::AllRows`], the step after which every row had `q_halt > 0` and the run stopped.
    pub fn all_halted_at(&self) -> Option<usize> {
        self.all_halted_at
    }

    /// Whether the run has no step left: the cap reached, or stopped by its halting rule.
    pub fn is_done(&self) -> bool {
        self.step >= self.cap || self.all_halted_at.is_some() || self.active.is_empty()
    }

    /// Runs the next step and reads its answers; `None` once the run is done.
    pub fn next(&mut self) -> Result<Option<RunStep<B>>, ModelError> {
        let Some(output) = self.forward()? else { return Ok(None) };
        let answers = tokens_of(output.logits.clone().argmax(2).into_data());
        let q: Vec<f32> = output.q_halt.clone().into_data().iter::<f32>().collect();
        Ok(Some(self.settle(output, answers, q)))
    }

    /// [`ActRun::next`] reading the answers asynchronously (WebGPU has no synchronous reads).
    pub async fn next_async(&mut self) -> Result<Option<RunStep<B>>, ModelError> {
        let Some(output) = self.forward()? else { return Ok(None) };
        let answers = output.logits.clone().argmax(2).into_data_async().await.map_err(read_error);
        let q = output.q_halt.clone().into_data_async().await.map_err(read_error);
        let (answers, q) = match (answers, q) {
            (Ok(a), Ok(q)) => (tokens_of(a), q.iter::<f32>().collect()),
            (Err(e), _) | (_, Err(e)) => {
                // The carry has moved on without this step's bookkeeping: no step after it.
                self.carry = None;
                return Err(e);
            }
        };
        Ok(Some(self.settle(output, answers, q)))
    }

    /// One step of the network on the rows still running.
    fn forward(&mut self) -> Result<Option<RunOutput<B>>, ModelError> {
        if self.is_done() {
            return Ok(None);
        }
        let carry = self.carry.take().ok_or_else(|| ModelError::Read("a previous step failed: start again".into()))?;
        let (next, output) = match &self.net {
            Net::Reference { trm, inputs, puzzle_identifiers } => {
                let (next, out) = trm.forward(carry, inputs.clone(), puzzle_identifiers.clone());
                (next, RunOutput { logits: out.logits, q_halt: out.q_halt, q_continue: Some(out.q_continue) })
            }
            Net::Local { model, x, grid } => {
                let (next, out) = model.step(carry, x, *grid, None, false);
                (next, RunOutput { logits: out.logits, q_halt: out.q_halt, q_continue: None })
            }
        };
        self.carry = Some(next);
        Ok(Some(output))
    }

    /// Records a step's answers and Q values (of the rows that ran it) and applies the halting rule.
    fn settle(&mut self, output: RunOutput<B>, answers: Vec<u8>, q: Vec<f32>) -> RunStep<B> {
        self.step += 1;
        let (step, cells) = (self.step, self.cells);
        for (k, &i) in self.active.iter().enumerate() {
            self.answers[i * cells..(i + 1) * cells].copy_from_slice(&answers[k * cells..(k + 1) * cells]);
            self.q_halt[i] = q[k];
            if self.halted_at[i].is_none() && q[k] > 0.0 {
                self.halted_at[i] = Some(step);
            }
        }
        let rows = self.active.clone();
        match self.halting {
            Halting::Never => {}
            Halting::AllRows => {
                if q.iter().all(|&v| v > 0.0) {
                    self.all_halted_at = Some(step);
                }
            }
            Halting::EachRow => self.drop_halted_rows(),
        }
        RunStep { step, answers: self.answers.clone(), q_halt: self.q_halt.clone(), rows, output }
    }

    /// Takes the rows that halted out of the batch.
    fn drop_halted_rows(&mut self) {
        let keep: Vec<usize> = (0..self.active.len()).filter(|&k| self.halted_at[self.active[k]].is_none()).collect();
        if keep.len() == self.active.len() {
            return;
        }
        self.active = keep.iter().map(|&k| self.active[k]).collect();
        if keep.is_empty() {
            return;
        }
        let Some(carry) = self.carry.take() else { return };
        let device = carry.z_h.device();
        let picked: Vec<i64> = keep.iter().map(|&k| k as i64).collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(picked, [keep.len()]), &device);
        self.carry = Some(InnerCarry { z_h: carry.z_h.select(0, index.clone()), z_l: carry.z_l.select(0, index.clone()) });
        match &mut self.net {
            Net::Reference { inputs, puzzle_identifiers, .. } => {
                *inputs = inputs.clone().select(0, index.clone());
                *puzzle_identifiers = puzzle_identifiers.clone().select(0, index);
            }
            Net::Local { x, .. } => *x = x.clone().select(0, index),
        }
    }
}

fn read_error(e: impl std::fmt::Debug) -> ModelError {
    ModelError::Read(format!("{e:?}"))
}

/// Argmax token ids as maze tokens (ids below the vocabulary, which fits a byte).
fn tokens_of(data: TensorData) -> Vec<u8> {
    data.iter::<i64>().map(|t| t as u8).collect()
}

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;
    use crate::model::{Cpu, LocalConfig, PredictOptions, RandomInit, TrmConfig, predict, predict_local, solve};

    fn local(bias: Option<f32>) -> LocalTrm<Cpu> {
        let cfg = LocalConfig { hidden_size: 8, expansion: 2.0, l_layers: 1, h_cycles: 2, l_cycles: 1, ..LocalConfig::default() };
        let mut model = LocalTrm::<Cpu>::build(&cfg, &mut RandomInit::new(4), &Default::default()).unwrap();
        if let Some(b) = bias {
            model.q_head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![b], [1]), &Default::default())));
        }
        model
    }

    fn mazes(n: usize, grid: GridShape) -> Vec<u8> {
        (0..n * grid.cells()).map(|i| (1 + (i * 7 + i / 3) % 4) as u8).collect()
    }

    /// Every step by hand, against predict's answers after each step.
    fn stepped(run: &mut ActRun<'_, Cpu>) -> Vec<(Vec<u8>, Vec<f32>)> {
        let mut seen = Vec::new();
        while let Some(s) = run.next().unwrap() {
            assert_eq!(s.step, seen.len() + 1);
            seen.push((s.answers, s.q_halt));
        }
        seen
    }

    #[test]
    fn step_by_step_gives_predicts_answers_on_any_size() {
        let device = Default::default();
        let model = local(None);
        for (rows, cols) in [(5, 5), (40, 40)] {
            let grid = GridShape { rows, cols };
            let tokens = mazes(2, grid);
            let mut run = ActRun::local(Cow::Borrowed(&model), &tokens, grid, 3, Halting::EachRow, &device).unwrap();
            let seen = stepped(&mut run);
            let opts = PredictOptions { steps: 3, batch_size: 2, stop_when_all_halt: true, keep_logits: false };
            let all = predict_local(&model, &tokens, grid, &opts, &device, |_| {}).unwrap();
            assert_eq!(seen.len(), all.answers.len());
            for (s, (a, q)) in seen.iter().enumerate() {
                assert_eq!(a, &all.answers[s], "{rows}x{cols} step {}", s + 1);
                assert_eq!(q, &all.q_halt[s]);
            }
            // A fresh Q head (bias -5) never halts: the cap ends the run.
            assert_eq!((run.steps_run(), run.halted_at()), (3, &[None, None][..]));
            assert!(run.is_done() && run.next().unwrap().is_none());
        }
    }

    #[test]
    fn each_row_halts_on_its_q_head_and_keeps_that_answer() {
        let device = Default::default();
        let grid = GridShape { rows: 5, cols: 5 };
        let tokens = mazes(3, grid);
        // A Q head that says "halt" everywhere: one step, every row halted at 1.
        let model = local(Some(50.0));
        let mut run = ActRun::local(Cow::Borrowed(&model), &tokens, grid, 9, Halting::EachRow, &device).unwrap();
        let seen = stepped(&mut run);
        assert_eq!((seen.len(), run.halted_at()), (1, &[Some(1); 3][..]));
        let solved = solve(&model, &tokens, grid, 9, &device, |_, _, _| true).unwrap();
        assert_eq!((solved.steps_run, solved.halted_at), (1, vec![Some(1); 3]));
        assert_eq!(solved.answers.concat(), seen[0].0);
        // Never halting runs to the cap, recording the first halt all the same.
        let mut run = ActRun::local(Cow::Borrowed(&model), &tokens, grid, 4, Halting::Never, &device).unwrap();
        assert_eq!(stepped(&mut run).len(), 4);
        assert_eq!(run.halted_at(), &[Some(1); 3][..]);
        // Through `solving`, as the app's step-by-step view runs a model.
        let any = AnyModel::Local(model);
        let mut run = ActRun::solving(Cow::Borrowed(&any), &tokens[..25], grid, 9, &device).unwrap();
        assert_eq!((stepped(&mut run).len(), run.halted_at()), (1, &[Some(1)][..]));
    }

    #[test]
    fn the_reference_model_steps_as_predict_runs_it() {
        let device = Default::default();
        let cfg = TrmConfig { h_cycles: 1, halt_max_steps: 4, ..TrmConfig::tiny(9, 1) };
        let mut trm = Trm::<Cpu>::build(&cfg, &mut RandomInit::new(5), &device).unwrap();
        let tokens: Vec<u8> = (0..3 * 9).map(|i| 1 + (i * 7 % 5) as u8).collect();
        let any = AnyModel::Reference(trm.clone());
        let grid = GridShape { rows: 3, cols: 3 };
        let mut run = ActRun::solving(Cow::Borrowed(&any), &tokens, grid, 4, &device).unwrap();
        let seen = stepped(&mut run);
        let opts = PredictOptions { steps: 4, batch_size: 3, stop_when_all_halt: false, keep_logits: false };
        let all = predict(&trm, &tokens, &[0; 3], &opts, &device, |_| {}).unwrap();
        let answers: Vec<Vec<u8>> = seen.iter().map(|(a, _)| a.clone()).collect();
        assert_eq!(answers, all.answers);
        // All rows halting at once stops an AllRows run there.
        trm.q_head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![2.0f32, 0.0], [2]), &device)));
        let ids: Vec<i32> = tokens.iter().map(|&t| i32::from(t)).collect();
        let batch = make_batch::<Cpu>(trm.sizes(), &ids, &[0; 3], &device).unwrap();
        let mut run = ActRun::reference(Cow::Borrowed(&trm), &batch, 4, Halting::AllRows);
        assert_eq!(stepped(&mut run).len(), 1);
        assert_eq!((run.all_halted_at(), run.halted_at()), (Some(1), &[Some(1); 3][..]));
        // A maze of another size is an error, not a panic.
        assert!(ActRun::solving(Cow::Owned(AnyModel::Reference(trm)), &[2; 16], GridShape { rows: 4, cols: 4 }, 2, &device).is_err());
    }
}
