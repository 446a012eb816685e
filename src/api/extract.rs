//! Request plumbing shared by handlers: the bearer-token extractor, JSON body parsing with field paths,
//! ETag / If-Match handling and pagination parameters.

use std::future::{ready, Ready};

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, AppState};
use crate::auth::{AuthError, Principal};
use crate::domain::FieldError;

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("no app state".into()))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(AuthError::Missing))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized(AuthError::Invalid("malformed")))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized(AuthError::Missing))?;
    state
        .keys
        .verify(token.trim())
        .map_err(ApiError::Unauthorized)
}

/// The request's media type, lower case, without parameters (`""` when absent).
pub fn media_type(req: &HttpRequest) -> String {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parses a JSON request body into `T`: 415 unless the content type is JSON, 400 on a syntax error,
/// 422 with the failing field's path when the shape or a value is wrong.
pub fn json_body<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let mime = media_type(req);
    if mime != "application/json" && !mime.ends_with("+json") {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as application/json".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(format!(
                "malformed JSON at line {} column {}",
                inner.line(),
                inner.column()
            ))
        } else {
            let mut path = if path == "." { String::new() } else { path };
            // serde's message without the position suffix (the path says where).
            let msg = inner.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            // A missing field is reported at its parent; name the field itself.
            if let Some(field) = msg
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
            {
                path = if path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
            }
            ApiError::Invalid(vec![FieldError::new(path, msg)])
        }
    })?;
    de.end().map_err(|e| {
        ApiError::BadRequest(format!(
            "trailing characters after the JSON value at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    Ok(value)
}

/// The ETag of a stored resource: its change-sequence revision.
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// Checks `If-Match` against the current revision (`None`: the resource does not exist).
pub fn check_if_match(req: &HttpRequest, current: Option<i64>) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(());
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not valid text".into()))?;
    let Some(current) = current else {
        return Err(ApiError::PreconditionFailed);
    };
    if value.trim() == "*" {
        return Ok(());
    }
    let want = etag(current);
    if value.split(',').any(|t| t.trim() == want) {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed)
    }
}

/// `limit` and `cursor` of a list request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The checked page size.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=1000).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::invalid("limit", "must be between 1 and 1000")),
        }
    }

    /// The decoded cursor key.
    pub fn after(&self) -> Result<Option<String>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(c) => crate::db::decode_cursor(c)
                .map(Some)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor returned by this API")),
        }
    }
}

/// Cuts a page fetched with `limit + 1` rows to `limit`, and returns the cursor of the next page (the key
/// of the last item kept) when there was an extra row.
pub fn next_page<T>(items: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Option<String> {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(key)
    } else {
        None
    }
}
