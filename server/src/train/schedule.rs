//! The reference's learning-rate schedule (`cosine_schedule_with_warmup_lr_lambda` in
//! `pretrain.py`), shared by both optimizers.
//!
//! Steps count from 1 (the reference increments its step before computing the rate), so
//! the first step already gets `base / warmup`:
//! ```text
//! step < warmup:  base · step / max(1, warmup)
//! otherwise:      base · (r + max(0, (1 − r) · ½ (1 + cos(π · progress))))
//!                 progress = (step − warmup) / max(1, total − warmup)
//! ```
//! With `lr_min_ratio` r = 1 (the reference default) the rate is constant after warmup.

/// Warmup then cosine decay to `base · min_ratio`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub base: f64,
    /// Steps of linear warmup.
    pub warmup_steps: u64,
    /// Total optimizer steps of the run.
    pub total_steps: u64,
    /// Final rate as a share of `base`.
    pub min_ratio: f64,
}

impl LrSchedule {
    /// The learning rate of optimizer step `step` (1-based).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let progress = (step - self.warmup_steps) as f64 / self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let r = self.min_ratio;
        let cosine = (1.0 - r) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.base * (r + cosine.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_linear_from_step_one() {
        let s = LrSchedule { base: 1e-3, warmup_steps: 4, total_steps: 12, min_ratio: 0.1 };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(1) - 2.5e-4).abs() < 1e-18);
        assert!((s.lr(3) - 7.5e-4).abs() < 1e-18);
        // Step == warmup: progress 0, full rate.
        assert!((s.lr(4) - 1e-3).abs() < 1e-18);
    }

    #[test]
    fn cosine_by_hand() {
        let s = LrSchedule { base: 1e-3, warmup_steps: 4, total_steps: 12, min_ratio: 0.1 };
        // progress = (8 − 4)/8 = ½: cos(π/2) = 0 → 1e-3·(0.1 + 0.9·0.5) = 5.5e-4.
        assert!((s.lr(8) - 5.5e-4).abs() < 1e-15);
        // progress = ¼: 0.1 + 0.45·(1 + √2/2) = 0.86820...
        let want = 1e-3 * (0.1 + 0.45 * (1.0 + std::f64::consts::FRAC_1_SQRT_2));
        assert!((s.lr(6) - want).abs() < 1e-15);
        // End: the floor, and it stays there (cos past π climbs back; the reference does too,
        // but only because it never steps past total).
        assert!((s.lr(12) - 1e-4).abs() < 1e-15);
    }

    #[test]
    fn min_ratio_one_is_constant_and_no_warmup_starts_at_base() {
        let s = LrSchedule { base: 1e-4, warmup_steps: 0, total_steps: 100, min_ratio: 1.0 };
        for step in [0, 1, 50, 100] {
            assert!((s.lr(step) - 1e-4).abs() < 1e-18, "step {step}");
        }
        // Degenerate totals do not divide by zero.
        let s = LrSchedule { base: 1.0, warmup_steps: 5, total_steps: 3, min_ratio: 0.0 };
        assert!(s.lr(7).is_finite());
    }
}
