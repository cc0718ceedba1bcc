//! Reading JSON request bodies with error answers that say what is wrong.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Turns a failure to read the body (too large, broken connection) into an error answer.
pub fn body_error(rejection: BytesRejection) -> ApiError {
    // axum names the problem itself ("length limit exceeded" for an oversized body, 413).
    ApiError::new(rejection.status(), format!("cannot read the request body: {}", rejection.body_text()))
}

/// Reads and parses a JSON body that must be present; `expected` describes the wanted shape.
pub fn require_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, expected: &str) -> Result<T, ApiError> {
    let bytes = body.map_err(body_error)?;
    parse_json(&bytes, expected)?.ok_or_else(|| ApiError::bad_request(format!("empty request body; expected {expected}")))
}

/// Parses a JSON body; `expected` describes the wanted shape for the message.
/// `None` for an empty (or all-whitespace) body.
pub fn parse_json<T: DeserializeOwned>(bytes: &Bytes, expected: &str) -> Result<Option<T>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}; expected {expected}")))
}

/// A request body type's expected shape, for the error message when the body does not parse.
pub trait RequestShape {
    /// The wanted JSON, in words.
    const EXPECTED: &'static str;
}

/// A JSON body that must be present (axum's `Json`, but rejected with an [`ApiError`] that says
/// what was expected). The content type is checked by the router for every POST. The last
/// argument of a handler, as every body extractor.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + RequestShape> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state).await;
        require_json(body, T::EXPECTED).map(JsonBody)
    }
}
