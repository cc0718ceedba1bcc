//! The page's benchmark: the same N ACT steps timed on each local backend (WebGPU, the CPU
//! worker), halting ignored so that both do the same work, after one warm-up step. Plain
//! Rust (tested on the host); the timing runs through [`crate::act_steps::ActSteps::time_each`].

/// ACT steps timed when the page opens.
pub const DEFAULT_STEPS: usize = 8;
/// Most ACT steps the page times at once: a 30x30 step takes seconds on a software WebGPU.
pub const MAX_STEPS: usize = 64;

/// One backend's figures, in ms.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Everything before the first step: device start, model upload (and, for the CPU worker,
    /// starting it and sending the model); near 0 when an earlier solve left them ready.
    pub set_up_ms: f64,
    /// The warm-up step, shader compilation (WebGPU) included.
    pub first_ms: f64,
    /// Median of the timed steps (the mean of the middle two for an even count).
    pub median_ms: f64,
    /// Fastest timed step.
    pub min_ms: f64,
    /// The timed steps together.
    pub total_ms: f64,
    /// How many steps were timed (the warm-up step not counted).
    pub steps: usize,
}

/// Sums up one backend's run: `wall_ms` from its start to its last step, and every step's time
/// in order, the warm-up step first. `None` without a timed step after the warm-up.
pub fn summarize(wall_ms: f64, steps_ms: &[f64]) -> Option<Summary> {
    let (&first_ms, timed) = steps_ms.split_first()?;
    if timed.is_empty() {
        return None;
    }
    let mut sorted = timed.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median_ms = if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 };
    let total_ms: f64 = timed.iter().sum();
    Some(Summary {
        // What the wall time spent outside the steps; never negative through rounding.
        set_up_ms: (wall_ms - first_ms - total_ms).max(0.0),
        first_ms,
        median_ms,
        min_ms: sorted[0],
        total_ms,
        steps: timed.len(),
    })
}

/// What one backend's run measured, before [`summarize`].
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// What ran, in words (the WebGPU adapter, the CPU worker).
    pub backend: String,
    /// From the run's start (before any set-up) to the end of its last step.
    pub wall_ms: f64,
    /// Every step's time, in order, the warm-up step first.
    pub steps_ms: Vec<f64>,
}

/// Why a backend gave no timing.
#[derive(Clone, Debug, PartialEq)]
pub enum NotTimed {
    /// The browser lacks the backend (no WebGPU, or no adapter): no failure of the run.
    Unavailable(String),
    /// It started and failed.
    Failed(String),
}

impl From<String> for NotTimed {
    fn from(error: String) -> NotTimed {
        NotTimed::Failed(error)
    }
}

impl From<&str> for NotTimed {
    fn from(error: &str) -> NotTimed {
        NotTimed::Failed(error.into())
    }
}

/// For callers outside the benchmark (a solve), where either kind is just an error.
impl From<NotTimed> for String {
    fn from(error: NotTimed) -> String {
        match error {
            NotTimed::Unavailable(e) | NotTimed::Failed(e) => e,
        }
    }
}

/// One row of the page's table.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// Waiting for its turn, or running.
    Pending,
    /// Timed: what ran (adapter, worker) and its figures.
    Timed { backend: String, summary: Summary },
    /// Not run here, and why (a browser without WebGPU).
    Skipped(String),
    /// Started and failed, and why.
    Failed(String),
}

impl Row {
    /// The row for a finished run: timed, skipped (the backend is not there) or failed.
    pub fn of(result: Result<Timing, NotTimed>) -> Row {
        match result {
            Ok(t) => match summarize(t.wall_ms, &t.steps_ms) {
                Some(summary) => Row::Timed { backend: t.backend, summary },
                None => Row::Failed(format!("{} steps ran, fewer than the warm-up step and one more", t.steps_ms.len())),
            },
            Err(NotTimed::Unavailable(why)) => Row::Skipped(why),
            Err(NotTimed::Failed(e)) => Row::Failed(e),
        }
    }

    /// The row's state in a word, for the page's data attributes and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Row::Pending => "pending",
            Row::Timed { .. } => "timed",
            Row::Skipped(_) => "skipped",
            Row::Failed(_) => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_step_is_reported_apart_from_the_median_and_minimum() {
        // Wall 1000: 100 of set-up, a slow first step, then five steps.
        let s = summarize(1000.0, &[500.0, 90.0, 70.0, 110.0, 60.0, 70.0]).unwrap();
        assert_eq!(s, Summary { set_up_ms: 100.0, first_ms: 500.0, median_ms: 70.0, min_ms: 60.0, total_ms: 400.0, steps: 5 });
    }

    #[test]
    fn an_even_count_takes_the_mean_of_the_middle_two() {
        let s = summarize(40.0, &[10.0, 8.0, 2.0, 6.0, 4.0]).unwrap();
        assert_eq!((s.median_ms, s.min_ms, s.total_ms, s.steps), (5.0, 2.0, 20.0, 4));
        assert_eq!(s.set_up_ms, 10.0);
        // A wall clock a hair short of the steps' sum (coarse timers) gives no negative set-up.
        assert_eq!(summarize(29.9, &[10.0, 20.0]).unwrap().set_up_ms, 0.0);
    }

    #[test]
    fn without_a_step_after_the_warm_up_there_is_nothing_to_sum_up() {
        assert_eq!(summarize(5.0, &[]), None);
        assert_eq!(summarize(5.0, &[3.0]), None);
        let timing = |steps_ms: Vec<f64>| Ok(Timing { backend: "CPU".into(), wall_ms: 12.0, steps_ms });
        assert_eq!(Row::of(timing(vec![3.0])).kind(), "failed");
        assert_eq!(Row::of(Err("the CPU worker failed".into())), Row::Failed("the CPU worker failed".into()));
        // A backend the browser lacks skips its row instead.
        assert_eq!(Row::of(Err(NotTimed::Unavailable("no WebGPU".into()))), Row::Skipped("no WebGPU".into()));
        let row = Row::of(timing(vec![3.0, 4.0, 5.0]));
        let Row::Timed { backend, summary } = &row else { panic!("{row:?}") };
        assert_eq!((backend.as_str(), summary.median_ms, summary.set_up_ms), ("CPU", 4.5, 0.0));
        assert_eq!(row.kind(), "timed");
    }
}
