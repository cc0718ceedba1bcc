//! The size-general TRM: the paper's recursion with a **local 2D mixer** in place of attention,
//! so that one set of weights runs a maze of any height and width.
//!
//! What ties the reference model to one size is its token mixer (global attention with 1D
//! rotary positions over the flattened grid) and its puzzle-embedding prefix. Here each block
//! mixes a cell only with its four neighbours (a learned "plus-shaped" convolution: one linear
//! map of the cell and its down, left, right and up neighbours), there is no prefix and no
//! position, and the halting Q value is the maximum of a per-cell score. Everything else is
//! TRM: post-norm blocks with a SwiGLU MLP, the input re-injected at every latent update,
//! deep supervision over detached carries, the same `H_init`/`L_init` starting states.
//!
//! ```text
//! deep_recursion (one ACT step):
//!     repeat H_cycles times (all but the last without gradient):
//!         latent_recursion:
//!             repeat L_cycles times:  z ← net(z, y + x)     // think
//!             y ← net(y, z)                                 // answer
//! ```
//!
//! Every application of `net` can move information one cell, so an ACT step is
//! `H_cycles · (L_cycles + 1)` *ticks* of a cellular process; training teaches each tick to be
//! one update of the label rule ([`crate::maze::wave`]), and a bigger maze simply takes more
//! ACT steps. Shapes: `B` batch, `S = rows · cols` cells (row-major), `D` hidden size.

use std::borrow::Cow;

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::module::embedding;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::checkpoint::StateDict;
use super::steps::{ActRun, Halting};
use super::ops::rms_norm;
use super::trm::{CastedLinear, InnerCarry, SwiGlu};
use super::weights::{Export, Init, NamedParam, NamedParams, WeightSource, Weights};

/// The value of `[arch] mixer` that selects this model family.
pub const LOCAL_MIXER: &str = "local";
/// Largest maze side the model accepts (the editor's range is up to 64).
pub const MAX_SIDE: usize = 256;
/// Outputs of the auxiliary head per cell: reached (1) and the choice (5 classes).
pub const WAVE_OUTPUTS: usize = 1 + crate::maze::wave::dir::COUNT;

/// The architecture of the size-general model (the `[arch]` table of its `config.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// Must be `"local"`: names the model family.
    pub mixer: String,
    /// Width of every hidden state (`D`).
    pub hidden_size: usize,
    /// SwiGLU inner width is `round(expansion · D)` (no rounding up to 256: the model is small).
    pub expansion: f64,
    /// Blocks in the one network `net`.
    #[serde(rename = "L_layers")]
    pub l_layers: usize,
    /// Outer recursions per ACT step (the last one with gradient).
    #[serde(rename = "H_cycles")]
    pub h_cycles: usize,
    /// z updates per outer recursion.
    #[serde(rename = "L_cycles")]
    pub l_cycles: usize,
    /// Default cap on ACT steps at inference; the model halts earlier when its Q head says so.
    pub halt_max_steps: usize,
    /// Epsilon of the weightless RMSNorm.
    pub rms_norm_eps: f64,
    /// Token ids (6 for mazes: PAD, wall, open, S, G, path).
    pub vocab_size: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            mixer: LOCAL_MIXER.into(),
            hidden_size: 32,
            expansion: 4.0,
            l_layers: 2,
            h_cycles: 1,
            l_cycles: 7,
            halt_max_steps: 256,
            rms_norm_eps: 1e-5,
            vocab_size: crate::maze::VOCAB_SIZE,
        }
    }
}

impl LocalConfig {
    /// Reads the `[arch]` table of a TOML config (other tables are the trainer's).
    pub fn from_toml_str(text: &str) -> Result<LocalConfig, ModelError> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| ModelError::Config(format!("invalid TOML: {e}")))?;
        let arch = match doc.get("arch") {
            Some(toml::Value::Table(t)) => t.clone(),
            _ => return Err(ModelError::Config("no [arch] table".into())),
        };
        let cfg: LocalConfig = arch.try_into().map_err(|e| ModelError::Config(format!("invalid [arch]: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Whether a TOML text describes this model family (`[arch] mixer = "local"`).
    pub fn is_local_toml(text: &str) -> bool {
        toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|d| d.get("arch")?.get("mixer")?.as_str().map(|m| m == LOCAL_MIXER))
            .unwrap_or(false)
    }

    /// This config as an `[arch]` table.
    pub fn to_toml_string(&self) -> Result<String, ModelError> {
        let mut doc = toml::Table::new();
        doc.insert("arch".into(), toml::Value::try_from(self).map_err(|e| ModelError::Config(e.to_string()))?);
        toml::to_string(&doc).map_err(|e| ModelError::Config(e.to_string()))
    }

    /// Checks every field against sane bounds, so that a crafted file cannot ask for a huge model.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.mixer != LOCAL_MIXER {
            return bad(format!("mixer must be {LOCAL_MIXER:?}, found {:?}", self.mixer));
        }
        for (name, v, max) in [
            ("hidden_size", self.hidden_size, 1024),
            ("L_layers", self.l_layers, 16),
            ("H_cycles", self.h_cycles, 16),
            ("L_cycles", self.l_cycles, 64),
            ("halt_max_steps", self.halt_max_steps, 100_000),
        ] {
            if v == 0 || v > max {
                return bad(format!("{name} must be in 1..={max}, found {v}"));
            }
        }
        if !(self.expansion > 0.0 && self.expansion <= 16.0) {
            return bad(format!("expansion must be in (0, 16], found {}", self.expansion));
        }
        if !(self.rms_norm_eps >= 0.0 && self.rms_norm_eps < 1.0) {
            return bad(format!("rms_norm_eps must be in [0, 1), found {}", self.rms_norm_eps));
        }
        if self.vocab_size != crate::maze::VOCAB_SIZE {
            return bad(format!("vocab_size must be {} (the maze tokens), found {}", crate::maze::VOCAB_SIZE, self.vocab_size));
        }
        Ok(())
    }

    /// Inner width of the SwiGLU.
    pub fn inner(&self) -> usize {
        ((self.expansion * self.hidden_size as f64).round() as usize).max(1)
    }

    /// Ticks (applications of `net`) per ACT step.
    pub fn ticks_per_step(&self) -> usize {
        self.h_cycles * (self.l_cycles + 1)
    }

    /// ACT steps that cover `ticks` ticks.
    pub fn steps_for_ticks(&self, ticks: usize) -> usize {
        ticks.div_ceil(self.ticks_per_step()).max(1)
    }
}

/// The grid a batch lives on: every row of the batch is a `rows x cols` canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridShape {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl GridShape {
    /// Cells.
    pub fn cells(&self) -> usize {
        self.rows * self.cols
    }
}

/// `out[i] = t[i + offset]` along `axis` (offset ±1), zero where that falls off the grid.
fn shifted<B: Backend>(t: Tensor<B, 4>, axis: usize, offset: isize) -> Tensor<B, 4> {
    let dims = t.dims();
    let n = dims[axis];
    if n <= 1 {
        return t.zeros_like();
    }
    let mut edge = dims;
    edge[axis] = 1;
    let zeros = Tensor::<B, 4>::zeros(edge, &t.device());
    if offset > 0 {
        Tensor::cat(vec![t.narrow(axis, 1, n - 1), zeros], axis)
    } else {
        Tensor::cat(vec![zeros, t.narrow(axis, 0, n - 1)], axis)
    }
}

/// The local mixer: `out(c) = Σ_k W_k · h(neighbour_k(c))` over the cell itself and its
/// down, left, right and up neighbours (zero beyond the grid), as one `[D, 5D]` projection
/// whose five output chunks are shifted into place.
#[derive(Module, Debug)]
pub struct LocalMix<B: Backend> {
    /// `[D, 5·D]`; output chunks: self, from below, from the left, from the right, from above.
    pub proj: CastedLinear<B>,
}

impl<B: Backend> LocalMix<B> {
    /// The mixer of `d` features.
    pub fn take(mut w: Weights<'_, B>, d: usize) -> Result<LocalMix<B>, ModelError> {
        Ok(LocalMix { proj: CastedLinear::take(w.pp("proj"), 5 * d, d, Init::lecun(5 * d), None)? })
    }

    /// The names [`LocalMix::take`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        self.proj.export(out.pp("proj"));
    }

    /// `h: [B, S, D]` on `grid` → `[B, S, D]`.
    pub fn forward(&self, h: Tensor<B, 3>, grid: GridShape) -> Tensor<B, 3> {
        let [batch, cells, d] = h.dims();
        let y = self.proj.forward(h).reshape([batch, grid.rows, grid.cols, 5 * d]);
        let part = |k: usize| y.clone().narrow(3, k * d, d);
        let out = part(0)
            + shifted(part(1), 1, 1) // the cell below (row + 1)
            + shifted(part(2), 2, -1) // the cell to the left (col - 1)
            + shifted(part(3), 2, 1) // the cell to the right (col + 1)
            + shifted(part(4), 1, -1); // the cell above (row - 1)
        out.reshape([batch, cells, d])
    }
}

/// One post-norm block: local mixing, then the channel MLP.
#[derive(Module, Debug)]
pub struct LocalBlock<B: Backend> {
    /// Mixing with the four neighbours.
    pub mix: LocalMix<B>,
    /// Channel MLP.
    pub mlp: SwiGlu<B>,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
}

impl<B: Backend> LocalBlock<B> {
    /// One block of `config`'s network.
    pub fn take(mut w: Weights<'_, B>, config: &LocalConfig) -> Result<LocalBlock<B>, ModelError> {
        Ok(LocalBlock {
            mix: LocalMix::take(w.pp("mix"), config.hidden_size)?,
            mlp: SwiGlu::take(w.pp("mlp"), config.hidden_size, config.inner())?,
            norm_eps: config.rms_norm_eps,
        })
    }

    /// The names [`LocalBlock::take`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        self.mix.export(out.pp("mix"));
        self.mlp.export(out.pp("mlp"));
    }

    /// `h = rms(h + mix(h)); h = rms(h + mlp(h))`, then cells outside the maze back to zero.
    pub fn forward(&self, h: Tensor<B, 3>, grid: GridShape, mask: Option<&Tensor<B, 3>>) -> Tensor<B, 3> {
        let h = rms_norm(h.clone() + self.mix.forward(h, grid), self.norm_eps);
        let h = rms_norm(h.clone() + self.mlp.forward(h), self.norm_eps);
        match mask {
            Some(m) => h * m.clone(),
            None => h,
        }
    }
}

/// What one ACT step hands out.
#[derive(Debug, Clone)]
pub struct LocalStep<B: Backend> {
    /// `[B, S, V]` token logits from y.
    pub logits: Tensor<B, 3>,
    /// `[B]`: halt when > 0.
    pub q_halt: Tensor<B, 1>,
    /// The state after each tick of the last (gradient) recursion round, oldest first, when
    /// asked for (training reads them out with [`LocalTrm::readout`]).
    pub ticks: Vec<Tensor<B, 3>>,
}

/// The size-general TRM network.
#[derive(Module, Debug)]
pub struct LocalTrm<B: Backend> {
    /// `[V, D]` token embedding.
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// `[D, V]` answer head.
    pub lm_head: CastedLinear<B>,
    /// `[D, 6]` + bias: the auxiliary head (reached, choice) that training supervises.
    pub wave_head: CastedLinear<B>,
    /// `[D, 1]` + bias: per-cell halting score; the Q value is its maximum over the cells.
    pub q_head: CastedLinear<B>,
    /// The blocks of the one network `net`.
    pub layers: Vec<LocalBlock<B>>,
    /// `[D]` initial answer state.
    pub h_init: Param<Tensor<B, 1>>,
    /// `[D]` initial latent state.
    pub l_init: Param<Tensor<B, 1>>,
    /// The configuration.
    #[module(skip)]
    pub config: LocalConfig,
}

impl<B: Backend> LocalTrm<B> {
    /// Builds the network, taking every tensor (by its checkpoint name, `[out, in]` layout for
    /// linears) from `src`: random initialisation and loading share this one list of names.
    pub fn build(config: &LocalConfig, src: &mut dyn WeightSource, device: &B::Device) -> Result<LocalTrm<B>, ModelError> {
        config.validate()?;
        let (d, v) = (config.hidden_size, config.vocab_size);
        let mut w = Weights::new(src, device);
        let embed_tokens = w.pp("embed_tokens").matrix("embedding_weight", [v, d], Init::lecun(d))?;
        let lm_head = CastedLinear::take(w.pp("lm_head"), v, d, Init::lecun(d), None)?;
        let wave_head = CastedLinear::take(w.pp("wave_head"), WAVE_OUTPUTS, d, Init::lecun(d), Some(Init::Zeros))?;
        // As the reference's Q head: W = 0, b = -5 ("almost zero" halting at first).
        let q_head = CastedLinear::take(w.pp("q_head"), 1, d, Init::Zeros, Some(Init::Constant(-5.0)))?;
        // The blocks keep the reference's `L_level.layers.{i}` names.
        let mut layers_w = w.pp("L_level.layers");
        let layers = (0..config.l_layers).map(|i| LocalBlock::take(layers_w.pp(i), config)).collect::<Result<_, _>>()?;
        let h_init = w.vector("H_init", d, Init::TruncNormal(1.0))?;
        let l_init = w.vector("L_init", d, Init::TruncNormal(1.0))?;
        Ok(LocalTrm { embed_tokens, lm_head, wave_head, q_head, layers, h_init, l_init, config: config.clone() })
    }

    /// The names [`LocalTrm::build`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        out.pp("embed_tokens").matrix("embedding_weight", &self.embed_tokens);
        self.lm_head.export(out.pp("lm_head"));
        self.wave_head.export(out.pp("wave_head"));
        self.q_head.export(out.pp("q_head"));
        let mut layers_out = out.pp("L_level.layers");
        for (i, layer) in self.layers.iter().enumerate() {
            layer.export(layers_out.pp(i));
        }
        out.vector("H_init", &self.h_init);
        out.vector("L_init", &self.l_init);
    }

    /// Every tensor by checkpoint name, in the layouts [`LocalTrm::build`] takes them.
    pub fn to_state_dict(&self) -> StateDict {
        StateDict::from_params(&self.named_params())
    }

    /// Builds the network from a state dict, listing every missing, unexpected or misshaped tensor.
    pub fn from_state_dict(config: &LocalConfig, sd: &StateDict, device: &B::Device) -> Result<LocalTrm<B>, ModelError> {
        let mut src = super::checkpoint::StateDictSource::new(sd);
        let model = LocalTrm::build(config, &mut src, device)?;
        src.finish()?;
        Ok(model)
    }

    /// Loads `model.safetensors`-style bytes.
    pub fn from_safetensors_bytes(config: &LocalConfig, bytes: &[u8], source_name: &str, device: &B::Device) -> Result<LocalTrm<B>, ModelError> {
        let sd = StateDict::from_safetensors_bytes(bytes, source_name)?;
        LocalTrm::from_state_dict(config, &sd, device)
    }

    /// The weights as safetensors bytes.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelError> {
        self.to_state_dict().to_safetensors_bytes("", &[])
    }

    /// The configuration.
    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// `net(hidden, injection)`: add the injection, run the blocks.
    fn net(&self, hidden: Tensor<B, 3>, injection: Tensor<B, 3>, grid: GridShape, mask: Option<&Tensor<B, 3>>) -> Tensor<B, 3> {
        let mut h = hidden + injection;
        for layer in &self.layers {
            h = layer.forward(h, grid, mask);
        }
        h
    }

    /// `x`: the embedded maze `[B, S, D]`, scaled by √D (as the reference), zero outside the maze.
    /// `inputs: [B, S]` tokens; `mask: [B, S, 1]` 1 on the maze's cells, 0 on padding.
    pub fn input_embeddings(&self, inputs: Tensor<B, 2, Int>, mask: Option<&Tensor<B, 3>>) -> Tensor<B, 3> {
        let x = embedding(self.embed_tokens.val(), inputs).mul_scalar((self.config.hidden_size as f64).sqrt());
        match mask {
            Some(m) => x * m.clone(),
            None => x,
        }
    }

    /// `H_init` / `L_init` at every cell of `batch` rows of `cells` cells.
    pub fn initial_carry(&self, batch: usize, cells: usize, mask: Option<&Tensor<B, 3>>) -> InnerCarry<B> {
        let d = self.config.hidden_size;
        let fill = |v: &Param<Tensor<B, 1>>| {
            let t = v.val().reshape([1, 1, d]).expand([batch, cells, d]);
            match mask {
                Some(m) => t * m.clone(),
                None => t,
            }
        };
        InnerCarry { z_h: fill(&self.h_init), z_l: fill(&self.l_init) }
    }

    /// The carry with the rows where `reset` holds back at the initial state.
    pub fn reset_rows(&self, carry: InnerCarry<B>, reset: Tensor<B, 1, Bool>, mask: Option<&Tensor<B, 3>>) -> InnerCarry<B> {
        let [batch, cells, d] = carry.z_h.dims();
        let fresh = self.initial_carry(batch, cells, mask);
        let rows = reset.reshape([batch, 1, 1]).expand([batch, cells, d]);
        InnerCarry { z_h: carry.z_h.mask_where(rows.clone(), fresh.z_h), z_l: carry.z_l.mask_where(rows, fresh.z_l) }
    }

    /// The paper's `latent_recursion`: `L_cycles` thinking updates of z, then one answer
    /// update of y. With `ticks`, each new state is kept (the trainer supervises every tick).
    fn latent_recursion(
        &self,
        x: &Tensor<B, 3>,
        mut y: Tensor<B, 3>,
        mut z: Tensor<B, 3>,
        grid: GridShape,
        mask: Option<&Tensor<B, 3>>,
        mut ticks: Option<&mut Vec<Tensor<B, 3>>>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        for _ in 0..self.config.l_cycles {
            z = self.net(z, y.clone() + x.clone(), grid, mask);
            if let Some(t) = ticks.as_deref_mut() {
                t.push(z.clone());
            }
        }
        y = self.net(y, z.clone(), grid, mask);
        if let Some(t) = ticks {
            t.push(y.clone());
        }
        (y, z)
    }

    /// The paper's `deep_recursion`: `H_cycles` latent recursions, all but the last cut off
    /// from the gradient.
    fn deep_recursion(
        &self,
        carry: InnerCarry<B>,
        x: &Tensor<B, 3>,
        grid: GridShape,
        mask: Option<&Tensor<B, 3>>,
        ticks: Option<&mut Vec<Tensor<B, 3>>>,
    ) -> InnerCarry<B> {
        let InnerCarry { z_h: mut y, z_l: mut z } = carry;
        for _ in 1..self.config.h_cycles {
            (y, z) = self.latent_recursion(x, y, z, grid, mask, None);
            (y, z) = (y.detach(), z.detach());
        }
        (y, z) = self.latent_recursion(x, y, z, grid, mask, ticks);
        InnerCarry { z_h: y, z_l: z }
    }

    /// Token logits `[B, S, V]` and auxiliary outputs `[B, S, 6]` of a state.
    pub fn readout(&self, state: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        (self.lm_head.forward(state.clone()), self.wave_head.forward(state))
    }

    /// The halting Q value `[B]`: the largest per-cell score over the maze's cells.
    pub fn q_halt(&self, y: Tensor<B, 3>, mask: Option<&Tensor<B, 3>>) -> Tensor<B, 1> {
        let [batch, cells, _] = y.dims();
        let score = self.q_head.forward(y);
        let score = match mask {
            Some(m) => score.mask_fill(m.clone().equal_elem(0.0), -1e4),
            None => score,
        };
        score.reshape([batch, cells]).max_dim(1).reshape([batch])
    }

    /// One ACT step from `carry` on the embedded maze `x`. The returned carry is detached.
    pub fn step(
        &self,
        carry: InnerCarry<B>,
        x: &Tensor<B, 3>,
        grid: GridShape,
        mask: Option<&Tensor<B, 3>>,
        keep_ticks: bool,
    ) -> (InnerCarry<B>, LocalStep<B>) {
        let mut ticks = Vec::new();
        let carry = self.deep_recursion(carry, x, grid, mask, keep_ticks.then_some(&mut ticks));
        let logits = self.lm_head.forward(carry.z_h.clone());
        let q_halt = self.q_halt(carry.z_h.clone(), mask);
        (InnerCarry { z_h: carry.z_h.detach(), z_l: carry.z_l.detach() }, LocalStep { logits, q_halt, ticks })
    }
}

impl<B: Backend> NamedParams<B> for LocalTrm<B> {
    fn named_params(&self) -> Vec<NamedParam<B>> {
        Export::collect(|out| self.export(out))
    }
}

/// Answers of a batch of same-size mazes, step by step, as the model halts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalAnswers {
    /// Per maze, the answer tokens (row-major) at the ACT step where it halted (or the last).
    pub answers: Vec<Vec<u8>>,
    /// Per maze, the 1-based ACT step at which it halted; `None` when it ran to the cap.
    pub halted_at: Vec<Option<usize>>,
    /// Per maze, the final Q value.
    pub q_halt: Vec<f32>,
    /// ACT steps run for the batch.
    pub steps_run: usize,
}

/// Solves a batch of `rows x cols` mazes (`tokens`: row-major, `n · rows · cols` of them):
/// ACT steps until every maze's Q head says halt, at most `max_steps`. `on_step(step, answers,
/// q)` sees every step's argmax answers (all mazes, row-major) and Q values, to show the
/// answer unfolding or to score each step; it returns false to stop early.
pub fn solve<B: Backend>(
    model: &LocalTrm<B>,
    tokens: &[u8],
    grid: GridShape,
    max_steps: usize,
    device: &B::Device,
    on_step: impl FnMut(usize, &[u8], &[f32]) -> bool,
) -> Result<LocalAnswers, ModelError> {
    run_steps(model, tokens, grid, max_steps, true, device, on_step)
}

/// [`solve`], where `stop_at_halt = false` runs all `max_steps` steps even after every maze
/// has halted (to score the answers after each step, as `trm eval` does); `halted_at` is then
/// each maze's first step with `q_halt > 0` and `answers` those of that step. A thin use of
/// [`ActRun`].
pub fn run_steps<B: Backend>(
    model: &LocalTrm<B>,
    tokens: &[u8],
    grid: GridShape,
    max_steps: usize,
    stop_at_halt: bool,
    device: &B::Device,
    mut on_step: impl FnMut(usize, &[u8], &[f32]) -> bool,
) -> Result<LocalAnswers, ModelError> {
    let halting = if stop_at_halt { Halting::EachRow } else { Halting::Never };
    let mut run = ActRun::local(Cow::Borrowed(model), tokens, grid, max_steps.max(1), halting, device)?;
    let (n, cells) = (run.rows(), grid.cells());
    let mut out = LocalAnswers { answers: vec![Vec::new(); n], halted_at: vec![None; n], q_halt: vec![0.0; n], steps_run: 0 };
    while let Some(step) = run.next()? {
        out.steps_run = step.step;
        for i in 0..n {
            // A maze's answer is the one of the step where it first halted.
            if out.halted_at[i].is_none() {
                out.answers[i] = step.answers[i * cells..(i + 1) * cells].to_vec();
                out.q_halt[i] = step.q_halt[i];
                out.halted_at[i] = run.halted_at()[i];
            }
        }
        if !on_step(step.step, &step.answers, &step.q_halt) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::predict_local;
    use crate::model::{Cpu, RandomInit};

    fn tiny() -> LocalConfig {
        LocalConfig { hidden_size: 8, expansion: 2.0, l_layers: 1, h_cycles: 2, l_cycles: 1, ..LocalConfig::default() }
    }

    #[test]
    fn one_set_of_weights_runs_any_grid_size() {
        let device = Default::default();
        let model = LocalTrm::<Cpu>::build(&tiny(), &mut RandomInit::new(1), &device).unwrap();
        for (rows, cols) in [(5, 5), (40, 40), (3, 17), (1, 1)] {
            let grid = GridShape { rows, cols };
            let tokens: Vec<u8> = (0..2 * rows * cols).map(|i| (1 + i % 4) as u8).collect();
            let answers = solve(&model, &tokens, grid, 3, &device, |_, a, q| {
                assert_eq!((a.len(), q.len()), (2 * rows * cols, 2));
                true
            })
            .unwrap();
            assert_eq!(answers.answers.len(), 2);
            assert!(answers.answers.iter().all(|a| a.len() == rows * cols));
            // The fresh Q head says -5 everywhere: nothing halts before the cap.
            assert_eq!(answers.steps_run, 3);
            assert!(answers.halted_at.iter().all(Option::is_none));
        }
    }

    #[test]
    fn mazes_that_halted_leave_the_batch_and_the_answers_stay_the_same() {
        // The committed model on generated 12x12 mazes, which it halts at different steps.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../public/models/default");
        let cfg = LocalConfig::from_toml_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
        let device = Default::default();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let model = LocalTrm::<Cpu>::from_safetensors_bytes(&cfg, &bytes, "default", &device).unwrap();
        let settings = crate::generate::GenerateConfig { rows: 12, cols: 12, seed: 5, ..Default::default() };
        let mazes = crate::generate::generate_splits(&settings, &[6], &mut |_| {}).unwrap().remove(0);
        let grid = GridShape { rows: 12, cols: 12 };
        let tokens: Vec<u8> = mazes.iter().flat_map(|m| m.puzzle.tokens()).collect();
        let mut seen = Vec::new();
        let batch = solve(&model, &tokens, grid, 40, &device, |step, a, q| {
            seen.push((step, a.len(), q.len()));
            true
        })
        .unwrap();
        assert!(seen.iter().all(|&(_, a, q)| (a, q) == (6 * 144, 6)), "on_step sees every maze at every step");
        for (k, maze) in mazes.iter().enumerate() {
            let alone = solve(&model, &maze.puzzle.tokens(), grid, 40, &device, |_, _, _| true).unwrap();
            assert_eq!(batch.answers[k], alone.answers[0], "maze {k}");
            assert_eq!(batch.halted_at[k], alone.halted_at[0], "maze {k}");
            assert!((batch.q_halt[k] - alone.q_halt[0]).abs() < 1e-4, "maze {k}");
        }
        let mut steps: Vec<_> = batch.halted_at.iter().flatten().collect();
        steps.sort();
        steps.dedup();
        assert!(steps.len() >= 2 || batch.halted_at.iter().any(Option::is_none), "the batch shrank along the way: {:?}", batch.halted_at);
    }

    #[test]
    fn the_mixer_sees_exactly_the_four_neighbours() {
        // A change at one cell reaches its four neighbours after one block, and no further.
        let device = Default::default();
        let cfg = LocalConfig { l_layers: 1, ..tiny() };
        let model = LocalTrm::<Cpu>::build(&cfg, &mut RandomInit::new(2), &device).unwrap();
        let grid = GridShape { rows: 7, cols: 6 };
        let run = |tokens: Vec<i32>| {
            let inputs = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(tokens, [1, 42]), &device);
            let x = model.input_embeddings(inputs, None);
            let h = model.layers[0].forward(x, grid, None);
            h.into_data().convert::<f32>().to_vec::<f32>().unwrap()
        };
        let base = vec![2i32; 42];
        let mut changed = base.clone();
        changed[3 * 6 + 2] = 1;
        let (a, b) = (run(base), run(changed));
        for cell in 0..42 {
            let (r, c) = (cell / 6, cell % 6);
            let near = (r as isize - 3).abs() + (c as isize - 2).abs() <= 1;
            let differs = (0..8).any(|k| (a[cell * 8 + k] - b[cell * 8 + k]).abs() > 1e-6);
            assert_eq!(differs, near, "cell ({r}, {c})");
        }
    }

    #[test]
    fn padding_is_exactly_the_outside_of_the_grid() {
        // A 4x5 maze on a 6x7 canvas with a mask gives the same states as on its own grid.
        let device = Default::default();
        let model = LocalTrm::<Cpu>::build(&tiny(), &mut RandomInit::new(3), &device).unwrap();
        let maze: Vec<i32> = (0..20).map(|i| [1, 2, 2, 3, 2, 4][i % 6]).collect();
        let alone = {
            let inputs = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(maze.clone(), [1, 20]), &device);
            let x = model.input_embeddings(inputs, None);
            let (_, out) = model.step(model.initial_carry(1, 20, None), &x, GridShape { rows: 4, cols: 5 }, None, false);
            out.logits.into_data().convert::<f32>().to_vec::<f32>().unwrap()
        };
        let mut canvas = vec![0i32; 42];
        let mut mask = vec![0.0f32; 42];
        for r in 0..4 {
            for c in 0..5 {
                canvas[r * 7 + c] = maze[r * 5 + c];
                mask[r * 7 + c] = 1.0;
            }
        }
        let inputs = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(canvas, [1, 42]), &device);
        let mask = Tensor::<Cpu, 3>::from_data(TensorData::new(mask, [1, 42, 1]), &device);
        let x = model.input_embeddings(inputs, Some(&mask));
        let carry = model.initial_carry(1, 42, Some(&mask));
        let (_, out) = model.step(carry, &x, GridShape { rows: 6, cols: 7 }, Some(&mask), false);
        let padded = out.logits.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        for r in 0..4 {
            for c in 0..5 {
                for k in 0..6 {
                    let (p, q) = (padded[(r * 7 + c) * 6 + k], alone[(r * 5 + c) * 6 + k]);
                    assert!((p - q).abs() < 1e-4, "({r}, {c}) {p} vs {q}");
                }
            }
        }
    }

    #[test]
    fn weights_round_trip_through_safetensors() {
        let device = Default::default();
        let model = LocalTrm::<Cpu>::build(&tiny(), &mut RandomInit::new(4), &device).unwrap();
        let bytes = model.to_safetensors_bytes().unwrap();
        let back = LocalTrm::<Cpu>::from_safetensors_bytes(&tiny(), &bytes, "test", &device).unwrap();
        assert_eq!(back.to_state_dict(), model.to_state_dict());
        let wider = LocalConfig { hidden_size: 16, ..tiny() };
        let err = LocalTrm::<Cpu>::from_safetensors_bytes(&wider, &bytes, "test", &device).unwrap_err().to_string();
        assert!(err.contains("embed_tokens"), "{err}");
    }

    #[test]
    fn batched_predictions_freeze_each_maze_at_its_halt() {
        let device = Default::default();
        let mut model = LocalTrm::<Cpu>::build(&tiny(), &mut RandomInit::new(5), &device).unwrap();
        let grid = GridShape { rows: 4, cols: 4 };
        let tokens: Vec<u8> = (0..5 * 16).map(|i| (1 + (i * 7) % 4) as u8).collect();
        let opts = |batch_size| crate::model::PredictOptions { steps: 4, batch_size, stop_when_all_halt: true, keep_logits: false };
        let one = predict_local(&model, &tokens, grid, &opts(5), &device, |_| {}).unwrap();
        let split = predict_local(&model, &tokens, grid, &opts(2), &device, |_| {}).unwrap();
        assert_eq!(one.answers, split.answers);
        assert_eq!(one.answers.len(), 4);
        assert!(one.stopped_early_at.iter().all(Option::is_none));
        // A Q head that says "halt" everywhere: one step, frozen there.
        model.q_head.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![5.0f32], [1]), &device)));
        let halted = predict_local(&model, &tokens, grid, &opts(2), &device, |_| {}).unwrap();
        assert_eq!(halted.answers.len(), 1);
        assert!(halted.stopped_early_at.iter().all(|s| *s == Some(1)));
        // Scoring every step: all steps run, the first halt still recorded.
        let all = crate::model::PredictOptions { stop_when_all_halt: false, ..opts(2) };
        let every = predict_local(&model, &tokens, grid, &all, &device, |_| {}).unwrap();
        assert_eq!(every.answers.len(), 4);
        assert!(every.stopped_early_at.iter().all(|s| *s == Some(1)));
    }

    #[test]
    fn configs_are_checked() {
        let ok = "[arch]\nmixer = \"local\"\nhidden_size = 16\n";
        assert!(LocalConfig::is_local_toml(ok));
        assert_eq!(LocalConfig::from_toml_str(ok).unwrap().hidden_size, 16);
        assert!(!LocalConfig::is_local_toml("[arch]\nhidden_size = 16\n"));
        for (text, needle) in [
            ("[arch]\nmixer = \"local\"\nhidden_size = 100000\n", "hidden_size"),
            ("[arch]\nmixer = \"local\"\nnum_heads = 2\n", "num_heads"),
            ("[arch]\nmixer = \"local\"\nvocab_size = 7\n", "vocab_size"),
            ("[arch]\nmixer = \"local\"\nL_cycles = 0\n", "L_cycles"),
        ] {
            let e = LocalConfig::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
