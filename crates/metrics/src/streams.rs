//! The bounds of the server streams (WatchDashboard, WatchEvents,
//! ExportEvents). A unary call is authenticated for a moment; a stream may
//! run for hours, so its credential is held to account while it runs:
//!
//! - a bearer token's stream ends when the token expires (its `exp`), with
//!   UNAUTHENTICATED, so the client refreshes the token and reconnects;
//! - every `reverify_every` the credential is verified again by the same
//!   [`Authenticator`] the `authenticate` middleware uses, so a revoked API
//!   key (or a token whose signing key was withdrawn) ends its streams with
//!   UNAUTHENTICATED; an outage of the verifier does not end them (the
//!   lifetime bound still does);
//! - every stream ends after `max_lifetime` with ABORTED, which tells the
//!   client to reconnect;
//! - a caller (a user, service account or API key) holds at most
//!   `max_per_caller` streams on one instance at once; one more is
//!   RESOURCE_EXHAUSTED.
//!
//! The policy reaches the handlers as a request extension, set by
//! [`StreamPolicy::interceptor`] beside the `Authentication` the middleware
//! leaves there.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt as _};
use metrix_core::authn::{API_KEY_HEADER, Authentication, Authenticator, Credential, Principal};
use tokio::time::{Instant, MissedTickBehavior};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};

use crate::settings::StreamSettings;

/// A server stream bounded by a [`StreamLease`].
pub type BoundedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The bounds of one instance's streams and the streams each caller holds.
pub struct StreamPolicy {
    settings: StreamSettings,
    authenticator: Authenticator,
    /// Open streams by caller ([`caller_key`]); callers with none are absent.
    open: Mutex<HashMap<String, usize>>,
}

impl StreamPolicy {
    /// Streams bounded by `settings`, their credentials verified again by
    /// `authenticator` (the one the service authenticates calls with).
    pub fn new(settings: StreamSettings, authenticator: Authenticator) -> Arc<Self> {
        Arc::new(Self {
            settings,
            authenticator,
            open: Mutex::default(),
        })
    }

    /// A tonic interceptor that hands this policy to the handlers.
    pub fn interceptor(
        self: &Arc<Self>,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
        let policy = self.clone();
        move |mut request: Request<()>| {
            request.extensions_mut().insert(policy.clone());
            Ok(request)
        }
    }

    /// The streams `caller` holds on this instance.
    pub fn open_streams(&self, caller: &Principal) -> usize {
        self.open_table().get(&caller_key(caller)).copied().unwrap_or(0)
    }

    fn open_table(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // The table holds counts only; a panic elsewhere leaves them usable.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Who a stream counts against: the organisation and the subject (a user
/// id, a service account's client id or an API key id).
fn caller_key(caller: &Principal) -> String {
    format!("{}/{}", caller.organization_id, caller.subject)
}

/// What ends a stream that nothing else ends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// The bearer token's `exp`.
    TokenExpiry,
    /// The policy's `max_lifetime`.
    Lifetime,
}

/// An admitted stream's place: when it must end, and the credential to
/// verify again. Dropping it frees the caller's place.
pub struct StreamLease {
    policy: Arc<StreamPolicy>,
    caller: Principal,
    /// Only the credential's own metadata (`authorization`, `x-api-key`).
    credential: MetadataMap,
    ends_at: Instant,
    limit: Limit,
}

/// Admits a stream of `caller` (already authorised for it) opened by
/// `request`: RESOURCE_EXHAUSTED when the caller holds as many as the policy
/// allows, UNAUTHENTICATED when its token has just expired.
pub async fn admit<T>(request: &Request<T>, caller: &Principal) -> Result<StreamLease, Status> {
    let Some(policy) = request.extensions().get::<Arc<StreamPolicy>>().cloned() else {
        tracing::error!("a stream was opened on a server without a stream policy");
        return Err(Status::internal("internal error"));
    };
    let mut credential = MetadataMap::new();
    for name in ["authorization", API_KEY_HEADER] {
        if let Some(value) = request.metadata().get(name) {
            credential.insert(name, value.clone());
        }
    }
    let lifetime_end = Instant::now() + policy.settings.max_lifetime;
    let (ends_at, limit) = match token_expiry(&policy.authenticator, &credential, caller).await? {
        Some(expiry) if expiry < lifetime_end => (expiry, Limit::TokenExpiry),
        _ => (lifetime_end, Limit::Lifetime),
    };
    {
        let mut open = policy.open_table();
        let held = open.entry(caller_key(caller)).or_insert(0);
        if *held >= policy.settings.max_per_caller {
            return Err(Status::resource_exhausted(format!(
                "at most {} streams may be open at once per caller; close one first",
                policy.settings.max_per_caller
            )));
        }
        *held += 1;
    }
    Ok(StreamLease {
        policy,
        caller: caller.clone(),
        credential,
        ends_at,
        limit,
    })
}

/// When the bearer token in `credential` expires, as an instant of this
/// clock; `None` for an API key.
async fn token_expiry(
    authenticator: &Authenticator,
    credential: &MetadataMap,
    caller: &Principal,
) -> Result<Option<Instant>, Status> {
    if !matches!(caller.credential, Credential::AccessToken { .. }) {
        return Ok(None);
    }
    let token = credential
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
    // Verified tokens are remembered, so this costs no signature check.
    let claims = authenticator.tokens().verify(token).await?;
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let left = Duration::from_secs(claims.exp).saturating_sub(since_epoch);
    Ok(Some(Instant::now() + left))
}

impl StreamLease {
    /// `stream`, ended with a final status when the token expires, the
    /// credential stops verifying or the lifetime is over; the lease goes
    /// with it, so the caller's place is freed when the stream is dropped.
    pub fn bound<T: Send + 'static>(
        self,
        stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    ) -> BoundedStream<T> {
        struct Bounded<T> {
            inner: BoundedStream<T>,
            lease: StreamLease,
            deadline: Pin<Box<tokio::time::Sleep>>,
            reverify: tokio::time::Interval,
            ended: bool,
        }
        let every = self.policy.settings.reverify_every;
        let mut reverify = tokio::time::interval_at(Instant::now() + every, every);
        reverify.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let bounded = Bounded {
            inner: Box::pin(stream),
            deadline: Box::pin(tokio::time::sleep_until(self.ends_at)),
            lease: self,
            reverify,
            ended: false,
        };
        Box::pin(futures::stream::unfold(bounded, |mut bounded| async move {
            if bounded.ended {
                return None;
            }
            loop {
                // The timer may fire a little late; the clock decides.
                if Instant::now() >= bounded.lease.ends_at {
                    bounded.ended = true;
                    return Some((Err(bounded.lease.limit_reached()), bounded));
                }
                let ending = tokio::select! {
                    // An ended stream sends nothing more, however much is ready.
                    biased;
                    () = &mut bounded.deadline => bounded.lease.limit_reached(),
                    _ = bounded.reverify.tick() => match bounded.lease.still_valid().await {
                        Ok(()) => continue,
                        Err(status) => status,
                    },
                    item = bounded.inner.next() => return item.map(|item| (item, bounded)),
                };
                bounded.ended = true;
                return Some((Err(ending), bounded));
            }
        }))
    }

    /// The status that ends a stream at `ends_at`.
    fn limit_reached(&self) -> Status {
        let reason = match self.limit {
            Limit::TokenExpiry => "token expired",
            Limit::Lifetime => "lifetime reached",
        };
        tracing::info!(caller = %caller_key(&self.caller), reason, "stream ended");
        match self.limit {
            Limit::TokenExpiry => Status::unauthenticated("the access token expired: refresh it and reconnect"),
            Limit::Lifetime => Status::aborted(format!(
                "streams last at most {} seconds: reconnect",
                self.policy.settings.max_lifetime.as_secs()
            )),
        }
    }

    /// Verifies the credential again: UNAUTHENTICATED once it is refused (a
    /// revoked API key), `Ok` while it holds or cannot be checked.
    async fn still_valid(&self) -> Result<(), Status> {
        let headers = self.credential.clone().into_headers();
        let refusal = match self.policy.authenticator.authenticate(&headers).await {
            Authentication::Authenticated(principal)
                if principal.organization_id == self.caller.organization_id
                    && principal.subject == self.caller.subject =>
            {
                return Ok(());
            }
            Authentication::Authenticated(_) => "it now names another caller".to_owned(),
            Authentication::Refused(status) if status.code() != Code::Unauthenticated => {
                tracing::warn!(caller = %caller_key(&self.caller), code = ?status.code(), message = status.message(), "stream credential not verifiable now, stream continues");
                return Ok(());
            }
            Authentication::Refused(status) => status.message().to_owned(),
            Authentication::Anonymous => "it is gone".to_owned(),
        };
        tracing::info!(caller = %caller_key(&self.caller), reason = %refusal, "stream ended: credential refused");
        Err(Status::unauthenticated(format!(
            "the stream's credential is no longer accepted ({refusal}): sign in again and reconnect"
        )))
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        let mut open = self.policy.open_table();
        let key = caller_key(&self.caller);
        if let Some(held) = open.get_mut(&key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use metrix_core::authn::Scope;
    use metrix_core::testing::TestIssuer;

    use super::*;

    fn settings(max_per_caller: usize) -> StreamSettings {
        StreamSettings {
            max_lifetime: Duration::from_secs(3_600),
            reverify_every: Duration::from_secs(30),
            max_per_caller,
        }
    }

    fn request_with_key(policy: &Arc<StreamPolicy>, key: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(API_KEY_HEADER, key.parse().expect("keys are header-safe"));
        let mut intercept = policy.interceptor();
        intercept(request).expect("the interceptor passes every call")
    }

    #[tokio::test]
    async fn a_caller_holds_at_most_the_cap_and_dropping_frees_a_place() {
        let issuer = TestIssuer::new();
        let policy = StreamPolicy::new(settings(2), issuer.authenticator());
        let key = issuer.api_key("org-a", &[Scope::Read]);
        let request = request_with_key(&policy, &key);
        let headers = request.metadata().clone().into_headers();
        let Authentication::Authenticated(caller) = issuer.authenticator().authenticate(&headers).await else {
            panic!("the key verifies")
        };
        let first = admit(&request, &caller).await.expect("first");
        let _second = admit(&request, &caller).await.expect("second");
        let refused = admit(&request, &caller).await.err().expect("over the cap");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        drop(first);
        assert_eq!(policy.open_streams(&caller), 1);
        let _third = admit(&request, &caller).await.expect("a freed place");
        assert_eq!(policy.open_streams(&caller), 2);
    }
}
