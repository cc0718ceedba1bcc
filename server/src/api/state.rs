//! What every handler shares: the models, the dataset catalog, the jobs, the token and the limits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::catalog::Catalog;
use super::hosts::AllowedHosts;
use crate::backend::BackendKind;
use crate::serving::batcher::BatchConfig;
use crate::serving::registry::ModelRegistry;
use crate::jobs::JobManager;

/// Caps that keep one client from exhausting the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a request may take before it is answered 408.
    pub request_timeout: Duration,
    /// Most mazes in one predict request.
    pub max_mazes_per_request: usize,
    /// Most ACT steps a predict request may ask for of a reference model (it runs them all).
    pub max_steps: usize,
    /// Most ACT steps a predict request may allow a size-general model (a cap: each maze
    /// stops where the model halts).
    pub max_local_steps: usize,
    /// Largest maze side a predict request may send (the editor's range), whatever the model.
    pub max_maze_side: usize,
    /// Most grid cells a predict answer may hold: with `return_steps`, every maze's cells
    /// times the steps asked for; without, every maze's cells.
    pub max_answer_cells: usize,
    /// Largest side of a generated maze.
    pub max_generate_side: usize,
    /// Mazes being generated at the same time (503 beyond).
    pub max_concurrent_generate: usize,
    /// Most examples on one dataset page.
    pub max_page: usize,
    /// The `Host` names answered (421 for others): DNS rebinding stops here.
    pub allowed_hosts: AllowedHosts,
    /// Connections served at once; further clients wait in the listen queue.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, and the longest an idle kept-alive
    /// connection stays open (the connection is closed after it).
    pub header_read_timeout: Duration,
    /// Event streams (`GET /api/jobs/{id}/events`) open at once (503 beyond).
    pub max_event_streams: usize,
    /// Longest an event stream stays open; the client reconnects with `Last-Event-ID`.
    pub event_stream_lifetime: Duration,
    /// Most memory a training job's step may need on the CPU backend (its estimate, see
    /// `TrainConfig::step_memory_estimate`); a config beyond it is refused with 422.
    pub max_train_step_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 << 20,
            request_timeout: Duration::from_secs(120),
            max_mazes_per_request: 64,
            max_steps: 64,
            max_local_steps: 512,
            max_maze_side: 64,
            // 4 MB of grids: a 64x64 maze for 512 steps, or 16 Maze-Hard mazes for 256.
            max_answer_cells: 4 << 20,
            max_generate_side: 64,
            max_concurrent_generate: 2,
            max_page: 100,
            allowed_hosts: AllowedHosts::default(),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(20),
            max_event_streams: 64,
            event_stream_lifetime: Duration::from_secs(3600),
            max_train_step_bytes: default_train_step_bytes(),
        }
    }
}

/// Half of the machine's memory (`MemTotal` in `/proc/meminfo`), or 8 GiB where that cannot
/// be read.
fn default_train_step_bytes() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    total_kib.map_or(8 << 30, |kib| kib.saturating_mul(1024) / 2)
}

/// A predict request beyond one of the [`Limits`] (answered 422, see `super::error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// No mazes at all.
    #[error("no mazes: `mazes` must list at least one maze")]
    NoMazes,
    /// More mazes than one request may hold.
    #[error("{mazes} mazes in one request; at most {max} are allowed (send several requests)")]
    TooManyMazes { mazes: usize, max: usize },
    /// A maze wider or taller than the largest canvas.
    #[error("maze {index} is {rows}x{cols}; mazes may be at most {max}x{max}")]
    MazeTooBig { index: usize, rows: usize, cols: usize, max: usize },
    /// Steps out of a reference model's range.
    #[error("steps must be 1..={max}, got {steps}")]
    Steps { steps: usize, max: usize },
    /// A step cap out of a size-general model's range.
    #[error("steps must be 1..={max} for the size-general model {model} (a cap: each maze stops where the model halts), got {steps}")]
    StepCap { steps: usize, max: usize, model: String },
    /// An answer with too many grid cells.
    #[error("this answer would hold {cells} grid cells ({mazes} mazes, {steps} steps each with return_steps); at most {max} are allowed: ask for fewer steps or mazes, or no return_steps")]
    AnswerTooBig { cells: usize, mazes: usize, steps: usize, max: usize },
}

impl Limits {
    /// The number of mazes of a request.
    pub fn check_maze_count(&self, mazes: usize) -> Result<(), LimitError> {
        match mazes {
            0 => Err(LimitError::NoMazes),
            n if n > self.max_mazes_per_request => Err(LimitError::TooManyMazes { mazes: n, max: self.max_mazes_per_request }),
            _ => Ok(()),
        }
    }

    /// The size of maze `index`.
    pub fn check_maze_size(&self, index: usize, rows: usize, cols: usize) -> Result<(), LimitError> {
        let max = self.max_maze_side;
        if rows > max || cols > max { Err(LimitError::MazeTooBig { index, rows, cols, max }) } else { Ok(()) }
    }

    /// The grid cells of an answer: `cells` of all mazes together, `steps` returned of each
    /// (1 without `return_steps`).
    pub fn check_answer_size(&self, cells: usize, mazes: usize, steps: usize) -> Result<(), LimitError> {
        let total = cells.saturating_mul(steps);
        if total > self.max_answer_cells {
            Err(LimitError::AnswerTooBig { cells: total, mazes, steps, max: self.max_answer_cells })
        } else {
            Ok(())
        }
    }
}

/// State shared by all handlers.
pub struct AppState {
    /// The backend, in words.
    pub backend: String,
    /// The backend models and jobs run on.
    pub backend_kind: BackendKind,
    /// Batching of every model's worker.
    pub batch: BatchConfig,
    /// The models: the one the server started with, then the registered ones.
    pub models: ModelRegistry,
    /// Where `POST /api/models` and eval jobs may read checkpoints (absolute; resolved per request).
    pub model_roots: Vec<PathBuf>,
    /// Evaluations and training runs.
    pub jobs: Arc<JobManager>,
    /// The bearer token of the endpoints that start work.
    pub token: String,
    /// Why there is no model, for the 503 message.
    pub no_model_reason: String,
    /// Datasets to browse.
    pub catalog: Arc<Catalog>,
    /// Request caps.
    pub limits: Limits,
    /// Permits for concurrent maze generation.
    pub generate_permits: Arc<Semaphore>,
    /// One permit per open event stream ([`Limits::max_event_streams`]).
    pub event_stream_permits: Arc<Semaphore>,
}

impl AppState {
    /// The message of a predict request without a model.
    pub fn no_model_message(&self) -> String {
        format!("no model is loaded: {}", self.no_model_reason)
    }
}
