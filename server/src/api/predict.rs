//! `POST /api/predict`: the model's answers for one or many mazes, scored against BFS.
//!
//! The async handler only waits: reading the JSON, parsing the mazes and their BFS labels, and
//! scoring and writing the answer run on tokio's blocking pool, the model on its own thread
//! behind the batcher.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use trm_shared::wire::{ErrorBody, PredictRequest, PredictResponse, PredictResult, StepAnswer, Timing};
use trm_shared::maze::{Cell, Grid, Window, check_answer, label};
use trm_shared::model::GridShape;

use crate::serving::batcher::PredictOutput;
use crate::serving::registry::LoadedModel;
use super::body::require_json;
use super::error::ApiError;
use super::maze_input::{Takes, parse_grid, place, takes, tokens_to_row_major};
use super::state::{AppState, LimitError, Limits};

const EXPECTED: &str = r#"{"mazes": [...], "steps"?: N, "return_steps"?: bool}, each maze a row-major string, a list of row strings or a list of token ids"#;

/// Query of `POST /api/predict`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictQuery {
    /// A model of `GET /api/models` (default: the default model).
    pub model: Option<String>,
}

/// Runs a model (`?model=NAME`, else the default when it takes the mazes, else the first served
/// model that does) on the request's mazes, through its dynamic batcher. A size-general model
/// answers every maze on its own grid, for at most `steps` ACT steps, each maze stopping where
/// the model halts; a reference model solves a maze of another size in its frame placed over
/// the maze's open cells, for exactly `steps` steps.
#[utoipa::path(post, path = "/api/predict", tag = "mazes", request_body = PredictRequest,
    params(("model" = Option<String>, Query, description = "a model of GET /api/models (default: the default model when it takes the mazes, else the first served model that does)")),
    responses((status = 200, body = PredictResponse), (status = 400, body = ErrorBody), (status = 404, description = "unknown model", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, description = "a bad maze, named, or a request beyond the limits (maze size, steps, answer size), named", body = ErrorBody),
        (status = 503, description = "no model, or the queue is full", body = ErrorBody)))]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PredictQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    // Errors are kept for later, to answer them in the order a request is read: body, query, mazes.
    let query = query.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("{}; expected ?model=NAME", e.body_text())));
    let candidates = match &query {
        Ok(PredictQuery { model: Some(name) }) => state.models.get(name).map(|m| vec![m]).map_err(ApiError::from),
        _ => Ok(state.models.all()),
    };
    let (limits, no_model) = (state.limits.clone(), state.no_model_message());
    let job = blocking(move || prepare(body, query.map(|_| ()), candidates, &limits, no_model)).await?;
    let output = job.model.batcher.submit(job.tokens, job.shapes, job.steps, job.return_steps).await?;
    let json = blocking(move || respond(&job.model, job.steps, job.return_steps, &job.mazes, &job.labels, &job.windows, output, started)).await?;
    Ok(([(CONTENT_TYPE, "application/json")], json).into_response())
}

/// Runs CPU-bound work of a request off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(format!("handling the request: {e}")))?
}

/// A request read, checked and ready for the model.
struct Prepared {
    model: Arc<LoadedModel>,
    mazes: Vec<Grid>,
    labels: Vec<Grid>,
    /// What the model sees of each maze: its frame, or the maze itself.
    windows: Vec<Window>,
    /// Each maze as the model sees it, row-major, one after the other.
    tokens: Vec<u8>,
    shapes: Vec<GridShape>,
    /// Steps (reference) or the cap on steps (size-general).
    steps: usize,
    return_steps: bool,
}

/// Reads the request, parses and labels its mazes, picks the model and checks the limits.
/// It runs on a blocking thread, body parsing included: a 2 MiB body of mazes is CPU work, so
/// predict takes its body as bytes rather than through [`super::body::JsonBody`].
fn prepare(
    body: Result<Bytes, BytesRejection>,
    query: Result<(), ApiError>,
    candidates: Result<Vec<Arc<LoadedModel>>, ApiError>,
    limits: &Limits,
    no_model: String,
) -> Result<Prepared, ApiError> {
    let request: PredictRequest = require_json(body, EXPECTED)?;
    query?;
    limits.check_maze_count(request.mazes.len())?;
    let candidates = candidates?;
    if candidates.is_empty() {
        return Err(ApiError::unavailable(no_model));
    }
    let kinds: Vec<Takes> = candidates.iter().map(|m| takes_of(m)).collect();
    let takes = takes(&kinds, limits.max_maze_side);
    let mut mazes = Vec::with_capacity(request.mazes.len());
    let mut labels = Vec::with_capacity(request.mazes.len());
    for (i, input) in request.mazes.iter().enumerate() {
        let maze = parse_grid(i, input, &takes)?;
        limits.check_maze_size(i, maze.rows(), maze.cols())?;
        // An unsolvable maze has no answer to score against.
        labels.push(label(&maze).map_err(|e| ApiError::unprocessable(format!("maze {i}: {e}")))?);
        mazes.push(maze);
    }
    let (model, windows) = choose_model(&candidates, &mazes, &takes)?;
    let steps = if model.info.any_size {
        // A cap: by default the model's, within the limit.
        let max = limits.max_local_steps;
        let steps = request.steps.unwrap_or(model.info.halt_max_steps.min(max));
        if steps == 0 || steps > max {
            return Err(LimitError::StepCap { steps, max, model: model.info.name.clone() }.into());
        }
        steps
    } else {
        let steps = request.steps.unwrap_or(model.info.halt_max_steps);
        if steps == 0 || steps > limits.max_steps {
            return Err(LimitError::Steps { steps, max: limits.max_steps }.into());
        }
        steps
    };
    let cells: usize = mazes.iter().map(Grid::len).sum();
    limits.check_answer_size(cells, mazes.len(), if request.return_steps { steps } else { 1 })?;
    // The model sees its own frame of every maze; its answers are pasted back in `respond`.
    let seen: Vec<Grid> = mazes.iter().zip(&windows).map(|(m, w)| w.view(m)).collect();
    let tokens: Vec<u8> = seen.iter().flat_map(Grid::tokens).collect();
    let shapes = seen.iter().map(|g| GridShape { rows: g.rows(), cols: g.cols() }).collect();
    Ok(Prepared { model, mazes, labels, windows, tokens, shapes, steps, return_steps: request.return_steps })
}

/// What a served model takes.
fn takes_of(model: &LoadedModel) -> Takes {
    if model.info.any_size { Takes::AnySize } else { Takes::Size(model.info.rows, model.info.cols) }
}

/// The answer to the request: each maze's answer pasted back into it and scored, as JSON.
#[allow(clippy::too_many_arguments)]
fn respond(
    model: &LoadedModel,
    steps: usize,
    return_steps: bool,
    mazes: &[Grid],
    labels: &[Grid],
    windows: &[Window],
    output: PredictOutput,
    started: Instant,
) -> Result<Vec<u8>, ApiError> {
    let any_size = model.info.any_size;
    let mut results = Vec::with_capacity(mazes.len());
    for (i, out) in output.mazes.iter().enumerate() {
        let paste = |answer: &[u8]| windows[i].paste(&mazes[i], answer);
        let (Some(last), Some(&q_halt)) = (out.answers.last(), out.q_halt.last()) else {
            return Err(ApiError::internal(format!("the model gave no answer for maze {i}")));
        };
        let mut result = score(&mazes[i], &labels[i], &paste(last));
        result.q_halt = q_halt;
        if return_steps {
            let per_step = out.answers.iter().zip(&out.q_halt).enumerate();
            let per_step = per_step.map(|(s, (a, &q))| StepAnswer { step: s + 1, grid: tokens_to_row_major(&paste(a)), q_halt: q });
            result.steps = Some(per_step.collect());
        }
        if any_size {
            result.steps_run = Some(out.steps_run);
            result.halted_at = out.halted_at;
        }
        results.push(result);
    }
    let response = PredictResponse {
        results,
        model: model.info.name.clone(),
        // A size-general model's mazes stop on their own: the most any ran.
        steps: if any_size { output.mazes.iter().map(|m| m.steps_run).max().unwrap_or(0) } else { steps },
        step_cap: any_size.then_some(steps),
        timing: Timing {
            queue_ms: output.queued.as_secs_f64() * 1e3,
            compute_ms: output.compute.as_secs_f64() * 1e3,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        },
        batch: output.batch,
    };
    serde_json::to_vec(&response).map_err(|e| ApiError::internal(format!("writing the answer: {e}")))
}

/// The first of `candidates` (the `?model=` one, else every served model, the default first)
/// that takes every maze, with what it sees of each: a size-general model takes every maze
/// (the size limit is checked before) and sees it whole; a reference model takes those whose
/// open cells fit in its frame, placed over each. Else a 422 naming a maze none takes, and
/// what they take.
fn choose_model(
    candidates: &[Arc<LoadedModel>],
    mazes: &[Grid],
    takes: &str,
) -> Result<(Arc<LoadedModel>, Vec<Window>), ApiError> {
    let frames = |m: &LoadedModel, g: &Grid| Window::place(g, takes_of(m));
    for model in candidates {
        if let Ok(windows) = mazes.iter().map(|g| frames(model, g)).collect::<Result<Vec<Window>, _>>() {
            return Ok((model.clone(), windows));
        }
    }
    let error = match candidates {
        [only] => mazes.iter().enumerate().find_map(|(i, g)| place(i, g, (only.info.rows, only.info.cols)).err()),
        _ => mazes.iter().enumerate().find(|(_, g)| candidates.iter().all(|m| frames(m, g).is_err())).map(|(i, g)| {
            ApiError::unprocessable(format!("maze {i} is {}x{}, and no served model takes it: {takes}", g.rows(), g.cols()))
        }),
    };
    Err(error.unwrap_or_else(|| {
        ApiError::unprocessable(format!("no one served model takes every maze of this request (send them apart): {takes}"))
    }))
}

/// Scores one answer: the checker's verdict when the answer is a grid, else a wrong answer.
fn score(maze: &Grid, label: &Grid, answer: &[u8]) -> PredictResult {
    let optimal_moves = label.cells().iter().filter(|&&c| c == Cell::Path).count() + 1;
    let label_tokens = label.tokens();
    let wrong_cells = answer.iter().zip(&label_tokens).filter(|(a, l)| a != l).count();
    let check = Grid::from_tokens(maze.rows(), maze.cols(), answer).ok().and_then(|g| check_answer(maze, &g).ok());
    PredictResult {
        grid: tokens_to_row_major(answer),
        rows: maze.rows(),
        cols: maze.cols(),
        valid: check.as_ref().is_some_and(|c| c.valid),
        shortest: check.as_ref().is_some_and(|c| c.shortest),
        exact: wrong_cells == 0,
        path_moves: check.as_ref().and_then(|c| c.path_moves),
        optimal_moves,
        wrong_cells,
        q_halt: 0.0,
        steps: None,
        steps_run: None,
        halted_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_the_label_as_exact_and_padding_as_wrong() {
        let maze = Grid::parse_lines("S  \n## \nG  \n").unwrap();
        let lab = label(&maze).unwrap();
        let right = score(&maze, &lab, &lab.tokens());
        assert!(right.exact && right.valid && right.shortest);
        assert_eq!((right.path_moves, right.optimal_moves, right.wrong_cells), (Some(6), 6, 0));
        let mut padded = lab.tokens();
        padded[4] = 0;
        let wrong = score(&maze, &lab, &padded);
        assert!(!wrong.exact && !wrong.valid && !wrong.shortest);
        assert_eq!((wrong.wrong_cells, wrong.grid.chars().nth(4)), (1, Some('?')));
    }
}
