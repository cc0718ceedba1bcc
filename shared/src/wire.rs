//! Wire types of the HTTP API that `trm serve` offers under `/api`, shared by the server and
//! the browser app so that both agree by construction.
//!
//! Mazes travel as the benchmark's row-major strings (`#` wall, ` ` open, `S` start, `G` goal,
//! `o` path): 900 characters for a 30x30 maze. Every error answer is an [`ErrorBody`].

use serde::{Deserialize, Serialize};

pub mod jobs;

/// The body of every error answer: `{"error": "<what is wrong, and how to fix it>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A message naming the problem (which maze, which cell, which sizes are accepted ...).
    pub error: String,
}

/// `GET /api/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `"ok"` while the server answers.
    pub status: String,
    /// The server's version (the workspace version).
    pub version: String,
    /// The backend the model runs on, e.g. `"cpu (flex)"`.
    pub backend: String,
    /// Whether a model is loaded; without one, `POST /api/predict` answers 503.
    pub model_loaded: bool,
    /// The loaded model, if any.
    pub model: Option<ModelInfo>,
    /// What the dynamic batcher has done so far (absent without a model).
    pub batcher: Option<BatcherStats>,
}

/// A model the server can run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// Short name (the checkpoint's file stem, or `default`).
    pub name: String,
    /// The checkpoint file it was loaded from.
    pub checkpoint: String,
    /// The config file it was built from.
    pub config: String,
    /// Maze rows the model takes (for a size-general model, see `any_size`: the size of the
    /// benchmark, what `POST /api/generate` makes by default).
    pub rows: usize,
    /// Maze columns the model takes (as `rows`).
    pub cols: usize,
    /// The size-general model (`[arch] mixer = "local"`): it answers a maze of any size on the
    /// maze's own grid (up to the server's largest canvas), halting per maze on its own within
    /// a cap of `halt_max_steps` ACT steps (or the request's `steps`). Absent (false) for the
    /// reference models, which take `rows` x `cols` mazes and run exactly their steps.
    #[serde(default)]
    pub any_size: bool,
    /// ACT steps a prediction runs by default (the config's `halt_max_steps`); for a
    /// size-general model the default cap, each maze stopping sooner when the model halts.
    pub halt_max_steps: usize,
    /// Width of the hidden state.
    pub hidden_size: usize,
    /// Layers of the reasoning network.
    pub l_layers: usize,
    /// Outer recursions per ACT step.
    pub h_cycles: usize,
    /// Inner recursions per outer one.
    pub l_cycles: usize,
}

/// `GET /api/models`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelList {
    /// Models the server can run: the one it was started with and those registered by
    /// `POST /api/models`.
    pub models: Vec<ModelInfo>,
    /// Name of the model `POST /api/predict` uses.
    pub default: Option<String>,
}

/// Counters of the dynamic batcher: how requests were grouped into forward passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatcherStats {
    /// Most mazes per forward batch.
    pub max_batch: usize,
    /// How long the batcher waits for more requests after the first one of a batch, in ms.
    pub wait_ms: u64,
    /// Batches run so far.
    pub batches: u64,
    /// Requests answered so far.
    pub requests: u64,
    /// Mazes predicted so far.
    pub mazes: u64,
    /// Most mazes in one batch so far.
    pub largest_batch: usize,
    /// Most requests in one batch so far.
    pub most_requests_in_a_batch: usize,
    /// `mazes / batches`, 0 before the first batch.
    pub mean_batch_mazes: f64,
}

/// One maze of a [`PredictRequest`], in any of the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum MazeInput {
    /// The benchmark's row-major string (square), or rows separated by newlines.
    Text(String),
    /// One string per row, all the same width.
    Rows(Vec<String>),
    /// Row-major token ids (`#` 1, ` ` 2, `S` 3, `G` 4), a square number of them.
    Tokens(Vec<i64>),
}

/// `POST /api/predict`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The mazes, each of the size the model takes (any size up to the server's largest canvas
    /// for a size-general model); answered in the same order.
    pub mazes: Vec<MazeInput>,
    /// ACT steps to run (default: the model's `halt_max_steps`); for a size-general model the
    /// cap, each maze stopping at the step where the model halts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Also return the answer and q_halt after every ACT step (for a size-general model, up
    /// to the step where each maze halted).
    #[serde(default)]
    pub return_steps: bool,
}

/// The answer to a [`PredictRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictResponse {
    /// One result per maze, in the order of the request.
    pub results: Vec<PredictResult>,
    /// Name of the model that answered.
    pub model: String,
    /// ACT steps run: for a reference model, exactly the steps asked for; for a size-general
    /// one, the most that any maze of this request ran (each stops where the model halts).
    pub steps: usize,
    /// Size-general models only: the cap on ACT steps this request ran under (its `steps`,
    /// else the model's `halt_max_steps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_cap: Option<usize>,
    /// Where the time went.
    pub timing: Timing,
    /// The forward batch this request was part of.
    pub batch: BatchInfo,
}

/// The model's answer for one maze, scored against the BFS shortest path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictResult {
    /// The predicted grid, row-major. A cell the model filled with a token that is no maze
    /// cell (padding) is written `?`; such an answer is never valid.
    pub grid: String,
    /// Rows of the grid.
    pub rows: usize,
    /// Columns of the grid.
    pub cols: usize,
    /// The answer draws one simple S-to-G path through open cells and changes nothing else.
    pub valid: bool,
    /// Valid and as short as the BFS optimum.
    pub shortest: bool,
    /// Equal to the benchmark's label, cell for cell.
    pub exact: bool,
    /// Moves of the predicted path, when valid.
    pub path_moves: Option<usize>,
    /// Moves of a shortest path (BFS).
    pub optimal_moves: usize,
    /// Cells that differ from the label.
    pub wrong_cells: usize,
    /// The halting logit after the last step (`> 0`: the model would stop).
    pub q_halt: f32,
    /// The answer after every ACT step, when `return_steps` was asked for (for a size-general
    /// model, steps 1 to `steps_run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepAnswer>>,
    /// Size-general models only: the ACT steps this maze ran; `grid` is the answer after the
    /// last of them (`halted_at`, else the request's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_run: Option<usize>,
    /// Size-general models only: the ACT step at which the model halted on this maze (its Q
    /// head said the answer is done); absent when it reached the cap without halting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_at: Option<usize>,
}

/// The answer after one ACT step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepAnswer {
    /// The step, from 1.
    pub step: usize,
    /// The predicted grid after this step, row-major (`?` as in [`PredictResult::grid`]).
    pub grid: String,
    /// The halting logit after this step.
    pub q_halt: f32,
}

/// Time spent on a request, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timing {
    /// Waiting for the batcher (the wait window and any batch running before).
    pub queue_ms: f64,
    /// The forward passes of the batch this request was part of.
    pub compute_ms: f64,
    /// From the request being parsed to the answer being ready.
    pub total_ms: f64,
}

/// The forward batch a request was answered in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchInfo {
    /// Mazes in the batch, from all its requests.
    pub mazes: usize,
    /// Requests in the batch.
    pub requests: usize,
}

/// `POST /api/generate`; every field is optional and an empty body is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct GenerateRequest {
    /// Side of a square maze (default: the loaded model's size, else 30).
    pub size: Option<usize>,
    /// Rows, for a non-square maze (overrides `size`).
    pub rows: Option<usize>,
    /// Columns, for a non-square maze (overrides `size`).
    pub cols: Option<usize>,
    /// Shortest path of at least this many moves (default: the generator's for the size).
    pub min_moves: Option<u32>,
    /// Seed; the same seed and settings give the same maze (default: random).
    pub seed: Option<u64>,
}

/// A generated maze.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GenerateResponse {
    /// The puzzle, row-major.
    pub maze: String,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// The puzzle with its shortest path (the benchmark's label), row-major.
    pub label: String,
    /// Moves of the shortest path.
    pub moves: u32,
    /// The minimum path length the generator was asked for.
    pub min_moves: u32,
    /// The seed used (send it back to get the same maze).
    pub seed: u64,
}

/// `GET /api/datasets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetList {
    /// Datasets found under the server's data directories.
    pub datasets: Vec<DatasetInfo>,
}

/// A dataset directory in the reference layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetInfo {
    /// The directory name, used in `/api/datasets/{name}/{split}`.
    pub name: String,
    /// Its splits (`train`, `test`, ...) that could be read.
    pub splits: Vec<SplitInfo>,
    /// Splits that could not be read (a bad file): skipped, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SplitError>,
}

/// A split of a dataset that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SplitError {
    /// `train`, `test`, ...
    pub name: String,
    /// What is wrong, in one line.
    pub error: String,
}

/// One split of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SplitInfo {
    /// `train`, `test`, ...
    pub name: String,
    /// Examples (mazes) in the split.
    pub examples: usize,
    /// Maze rows.
    pub rows: usize,
    /// Maze columns.
    pub cols: usize,
}

/// Query of `GET /api/datasets/{name}/{split}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PageQuery {
    /// First example (default 0).
    pub offset: Option<usize>,
    /// Examples per page (default 20, at most 100).
    pub limit: Option<usize>,
}

/// A page of a dataset split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetPage {
    /// Dataset name.
    pub dataset: String,
    /// Split name.
    pub split: String,
    /// Examples in the split.
    pub total: usize,
    /// Index of the first item.
    pub offset: usize,
    /// The page size used (after the cap).
    pub limit: usize,
    /// Maze rows.
    pub rows: usize,
    /// Maze columns.
    pub cols: usize,
    /// The examples `offset..offset + items.len()`.
    pub items: Vec<DatasetItem>,
}

/// One example of a dataset split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetItem {
    /// Index in the split.
    pub index: usize,
    /// The puzzle, row-major.
    pub input: String,
    /// The label (puzzle with its shortest path), row-major.
    pub label: String,
    /// Moves of the labelled path.
    pub moves: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maze_inputs_accept_every_form() {
        let r: PredictRequest =
            serde_json::from_str(r#"{"mazes": ["S  G", ["S ", " G"], [3, 2, 2, 4]], "steps": 2}"#).unwrap();
        assert_eq!(r.mazes[0], MazeInput::Text("S  G".into()));
        assert_eq!(r.mazes[1], MazeInput::Rows(vec!["S ".into(), " G".into()]));
        assert_eq!(r.mazes[2], MazeInput::Tokens(vec![3, 2, 2, 4]));
        assert_eq!(r.steps, Some(2));
        assert!(!r.return_steps);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<PredictRequest>(r#"{"mazes": [], "stepz": 2}"#).is_err());
        assert!(serde_json::from_str::<GenerateRequest>(r#"{"sise": 2}"#).is_err());
        assert_eq!(serde_json::from_str::<GenerateRequest>("{}").unwrap(), GenerateRequest::default());
    }
}
