//! One table from error kind to gRPC code and HTTP status, so that the gRPC
//! answer and the REST answer to the same failure can never disagree.
//!
//! Service crates keep their own `thiserror` enums and turn them into a
//! [`tonic::Status`] only at the boundary, through [`ErrorKind`]. Bad input
//! becomes `INVALID_ARGUMENT` with `BadRequest` field violations in the
//! details; internal failures are logged with their whole `source()` chain and
//! answered with a generic message.

use std::error::Error as StdError;
use std::fmt::Write as _;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// What went wrong, as the caller needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed; the details say which fields.
    InvalidArgument,
    /// The request is well formed but the system is not in a state to run it.
    FailedPrecondition,
    /// The request is out of a valid range (such as a page past the end).
    OutOfRange,
    /// No valid credentials were presented.
    Unauthenticated,
    /// The caller is known but may not do this.
    PermissionDenied,
    /// The resource does not exist (or the caller may not know it does).
    NotFound,
    /// The resource already exists.
    AlreadyExists,
    /// Another change got there first.
    Aborted,
    /// A quota or rate limit is exhausted; retry later.
    ResourceExhausted,
    /// The caller went away.
    Cancelled,
    /// The deadline passed before the work finished.
    DeadlineExceeded,
    /// A dependency is down; retrying may succeed.
    Unavailable,
    /// The operation is not offered.
    Unimplemented,
    /// A bug or an unexpected failure inside the service.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests of the table.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::InvalidArgument,
        ErrorKind::FailedPrecondition,
        ErrorKind::OutOfRange,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Aborted,
        ErrorKind::ResourceExhausted,
        ErrorKind::Cancelled,
        ErrorKind::DeadlineExceeded,
        ErrorKind::Unavailable,
        ErrorKind::Unimplemented,
        ErrorKind::Internal,
    ];

    /// The gRPC code and HTTP status of this kind: the one table.
    pub const fn codes(self) -> (Code, u16) {
        match self {
            ErrorKind::InvalidArgument => (Code::InvalidArgument, 400),
            ErrorKind::FailedPrecondition => (Code::FailedPrecondition, 400),
            ErrorKind::OutOfRange => (Code::OutOfRange, 400),
            ErrorKind::Unauthenticated => (Code::Unauthenticated, 401),
            ErrorKind::PermissionDenied => (Code::PermissionDenied, 403),
            ErrorKind::NotFound => (Code::NotFound, 404),
            ErrorKind::AlreadyExists => (Code::AlreadyExists, 409),
            ErrorKind::Aborted => (Code::Aborted, 409),
            ErrorKind::ResourceExhausted => (Code::ResourceExhausted, 429),
            ErrorKind::Cancelled => (Code::Cancelled, 499),
            ErrorKind::DeadlineExceeded => (Code::DeadlineExceeded, 504),
            ErrorKind::Unavailable => (Code::Unavailable, 503),
            ErrorKind::Unimplemented => (Code::Unimplemented, 501),
            ErrorKind::Internal => (Code::Internal, 500),
        }
    }

    /// The gRPC code.
    pub const fn grpc_code(self) -> Code {
        self.codes().0
    }

    /// The HTTP status.
    pub const fn http_status(self) -> u16 {
        self.codes().1
    }

    /// The kind of a gRPC code; codes outside the table count as internal.
    pub fn from_grpc_code(code: Code) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| kind.grpc_code() == code)
            .unwrap_or(ErrorKind::Internal)
    }
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, such as `email` or `events[3].name`.
    pub field: String,
    /// What is wrong with it, in lowercase.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Every violation of a request, collected while it is parsed so that one
/// answer names them all. A part of the request is parsed under
/// [`Violations::nested`], which prefixes its paths (`events[3]` +
/// `name` = `events[3].name`).
///
/// The parse of a request reads: each field through [`Violations::check`],
/// which keeps the value or the violation; then the values destructured,
/// and when one is missing, `return Err(violations.into_vec().into())` —
/// a value is missing only where a violation was recorded, so no message
/// is ever made up; then [`Violations::finish`] for the checks across
/// fields.
#[derive(Debug, Default)]
pub struct Violations {
    found: Vec<FieldViolation>,
}

impl Violations {
    /// No violation yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `result`, or `None` with its violation recorded.
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        result.map_err(|violation| self.found.push(violation)).ok()
    }

    /// The value of `result`, or `None` with all its violations recorded.
    pub fn check_all<T>(&mut self, result: Result<T, Vec<FieldViolation>>) -> Option<T> {
        result.map_err(|violations| self.found.extend(violations)).ok()
    }

    /// Records that `field` is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.found.push(FieldViolation::new(field, description));
    }

    /// Records `violation`.
    pub fn push(&mut self, violation: FieldViolation) {
        self.found.push(violation);
    }

    /// Records every one of `violations`.
    pub fn extend(&mut self, violations: impl IntoIterator<Item = FieldViolation>) {
        self.found.extend(violations);
    }

    /// Runs `parse` on a part of the request found at `prefix` (`event`,
    /// `kpi_values[2]`); the paths it records are under `prefix`.
    pub fn nested<T>(&mut self, prefix: &str, parse: impl FnOnce(&mut Violations) -> T) -> T {
        let mut inner = Violations::new();
        let value = parse(&mut inner);
        if let Err(violations) = within(prefix, inner.finish()) {
            self.found.extend(violations);
        }
        value
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// `Ok` when nothing was recorded, else every violation.
    pub fn finish(self) -> Result<(), Vec<FieldViolation>> {
        if self.found.is_empty() { Ok(()) } else { Err(self.found) }
    }

    /// Every violation recorded.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.found
    }
}

/// `result`, its violations placed under `prefix` (a part of the request
/// parsed on its own, such as `company`).
pub fn within<T>(prefix: &str, result: Result<T, Vec<FieldViolation>>) -> Result<T, Vec<FieldViolation>> {
    result.map_err(|violations| {
        violations
            .into_iter()
            .map(|violation| FieldViolation {
                field: join_path(prefix, &violation.field),
                description: violation.description,
            })
            .collect()
    })
}

/// `field` under `prefix`: `a` + `b` = `a.b`, `a` + `[2].b` = `a[2].b`,
/// and a violation of the part itself (an empty `field`) is `prefix`'s.
pub fn join_path(prefix: &str, field: &str) -> String {
    match (prefix.is_empty(), field.is_empty()) {
        (true, _) => field.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if field.starts_with('[') => format!("{prefix}{field}"),
        (false, false) => format!("{prefix}.{field}"),
    }
}

/// `INVALID_ARGUMENT` with `BadRequest` field violations in the details.
pub fn invalid_argument(violations: Vec<FieldViolation>) -> Status {
    let message = match violations.as_slice() {
        [] => "invalid request".to_owned(),
        [only] => format!("invalid {}: {}", only.field, only.description),
        [first, rest @ ..] => format!(
            "invalid {}: {} (and {} more)",
            first.field,
            first.description,
            rest.len()
        ),
    };
    let mut details = ErrorDetails::new();
    for violation in violations {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// A status of `kind` with a short message for the caller.
pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    Status::new(kind.grpc_code(), message)
}

/// `RESOURCE_EXHAUSTED` with a `RetryInfo` saying when to come back.
pub fn resource_exhausted(message: impl Into<String>, retry_after: std::time::Duration) -> Status {
    let details = ErrorDetails::with_retry_info(Some(retry_after));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// Logs an unexpected failure with its whole cause chain and returns the
/// generic status that the caller sees: no driver text, SQL or path leaves.
pub fn internal(context: &str, error: &(dyn StdError + 'static)) -> Status {
    tracing::error!(error = %error_chain(error), "{context}");
    Status::new(Code::Internal, "internal error")
}

/// How long a caller is asked to wait before retrying a call that found a
/// dependency down.
pub const RETRY_UNAVAILABLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// `Unavailable` for a dependency that is down, logged with its cause chain,
/// with a `RetryInfo` (REST: `Retry-After`) so clients and SDKs retry.
pub fn unavailable(context: &str, error: &(dyn StdError + 'static)) -> Status {
    tracing::warn!(error = %error_chain(error), "{context}");
    let details = ErrorDetails::with_retry_info(Some(RETRY_UNAVAILABLE_AFTER));
    Status::with_error_details(Code::Unavailable, "a dependency is unavailable, retry later", details)
}

/// The status of a failed storage call: UNAVAILABLE (retry) for an outage,
/// INVALID_ARGUMENT for text the store cannot hold, INTERNAL otherwise; the
/// cause is logged, never sent.
pub fn storage_failure(context: &str, error: &sqlx::Error) -> Status {
    match crate::storage::classify(error) {
        crate::storage::FailureClass::Transient => unavailable(context, error),
        crate::storage::FailureClass::UnstorableText => {
            tracing::info!(error = %error_chain(error), "{context}");
            invalid_argument(vec![FieldViolation::new(
                "request",
                "a text value holds a NUL character, which cannot be stored",
            )])
        }
        crate::storage::FailureClass::Permanent => internal(context, error),
    }
}

/// The kind of a failed storage call (see [`storage_failure`]).
pub fn storage_failure_kind(error: &sqlx::Error) -> ErrorKind {
    match crate::storage::classify(error) {
        crate::storage::FailureClass::Transient => ErrorKind::Unavailable,
        crate::storage::FailureClass::UnstorableText => ErrorKind::InvalidArgument,
        crate::storage::FailureClass::Permanent => ErrorKind::Internal,
    }
}

/// An error and every `source()` below it, joined with `: `.
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn violations_collect_every_field_under_its_path() {
        let mut violations = super::Violations::new();
        assert_eq!(violations.check::<u8>(Ok(1)), Some(1));
        assert_eq!(
            violations.check::<u8>(Err(super::FieldViolation::new("name", "is required"))),
            None
        );
        violations.nested("events[3]", |event| {
            event.add("event_type", "is required");
            event.nested("properties", |properties| properties.add("", "must be an object"));
            event.nested("tags", |tags| tags.add("[2]", "is empty"));
        });
        let fields: Vec<String> = violations
            .into_vec()
            .into_iter()
            .map(|violation| violation.field)
            .collect();
        assert_eq!(
            fields,
            [
                "name",
                "events[3].event_type",
                "events[3].properties",
                "events[3].tags[2]"
            ]
        );
        assert_eq!(super::Violations::new().finish(), Ok(()));
    }

    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_grpc_code() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_grpc_code(kind.grpc_code()), kind, "{kind:?}");
        }
    }

    #[test]
    fn http_statuses_follow_the_grpc_gateway_convention() {
        assert_eq!(ErrorKind::InvalidArgument.http_status(), 400);
        assert_eq!(ErrorKind::Unauthenticated.http_status(), 401);
        assert_eq!(ErrorKind::PermissionDenied.http_status(), 403);
        assert_eq!(ErrorKind::NotFound.http_status(), 404);
        assert_eq!(ErrorKind::ResourceExhausted.http_status(), 429);
        assert_eq!(ErrorKind::Unavailable.http_status(), 503);
        assert_eq!(ErrorKind::DeadlineExceeded.http_status(), 504);
    }

    #[test]
    fn field_violations_travel_in_the_details() {
        let status = invalid_argument(vec![
            FieldViolation::new("email", "must be an email address"),
            FieldViolation::new("password", "must be at least 12 characters"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid email: must be an email address (and 1 more)");
        let bad_request = status.get_details_bad_request().expect("bad request details");
        let fields: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["email", "password"]);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let cause = std::io::Error::other("relation \"users\" does not exist");
        let status = internal("loading user", &cause);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("users"));
    }
}
