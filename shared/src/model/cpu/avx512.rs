//! AVX-512 versions of the row loops that call `exp`: the softmax's exponentials and SwiGLU's
//! sigmoid, forward and backward. The compiler does not vectorise [`super::exp`] well (it
//! keeps the polynomial's multiplies and adds apart, and the clamp and the exponent bits
//! cost extra moves), so these spell it out in intrinsics: the same Cephes polynomial with
//! fused multiply-adds, `2ⁿ` by `vscalefps`, 16 lanes and masked tails. They agree with the
//! portable loops to a few ulp (tests below), not bit for bit.
//!
//! Callers check [`available`] first; every function here requires AVX-512F.

use std::arch::x86_64::*;

/// Whether this CPU runs the functions of this module.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// The first `n` lanes of 16 (all 16 from `n = 16` on).
#[inline(always)]
pub(crate) fn mask(n: usize) -> __mmask16 {
    if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 }
}

/// The lanes of a 16-wide step at `i` of a loop over `n` values: all 16, or the tail's.
#[inline(always)]
fn lanes(i: usize, n: usize) -> __mmask16 {
    mask(n - i)
}

/// [`super::exp`] on 16 lanes (`x ≤ 0`; below −87.3 it gives about `2⁻¹²⁶`).
#[target_feature(enable = "avx512f")]
#[inline]
fn exp16(x: __m512) -> __m512 {
    use super::expf::*;
    let x = _mm512_max_ps(x, _mm512_set1_ps(MIN_X));
    // n = round(x·log₂e), by adding and subtracting ROUND.
    let n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), _mm512_set1_ps(ROUND)), _mm512_set1_ps(ROUND));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(POLY[0]);
    for &c in &POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let er = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(er, n)
}

/// `eˣ` (`x ≤ 0`) to a relative 6.3·10⁻⁶, for values rounded to bf16 next (steps of 2⁻⁸):
/// [`exp16`] with a degree-4 polynomial (fitted on `|r| ≤ ln2/2`, weighted for relative error)
/// and one `ln 2`, nine operations in place of thirteen.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp16_for_bf16(x: __m512) -> __m512 {
    use super::expf::{MIN_X, ROUND};
    const POLY: [f32; 3] = [0.040_917_39, 0.167_539_86, 0.500_089_35];
    let x = _mm512_max_ps(x, _mm512_set1_ps(MIN_X));
    let n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), _mm512_set1_ps(ROUND)), _mm512_set1_ps(ROUND));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(std::f32::consts::LN_2), x);
    // 1 + r·(1 + r·(POLY[2] + r·(POLY[1] + r·POLY[0])))
    let mut p = _mm512_fmadd_ps(_mm512_set1_ps(POLY[0]), r, _mm512_set1_ps(POLY[1]));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(POLY[2]));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0));
    _mm512_scalef_ps(p, n)
}

/// `σ(g)` as Flex computes it, `1/(1+e^-g)` for `g ≥ 0` and `e^g/(1+e^g)` below, so that
/// `exp` only sees `-|g|`.
#[target_feature(enable = "avx512f")]
#[inline]
fn sigmoid16(g: __m512) -> __m512 {
    let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(g)));
    let non_negative = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(g, _mm512_setzero_ps());
    let numerator = _mm512_mask_blend_ps(non_negative, e, _mm512_set1_ps(1.0));
    _mm512_div_ps(numerator, _mm512_add_ps(_mm512_set1_ps(1.0), e))
}

/// The largest value of `row` (−∞ when empty).
#[target_feature(enable = "avx512f")]
#[inline]
fn row_max(row: &[f32]) -> f32 {
    let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..row.len()).step_by(16) {
        // SAFETY: lanes past the row's end are masked off.
        max = _mm512_max_ps(max, unsafe { _mm512_mask_loadu_ps(max, lanes(i, row.len()), row.as_ptr().add(i)) });
    }
    _mm512_reduce_max_ps(max)
}

/// Each row (`len` wide) of `scores` becomes `exp(row − max(row))`; `sums` gets its sum.
///
/// # Safety
/// The CPU must have AVX-512F ([`available`]).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_rows(scores: &mut [f32], len: usize, sums: &mut [f32]) {
    for (row, sum) in scores.chunks_exact_mut(len).zip(sums.iter_mut()) {
        let max = _mm512_set1_ps(row_max(row));
        let p = row.as_mut_ptr();
        let mut total = _mm512_setzero_ps();
        for i in (0..len).step_by(16) {
            let m = lanes(i, len);
            let e = exp16(_mm512_sub_ps(unsafe { _mm512_maskz_loadu_ps(m, p.add(i)) }, max));
            unsafe { _mm512_mask_storeu_ps(p.add(i), m, e) };
            total = _mm512_mask_add_ps(total, m, total, e);
        }
        *sum = _mm512_reduce_add_ps(total);
    }
}

/// [`exp_rows`] with the exponentials ([`exp16_for_bf16`]) written as bf16 pairs (the left
/// operand of [`super::bf16_gemm`] whose rows run along `k`): row `r` as `len.div_ceil(2)`
/// words from `out[r · len.div_ceil(2)]`, value `2j` in the low half of word `j`, a lone last
/// value paired with 0. `scores` is left as it is; the sums are of the f32 exponentials.
///
/// # Safety
/// The CPU must have AVX-512 BF16; `out` must hold a row of words for every row of `scores`.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn exp_rows_bf16(scores: &[f32], len: usize, sums: &mut [f32], out: &mut [u32]) {
    let pairs = len.div_ceil(2);
    assert!(out.len() >= scores.len() / len.max(1) * pairs, "exp_rows_bf16: out holds fewer rows than scores");
    for (r, (row, sum)) in scores.chunks_exact(len).zip(sums.iter_mut()).enumerate() {
        let max = _mm512_set1_ps(row_max(row));
        let p = row.as_ptr();
        let mut total = _mm512_setzero_ps();
        let words = out[r * pairs..(r + 1) * pairs].as_mut_ptr();
        for i in (0..len).step_by(32) {
            // Lanes past `len` are 0, so that a lone last value pairs with 0.
            let (m_lo, m_hi) = (lanes(i, len), if i + 16 < len { lanes(i + 16, len) } else { 0 });
            let (x_lo, x_hi) = unsafe { (_mm512_maskz_loadu_ps(m_lo, p.add(i)), _mm512_maskz_loadu_ps(m_hi, p.add(i + 16))) };
            let lo = _mm512_maskz_mov_ps(m_lo, exp16_for_bf16(_mm512_sub_ps(x_lo, max)));
            let hi = _mm512_maskz_mov_ps(m_hi, exp16_for_bf16(_mm512_sub_ps(x_hi, max)));
            total = _mm512_add_ps(total, _mm512_add_ps(lo, hi));
            // SAFETY: 32 bf16 are 16 words, bit for bit.
            let packed = unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) };
            // SAFETY: word `i/2 + j` for `j < 16` is written only below `pairs`.
            unsafe { _mm512_mask_storeu_epi32(words.add(i / 2).cast(), mask(pairs - i / 2), packed) };
        }
        *sum = _mm512_reduce_add_ps(total);
    }
}

/// `out = g · σ(g) · u` lane by lane.
///
/// # Safety
/// The CPU must have AVX-512F ([`available`]); slices of unequal length panic.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn silu_mul_row(out: &mut [f32], gate: &[f32], up: &[f32]) {
    let n = out.len();
    assert!(gate.len() == n && up.len() == n, "silu_mul_row: rows of unequal length");
    for i in (0..n).step_by(16) {
        let m = lanes(i, n);
        // SAFETY (all accesses): lanes past `n` are masked off.
        let (g, u) = unsafe { (_mm512_maskz_loadu_ps(m, gate.as_ptr().add(i)), _mm512_maskz_loadu_ps(m, up.as_ptr().add(i))) };
        let o = _mm512_mul_ps(_mm512_mul_ps(g, sigmoid16(g)), u);
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), m, o) };
    }
}

/// The gradient of [`silu_mul_row`]: `d_up = dout · g · σ(g)`,
/// `d_gate = dout · up · σ(g) · (1 + g · (1 − σ(g)))`.
///
/// # Safety
/// The CPU must have AVX-512F ([`available`]); slices of unequal length panic.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn silu_mul_grad_row(d_gate: &mut [f32], d_up: &mut [f32], gate: &[f32], up: &[f32], dout: &[f32]) {
    let n = dout.len();
    assert!(d_gate.len() == n && d_up.len() == n && gate.len() == n && up.len() == n, "silu_mul_grad_row: rows of unequal length");
    let one = _mm512_set1_ps(1.0);
    for i in (0..n).step_by(16) {
        let m = lanes(i, n);
        // SAFETY (all accesses): lanes past `n` are masked off.
        let (g, u, d) = unsafe {
            (_mm512_maskz_loadu_ps(m, gate.as_ptr().add(i)), _mm512_maskz_loadu_ps(m, up.as_ptr().add(i)), _mm512_maskz_loadu_ps(m, dout.as_ptr().add(i)))
        };
        let s = sigmoid16(g);
        let du = _mm512_mul_ps(_mm512_mul_ps(d, g), s);
        let slope = _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, s)));
        let dg = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, u), s), slope);
        unsafe {
            _mm512_mask_storeu_ps(d_up.as_mut_ptr().add(i), m, du);
            _mm512_mask_storeu_ps(d_gate.as_mut_ptr().add(i), m, dg);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::arch::x86_64::*;

    use super::available;

    /// Values from `-spread` to `spread`, not a multiple of 16 long.
    fn wave(n: usize, spread: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 * spread - spread).collect()
    }

    /// `exp` (16 lanes) against `check(x, exp(x))` from −87 to 0 in small steps.
    fn sweep(exp: unsafe fn(__m512) -> __m512, check: impl Fn(f32, f32)) {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let xs: [f32; 16] = std::array::from_fn(|i| x - i as f32 * 1e-4);
            let mut got = [0.0f32; 16];
            // SAFETY: the callers check AVX-512F; 16 floats each way.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp(_mm512_loadu_ps(xs.as_ptr()))) };
            xs.iter().zip(got).for_each(|(&x, got)| check(x, got));
            x += 0.013;
        }
    }

    #[test]
    fn exp16_is_within_two_ulp_of_std() {
        if !available() {
            return;
        }
        sweep(super::exp16, |x, got| {
            let want = x.exp();
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {got}, std {want}: {ulp} ulp");
        });
    }

    #[test]
    fn exp16_for_bf16_is_within_its_bound() {
        if !available() {
            return;
        }
        sweep(super::exp16_for_bf16, |x, got| {
            let want = f64::from(x).exp();
            assert!((f64::from(got) / want - 1.0).abs() < 7e-6, "exp({x}) = {got}, exact {want}");
        });
    }

    #[test]
    fn row_loops_match_the_portable_ones() {
        if !available() {
            return;
        }
        // exp's few ulp, relative for the softmax's positive values, and against the size of
        // the terms for SwiGLU, whose `1 + g·(1 − σ)` cancels near g = −1.28.
        let close = |a: f32, b: f32| (a - b).abs() <= 4.0 * f32::EPSILON * b.abs();
        let near = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
        for len in [1, 15, 16, 17, 100, 916] {
            let scores = wave(3 * len, 30.0);
            let (mut got, mut want) = (scores.clone(), scores.clone());
            let (mut got_sums, mut want_sums) = (vec![0.0; 3], vec![0.0; 3]);
            // SAFETY: AVX-512F checked above.
            unsafe { super::exp_rows(&mut got, len, &mut got_sums) };
            crate::model::cpu::attention::exp_rows_portable(&mut want, len, &mut want_sums);
            assert!(got.iter().zip(&want).all(|(&a, &b)| close(a, b)), "exp_rows, len {len}");
            assert!(got_sums.iter().zip(&want_sums).all(|(&a, &b)| (a - b).abs() <= 1e-5 * b), "exp_rows sums, len {len}");

            let (gate, up, dout) = (wave(len, 40.0), wave(len + 3, 2.0)[3..].to_vec(), wave(len + 5, 1.0)[5..].to_vec());
            let (mut got, mut want) = (vec![0.0; len], vec![0.0; len]);
            // SAFETY: AVX-512F checked above; equal lengths.
            unsafe { super::silu_mul_row(&mut got, &gate, &up) };
            crate::model::cpu::swiglu::silu_mul_row_portable(&mut want, &gate, &up);
            assert!(got.iter().zip(&want).all(|(&a, &b)| near(a, b)), "silu_mul_row, len {len}");

            let (mut got_g, mut got_u, mut want_g, mut want_u) = (vec![0.0; len], vec![0.0; len], vec![0.0; len], vec![0.0; len]);
            // SAFETY: AVX-512F checked above; equal lengths.
            unsafe { super::silu_mul_grad_row(&mut got_g, &mut got_u, &gate, &up, &dout) };
            crate::model::cpu::swiglu::silu_mul_grad_row_portable(&mut want_g, &mut want_u, &gate, &up, &dout);
            assert!(got_g.iter().zip(&want_g).all(|(&a, &b)| near(a, b)), "silu_mul_grad_row d_gate, len {len}");
            assert!(got_u.iter().zip(&want_u).all(|(&a, &b)| near(a, b)), "silu_mul_grad_row d_up, len {len}");
        }
    }
}
