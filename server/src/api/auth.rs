//! The bearer token of the endpoints that start work (`POST /api/train`, `/api/eval`,
//! `/api/models`, `DELETE /api/jobs/{id}`, resume). Reading and predicting stay open.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::TryRngCore;

use super::error::ApiError;
use super::state::AppState;

/// A handler argument that admits only requests with `Authorization: Bearer <token>`.
pub struct RequireToken;

/// A refused request: 401 with `WWW-Authenticate: Bearer`.
pub struct Unauthorized(ApiError);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut response = self.0.into_response();
        response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

impl FromRequestParts<Arc<AppState>> for RequireToken {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let refuse = |message: &str| Err(Unauthorized(ApiError::new(StatusCode::UNAUTHORIZED, message)));
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return refuse(
                "this endpoint starts work and needs `Authorization: Bearer <token>` (the token `trm serve` printed at start, or its --token / TRM_TOKEN)",
            );
        };
        let given = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        match given {
            Some(token) if same(token.trim().as_bytes(), state.token.as_bytes()) => Ok(RequireToken),
            Some(_) => refuse("wrong bearer token"),
            None => refuse("the Authorization header must be `Bearer <token>`"),
        }
    }
}

/// Compares in time independent of where the inputs differ (the length is not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random token: 32 hex digits from the operating system's generator.
pub fn generate_token() -> Result<String, rand::rand_core::OsError> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_compared_exactly() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(same(a.as_bytes(), a.as_bytes()));
        assert!(!same(a.as_bytes(), b.as_bytes()));
        assert!(!same(b"abc", b"abcd"));
    }
}
