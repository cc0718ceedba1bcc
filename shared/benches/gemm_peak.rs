//! How fast gemm (the matmul under burn-flex and our CPU kernels) multiplies the shapes of the
//! bench cases' steps on this machine: GFLOP/s per shape, on all threads and on one, and the
//! linear layers' matmul at `--matmul bf16` (bf16 operands, f32 sums; where the CPU has
//! AVX-512 BF16). It bounds what `trm bench` can reach: a step's matmuls take at least their
//! FLOPs over these rates. `scripts/torch_matmul_peak.py` times `torch.mm` on the same shapes.
//!
//!     cargo bench -p trm-shared --bench gemm_peak

use std::time::Instant;

use trm_shared::model::cpu::linear::{MatRef, MatmulPrecision, bf16_available, matmul, set_matmul_precision};

/// `(m, k, n)`: `h128`'s linear layers (8 x 916 rows, and half of them per training worker),
/// `7m`'s (916 rows), attention's 64-row blocks of one 64-wide head, the size-general
/// model's layers (32 mazes of 16x16, hidden 32), and a large square.
const SHAPES: [(usize, usize, usize); 13] = [
    (7328, 128, 384),
    (7328, 128, 1024),
    (7328, 512, 128),
    (3664, 128, 1024),
    (916, 512, 1536),
    (916, 512, 3072),
    (916, 1536, 512),
    (64, 64, 916),
    (64, 916, 64),
    (916, 916, 64),
    (8192, 32, 256),
    (8192, 128, 32),
    (2048, 2048, 2048),
];

fn main() {
    println!("GFLOP/s, mean over all products and (in brackets) the best single product, which a");
    println!("VM whose speed drifts reads more steadily");
    let bf16 = bf16_available();
    println!("{:>18}  {:>20}  {:>20}  {:>20}", "m x k x n", "all threads", "one thread", "bf16, all threads");
    for (m, k, n) in SHAPES {
        let rates = [gemm::Parallelism::Rayon(0), gemm::Parallelism::None].map(|p| gflops(m, k, n, p));
        let cell = |(mean, best): (f64, f64)| format!("{mean:.1} ({best:.1})");
        let bf16_cell = if bf16 { cell(bf16_gflops(m, k, n)) } else { "no AVX-512 BF16".into() };
        println!("{:>18}  {:>20}  {:>20}  {:>20}", format!("{m}x{k}x{n}"), cell(rates[0]), cell(rates[1]), bf16_cell);
    }
}

/// [`gflops`] of the linear layers' `matmul` at bf16 (threads as the layers use them).
fn bf16_gflops(m: usize, k: usize, n: usize) -> (f64, f64) {
    set_matmul_precision(MatmulPrecision::Bf16).expect("AVX-512 BF16 checked by the caller");
    let (a, b) = operands(m, k, n);
    let rates = time(m, k, n, || {
        std::hint::black_box(matmul(MatRef::rows(&a, m, k), MatRef::rows(&b, k, n)));
    });
    set_matmul_precision(MatmulPrecision::F32).expect("f32 is always there");
    rates
}

/// GFLOP/s of `[m, k] @ [k, n]`, row-major, after one untimed product, about 2·10¹⁰ FLOP
/// timed: the mean over all products and that of the fastest one.
fn gflops(m: usize, k: usize, n: usize, parallelism: gemm::Parallelism) -> (f64, f64) {
    let (a, b) = operands(m, k, n);
    let mut c = vec![0.0f32; m * n];
    let product = || {
        // SAFETY: `a`, `b` and `c` are `m×k`, `k×n` and `m×n`, row-major, as the strides say.
        unsafe {
            gemm::gemm(
                m, n, k,
                c.as_mut_ptr(), 1, n as isize, false,
                a.as_ptr(), 1, k as isize,
                b.as_ptr(), 1, n as isize,
                0.0, 1.0, false, false, false, parallelism,
            );
        }
    };
    let rates = time(m, k, n, product);
    std::hint::black_box(&c);
    rates
}

/// Row-major `[m, k]` and `[k, n]` operands.
fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    ((0..m * k).map(|i| (i % 7) as f32 * 0.25).collect(), (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect())
}

/// The mean and best GFLOP/s of `product` (an `m x k x n` matmul) after one untimed run,
/// about 2·10¹⁰ FLOP timed.
fn time(m: usize, k: usize, n: usize, mut product: impl FnMut()) -> (f64, f64) {
    product();
    let flop = 2.0 * (m * k * n) as f64;
    let repeats = ((2e10 / flop) as usize).max(3);
    let (mut total, mut best) = (0.0f64, f64::INFINITY);
    for _ in 0..repeats {
        let start = Instant::now();
        product();
        let took = start.elapsed().as_secs_f64();
        (total, best) = (total + took, best.min(took));
    }
    (flop * repeats as f64 / total / 1e9, flop / best / 1e9)
}
