//! The auth service's errors, turned into a status only at the boundary.

use metrix_core::cache::CacheError;
use metrix_core::error::{
    ErrorKind, FieldViolation, internal, invalid_argument, resource_exhausted, status, storage_failure,
    storage_failure_kind, unavailable,
};
use tonic::Status;

/// Everything that can go wrong in the auth service.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad input, by field.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// Credentials refused; the message is safe to show.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// No such resource (in the caller's organisation).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The resource exists already.
    #[error("{0}")]
    AlreadyExists(&'static str),
    /// The request cannot run in the current state.
    #[error("{0}")]
    FailedPrecondition(&'static str),
    /// Too many attempts.
    #[error("{message}")]
    Throttled {
        /// What to tell the caller.
        message: &'static str,
        /// When to come back.
        retry_after: std::time::Duration,
    },
    /// Something this answer depends on is not known now; retry.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The OpenID provider could not be reached or answered nonsense.
    #[error("identity provider unavailable")]
    Provider(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The relational store failed.
    #[error("storage failure")]
    Storage(#[from] sqlx::Error),
    /// The cache failed.
    #[error("cache failure")]
    Cache(#[from] CacheError),
    /// Key material could not be used.
    #[error("key material failure: {0}")]
    Crypto(&'static str),
    /// Password hashing failed.
    #[error("password hashing failure")]
    Hashing,
    /// A blocking task was lost.
    #[error("background task failed")]
    Join(#[from] tokio::task::JoinError),
    /// The caller was refused by the shared credential checks
    /// (UNAUTHENTICATED or PERMISSION_DENIED), answered as they decided.
    #[error("{}", .0.message())]
    Refused(Status),
}

impl AuthError {
    /// One bad field.
    pub fn invalid(violation: FieldViolation) -> Self {
        Self::Invalid(vec![violation])
    }

    /// The kind of this error in the shared table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Invalid(_) => ErrorKind::InvalidArgument,
            AuthError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            AuthError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            AuthError::NotFound(_) => ErrorKind::NotFound,
            AuthError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            AuthError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            AuthError::Throttled { .. } => ErrorKind::ResourceExhausted,
            AuthError::Unavailable(_) => ErrorKind::Unavailable,
            AuthError::Provider(_) | AuthError::Cache(_) => ErrorKind::Unavailable,
            AuthError::Storage(error) => storage_failure_kind(error),
            AuthError::Crypto(_) | AuthError::Hashing | AuthError::Join(_) => ErrorKind::Internal,
            AuthError::Refused(status) => ErrorKind::from_grpc_code(status.code()),
        }
    }
}

impl From<Vec<FieldViolation>> for AuthError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Invalid(violations)
    }
}

impl From<FieldViolation> for AuthError {
    fn from(violation: FieldViolation) -> Self {
        Self::Invalid(vec![violation])
    }
}

impl From<Status> for AuthError {
    fn from(status: Status) -> Self {
        Self::Refused(status)
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Refused(status) => status,
            AuthError::Invalid(violations) => invalid_argument(violations),
            AuthError::Throttled { message, retry_after } => resource_exhausted(message, retry_after),
            AuthError::Provider(_) | AuthError::Cache(_) => unavailable("auth dependency failed", &error),
            AuthError::Storage(cause) => storage_failure("auth request failed", &cause),
            AuthError::Crypto(_) | AuthError::Hashing | AuthError::Join(_) => internal("auth request failed", &error),
            AuthError::NotFound(what) => status(ErrorKind::NotFound, format!("{what} not found")),
            other => status(other.kind(), other.to_string()),
        }
    }
}
