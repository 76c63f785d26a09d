//! The metrics service's errors, turned into a status only at the boundary.

use metrix_core::error::{
    ErrorKind, FieldViolation, invalid_argument, resource_exhausted, status, storage_failure, storage_failure_kind,
    unavailable,
};
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
    /// The ingestion queue holds as many entries as it may.
    #[error("the ingestion queue is full ({depth} batches waiting); retry later or send synchronously")]
    QueueFull {
        /// The entries waiting or in flight.
        depth: u64,
    },
    /// The ingestion queue cannot be reached.
    #[error("the ingestion queue is unavailable")]
    Queue(#[source] metrix_core::cache::CacheError),
    /// A batch larger than one call may carry.
    #[error("the batch is {bytes} bytes; at most {limit} bytes per call")]
    BatchTooLarge {
        /// The batch's encoded size.
        bytes: usize,
        /// The most one call may carry.
        limit: usize,
    },
    /// The caller was refused by the shared credential checks
    /// (UNAUTHENTICATED or PERMISSION_DENIED), answered as they decided.
    #[error("{}", .0.message())]
    Refused(Status),
}

/// How long a caller refused by a full queue is asked to wait.
pub const QUEUE_FULL_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

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
            MetricsError::Storage(error) => storage_failure_kind(error),
            MetricsError::QueueFull { .. } | MetricsError::BatchTooLarge { .. } => ErrorKind::ResourceExhausted,
            MetricsError::Queue(_) => ErrorKind::Unavailable,
            MetricsError::Refused(status) => ErrorKind::from_grpc_code(status.code()),
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

impl From<Status> for MetricsError {
    fn from(status: Status) -> Self {
        Self::Refused(status)
    }
}

impl From<MetricsError> for Status {
    fn from(error: MetricsError) -> Self {
        match error {
            MetricsError::Refused(status) => status,
            MetricsError::Invalid(violations) => invalid_argument(violations),
            MetricsError::Storage(cause) => storage_failure("metrics request failed", &cause),
            MetricsError::QueueFull { .. } => resource_exhausted(error.to_string(), QUEUE_FULL_RETRY_AFTER),
            MetricsError::Queue(_) => unavailable("cannot reach the ingestion queue", &error),
            other => status(other.kind(), other.to_string()),
        }
    }
}
