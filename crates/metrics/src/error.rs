//! The metrics service's errors, turned into a status only at the boundary.

use metrix_core::error::{ErrorKind, FieldViolation, internal, invalid_argument, status};
use tonic::Status;

/// Everything that can go wrong in the metrics service.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Bad input, by field.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// No such resource in the caller's organisation.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request cannot run in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another writer changed the same rows; the caller may retry.
    #[error("{0}")]
    Aborted(&'static str),
    /// The relational store failed.
    #[error("storage failure")]
    Storage(#[from] sqlx::Error),
}

impl MetricsError {
    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// The kind of this error in the shared table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::Invalid(_) => ErrorKind::InvalidArgument,
            MetricsError::NotFound(_) => ErrorKind::NotFound,
            MetricsError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            MetricsError::Aborted(_) => ErrorKind::Aborted,
            MetricsError::Storage(_) => ErrorKind::Internal,
        }
    }
}

impl From<Vec<FieldViolation>> for MetricsError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Invalid(violations)
    }
}

impl From<FieldViolation> for MetricsError {
    fn from(violation: FieldViolation) -> Self {
        Self::Invalid(vec![violation])
    }
}

impl From<MetricsError> for Status {
    fn from(error: MetricsError) -> Self {
        match error {
            MetricsError::Invalid(violations) => invalid_argument(violations),
            MetricsError::Storage(_) => internal("metrics request failed", &error),
            other => status(other.kind(), other.to_string()),
        }
    }
}
