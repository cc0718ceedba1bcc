//! `POST /api/generate`: a new random maze from the benchmark's generator.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use trm_shared::wire::{GenerateRequest, GenerateResponse};
use trm_shared::generate::{GenerateConfig, GenerateError, generate_splits};
use trm_shared::maze::DEFAULT_SIZE;

use super::body::{body_error, parse_json};
use super::error::ApiError;
use super::state::AppState;

/// Layouts searched in a row without a maze before giving up: far fewer than the command's
/// default, so that an unreachable `min_moves` answers 422 in seconds, not minutes.
const STALL_LIMIT: u64 = 200_000;

const EXPECTED: &str = r#"an empty body or {"size"?: N, "rows"?: R, "cols"?: C, "min_moves"?: M, "seed"?: S}"#;

/// Generates one maze; with an empty body, of the default model's size (else 30x30).
#[utoipa::path(post, path = "/api/generate", tag = "mazes", request_body(content = GenerateRequest, description = "optional: an empty body is allowed"),
    responses((status = 200, body = GenerateResponse), (status = 400, body = trm_shared::wire::ErrorBody), (status = 422, body = trm_shared::wire::ErrorBody), (status = 503, body = trm_shared::wire::ErrorBody)))]
pub async fn generate(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<GenerateResponse>, ApiError> {
    let bytes = body.map_err(body_error)?;
    let request: GenerateRequest = parse_json(&bytes, EXPECTED)?.unwrap_or_default();
    let (default_rows, default_cols) =
        state.models.default_model().map_or((DEFAULT_SIZE, DEFAULT_SIZE), |m| (m.info.rows, m.info.cols));
    let rows = request.rows.or(request.size).unwrap_or(default_rows);
    let cols = request.cols.or(request.size).unwrap_or(default_cols);
    let max = state.limits.max_generate_side;
    if !(2..=max).contains(&rows) || !(2..=max).contains(&cols) {
        return Err(ApiError::unprocessable(format!("maze size {rows}x{cols} is out of range: each side must be 2..={max}")));
    }
    let seed = request.seed.unwrap_or_else(fresh_seed);
    let config = GenerateConfig {
        rows,
        cols,
        min_moves: request.min_moves,
        seed,
        max_layouts_without_maze: STALL_LIMIT,
        ..GenerateConfig::default()
    };
    // Settings errors (an impossible min_moves) are answered before any search.
    let resolved = config.resolve().map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let permit = state
        .generate_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many mazes are being generated right now; retry shortly"))?;
    // The search is CPU-heavy: off the async runtime.
    let found = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        generate_splits(&config, &[1], &mut |_| {})
    })
    .await
    .map_err(|e| ApiError::internal(format!("the generator stopped: {e}")))?;
    let maze = match found {
        Ok(mut splits) => splits.pop().and_then(|mut s| s.pop()),
        Err(e @ GenerateError::Label(_)) => return Err(ApiError::internal(e.to_string())),
        Err(e) => return Err(ApiError::unprocessable(e.to_string())),
    }
    .ok_or_else(|| ApiError::internal("the generator returned no maze"))?;
    Ok(Json(GenerateResponse {
        maze: maze.puzzle.to_row_major(),
        rows,
        cols,
        label: maze.label.to_row_major(),
        moves: maze.moves,
        min_moves: resolved.min_moves,
        seed,
    }))
}

/// A seed for a request that gave none: the clock, mixed so that close calls differ.
fn fresh_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 finaliser.
    let mut z = nanos.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
