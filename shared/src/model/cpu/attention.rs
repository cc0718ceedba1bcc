//! Multi-head self-attention for the Flex backend, read straight from the fused `qkv`
//! projection and written straight in the layout `o_proj` takes.
//!
//! Why it exists: burn-flex 0.21's `attention` runs its (batch, head) loop on one thread,
//! applies the softmax element by element with scalar `exp` (a third of its time), and needs
//! contiguous `[B, H, L, hd]` copies of q, k and v plus one of its output. On the hidden-128
//! bench case (batch 8, 2 heads of 64, 916 tokens) attention was over half of an ACT step.
//! Here every (batch, block of query rows) is one rayon task that does, per head, one gemm for
//! the scores, a vectorised exact softmax (full rows: no online rescaling) and one gemm for
//! the values, reading q/k/v in place with strides. Inference only: it works on the values,
//! so it must not be used by an autodiff backend.

use burn::prelude::*;
use rayon::prelude::*;

use super::{exp, vectorised};

/// Query rows per task: the score block (`ROWS × L` f32, 234 KB at L = 916) and one head's
/// k and v stay in the 512 KB L2 of the project machine.
const ROWS: usize = 64;

/// Shape of a fused projection `qkv: [batch, len, 3·heads, head_dim]` (q heads, then k, then v).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QkvShape {
    /// `B`.
    pub batch: usize,
    /// `L`, positions.
    pub len: usize,
    /// `H`.
    pub heads: usize,
    /// `hd`.
    pub head_dim: usize,
}

/// Attention of a fused projection `qkv: [B, L, 3·heads, hd]` as `[B, L, heads·hd]`.
/// It computes on the values: call it on plain Flex only ([`super::is_flex`]).
pub fn attention_tensor<B: Backend>(qkv: Tensor<B, 4>, heads: usize) -> Tensor<B, 3> {
    let device = qkv.device();
    let [batch, len, _, head_dim] = qkv.dims();
    // Zero-copy when `qkv` is contiguous and not shared, as a fresh projection is.
    let data = qkv.into_data();
    let values = data.as_slice::<f32>().expect("Flex computes in f32");
    let out = attention(values, QkvShape { batch, len, heads, head_dim });
    Tensor::from_data(TensorData::new(out, [batch, len, heads * head_dim]), &device)
}

/// `softmax(q kᵀ / √hd) v` for every batch row and head, no mask; `qkv` contiguous in
/// [`QkvShape`]'s layout. Returns `[batch, len, heads, head_dim]`, contiguous.
pub fn attention(qkv: &[f32], shape: QkvShape) -> Vec<f32> {
    let QkvShape { batch, len, heads, head_dim } = shape;
    assert_eq!(qkv.len(), batch * len * 3 * heads * head_dim, "qkv does not match {shape:?}");
    let mut out = vec![0.0f32; batch * len * heads * head_dim];
    if out.is_empty() {
        return out;
    }
    let in_row = 3 * heads * head_dim;
    let out_row = heads * head_dim;
    // As burn computes it: 1/√hd in f64, then rounded to f32.
    let scale = (1.0 / (head_dim as f64).sqrt()) as f32;
    out.par_chunks_mut(len * out_row).enumerate().for_each(|(b, out_b)| {
        let qkv_b = &qkv[b * len * in_row..(b + 1) * len * in_row];
        out_b.par_chunks_mut(ROWS * out_row).enumerate().for_each(|(block, out_block)| {
            let rows = out_block.len() / out_row;
            let mut scores = vec![0.0f32; rows * len];
            let mut sums = vec![0.0f32; rows];
            for h in 0..heads {
                let q = &qkv_b[block * ROWS * in_row + h * head_dim..];
                let k = &qkv_b[(heads + h) * head_dim..];
                let v = &qkv_b[(2 * heads + h) * head_dim..];
                // SAFETY: every pointer/stride pair stays inside its slice: q rows
                // `block·ROWS..+rows`, k and v rows `0..len`, all `head_dim` wide at stride
                // `in_row`; `scores` is `rows × len`; `out_block` holds `rows` rows of `out_row`.
                unsafe {
                    // scores = scale · q kᵀ
                    gemm::gemm(
                        rows, len, head_dim,
                        scores.as_mut_ptr(), 1, len as isize, false,
                        q.as_ptr(), 1, in_row as isize,
                        k.as_ptr(), in_row as isize, 1,
                        0.0, scale, false, false, false, gemm::Parallelism::None,
                    );
                }
                exp_rows(&mut scores, len, &mut sums);
                let out_h = &mut out_block[h * head_dim..];
                // SAFETY: as above; the output rows are `head_dim` wide at stride `out_row`.
                unsafe {
                    // out = exp(scores - max) v, normalised below
                    gemm::gemm(
                        rows, head_dim, len,
                        out_h.as_mut_ptr(), 1, out_row as isize, false,
                        scores.as_ptr(), 1, len as isize,
                        v.as_ptr(), 1, in_row as isize,
                        0.0, 1.0, false, false, false, gemm::Parallelism::None,
                    );
                }
                for (r, sum) in sums.iter().enumerate() {
                    let inv = 1.0 / sum;
                    out_h[r * out_row..r * out_row + head_dim].iter_mut().for_each(|o| *o *= inv);
                }
            }
        });
    });
    out
}

/// Replaces each row (`len` wide) of `scores` by `exp(row - max(row))` and writes its sum.
fn exp_rows(scores: &mut [f32], len: usize, sums: &mut [f32]) {
    vectorised!(exp_rows_avx2(scores: &mut [f32], len: usize, sums: &mut [f32]) => exp_rows_portable(scores, len, sums))
}

/// Lanes of the partial maxima and sums: loops over `[f32; LANES]` accumulators vectorise,
/// a single running float does not (it would fix the order of the additions).
const LANES: usize = 8;

#[inline(always)]
fn exp_rows_portable(scores: &mut [f32], len: usize, sums: &mut [f32]) {
    for (row, sum) in scores.chunks_exact_mut(len).zip(sums.iter_mut()) {
        let mut maxes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &x) in maxes.iter_mut().zip(chunk) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = chunks.remainder().iter().chain(&maxes).fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        row.iter_mut().for_each(|x| *x = exp(*x - max));
        let mut partial = [0.0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (p, &x) in partial.iter_mut().zip(chunk) {
                *p += x;
            }
        }
        *sum = partial.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::{QkvShape, attention};
    use crate::model::Cpu;

    /// Uniform values in `[-spread, spread)`.
    fn random(n: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-spread..spread)).collect()
    }

    /// burn's attention on the q, k, v heads of `qkv`, returned as `[B, L, H, hd]`.
    fn burn_reference(qkv: &[f32], s: QkvShape) -> Vec<f32> {
        let device = Default::default();
        let t = Tensor::<Cpu, 4>::from_data(TensorData::new(qkv.to_vec(), [s.batch, s.len, 3 * s.heads, s.head_dim]), &device);
        let part = |i: usize| t.clone().narrow(2, i * s.heads, s.heads).swap_dims(1, 2);
        let out = burn_attention(part(0), part(1), part(2), None, None, AttentionModuleOptions::default());
        out.swap_dims(1, 2).into_data().iter::<f32>().collect()
    }

    #[test]
    fn matches_burn_attention_on_random_inputs() {
        // Lengths below, at and above the row block, and not multiples of the vector lanes.
        let shapes = [(1, 1, 1, 8), (2, 5, 1, 8), (1, 64, 2, 16), (3, 67, 3, 32), (2, 131, 2, 64), (1, 200, 1, 12)];
        for (i, &(batch, len, heads, head_dim)) in shapes.iter().enumerate() {
            let s = QkvShape { batch, len, heads, head_dim };
            // Spread 3 gives scores of several units: softmax rows far from uniform.
            let qkv = random(batch * len * 3 * heads * head_dim, 3.0, i as u64);
            let got = attention(&qkv, s);
            let want = burn_reference(&qkv, s);
            assert_eq!(got.len(), want.len());
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 2e-5, "{s:?}: max |Δ| {worst}");
        }
    }
}
