//! Wire types of the job endpoints (`/api/eval`, `/api/train`, `/api/jobs`) and of
//! `POST /api/models`: work that runs in the background and is recorded across restarts.

use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A checkpoint scored on a dataset split (`POST /api/eval`).
    Eval,
    /// A training run (`POST /api/train`).
    Train,
}

/// Where a job stands. `succeeded`, `failed`, `cancelled` and `interrupted` are final;
/// an `interrupted` or `cancelled` training job can be resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, not started yet.
    Queued,
    /// Running now.
    Running,
    /// Finished; `result` holds its outcome.
    Succeeded,
    /// Stopped by an error; `error` says which.
    Failed,
    /// Stopped by `DELETE /api/jobs/{id}`.
    Cancelled,
    /// Stopped because the server stopped (or crashed) while it ran.
    Interrupted,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// The lowercase name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }
}

/// How far a job has got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobProgress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// What is counted: `mazes` (eval) or `steps` (train).
    pub unit: String,
}

/// A job's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    /// Identifier, used in `/api/jobs/{id}`.
    pub id: i64,
    /// What the job does.
    pub kind: JobKind,
    /// Where it stands.
    pub status: JobStatus,
    /// The request that started it (for a training job, with the config as parsed).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub request: serde_json::Value,
    /// Unix time (seconds) it was submitted.
    pub created_at: u64,
    /// Unix time it last started running.
    pub started_at: Option<u64>,
    /// Unix time it ended.
    pub finished_at: Option<u64>,
    /// Progress, once known.
    pub progress: Option<JobProgress>,
    /// The outcome: eval metrics (the `trm eval --json` report) or a training summary.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// The run directory of a training job (config, metrics.jsonl, step_N checkpoints).
    pub run_dir: Option<String>,
    /// Whether `POST /api/jobs/{id}/resume` can continue it.
    pub resumable: bool,
}

/// `GET /api/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    /// Jobs, newest first.
    pub jobs: Vec<JobInfo>,
}

/// One server-sent event of `GET /api/jobs/{id}/events`; the SSE event name is `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobEvent {
    /// Position in the job's event log (the SSE `id`), from 1.
    pub seq: u64,
    /// `status` (data: `{"status": ...}`), `progress` (a [`JobProgress`]), `metrics` (a line
    /// of the run's metrics.jsonl), `result` (the job's result) or `error` (`{"error": ...}`).
    pub kind: String,
    /// Unix time it happened.
    pub time: u64,
    /// The payload.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

/// `POST /api/eval`: score a model on a dataset split, as `trm eval` does.
///
/// The model is a served one by name (`model`), or a checkpoint and config under the
/// server's model roots (`checkpoint` + `config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EvalJobRequest {
    /// A model in `GET /api/models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A checkpoint file (reference `step_N` or safetensors) under a model root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Its config (`all_config.yaml` or TOML) under a model root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// A dataset in `GET /api/datasets`.
    pub dataset: String,
    /// Its split (default `test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Only the first N mazes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// ACT steps (default: the model's `halt_max_steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Mazes per forward pass (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

/// `POST /api/train`: a training run per a config (`trm train --config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrainJobRequest {
    /// The training config: TOML text (as in `configs/`) or the same fields as a JSON object.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
    /// Stop after this many optimizer steps in total (a short trial; resumable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
}

/// `POST /api/models`: serve a checkpoint that is already on the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterModelRequest {
    /// Name to select it by (`"model"` in predict and eval): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// A reference `step_N` file or safetensors, under one of the server's model roots.
    pub checkpoint: String,
    /// Its config (`all_config.yaml` or TOML), under a model root.
    pub config: String,
}
