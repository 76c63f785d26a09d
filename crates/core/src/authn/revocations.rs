//! Credentials withdrawn before they expire: closed sessions, superseded
//! authorization versions and revoked API keys.
//!
//! Access tokens are verified locally, so without this a signed-out session,
//! a demoted role or a deactivated account would keep working until the
//! token expires. The auth service announces every revocation; each
//! [`TokenVerifier`](super::TokenVerifier) keeps the ones still in force in a
//! [`RevocationList`], fed by its key set's
//! [`JwksSource::revocations`](super::JwksSource::revocations), and checks
//! every token against it — remembered tokens included.
//!
//! A feed starts with every revocation in force, so an instance that starts
//! after a revocation knows it before it accepts a token, and then delivers
//! each new one as it happens. Revocations only ever add (a session stays
//! closed, a version only rises), so applying one twice or out of order
//! changes nothing and a repeated snapshot merges instead of replacing.
//! Each revocation expires when every credential it withdraws has expired.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::BoxStream;
use metrix_proto::auth::v1 as proto;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tonic::{Code, Status};

use super::JwksSource;
use super::jwks::TokenError;

/// A feed silent this long (the auth service sends something at least every
/// five seconds) is taken for dead and opened again.
pub const FEED_SILENCE_LIMIT: Duration = Duration::from_secs(15);

/// How long the first verifications wait for the feed's first (complete)
/// message while it is being opened, before answering UNAVAILABLE: as long
/// as a silent feed is given. A feed that cannot be opened (auth down)
/// fails sooner, and verifications then answer UNAVAILABLE at once.
pub const SNAPSHOT_WAIT: Duration = FEED_SILENCE_LIMIT;

/// The longest pause between two attempts to open the feed.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Revocations heard within this long keep serving while the feed is down
/// (the same bound as keys: an auth outage does not stop every service);
/// beyond it, tokens are refused as UNAVAILABLE.
pub const MAX_STALE_REVOCATIONS: Duration = Duration::from_secs(3600);

/// An issuer that publishes no revocations yet (an older auth service during
/// a rolling upgrade) is asked again this often.
pub const UNSUPPORTED_RETRY: Duration = Duration::from_secs(30);

/// Expired revocations are swept at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The SHA-256 of an identifier: revocations name sessions, subjects and API
/// keys only by digest, so the public feed reveals nothing to whoever does
/// not already hold the identifier.
pub type IdDigest = [u8; 32];

/// The digest by which revocations name `id`.
pub fn id_digest(id: &str) -> IdDigest {
    Sha256::digest(id.as_bytes()).into()
}

/// What a revocation withdraws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Every access token of a session (`sid`).
    Session(IdDigest),
    /// The access tokens of a subject (`sub`) whose authorization version
    /// (`ver`) is below `min_version`.
    Subject {
        /// The subject's digest.
        subject: IdDigest,
        /// The lowest version still accepted.
        min_version: u64,
    },
    /// An API key, by the digest of its id.
    ApiKey(IdDigest),
}

/// One revocation and when it stops mattering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// What is withdrawn.
    pub revoked: Revoked,
    /// Unix seconds after which every credential it withdraws has expired.
    pub expires_at: u64,
}

impl Revocation {
    /// The contract's form.
    pub fn to_proto(&self) -> proto::Revocation {
        let (kind, digest, min_version) = match self.revoked {
            Revoked::Session(digest) => (proto::RevocationKind::Session, digest, 0),
            Revoked::Subject { subject, min_version } => (proto::RevocationKind::Subject, subject, min_version),
            Revoked::ApiKey(digest) => (proto::RevocationKind::ApiKey, digest, 0),
        };
        proto::Revocation {
            kind: kind.into(),
            id_sha256: digest.to_vec(),
            min_authorization_version: i64::try_from(min_version).unwrap_or(i64::MAX),
            expire_time: Some(prost_types::Timestamp {
                seconds: i64::try_from(self.expires_at).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }
    }

    /// A revocation from the contract's form.
    pub fn from_proto(message: &proto::Revocation) -> Result<Self, &'static str> {
        let digest: IdDigest = message
            .id_sha256
            .as_slice()
            .try_into()
            .map_err(|_| "id_sha256 is not 32 bytes")?;
        let expires_at = message
            .expire_time
            .as_ref()
            .and_then(|time| u64::try_from(time.seconds).ok())
            .ok_or("expire_time is missing")?;
        let revoked = match proto::RevocationKind::try_from(message.kind) {
            Ok(proto::RevocationKind::Session) => Revoked::Session(digest),
            Ok(proto::RevocationKind::Subject) => Revoked::Subject {
                subject: digest,
                min_version: u64::try_from(message.min_authorization_version)
                    .map_err(|_| "min_authorization_version is negative")?,
            },
            Ok(proto::RevocationKind::ApiKey) => Revoked::ApiKey(digest),
            Ok(proto::RevocationKind::Unspecified) | Err(_) => return Err("unknown revocation kind"),
        };
        Ok(Self { revoked, expires_at })
    }
}

/// One message of a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationBatch {
    /// Revocations, new or repeated.
    pub revocations: Vec<Revocation>,
    /// Whether these are all the revocations in force.
    pub complete: bool,
}

impl RevocationBatch {
    /// The contract's form.
    pub fn to_proto(&self) -> proto::WatchRevocationsResponse {
        proto::WatchRevocationsResponse {
            revocations: self.revocations.iter().map(Revocation::to_proto).collect(),
            complete: self.complete,
        }
    }

    /// A batch from the contract's form; a revocation this verifier cannot
    /// read (a kind added later) is skipped and logged, the rest apply.
    pub fn from_proto(message: &proto::WatchRevocationsResponse) -> Self {
        let revocations = message
            .revocations
            .iter()
            .filter_map(|revocation| match Revocation::from_proto(revocation) {
                Ok(revocation) => Some(revocation),
                Err(problem) => {
                    tracing::warn!(problem, "ignoring an unreadable revocation");
                    None
                }
            })
            .collect();
        Self {
            revocations,
            complete: message.complete,
        }
    }
}

/// The revocations an issuer publishes: first everything in force
/// (`complete`), then each new one, and something at least every few seconds.
pub type RevocationFeed = BoxStream<'static, Result<RevocationBatch, Status>>;

/// Where the verifier stands with its feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedState {
    /// Opening the feed; nothing heard yet.
    Connecting,
    /// Never heard a complete snapshot, and the last attempt failed.
    Failing,
    /// A complete snapshot was applied; new revocations are heard (or were,
    /// until `last_heard`).
    Live,
    /// The issuer publishes no revocations: tokens are checked without them.
    Unsupported,
}

/// The revocations in force, by digest, with their expiry (Unix seconds).
#[derive(Default)]
struct InForce {
    sessions: HashMap<IdDigest, u64>,
    /// Minimum version and expiry.
    subjects: HashMap<IdDigest, (u64, u64)>,
    api_keys: HashMap<IdDigest, u64>,
}

impl InForce {
    fn insert(&mut self, revocation: &Revocation) {
        match revocation.revoked {
            Revoked::Session(digest) => later(self.sessions.entry(digest).or_default(), revocation.expires_at),
            Revoked::ApiKey(digest) => later(self.api_keys.entry(digest).or_default(), revocation.expires_at),
            Revoked::Subject { subject, min_version } => {
                let entry = self.subjects.entry(subject).or_default();
                entry.0 = entry.0.max(min_version);
                entry.1 = entry.1.max(revocation.expires_at);
            }
        }
    }

    fn sweep(&mut self, now: u64) {
        self.sessions.retain(|_, expires| *expires > now);
        self.api_keys.retain(|_, expires| *expires > now);
        self.subjects.retain(|_, (_, expires)| *expires > now);
    }
}

fn later(expiry: &mut u64, candidate: u64) {
    *expiry = (*expiry).max(candidate);
}

/// What the revocation check needs of a verified token, digests computed
/// once per token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenIdentity {
    pub(crate) session: Option<IdDigest>,
    pub(crate) subject: IdDigest,
    pub(crate) version: u64,
}

/// The revocations a verifier knows, and the task that keeps them current.
pub(crate) struct RevocationList {
    in_force: std::sync::RwLock<InForce>,
    state: watch::Sender<FeedState>,
    /// When the list was made; `last_heard` counts from it.
    created: Instant,
    /// Milliseconds after `created` when the feed last said anything (an
    /// atomic, so that every verification reads it without a lock).
    last_heard: AtomicU64,
    last_sweep: std::sync::Mutex<Instant>,
    started: AtomicBool,
    /// [`MAX_STALE_REVOCATIONS`], shortened by tests.
    max_stale: Duration,
}

impl RevocationList {
    pub(crate) fn new() -> Self {
        Self {
            in_force: std::sync::RwLock::default(),
            state: watch::Sender::new(FeedState::Connecting),
            created: Instant::now(),
            last_heard: AtomicU64::new(0),
            last_sweep: std::sync::Mutex::new(Instant::now()),
            started: AtomicBool::new(false),
            max_stale: MAX_STALE_REVOCATIONS,
        }
    }

    /// Starts following `source`'s feed, once.
    pub(crate) fn start(self: &Arc<Self>, source: &Arc<dyn JwksSource>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(follow(Arc::downgrade(self), source.clone()));
    }

    /// Adds what `batch` says; a complete batch makes the list live.
    pub(crate) fn apply(&self, batch: &RevocationBatch) {
        {
            let mut in_force = self.in_force.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for revocation in &batch.revocations {
                in_force.insert(revocation);
            }
            let mut last_sweep = self
                .last_sweep
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last_sweep.elapsed() >= SWEEP_INTERVAL {
                in_force.sweep(unix_now());
                *last_sweep = Instant::now();
            }
        }
        let heard = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_heard.store(heard, Ordering::Release);
        if batch.complete {
            self.state.send_replace(FeedState::Live);
        }
    }

    /// Revocations applied by their issuer itself (the auth service applies
    /// its own at once, before the feed brings them back).
    pub(crate) fn apply_local(&self, revocations: &[Revocation]) {
        let mut in_force = self.in_force.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for revocation in revocations {
            in_force.insert(revocation);
        }
    }

    fn set_state_unless_live(&self, state: FeedState) {
        self.state.send_if_modified(|current| {
            let changed = *current != FeedState::Live && *current != state;
            if changed {
                *current = state;
            }
            changed
        });
    }

    /// Waits, the first time, until the feed's first snapshot is applied;
    /// then answers at once. UNAVAILABLE while the feed has never answered,
    /// or has been silent for longer than [`MAX_STALE_REVOCATIONS`].
    pub(crate) async fn ready(&self) -> Result<(), TokenError> {
        let state = *self.state.borrow();
        let state = if state == FeedState::Connecting {
            let mut receiver = self.state.subscribe();
            let waited = tokio::time::timeout(
                SNAPSHOT_WAIT,
                receiver.wait_for(|state| *state != FeedState::Connecting),
            )
            .await;
            match waited {
                Ok(Ok(state)) => *state,
                Ok(Err(_)) | Err(_) => return Err(TokenError::RevocationsUnavailable),
            }
        } else {
            state
        };
        match state {
            FeedState::Live => {
                // Live: a complete batch was applied, so `last_heard` is set.
                let heard = Duration::from_millis(self.last_heard.load(Ordering::Acquire));
                if self.created.elapsed().saturating_sub(heard) < self.max_stale {
                    Ok(())
                } else {
                    Err(TokenError::RevocationsUnavailable)
                }
            }
            FeedState::Unsupported => Ok(()),
            FeedState::Connecting | FeedState::Failing => Err(TokenError::RevocationsUnavailable),
        }
    }

    /// Refuses a token of a closed session or of a superseded version.
    pub(crate) fn check(&self, token: &TokenIdentity) -> Result<(), TokenError> {
        let now = unix_now();
        let in_force = self.in_force.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(session) = &token.session
            && in_force.sessions.get(session).is_some_and(|expires| *expires > now)
        {
            return Err(TokenError::SessionRevoked);
        }
        if in_force
            .subjects
            .get(&token.subject)
            .is_some_and(|(min_version, expires)| *expires > now && token.version < *min_version)
        {
            return Err(TokenError::Superseded);
        }
        Ok(())
    }

    /// Whether the API key `api_key_id` was revoked.
    pub(crate) fn api_key_revoked(&self, api_key_id: &str) -> bool {
        let now = unix_now();
        let in_force = self.in_force.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        in_force
            .api_keys
            .get(&id_digest(api_key_id))
            .is_some_and(|expires| *expires > now)
    }
}

/// How following a feed ended.
enum FeedEnd {
    /// The verifier was dropped: stop.
    Dropped,
    /// The feed failed, ended or went silent: open it again.
    Lost(String),
    /// The issuer does not publish revocations (yet).
    Unsupported,
}

/// Opens `source`'s feed and applies what it says to `list`, for as long as
/// the list exists; opens it again whenever it fails, ends or goes silent.
async fn follow(list: Weak<RevocationList>, source: Arc<dyn JwksSource>) {
    let mut delay = Duration::from_millis(100);
    // Each way of failing is logged once until the feed works again.
    let mut quiet = false;
    loop {
        let (end, heard) = match source.revocations().await {
            Ok(None) => {
                if let Some(list) = list.upgrade() {
                    list.state.send_replace(FeedState::Unsupported);
                }
                return;
            }
            Ok(Some(feed)) => apply_feed(&list, feed).await,
            Err(status) if status.code() == Code::Unimplemented => (FeedEnd::Unsupported, false),
            Err(status) => (
                FeedEnd::Lost(format!("{:?}: {}", status.code(), status.message())),
                false,
            ),
        };
        if heard {
            delay = Duration::from_millis(100);
            quiet = false;
        }
        let Some(strong) = list.upgrade() else { return };
        match end {
            FeedEnd::Dropped => return,
            FeedEnd::Unsupported => {
                if !quiet {
                    tracing::warn!("the auth service publishes no revocations: tokens are checked without them");
                }
                quiet = true;
                strong.set_state_unless_live(FeedState::Unsupported);
                drop(strong);
                tokio::time::sleep(UNSUPPORTED_RETRY).await;
                continue;
            }
            FeedEnd::Lost(reason) => {
                if !quiet {
                    tracing::warn!(reason, "revocation feed lost, opening it again");
                }
                quiet = true;
                strong.set_state_unless_live(FeedState::Failing);
            }
        }
        drop(strong);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

/// Applies `feed` to `list` until it fails, ends or goes silent; how it
/// ended, and whether it said anything first.
async fn apply_feed(list: &Weak<RevocationList>, mut feed: RevocationFeed) -> (FeedEnd, bool) {
    let mut heard = false;
    loop {
        let batch = match tokio::time::timeout(FEED_SILENCE_LIMIT, feed.next()).await {
            Err(_) => return (FeedEnd::Lost("silent for too long".to_owned()), heard),
            Ok(None) => return (FeedEnd::Lost("ended".to_owned()), heard),
            Ok(Some(Err(status))) if status.code() == Code::Unimplemented => return (FeedEnd::Unsupported, heard),
            Ok(Some(Err(status))) => {
                return (
                    FeedEnd::Lost(format!("{:?}: {}", status.code(), status.message())),
                    heard,
                );
            }
            Ok(Some(Ok(batch))) => batch,
        };
        let Some(list) = list.upgrade() else {
            return (FeedEnd::Dropped, heard);
        };
        list.apply(&batch);
        heard = true;
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(session: &str, subject: &str, version: u64) -> TokenIdentity {
        TokenIdentity {
            session: Some(id_digest(session)),
            subject: id_digest(subject),
            version,
        }
    }

    #[test]
    fn sessions_versions_and_keys_are_refused_until_they_expire() {
        let list = RevocationList::new();
        let later = unix_now() + 600;
        list.apply(&RevocationBatch {
            revocations: vec![
                Revocation {
                    revoked: Revoked::Session(id_digest("closed")),
                    expires_at: later,
                },
                Revocation {
                    revoked: Revoked::Subject {
                        subject: id_digest("demoted"),
                        min_version: 3,
                    },
                    expires_at: later,
                },
                Revocation {
                    revoked: Revoked::ApiKey(id_digest("key-1")),
                    expires_at: later,
                },
                Revocation {
                    revoked: Revoked::Session(id_digest("long ago")),
                    expires_at: unix_now() - 1,
                },
            ],
            complete: true,
        });
        assert_eq!(
            list.check(&identity("closed", "someone", 0)),
            Err(TokenError::SessionRevoked)
        );
        assert_eq!(list.check(&identity("open", "someone", 0)), Ok(()));
        assert_eq!(list.check(&identity("open", "demoted", 2)), Err(TokenError::Superseded));
        assert_eq!(
            list.check(&identity("open", "demoted", 3)),
            Ok(()),
            "the new version passes"
        );
        assert_eq!(
            list.check(&identity("long ago", "someone", 0)),
            Ok(()),
            "expired revocations lapse"
        );
        assert!(list.api_key_revoked("key-1"));
        assert!(!list.api_key_revoked("key-2"));
    }

    #[test]
    fn a_version_only_rises_whatever_the_order_of_arrival() {
        let list = RevocationList::new();
        let later = unix_now() + 600;
        let bump = |min_version| Revocation {
            revoked: Revoked::Subject {
                subject: id_digest("user"),
                min_version,
            },
            expires_at: later,
        };
        list.apply_local(&[bump(5)]);
        list.apply(&RevocationBatch {
            revocations: vec![bump(4)],
            complete: true,
        });
        assert_eq!(list.check(&identity("s", "user", 4)), Err(TokenError::Superseded));
        assert_eq!(list.check(&identity("s", "user", 5)), Ok(()));
    }

    #[test]
    fn revocations_round_trip_through_the_contract() {
        let revocations = [
            Revoked::Session(id_digest("a")),
            Revoked::Subject {
                subject: id_digest("b"),
                min_version: 7,
            },
            Revoked::ApiKey(id_digest("c")),
        ];
        for revoked in revocations {
            let revocation = Revocation {
                revoked,
                expires_at: 1_900_000_000,
            };
            assert_eq!(Revocation::from_proto(&revocation.to_proto()), Ok(revocation));
        }
        let mut unreadable = revocations_proto();
        unreadable.revocations[0].id_sha256.truncate(5);
        let batch = RevocationBatch::from_proto(&unreadable);
        assert_eq!(
            batch.revocations.len(),
            1,
            "the unreadable one is skipped, the rest apply"
        );
    }

    fn revocations_proto() -> proto::WatchRevocationsResponse {
        RevocationBatch {
            revocations: vec![
                Revocation {
                    revoked: Revoked::Session(id_digest("x")),
                    expires_at: 1_900_000_000,
                },
                Revocation {
                    revoked: Revoked::ApiKey(id_digest("y")),
                    expires_at: 1_900_000_000,
                },
            ],
            complete: false,
        }
        .to_proto()
    }

    #[tokio::test]
    async fn a_list_is_ready_once_complete_and_unavailable_while_its_feed_fails() {
        let mut list = RevocationList::new();
        list.set_state_unless_live(FeedState::Failing);
        assert_eq!(list.ready().await, Err(TokenError::RevocationsUnavailable));
        list.apply(&RevocationBatch {
            revocations: vec![],
            complete: false,
        });
        assert_eq!(
            list.ready().await,
            Err(TokenError::RevocationsUnavailable),
            "a partial message is not a snapshot"
        );
        list.apply(&RevocationBatch {
            revocations: vec![],
            complete: true,
        });
        assert_eq!(list.ready().await, Ok(()));
        list.set_state_unless_live(FeedState::Failing);
        assert_eq!(list.ready().await, Ok(()), "a lost feed keeps what it knew");
        list.max_stale = Duration::ZERO;
        assert_eq!(
            list.ready().await,
            Err(TokenError::RevocationsUnavailable),
            "but not forever"
        );
    }
}
