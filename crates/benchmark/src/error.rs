//! The benchmark service's errors, turned into a status only at the boundary.

use metrix_core::error::{
    ErrorKind, FieldViolation, error_chain, internal, invalid_argument, resource_exhausted, status, storage_failure,
    storage_failure_kind,
};
use tonic::Status;

use crate::peers::PeerError;

/// Everything that can go wrong in the benchmark service.
#[derive(Debug, thiserror::Error)]
pub enum BenchmarkError {
    /// Bad input, by field.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// No such resource in the caller's organisation.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's credentials were refused.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not see or act on this.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// The request cannot run in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The metrics service refused or failed a call.
    #[error("peer data")]
    Peers(#[from] PeerError),
    /// The relational store failed.
    #[error("storage failure")]
    Storage(#[from] sqlx::Error),
    /// A stored document could not be read back.
    #[error("stored report is unreadable")]
    Corrupt(#[from] serde_json::Error),
    /// A stored report could not be rendered.
    #[error("report rendering failed: {0}")]
    Render(String),
    /// A computation on the blocking pool did not finish.
    #[error("computation failed")]
    Computation(#[from] tokio::task::JoinError),
    /// The organisation made too many benchmark queries.
    #[error("too many benchmark queries from your organisation; retry later")]
    Throttled(std::time::Duration),
    /// The organisation asked for too many bootstraps of new seeds or
    /// resample counts.
    #[error(
        "too many bootstraps with new seeds or resample counts from your organisation; reuse a seed, leave \
         bootstrap_seed and bootstrap_resamples unset, or retry later"
    )]
    FreshBootstraps(std::time::Duration),
    /// Every core is busy computing slices.
    #[error("the benchmark service is busy; retry later")]
    Busy,
}

impl BenchmarkError {
    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// The kind of this error in the shared table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BenchmarkError::Invalid(_) => ErrorKind::InvalidArgument,
            BenchmarkError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            BenchmarkError::NotFound(_) => ErrorKind::NotFound,
            BenchmarkError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            BenchmarkError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            BenchmarkError::Peers(error) => error.kind(),
            BenchmarkError::Storage(error) => storage_failure_kind(error),
            BenchmarkError::Corrupt(_) | BenchmarkError::Render(_) | BenchmarkError::Computation(_) => {
                ErrorKind::Internal
            }
            BenchmarkError::Throttled(_) | BenchmarkError::FreshBootstraps(_) | BenchmarkError::Busy => {
                ErrorKind::ResourceExhausted
            }
        }
    }
}

impl From<Vec<FieldViolation>> for BenchmarkError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Invalid(violations)
    }
}

impl From<FieldViolation> for BenchmarkError {
    fn from(violation: FieldViolation) -> Self {
        Self::Invalid(vec![violation])
    }
}

impl From<BenchmarkError> for Status {
    fn from(error: BenchmarkError) -> Self {
        match error {
            BenchmarkError::Invalid(violations) => invalid_argument(violations),
            BenchmarkError::Peers(PeerError::Unavailable(ref cause)) => {
                tracing::warn!(error = %error_chain(&error), cause = %cause, "metrics service unavailable");
                status(ErrorKind::Unavailable, "peer data is unavailable, retry later")
            }
            BenchmarkError::Peers(PeerError::Refused(ref refused))
                if refused.code() == tonic::Code::Unauthenticated =>
            {
                status(ErrorKind::Unauthenticated, refused.message().to_owned())
            }
            BenchmarkError::Storage(cause) => storage_failure("benchmark request failed", &cause),
            BenchmarkError::Throttled(retry_after) | BenchmarkError::FreshBootstraps(retry_after) => {
                resource_exhausted(error.to_string(), retry_after)
            }
            BenchmarkError::Busy => resource_exhausted(error.to_string(), std::time::Duration::from_secs(1)),
            BenchmarkError::Peers(_)
            | BenchmarkError::Corrupt(_)
            | BenchmarkError::Render(_)
            | BenchmarkError::Computation(_) => internal("benchmark request failed", &error),
            other => status(other.kind(), other.to_string()),
        }
    }
}
