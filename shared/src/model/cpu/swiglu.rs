//! SwiGLU's `silu(gate) * up` for the Flex backend, on the whole `gate_up` projection.
//!
//! Why it exists: on Flex, `silu` and `*` are two single-threaded passes with a scalar `exp`
//! each element. Here one pass over row blocks on
//! rayon threads, with a vectorised `exp`, reads both halves of one `gate_up` matmul.

use burn::prelude::*;
use rayon::prelude::*;

use super::{exp, vectorised};

use super::{from_plain, plain, rows_per_task, values};

/// `silu(gate) * up` of `gate_up: [B, L, 2·inter]` (gate the first half) as `[B, L, inter]`.
/// It computes on the values: call it on plain Flex only ([`super::is_flex`]).
pub fn silu_mul_tensor<B: Backend>(gate_up: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, len, inter2] = gate_up.dims();
    let out = silu_mul(values(&plain(gate_up)), inter2 / 2);
    from_plain(out, [batch, len, inter2 / 2])
}

/// Rows of `gate_up` (`2·inter` wide: gate, then up) to rows of `silu(gate) · up`.
pub fn silu_mul(gate_up: &[f32], inter: usize) -> Vec<f32> {
    assert_eq!(gate_up.len() % (2 * inter).max(1), 0, "rows of gate_up must be 2·{inter} wide");
    let mut out = vec![0.0f32; gate_up.len() / 2];
    if out.is_empty() {
        return out;
    }
    let rows = rows_per_task(2 * inter, gate_up.len());
    let work = |(out, gate_up): (&mut [f32], &[f32])| {
        for (o, row) in out.chunks_exact_mut(inter).zip(gate_up.chunks_exact(2 * inter)) {
            silu_mul_row(o, &row[..inter], &row[inter..]);
        }
    };
    if rows * 2 * inter >= gate_up.len() {
        work((&mut out, gate_up));
    } else {
        out.par_chunks_mut(rows * inter).zip(gate_up.par_chunks(rows * 2 * inter)).for_each(work);
    }
    out
}

fn silu_mul_row(out: &mut [f32], gate: &[f32], up: &[f32]) {
    vectorised!(avx512 super::avx512::silu_mul_row; silu_mul_row_avx2(out: &mut [f32], gate: &[f32], up: &[f32]) => silu_mul_row_portable(out, gate, up))
}

/// `g · sigmoid(g) · u`, with sigmoid as Flex computes it: `1/(1+e^-g)` for `g ≥ 0`,
/// `e^g/(1+e^g)` below, so `exp` only ever sees `-|g|`.
#[inline(always)]
pub(super) fn silu_mul_row_portable(out: &mut [f32], gate: &[f32], up: &[f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let e = exp(-g.abs());
        let sigmoid = if g >= 0.0 { 1.0 } else { e } / (1.0 + e);
        *o = g * sigmoid * u;
    }
}

/// The gradient of [`silu_mul`]'s `gate_up` from its output's gradient `dout`:
/// `d gate = dout · up · σ(g) · (1 + g · (1 − σ(g)))`, `d up = dout · g · σ(g)`.
pub fn silu_mul_backward(gate_up: &[f32], dout: &[f32], inter: usize) -> Vec<f32> {
    assert_eq!(gate_up.len(), 2 * dout.len(), "the gradient does not match gate_up");
    let mut d = vec![0.0f32; gate_up.len()];
    if d.is_empty() {
        return d;
    }
    let rows = rows_per_task(2 * inter, gate_up.len());
    let work = |((d, gate_up), dout): ((&mut [f32], &[f32]), &[f32])| {
        for ((d, row), dout) in d.chunks_exact_mut(2 * inter).zip(gate_up.chunks_exact(2 * inter)).zip(dout.chunks_exact(inter)) {
            let (d_gate, d_up) = d.split_at_mut(inter);
            silu_mul_grad_row(d_gate, d_up, &row[..inter], &row[inter..], dout);
        }
    };
    if rows * 2 * inter >= gate_up.len() {
        work(((&mut d, gate_up), dout));
    } else {
        d.par_chunks_mut(rows * 2 * inter).zip(gate_up.par_chunks(rows * 2 * inter)).zip(dout.par_chunks(rows * inter)).for_each(work);
    }
    d
}

fn silu_mul_grad_row(d_gate: &mut [f32], d_up: &mut [f32], gate: &[f32], up: &[f32], dout: &[f32]) {
    vectorised!(avx512 super::avx512::silu_mul_grad_row; silu_mul_grad_row_avx2(d_gate: &mut [f32], d_up: &mut [f32], gate: &[f32], up: &[f32], dout: &[f32]) => silu_mul_grad_row_portable(d_gate, d_up, gate, up, dout))
}

#[inline(always)]
pub(super) fn silu_mul_grad_row_portable(d_gate: &mut [f32], d_up: &mut [f32], gate: &[f32], up: &[f32], dout: &[f32]) {
    for ((((dg, du), &g), &u), &d) in d_gate.iter_mut().zip(d_up.iter_mut()).zip(gate).zip(up).zip(dout) {
        let e = exp(-g.abs());
        let sigmoid = if g >= 0.0 { 1.0 } else { e } / (1.0 + e);
        *du = d * g * sigmoid;
        *dg = d * u * sigmoid * (1.0 + g * (1.0 - sigmoid));
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;
    use burn::tensor::activation::silu;

    use super::silu_mul;
    use crate::model::Cpu;

    #[test]
    fn matches_burn_silu_times_up() {
        // Rows across several tasks and a ragged last one; gates from -100 to 100.
        let (rows, inter) = (3 * 64 + 5, 24);
        let gate_up: Vec<f32> = (0..rows * 2 * inter).map(|i| ((i * 7919) % 2001) as f32 / 10.0 - 100.0).collect();
        let got = silu_mul(&gate_up, inter);
        let t = Tensor::<Cpu, 2>::from_data(TensorData::new(gate_up, [rows, 2 * inter]), &Default::default());
        let want: Vec<f32> = (silu(t.clone().narrow(1, 0, inter)) * t.narrow(1, inter, inter)).into_data().iter::<f32>().collect();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "element {i}: {a} vs {b}");
        }
    }
}
