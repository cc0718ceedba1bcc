//! The recursion one ACT step at a time, exactly as `trm predict` runs it (fresh carry, the
//! same inputs every step, puzzle id 0), on any backend: WebGPU on the page, Flex in the
//! CPU worker. Each step's answer is read back asynchronously (WebGPU has no synchronous
//! reads), so that its caller decides what happens between steps.

use burn::prelude::*;
use trm_shared::model::act::{ActBatch, make_batch};
use trm_shared::model::{InnerCarry, Trm};

use crate::analysis::StepAnswer;

/// One maze in flight through the model.
pub struct ActSteps<B: Backend> {
    model: Trm<B>,
    batch: ActBatch<B>,
    carry: Option<InnerCarry<B>>,
    done: usize,
}

impl<B: Backend> ActSteps<B> {
    /// Starts `model` on the maze `tokens` (row-major; checked against the model).
    pub fn new(model: Trm<B>, tokens: &[u8], device: &B::Device) -> Result<ActSteps<B>, String> {
        let ids: Vec<i32> = tokens.iter().map(|&t| i32::from(t)).collect();
        let batch = make_batch::<B>(model.config(), &ids, &[0], device).map_err(|e| e.to_string())?;
        let carry = Some(model.initial_carry(1));
        Ok(ActSteps { model, batch, carry, done: 0 })
    }

    /// Runs the next ACT step and reads its answer.
    pub async fn next(&mut self) -> Result<StepAnswer, String> {
        let carry = self.carry.take().ok_or("a previous step failed: start again")?;
        let (next, out) = self.model.forward(carry, self.batch.inputs.clone(), self.batch.puzzle_identifiers.clone());
        let answer = out.logits.argmax(2).into_data_async().await.map_err(|e| format!("reading the answer: {e:?}"))?;
        let q = out.q_halt.into_data_async().await.map_err(|e| format!("reading q_halt: {e:?}"))?;
        self.carry = Some(next);
        self.done += 1;
        let tokens = answer.iter::<i64>().map(|v| u8::try_from(v).unwrap_or(0)).collect();
        let q_halt = q.iter::<f32>().next().unwrap_or(f32::NAN);
        Ok(StepAnswer { step: self.done, tokens, q_halt })
    }
}
