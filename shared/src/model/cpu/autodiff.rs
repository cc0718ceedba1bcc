//! The kernels of this module as operations of the CPU training backend, `Autodiff<Flex>`,
//! each with a backward of its own (burn's autodiff `Backward` API).
//!
//! Why: under autodiff, burn records attention, SwiGLU's gate and the RMS norm as chains of
//! generic ops, each a single-threaded pass with a scalar `exp` where it has one, and keeps
//! every intermediate (attention's scores twice) for the backward pass. Here each is one
//! node: the forward is the inference kernel, keeping only what the backward needs, and the
//! backward is written out (gemms and vectorised passes).

use std::fmt;
use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_flex::FlexTensor;

use super::attention::{QkvShape, RopeTables, attention, attention_backward, rotate_qk, unrotate_qk};
use super::linear::{MatRef, matmul, matmul_by_weight};
use super::norm::{rms_norm, rms_norm_backward};
use super::swiglu::{silu_mul, silu_mul_backward};
use super::{dense, flex_tensor, values};

/// The CPU training backend (the server's `CpuTrain`).
pub(crate) type AutodiffFlex = burn::backend::Autodiff<Flex>;

/// What attention's backward needs: the (rotated) projection and the softmax rows.
struct AttentionSaved {
    qkv: FlexTensor,
    probs: Vec<f32>,
    shape: QkvShape,
    rope: Option<(Vec<f32>, Vec<f32>)>,
}

impl fmt::Debug for AttentionSaved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttentionSaved({:?}, rope: {})", self.shape, self.rope.is_some())
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 1> for AttentionBackward {
    type State = Arc<AttentionSaved>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let [Some(parent)] = ops.parents else { return };
        let saved = ops.state;
        let QkvShape { batch, len, heads, head_dim } = saved.shape;
        let mut dqkv = attention_backward(values(&saved.qkv), &saved.probs, values(&grad), saved.shape);
        if let Some((cos, sin)) = &saved.rope {
            unrotate_qk(&mut dqkv, saved.shape, RopeTables { cos, sin });
        }
        grads.register::<Flex>(parent.id, flex_tensor(dqkv, [batch, len, 3 * heads, head_dim]));
    }
}

/// [`super::attention::attention_tensor`] on `Autodiff<Flex>`: `qkv: [B, L, 3·heads, hd]`
/// (before RoPE, applied here when `rope` is given) to `[B, L, heads·hd]`.
pub fn attention_autodiff(qkv: Tensor<AutodiffFlex, 4>, heads: usize, rope: Option<RopeTables<'_>>) -> Tensor<AutodiffFlex, 3> {
    let [batch, len, _, head_dim] = qkv.dims();
    let shape = QkvShape { batch, len, heads, head_dim };
    let qkv = qkv.into_primitive().tensor();
    let prep = AttentionBackward.prepare::<NoCheckpointing>([qkv.node.clone()]).compute_bound().stateful();
    // Rotated in place: nothing else holds a fresh projection (its matmul keeps its inputs).
    let mut qkv = dense(qkv.primitive);
    if let Some(rope) = rope {
        rotate_qk(qkv.storage_mut::<f32>(), shape, rope);
    }
    let out_shape = [batch, len, heads * head_dim];
    let out = match prep {
        OpsKind::Tracked(prep) => {
            let (out, probs) = attention(values(&qkv), shape, true);
            let probs = probs.expect("attention keeps the softmax when asked");
            let rope = rope.map(|r| (r.cos[..len * head_dim].to_vec(), r.sin[..len * head_dim].to_vec()));
            let saved = AttentionSaved { qkv, probs, shape, rope };
            prep.finish(Arc::new(saved), flex_tensor(out, out_shape))
        }
        OpsKind::UnTracked(prep) => prep.finish(flex_tensor(attention(values(&qkv), shape, false).0, out_shape)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct SiluMulBackward;

impl Backward<Flex, 1> for SiluMulBackward {
    /// `gate_up`.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let [Some(parent)] = ops.parents else { return };
        let gate_up = ops.state;
        let shape = gate_up.layout().shape().clone();
        let [_, _, inter2] = shape.dims::<3>();
        let d = silu_mul_backward(values(&gate_up), values(&grad), inter2 / 2);
        grads.register::<Flex>(parent.id, FlexTensor::from_data(TensorData::new(d, shape)));
    }
}

/// [`super::swiglu::silu_mul_tensor`] on `Autodiff<Flex>`: `silu(gate) · up` of
/// `gate_up: [B, L, 2·inter]`.
pub fn silu_mul_autodiff(gate_up: Tensor<AutodiffFlex, 3>) -> Tensor<AutodiffFlex, 3> {
    let [batch, len, inter2] = gate_up.dims();
    let gate_up = gate_up.into_primitive().tensor();
    let prep = SiluMulBackward.prepare::<NoCheckpointing>([gate_up.node.clone()]).compute_bound().stateful();
    let gate_up = dense(gate_up.primitive);
    let out = flex_tensor(silu_mul(values(&gate_up), inter2 / 2), [batch, len, inter2 / 2]);
    let out = match prep {
        OpsKind::Tracked(prep) => prep.finish(gate_up, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 1> for RmsNormBackward {
    /// The output, each row's `1/rms`, and the rows' width.
    type State = (FlexTensor, Arc<Vec<f32>>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let [Some(parent)] = ops.parents else { return };
        let (y, inv_rms, width) = ops.state;
        let shape = y.layout().shape().clone();
        let dx = rms_norm_backward(values(&y), &inv_rms, values(&grad), width);
        grads.register::<Flex>(parent.id, FlexTensor::from_data(TensorData::new(dx, shape)));
    }
}

/// [`super::norm::rms_norm_tensor`] on `Autodiff<Flex>`.
pub fn rms_norm_autodiff<const D: usize>(x: Tensor<AutodiffFlex, D>, eps: f64) -> Tensor<AutodiffFlex, D> {
    let shape = x.dims();
    let x = x.into_primitive().tensor();
    let prep = RmsNormBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful();
    let (y, inv_rms) = rms_norm(values(&dense(x.primitive)), shape[D - 1], eps);
    let y = flex_tensor(y, shape);
    let out = match prep {
        // The state shares the output's buffer: no copy.
        OpsKind::Tracked(prep) => prep.finish((y.clone(), Arc::new(inv_rms), shape[D - 1]), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 2> for LinearBackward {
    /// The input as `[rows, in]` (contiguous), its shape, and the weight `[in, out]`.
    type State = (FlexTensor, Shape, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let [x_node, w_node] = ops.parents;
        let (x, x_shape, weight) = ops.state;
        let w = MatRef::of(&weight);
        let rows = x_shape.num_elements() / w.rows.max(1);
        let dy = MatRef::rows(values(&grad), rows, w.cols);
        if let Some(node) = x_node {
            // dx = dy Wᵀ
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(matmul_by_weight(dy, &weight, true), x_shape)));
        }
        if let Some(node) = w_node {
            // dW = xᵀ dy
            let dw = matmul(MatRef::rows(values(&x), rows, w.rows).t(), dy);
            grads.register::<Flex>(node.id, flex_tensor(dw, [w.rows, w.cols]));
        }
    }
}

/// [`super::linear::linear_tensor`] on `Autodiff<Flex>`: `x @ weight` over the last axis.
pub fn linear_autodiff<const D: usize>(x: Tensor<AutodiffFlex, D>, weight: Tensor<AutodiffFlex, 2>) -> Tensor<AutodiffFlex, D> {
    let mut dims = x.dims();
    let [k, n] = weight.dims();
    let rows = dims[..D - 1].iter().product();
    let (x, w) = (x.into_primitive().tensor(), weight.into_primitive().tensor());
    let prep = LinearBackward.prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()]).compute_bound().stateful();
    let x_shape = x.primitive.layout().shape().clone();
    let x = dense(x.primitive);
    let out = matmul_by_weight(MatRef::rows(values(&x), rows, k), &w.primitive, false);
    dims[D - 1] = n;
    let out = flex_tensor(out, dims);
    let out = match prep {
        OpsKind::Tracked(prep) => prep.finish((x, x_shape, w.primitive), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;
    use burn::tensor::activation::silu;
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::{AutodiffFlex, attention_autodiff, linear_autodiff, rms_norm_autodiff, silu_mul_autodiff};
    use crate::model::cpu::attention::RopeTables;
    use crate::model::trm::Rope;

    type T<const D: usize> = Tensor<AutodiffFlex, D>;

    fn random(n: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-spread..spread)).collect()
    }

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> T<D> {
        Tensor::from_data(TensorData::new(values, shape), &Default::default()).require_grad()
    }

    /// The output and the input's gradient of `sum(f(x) ∘ w)` for a random weight `w`, so
    /// that every output element's gradient differs.
    fn value_and_grad<const D: usize, const E: usize>(x: &[f32], shape: [usize; D], seed: u64, f: impl Fn(T<D>) -> T<E>) -> (Vec<f32>, Vec<f32>) {
        let x = tensor(x.to_vec(), shape);
        let y = f(x.clone());
        let w: T<E> = Tensor::from_data(TensorData::new(random(y.shape().num_elements(), 1.0, seed), y.dims()), &Default::default());
        let grads = (y.clone() * w).sum().backward();
        let dx = x.grad(&grads).expect("x takes part in y");
        (y.into_data().into_vec().unwrap(), dx.into_data().into_vec().unwrap())
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-3);
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= tol * scale, "{what}: max |Δ| {worst} against max |x| {scale}");
    }

    #[test]
    fn attention_matches_burn_in_values_and_gradients() {
        // Lengths below, at and above the kernels' row blocks; with and without RoPE.
        for (i, &(batch, len, heads, hd, with_rope)) in
            [(1, 5, 1, 8, false), (2, 67, 2, 16, true), (1, 131, 3, 32, true), (2, 70, 1, 64, false), (1, 192, 1, 8, false), (1, 401, 2, 16, true)].iter().enumerate()
        {
            let shape = [batch, len, 3 * heads, hd];
            let qkv = random(shape.iter().product(), 2.0, i as u64);
            let rope = Rope::<AutodiffFlex>::new(hd, len, 10000.0, &Default::default());
            let (cos, sin) = rope.values(len);
            let tables = with_rope.then_some(RopeTables { cos: &cos, sin: &sin });
            let (got, got_grad) = value_and_grad(&qkv, shape, 100 + i as u64, |x| attention_autodiff(x, heads, tables));
            let (want, want_grad) = value_and_grad(&qkv, shape, 100 + i as u64, |x| {
                let x = if with_rope { rope.apply(x) } else { x };
                let part = |j: usize| x.clone().narrow(2, j * heads, heads).swap_dims(1, 2);
                let out = burn_attention(part(0), part(1), part(2), None, None, AttentionModuleOptions::default());
                out.swap_dims(1, 2).reshape([batch, len, heads * hd])
            });
            assert_close(&got, &want, 1e-5, &format!("attention {shape:?} rope {with_rope}"));
            assert_close(&got_grad, &want_grad, 1e-4, &format!("d qkv {shape:?} rope {with_rope}"));
        }
    }

    #[test]
    fn linear_matches_burn_in_values_and_gradients() {
        // A stored weight transposed in memory (as a checkpoint's `[out, in]` loads), and a
        // contiguous one; both gradients checked.
        let (shape, k, n) = ([2, 37, 24], 24, 40);
        let x = random(shape.iter().product(), 1.5, 11);
        for transposed in [false, true] {
            let w_values = random(k * n, 0.5, 12);
            let weight = || -> T<2> {
                if transposed {
                    tensor(w_values.clone(), [n, k]).transpose()
                } else {
                    tensor(w_values.clone(), [k, n])
                }
            };
            let (w1, w2) = (weight(), weight());
            let (got, got_dx) = value_and_grad(&x, shape, 13, |x| linear_autodiff(x, w1.clone()));
            let (want, want_dx) = value_and_grad(&x, shape, 13, |x| x.matmul(w2.clone().unsqueeze()));
            assert_close(&got, &want, 1e-5, "x @ W");
            assert_close(&got_dx, &want_dx, 1e-5, "d x");
        }
        // The weight's gradient: the same loss, differentiated with respect to W.
        let w_values = random(k * n, 0.5, 14);
        let xs: T<3> = Tensor::from_data(TensorData::new(x.clone(), shape), &Default::default());
        let (_, got_dw) = value_and_grad(&w_values, [k, n], 15, |w| linear_autodiff(xs.clone(), w));
        let (_, want_dw) = value_and_grad(&w_values, [k, n], 15, |w| xs.clone().matmul(w.unsqueeze()));
        assert_close(&got_dw, &want_dw, 1e-5, "d W");
    }

    #[test]
    fn silu_mul_matches_burn_in_values_and_gradients() {
        let (rows, inter) = (2 * 64 + 9, 20);
        let shape = [1, rows, 2 * inter];
        let gate_up = random(rows * 2 * inter, 12.0, 7);
        let (got, got_grad) = value_and_grad(&gate_up, shape, 8, silu_mul_autodiff);
        let (want, want_grad) = value_and_grad(&gate_up, shape, 8, |x| silu(x.clone().narrow(2, 0, inter)) * x.narrow(2, inter, inter));
        assert_close(&got, &want, 1e-6, "silu · up");
        assert_close(&got_grad, &want_grad, 1e-5, "d gate_up");
    }

    #[test]
    fn rms_norm_matches_burn_in_values_and_gradients() {
        let shape = [3, 70, 24];
        let x = random(shape.iter().product(), 5.0, 9);
        let eps = 1e-5;
        let (got, got_grad) = value_and_grad(&x, shape, 10, |x| rms_norm_autodiff(x, eps));
        let (want, want_grad) = value_and_grad(&x, shape, 10, |x| {
            let variance = x.clone().square().mean_dim(2);
            x * variance.add_scalar(eps).sqrt().recip()
        });
        assert_close(&got, &want, 1e-6, "rms norm");
        assert_close(&got_grad, &want_grad, 1e-5, "d x");
    }
}
