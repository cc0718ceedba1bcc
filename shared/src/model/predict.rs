//! Batched inference over many mazes of either family, collecting the answer after every
//! ACT step, each batch an [`ActRun`].

use std::borrow::Cow;

use burn::prelude::*;

use super::act::make_batch;
use super::local::{GridShape, LocalTrm};
use super::steps::{ActRun, Halting};
use super::trm::Trm;
use super::ModelError;

/// What to run and what to keep.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// ACT steps per maze (the reference evaluates with `halt_max_steps`).
    pub steps: usize,
    /// Rows per forward pass.
    pub batch_size: usize,
    /// Stop a batch once every row has `q_halt > 0` (beyond the reference).
    pub stop_when_all_halt: bool,
    /// Keep the full logits of every step (large: steps × N × seq_len × vocab f32).
    pub keep_logits: bool,
}

/// Answers and Q values after every ACT step.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    /// Rows.
    pub n: usize,
    /// Cells per row.
    pub seq_len: usize,
    /// Vocabulary size (logits per cell).
    pub vocab_size: usize,
    /// `[step][row * seq_len + cell]`: argmax token after each step.
    pub answers: Vec<Vec<u8>>,
    /// `[step][row]`: q_halt logit after each step.
    pub q_halt: Vec<Vec<f32>>,
    /// `[step][row * seq_len * vocab + cell * vocab + v]` when asked for.
    pub logits: Option<Vec<Vec<f32>>>,
    /// Per row, the step count after which its batch stopped early (None = ran all steps).
    /// Steps after an early stop repeat the last answer, Q value and logits.
    pub stopped_early_at: Vec<Option<usize>>,
}

impl Predictions {
    /// The answer of row `i` after the last step.
    pub fn final_answer(&self, i: usize) -> &[u8] {
        let last = self.answers.len() - 1;
        &self.answers[last][i * self.seq_len..(i + 1) * self.seq_len]
    }
}

/// Runs `model` on `n = ids.len()` rows of `tokens` (row-major `[n, seq_len]`), in batches,
/// calling `progress(rows_done)` after each batch.
pub fn predict<B: Backend>(
    model: &Trm<B>,
    tokens: &[u8],
    ids: &[i32],
    opts: &PredictOptions,
    device: &B::Device,
    mut progress: impl FnMut(usize),
) -> Result<Predictions, ModelError> {
    let sizes = model.sizes();
    let (seq, vocab) = (sizes.seq_len, sizes.vocab_size);
    let n = ids.len();
    check_options(opts)?;
    if tokens.len() != n * seq {
        return Err(ModelError::Input(format!("{} tokens for {n} rows of {seq} cells", tokens.len())));
    }
    let halting = if opts.stop_when_all_halt { Halting::AllRows } else { Halting::Never };
    let mut out = Collect::new(n, seq, vocab, opts.keep_logits);
    for (start, end) in batches(n, opts.batch_size) {
        let toks: Vec<i32> = tokens[start * seq..end * seq].iter().map(|&t| t as i32).collect();
        let batch = make_batch::<B>(sizes, &toks, &ids[start..end], device)?;
        let mut run = ActRun::reference(Cow::Borrowed(model), &batch, opts.steps, halting);
        out.batch(&mut run, start)?;
        // A batch stops early as a whole.
        out.predictions.stopped_early_at[start..end].fill(run.all_halted_at());
        progress(end);
    }
    // Rows of a batch that stopped early keep their last answer for the remaining steps.
    Ok(out.finish(opts.steps))
}

/// [`predict`] for the size-general model on `rows x cols` mazes, the same way in batches of
/// `opts.batch_size`: `answers[s]` is every maze's answer after ACT step `s + 1` and
/// `stopped_early_at` the step where the maze halted (`q_halt > 0`).
///
/// With `opts.stop_when_all_halt` (how the model is used), a maze's answer is frozen from the
/// step where it halted, so the last step holds the answers the model gives, and a batch ends
/// when all its mazes have halted: the steps run are those of the slowest batch (at most
/// `opts.steps`). Without it every maze runs exactly `opts.steps` steps and `answers[s]` is
/// what the model says after step `s + 1`, halted or not (to score each step).
pub fn predict_local<B: Backend>(
    model: &LocalTrm<B>,
    tokens: &[u8],
    grid: GridShape,
    opts: &PredictOptions,
    device: &B::Device,
    mut progress: impl FnMut(usize),
) -> Result<Predictions, ModelError> {
    let cells = grid.cells();
    check_options(opts)?;
    if opts.keep_logits {
        return Err(ModelError::Input("the size-general model does not keep logits".into()));
    }
    if cells == 0 || tokens.len() % cells != 0 {
        return Err(ModelError::Input(format!("{} tokens are not whole {}x{} mazes", tokens.len(), grid.rows, grid.cols)));
    }
    let n = tokens.len() / cells;
    let halting = if opts.stop_when_all_halt { Halting::EachRow } else { Halting::Never };
    let mut out = Collect::new(n, cells, model.config().vocab_size, false);
    for (start, end) in batches(n, opts.batch_size) {
        let mut run = ActRun::local(Cow::Borrowed(model), &tokens[start * cells..end * cells], grid, opts.steps, halting, device)?;
        out.batch(&mut run, start)?;
        out.predictions.stopped_early_at[start..end].copy_from_slice(run.halted_at());
        progress(end);
    }
    // The steps run are the slowest batch's.
    Ok(out.predictions)
}

fn check_options(opts: &PredictOptions) -> Result<(), ModelError> {
    if opts.steps == 0 || opts.batch_size == 0 {
        return Err(ModelError::Input("steps and batch size must be at least 1".into()));
    }
    Ok(())
}

/// `(start, end)` of each batch of `size` rows out of `n`.
fn batches(n: usize, size: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(size).map(move |start| (start, (start + size).min(n)))
}

/// Predictions filled batch by batch, growing by a step whenever a batch runs one that no
/// earlier batch reached.
struct Collect {
    predictions: Predictions,
}

impl Collect {
    fn new(n: usize, seq_len: usize, vocab_size: usize, keep_logits: bool) -> Collect {
        let logits = keep_logits.then(Vec::new);
        Collect {
            predictions: Predictions { n, seq_len, vocab_size, answers: Vec::new(), q_halt: Vec::new(), logits, stopped_early_at: vec![None; n] },
        }
    }

    /// Runs `run` (rows `start..`) to its end, keeping every step; steps it did not run hold
    /// its last answer.
    fn batch<B: Backend>(&mut self, run: &mut ActRun<'_, B>, start: usize) -> Result<(), ModelError> {
        let Predictions { seq_len: seq, vocab_size: vocab, .. } = self.predictions;
        let end = start + run.rows();
        while let Some(step) = run.next()? {
            self.grow(step.step);
            let (p, s) = (&mut self.predictions, step.step - 1);
            p.answers[s][start * seq..end * seq].copy_from_slice(&step.answers);
            p.q_halt[s][start..end].copy_from_slice(&step.q_halt);
            if let Some(logits) = p.logits.as_mut() {
                // Kept only for the reference model, whose rows all run every step.
                let data = step.output.logits.to_data();
                for (d, v) in logits[s][start * seq * vocab..end * seq * vocab].iter_mut().zip(data.iter::<f32>()) {
                    *d = v;
                }
            }
        }
        let last = run.steps_run().max(1) - 1;
        let p = &mut self.predictions;
        for s in last + 1..p.answers.len() {
            let (done, rest) = p.answers.split_at_mut(s);
            rest[0][start * seq..end * seq].copy_from_slice(&done[last][start * seq..end * seq]);
            let (done, rest) = p.q_halt.split_at_mut(s);
            rest[0][start..end].copy_from_slice(&done[last][start..end]);
            if let Some(logits) = p.logits.as_mut() {
                let r = start * seq * vocab..end * seq * vocab;
                let (done, rest) = logits.split_at_mut(s);
                rest[0][r.clone()].copy_from_slice(&done[last][r]);
            }
        }
        Ok(())
    }

    /// Adds steps up to `steps`, each a copy of the last (rows of earlier batches keep their
    /// last answer), the first zeros.
    fn grow(&mut self, steps: usize) {
        let p = &mut self.predictions;
        let (cells, rows, logit_len) = (p.n * p.seq_len, p.n, p.n * p.seq_len * p.vocab_size);
        while p.answers.len() < steps {
            p.answers.push(p.answers.last().cloned().unwrap_or_else(|| vec![0; cells]));
            p.q_halt.push(p.q_halt.last().cloned().unwrap_or_else(|| vec![0.0; rows]));
            if let Some(logits) = p.logits.as_mut() {
                logits.push(logits.last().cloned().unwrap_or_else(|| vec![0.0; logit_len]));
            }
        }
    }

    /// The predictions with exactly `steps` steps.
    fn finish(mut self, steps: usize) -> Predictions {
        self.grow(steps);
        self.predictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cpu, RandomInit, TrmConfig};

    #[test]
    fn batches_give_the_same_answers_as_one_pass() {
        let cfg = TrmConfig { h_cycles: 1, halt_max_steps: 16, ..TrmConfig::tiny(9, 1) };
        let model = Trm::<Cpu>::build(&cfg, &mut RandomInit::new(5), &Default::default()).unwrap();
        let tokens: Vec<u8> = (0..5 * 9).map(|i| 1 + (i * 7 % 5) as u8).collect();
        let ids = vec![0; 5];
        let opts = |batch_size| PredictOptions { steps: 3, batch_size, stop_when_all_halt: false, keep_logits: true };
        let mut calls = Vec::new();
        let a = predict(&model, &tokens, &ids, &opts(2), &Default::default(), |d| calls.push(d)).unwrap();
        let b = predict(&model, &tokens, &ids, &opts(5), &Default::default(), |_| {}).unwrap();
        assert_eq!(calls, vec![2, 4, 5]);
        assert_eq!(a.answers, b.answers);
        assert_eq!(a.final_answer(4).len(), 9);
        let la = a.logits.unwrap();
        let lb = b.logits.unwrap();
        for (x, y) in la.iter().flatten().zip(lb.iter().flatten()) {
            assert!((x - y).abs() < 1e-4);
        }
    }
}
