//! Random initialisation as the reference does it (for new models, tests and benchmarks).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ModelError;
use super::weights::{Init, WeightSource};

/// Fills every tensor as the reference's constructors would: JAX-style truncated normals
/// (`trunc_normal_init_`), zero puzzle embeddings, `q_head` W = 0 and b = -5.
pub struct RandomInit {
    rng: ChaCha8Rng,
}

impl RandomInit {
    /// A deterministic source seeded with `seed`.
    pub fn new(seed: u64) -> RandomInit {
        RandomInit { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// A standard normal truncated to [-2, 2], scaled so that the result has std `std`.
    ///
    /// The reference draws `erfinv` of a uniform on `[erf(-√2), erf(√2)]`; rejection from a
    /// Box–Muller normal gives the same distribution without an `erfinv`.
    fn trunc_normal(&mut self, std: f64) -> f32 {
        // Same constants as the reference: the std of N(0,1) truncated to ±2 is 0.87963,
        // so the draw is scaled by std / 0.87963.
        let sqrt2 = std::f64::consts::SQRT_2;
        let (lower, upper) = (-2.0f64, 2.0f64);
        let a = erf(lower / sqrt2);
        let b = erf(upper / sqrt2);
        let z = (b - a) / 2.0;
        let c = (2.0 * std::f64::consts::PI).powf(-0.5);
        let pdf_u = c * (-0.5 * lower * lower).exp();
        let pdf_l = c * (-0.5 * upper * upper).exp();
        let comp_std = std / (1.0 - (upper * pdf_u - lower * pdf_l) / z - ((pdf_u - pdf_l) / z).powi(2)).sqrt();
        loop {
            let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = self.rng.random::<f64>();
            let n = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            if (lower..=upper).contains(&n) {
                return (n * comp_std) as f32;
            }
        }
    }
}

/// The error function by its Taylor series (std has none); accurate to ~1e-15 for |x| ≤ 3,
/// which covers the only use: the truncation constants at ±2σ.
fn erf(x: f64) -> f64 {
    // Taylor series: erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)).
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0u32;
    while n < 200 {
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 {
            break;
        }
        n += 1;
        term *= -x * x / n as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

impl WeightSource for RandomInit {
    fn take(&mut self, _name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>, ModelError> {
        let n: usize = shape.iter().product();
        Ok(match init {
            Init::Zeros => vec![0.0; n],
            Init::Constant(v) => vec![v; n],
            Init::TruncNormal(std) if std == 0.0 => vec![0.0; n],
            Init::TruncNormal(std) => (0..n).map(|_| self.trunc_normal(std)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        assert!((erf(2.0f64.sqrt()) - 0.954_499_736_103_641_6).abs() < 1e-12);
        assert!((erf(1.0) - 0.842_700_792_949_714_9).abs() < 1e-12);
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 1e-12);
    }

    #[test]
    fn trunc_normal_has_the_requested_std_and_bounds() {
        let mut src = RandomInit::new(7);
        let v = src.take("w", &[200, 100], Init::TruncNormal(0.5)).unwrap();
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.01, "std {}", var.sqrt());
        // Clipped at 2 * comp_std = 2 * 1.1369 * 0.5.
        assert!(v.iter().all(|x| x.abs() <= 1.137));
        assert!(v.iter().any(|x| x.abs() > 1.0));
    }
}
