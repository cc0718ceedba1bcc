//! The CPU matmuls at `MatmulPrecision::Bf16` (bf16 operands, f32 sums) against the same
//! computations in f32: attention forward and backward, the linear layers, and a whole ACT
//! step of a model. The precision is process-wide, so these tests live in a binary of their
//! own and take turns on one lock. On a CPU without AVX-512 BF16 they check that bf16 is
//! refused with a clear error instead.

use std::sync::Mutex;

use burn::prelude::*;
use trm_shared::model::cpu::attention::{QkvShape, attention, attention_backward};
use trm_shared::model::cpu::linear::{MatRef, MatmulPrecision, bf16_available, matmul, set_matmul_precision};
use trm_shared::model::{Cpu, RandomInit, Trm, TrmConfig};

static PRECISION: Mutex<()> = Mutex::new(());

/// `f` at f32, then at bf16 (both results); `None` where the CPU has no AVX-512 BF16.
fn both<T>(f: impl Fn() -> T) -> Option<(T, T)> {
    let _turn = PRECISION.lock().unwrap_or_else(|e| e.into_inner());
    if !bf16_available() {
        let err = set_matmul_precision(MatmulPrecision::Bf16).unwrap_err();
        assert!(err.to_string().contains("AVX-512 BF16"), "{err}");
        return None;
    }
    set_matmul_precision(MatmulPrecision::F32).unwrap();
    let f32_result = f();
    set_matmul_precision(MatmulPrecision::Bf16).unwrap();
    let bf16_result = f();
    set_matmul_precision(MatmulPrecision::F32).unwrap();
    Some((f32_result, bf16_result))
}

fn wave(n: usize, seed: u64, spread: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * spread
        })
        .collect()
}

/// The largest difference over the largest value: bf16 keeps 8 significant bits (2⁻⁹
/// relative per operand), summed errors stay within a few times that.
fn relative_gap(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale
}

#[test]
fn linear_matmuls_in_bf16_stay_within_bf16_rounding_of_f32() {
    let (m, k, n) = (300, 200, 190);
    let a = wave(m * k, 1, 1.0);
    let w = wave(k * n, 2, 0.1);
    // Forward, and both backward products (transposed operands).
    let products = || {
        let x = MatRef::rows(&a, m, k);
        let w = MatRef::rows(&w, k, n);
        let y = matmul(x, w);
        let dx = matmul(MatRef::rows(&y, m, n), w.t());
        let dw = matmul(x.t(), MatRef::rows(&y, m, n));
        (y, dx, dw)
    };
    let Some(((y, dx, dw), (y16, dx16, dw16))) = both(products) else { return };
    for (what, got, want) in [("y", &y16, &y), ("dx", &dx16, &dx), ("dw", &dw16, &dw)] {
        let gap = relative_gap(got, want);
        assert!(gap < 2e-2, "{what}: relative gap {gap}");
        assert!(gap > 1e-6, "{what}: bf16 gave f32's values: the bf16 path did not run");
    }
}

#[test]
fn attention_in_bf16_stays_within_bf16_rounding_of_f32() {
    // Several query blocks, a head width that is not a multiple of 32, an odd length.
    let shape = QkvShape { batch: 2, len: 401, heads: 2, head_dim: 40 };
    let qkv = wave(shape.batch * shape.len * 3 * shape.heads * shape.head_dim, 3, 1.0);
    let dout = wave(shape.batch * shape.len * shape.heads * shape.head_dim, 4, 1.0);
    let run = || {
        let (out, probs) = attention(&qkv, shape, true);
        let dqkv = attention_backward(&qkv, &probs.unwrap(), &dout, shape);
        (out, dqkv)
    };
    let Some(((out, dqkv), (out16, dqkv16))) = both(run) else { return };
    let (gap_out, gap_grad) = (relative_gap(&out16, &out), relative_gap(&dqkv16, &dqkv));
    assert!(gap_out < 2e-2 && gap_grad < 3e-2, "relative gaps: out {gap_out}, dqkv {gap_grad}");
    assert!(gap_out > 1e-6 && gap_grad > 1e-6, "bf16 gave f32's values: the bf16 path did not run");
}

#[test]
fn an_act_step_in_bf16_gives_the_f32_answer() {
    let config = TrmConfig { hidden_size: 128, num_heads: 2, puzzle_emb_ndim: 128, ..TrmConfig::tiny(64, 1) };
    let device = Default::default();
    let model = Trm::<Cpu>::build(&config, &mut RandomInit::new(7), &device).unwrap();
    let tokens: Vec<i64> = (0..2 * 64).map(|i| [2, 1, 2, 2, 1, 3, 4][i % 7]).collect();
    let step = || {
        let inputs = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(tokens.clone(), [2, 64]), &device);
        let ids = Tensor::<Cpu, 1, Int>::zeros([2], &device);
        let (_, out) = model.forward(model.initial_carry(2), inputs, ids);
        let logits: Vec<f32> = out.logits.into_data().to_vec().unwrap();
        let q: Vec<f32> = out.q_halt.into_data().to_vec().unwrap();
        (logits, q)
    };
    let Some(((logits, q), (logits16, q16))) = both(step) else { return };
    let gap = relative_gap(&logits16, &logits);
    assert!(gap < 5e-2, "logits: relative gap {gap}");
    assert!(gap > 1e-6, "bf16 gave f32's values: the bf16 path did not run");
    let argmax = |v: &[f32]| -> Vec<usize> {
        v.chunks(6).map(|c| c.iter().enumerate().fold(0, |best, (i, x)| if *x > c[best] { i } else { best })).collect()
    };
    let (a, b) = (argmax(&logits), argmax(&logits16));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same * 100 >= a.len() * 95, "bf16 changed the predicted token of {} of {} cells", a.len() - same, a.len());
    assert!(q.iter().zip(&q16).all(|(a, b)| (a - b).abs() < 5e-2 * a.abs().max(1.0)), "q_halt {q:?} vs {q16:?}");
}
