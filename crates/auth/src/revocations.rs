//! Telling every verifier what it must refuse before it expires: closed
//! sessions, superseded authorization versions, revoked API keys.
//!
//! Each revocation is written to the store in the transaction that makes it
//! (the truth), applied at once to this instance's own verifier, and
//! published on [`REVOCATIONS_CHANNEL`]. Verifiers follow a feed
//! ([`Revocations::feed`], served to other services as WatchRevocations):
//! everything in force, read from the store, then what one hub per instance
//! broadcasts to every feed — what the channel brings, whatever the store
//! holds that the channel may have lost (read every [`RESYNC_INTERVAL`]),
//! and an empty message every [`HEARTBEAT_INTERVAL`] so that a dead feed is
//! noticed. However many feeds are open, an instance reads the store for
//! them once per interval, plus once per feed opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use metrix_core::authn::revocations::id_digest;
use metrix_core::authn::{Revocation, RevocationBatch, RevocationFeed, Revoked, TokenVerifier};
use metrix_core::cache::{PubSub, Subscription};
use metrix_core::server::Shutdown;
use metrix_core::time::{duration_micros, now_micros};
use prost::Message as _;
use tokio::sync::broadcast;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::AuthError;
use crate::store::{AuthStore, RevocationRow};

/// The channel on which every instance announces the revocations it makes.
pub const REVOCATIONS_CHANNEL: &str = "auth:revocations";

/// A feed sends at least this often, so its follower can tell it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// How often an instance reads the store for revocations the channel did
/// not bring (an announcement lost while Redis was unreachable, or never
/// published): the bound when pub/sub fails.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(2);

/// How far back each resync reads, beyond the previous one, so that a
/// revocation committed late (its clock read before a slow commit, or on
/// an instance whose clock lags) is still found.
const RESYNC_OVERLAP: Duration = Duration::from_secs(60);

/// Messages a feed may fall behind the hub before it is ended (its
/// follower opens it again and starts from a complete snapshot).
const HUB_CAPACITY: usize = 256;

/// Expired revocations are deleted from the store this often.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(600);

/// Keeps the service's revocations and serves them as feeds.
#[derive(Clone)]
pub struct Revocations {
    store: AuthStore,
    pubsub: Arc<dyn PubSub>,
    lifetime: Duration,
    /// The hub's sender while feeds are open.
    hub: Arc<Mutex<Option<broadcast::Sender<RevocationBatch>>>>,
}

impl Revocations {
    /// Revocations recorded in `store`, announced on `pubsub`; each lasts
    /// `lifetime` (the access-token lifetime plus verifiers' leeway).
    pub fn new(store: AuthStore, pubsub: Arc<dyn PubSub>, lifetime: Duration) -> Self {
        Self {
            store,
            pubsub,
            lifetime,
            hub: Arc::default(),
        }
    }

    /// When a revocation made now stops mattering (Unix microseconds).
    pub fn expires_at(&self) -> i64 {
        now_micros() + duration_micros(self.lifetime)
    }

    /// Applies revocations just committed to `verifier` (this instance's)
    /// and announces them to every other instance. A failed announcement is
    /// logged: the others find the revocations in the store at their next
    /// resync.
    pub async fn announce(&self, verifier: &TokenVerifier, rows: &[RevocationRow]) {
        let revocations: Vec<Revocation> = rows.iter().filter_map(revocation_of).collect();
        if revocations.is_empty() {
            return;
        }
        verifier.apply_revocations(&revocations);
        let message = RevocationBatch {
            revocations,
            complete: false,
        }
        .to_proto()
        .encode_to_vec();
        if let Err(error) = self.pubsub.publish(REVOCATIONS_CHANNEL, &message).await {
            tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot announce revocations, other instances will read them from the store");
        }
    }

    /// A feed: every revocation in force, then what the hub broadcasts. It
    /// ends when its reader goes away, or when it falls too far behind.
    pub async fn feed(&self) -> Result<RevocationFeed, AuthError> {
        // Join the hub before reading the store, so that nothing committed
        // in between is missed (what arrives twice applies once).
        let mut hub = self.join_hub().await;
        let in_force = self.store.revocations_in_force(now_micros()).await?;
        let first = RevocationBatch {
            revocations: in_force.iter().filter_map(revocation_of).collect(),
            complete: true,
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        #[allow(clippy::expect_used, reason = "a new channel of 16 has room for its first message")]
        sender
            .try_send(Ok(first))
            .expect("a new channel has room for its first message");
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    () = sender.closed() => return,
                    received = hub.recv() => match received {
                        Ok(batch) => batch,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "a revocation feed fell behind, ending it to start over");
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if sender.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
        });
        Ok(ReceiverStream::new(receiver).boxed())
    }

    /// A receiver of the hub, which starts if no feed is open.
    async fn join_hub(&self) -> broadcast::Receiver<RevocationBatch> {
        if let Some(sender) = self.hub.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            return sender.subscribe();
        }
        let announcements = match self.pubsub.subscribe(REVOCATIONS_CHANNEL).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot subscribe to revocations, relying on the store");
                futures::stream::pending().boxed()
            }
        };
        let mut shared = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = shared.as_ref() {
            // Another feed started it meanwhile.
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(HUB_CAPACITY);
        *shared = Some(sender.clone());
        let hub = Hub {
            store: self.store.clone(),
            shared: self.hub.clone(),
            sender,
            sent: HashMap::new(),
            read_since: now_micros() - duration_micros(RESYNC_OVERLAP),
        };
        tokio::spawn(hub.run(announcements));
        receiver
    }
}

/// The task that feeds every open feed of an instance.
struct Hub {
    store: AuthStore,
    shared: Arc<Mutex<Option<broadcast::Sender<RevocationBatch>>>>,
    sender: broadcast::Sender<RevocationBatch>,
    /// Revocations the resyncs found (by id, with their creation time), so
    /// each sends only what is new; forgotten once older than the overlap.
    sent: HashMap<String, i64>,
    /// The creation time after which the next resync reads.
    read_since: i64,
}

impl Hub {
    async fn run(mut self, mut announcements: Subscription) {
        let mut resync = tokio::time::interval(RESYNC_INTERVAL);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let batch = tokio::select! {
                announcement = announcements.next() => match announcement {
                    Some(payload) => match metrix_proto::auth::v1::WatchRevocationsResponse::decode(payload.as_slice()) {
                        Ok(message) => Some(RevocationBatch::from_proto(&message)),
                        Err(error) => {
                            tracing::warn!(error = %error, "ignoring an unreadable revocation announcement");
                            None
                        }
                    },
                    None => {
                        // The subscription ended (its backend went away):
                        // the resyncs carry on alone.
                        announcements = futures::stream::pending().boxed();
                        None
                    }
                },
                _ = resync.tick() => match self.resync().await {
                    Ok(batch) => Some(batch).filter(|batch| !batch.revocations.is_empty()),
                    Err(error) => {
                        tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot read revocations from the store");
                        None
                    }
                },
                _ = heartbeat.tick() => Some(RevocationBatch::default()),
            };
            if let Some(batch) = batch {
                // No receiver is not an error: it is checked below.
                let _ = self.sender.send(batch);
            }
            if self.sender.receiver_count() == 0 {
                let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
                // Feeds join under this lock: none can have joined since.
                if self.sender.receiver_count() == 0 {
                    *shared = None;
                    return;
                }
            }
        }
    }

    /// What the store holds that the resyncs have not found yet.
    async fn resync(&mut self) -> Result<RevocationBatch, AuthError> {
        let now = now_micros();
        let rows = self.store.revocations_since(self.read_since, now).await?;
        let overlap = duration_micros(RESYNC_OVERLAP);
        self.read_since = now - overlap;
        self.sent.retain(|_, created_at| *created_at > now - 2 * overlap);
        let mut revocations = Vec::new();
        for row in rows {
            if self.sent.insert(row.revocation_id.clone(), row.created_at).is_none()
                && let Some(revocation) = revocation_of(&row)
            {
                revocations.push(revocation);
            }
        }
        Ok(RevocationBatch {
            revocations,
            complete: false,
        })
    }
}

/// A stored revocation as verifiers know it.
fn revocation_of(row: &RevocationRow) -> Option<Revocation> {
    let digest = id_digest(&row.target);
    let revoked = match row.kind.as_str() {
        "session" => Revoked::Session(digest),
        "subject" => Revoked::Subject {
            subject: digest,
            min_version: u64::try_from(row.min_version).unwrap_or(0),
        },
        "api_key" => Revoked::ApiKey(digest),
        other => {
            tracing::error!(kind = other, revocation_id = %row.revocation_id, "unknown revocation kind in the store");
            return None;
        }
    };
    // Round up: a revocation must outlive every credential it withdraws.
    let expires_at = u64::try_from(row.expires_at).unwrap_or(0).div_ceil(1_000_000);
    Some(Revocation { revoked, expires_at })
}

/// Deletes expired revocations now and every ten minutes, until `shutdown`.
pub fn spawn_cleanup(store: AuthStore, shutdown: Shutdown) {
    shutdown.every(CLEANUP_INTERVAL, move || {
        let store = store.clone();
        async move {
            match store.delete_expired_revocations(now_micros()).await {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "expired revocations deleted"),
                Err(error) => {
                    tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot delete expired revocations")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_revocations_become_digests_that_outlive_their_credentials() {
        let row = RevocationRow {
            revocation_id: "r".into(),
            kind: "subject".into(),
            target: "user-1".into(),
            min_version: 3,
            created_at: 0,
            expires_at: 1_000_000_001,
        };
        assert_eq!(
            revocation_of(&row),
            Some(Revocation {
                revoked: Revoked::Subject {
                    subject: id_digest("user-1"),
                    min_version: 3
                },
                expires_at: 1_001,
            })
        );
        let unknown = RevocationRow {
            kind: "nonsense".into(),
            ..row
        };
        assert_eq!(revocation_of(&unknown), None);
    }
}
