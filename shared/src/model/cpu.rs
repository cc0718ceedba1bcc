//! Kernels for the Flex CPU backend, used by [`super::ops`] where burn-flex 0.21's own ops
//! were measured slow: its attention and its element-wise ops run on one thread with scalar
//! `exp`, and its matmul zero-fills and then copies every output. The kernels compute on the
//! values: plain Flex (inference, and the no-gradient rounds of a training step) calls them
//! directly, `Autodiff<Flex>` (training) through [`autodiff`], where each is one node of the
//! graph with a backward of its own. Every other backend runs burn's ops.

pub mod attention;
pub mod autodiff;
#[cfg(target_arch = "x86_64")]
mod bf16_gemm;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod linear;
pub mod norm;
#[cfg(target_arch = "x86_64")]
mod packed_weights;
pub mod swiglu;

use std::any::TypeId;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_flex::FlexTensor;

/// Whether `B` is plain Flex, the backend these kernels stand in for.
pub(crate) fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<burn::backend::Flex>()
}

/// Whether `B` is `Autodiff<Flex>`, where [`autodiff`]'s operations stand in for burn's.
pub(crate) fn is_autodiff_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<AutodiffFlex>()
}

/// `x` as a tensor of `T` when `B` is `T` (a no-op move), `None` otherwise.
pub(crate) fn cast_backend<B: Backend, T: Backend, const D: usize>(x: Tensor<B, D>) -> Option<Tensor<T, D>> {
    let x: Box<dyn std::any::Any> = Box::new(x);
    x.downcast::<Tensor<T, D>>().ok().map(|t| *t)
}

// The kernels read and write Flex's own tensors (`FlexTensor`) so that no value is copied
// on the way in or out: a fresh projection is one contiguous buffer owned by no one else.

/// `x`'s Flex tensor, as one buffer of exactly its values (a copy only when it is not).
/// `B` must be plain Flex.
pub(crate) fn plain<B: Backend, const D: usize>(x: Tensor<B, D>) -> FlexTensor {
    dense(cast_backend::<B, Flex, D>(x).expect("the kernels' tensors are on plain Flex").into_primitive().tensor())
}

/// `t` as one buffer of exactly its values (a copy only when it is not). Writing through
/// `storage_mut` then copies only if another tensor shares the buffer.
pub(crate) fn dense(t: FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// A kernel's output as a tensor of `B` (plain Flex).
pub(crate) fn from_plain<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    let t = Tensor::<Flex, D>::from_primitive(TensorPrimitive::Float(flex_tensor(values, shape)));
    cast_backend::<Flex, B, D>(t).expect("the kernels' tensors are on plain Flex")
}

/// Values as a Flex tensor (no copy).
pub(crate) fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The values of a tensor from [`dense`] or [`flex_tensor`].
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

use autodiff::AutodiffFlex;

/// Runs the `rounds` latent recursions that need no gradient (all but the last of an ACT
/// step) on plain Flex when the model is on `Autodiff<Flex>`: their results are detached
/// anyway, so recording them in the autodiff graph only costs time and memory, and plain
/// Flex takes the kernels of this module (fused attention, SwiGLU) instead of burn's ops.
/// `None` on every other backend (the caller then runs the rounds itself).
pub(crate) fn no_grad_rounds<B: Backend>(
    model: &super::Trm<B>,
    x: &Tensor<B, 3>,
    y: &Tensor<B, 3>,
    z: &Tensor<B, 3>,
    rounds: usize,
) -> Option<(Tensor<B, 3>, Tensor<B, 3>)> {
    use burn::module::AutodiffModule;
    use std::any::Any;
    let model = (model as &dyn Any).downcast_ref::<super::Trm<AutodiffFlex>>()?;
    let plain = |t: &Tensor<B, 3>| (t as &dyn Any).downcast_ref::<Tensor<AutodiffFlex, 3>>().map(|t| t.clone().inner());
    let (x, mut y, mut z) = (plain(x)?, plain(y)?, plain(z)?);
    let inner = model.valid();
    let [batch, _, _] = x.dims();
    let rope = inner.rotary_emb.as_ref().map(|r| super::ops::rope_for_step(r, &x, batch, inner.config().num_heads));
    for _ in 0..rounds {
        (y, z) = inner.latent_recursion(&x, y, z, rope.as_ref());
    }
    let back = |t: Tensor<burn::backend::Flex, 3>| cast_backend::<AutodiffFlex, B, 3>(Tensor::from_inner(t));
    Some((back(y)?, back(z)?))
}

/// Rows per rayon task for a row-wise kernel over `total` values in rows of `width`: at
/// least 64 rows and 16 Ki values a task, so that scheduling stays small beside the work, and
/// every row in one task (no hand-off to rayon's threads at all) below 32 Ki values: the
/// size-general model's tensors are that small.
pub(crate) fn rows_per_task(width: usize, total: usize) -> usize {
    const MIN_VALUES: usize = 16 * 1024;
    let width = width.max(1);
    if total < 2 * MIN_VALUES {
        return (total / width).max(1);
    }
    (MIN_VALUES / width).max(64)
}

/// Lanes of the partial maxima and sums: loops over `[f32; LANES]` accumulators vectorise,
/// a single running float does not (it would fix the order of the additions).
pub(crate) const LANES: usize = 8;

/// `Σ a·b` with [`LANES`] partial sums, so that the loop vectorises (inline it into a
/// [`vectorised`] body).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut partial = [0.0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((p, &x), &y) in partial.iter_mut().zip(x).zip(y) {
            *p += x * y;
        }
    }
    partial.iter().sum::<f32>() + ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum::<f32>()
}

/// Runs `$body` (a call of an `#[inline(always)]` function) compiled for AVX2 when the CPU has
/// it, where its loops over `f32` become 8-lane vector code; portable code otherwise. With
/// `avx512 $fast;` first, `$fast` (a function of [`avx512`] taking the same arguments) runs
/// instead where the CPU has AVX-512F.
macro_rules! vectorised {
    (avx512 $fast:path; $name:ident($($arg:ident: $ty:ty),*) => $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        if $crate::model::cpu::avx512::available() {
            // SAFETY: the CPU has AVX-512F (checked just above), all that `$fast` requires.
            unsafe { $fast($($arg),*) };
            return;
        }
        $crate::model::cpu::vectorised!($name($($arg: $ty),*) => $body)
    }};
    ($name:ident($($arg:ident: $ty:ty),*) => $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $name($($arg: $ty),*) {
            $body
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { $name($($arg),*) };
            return;
        }
        $body
    }};
}
pub(crate) use vectorised;

/// `eˣ` for `x ≤ 0` to about 1 ulp, branch-free so that loops over it vectorise (Cephes
/// `expf`: `x = n·ln2 + r`, a degree-7 polynomial for `eʳ`, `2ⁿ` from the exponent bits).
/// Below −87.3 (`2⁻¹²⁶`, the smallest normal float) it returns about `2⁻¹²⁶`, not 0 or a denormal,
/// which no softmax row can tell apart: its largest term is 1.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    use expf::*;
    let x = if x < MIN_X { MIN_X } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = POLY[0];
    for c in &POLY[1..] {
        p = p * r + c;
    }
    let er = p * r * r + r + 1.0;
    // 2ⁿ: n + 127 in the exponent field (n is the difference of the mantissa bits).
    let pow2 = ((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32;
    er * f32::from_bits(pow2)
}

/// The constants of [`exp`] (Cephes `expf`), which the AVX-512 version shares.
pub(crate) mod expf {
    /// Adding 1.5·2²³ rounds to an integer held in the low mantissa bits.
    pub const ROUND: f32 = 12_582_912.0;
    /// `ln 2` in two parts, so that `x − n·ln 2` loses nothing.
    pub const LN2_HI: f32 = 0.693_359_4;
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    /// `ln 2⁻¹²⁶`: below it the result would leave the normal range.
    pub const MIN_X: f32 = -87.336_54;
    /// `eʳ ≈ 1 + r + r²·(POLY[0]·r⁵ + … + POLY[5])`, highest power first.
    pub const POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
}

#[cfg(test)]
mod tests {
    use super::exp;

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (got, want) = (exp(x), x.exp());
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, std {want}: {ulp} ulp");
            x += 0.001_3;
        }
        assert_eq!(exp(0.0), 1.0);
        // Far below the normal range it stays at the smallest normal float, never NaN or negative.
        for x in [-88.0, -1e4, f32::NEG_INFINITY] {
            let y = exp(x);
            assert!((y / f32::MIN_POSITIVE - 1.0).abs() < 1e-5, "exp({x}) = {y}");
        }
    }
}
