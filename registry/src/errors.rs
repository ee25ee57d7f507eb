//! Errors the REST API answers with, in Confluent's body format `{"error_code": N, "message": "..."}` and with
//! Confluent's codes, because clients branch on them (e.g. a serializer treats 40401 as "not registered yet").

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::http::CONTENT_TYPE;

/// An error answer of the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Confluent error code.
    pub code: u32,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 40401.
    pub fn subject_not_found(subject: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        )
    }

    /// 40402.
    pub fn version_not_found(subject: &str, version: i32) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40402,
            format!("Version {version} not found for subject '{subject}'."),
        )
    }

    /// 40403 for an id.
    pub fn schema_id_not_found(id: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {id} not found"),
        )
    }

    /// 40403 for a lookup by schema text.
    pub fn schema_not_found(subject: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema not found under subject '{subject}'"),
        )
    }

    /// 40404.
    pub fn subject_soft_deleted(subject: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40404,
            format!(
                "Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
            ),
        )
    }

    /// 40405.
    pub fn subject_not_soft_deleted(subject: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40405,
            format!("Subject '{subject}' was not deleted first before being permanently deleted"),
        )
    }

    /// 40406.
    pub fn version_soft_deleted(subject: &str, version: i32) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40406,
            format!("Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently"),
        )
    }

    /// 40407.
    pub fn version_not_soft_deleted(subject: &str, version: i32) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40407,
            format!("Subject '{subject}' Version {version} was not deleted first before being permanently deleted"),
        )
    }

    /// 40408.
    pub fn subject_level_compatibility_not_configured(subject: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    }

    /// 40409.
    pub fn subject_level_mode_not_configured(subject: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            40409,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )
    }

    /// 409: the schema breaks the subject's compatibility level.
    pub fn incompatible(message: String) -> ApiError {
        Self::new(StatusCode::CONFLICT, 409, message)
    }

    /// 42201.
    pub fn invalid_schema(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, message)
    }

    /// 42202.
    pub fn invalid_version(version: &str) -> ApiError {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between \
                 [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    /// 42203.
    pub fn invalid_compatibility_level(level: &str) -> ApiError {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            format!(
                "Invalid compatibility level '{level}'. Valid values are none, backward, forward, full, \
                 backward_transitive, forward_transitive, and full_transitive"
            ),
        )
    }

    /// 42204.
    pub fn invalid_mode(mode: &str) -> ApiError {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42204,
            format!("Invalid mode '{mode}'. Valid values are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT"),
        )
    }

    /// 42205.
    pub fn not_permitted(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42205, message)
    }

    /// 42206: a hard delete of a version other schemas reference.
    pub fn reference_exists(subject: &str, version: i32, referrers: &[u32]) -> ApiError {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42206,
            format!(
                "One or more references exist to the schema {{subject={subject}, version={version}}}: schema ids \
                 {referrers:?} reference it; delete them first"
            ),
        )
    }

    /// 413 for a request body above the registry's limit, in Confluent's body format like every other error.
    pub fn body_too_large(limit: usize) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            413,
            format!(
                "Request body too large: this registry accepts request bodies up to {limit} bytes"
            ),
        )
    }

    /// 400 for a request body that is not the JSON the endpoint takes.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, 400, message)
    }

    /// 404 for a path no endpoint serves.
    pub fn no_route() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found")
    }

    /// 405 for a method the path does not take.
    pub fn method_not_allowed() -> ApiError {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            405,
            "HTTP 405 Method Not Allowed",
        )
    }

    /// 50001: the Kafka store failed.
    pub fn store(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50001, message)
    }

    /// 50002: a write to the Kafka store timed out.
    pub fn store_timeout(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 50002, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.code, "message": self.message });
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}
