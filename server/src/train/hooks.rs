//! Control of a training run from outside the loop: the server's training jobs stop a run
//! (cancel, shutdown) and follow its progress and metrics through these.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Called with `(step, last step of this run)` after every optimizer step.
pub type ProgressFn = dyn Fn(u64, u64) + Send + Sync;
/// Called with every `metrics.jsonl` line, as JSON, right after it is written.
pub type MetricsFn = dyn Fn(&serde_json::Value) + Send + Sync;

/// Optional hooks of a run; the default has none (the command line's `trm train`).
#[derive(Clone, Default)]
pub struct TrainHooks {
    /// When set, the run stops before its next step, writes a checkpoint (so that a resume
    /// continues from there) and returns normally.
    pub stop: Option<Arc<AtomicBool>>,
    /// Progress after each step.
    pub on_progress: Option<Arc<ProgressFn>>,
    /// Every metrics line (train windows and evaluations).
    pub on_metrics: Option<Arc<MetricsFn>>,
}

impl TrainHooks {
    /// Whether the run was asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Reports progress, if anyone listens.
    pub fn progress(&self, step: u64, end: u64) {
        if let Some(f) = &self.on_progress {
            f(step, end);
        }
    }

    /// Reports a metrics line, if anyone listens. A line that does not serialise is skipped:
    /// the same line was just written to `metrics.jsonl`, which is the record.
    pub fn metrics(&self, line: &impl Serialize) {
        if let (Some(f), Ok(value)) = (&self.on_metrics, serde_json::to_value(line)) {
            f(&value);
        }
    }
}

impl std::fmt::Debug for TrainHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainHooks")
            .field("stop", &self.stop)
            .field("on_progress", &self.on_progress.is_some())
            .field("on_metrics", &self.on_metrics.is_some())
            .finish()
    }
}
