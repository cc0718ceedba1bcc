//! The job endpoints: `POST /api/eval`, `POST /api/train`, `GET /api/jobs`,
//! `GET /api/jobs/{id}`, `GET /api/jobs/{id}/events` (server-sent events),
//! `DELETE /api/jobs/{id}` and `POST /api/jobs/{id}/resume`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::{self, error::RecvError};
use trm_shared::wire::ErrorBody;
use trm_shared::wire::jobs::{EvalJobRequest, JobEvent, JobInfo, JobList, TrainJobRequest};

use super::auth::RequireToken;
use super::body::{JsonBody, RequestShape};
use super::error::ApiError;
use crate::serving::model_roots::resolve_under_roots;
use super::state::AppState;
use crate::backend::BackendKind;
use crate::eval::EvalSpec;
use crate::jobs::{JobError, JobManager, LiveEvent};
use crate::train::config::TrainConfig;

impl RequestShape for EvalJobRequest {
    const EXPECTED: &'static str = r#"{"dataset": "...", "split"?: "test", "model"?: "NAME" or "checkpoint" + "config", "limit"?: N, "steps"?: N, "batch_size"?: N}"#;
}

impl RequestShape for TrainJobRequest {
    const EXPECTED: &'static str = r#"{"config": "<TOML text>" or {...}, "max_steps"?: N}"#;
}

/// Largest forward batch an eval job may ask for.
const MAX_EVAL_BATCH: usize = 256;

type Accepted = (StatusCode, HeaderMap, Json<JobInfo>);

/// 202 with the job and where to follow it.
fn accepted(job: JobInfo) -> Accepted {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/jobs/{}", job.id)) {
        headers.insert(LOCATION, v);
    }
    (StatusCode::ACCEPTED, headers, Json(job))
}

fn job_id(path: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    path.map(|Path(id)| id).map_err(|e| ApiError::bad_request(format!("bad job id: {}", e.body_text())))
}

/// `POST /api/eval`: scores a model on a dataset split in the background, as `trm eval`.
#[utoipa::path(post, path = "/api/eval", tag = "jobs", request_body = EvalJobRequest, security(("bearer" = [])),
    responses((status = 202, description = "the job, started", body = JobInfo), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "unknown model or dataset", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, description = "too many jobs, or stopping", body = ErrorBody)))]
pub async fn submit_eval(
    _auth: RequireToken,
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<EvalJobRequest>,
) -> Result<Accepted, ApiError> {
    let (checkpoint, config) = match (&request.model, &request.checkpoint, &request.config) {
        (Some(name), None, None) => {
            let model = state.models.get(name)?;
            (model.source.checkpoint.clone(), model.source.config.clone())
        }
        (None, Some(checkpoint), Some(config)) => (
            resolve_under_roots(checkpoint, &state.model_roots, "checkpoint")?,
            resolve_under_roots(config, &state.model_roots, "config")?,
        ),
        _ => return Err(ApiError::unprocessable("name the model: either `model` (a served model) or both `checkpoint` and `config`")),
    };
    let split = request.split.clone().unwrap_or_else(|| "test".into());
    let split_dir = state.catalog.split_dir(&request.dataset, &split)?;
    if let Some(steps) = request.steps
        && (steps == 0 || steps > state.limits.max_steps)
    {
        return Err(ApiError::unprocessable(format!("steps must be 1..={}, got {steps}", state.limits.max_steps)));
    }
    let batch_size = request.batch_size.unwrap_or(16);
    if batch_size == 0 || batch_size > MAX_EVAL_BATCH {
        return Err(ApiError::unprocessable(format!("batch_size must be 1..={MAX_EVAL_BATCH}, got {batch_size}")));
    }
    if request.limit == Some(0) {
        return Err(ApiError::unprocessable("limit must be at least 1"));
    }
    let spec = EvalSpec { checkpoint, config, split_dir, batch_size, steps: request.steps, limit: request.limit, backend: state.backend_kind, workers: 1 };
    let record = serde_json::to_value(&request).map_err(|e| ApiError::internal(e.to_string()))?;
    let jobs = state.jobs.clone();
    Ok(accepted(blocking(move || jobs.submit_eval(record, spec)).await?))
}

/// `POST /api/train`: a training run in the background, in a run directory under the state dir.
#[utoipa::path(post, path = "/api/train", tag = "jobs", request_body = TrainJobRequest, security(("bearer" = [])),
    responses((status = 202, description = "the job, started", body = JobInfo), (status = 401, body = ErrorBody),
        (status = 403, description = "data.dir outside the data roots", body = ErrorBody),
        (status = 409, description = "a training job is running", body = ErrorBody),
        (status = 422, description = "an invalid config, named", body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn submit_train(
    _auth: RequireToken,
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<TrainJobRequest>,
) -> Result<Accepted, ApiError> {
    let mut cfg = match &request.config {
        serde_json::Value::String(text) => TrainConfig::from_toml_str(text),
        value @ serde_json::Value::Object(_) => serde_json::from_value::<TrainConfig>(value.clone())
            .map_err(|e| crate::train::config::ConfigError::Parse(e.to_string()))
            .and_then(|c| c.validate().map(|()| c)),
        _ => return Err(ApiError::unprocessable(format!("`config` must be TOML text or a JSON object; expected {}", TrainJobRequest::EXPECTED))),
    }
    .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    if let Some(dir) = &cfg.data.dir {
        cfg.data.dir = Some(data_dir_under_roots(dir, state.catalog.roots())?);
    }
    if request.max_steps == Some(0) {
        return Err(ApiError::unprocessable("max_steps must be at least 1"));
    }
    if state.backend_kind == BackendKind::Cpu {
        check_step_memory(&cfg, state.limits.max_train_step_bytes)?;
    }
    let record = serde_json::json!({ "config": cfg, "max_steps": request.max_steps });
    let jobs = state.jobs.clone();
    let max_steps = request.max_steps;
    Ok(accepted(blocking(move || jobs.submit_train(record, cfg, max_steps)).await?))
}

/// Refuses a config whose training step could not fit in the server's memory.
fn check_step_memory(cfg: &TrainConfig, max: u64) -> Result<(), ApiError> {
    let seq_len = match (&cfg.data.dir, cfg.data.size) {
        (Some(dir), _) => trm_shared::dataset::read_metadata(&dir.join("train"))
            .map_err(|e| ApiError::unprocessable(format!("data.dir: {e}")))?
            .seq_len,
        (None, Some(size)) => size.saturating_mul(size),
        (None, None) => return Ok(()),
    };
    let need = cfg.step_memory_estimate(seq_len);
    if need > u128::from(max) {
        let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
        return Err(ApiError::unprocessable(format!(
            "a training step of this config needs about {:.1} GiB (global_batch_size {} x {seq_len} tokens); this server allows {:.1} GiB: lower global_batch_size or the model's size",
            gib(need),
            cfg.global_batch_size,
            gib(u128::from(max))
        )));
    }
    Ok(())
}

/// A training config's dataset must be one the server shows (under a data root).
fn data_dir_under_roots(dir: &std::path::Path, roots: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let canonical = dir
        .canonicalize()
        .map_err(|_| ApiError::unprocessable(format!("data.dir {} does not exist on the server", dir.display())))?;
    let inside = roots.iter().filter_map(|r| r.canonicalize().ok()).any(|r| canonical.starts_with(r));
    if !inside {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("data.dir {} is outside the server's data directories", dir.display())));
    }
    Ok(canonical)
}

/// `GET /api/jobs`: the newest jobs, newest first.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", responses((status = 200, body = JobList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<JobList>, ApiError> {
    let jobs = state.jobs.clone();
    Ok(Json(JobList { jobs: blocking(move || jobs.list()).await? }))
}

/// `GET /api/jobs/{id}`: one job's record.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    responses((status = 200, body = JobInfo), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<Arc<AppState>>, id: Result<Path<i64>, PathRejection>) -> Result<Json<JobInfo>, ApiError> {
    let id = job_id(id)?;
    let jobs = state.jobs.clone();
    Ok(Json(blocking(move || jobs.get(id)).await?))
}

/// `DELETE /api/jobs/{id}`: asks a running job to stop (a training run writes a checkpoint
/// first); the job ends `cancelled`. Answers 202 with the record as it is now.
#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    security(("bearer" = [])),
    responses((status = 202, body = JobInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the job is not running", body = ErrorBody)))]
pub async fn cancel(
    _auth: RequireToken,
    State(state): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(StatusCode, Json<JobInfo>), ApiError> {
    let id = job_id(id)?;
    let jobs = state.jobs.clone();
    Ok((StatusCode::ACCEPTED, Json(blocking(move || jobs.cancel(id)).await?)))
}

/// `POST /api/jobs/{id}/resume`: continues an interrupted, cancelled or failed training job
/// from its last checkpoint, as `trm train --resume`.
#[utoipa::path(post, path = "/api/jobs/{id}/resume", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    security(("bearer" = [])),
    responses((status = 202, body = JobInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not resumable, or a training job is running", body = ErrorBody)))]
pub async fn resume(
    _auth: RequireToken,
    State(state): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Accepted, ApiError> {
    let id = job_id(id)?;
    let jobs = state.jobs.clone();
    Ok(accepted(blocking(move || jobs.resume(id)).await?))
}

/// `GET /api/jobs/{id}/events`: the job's events as server-sent events, from the first (or
/// after the `Last-Event-ID` header's), (`status`, `progress`, `metrics`, `result`, `error`,
/// `cancel_requested`; data is JSON, the SSE id the event's `seq`), live while it runs; the
/// stream ends after its final status, or after the server's stream lifetime (the client
/// reconnects with `Last-Event-ID`, as browsers' `EventSource` does). At most
/// `max_event_streams` are open at once (503 beyond).
#[utoipa::path(get, path = "/api/jobs/{id}/events", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    responses((status = 200, description = "text/event-stream of JobEvent data", content_type = "text/event-stream", body = JobEvent),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = job_id(id)?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::bad_request("Last-Event-ID must be the number of an event (the `id` of the last one received)")
        })?,
    };
    let permit = state.event_stream_permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(format!("{} event streams are open, the most this server allows; try again later", state.limits.max_event_streams))
    })?;
    // Subscribed before reading the log, so that no event falls between the two.
    let live = state.jobs.subscribe();
    let jobs = state.jobs.clone();
    let job = blocking(move || jobs.get(id)).await?;
    let follow = Follow {
        jobs: state.jobs.clone(),
        id,
        live,
        queue: VecDeque::new(),
        last: after,
        caught_up: false,
        // Events after `after` replay every later status change; without any, the job's
        // status now says whether it is over.
        final_seen: job.status.is_final(),
        deadline: tokio::time::Instant::now() + state.limits.event_stream_lifetime,
        _permit: permit,
    };
    Ok(Sse::new(stream::unfold(follow, Follow::next)).keep_alive(KeepAlive::default()))
}

/// Events read from the log at a time.
const EVENT_PAGE: usize = 256;

/// The state of one SSE stream: pages of the log until it is caught up, then live events.
struct Follow {
    jobs: Arc<JobManager>,
    id: i64,
    live: broadcast::Receiver<LiveEvent>,
    queue: VecDeque<JobEvent>,
    /// The last event sent.
    last: u64,
    /// Whether the log holds nothing after `last` that was not queued.
    caught_up: bool,
    /// Whether the last status sent (or the job's status at the start) is final.
    final_seen: bool,
    deadline: tokio::time::Instant,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Follow)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if event.seq <= self.last {
                    continue;
                }
                self.last = event.seq;
                if event.kind == "status" {
                    // A resumed job has a final status in its log before the new run's events.
                    self.final_seen = is_final_status(&event);
                }
                return Some((Ok(sse_event(&event)), self));
            }
            if !self.caught_up {
                let (jobs, id, last) = (self.jobs.clone(), self.id, self.last);
                let page = match tokio::task::spawn_blocking(move || jobs.events_after(id, last, EVENT_PAGE)).await {
                    Ok(Ok(page)) => page,
                    _ => return None,
                };
                self.caught_up = page.len() < EVENT_PAGE;
                self.queue.extend(page);
                continue;
            }
            if self.final_seen {
                return None;
            }
            let received = tokio::select! {
                received = self.live.recv() => received,
                () = tokio::time::sleep_until(self.deadline) => return None,
            };
            match received {
                Ok((id, event)) if id == self.id => self.queue.push_back(event),
                Ok(_) => {}
                // Fell behind: what was missed is in the log.
                Err(RecvError::Lagged(_)) => self.caught_up = false,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn is_final_status(event: &JobEvent) -> bool {
    event.kind == "status"
        && event
            .data
            .get("status")
            .and_then(|s| serde_json::from_value::<trm_shared::wire::jobs::JobStatus>(s.clone()).ok())
            .is_some_and(|s| s.is_final())
}

fn sse_event(event: &JobEvent) -> Event {
    Event::default().id(event.seq.to_string()).event(event.kind.clone()).data(event.data.to_string())
}

/// Runs a (short) database call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, JobError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("job task: {e}")))?.map_err(ApiError::from)
}
