//! The Tiny Recursive Model (Jolicoeur-Martineau 2025, arXiv 2510.04871), tensor for tensor
//! as the reference `models/recursive_reasoning/trm.py` + `models/layers.py` compute it.
//!
//! Reading guide, in the paper's words: `x` is the embedded question, `y` (here `z_h`) the
//! current answer, `z` (here `z_l`) the latent reasoning state. One network, `L_level`, does
//! both updates. [`Trm::deep_recursion`] is the whole algorithm of one supervision (ACT) step:
//!
//! ```text
//! repeat H_cycles times (the first H_cycles-1 without gradient):
//!     repeat L_cycles times:  z ← net(z, y + x)      // think
//!     y ← net(y, z)                                   // answer
//! ```
//!
//! Shapes: `B` batch, `P` prefix slots (puzzle embedding), `S` maze cells, `L = P + S`,
//! `D` hidden size, `H` heads of width `hd`, `V` vocabulary.
//!
//! Precision: weights are f32 (the master copy the optimizer updates). The network computes
//! in f32 unless told otherwise ([`Trm::with_compute_dtype`]); in bf16 it casts as the
//! reference's mixed precision does: weights to the activations' dtype at each use
//! (`CastedLinear`, `CastedEmbedding`), RMSNorm and RoPE in f32, logits and Q values
//! handed out in f32. `H_init`/`L_init` stored in bf16 are cast up exactly when loaded.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::module::embedding;

use super::ModelError;
use super::config::{DataSizes, PosEncoding, TrmConfig, swiglu_inner};
use super::ops::{self, linear_nd, rms_norm};
use super::weights::{Export, Init, NamedParam, NamedParams, WeightSource, Weights};

/// `CastedLinear`: a bias-optional linear layer.
#[derive(Module, Debug)]
pub struct CastedLinear<B: Backend> {
    /// `[in, out]`: burn's layout, the transpose of the checkpoint's `[out, in]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> CastedLinear<B> {
    /// `weight` (and `bias` when `bias` says how to initialise one): `[out, in]` in
    /// checkpoints, held transposed.
    pub fn take(mut w: Weights<'_, B>, out: usize, inp: usize, w_init: Init, bias: Option<Init>) -> Result<CastedLinear<B>, ModelError> {
        Ok(CastedLinear {
            weight: w.transposed("weight", [out, inp], w_init)?,
            bias: bias.map(|init| w.vector("bias", out, init)).transpose()?,
        })
    }

    /// The names [`CastedLinear::take`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        out.transposed("weight", &self.weight);
        if let Some(b) = &self.bias {
            out.vector("bias", b);
        }
    }

    /// `x @ Wᵀ + b` in the reference's terms, the weights cast to `x`'s dtype.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = FloatDType::from(x.dtype());
        let weight = self.weight.val().cast(dtype);
        match &self.bias {
            None => linear_nd(x, weight, None),
            Some(b) if dtype == FloatDType::F32 => linear_nd(x, weight, Some(b.val())),
            Some(b) => {
                // torch's bf16 `addmm` adds the bias before its one rounding: do the same in f32
                // on the bf16 values, rather than round the product and then the sum.
                let bias = b.val().cast(dtype).cast(FloatDType::F32);
                linear_nd(x.cast(FloatDType::F32), weight.cast(FloatDType::F32), Some(bias)).cast(dtype)
            }
        }
    }
}

/// `SwiGLU`: `down(silu(gate) * up)` with `gate, up = chunk(gate_up(x), 2)`.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    /// `[d, 2·inter]`; the first half of its outputs is the gate.
    pub gate_up_proj: CastedLinear<B>,
    /// `[inter, d]`.
    pub down_proj: CastedLinear<B>,
}

impl<B: Backend> SwiGlu<B> {
    /// An MLP over `width` features with `inter` hidden ones.
    pub fn take(mut w: Weights<'_, B>, width: usize, inter: usize) -> Result<SwiGlu<B>, ModelError> {
        Ok(SwiGlu {
            gate_up_proj: CastedLinear::take(w.pp("gate_up_proj"), 2 * inter, width, Init::lecun(width), None)?,
            down_proj: CastedLinear::take(w.pp("down_proj"), width, inter, Init::lecun(inter), None)?,
        })
    }

    /// The names [`SwiGlu::take`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        self.gate_up_proj.export(out.pp("gate_up_proj"));
        self.down_proj.export(out.pp("down_proj"));
    }

    /// Applies the MLP over the last axis.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down_proj.forward(ops::swiglu(x, &self.gate_up_proj))
    }
}

/// Rotary position tables (`RotaryEmbedding`), half-split ("NeoX") layout, for all `L` positions.
#[derive(Module, Debug)]
pub struct Rope<B: Backend> {
    /// `[1, L, 1, hd]`, `cos(cat(freqs, freqs))`; `[B, L, 3H, hd]` once [`Rope::tiled_qkv`].
    pub cos: Tensor<B, 4>,
    /// `[1, L, 1, hd]`, `sin(cat(freqs, freqs))`; `[B, L, 3H, hd]` once [`Rope::tiled_qkv`].
    pub sin: Tensor<B, 4>,
    /// `[hd, hd]`: `x @ rotation = rotate_half(x) = cat(-x2, x1)`, a signed permutation, so
    /// the product is exact in f32.
    pub rotation: Tensor<B, 2>,
}

impl<B: Backend> Rope<B> {
    /// Tables for `len` positions of a `head_dim`-wide head, computed as the reference does (f32).
    pub fn new(head_dim: usize, len: usize, theta: f64, device: &B::Device) -> Rope<B> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(len * head_dim);
        let mut sin = Vec::with_capacity(len * head_dim);
        for t in 0..len {
            // emb = cat(freqs, freqs): the same angles for both halves.
            for _half in 0..2 {
                for f in &inv_freq {
                    let angle = t as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let mut rotation = vec![0.0f32; head_dim * head_dim];
        for j in 0..half {
            rotation[(j + half) * head_dim + j] = -1.0; // out[j] = -x[j + half]
            rotation[j * head_dim + j + half] = 1.0; // out[j + half] = x[j]
        }
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, [1, len, 1, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [1, len, 1, head_dim]), device),
            rotation: Tensor::from_data(TensorData::new(rotation, [head_dim, head_dim]), device),
        }
    }

    /// Tables laid out like the fused `qkv` projection, `[batch, L, 3·heads, hd]`: the angles
    /// for the q and k heads, and the identity (cos 1, sin 0) for the v heads. RoPE then runs
    /// on the whole contiguous projection with same-shape element-wise ops: on Flex, ops on
    /// the strided q/k views or broadcast tables were many times slower, and the identity on
    /// v is exact.
    pub fn tiled_qkv(&self, batch: usize, heads: usize) -> Rope<B> {
        let [_, len, _, hd] = self.cos.dims();
        let device = self.cos.device();
        let tile = |t: &Tensor<B, 4>, v_value: f32| {
            let qk = t.clone().repeat(&[batch, 1, 2 * heads, 1]);
            let v = Tensor::full([batch, len, heads, hd], v_value, &device);
            Tensor::cat(vec![qk, v], 2)
        };
        Rope { cos: tile(&self.cos, 1.0), sin: tile(&self.sin, 0.0), rotation: self.rotation.clone() }
    }

    /// The `cos` and `sin` tables of the first `len` positions as `[len, hd]` values, for the
    /// CPU kernels.
    pub fn values(&self, len: usize) -> (Vec<f32>, Vec<f32>) {
        let table = |t: &Tensor<B, 4>| {
            let [_, _, _, hd] = t.dims();
            let t = t.clone().narrow(0, 0, 1).narrow(1, 0, len).narrow(2, 0, 1).reshape([len * hd]);
            t.cast(FloatDType::F32).into_data().into_vec::<f32>().expect("tables in f32")
        };
        (table(&self.cos), table(&self.sin))
    }

    /// Rotates the q and k heads of a fused projection `x = qkv: [B, L, 3H, hd]`:
    /// `x·cos + rotate_half(x)·sin`, the v heads untouched. Computed in f32 (as the reference
    /// does, against its f32 tables) and returned in `x`'s dtype.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = FloatDType::from(x.dtype());
        let x = x.cast(FloatDType::F32);
        let dims = x.dims();
        let [b, len, n, hd] = dims;
        let (cos, sin) = if self.cos.dims() == dims {
            (self.cos.clone(), self.sin.clone())
        } else {
            // Untiled tables (a direct caller): tile them for this batch now.
            let t = Rope { cos: self.cos.clone().narrow(1, 0, len), sin: self.sin.clone().narrow(1, 0, len), rotation: self.rotation.clone() }.tiled_qkv(b, n / 3);
            (t.cos, t.sin)
        };
        let rotated = x.clone().reshape([b * len * n, hd]).matmul(self.rotation.clone()).reshape(dims);
        (x * cos + rotated * sin).cast(dtype)
    }
}

/// Non-causal multi-head self-attention with a fused `qkv_proj` and no biases.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `[D, 3·H·hd]`; outputs are heads `0..H` = q, `H..2H` = k, `2H..3H` = v.
    pub qkv_proj: CastedLinear<B>,
    /// `[H·hd, D]`.
    pub o_proj: CastedLinear<B>,
    /// `H`.
    pub num_heads: usize,
    /// `hd`.
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// Attention over `d` features with `heads` heads of width `head_dim`.
    pub fn take(mut w: Weights<'_, B>, d: usize, heads: usize, head_dim: usize) -> Result<Attention<B>, ModelError> {
        let inner = heads * head_dim;
        Ok(Attention {
            qkv_proj: CastedLinear::take(w.pp("qkv_proj"), 3 * inner, d, Init::lecun(d), None)?,
            o_proj: CastedLinear::take(w.pp("o_proj"), d, inner, Init::lecun(inner), None)?,
            num_heads: heads,
            head_dim,
        })
    }

    /// The names [`Attention::take`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        self.qkv_proj.export(out.pp("qkv_proj"));
        self.o_proj.export(out.pp("o_proj"));
    }

    /// `h: [B, L, D]` → `[B, L, D]`.
    pub fn forward(&self, h: Tensor<B, 3>, rope: Option<&Rope<B>>) -> Tensor<B, 3> {
        let [batch, len, _] = h.dims();
        let (heads, hd) = (self.num_heads, self.head_dim);
        let qkv = self.qkv_proj.forward(h).reshape([batch, len, 3 * heads, hd]);
        self.o_proj.forward(ops::attention(qkv, heads, rope))
    }
}

/// One post-norm block: sequence mixing (attention or MLP-t), then the channel MLP.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Token mixing by attention (absent in the MLP-t variant).
    pub self_attn: Option<Attention<B>>,
    /// Token mixing by an MLP across positions, of width `L` (the MLP-t variant).
    pub mlp_t: Option<SwiGlu<B>>,
    /// Channel MLP.
    pub mlp: SwiGlu<B>,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
}

impl<B: Backend> Block<B> {
    /// One block of `config`'s network over `total` positions: MLP-t or attention mixing,
    /// then the channel MLP.
    pub fn take(mut w: Weights<'_, B>, config: &TrmConfig, total: usize) -> Result<Block<B>, ModelError> {
        let d = config.hidden_size;
        let (self_attn, mlp_t) = if config.mlp_t {
            (None, Some(SwiGlu::take(w.pp("mlp_t"), total, swiglu_inner(total, config.expansion))?))
        } else {
            (Some(Attention::take(w.pp("self_attn"), d, config.num_heads, config.head_dim())?), None)
        };
        let mlp = SwiGlu::take(w.pp("mlp"), d, swiglu_inner(d, config.expansion))?;
        Ok(Block { self_attn, mlp_t, mlp, norm_eps: config.rms_norm_eps })
    }

    /// The names [`Block::take`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        if let Some(attn) = &self.self_attn {
            attn.export(out.pp("self_attn"));
        }
        if let Some(mlp_t) = &self.mlp_t {
            mlp_t.export(out.pp("mlp_t"));
        }
        self.mlp.export(out.pp("mlp"));
    }

    /// `h = rms(h + mix(h)); h = rms(h + mlp(h))`.
    pub fn forward(&self, h: Tensor<B, 3>, rope: Option<&Rope<B>>) -> Tensor<B, 3> {
        let h = match (&self.mlp_t, &self.self_attn) {
            (Some(mlp_t), _) => {
                // Mix along the sequence: [B, L, D] -> [B, D, L]; the norm too runs over L here.
                let t = h.swap_dims(1, 2);
                let t = rms_norm(t.clone() + mlp_t.forward(t), self.norm_eps);
                t.swap_dims(1, 2)
            }
            (None, Some(attn)) => rms_norm(h.clone() + attn.forward(h, rope), self.norm_eps),
            (None, None) => h,
        };
        rms_norm(h.clone() + self.mlp.forward(h), self.norm_eps)
    }
}

/// `L_level`, the one reasoning network: add the injection, then run the blocks.
#[derive(Module, Debug)]
pub struct ReasoningModule<B: Backend> {
    /// `L_layers` blocks.
    pub layers: Vec<Block<B>>,
}

impl<B: Backend> ReasoningModule<B> {
    /// `config`'s `L_layers` blocks over `total` positions.
    pub fn take(mut w: Weights<'_, B>, config: &TrmConfig, total: usize) -> Result<ReasoningModule<B>, ModelError> {
        let mut w = w.pp("layers");
        let layers = (0..config.l_layers).map(|i| Block::take(w.pp(i), config, total)).collect::<Result<_, _>>()?;
        Ok(ReasoningModule { layers })
    }

    /// The names [`ReasoningModule::take`] reads.
    pub fn export(&self, mut out: Export<'_, B>) {
        let mut out = out.pp("layers");
        for (i, layer) in self.layers.iter().enumerate() {
            layer.export(out.pp(i));
        }
    }

    /// `net(hidden, injection)`.
    pub fn forward(&self, hidden: Tensor<B, 3>, injection: Tensor<B, 3>, rope: Option<&Rope<B>>) -> Tensor<B, 3> {
        let mut h = hidden + injection;
        for layer in &self.layers {
            h = layer.forward(h, rope);
        }
        h
    }
}

/// The recurrent state between ACT steps: answer `z_h` (y) and latent `z_l` (z), `[B, L, D]`.
#[derive(Debug, Clone)]
pub struct InnerCarry<B: Backend> {
    /// The answer state y.
    pub z_h: Tensor<B, 3>,
    /// The latent reasoning state z.
    pub z_l: Tensor<B, 3>,
}

/// What one ACT step outputs.
#[derive(Debug, Clone)]
pub struct StepOutput<B: Backend> {
    /// `[B, S, V]` token logits over the maze cells (prefix dropped).
    pub logits: Tensor<B, 3>,
    /// `[B]`: halt if > 0.
    pub q_halt: Tensor<B, 1>,
    /// `[B]`: the "continue" Q value (used only when `no_ACT_continue` is false).
    pub q_continue: Tensor<B, 1>,
}

/// The TRM network (the reference's `TinyRecursiveReasoningModel_ACTV1_Inner`).
///
/// Its checkpoint names are the reference's state-dict names: see [`Trm::build`] and [`Trm::export`].
#[derive(Module, Debug)]
pub struct Trm<B: Backend> {
    /// `[V, D]` token embedding.
    pub embed_tokens: Param<Tensor<B, 2>>,
    /// `[L, D]` learned positions (`pos_encodings: learned` only).
    pub embed_pos: Option<Param<Tensor<B, 2>>>,
    /// `[num_puzzle_identifiers, puzzle_emb_ndim]` per-puzzle vectors (`puzzle_emb.weights`).
    pub puzzle_emb: Option<Param<Tensor<B, 2>>>,
    /// `[D, V]` output head over the maze cells.
    pub lm_head: CastedLinear<B>,
    /// `[D, 2]` + bias: (q_halt, q_continue) from position 0.
    pub q_head: CastedLinear<B>,
    /// RoPE tables (`pos_encodings: rope` only; not saved).
    pub rotary_emb: Option<Rope<B>>,
    /// The single reasoning network.
    pub l_level: ReasoningModule<B>,
    /// `[D]` initial answer state, broadcast to every position on reset.
    pub h_init: Param<Tensor<B, 1>>,
    /// `[D]` initial latent state.
    pub l_init: Param<Tensor<B, 1>>,
    /// The configuration this network was built with (dataset fields known).
    #[module(skip)]
    pub config: TrmConfig,
    /// The config's dataset sizes, all known once a network is built.
    #[module(skip)]
    pub sizes: DataSizes,
    /// The dtype activations and the carry are computed in; the weights stay f32.
    #[module(skip)]
    pub compute_dtype: FloatDType,
}

impl<B: Backend> Trm<B> {
    /// Builds the network for `config` (dataset fields resolved), taking every tensor from `src`.
    pub fn build(config: &TrmConfig, src: &mut dyn WeightSource, device: &B::Device) -> Result<Trm<B>, ModelError> {
        config.validate()?;
        let sizes = config.data_sizes()?;
        let d = config.hidden_size;
        let total = config.prefix_len() + sizes.seq_len;
        let mut w = Weights::new(src, device);

        // Same order as the reference registers them (it only matters for random init).
        let embed_tokens = w.pp("embed_tokens").matrix("embedding_weight", [sizes.vocab_size, d], Init::lecun(d))?;
        let lm_head = CastedLinear::take(w.pp("lm_head"), sizes.vocab_size, d, Init::lecun(d), None)?;
        // "Init Q to (almost) zero for faster learning during bootstrapping": W = 0, b = -5.
        let q_head = CastedLinear::take(w.pp("q_head"), 2, d, Init::Zeros, Some(Init::Constant(-5.0)))?;
        let puzzle_emb = if config.puzzle_emb_ndim > 0 {
            let shape = [sizes.num_puzzle_identifiers, config.puzzle_emb_ndim];
            Some(w.pp("puzzle_emb").matrix("weights", shape, Init::Zeros)?)
        } else {
            None
        };
        let (rotary_emb, embed_pos) = match config.pos_encodings {
            PosEncoding::Rope => (Some(Rope::new(config.head_dim(), total, config.rope_theta, device)), None),
            PosEncoding::Learned => (None, Some(w.pp("embed_pos").matrix("embedding_weight", [total, d], Init::lecun(d))?)),
            PosEncoding::None => (None, None),
        };
        let l_level = ReasoningModule::take(w.pp("L_level"), config, total)?;
        let h_init = w.vector("H_init", d, Init::TruncNormal(1.0))?;
        let l_init = w.vector("L_init", d, Init::TruncNormal(1.0))?;
        Ok(Trm {
            embed_tokens,
            embed_pos,
            puzzle_emb,
            lm_head,
            q_head,
            rotary_emb,
            l_level,
            h_init,
            l_init,
            config: config.clone(),
            sizes,
            compute_dtype: FloatDType::F32,
        })
    }

    /// The names [`Trm::build`] reads (the RoPE tables are computed, not saved).
    pub fn export(&self, mut out: Export<'_, B>) {
        out.pp("embed_tokens").matrix("embedding_weight", &self.embed_tokens);
        self.lm_head.export(out.pp("lm_head"));
        self.q_head.export(out.pp("q_head"));
        if let Some(p) = &self.puzzle_emb {
            out.pp("puzzle_emb").matrix("weights", p);
        }
        if let Some(p) = &self.embed_pos {
            out.pp("embed_pos").matrix("embedding_weight", p);
        }
        self.l_level.export(out.pp("L_level"));
        out.vector("H_init", &self.h_init);
        out.vector("L_init", &self.l_init);
    }

    /// The same network computing in `dtype` (the reference's `forward_dtype`: bf16 on a GPU)
    /// with its f32 weights cast at each use, so that gradients and optimizer updates stay f32.
    pub fn with_compute_dtype(mut self, dtype: FloatDType) -> Trm<B> {
        self.compute_dtype = dtype;
        self
    }

    /// The configuration this network was built with.
    pub fn config(&self) -> &TrmConfig {
        &self.config
    }

    /// Maze cells, vocabulary and puzzle count: the config's dataset fields, resolved.
    pub fn sizes(&self) -> DataSizes {
        self.sizes
    }

    /// `x`: the embedded question, `[B, L, D]` (prefix of puzzle slots, then the tokens), scaled by √D.
    pub fn input_embeddings(&self, inputs: Tensor<B, 2, Int>, puzzle_identifiers: Tensor<B, 1, Int>) -> Tensor<B, 3> {
        let cfg = self.config();
        let d = cfg.hidden_size;
        let [batch, _seq] = inputs.dims();
        let dtype = self.compute_dtype;
        // `python_float * bf16_tensor` in torch multiplies in f32 and rounds once; burn's
        // `mul_scalar` on bf16 would round the scalar to bf16 first.
        let scale = |x: Tensor<B, 3>, s: f64| x.cast(FloatDType::F32).mul_scalar(s).cast(dtype);
        let mut x = embedding(self.embed_tokens.val().cast(dtype), inputs);
        if let Some(table) = &self.puzzle_emb {
            // One learned vector per puzzle, zero-padded to fill the prefix slots.
            let prefix = cfg.prefix_len();
            let vectors = table.val().select(0, puzzle_identifiers).cast(dtype);
            let pad = prefix * d - cfg.puzzle_emb_ndim;
            let vectors = if pad > 0 {
                Tensor::cat(vec![vectors, Tensor::<B, 2>::zeros([batch, pad], &x.device()).cast(dtype)], 1)
            } else {
                vectors
            };
            x = Tensor::cat(vec![vectors.reshape([batch, prefix, d]), x], 1);
        }
        if let Some(pos) = &self.embed_pos {
            // Scale by 1/sqrt(2) to keep the variance (the reference's constant, to the digit).
            x = scale(x + pos.val().cast(dtype).unsqueeze_dim(0), 0.707106781);
        }
        scale(x, (d as f64).sqrt())
    }

    /// A carry whose rows all hold `H_init` / `L_init` at every position.
    pub fn initial_carry(&self, batch: usize) -> InnerCarry<B> {
        let total = self.config().prefix_len() + self.sizes.seq_len;
        let d = self.config().hidden_size;
        // Written out (`· 1`, exact), not a broadcast view: every `y + x` of the first
        // recursion would read a view element by element.
        let filled = |v: &Param<Tensor<B, 1>>| v.val().cast(self.compute_dtype).reshape([1, 1, d]).expand([batch, total, d]).mul_scalar(1.0);
        InnerCarry { z_h: filled(&self.h_init), z_l: filled(&self.l_init) }
    }

    /// Resets the rows where `reset` is true to `H_init` / `L_init` (the reference's `reset_carry`).
    pub fn reset_carry(&self, reset: Tensor<B, 1, Bool>, carry: InnerCarry<B>) -> InnerCarry<B> {
        let [batch, total, d] = carry.z_h.dims();
        let mask = reset.reshape([batch, 1, 1]).expand([batch, total, d]);
        let dtype = FloatDType::from(carry.z_h.dtype());
        let broadcast = |v: &Param<Tensor<B, 1>>| v.val().cast(dtype).reshape([1, 1, d]).expand([batch, total, d]);
        InnerCarry {
            z_h: carry.z_h.mask_where(mask.clone(), broadcast(&self.h_init)),
            z_l: carry.z_l.mask_where(mask, broadcast(&self.l_init)),
        }
    }

    /// The paper's `latent_recursion`: `L_cycles` thinking updates `z ← net(z, y + x)`, then
    /// one answer update `y ← net(y, z)`.
    pub(crate) fn latent_recursion(&self, x: &Tensor<B, 3>, mut y: Tensor<B, 3>, mut z: Tensor<B, 3>, rope: Option<&Rope<B>>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let net = &self.l_level;
        for _ in 0..self.config().l_cycles {
            z = net.forward(z, y.clone() + x.clone(), rope);
        }
        y = net.forward(y, z.clone(), rope);
        (y, z)
    }

    /// One supervision step of recursive reasoning (the paper's `deep_recursion`):
    /// `H_cycles` latent recursions. Only the last keeps its autodiff graph; the earlier ones
    /// are cut off (the reference runs them under `torch.no_grad()`), as is the returned state.
    /// On `Autodiff<Flex>` the earlier ones run on plain Flex, off the graph (`cpu::no_grad_rounds`).
    pub fn deep_recursion(&self, carry: InnerCarry<B>, x: Tensor<B, 3>) -> InnerCarry<B> {
        let cfg = self.config();
        let [batch, _, _] = x.dims();
        let rope = self.rotary_emb.as_ref().map(|r| ops::rope_for_step(r, &x, batch, cfg.num_heads));
        let rope = rope.as_ref();
        let InnerCarry { z_h: mut y, z_l: mut z } = carry;
        #[cfg_attr(not(all(feature = "native", not(target_family = "wasm"))), allow(unused_mut))]
        let mut rounds = cfg.h_cycles.saturating_sub(1);
        #[cfg(all(feature = "native", not(target_family = "wasm")))]
        if rounds > 0
            && let Some((y2, z2)) = super::cpu::no_grad_rounds(self, &x, &y, &z, rounds)
        {
            (y, z, rounds) = (y2, z2, 0);
        }
        for _ in 0..rounds {
            (y, z) = self.latent_recursion(&x, y, z, rope);
            (y, z) = (y.detach(), z.detach());
        }
        (y, z) = self.latent_recursion(&x, y, z, rope);
        InnerCarry { z_h: y, z_l: z }
    }

    /// One ACT step of the network: embed, recurse, read out. Returns the next carry
    /// (detached, in the compute dtype) and the outputs (f32, with gradient through the last
    /// recursion round). Logits rounded to bf16 and cast up are exactly what the reference's
    /// loss casts to f64.
    pub fn forward(
        &self,
        carry: InnerCarry<B>,
        inputs: Tensor<B, 2, Int>,
        puzzle_identifiers: Tensor<B, 1, Int>,
    ) -> (InnerCarry<B>, StepOutput<B>) {
        let [batch, seq] = inputs.dims();
        let prefix = self.config().prefix_len();
        let x = self.input_embeddings(inputs, puzzle_identifiers);
        let InnerCarry { z_h, z_l } = self.deep_recursion(carry, x);
        let logits = self.lm_head.forward(z_h.clone().narrow(1, prefix, seq)).cast(FloatDType::F32);
        let q = self.q_head.forward(z_h.clone().narrow(1, 0, 1).reshape([batch, self.config().hidden_size])).cast(FloatDType::F32);
        let q_halt = q.clone().narrow(1, 0, 1).reshape([batch]);
        let q_continue = q.narrow(1, 1, 1).reshape([batch]);
        (InnerCarry { z_h: z_h.detach(), z_l: z_l.detach() }, StepOutput { logits, q_halt, q_continue })
    }
}

impl<B: Backend> NamedParams<B> for Trm<B> {
    fn named_params(&self) -> Vec<NamedParam<B>> {
        Export::collect(|out| self.export(out))
    }
}
