//! The network's operations that have CPU kernels of their own: the linear layers
//! ([`linear_nd`]), attention with RoPE, SwiGLU's gate and the RMS norm, each as one function
//! that picks the Flex kernels ([`super::cpu`], native builds; on `Autodiff<Flex>` with their
//! own backward) or burn's plain ops, so that the modules' `forward` reads as the paper
//! writes them.

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::silu;
use burn::tensor::module::linear;
use burn::tensor::ops::AttentionModuleOptions;

use super::trm::{CastedLinear, Rope};

/// Whether `x` takes the CPU kernels: f32 on plain Flex or on `Autodiff<Flex>`.
#[cfg(all(feature = "native", not(target_family = "wasm")))]
fn cpu_kernels<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    (super::cpu::is_flex::<B>() || super::cpu::is_autodiff_flex::<B>()) && x.dtype() == burn::tensor::DType::F32
}

/// `x` on `Autodiff<Flex>` in f32, the CPU training backend, where the kernels' autodiff
/// operations ([`super::cpu::autodiff`]) can take it; `Err(x)` otherwise.
#[cfg(all(feature = "native", not(target_family = "wasm")))]
fn autodiff_flex_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<super::cpu::autodiff::AutodiffFlex, D>, Tensor<B, D>> {
    if super::cpu::is_autodiff_flex::<B>() && x.dtype() == burn::tensor::DType::F32 {
        return Ok(super::cpu::cast_backend(x).expect("B is Autodiff<Flex>"));
    }
    Err(x)
}

/// A result of the autodiff operations back on `B` (which is `Autodiff<Flex>`).
#[cfg(all(feature = "native", not(target_family = "wasm")))]
fn from_autodiff_flex<B: Backend, const D: usize>(x: Tensor<super::cpu::autodiff::AutodiffFlex, D>) -> Tensor<B, D> {
    super::cpu::cast_backend(x).expect("B is Autodiff<Flex>")
}

/// The reference's `rms_norm`: no learned weight, normalise over the last axis, in f32
/// whatever the input's dtype, returned in that dtype.
pub fn rms_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    #[cfg(all(feature = "native", not(target_family = "wasm")))]
    if cpu_kernels(&x) {
        return match autodiff_flex_f32(x) {
            Ok(x) => from_autodiff_flex(super::cpu::autodiff::rms_norm_autodiff(x, eps)),
            Err(x) => super::cpu::norm::rms_norm_tensor(x, eps),
        };
    }
    let dtype = x.dtype();
    let x = x.cast(FloatDType::F32);
    let variance = x.clone().square().mean_dim(D - 1);
    (x * variance.add_scalar(eps).sqrt().recip()).cast(FloatDType::from(dtype))
}

/// `x @ weight + bias` over the last axis of `x`, `weight: [in, out]`.
pub fn linear_nd<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, D> {
    #[cfg(all(feature = "native", not(target_family = "wasm")))]
    if bias.is_none() && cpu_kernels(&x) && weight.dtype() == x.dtype() {
        // Straight into gemm (see `cpu::linear`); with its own backward on `Autodiff<Flex>`.
        return match (autodiff_flex_f32(x), autodiff_flex_f32(weight)) {
            (Ok(x), Ok(weight)) => from_autodiff_flex(super::cpu::autodiff::linear_autodiff(x, weight)),
            (Err(x), Err(weight)) => super::cpu::linear::linear_tensor(x, weight),
            _ => unreachable!("x and weight are on one backend"),
        };
    }
    if D <= 2 {
        return linear(x, weight, bias);
    }
    // One 2-D matmul over all leading axes: faster on Flex than the broadcast batched
    // matmul `linear` does for 3-D inputs.
    let mut dims = x.dims();
    let [_, out] = weight.dims();
    let flat: Tensor<B, 2> = x.flatten(0, D - 2);
    let y = linear(flat, weight, bias);
    dims[D - 1] = out;
    y.reshape(dims)
}

/// SwiGLU's hidden layer, `silu(gate) * up` with `gate, up = chunk(gate_up(x), 2)`, for a
/// bias-free `gate_up` projection.
pub fn swiglu<B: Backend>(x: Tensor<B, 3>, gate_up: &CastedLinear<B>) -> Tensor<B, 3> {
    #[cfg(all(feature = "native", not(target_family = "wasm")))]
    if cpu_kernels(&x) {
        // One matmul, then one fused pass over both halves (see `cpu::swiglu`).
        let projected = gate_up.forward(x);
        return match autodiff_flex_f32(projected) {
            Ok(projected) => from_autodiff_flex(super::cpu::autodiff::silu_mul_autodiff(projected)),
            Err(projected) => super::cpu::swiglu::silu_mul_tensor(projected),
        };
    }
    // Elsewhere: two matmuls against the two halves of the weight: the outputs are then
    // contiguous, and burn's element-wise ops (silu, *) run ~3x faster on contiguous tensors
    // than on the strided halves of one output.
    let [_, inter2] = gate_up.weight.dims();
    let inter = inter2 / 2;
    let weight = gate_up.weight.val().cast(FloatDType::from(x.dtype()));
    let gate = linear_nd(x.clone(), weight.clone().narrow(1, 0, inter), None);
    let up = linear_nd(x, weight.narrow(1, inter, inter), None);
    // silu in f32 and rounded once, as torch's bf16 `F.silu` (burn's is x·sigmoid(x): two ops).
    let dtype = FloatDType::from(gate.dtype());
    silu(gate.cast(FloatDType::F32)).cast(dtype) * up
}

/// The RoPE tables for one ACT step of `x`'s batch: as they are for the CPU kernels (which
/// read `[L, hd]` tables), tiled to the fused projection's layout for burn's ops elsewhere
/// (see [`Rope::tiled_qkv`]).
pub fn rope_for_step<B: Backend>(rope: &Rope<B>, x: &Tensor<B, 3>, batch: usize, heads: usize) -> Rope<B> {
    #[cfg(all(feature = "native", not(target_family = "wasm")))]
    if cpu_kernels(x) {
        return rope.clone();
    }
    let _ = x;
    rope.tiled_qkv(batch, heads)
}

/// Non-causal multi-head attention `softmax(q kᵀ / √hd) v` of a fused projection
/// `qkv: [B, L, 3H, hd]` (heads `0..H` are q, `H..2H` k, `2H..3H` v), as `[B, L, H·hd]`,
/// RoPE applied to q and k first when `rope` is given.
pub fn attention<B: Backend>(qkv: Tensor<B, 4>, heads: usize, rope: Option<&Rope<B>>) -> Tensor<B, 3> {
    #[cfg(all(feature = "native", not(target_family = "wasm")))]
    if cpu_kernels(&qkv) {
        use super::cpu::attention::RopeTables;
        let tables = rope.map(|r| r.values(qkv.dims()[1]));
        let tables = tables.as_ref().map(|(cos, sin)| RopeTables { cos, sin });
        // q, k, v read in place, the output in `o_proj`'s layout (see `cpu::attention`).
        return match autodiff_flex_f32(qkv) {
            Ok(qkv) => from_autodiff_flex(super::cpu::autodiff::attention_autodiff(qkv, heads, tables)),
            Err(qkv) => super::cpu::attention::attention_tensor(qkv, heads, tables),
        };
    }
    // The tables leave the v heads unchanged (see `Rope::tiled_qkv`).
    let qkv = match rope {
        Some(rope) => rope.apply(qkv),
        None => qkv,
    };
    let [batch, len, _, hd] = qkv.dims();
    let q = qkv.clone().narrow(2, 0, heads);
    let k = qkv.clone().narrow(2, heads, heads);
    let v = qkv.narrow(2, 2 * heads, heads);
    // [B, L, H, hd] -> [B, H, L, hd], and back.
    let (q, k, v) = (q.swap_dims(1, 2), k.swap_dims(1, 2), v.swap_dims(1, 2));
    let out = burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions::default());
    out.swap_dims(1, 2).reshape([batch, len, heads * hd])
}
