//! In-process backends: one map, one limiter table, one broadcast hub per
//! process. Nothing survives a restart, nothing is shared across processes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::{Cache, CacheError, PubSub, Quota, RateDecision, RateLimiter, Subscription, gcra};

/// Expired entries are swept once this many writes have happened since the
/// last sweep, so the map stays bounded by the live entries.
const SWEEP_EVERY_WRITES: usize = 1024;

#[derive(Default)]
struct Entries {
    values: HashMap<String, (Vec<u8>, Instant)>,
    writes_since_sweep: usize,
}

impl Entries {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut (Vec<u8>, Instant)> {
        if self.values.get(key).is_some_and(|(_, expires)| *expires <= now) {
            self.values.remove(key);
        }
        self.values.get_mut(key)
    }

    fn insert(&mut self, key: &str, value: Vec<u8>, expires: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY_WRITES {
            let now = Instant::now();
            self.values.retain(|_, (_, expires)| *expires > now);
            self.writes_since_sweep = 0;
        }
        self.values.insert(key.to_owned(), (value, expires));
    }
}

/// A cache in a map guarded by a mutex; held only for map operations.
#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<Entries>,
}

impl MemoryCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every operation is a single map call), so a poisoned lock is safe.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.entries().live(key, Instant::now()).map(|(value, _)| value.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.entries().insert(key, value.to_vec(), Instant::now() + ttl);
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.live(key, now).is_some() {
            return Ok(false);
        }
        entries.insert(key, value.to_vec(), now + ttl);
        Ok(true)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        let mut entries = self.entries();
        let live = entries.live(key, now).is_some();
        Ok(if live {
            entries.values.remove(key).map(|(value, _)| value)
        } else {
            None
        })
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries().values.remove(key);
        Ok(())
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let now = Instant::now();
        let mut entries = self.entries();
        if let Some((value, _)) = entries.live(key, now) {
            let count = parse_count(value)? + 1;
            *value = count.to_string().into_bytes();
            return Ok(count);
        }
        entries.insert(key, b"1".to_vec(), now + ttl);
        Ok(1)
    }
}

fn parse_count(value: &[u8]) -> Result<i64, CacheError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| CacheError::Corrupt("counter is not an integer".to_owned()))
}

/// GCRA over an in-process table of arrival times.
#[derive(Default)]
pub struct MemoryRateLimiter {
    arrivals: Mutex<HashMap<String, i64>>,
    epoch: std::sync::OnceLock<Instant>,
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, CacheError> {
        let epoch = *self.epoch.get_or_init(Instant::now);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Read the clock under the lock: a `now` taken before it could be
        // older than an arrival another thread stored meanwhile.
        let now = i64::try_from(epoch.elapsed().as_micros()).unwrap_or(i64::MAX);
        if arrivals.len() > 100_000 {
            // Keys whose arrival time has passed hold no state worth keeping.
            arrivals.retain(|_, arrival| *arrival > now);
        }
        let (decision, next) = gcra(arrivals.get(key).copied(), now, quota);
        if let Some(next) = next {
            arrivals.insert(key.to_owned(), next);
        }
        Ok(decision)
    }
}

/// Channels as tokio broadcast senders; a slow subscriber that falls more
/// than the capacity behind loses the oldest messages, like Redis pub/sub.
#[derive(Default)]
pub struct MemoryPubSub {
    channels: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
}

const CHANNEL_CAPACITY: usize = 1024;

impl MemoryPubSub {
    fn sender(&self, channel: &str) -> broadcast::Sender<Vec<u8>> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.retain(|_, sender| sender.receiver_count() > 0);
        channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .clone()
    }
}

#[async_trait]
impl PubSub for MemoryPubSub {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        // No subscriber is not an error: the message simply reaches nobody.
        let _ = self.sender(channel).send(payload.to_vec());
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        let receiver = self.sender(channel).subscribe();
        Ok(BroadcastStream::new(receiver)
            .filter_map(|message| async move { message.ok() })
            .boxed())
    }
}
