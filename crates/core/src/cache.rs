//! Cache, rate limiting and pub/sub: Redis in production, in-process by default.
//!
//! Each concern is a trait with two implementations, [`memory`] and [`redis`];
//! [`Backends::connect`] picks by whether a Redis URL is configured. Keys are
//! plain strings that the caller namespaces (`auth:lock:…`); the Redis
//! implementation prepends a configurable prefix so that deployments and tests
//! can share one server.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};

/// A failure of the cache backend.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis refused or failed a command.
    #[error("redis error")]
    Redis(#[from] fred::error::Error),
    /// The server did not answer in time.
    #[error("redis did not answer in time")]
    Timeout,
    /// A stored value had an unexpected shape.
    #[error("unexpected cache value: {0}")]
    Corrupt(String),
    /// A database-backed queue failed.
    #[error("queue storage error")]
    Storage(#[from] sqlx::Error),
}

/// A key-value cache with expiry.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The value under `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    /// Stores `value` only if `key` is absent; whether it was stored.
    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError>;
    /// Removes and returns the value under `key`, atomically: of two callers
    /// racing for a one-time value only one receives it.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Adds one to the counter under `key` and returns the new count; a new
    /// counter expires after `ttl`, an existing one keeps its expiry.
    async fn increment(&self, key: &str, ttl: Duration) -> Result<i64, CacheError>;
}

/// A rate: `burst` requests at once, refilled at `burst` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// How many requests may arrive at once.
    pub burst: u32,
    /// How long it takes to earn the whole burst back.
    pub period: Duration,
}

impl Quota {
    /// `count` requests per minute, all of them at once if need be.
    pub const fn per_minute(count: u32) -> Self {
        Self {
            burst: count,
            period: Duration::from_secs(60),
        }
    }

    /// `count` requests per second.
    pub const fn per_second(count: u32) -> Self {
        Self {
            burst: count,
            period: Duration::from_secs(1),
        }
    }

    /// The time that earns back one request.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.burst.max(1)
    }
}

/// The answer of a rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead.
    Allowed,
    /// Refused; come back after this long.
    Limited {
        /// When the next request would be allowed.
        retry_after: Duration,
    },
}

/// A limiter using the generic cell rate algorithm (GCRA): one timestamp per
/// key, the "theoretical arrival time", so limits cost one key each.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request against `key` and says whether it may proceed.
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, CacheError>;
}

/// Messages published on a channel, delivered to every current subscriber.
pub type Subscription = BoxStream<'static, Vec<u8>>;

/// Publish/subscribe across every instance of the platform.
#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    /// Sends `payload` to every subscriber of `channel`.
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError>;
    /// Receives what is published on `channel` from now on.
    async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError>;
}

/// One entry of a work stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry's id in its stream.
    pub id: String,
    /// What was appended.
    pub payload: Vec<u8>,
    /// How many times the entry has been delivered, this delivery included.
    pub deliveries: u64,
}

/// The answer to an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Appended under this id.
    Queued(String),
    /// Refused: the stream already holds this many entries waiting or in
    /// flight, the bound the caller set.
    Full {
        /// The entries waiting or in flight.
        depth: u64,
    },
}

/// The state of a stream after [`WorkStream::maintain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStats {
    /// Entries waiting or in flight (acknowledged ones are trimmed).
    pub depth: u64,
    /// How long the oldest of them has waited; zero when there are none.
    pub lag: Duration,
    /// Entries in the stream's dead letters.
    pub dead_letters: u64,
}

/// An entry moved aside because processing it cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id among the dead letters.
    pub id: String,
    /// Its id in the stream it came from.
    pub entry_id: String,
    /// Why it was moved.
    pub reason: String,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// The stream that holds the dead letters of `stream`.
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}:dead")
}

/// Durable work queues with consumer groups (Redis Streams semantics): an
/// appended entry is delivered to one consumer of each group, stays pending
/// until that consumer acknowledges it, and can be claimed by another
/// consumer once it has been pending too long (its consumer crashed).
/// Delivery is at least once; consumers make processing idempotent.
///
/// A stream and its group are (re)created whenever they are missing, so a
/// server that lost its data is used again without a restart.
#[async_trait]
pub trait WorkStream: Send + Sync + 'static {
    /// Appends `payload` to `stream` (creating `group` when missing) unless
    /// the stream already holds `max_depth` entries waiting or in flight.
    async fn append(&self, stream: &str, group: &str, payload: &[u8], max_depth: u64) -> Result<Appended, CacheError>;
    /// Up to `count` entries never delivered to `group`, now delivered to
    /// `consumer`; waits up to `wait` for one when there are none.
    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<StreamEntry>, CacheError>;
    /// Up to `count` entries pending in `group` for longer than `min_idle`,
    /// now delivered to `consumer` instead.
    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<StreamEntry>, CacheError>;
    /// Acknowledges processed entries: they are never delivered again.
    async fn acknowledge(&self, stream: &str, group: &str, ids: &[String]) -> Result<(), CacheError>;
    /// Moves `entry` to the stream's dead letters with `reason` and
    /// acknowledges it (at least once: a crash in between may leave it in
    /// the dead letters twice, never in neither).
    async fn dead_letter(&self, stream: &str, group: &str, entry: &StreamEntry, reason: &str)
    -> Result<(), CacheError>;
    /// Trims the entries every group has acknowledged and reports the
    /// stream's depth, lag and dead letters.
    async fn maintain(&self, stream: &str) -> Result<StreamStats, CacheError>;
    /// The newest `count` dead letters of `stream`, newest first.
    async fn dead_letters(&self, stream: &str, count: usize) -> Result<Vec<DeadLetter>, CacheError>;
}

/// The cache-like backends of a process, chosen together.
#[derive(Clone)]
pub struct Backends {
    /// Key-value cache with expiry (also holds sessions).
    pub cache: Arc<dyn Cache>,
    /// Rate limiting.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Publish/subscribe.
    pub pubsub: Arc<dyn PubSub>,
    /// Durable work streams with consumer groups, when the backend has
    /// them (Redis); without, a service keeps its queue in its database.
    pub work_streams: Option<Arc<dyn WorkStream>>,
    /// Which implementation is in use, for logs.
    pub description: &'static str,
}

impl Backends {
    /// Redis when `redis_url` is set, in-process otherwise.
    pub async fn connect(redis_url: Option<&SecretString>, key_prefix: &str) -> Result<Self, CacheError> {
        match redis_url {
            Some(url) => redis::RedisBackends::connect(url.expose_secret(), key_prefix)
                .await
                .map(Into::into),
            None => Ok(Self::in_process()),
        }
    }

    /// In-process backends, for `metrix dev` and tests.
    pub fn in_process() -> Self {
        let cache = Arc::new(memory::MemoryCache::default());
        Self {
            cache: cache.clone(),
            rate_limiter: Arc::new(memory::MemoryRateLimiter::default()),
            pubsub: Arc::new(memory::MemoryPubSub::default()),
            work_streams: None,
            description: "in-process",
        }
    }
}

/// The GCRA step shared by both limiters: given the stored theoretical arrival
/// time (or none) and now, both in microseconds, the decision and the new
/// arrival time to store.
pub fn gcra(stored_arrival: Option<i64>, now: i64, quota: Quota) -> (RateDecision, Option<i64>) {
    // Clocks tick in microseconds: a finer interval would round to zero and
    // leave no room for a burst at all.
    let interval = i64::try_from(quota.emission_interval().as_micros())
        .unwrap_or(i64::MAX)
        .max(1);
    let window = interval.saturating_mul(i64::from(quota.burst.max(1)));
    let arrival = stored_arrival.unwrap_or(now).max(now);
    let next_arrival = arrival.saturating_add(interval);
    let allow_at = next_arrival - window;
    if now < allow_at {
        let wait = u64::try_from(allow_at - now).unwrap_or(0);
        (
            RateDecision::Limited {
                retry_after: Duration::from_micros(wait),
            },
            None,
        )
    } else {
        (RateDecision::Allowed, Some(next_arrival))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_spaces_requests() {
        let quota = Quota {
            burst: 3,
            period: Duration::from_secs(3),
        };
        let mut stored = None;
        let now = 1_000_000_000;
        for _ in 0..3 {
            let (decision, next) = gcra(stored, now, quota);
            assert_eq!(decision, RateDecision::Allowed);
            stored = next;
        }
        let (decision, next) = gcra(stored, now, quota);
        assert_eq!(
            decision,
            RateDecision::Limited {
                retry_after: Duration::from_secs(1)
            }
        );
        assert_eq!(next, None);
        let (decision, _) = gcra(stored, now + 1_000_000, quota);
        assert_eq!(decision, RateDecision::Allowed);
    }

    #[test]
    fn an_idle_key_earns_back_its_whole_burst_and_no_more() {
        let quota = Quota::per_second(2);
        let (_, stored) = gcra(None, 0, quota);
        let later = 60_000_000;
        let mut arrival = stored;
        let mut allowed = 0;
        for _ in 0..5 {
            let (decision, next) = gcra(arrival, later, quota);
            if decision == RateDecision::Allowed {
                allowed += 1;
                arrival = next;
            }
        }
        assert_eq!(allowed, 2);
    }
}
