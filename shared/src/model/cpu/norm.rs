//! The reference's weightless RMS norm for the Flex backend, forward and backward.
//!
//! Why it exists: burn's version is five element-wise ops (square, mean, add, sqrt, recip,
//! then the product), each a pass over the tensor on one thread; here one pass over row
//! blocks on rayon threads.

use burn::prelude::*;
use rayon::prelude::*;

use super::{dot, from_plain, plain, rows_per_task, values, vectorised};

/// `x / √(mean(x²) + eps)` over the last axis of `x`.
/// It computes on the values: call it on plain Flex only ([`super::is_flex`]).
pub fn rms_norm_tensor<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    let shape = x.dims();
    let (y, _) = rms_norm(values(&plain(x)), shape[D - 1], eps);
    from_plain(y, shape)
}

/// Rows of `x` (`width` wide) normalised, and each row's `1/rms`.
pub fn rms_norm(x: &[f32], width: usize, eps: f64) -> (Vec<f32>, Vec<f32>) {
    let rows = if width == 0 { 0 } else { x.len() / width };
    let mut y = vec![0.0f32; x.len()];
    let mut inv_rms = vec![0.0f32; rows];
    if rows == 0 {
        return (y, inv_rms);
    }
    // As burn adds it: the f64 epsilon rounded to f32.
    let eps = eps as f32;
    let rows = rows_per_task(width, x.len());
    if rows * width >= x.len() {
        norm_rows(&mut y, &mut inv_rms, x, width, eps);
    } else {
        y.par_chunks_mut(rows * width).zip(inv_rms.par_chunks_mut(rows)).zip(x.par_chunks(rows * width)).for_each(|((y, inv), x)| {
            norm_rows(y, inv, x, width, eps);
        });
    }
    (y, inv_rms)
}

fn norm_rows(y: &mut [f32], inv: &mut [f32], x: &[f32], width: usize, eps: f32) {
    vectorised!(norm_rows_avx2(y: &mut [f32], inv: &mut [f32], x: &[f32], width: usize, eps: f32) => norm_rows_portable(y, inv, x, width, eps))
}

#[inline(always)]
fn norm_rows_portable(y: &mut [f32], inv: &mut [f32], x: &[f32], width: usize, eps: f32) {
    for ((y, inv), x) in y.chunks_exact_mut(width).zip(inv.iter_mut()).zip(x.chunks_exact(width)) {
        let r = 1.0 / (dot(x, x) / width as f32 + eps).sqrt();
        *inv = r;
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * r);
    }
}

/// The gradient of [`rms_norm`]'s input from its output `y`, the rows' `1/rms` and the
/// output's gradient `dy`: `dx = (dy − y · mean(dy ∘ y)) / rms`.
pub fn rms_norm_backward(y: &[f32], inv_rms: &[f32], dy: &[f32], width: usize) -> Vec<f32> {
    assert_eq!(y.len(), dy.len(), "the gradient does not match the output");
    let mut dx = vec![0.0f32; y.len()];
    if dx.is_empty() {
        return dx;
    }
    let rows = rows_per_task(width, y.len());
    if rows * width >= y.len() {
        norm_grad_rows(&mut dx, y, dy, inv_rms, width);
    } else {
        dx.par_chunks_mut(rows * width).zip(y.par_chunks(rows * width)).zip(dy.par_chunks(rows * width)).zip(inv_rms.par_chunks(rows)).for_each(
            |(((dx, y), dy), inv)| norm_grad_rows(dx, y, dy, inv, width),
        );
    }
    dx
}

fn norm_grad_rows(dx: &mut [f32], y: &[f32], dy: &[f32], inv: &[f32], width: usize) {
    vectorised!(norm_grad_rows_avx2(dx: &mut [f32], y: &[f32], dy: &[f32], inv: &[f32], width: usize) => norm_grad_rows_portable(dx, y, dy, inv, width))
}

#[inline(always)]
fn norm_grad_rows_portable(dx: &mut [f32], y: &[f32], dy: &[f32], inv: &[f32], width: usize) {
    for (((dx, y), dy), &r) in dx.chunks_exact_mut(width).zip(y.chunks_exact(width)).zip(dy.chunks_exact(width)).zip(inv) {
        let mean = dot(dy, y) / width as f32;
        dx.iter_mut().zip(y).zip(dy).for_each(|((dx, &y), &dy)| *dx = r * (dy - y * mean));
    }
}
