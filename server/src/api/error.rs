//! The API's error answer: a status and `{"error": "..."}`, and the one place where the
//! domain errors of the API's parts (request limits, the batcher, loading a model, the model
//! registry, jobs) get their HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trm_shared::wire::ErrorBody;

use super::state::LimitError;
use crate::jobs::JobError;
use crate::serving::batcher::BatchError;
use crate::serving::model_roots::RootError;
use crate::serving::model_thread::ModelThreadError;
use crate::serving::registry::RegistryError;

/// An error answer. Handlers return it for every failure, so that no request ends in a bare
/// 500 or a panic and every message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 422: the request reads but its content is unacceptable (bad maze, wrong size).
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 503: no model, or the server is too busy right now.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: a fault of the server, not of the request.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!("{}: {}", self.status, self.message);
        }
        (self.status, Json(ErrorBody { error: self.message })).into_response()
    }
}

impl From<LimitError> for ApiError {
    /// 422: the request reads, but asks for more than this server answers.
    fn from(e: LimitError) -> ApiError {
        ApiError::unprocessable(e.to_string())
    }
}

impl From<BatchError> for ApiError {
    /// 503 while the queue is full or the worker is gone (retrying may help), 500 when the
    /// model failed.
    fn from(e: BatchError) -> ApiError {
        let status = match e {
            BatchError::QueueFull | BatchError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            BatchError::Model(_) | BatchError::Unanswered => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<JobError> for ApiError {
    /// 404 for an unknown job, 409 for a job in the wrong state, 503 while too many run, 500
    /// when the job store fails.
    fn from(e: JobError) -> ApiError {
        let status = match &e {
            JobError::NotFound(_) => StatusCode::NOT_FOUND,
            JobError::Conflict(_) => StatusCode::CONFLICT,
            JobError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            JobError::Store(_) | JobError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<RootError> for ApiError {
    /// 403 for a path the server will not read (no roots, or outside them), 422 for one that
    /// names nothing usable.
    fn from(e: RootError) -> ApiError {
        let status = match e {
            RootError::NoRoots | RootError::Outside { .. } => StatusCode::FORBIDDEN,
            RootError::Missing { .. } | RootError::NotAFile { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    /// 404 for a name not served, 409 for a name taken or a full registry.
    fn from(e: RegistryError) -> ApiError {
        let status = match e {
            RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
            RegistryError::Served(_) | RegistryError::Loading(_) | RegistryError::Full => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ModelThreadError> for ApiError {
    /// 422: the named checkpoint or config does not give a model this server can serve.
    fn from(e: ModelThreadError) -> ApiError {
        ApiError::unprocessable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_map_to_their_statuses() {
        let full = ApiError::from(BatchError::QueueFull);
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(full.message.contains("queue is full"), "{}", full.message);
        assert_eq!(ApiError::from(RegistryError::Full).status, StatusCode::CONFLICT);
        assert_eq!(ApiError::from(RegistryError::Loading("m".into())).status, StatusCode::CONFLICT);
        let missing = ApiError::from(RegistryError::NotFound { name: "x".into(), served: "none".into() });
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(ApiError::from(RootError::NoRoots).status, StatusCode::FORBIDDEN);
        assert_eq!(ApiError::from(RootError::NotAFile { what: "x".into(), path: "a".into() }).status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
