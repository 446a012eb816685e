//! `ApiError`: every failure of the REST API, and its one mapping to an RFC 9457 problem+json response.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::db::DbError;
use crate::domain::FieldError;

/// The problem+json body (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Field errors of a validation failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Every way an API request fails.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON syntax, bad query string).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no acceptable token.
    #[error("{0}")]
    Unauthorized(AuthError),
    /// 403: a valid token outside its scope.
    #[error("this token does not grant access to that resource")]
    Forbidden,
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409: conflicts with existing state.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` does not match.
    #[error("the resource has changed: If-Match does not match its current ETag")]
    PreconditionFailed,
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid.
    #[error("the request has invalid values")]
    Invalid(Vec<FieldError>),
    /// 503: the database is unreachable.
    #[error("the database is unavailable; retry shortly")]
    Unavailable,
    /// 500: a bug. The cause is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 422 with a single field error.
    pub fn invalid(path: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![FieldError::new(path, message)])
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            ApiError::Forbidden => ("forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::PreconditionFailed => ("precondition-failed", "Precondition failed"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::Invalid(_) => ("validation", "Validation failed"),
            ApiError::Unavailable => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => ApiError::Unavailable,
            DbError::InvalidText => ApiError::BadRequest(
                "the request contains a character that cannot be stored (such as NUL)".into(),
            ),
            DbError::Concurrent => {
                ApiError::Conflict("a concurrent change conflicted with this one; retry".into())
            }
            DbError::Constraint { constraint } => {
                ApiError::Conflict(format!("conflicts with existing data ({constraint})"))
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Writes a problem+json response.
pub fn problem_response(
    status: StatusCode,
    type_: &str,
    title: &str,
    detail: String,
    errors: Vec<FieldError>,
) -> HttpResponse {
    let body = Problem {
        type_: format!("https://dialtone.dev/problems/{type_}"),
        title: title.into(),
        status: status.as_u16(),
        detail,
        errors,
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/problem+json"))
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        let (type_, title) = self.kind();
        let errors = match self {
            ApiError::Invalid(e) => e.clone(),
            _ => Vec::new(),
        };
        let mut resp = problem_response(self.status_code(), type_, title, self.to_string(), errors);
        match self {
            ApiError::Unauthorized(_) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::Unavailable => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
            }
            _ => {}
        }
        resp
    }
}
