//! What a job's thread does: run an evaluation or a training run, reporting progress and
//! metrics to the [`JobManager`], and say how it ended.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use trm_shared::wire::jobs::{JobProgress, JobStatus};

use super::{JobManager, StopFlags};
use crate::backend::BackendKind;
use crate::eval::{EvalError, EvalSpec, run_eval};
use crate::train::config::TrainConfig;
use crate::backend::devices::DeviceSet;
use crate::train::hooks::TrainHooks;
use crate::train::run::{load_run_data, train_on};
use crate::train::trainer::RunSetup;

/// Progress events are recorded at most this often (the last one always).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Its final status.
    pub status: JobStatus,
    /// Its result, if it has one (also for a stopped training run: how far it got).
    pub result: Option<serde_json::Value>,
    /// Why it failed or stopped.
    pub error: Option<String>,
}

impl Outcome {
    /// A failure.
    pub fn failed(error: String) -> Outcome {
        Outcome { status: JobStatus::Failed, result: None, error: Some(error) }
    }

    fn stopped(flags: &StopFlags, what: String, result: Option<serde_json::Value>) -> Outcome {
        let (status, why) = if flags.shutdown.load(Ordering::Relaxed) {
            (JobStatus::Interrupted, "the server stopped")
        } else {
            (JobStatus::Cancelled, "cancelled")
        };
        Outcome { status, result, error: Some(format!("{why}: {what}")) }
    }
}

/// Records progress at most every [`PROGRESS_EVERY`], and always when `done == total`.
struct Throttle {
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    fn new() -> Throttle {
        Throttle { last: Mutex::new(None) }
    }

    fn report(&self, manager: &JobManager, id: i64, done: u64, total: u64, unit: &str) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if done < total && last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        manager.progress(id, &JobProgress { done, total, unit: unit.into() });
    }
}

/// Runs an evaluation job.
pub fn run_eval_job(manager: &Arc<JobManager>, id: i64, spec: &EvalSpec, flags: &StopFlags) -> Outcome {
    manager.mark_running(id);
    let throttle = Throttle::new();
    let mut progress = |done: usize, total: usize| throttle.report(manager, id, done as u64, total as u64, "mazes");
    match run_eval(spec, &mut progress, Some(&flags.stop)) {
        Ok(report) => match serde_json::to_value(&report) {
            Ok(result) => Outcome { status: JobStatus::Succeeded, result: Some(result), error: None },
            Err(e) => Outcome::failed(format!("encoding the report: {e}")),
        },
        Err(e @ EvalError::Stopped { .. }) => Outcome::stopped(flags, e.to_string(), None),
        Err(e) => Outcome::failed(e.to_string()),
    }
}

/// Runs (or, with `resume`, continues) a training job in `dir` on `devices` of `backend`.
#[allow(clippy::too_many_arguments)]
pub fn run_train_job(
    manager: &Arc<JobManager>,
    id: i64,
    (backend, devices): (BackendKind, &DeviceSet),
    cfg: &TrainConfig,
    dir: &Path,
    resume: bool,
    max_steps: Option<u64>,
    flags: &StopFlags,
) -> Outcome {
    manager.mark_running(id);
    let (train, test) = match load_run_data(cfg, dir) {
        Ok(splits) => splits,
        Err(e) => return Outcome::failed(format!("{e:#}")),
    };
    if flags.stop.load(Ordering::Relaxed) {
        return Outcome::stopped(flags, "before the first step".into(), None);
    }
    let throttle = Arc::new(Throttle::new());
    let (progress_manager, metrics_manager) = (manager.clone(), manager.clone());
    let hooks = TrainHooks {
        stop: Some(flags.stop.clone()),
        on_progress: Some(Arc::new(move |step, end| throttle.report(&progress_manager, id, step, end, "steps"))),
        on_metrics: Some(Arc::new(move |line| metrics_manager.emit(id, "metrics", line))),
    };
    let setup = RunSetup { resume, max_steps, hooks, devices: devices.clone(), ..RunSetup::new(dir.to_path_buf(), train, test) };
    match train_on(backend, cfg, setup) {
        Ok(summary) => {
            let result = json!({
                "steps": summary.steps,
                "last_eval": summary.last_eval,
                "run_dir": dir.display().to_string(),
            });
            if flags.stop.load(Ordering::Relaxed) {
                Outcome::stopped(flags, format!("checkpoint written at step {}", summary.steps), Some(result))
            } else {
                Outcome { status: JobStatus::Succeeded, result: Some(result), error: None }
            }
        }
        Err(e) => Outcome::failed(format!("{e:#}")),
    }
}
