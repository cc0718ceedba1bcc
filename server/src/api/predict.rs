//! `POST /api/predict`: the model's answers for one or many mazes, scored against BFS.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use serde::Deserialize;
use trm_shared::api::{ErrorBody, PredictRequest, PredictResponse, PredictResult, StepAnswer, Timing};
use trm_shared::maze::{Cell, Grid, Window, check_answer, label};

use super::body::require_json;
use super::error::ApiError;
use super::maze_input::{parse_grid, place, takes, tokens_to_row_major};
use super::state::{AppState, LoadedModel};

const EXPECTED: &str = r#"{"mazes": [...], "steps"?: N, "return_steps"?: bool}, each maze a row-major string, a list of row strings or a list of token ids"#;

/// Query of `POST /api/predict`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictQuery {
    /// A model of `GET /api/models` (default: the default model).
    pub model: Option<String>,
}

/// Runs a model (`?model=NAME`, else the default when it takes the mazes, else the first served
/// model that does) on the request's mazes, through its dynamic batcher; a maze of another
/// size is solved in the model's frame placed over its open cells.
#[utoipa::path(post, path = "/api/predict", tag = "mazes", request_body = PredictRequest,
    params(("model" = Option<String>, Query, description = "a model of GET /api/models (default: the default model when it takes the mazes, else the first served model that does)")),
    responses((status = 200, body = PredictResponse), (status = 400, body = ErrorBody), (status = 404, description = "unknown model", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, description = "a bad maze, named", body = ErrorBody),
        (status = 503, description = "no model, or the queue is full", body = ErrorBody)))]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PredictQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PredictResponse>, ApiError> {
    let started = Instant::now();
    let request: PredictRequest = require_json(body, EXPECTED)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("{}; expected ?model=NAME", e.body_text())))?;
    let limits = &state.limits;
    let n = request.mazes.len();
    if n == 0 {
        return Err(ApiError::unprocessable("no mazes: `mazes` must list at least one maze"));
    }
    if n > limits.max_mazes_per_request {
        return Err(ApiError::unprocessable(format!(
            "{n} mazes in one request; at most {} are allowed (send several requests)",
            limits.max_mazes_per_request
        )));
    }
    let candidates = match &query.model {
        Some(name) => vec![state.models.get(name)?],
        None => state.models.all(),
    };
    if candidates.is_empty() {
        return Err(ApiError::unavailable(state.no_model_message()));
    }
    let shapes: Vec<(usize, usize)> = candidates.iter().map(|m| (m.info.rows, m.info.cols)).collect();
    let takes = takes(&shapes);
    let mut mazes = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for (i, input) in request.mazes.iter().enumerate() {
        let maze = parse_grid(i, input, &takes)?;
        // An unsolvable maze has no answer to score against.
        labels.push(label(&maze).map_err(|e| ApiError::unprocessable(format!("maze {i}: {e}")))?);
        mazes.push(maze);
    }
    let (model, windows) = choose_model(&candidates, &mazes, &takes)?;
    let shape = (model.info.rows, model.info.cols);
    let steps = request.steps.unwrap_or(model.info.halt_max_steps);
    if steps == 0 || steps > limits.max_steps {
        return Err(ApiError::unprocessable(format!("steps must be 1..={}, got {steps}", limits.max_steps)));
    }
    // The model sees its own frame of every maze; its answers are pasted back below.
    let tokens: Vec<u8> = mazes.iter().zip(&windows).flat_map(|(m, w)| w.crop(m).tokens()).collect();
    let output = model.batcher.submit(tokens, n, steps).await?;

    let seq = shape.0 * shape.1;
    let last = steps - 1;
    let answer = |step: usize, i: usize| windows[i].paste(&mazes[i], &output.answers[step][i * seq..(i + 1) * seq]);
    let results = (0..n)
        .map(|i| {
            let mut result = score(&mazes[i], &labels[i], &answer(last, i));
            result.q_halt = output.q_halt[last][i];
            if request.return_steps {
                let per_step = (0..steps)
                    .map(|s| StepAnswer { step: s + 1, grid: tokens_to_row_major(&answer(s, i)), q_halt: output.q_halt[s][i] })
                    .collect();
                result.steps = Some(per_step);
            }
            result
        })
        .collect();
    Ok(Json(PredictResponse {
        results,
        model: model.info.name.clone(),
        steps,
        timing: Timing {
            queue_ms: output.queued.as_secs_f64() * 1e3,
            compute_ms: output.compute.as_secs_f64() * 1e3,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        },
        batch: output.batch,
    }))
}

/// The first of `candidates` (the `?model=` one, else every served model, the default first)
/// that takes every maze, with its frame over each: a 7x7 default and a 30x30 model send small
/// mazes to the first and real benchmark mazes to the second. Else a 422 naming a maze none
/// takes, and what they take.
fn choose_model(
    candidates: &[Arc<LoadedModel>],
    mazes: &[Grid],
    takes: &str,
) -> Result<(Arc<LoadedModel>, Vec<Window>), ApiError> {
    let frames = |m: &LoadedModel, g: &Grid| Window::around_open_cells(g, m.info.rows, m.info.cols);
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
