//! The network's two heavy operations, attention and SwiGLU's gate, each as one function
//! that picks the Flex CPU kernels ([`super::cpu`], native builds) or burn's plain ops, so
//! that the modules' `forward` reads as the paper writes them. Also [`linear_nd`], the
//! matmul both use.

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::silu;
use burn::tensor::module::linear;
use burn::tensor::ops::AttentionModuleOptions;

use super::trm::CastedLinear;

/// Whether the Flex kernels can take `x`: plain Flex (no autodiff graph to keep) and f32 values.
#[cfg(all(feature = "native", not(target_family = "wasm")))]
fn flex_f32<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    super::cpu::is_flex::<B>() && x.dtype() == burn::tensor::DType::F32
}

/// `x @ weight + bias` over the last axis of `x`, `weight: [in, out]`.
pub fn linear_nd<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, D> {
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
    if flex_f32(&x) {
        // One matmul, then one fused pass over both halves (see `cpu::swiglu`).
        return super::cpu::swiglu::silu_mul_tensor(gate_up.forward(x));
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

/// Non-causal multi-head attention `softmax(q kᵀ / √hd) v` of a fused projection
/// `qkv: [B, L, 3H, hd]` (heads `0..H` are q, `H..2H` k, `2H..3H` v), as `[B, L, H·hd]`.
pub fn attention<B: Backend>(qkv: Tensor<B, 4>, heads: usize) -> Tensor<B, 3> {
    #[cfg(all(feature = "native", not(target_family = "wasm")))]
    if flex_f32(&qkv) {
        // q, k, v read in place, the output in `o_proj`'s layout (see `cpu::attention`).
        return super::cpu::attention::attention_tensor(qkv, heads);
    }
    let [batch, len, _, hd] = qkv.dims();
    let q = qkv.clone().narrow(2, 0, heads);
    let k = qkv.clone().narrow(2, heads, heads);
    let v = qkv.narrow(2, 2 * heads, heads);
    // [B, L, H, hd] -> [B, H, L, hd], and back.
    let (q, k, v) = (q.swap_dims(1, 2), k.swap_dims(1, 2), v.swap_dims(1, 2));
    let out = burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions::default());
    out.swap_dims(1, 2).reshape([batch, len, heads * hd])
}
