//! The reference's `ACTLossHead` (`models/losses.py`): stablemax cross-entropy per token,
//! averaged per row over valid tokens and summed over rows, plus half the binary
//! cross-entropy of `q_halt` against "the whole answer is right"; and the step metrics.
//!
//! The token loss is computed in f64 as the reference does (`logits.to(torch.float64)`).
//! Beyond the reference, the negative branch of stablemax reads `min(x, 0)`: its value is
//! unchanged where it is selected, and where it is not (x ≥ 0) its gradient can no longer
//! overflow to `inf · 0 = NaN` — so the loss is stable in f32 too, and exactly the
//! reference's in value.

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::log_sigmoid;

/// Label id that marks a token without a target. The reference maps the dataset's
/// `ignore_label_id` (0, the pad token) to -100 when loading; labels here are token ids, so
/// both 0 and negative values are ignored.
pub const IGNORE_BELOW: i64 = 1;

/// The reference's stablemax transform `s(x) = x + 1` for x ≥ 0, else `1 / (1 - x + 1e-30)`.
pub fn stablemax_s<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let positive = x.clone().greater_equal_elem(0.0);
    let pos = x.clone().add_scalar(1.0);
    // (1 - x) + 1e-30 in the reference's order; x clamped so the unused branch stays finite.
    let neg = x.clamp_max(0.0).neg().add_scalar(1.0).add_scalar(1e-30).recip();
    neg.mask_where(positive, pos)
}

/// Per-token stablemax cross-entropy `-log(s(x)_label / Σ s(x))`, in f64, zero where
/// `valid` is false. `logits: [B, S, V]`, `labels: [B, S]` (any value where invalid).
pub fn stablemax_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    valid: Tensor<B, 2, Bool>,
) -> Tensor<B, 2> {
    let [b, s, _] = logits.dims();
    let x = logits.cast(FloatDType::F64);
    let sx = stablemax_s(x);
    let log_total = sx.clone().sum_dim(2).log();
    let safe_labels = labels.mask_fill(valid.clone().bool_not(), 0);
    let log_label = sx.gather(2, safe_labels.reshape([b, s, 1])).log();
    let ce = (log_total - log_label).reshape([b, s]);
    ce.mask_fill(valid.bool_not(), 0.0)
}

/// `BCEWithLogits(x, y)` per element: `-(y·log σ(x) + (1 − y)·log σ(−x))`.
///
/// Written with burn's `log_sigmoid`, which is stable for large |x| and has its own backward,
/// so the gradient is exactly `σ(x) − y` everywhere (the `max(x, 0) − x·y + log1p(e^−|x|)`
/// form has kinks whose subgradients give a wrong value at x = 0).
pub fn bce_with_logits<B: Backend>(x: Tensor<B, 1>, y: Tensor<B, 1>) -> Tensor<B, 1> {
    let pos = log_sigmoid(x.clone());
    let neg = log_sigmoid(x.neg());
    (y.clone() * pos + y.neg().add_scalar(1.0) * neg).neg()
}

/// The losses of one ACT step (sums over rows, not yet divided by the batch size) and the
/// metric sums over the rows that halted at this step.
#[derive(Debug, Clone)]
pub struct ActLoss<B: Backend> {
    /// `lm_loss + 0.5 · q_halt_loss`, f64, a scalar `[1]` with gradient.
    pub loss: Tensor<B, 1>,
    /// Metric sums, still on the device (read them with [`ActLoss::metrics`]).
    sums: Tensor<B, 1>,
}

/// Sums over the halted rows of one step, as the reference's `metrics` dict.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricSums {
    /// Rows that halted at this step and have at least one label.
    pub count: f64,
    /// Σ over those rows of their share of correct tokens.
    pub accuracy: f64,
    /// Those rows whose every token is right.
    pub exact_accuracy: f64,
    /// Those rows where `(q_halt ≥ 0) == seq_is_correct`.
    pub q_halt_accuracy: f64,
    /// Σ of their ACT step counts.
    pub steps: f64,
    /// Σ over all rows of the mean token loss (every row, halted or not).
    pub lm_loss: f64,
    /// Σ over all rows of the Q-halt BCE.
    pub q_halt_loss: f64,
}

impl MetricSums {
    /// Adds another step's sums (for averaging over a logging window or an eval).
    pub fn add(&mut self, o: &MetricSums) {
        self.count += o.count;
        self.accuracy += o.accuracy;
        self.exact_accuracy += o.exact_accuracy;
        self.q_halt_accuracy += o.q_halt_accuracy;
        self.steps += o.steps;
        self.lm_loss += o.lm_loss;
        self.q_halt_loss += o.q_halt_loss;
    }

    /// Metrics per halted row (accuracies, steps) and losses per row of `rows` (the
    /// global batch size, as the reference divides them).
    pub fn means(&self, rows: f64) -> MetricMeans {
        let per = |v: f64| if self.count > 0.0 { v / self.count } else { f64::NAN };
        let per_row = |v: f64| if rows > 0.0 { v / rows } else { f64::NAN };
        MetricMeans {
            count: self.count,
            accuracy: per(self.accuracy),
            exact_accuracy: per(self.exact_accuracy),
            q_halt_accuracy: per(self.q_halt_accuracy),
            steps: per(self.steps),
            lm_loss: per_row(self.lm_loss),
            q_halt_loss: per_row(self.q_halt_loss),
        }
    }
}

/// Metrics as the reference logs them (`train/accuracy`, ...): divided by `count`, losses by
/// the number of rows. `NaN` when no row halted.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricMeans {
    /// Halted rows the means are over.
    pub count: f64,
    /// Token accuracy.
    pub accuracy: f64,
    /// Share of rows entirely right.
    pub exact_accuracy: f64,
    /// Share of rows whose halting decision matched their correctness.
    pub q_halt_accuracy: f64,
    /// Mean ACT steps taken.
    pub steps: f64,
    /// Token loss per row.
    pub lm_loss: f64,
    /// Q-halt loss per row.
    pub q_halt_loss: f64,
}

impl<B: Backend> ActLoss<B> {
    /// Reads the metric sums back from the device.
    pub fn metrics(&self) -> MetricSums {
        let v: Vec<f64> = self.sums.clone().into_data().convert::<f64>().iter::<f64>().collect();
        MetricSums {
            count: v[0],
            accuracy: v[1],
            exact_accuracy: v[2],
            q_halt_accuracy: v[3],
            steps: v[4],
            lm_loss: v[5],
            q_halt_loss: v[6],
        }
    }
}

/// The reference's `ACTLossHead.forward` after the model call.
///
/// `logits: [B, S, V]`, `q_halt: [B]`, `labels: [B, S]` of the rows' current data,
/// `halted` and `steps` from the new carry.
pub fn act_loss<B: Backend>(
    logits: Tensor<B, 3>,
    q_halt: Tensor<B, 1>,
    labels: Tensor<B, 2, Int>,
    halted: Tensor<B, 1, Bool>,
    steps: Tensor<B, 1, Int>,
) -> ActLoss<B> {
    let [b, s, _] = logits.dims();
    let valid = labels.clone().greater_equal_elem(IGNORE_BELOW);
    let counts = valid.clone().int().sum_dim(1).reshape([b]);
    let divisor = counts.clone().clamp_min(1).float();

    // Metrics (no gradient).
    let preds = logits.clone().detach().argmax(2).reshape([b, s]);
    let is_correct = preds.equal(labels.clone()).bool_and(valid.clone());
    let correct = is_correct.int().sum_dim(1).reshape([b]);
    let seq_is_correct = correct.clone().equal(counts.clone());
    let halted_valid = halted.bool_and(counts.greater_elem(0));
    let q_right = q_halt.clone().detach().greater_equal_elem(0.0).int().equal(seq_is_correct.clone().int());
    let hv = halted_valid.clone().float();
    let token_share = correct.float() / divisor.clone();

    // Losses: lm per row in f64, averaged over its valid tokens.
    let ce = stablemax_cross_entropy(logits, labels, valid);
    let lm_loss = (ce.sum_dim(1).reshape([b]) / divisor.cast(FloatDType::F64)).sum();
    let target = seq_is_correct.clone().float();
    let q_halt_loss = bce_with_logits(q_halt, target).sum();
    let loss = lm_loss.clone() + q_halt_loss.clone().cast(FloatDType::F64).mul_scalar(0.5);

    let sums = Tensor::cat(
        vec![
            hv.clone().sum(),
            (token_share * hv.clone()).sum(),
            (seq_is_correct.float() * hv.clone()).sum(),
            (q_right.float() * hv.clone()).sum(),
            (steps.float() * hv).sum(),
            lm_loss.detach().cast(FloatDType::F32),
            q_halt_loss.detach(),
        ],
        0,
    );
    ActLoss { loss, sums }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::CpuTrain;
    use burn::backend::Flex;

    type B = Flex;

    fn t3(v: Vec<f32>, shape: [usize; 3]) -> Tensor<B, 3> {
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }
    fn i2(v: Vec<i64>, shape: [usize; 2]) -> Tensor<B, 2, Int> {
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }
    fn vals<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().iter::<f64>().collect()
    }

    /// The reference formula written out on the host, in f64.
    fn reference_ce(row: &[f64], label: usize) -> f64 {
        let s: Vec<f64> = row.iter().map(|&x| if x >= 0.0 { x + 1.0 } else { 1.0 / (1.0 - x + 1e-30) }).collect();
        let total: f64 = s.iter().sum();
        -(s[label] / total).ln()
    }

    #[test]
    fn stablemax_s_matches_the_formula_on_both_branches() {
        let x: Tensor<B, 1> = Tensor::from_floats([-3.0, -0.5, 0.0, 0.25, 7.0], &Default::default());
        let got = vals(stablemax_s(x));
        let want = [0.25, 1.0 / 1.5, 1.0, 1.25, 8.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn cross_entropy_is_f64_and_matches_the_reference_formula() {
        let logits = vec![0.5f32, -1.0, 2.0, -0.25, 3.0, -4.0, 0.0, 1.5, -2.0, 0.75, 0.1, -0.1];
        let labels = vec![2i64, 0, 3, 0];
        let t = t3(logits.clone(), [2, 2, 3]);
        let l = i2(labels.clone(), [2, 2]);
        let valid = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 1, 0, 1], [2, 2]), &Default::default()).equal_elem(1);
        // Label 3 is out of range for V = 3: an invalid token must not be gathered from.
        let ce = stablemax_cross_entropy(t, l, valid);
        assert_eq!(ce.dtype(), burn::tensor::DType::F64);
        let got = vals(ce);
        let rows: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
        let want = [reference_ce(&rows[0..3], 2), reference_ce(&rows[3..6], 0), 0.0, reference_ce(&rows[9..12], 0)];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "got {got:?} want {want:?}");
        }
    }

    #[test]
    fn act_loss_and_metrics_by_hand() {
        // Two rows of two cells, vocab 3. Row 0: both cells right; row 1: cell 1 wrong.
        // Row 1's cell 0 has label 0 (ignored).
        let logits = t3(vec![0.0, 2.0, 1.0, 0.0, 0.0, 3.0, 1.0, 0.0, 2.0, 0.0, 5.0, 0.0], [2, 2, 3]);
        let labels = i2(vec![1, 2, 0, 2], [2, 2]);
        let q_halt: Tensor<B, 1> = Tensor::from_floats([0.5, 1.0], &Default::default());
        let halted = Tensor::<B, 1, Int>::from_ints([1, 1], &Default::default()).equal_elem(1);
        let steps = Tensor::<B, 1, Int>::from_ints([3, 5], &Default::default());
        let out = act_loss(logits, q_halt, labels, halted, steps);
        let m = out.metrics();
        assert_eq!(m.count, 2.0);
        assert!((m.accuracy - 1.0).abs() < 1e-6, "row 0: 2/2, row 1: 0/1 → {m:?}");
        assert_eq!(m.exact_accuracy, 1.0);
        // Row 0: q ≥ 0 and correct → right; row 1: q ≥ 0 but wrong → wrong.
        assert_eq!(m.q_halt_accuracy, 1.0);
        assert_eq!(m.steps, 8.0);
        let lm = (reference_ce(&[0.0, 2.0, 1.0], 1) + reference_ce(&[0.0, 0.0, 3.0], 2)) / 2.0
            + reference_ce(&[0.0, 5.0, 0.0], 2);
        let bce = |x: f64, y: f64| x.max(0.0) - x * y + (-x.abs()).exp().ln_1p();
        let q = bce(0.5, 1.0) + bce(1.0, 0.0);
        assert!((m.lm_loss - lm).abs() < 1e-5, "{} vs {lm}", m.lm_loss);
        assert!((m.q_halt_loss - q).abs() < 1e-5, "{} vs {q}", m.q_halt_loss);
        let total = vals(out.loss)[0];
        assert!((total - (lm + 0.5 * q)).abs() < 1e-5);
    }

    #[test]
    fn metrics_count_only_halted_rows_but_losses_count_all() {
        let logits = t3(vec![0.0, 2.0, 1.0, 0.0, 0.0, 3.0], [2, 1, 3]);
        let labels = i2(vec![1, 1], [2, 1]);
        let q_halt: Tensor<B, 1> = Tensor::from_floats([-1.0, -1.0], &Default::default());
        let halted = Tensor::<B, 1, Int>::from_ints([0, 1], &Default::default()).equal_elem(1);
        let steps = Tensor::<B, 1, Int>::from_ints([2, 4], &Default::default());
        let m = act_loss(logits, q_halt, labels, halted, steps).metrics();
        assert_eq!(m.count, 1.0);
        assert_eq!(m.exact_accuracy, 0.0);
        assert_eq!(m.q_halt_accuracy, 1.0, "row 1 is wrong and q < 0");
        assert_eq!(m.steps, 4.0);
        let lm = reference_ce(&[0.0, 2.0, 1.0], 1) + reference_ce(&[0.0, 0.0, 3.0], 1);
        assert!((m.lm_loss - lm).abs() < 1e-5);
    }

    #[test]
    fn gradient_flows_through_the_f64_loss_and_is_finite_at_large_logits() {
        type A = CpuTrain;
        let dev = Default::default();
        // Large positive logits would make the unclamped negative branch's gradient overflow.
        let raw = vec![1.0f32, 1e20, -3.0, 0.5, 2.0, -1e20];
        let logits = Tensor::<A, 3>::from_data(TensorData::new(raw.clone(), [1, 2, 3]), &dev).require_grad();
        let labels = Tensor::<A, 2, Int>::from_data(TensorData::new(vec![1i64, 2], [1, 2]), &dev);
        let q = Tensor::<A, 1>::from_floats([0.0], &dev).require_grad();
        let halted = Tensor::<A, 1, Int>::from_ints([1], &dev).equal_elem(1);
        let steps = Tensor::<A, 1, Int>::from_ints([1], &dev);
        let out = act_loss(logits.clone(), q.clone(), labels, halted, steps);
        let grads = out.loss.backward();
        let g: Vec<f32> = logits.grad(&grads).unwrap().into_data().iter::<f32>().collect();
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
        // Analytic gradient of the second token (label 2, x = [0.5, 2, -1e20]) / 2 tokens:
        // d/dx_j [log Σs - log s_label] = s'_j/Σs - [j = label] s'_j/s_j.
        let s = [1.5f64, 3.0, 1.0 / (1.0 + 1e20)];
        let total: f64 = s.iter().sum();
        let want0 = (1.0 / total) / 2.0;
        assert!((g[3] as f64 - want0).abs() < 1e-6, "{g:?}");
        // q_halt: sigmoid(0) - target(0: the row is wrong, predicted label 1 ≠ 2 at token 1) = 0.5, times 0.5.
        let gq: Vec<f32> = q.grad(&grads).unwrap().into_data().iter::<f32>().collect();
        assert!((gq[0] - 0.25).abs() < 1e-6, "{gq:?}");
    }
}
