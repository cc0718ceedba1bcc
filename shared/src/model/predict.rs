//! Batched inference over many mazes, collecting the answer after every ACT step.

use burn::prelude::*;

use super::act::{make_batch, run_inference};
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
    if opts.steps == 0 || opts.batch_size == 0 {
        return Err(ModelError::Input("steps and batch size must be at least 1".into()));
    }
    if tokens.len() != n * seq {
        return Err(ModelError::Input(format!("{} tokens for {n} rows of {seq} cells", tokens.len())));
    }
    let mut out = Predictions {
        n,
        seq_len: seq,
        vocab_size: vocab,
        answers: vec![vec![0; n * seq]; opts.steps],
        q_halt: vec![vec![0.0; n]; opts.steps],
        logits: opts.keep_logits.then(|| vec![vec![0.0; n * seq * vocab]; opts.steps]),
        stopped_early_at: vec![None; n],
    };
    let mut start = 0;
    while start < n {
        let end = (start + opts.batch_size).min(n);
        let rows = end - start;
        let toks: Vec<i32> = tokens[start * seq..end * seq].iter().map(|&t| t as i32).collect();
        let batch = make_batch::<B>(sizes, &toks, &ids[start..end], device)?;
        let mut last = 0;
        let result = run_inference(model, &batch, opts.steps, opts.stop_when_all_halt, |step, o| {
            last = step;
            let argmax = o.logits.clone().argmax(2).into_data();
            for (k, v) in argmax.iter::<i64>().enumerate() {
                out.answers[step][start * seq + k] = v as u8;
            }
            for (k, v) in o.q_halt.to_data().iter::<f32>().enumerate() {
                out.q_halt[step][start + k] = v;
            }
            if let Some(logits) = out.logits.as_mut() {
                let data = o.logits.to_data();
                let dst = &mut logits[step][start * seq * vocab..end * seq * vocab];
                for (d, v) in dst.iter_mut().zip(data.iter::<f32>()) {
                    *d = v;
                }
            }
            Ok(())
        })?;
        // Rows of a batch that stopped early keep their last answer for the remaining steps.
        for step in last + 1..opts.steps {
            let (done, rest) = out.answers.split_at_mut(step);
            rest[0][start * seq..end * seq].copy_from_slice(&done[last][start * seq..end * seq]);
            let (done, rest) = out.q_halt.split_at_mut(step);
            rest[0][start..end].copy_from_slice(&done[last][start..end]);
            if let Some(logits) = out.logits.as_mut() {
                let r = start * seq * vocab..end * seq * vocab;
                let (done, rest) = logits.split_at_mut(step);
                rest[0][r.clone()].copy_from_slice(&done[last][r]);
            }
        }
        for s in &mut out.stopped_early_at[start..end] {
            *s = result.stopped_early_at;
        }
        debug_assert_eq!(rows, end - start);
        start = end;
        progress(end);
    }
    Ok(out)
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
