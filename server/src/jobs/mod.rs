//! Background jobs of `trm serve`: evaluations and training runs on blocking threads, with
//! their records and event logs in SQLite ([`store`]) and their execution in [`runner`].
//!
//! One training job runs at a time (the server has one device set); a job's thread checks a
//! stop flag, so that cancel and shutdown end it cleanly (a training run writes a checkpoint
//! first). Events go to the database and to live listeners (the SSE endpoint).

pub mod runner;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::broadcast;
use trm_shared::wire::jobs::{JobEvent, JobInfo, JobKind, JobProgress, JobStatus};

use crate::backend::BackendKind;
use crate::backend::devices::DeviceSet;
use crate::eval::EvalSpec;
use crate::train::config::TrainConfig;
use store::{Store, StoreError, StoredModel};

/// Evaluations that may run at the same time.
const MAX_RUNNING_EVALS: usize = 2;
/// Jobs `GET /api/jobs` lists.
pub const LIST_LIMIT: usize = 200;

/// Why a job request was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job has this id.
    #[error("no job {0}")]
    NotFound(i64),
    /// The job is in a state that does not allow this (already finished, still running, busy).
    #[error("{0}")]
    Conflict(String),
    /// The server is stopping or at its limit of concurrent jobs.
    #[error("{0}")]
    Busy(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Files of the job (its run directory) could not be written, or a thread not started.
    #[error("{0}")]
    Io(String),
}

/// A job event for live listeners: `(job id, event)`.
pub type LiveEvent = (i64, JobEvent);

/// Flags of a running job.
#[derive(Clone, Default)]
pub struct StopFlags {
    /// Set to stop the job (cancel or shutdown).
    pub stop: Arc<AtomicBool>,
    /// Set with `stop` when the server is stopping: the job ends `interrupted`, not `cancelled`.
    pub shutdown: Arc<AtomicBool>,
}

struct Running {
    kind: JobKind,
    flags: StopFlags,
    thread: Option<JoinHandle<()>>,
}

/// The jobs of one server.
pub struct JobManager {
    store: Mutex<Store>,
    live: broadcast::Sender<LiveEvent>,
    running: Mutex<HashMap<i64, Running>>,
    // Held from the checks of a submission to its start, so that two requests cannot both
    // pass "no training job is running".
    submitting: Mutex<()>,
    stopping: AtomicBool,
    runs_dir: PathBuf,
    backend: BackendKind,
    devices: DeviceSet,
    // Held while the manager lives: a second server on the same state directory would mark
    // this one's running jobs interrupted and write into its runs.
    _state_lock: std::fs::File,
}

/// Takes the state directory's lock file, or says which directory another server holds.
fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File, JobError> {
    let path = state_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| JobError::Io(format!("opening {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(JobError::Conflict(format!(
            "another server is using the state directory {} (it holds {}); stop it, or give this one another --state-dir",
            state_dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(JobError::Io(format!("locking {}: {e}", path.display()))),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JobManager {
    /// Opens the job database in `state_dir` (created if missing); jobs that were running
    /// when the previous server ended are marked interrupted. Training jobs run on `devices`
    /// of `backend`, one at a time.
    pub fn open(state_dir: &Path, backend: BackendKind, devices: DeviceSet) -> Result<Arc<JobManager>, JobError> {
        std::fs::create_dir_all(state_dir).map_err(|e| JobError::Io(format!("creating {}: {e}", state_dir.display())))?;
        let state_lock = lock_state_dir(state_dir)?;
        let mut store = Store::open(&state_dir.join("jobs.sqlite"))?;
        let interrupted = store.interrupt_unfinished()?;
        for &id in &interrupted {
            store.append_event(id, "status", &status_data(JobStatus::Interrupted))?;
        }
        if !interrupted.is_empty() {
            tracing::warn!("jobs interrupted by the last stop: {interrupted:?} (training jobs can be resumed)");
        }
        let (live, _) = broadcast::channel(1024);
        Ok(Arc::new(JobManager {
            store: Mutex::new(store),
            live,
            running: Mutex::new(HashMap::new()),
            submitting: Mutex::new(()),
            stopping: AtomicBool::new(false),
            runs_dir: state_dir.join("runs"),
            backend,
            devices,
            _state_lock: state_lock,
        }))
    }

    /// One job.
    pub fn get(&self, id: i64) -> Result<JobInfo, JobError> {
        lock(&self.store).get(id)?.ok_or(JobError::NotFound(id))
    }

    /// The newest jobs, newest first.
    pub fn list(&self) -> Result<Vec<JobInfo>, JobError> {
        Ok(lock(&self.store).list(LIST_LIMIT)?)
    }

    /// At most `limit` of a job's events after `seq` (pages keep the store's lock short: the
    /// training thread appends through it).
    pub fn events_after(&self, id: i64, seq: u64, limit: usize) -> Result<Vec<JobEvent>, JobError> {
        Ok(lock(&self.store).events_after(id, seq, limit)?)
    }

    /// Live events of all jobs, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }

    /// The registered models.
    pub fn models(&self) -> Result<Vec<StoredModel>, JobError> {
        Ok(lock(&self.store).models()?)
    }

    /// Records a registered model.
    pub fn put_model(&self, model: &StoredModel) -> Result<(), JobError> {
        Ok(lock(&self.store).put_model(model)?)
    }

    /// Starts an evaluation; `request` is what the client sent (kept in the record).
    pub fn submit_eval(self: &Arc<Self>, request: serde_json::Value, spec: EvalSpec) -> Result<JobInfo, JobError> {
        let _submitting = lock(&self.submitting);
        self.refuse_when_stopping()?;
        let evals = lock(&self.running).values().filter(|r| r.kind == JobKind::Eval).count();
        if evals >= MAX_RUNNING_EVALS {
            return Err(JobError::Busy(format!("{evals} evaluations are running; at most {MAX_RUNNING_EVALS} at a time, try again later")));
        }
        let job = lock(&self.store).create(JobKind::Eval, &request)?;
        self.start(job.id, JobKind::Eval, move |manager, flags| runner::run_eval_job(manager, job.id, &spec, &flags))?;
        self.get(job.id)
    }

    /// Starts a training run in a new run directory under the state directory.
    pub fn submit_train(self: &Arc<Self>, request: serde_json::Value, cfg: TrainConfig, max_steps: Option<u64>) -> Result<JobInfo, JobError> {
        let _submitting = lock(&self.submitting);
        self.refuse_when_stopping()?;
        self.refuse_second_training()?;
        let job = lock(&self.store).create(JobKind::Train, &request)?;
        let dir = self.runs_dir.join(format!("job-{}", job.id));
        if let Err(e) = crate::train::trainer::create_run_dir(&dir, &cfg) {
            let message = format!("creating the run directory: {e:#}");
            self.finish(job.id, JobStatus::Failed, Some(&message));
            return Err(JobError::Io(message));
        }
        lock(&self.store).set_run_dir(job.id, &dir)?;
        let (backend, devices) = (self.backend, self.devices.clone());
        self.start(job.id, JobKind::Train, move |manager, flags| {
            runner::run_train_job(manager, job.id, (backend, &devices), &cfg, &dir, false, max_steps, &flags)
        })?;
        self.get(job.id)
    }

    /// Continues an interrupted, cancelled or failed training job from its last checkpoint.
    pub fn resume(self: &Arc<Self>, id: i64) -> Result<JobInfo, JobError> {
        let _submitting = lock(&self.submitting);
        self.refuse_when_stopping()?;
        let job = self.get(id)?;
        if !job.resumable {
            return Err(JobError::Conflict(format!(
                "job {id} cannot be resumed: it is a{} {} job that is {} (only training jobs that were interrupted, cancelled or failed after a checkpoint can)",
                if job.kind == JobKind::Eval { "n" } else { "" },
                kind_name(job.kind),
                job.status.as_str()
            )));
        }
        self.refuse_second_training()?;
        let dir = PathBuf::from(job.run_dir.unwrap_or_default());
        let cfg = TrainConfig::from_file(&dir.join("config.toml")).map_err(|e| JobError::Conflict(format!("job {id}: {e}")))?;
        let max_steps = job.request.get("max_steps").and_then(serde_json::Value::as_u64);
        let (backend, devices) = (self.backend, self.devices.clone());
        lock(&self.store).set_status(id, JobStatus::Queued, None)?;
        self.start(id, JobKind::Train, move |manager, flags| {
            runner::run_train_job(manager, id, (backend, &devices), &cfg, &dir, true, max_steps, &flags)
        })?;
        self.get(id)
    }

    /// Asks a running job to stop; it ends `cancelled` (a training run after a checkpoint).
    pub fn cancel(&self, id: i64) -> Result<JobInfo, JobError> {
        let job = self.get(id)?;
        match lock(&self.running).get(&id) {
            Some(running) => running.flags.stop.store(true, Ordering::Relaxed),
            None => return Err(JobError::Conflict(format!("job {id} is not running: it is {}", job.status.as_str()))),
        }
        self.emit(id, "cancel_requested", &serde_json::json!({}));
        Ok(job)
    }

    /// Stops every running job as interrupted and refuses new ones; returns at once.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        for running in lock(&self.running).values() {
            running.flags.shutdown.store(true, Ordering::Relaxed);
            running.flags.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Waits for every job thread to end (after [`JobManager::begin_shutdown`]). Blocking.
    pub fn join_all(&self) {
        let threads: Vec<JoinHandle<()>> = lock(&self.running).values_mut().filter_map(|r| r.thread.take()).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    fn refuse_when_stopping(&self) -> Result<(), JobError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(JobError::Busy("the server is stopping; no new jobs".into()));
        }
        Ok(())
    }

    fn refuse_second_training(&self) -> Result<(), JobError> {
        let running = lock(&self.running);
        if let Some((id, _)) = running.iter().find(|(_, r)| r.kind == JobKind::Train) {
            return Err(JobError::Conflict(format!(
                "training job {id} is running on this server's devices ({}); one training job at a time on a device set (cancel it with DELETE /api/jobs/{id})",
                self.devices
            )));
        }
        Ok(())
    }

    /// Runs `work` on a new thread as job `id`; the job's final status comes from its result.
    fn start<F>(self: &Arc<Self>, id: i64, kind: JobKind, work: F) -> Result<(), JobError>
    where
        F: FnOnce(&Arc<JobManager>, StopFlags) -> runner::Outcome + Send + 'static,
    {
        let flags = StopFlags::default();
        let manager = self.clone();
        let thread_flags = flags.clone();
        // Registered before the thread starts, so that its end always finds its entry.
        let mut running = lock(&self.running);
        // A shutdown that began after this job's checks: it starts stopped.
        if self.stopping.load(Ordering::Relaxed) {
            flags.shutdown.store(true, Ordering::Relaxed);
            flags.stop.store(true, Ordering::Relaxed);
        }
        let spawned = std::thread::Builder::new().name(format!("trm-job-{id}")).spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&manager, thread_flags)))
                .unwrap_or_else(|panic| runner::Outcome::failed(format!("the job panicked: {}", panic_message(&panic))));
            manager.complete(id, outcome);
        });
        match spawned {
            Ok(thread) => {
                running.insert(id, Running { kind, flags, thread: Some(thread) });
                Ok(())
            }
            Err(e) => {
                drop(running);
                let message = format!("starting the job thread: {e}");
                self.finish(id, JobStatus::Failed, Some(&message));
                Err(JobError::Io(message))
            }
        }
    }

    /// Records a job's end and forgets its thread.
    fn complete(&self, id: i64, outcome: runner::Outcome) {
        if let Some(result) = &outcome.result {
            if let Err(e) = lock(&self.store).set_result(id, result) {
                tracing::error!("job {id}: recording the result: {e}");
            }
            self.emit(id, "result", result);
        }
        if let Some(error) = &outcome.error {
            self.emit(id, "error", &serde_json::json!({ "error": error }));
        }
        // Out of the running set before the final event, so that a listener that sees it
        // can start the next training job at once.
        lock(&self.running).remove(&id);
        self.finish(id, outcome.status, outcome.error.as_deref());
        tracing::info!("job {id} {}", outcome.status.as_str());
    }

    /// Sets a status and tells listeners.
    fn finish(&self, id: i64, status: JobStatus, error: Option<&str>) {
        if let Err(e) = lock(&self.store).set_status(id, status, error) {
            tracing::error!("job {id}: recording status {}: {e}", status.as_str());
        }
        self.emit(id, "status", &status_data(status));
    }

    /// Marks a job running (from its thread).
    pub(crate) fn mark_running(&self, id: i64) {
        self.finish(id, JobStatus::Running, None);
    }

    /// Records progress and tells listeners.
    pub(crate) fn progress(&self, id: i64, progress: &JobProgress) {
        if let Err(e) = lock(&self.store).set_progress(id, progress) {
            tracing::error!("job {id}: recording progress: {e}");
        }
        if let Ok(data) = serde_json::to_value(progress) {
            self.emit(id, "progress", &data);
        }
    }

    /// Appends an event to a job's log and sends it to live listeners. A database failure
    /// is logged, not raised: the job itself goes on.
    pub(crate) fn emit(&self, id: i64, kind: &str, data: &serde_json::Value) {
        match lock(&self.store).append_event(id, kind, data) {
            // No listener is not an error.
            Ok(event) => drop(self.live.send((id, event))),
            Err(e) => tracing::error!("job {id}: recording a {kind} event: {e}"),
        }
    }
}

/// The data of a `status` event.
pub fn status_data(status: JobStatus) -> serde_json::Value {
    serde_json::json!({ "status": status })
}

fn kind_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Eval => "eval",
        JobKind::Train => "training",
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
