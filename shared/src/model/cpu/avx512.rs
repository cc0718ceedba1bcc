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

/// Each row (`len` wide) of `scores` becomes `exp(row − max(row))`; `sums` gets its sum.
///
/// # Safety
/// The CPU must have AVX-512F ([`available`]).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_rows(scores: &mut [f32], len: usize, sums: &mut [f32]) {
    for (row, sum) in scores.chunks_exact_mut(len).zip(sums.iter_mut()) {
        let p = row.as_mut_ptr();
        let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..len).step_by(16) {
            // SAFETY (all accesses): lanes past `len` are masked off.
            max = _mm512_max_ps(max, unsafe { _mm512_mask_loadu_ps(max, lanes(i, len), p.add(i)) });
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
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

    #[test]
    fn exp16_is_within_two_ulp_of_std() {
        if !available() {
            return;
        }
        let mut x = -87.0f32;
        while x <= 0.0 {
            let xs: [f32; 16] = std::array::from_fn(|i| x - i as f32 * 1e-4);
            let mut got = [0.0f32; 16];
            // SAFETY: AVX-512F checked above; 16 floats each way.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), super::exp16(_mm512_loadu_ps(xs.as_ptr()))) };
            for (x, got) in xs.iter().zip(got) {
                let want = x.exp();
                let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
                assert!(ulp <= 2, "exp({x}) = {got}, std {want}: {ulp} ulp");
            }
            x += 0.013;
        }
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
