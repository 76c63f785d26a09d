//! Who is calling: bearer access tokens verified locally against the auth
//! service's published keys, and API keys verified through the auth service.
//!
//! [`authenticate`] runs before every RPC of every service and leaves an
//! [`Authentication`] in the request's extensions. Handlers then ask for what
//! they need with [`principal`], [`Principal::require_role`] and friends, so
//! public RPCs (sign-up, sign-in) simply do not ask, and a call that skips the
//! gateway is checked exactly like one that passes through it.
//!
//! Tokens of closed sessions, superseded roles and deactivated accounts, and
//! revoked API keys, are refused as soon as the auth service's revocation
//! feed announces them ([`revocations`]), not when they expire.

pub mod api_keys;
pub mod claims;
pub mod jwks;
pub mod revocations;
pub mod service_token;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tonic::{Code, Status};

pub use self::api_keys::{ApiKeyVerifier, RemoteApiKeyVerifier};
pub use self::claims::{AccessClaims, Role, Scope, SignedClaims};
pub use self::jwks::{JwksSource, RemoteJwks, TokenError, TokenVerifier, Verified};
pub use self::revocations::{Revocation, RevocationBatch, RevocationFeed, Revoked};
pub use self::service_token::ServiceTokenSource;

/// The metadata key of an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer access token (a user's or a service account's).
    AccessToken {
        /// The session of a user token.
        session_id: Option<String>,
    },
    /// An API key.
    ApiKey {
        /// The key's id.
        api_key_id: String,
    },
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A user id, a service account's client id, or an API key id.
    pub subject: String,
    /// The organisation the caller acts in.
    pub organization_id: String,
    /// The caller's role; API keys act with [`Role::CompanyUser`] limited by scopes.
    pub role: Role,
    /// The scopes of a service token or API key; empty for users.
    pub scopes: Vec<Scope>,
    /// How the caller authenticated.
    pub credential: Credential,
}

impl Principal {
    /// Refuses anyone but a platform service account holding `scope`
    /// (organisation service accounts and API keys never hold platform scopes).
    pub fn require_platform_scope(&self, scope: Scope) -> Result<(), Status> {
        let service = self.role == Role::Service && matches!(self.credential, Credential::AccessToken { .. });
        if service && self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "only platform services with the {} scope may do this",
                scope.as_str()
            )))
        }
    }

    /// Whether the principal is a person with a session.
    pub fn is_user(&self) -> bool {
        matches!(self.credential, Credential::AccessToken { .. }) && self.role != Role::Service
    }

    /// Refuses a caller whose role is not among `allowed`.
    pub fn require_role(&self, allowed: &[Role]) -> Result<(), Status> {
        if allowed.contains(&self.role) && !matches!(self.credential, Credential::ApiKey { .. }) {
            Ok(())
        } else {
            Err(Status::permission_denied("your role does not allow this"))
        }
    }

    /// Refuses anyone but a user of one of the `allowed` roles (API keys and
    /// service accounts included).
    pub fn require_user_role(&self, allowed: &[Role]) -> Result<(), Status> {
        if self.is_user() && allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(Status::permission_denied("your role does not allow this"))
        }
    }

    /// Refuses a service token or API key without `scope`; users pass (their
    /// role decides).
    pub fn require_scope(&self, scope: Scope) -> Result<(), Status> {
        if self.is_user() || self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "the credential lacks the {} scope",
                scope.as_str()
            )))
        }
    }

    /// Refuses a caller outside `organization_id`. The answer is NOT_FOUND,
    /// so that another organisation's ids reveal nothing.
    pub fn require_organization(&self, organization_id: &str) -> Result<(), Status> {
        if self.organization_id == organization_id {
            Ok(())
        } else {
            Err(Status::not_found("not found"))
        }
    }
}

/// What the middleware concluded about a request's credentials.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// No credential was presented.
    Anonymous,
    /// A valid credential.
    Authenticated(Principal),
    /// A credential was presented and refused; the status says why.
    Refused(Status),
}

/// The subject of a genuine access token of an open session whose
/// authorization changed since it was issued (a new role, a deactivated
/// account, a rotated or revoked service account): its role and scopes are
/// stale, so the request's [`Authentication`] refuses it (UNAUTHENTICATED:
/// refresh the token). The middleware leaves it beside that refusal for the
/// one service that authorizes from its own records, the auth service,
/// which reads it through [`identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded(pub Principal);

/// The caller of a request, or UNAUTHENTICATED.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, Status> {
    match request.extensions().get::<Authentication>() {
        Some(Authentication::Authenticated(principal)) => Ok(principal),
        Some(Authentication::Refused(status)) => Err(status.clone()),
        Some(Authentication::Anonymous) | None => Err(Status::unauthenticated("sign in first: no credentials")),
    }
}

/// Who the caller is, even if their token's authorization was superseded
/// ([`Superseded`]), or UNAUTHENTICATED. The role and scopes may be stale:
/// only a handler that authorizes from the subject's current record (the
/// auth service's store) may call this, and never for the role or scopes.
pub fn identity<T>(request: &tonic::Request<T>) -> Result<&Principal, Status> {
    match request.extensions().get::<Superseded>() {
        Some(Superseded(principal)) => Ok(principal),
        None => principal(request),
    }
}

/// Verifies the credentials of a request.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<TokenVerifier>,
    api_keys: Option<Arc<dyn ApiKeyVerifier>>,
}

impl Authenticator {
    /// Checks bearer tokens with `tokens` and API keys with `api_keys` (API
    /// keys are refused when it is `None`).
    pub fn new(tokens: Arc<TokenVerifier>, api_keys: Option<Arc<dyn ApiKeyVerifier>>) -> Self {
        Self { tokens, api_keys }
    }

    /// The token verifier.
    pub fn tokens(&self) -> &Arc<TokenVerifier> {
        &self.tokens
    }

    /// Verifies whatever credential `headers` carry.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Authentication {
        self.examine(headers).await.0
    }

    /// Verifies whatever credential `headers` carry; and for a superseded
    /// token (refused), who its subject is.
    async fn examine(&self, headers: &http::HeaderMap) -> (Authentication, Option<Superseded>) {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            // HTTP Basic carries an API key as its user name, as tracking
            // SDKs send their write key.
            if let Some(key) = value.to_str().ok().and_then(basic_user) {
                return (self.verify_api_key(&key).await, None);
            }
            let Some(token) = value.to_str().ok().and_then(bearer_token) else {
                let refusal = Status::unauthenticated(
                    "authorization must be `Bearer <token>`, or `Basic` with an API key as user name",
                );
                return (Authentication::Refused(refusal), None);
            };
            return match self.tokens.verify_token(token).await {
                Ok(Verified::Current(claims)) => match claims.principal() {
                    Ok(principal) => (Authentication::Authenticated(principal), None),
                    Err(error) => (Authentication::Refused(error.into()), None),
                },
                Ok(Verified::Superseded(claims)) => match claims.principal() {
                    Ok(principal) => (
                        Authentication::Refused(TokenError::Superseded.into()),
                        Some(Superseded(principal)),
                    ),
                    Err(error) => (Authentication::Refused(error.into()), None),
                },
                Err(error) => (Authentication::Refused(error.into()), None),
            };
        }
        (self.authenticate_api_key(headers).await, None)
    }

    /// Verifies the API key `headers` carry, if any.
    async fn authenticate_api_key(&self, headers: &http::HeaderMap) -> Authentication {
        match headers.get(API_KEY_HEADER).map(http::HeaderValue::to_str) {
            None => Authentication::Anonymous,
            Some(Ok(key)) => self.verify_api_key(key).await,
            Some(Err(_)) => Authentication::Refused(Status::unauthenticated("invalid api key")),
        }
    }

    /// Verifies an API key, wherever the request carried it (a header, HTTP
    /// Basic, or a field of the body such as a tracking SDK's `writeKey`).
    pub async fn verify_api_key(&self, key: &str) -> Authentication {
        let Some(verifier) = &self.api_keys else {
            return Authentication::Refused(Status::unauthenticated("api keys are not accepted here"));
        };
        match verifier.verify(key.trim()).await {
            // A verification cached before the key was revoked is not
            // trusted once the revocation is heard.
            Ok(Principal {
                credential: Credential::ApiKey { api_key_id },
                ..
            }) if self.tokens.api_key_revoked(&api_key_id) => {
                Authentication::Refused(Status::unauthenticated("invalid api key"))
            }
            Ok(principal) => Authentication::Authenticated(principal),
            Err(status) => Authentication::Refused(status),
        }
    }
}

/// The user name of an `authorization: Basic <base64(user:password)>`
/// value, when it names one.
fn basic_user(value: &str) -> Option<String> {
    use base64::Engine as _;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    (!user.is_empty()).then(|| user.to_owned())
}

/// The token of an `authorization: Bearer <token>` value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware: authenticates the request and stores the outcome in its
/// extensions. Unavailable key material is an UNAVAILABLE answer, not a
/// refusal, so that clients retry instead of signing out.
pub async fn authenticate(State(authenticator): State<Authenticator>, mut request: Request, next: Next) -> Response {
    let (authentication, superseded) = authenticator.examine(request.headers()).await;
    if let Authentication::Refused(status) = &authentication
        && status.code() == Code::Unavailable
    {
        return status.clone().into_http::<axum::body::Body>().into_response();
    }
    request.extensions_mut().insert(authentication);
    if let Some(superseded) = superseded {
        request.extensions_mut().insert(superseded);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_name_their_user() {
        use base64::Engine as _;
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        assert_eq!(
            basic_user(&format!("Basic {}", encode("mx_key:"))).as_deref(),
            Some("mx_key")
        );
        assert_eq!(
            basic_user(&format!("basic {}", encode("mx_key:ignored"))).as_deref(),
            Some("mx_key")
        );
        assert_eq!(
            basic_user(&format!("Basic {}", encode("mx_key"))).as_deref(),
            Some("mx_key")
        );
        assert_eq!(basic_user(&format!("Basic {}", encode(":password"))), None);
        assert_eq!(basic_user("Basic not-base64!"), None);
        assert_eq!(basic_user("Bearer abc"), None);
    }

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    fn principal(role: Role, credential: Credential, scopes: Vec<Scope>) -> Principal {
        Principal {
            subject: "s".into(),
            organization_id: "org-a".into(),
            role,
            scopes,
            credential,
        }
    }

    #[test]
    fn a_superseded_token_is_an_identity_but_not_a_principal() {
        let stale = principal(
            Role::Admin,
            Credential::AccessToken {
                session_id: Some("x".into()),
            },
            vec![],
        );
        let mut request = tonic::Request::new(());
        request
            .extensions_mut()
            .insert(Authentication::Refused(TokenError::Superseded.into()));
        request.extensions_mut().insert(Superseded(stale.clone()));
        let refused = super::principal(&request).expect_err("its role claim is stale");
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert_eq!(identity(&request).expect("its subject is genuine"), &stale);

        let mut anonymous = tonic::Request::new(());
        anonymous.extensions_mut().insert(Authentication::Anonymous);
        assert_eq!(identity(&anonymous).unwrap_err().code(), Code::Unauthenticated);
    }

    #[test]
    fn roles_scopes_and_organisations_are_enforced() {
        let admin = principal(
            Role::Admin,
            Credential::AccessToken {
                session_id: Some("x".into()),
            },
            vec![],
        );
        assert!(admin.require_role(&[Role::Admin]).is_ok());
        assert!(admin.require_scope(Scope::EventsWrite).is_ok());
        assert_eq!(admin.require_organization("org-b").unwrap_err().code(), Code::NotFound);

        let key = principal(
            Role::CompanyUser,
            Credential::ApiKey { api_key_id: "k".into() },
            vec![Scope::EventsWrite],
        );
        assert!(key.require_scope(Scope::EventsWrite).is_ok());
        assert_eq!(
            key.require_scope(Scope::Read).unwrap_err().code(),
            Code::PermissionDenied
        );
        assert_eq!(
            key.require_role(&[Role::CompanyUser]).unwrap_err().code(),
            Code::PermissionDenied
        );

        let service = principal(
            Role::Service,
            Credential::AccessToken { session_id: None },
            vec![Scope::PeersRead],
        );
        assert!(service.require_role(&[Role::Service]).is_ok());
        assert_eq!(
            service
                .require_user_role(&[Role::Admin, Role::Service])
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
    }
}
