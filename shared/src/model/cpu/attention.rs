//! Multi-head self-attention for the Flex backend, read straight from the fused `qkv`
//! projection and written straight in the layout `o_proj` takes.
//!
//! Why it exists: burn-flex 0.21's `attention` runs its (batch, head) loop on one thread,
//! applies the softmax element by element with scalar `exp` (a third of its time), and needs
//! contiguous `[B, H, L, hd]` copies of q, k and v plus one of its output. On the hidden-128
//! bench case (batch 8, 2 heads of 64, 916 tokens) attention was over half of an ACT step.
//! Here every (batch row, head, block of query rows) is one rayon task that does one gemm for
//! the scores, a vectorised exact softmax (full rows: no online rescaling) and one gemm for
//! the values, reading q/k/v in place with strides. It works on the values: training reaches
//! it through [`super::autodiff`], which keeps the softmax rows for [`attention_backward`].

use std::cell::RefCell;

use burn::prelude::*;
use rayon::prelude::*;

use super::linear::{MatRef, Prepared, matmul_into, matmul_prepared_into};
use super::{LANES, dot, exp, from_plain, plain, values, vectorised};

/// Query rows per task: under f32 each task's gemm packs its head's k and v again, so blocks as large
/// as the 1 MiB L2 of the project machine's cores allows (the score block is `ROWS × L` f32,
/// 703 KB at L = 916); 64 rows made attention 7% slower there.
const ROWS: usize = 192;

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

/// RoPE tables for the kernels: `cos` and `sin` of the angles, `[len, head_dim]` row-major,
/// both halves of a row holding the same angles (`cat(freqs, freqs)`).
#[derive(Debug, Clone, Copy)]
pub struct RopeTables<'a> {
    /// `cos`, `[len, head_dim]`.
    pub cos: &'a [f32],
    /// `sin`, `[len, head_dim]`.
    pub sin: &'a [f32],
}

/// Attention of a fused projection `qkv: [B, L, 3·heads, hd]` as `[B, L, heads·hd]`, RoPE
/// applied to the q and k heads first when `rope` is given.
/// It computes on the values: call it on plain Flex only ([`super::is_flex`]).
pub fn attention_tensor<B: Backend>(qkv: Tensor<B, 4>, heads: usize, rope: Option<RopeTables<'_>>) -> Tensor<B, 3> {
    let [batch, len, _, head_dim] = qkv.dims();
    let shape = QkvShape { batch, len, heads, head_dim };
    let mut qkv = plain(qkv);
    if let Some(rope) = rope {
        rotate_qk(qkv.storage_mut::<f32>(), shape, rope);
    }
    from_plain(attention(values(&qkv), shape, false).0, [batch, len, heads * head_dim])
}

/// RoPE on the q and k heads of `qkv` (`[B, L, 3·heads, hd]`, contiguous), in place:
/// `x·cos + rotate_half(x)·sin` with `rotate_half(x) = cat(-x₂, x₁)`, each product rounded
/// as burn's element-wise ops round them. The v heads are left as they are.
pub fn rotate_qk(qkv: &mut [f32], shape: QkvShape, rope: RopeTables<'_>) {
    rotate(qkv, shape, rope, 1.0);
}

/// The transpose of [`rotate_qk`] on a gradient of `qkv`, in place: what flows back to the
/// q and k heads before the rotation (the v heads' gradient is left as it is). A rotation's
/// transpose is the rotation by the opposite angle: the same with `-sin`.
pub fn unrotate_qk(dqkv: &mut [f32], shape: QkvShape, rope: RopeTables<'_>) {
    rotate(dqkv, shape, rope, -1.0);
}

/// [`rotate_qk`] with `sign · sin` for `sin` (`sign` ±1: exact, so the forward rounds as burn).
fn rotate(qkv: &mut [f32], shape: QkvShape, rope: RopeTables<'_>, sign: f32) {
    let QkvShape { len, heads, head_dim, .. } = shape;
    let half = head_dim / 2;
    let in_row = 3 * heads * head_dim;
    check_tables(shape, rope);
    qkv.par_chunks_mut(in_row).enumerate().for_each(|(row, x)| {
        let t = row % len;
        let (cos, sin) = (&rope.cos[t * head_dim..(t + 1) * head_dim], &rope.sin[t * head_dim..(t + 1) * head_dim]);
        for head in x[..2 * heads * head_dim].chunks_exact_mut(head_dim) {
            for j in 0..half {
                let (a, b) = (head[j], head[j + half]);
                head[j] = a * cos[j] + -b * (sign * sin[j]);
                head[j + half] = b * cos[j + half] + a * (sign * sin[j + half]);
            }
        }
    });
}

fn check_tables(shape: QkvShape, rope: RopeTables<'_>) {
    let need = shape.len * shape.head_dim;
    assert!(rope.cos.len() >= need && rope.sin.len() >= need, "RoPE tables shorter than {} positions", shape.len);
    assert!(shape.head_dim % 2 == 0, "RoPE needs an even head width, not {}", shape.head_dim);
}

/// `softmax(q kᵀ / √hd) v` for every batch row and head, no mask; `qkv` contiguous in
/// [`QkvShape`]'s layout. Returns `[batch, len, heads, head_dim]`, contiguous, and with
/// `keep_probs` the softmax rows as `[B, L, H, L]`, for [`attention_backward`].
pub fn attention(qkv: &[f32], shape: QkvShape, keep_probs: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let QkvShape { batch, len, heads, head_dim } = shape;
    assert_eq!(qkv.len(), batch * len * 3 * heads * head_dim, "qkv does not match {shape:?}");
    // Every value of `out` and of `probs` is written below: no zeroing of megabytes first.
    let mut out = Vec::with_capacity(batch * len * heads * head_dim);
    let probs_row = heads * len;
    let mut probs: Option<Vec<f32>> = keep_probs.then(|| Vec::with_capacity(batch * len * probs_row));
    if out.capacity() == 0 {
        return (out, probs);
    }
    let in_row = 3 * heads * head_dim;
    let out_row = heads * head_dim;
    // One task per (batch row, head, block of query rows), blocks innermost: a thread's run
    // of tasks reads one head's k and v over and over (they stay in L2). Even at batch 1
    // there are enough tasks to keep both threads busy to the end.
    let blocks = len.div_ceil(ROWS);
    let out_ptr = SharedOut(out.as_mut_ptr());
    let probs_ptr = probs.as_mut().map(|p| SharedOut(p.as_mut_ptr()));
    // As burn computes it: 1/√hd in f64, then rounded to f32.
    let scale = (1.0 / (head_dim as f64).sqrt()) as f32;
    // Heads read in place: `head_dim` wide at stride `in_row`.
    let head = |b: usize, offset, rows| MatRef { data: &qkv[b * len * in_row..(b + 1) * len * in_row], offset, rows, cols: head_dim, row_stride: in_row, col_stride: 1 };
    // Each head's kᵀ and v made ready once for all its blocks of query rows.
    let keys_values: Vec<(Prepared<'_>, Prepared<'_>)> = (0..batch * heads)
        .into_par_iter()
        .map(|t| {
            let (b, h) = (t / heads, t % heads);
            (Prepared::new(head(b, (heads + h) * head_dim, len).t(), false), Prepared::new(head(b, (2 * heads + h) * head_dim, len), false))
        })
        .collect();
    (0..batch * heads * blocks).into_par_iter().for_each(|task| {
        with_scratch(&SCORES, ROWS * len, |scores| {
            // The Sync wrapper, not its raw pointer, is what the closure must capture.
            let out_ptr = &out_ptr;
            let (b, h, block) = (task / (heads * blocks), task / blocks % heads, task % blocks);
            let first = block * ROWS;
            let rows = ROWS.min(len - first);
            let mut sums = [0.0f32; ROWS];
            let (scores, sums) = (&mut scores[..rows * len], &mut sums[..rows]);
            let q = head(b, first * in_row + h * head_dim, rows);
            let (k_t, v) = &keys_values[b * heads + h];
            // scores = scale · q kᵀ
            // SAFETY: `scores` holds `rows × len`, this task's own.
            unsafe { matmul_prepared_into(q, k_t, scale, scores.as_mut_ptr(), len, false) };
            let out_h = out_ptr.0.wrapping_add((b * len + first) * out_row + h * head_dim);
            // out = exp(scores - max) v, whose rows are normalised after (fewer products:
            // `head_dim` a row, not `len`)
            #[cfg(target_arch = "x86_64")]
            if probs_ptr.is_none()
                && let Some(v) = v.packed()
            {
                // Under bf16, with no softmax to keep: the exponentials go straight to bf16.
                // SAFETY: packed only where the CPU has AVX-512 BF16; `v` has `len` rows;
                // this task alone writes rows `first..first + rows`, columns of head `h`, of
                // batch row `b` of `out` (`head_dim` wide at stride `out_row`).
                unsafe {
                    super::bf16_gemm::exp_rows_times(scores, rows, len, sums, v, 1.0, out_h, out_row);
                    normalise_rows(out_h, out_row, head_dim, sums);
                }
                return;
            }
            exp_rows(scores, len, sums);
            if let Some(probs) = &probs_ptr {
                // The softmax itself, kept for the backward pass: rows `first..` of head `h`.
                for (r, sum) in sums.iter().enumerate() {
                    // SAFETY: this task alone writes row `first + r`, head `h` of batch row `b`,
                    // inside the capacity reserved above.
                    let dst = unsafe { std::slice::from_raw_parts_mut(probs.0.add((b * len + first + r) * probs_row + h * len), len) };
                    scale_into(dst, &scores[r * len..(r + 1) * len], 1.0 / sum);
                }
            }
            // SAFETY: this task alone writes rows `first..first + rows`, columns of head `h`,
            // of batch row `b` of `out` (`head_dim` wide at stride `out_row`).
            unsafe {
                matmul_prepared_into(MatRef::rows(scores, rows, len), v, 1.0, out_h, out_row, false);
                normalise_rows(out_h, out_row, head_dim, sums);
            }
        })
    });
    // SAFETY: the tasks above wrote every row of every head of every batch row of both.
    unsafe {
        out.set_len(batch * len * heads * head_dim);
        if let Some(p) = probs.as_mut() {
            p.set_len(batch * len * probs_row);
        }
    }
    (out, probs)
}

/// The gradient of [`attention`]'s `qkv` (in its layout) from the gradient of its output
/// `dout: [B, L, H·hd]`, given the same `qkv` and the `probs` that [`attention`] kept. Per
/// (batch row, head), with `P` the softmax and `S = scale · q kᵀ`:
/// `dv = Pᵀ dout`, `dP = dout vᵀ`, `dS = P ∘ (dP − rowsum(P ∘ dP))`,
/// `dq = scale · dS k`, `dk = scale · dSᵀ q`: four gemms and one pass over `dP`.
pub fn attention_backward(qkv: &[f32], probs: &[f32], dout: &[f32], shape: QkvShape) -> Vec<f32> {
    let QkvShape { batch, len, heads, head_dim } = shape;
    let in_row = 3 * heads * head_dim;
    let out_row = heads * head_dim;
    let probs_row = heads * len;
    assert_eq!(qkv.len(), batch * len * in_row, "qkv does not match {shape:?}");
    assert_eq!(probs.len(), batch * len * probs_row, "probs does not match {shape:?}");
    assert_eq!(dout.len(), batch * len * out_row, "dout does not match {shape:?}");
    // Every value is written below (the q, k and v columns of every head): no zeroing first.
    let mut dqkv = Vec::with_capacity(qkv.len());
    if qkv.is_empty() {
        return dqkv;
    }
    let scale = (1.0 / (head_dim as f64).sqrt()) as f32;
    // Each (batch row, head) writes its own head_dim-wide columns of dq, dk and dv.
    let dst = SharedOut(dqkv.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each(|task| with_scratch(&SCORE_GRADS, len * len, |dp| {
        let (b, h) = (task / heads, task % heads);
        let qkv_b = &qkv[b * len * in_row..(b + 1) * len * in_row];
        let head = |offset| MatRef { data: qkv_b, offset, rows: len, cols: head_dim, row_stride: in_row, col_stride: 1 };
        let (q, k, v) = (head(h * head_dim), head((heads + h) * head_dim), head((2 * heads + h) * head_dim));
        let p = MatRef { data: probs, offset: b * len * probs_row + h * len, rows: len, cols: len, row_stride: probs_row, col_stride: 1 };
        let dout_h = MatRef { data: dout, offset: b * len * out_row + h * head_dim, rows: len, cols: head_dim, row_stride: out_row, col_stride: 1 };
        // The Sync wrapper, not its raw pointer, is what the closure must capture.
        let dst = &dst;
        // SAFETY: `dp` is this task's `len × len`; each task writes only the q, k and v columns
        // of head `h` in batch row `b` of `dqkv` (`head_dim` wide at stride `in_row`), which no
        // other task touches.
        unsafe {
            let d_b = dst.0.add(b * len * in_row);
            // dP = dout vᵀ
            matmul_into(dout_h, v.t(), 1.0, dp.as_mut_ptr(), len, false);
            softmax_grad_rows(dp, &probs[p.offset..], len, probs_row);
            let ds = MatRef::rows(dp, len, len);
            // dq = scale · dS k
            matmul_into(ds, k, scale, d_b.add(h * head_dim), in_row, false);
            // dk = scale · dSᵀ q
            matmul_into(ds.t(), q, scale, d_b.add((heads + h) * head_dim), in_row, false);
            // dv = Pᵀ dout
            matmul_into(p.t(), dout_h, 1.0, d_b.add((2 * heads + h) * head_dim), in_row, false);
        }
    }));
    // SAFETY: the tasks above wrote the q, k and v columns of every head of every batch row.
    unsafe { dqkv.set_len(qkv.len()) };
    dqkv
}

thread_local! {
    /// A rayon thread's score block in [`attention`], kept from call to call.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A rayon thread's `dP` in [`attention_backward`], kept from call to call.
    static SCORE_GRADS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the first `n` values of this thread's `scratch` (grown as needed, never
/// zeroed again: `f` writes before it reads). The buffers of these kernels are megabytes a
/// task; allocating and zeroing them for every rayon split was 2% of a training step.
fn with_scratch(scratch: &'static std::thread::LocalKey<RefCell<Vec<f32>>>, n: usize, f: impl FnOnce(&mut [f32])) {
    scratch.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < n {
                buffer.resize(n, 0.0);
            }
            f(&mut buffer[..n]);
        }
        // Only if a task ever ran inside another on this thread: a buffer of its own then.
        Err(_) => f(&mut vec![0.0; n]),
    });
}

/// Divides each of `sums.len()` rows (`width` wide at stride `stride` from `out`) by its sum.
///
/// # Safety
/// The rows must be inside one allocation that nothing else reads or writes meanwhile.
unsafe fn normalise_rows(out: *mut f32, stride: usize, width: usize, sums: &[f32]) {
    for (r, sum) in sums.iter().enumerate() {
        let inv = 1.0 / sum;
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(out.add(r * stride), width) }.iter_mut().for_each(|o| *o *= inv);
    }
}

/// An output written by parallel tasks at disjoint offsets.
struct SharedOut(*mut f32);
// SAFETY: the tasks that share it write disjoint elements (see `attention`, `attention_backward`).
unsafe impl Sync for SharedOut {}

/// `dst = factor · src`.
fn scale_into(dst: &mut [f32], src: &[f32], factor: f32) {
    vectorised!(scale_into_avx2(dst: &mut [f32], src: &[f32], factor: f32) => scale_into_portable(dst, src, factor))
}

#[inline(always)]
fn scale_into_portable(dst: &mut [f32], src: &[f32], factor: f32) {
    dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x * factor);
}

/// `dP ← P ∘ (dP − rowsum(P ∘ dP))` row by row: the softmax's backward. `dp` rows are `len`
/// wide and contiguous, `p` rows `len` wide at stride `p_stride`.
fn softmax_grad_rows(dp: &mut [f32], p: &[f32], len: usize, p_stride: usize) {
    vectorised!(softmax_grad_rows_avx2(dp: &mut [f32], p: &[f32], len: usize, p_stride: usize) => softmax_grad_rows_portable(dp, p, len, p_stride))
}

#[inline(always)]
fn softmax_grad_rows_portable(dp: &mut [f32], p: &[f32], len: usize, p_stride: usize) {
    for (r, row) in dp.chunks_exact_mut(len).enumerate() {
        let p = &p[r * p_stride..r * p_stride + len];
        let dot = dot(row, p);
        row.iter_mut().zip(p).for_each(|(d, &pv)| *d = pv * (*d - dot));
    }
}

/// Replaces each row (`len` wide) of `scores` by `exp(row - max(row))` and writes its sum.
fn exp_rows(scores: &mut [f32], len: usize, sums: &mut [f32]) {
    vectorised!(avx512 super::avx512::exp_rows; exp_rows_avx2(scores: &mut [f32], len: usize, sums: &mut [f32]) => exp_rows_portable(scores, len, sums))
}

#[inline(always)]
pub(super) fn exp_rows_portable(scores: &mut [f32], len: usize, sums: &mut [f32]) {
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
        let shapes = [(1, 1, 1, 8), (2, 5, 1, 8), (1, 64, 2, 16), (3, 67, 3, 32), (2, 131, 2, 64), (1, 192, 1, 8), (1, 200, 1, 12), (1, 401, 2, 16)];
        for (i, &(batch, len, heads, head_dim)) in shapes.iter().enumerate() {
            let s = QkvShape { batch, len, heads, head_dim };
            // Spread 3 gives scores of several units: softmax rows far from uniform.
            let qkv = random(batch * len * 3 * heads * head_dim, 3.0, i as u64);
            let want = burn_reference(&qkv, s);
            // Keeping the softmax for the backward pass changes nothing in the output.
            let (kept, probs) = attention(&qkv, s, true);
            let probs = probs.expect("probs kept");
            assert_eq!(probs.len(), batch * len * heads * len);
            for got in [attention(&qkv, s, false).0, kept] {
                assert_eq!(got.len(), want.len());
                let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(worst < 2e-5, "{s:?}: max |Δ| {worst}");
            }
            for row in probs.chunks_exact(len) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{s:?}: a kept softmax row sums to {}", row.iter().sum::<f32>());
            }
        }
    }
}
