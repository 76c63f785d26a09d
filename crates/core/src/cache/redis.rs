//! Redis backends through `fred`: a small pool for commands, a subscriber
//! client for pub/sub, and the GCRA step as a Lua script that reads the
//! server's clock so that every instance agrees on time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, ClientLike, Config, EventInterface, Expiration, KeysInterface, LuaInterface, Pool, PubsubInterface,
    ReconnectPolicy, SetOptions,
};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::{Backends, Cache, CacheError, PubSub, Quota, RateDecision, RateLimiter, Subscription};

const POOL_SIZE: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The GCRA step (see [`super::gcra`]) run atomically in Redis.
const GCRA_SCRIPT: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local arrival = tonumber(redis.call('GET', KEYS[1]) or now)
if arrival < now then arrival = now end
local next_arrival = arrival + interval
local allow_at = next_arrival - window
if now < allow_at then
  return allow_at - now
end
redis.call('SET', KEYS[1], string.format('%d', next_arrival), 'PX', math.ceil((next_arrival - now) / 1000) + 1)
return -1
"#;

/// Increments a counter and sets its expiry only when it is new.
const INCREMENT_SCRIPT: &str = r#"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"#;

/// Every Redis-backed concern, sharing one pool.
pub struct RedisBackends {
    pool: Pool,
    subscriber: SubscriberClient,
    /// A connection of its own for blocking stream reads, so a waiting
    /// consumer never holds a pooled connection.
    stream_reader: fred::clients::Client,
    prefix: String,
}

impl RedisBackends {
    /// Connects a command pool and a subscriber client to `url`.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<Self, CacheError> {
        let config = Config::from_url(url)?;
        let policy = ReconnectPolicy::new_exponential(0, 100, 5_000, 2);
        // Commands and replies are small writes each awaiting an answer:
        // with Nagle's algorithm a write spanning two segments (a queued
        // batch of events) would wait for the server's delayed ACK.
        let no_delay = |connection: &mut fred::types::config::ConnectionConfig| {
            connection.tcp = fred::types::config::TcpConfig {
                nodelay: Some(true),
                ..fred::types::config::TcpConfig::default()
            };
        };
        let pool = Builder::from_config(config.clone())
            .set_policy(policy.clone())
            .with_connection_config(no_delay)
            .build_pool(POOL_SIZE)?;
        let subscriber = Builder::from_config(config.clone())
            .set_policy(policy.clone())
            .with_connection_config(no_delay)
            .build_subscriber_client()?;
        let stream_reader = Builder::from_config(config)
            .set_policy(policy)
            .with_connection_config(no_delay)
            .build()?;
        // Start-up fails fast on an unreachable server instead of retrying
        // forever; once connected, the policy reconnects.
        let connect = async {
            pool.init().await?;
            subscriber.init().await?;
            stream_reader.init().await?;
            Ok::<_, fred::error::Error>(())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(result) => result?,
            Err(_) => return Err(CacheError::Timeout),
        }
        // Re-subscribes to every channel after a reconnection.
        let _resubscribe = subscriber.manage_subscriptions();
        Ok(Self {
            pool,
            subscriber,
            stream_reader,
            prefix: key_prefix.to_owned(),
        })
    }
}

impl From<RedisBackends> for Backends {
    fn from(backends: RedisBackends) -> Self {
        let shared = Arc::new(backends);
        let pubsub = Arc::new(RedisPubSub {
            shared: shared.clone(),
            fanout: Mutex::default(),
        });
        Self {
            cache: Arc::new(RedisCache { shared: shared.clone() }),
            rate_limiter: Arc::new(RedisRateLimiter { shared: shared.clone() }),
            pubsub,
            work_streams: Arc::new(RedisWorkStream {
                shared,
                groups: Mutex::default(),
            }),
            description: "redis",
        }
    }
}

impl RedisBackends {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn milliseconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The cache on Redis strings.
pub struct RedisCache {
    shared: Arc<RedisBackends>,
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let value: Option<Bytes> = self.shared.pool.get(self.shared.key(key)).await?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let () = self
            .shared
            .pool
            .set(
                self.shared.key(key),
                Bytes::copy_from_slice(value),
                Some(Expiration::PX(milliseconds(ttl))),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    async fn set_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let reply: Option<String> = self
            .shared
            .pool
            .set(
                self.shared.key(key),
                Bytes::copy_from_slice(value),
                Some(Expiration::PX(milliseconds(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(reply.is_some())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let value: Option<Bytes> = self.shared.pool.getdel(self.shared.key(key)).await?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let _: i64 = self.shared.pool.del(self.shared.key(key)).await?;
        Ok(())
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let count: i64 = self
            .shared
            .pool
            .next()
            .eval(INCREMENT_SCRIPT, vec![self.shared.key(key)], vec![milliseconds(ttl)])
            .await?;
        Ok(count)
    }
}

/// GCRA in a Lua script.
pub struct RedisRateLimiter {
    shared: Arc<RedisBackends>,
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, CacheError> {
        let interval = i64::try_from(quota.emission_interval().as_micros()).unwrap_or(i64::MAX);
        let window = interval.saturating_mul(i64::from(quota.burst.max(1)));
        let wait: i64 = self
            .shared
            .pool
            .next()
            .eval(GCRA_SCRIPT, vec![self.shared.key(key)], vec![interval, window])
            .await?;
        Ok(match u64::try_from(wait) {
            Ok(micros) => RateDecision::Limited {
                retry_after: Duration::from_micros(micros),
            },
            Err(_) => RateDecision::Allowed,
        })
    }
}

/// Pub/sub through one subscriber connection, fanned out in-process to every
/// local subscriber of a channel.
pub struct RedisPubSub {
    shared: Arc<RedisBackends>,
    fanout: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
}

const FANOUT_CAPACITY: usize = 1024;

#[async_trait]
impl PubSub for RedisPubSub {
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), CacheError> {
        let _receivers: i64 = self
            .shared
            .pool
            .next()
            .publish(self.shared.key(channel), Bytes::copy_from_slice(payload))
            .await?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, CacheError> {
        let full_channel = self.shared.key(channel);
        let (receiver, is_new) = {
            let mut fanout = self.fanout.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match fanout.get(&full_channel) {
                Some(sender) => (sender.subscribe(), false),
                None => {
                    let (sender, receiver) = broadcast::channel(FANOUT_CAPACITY);
                    fanout.insert(full_channel.clone(), sender.clone());
                    let mut messages = self.shared.subscriber.message_rx();
                    let wanted = full_channel.clone();
                    tokio::spawn(async move {
                        loop {
                            match messages.recv().await {
                                Ok(message) if *message.channel == *wanted => {
                                    if let Some(bytes) = message.value.as_bytes() {
                                        let _ = sender.send(bytes.to_vec());
                                    }
                                }
                                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                                Err(broadcast::error::RecvError::Closed) => break,
                            }
                        }
                    });
                    (receiver, true)
                }
            }
        };
        if is_new {
            self.shared.subscriber.subscribe(full_channel).await?;
        }
        Ok(BroadcastStream::new(receiver)
            .filter_map(|message| async move { message.ok() })
            .boxed())
    }
}

/// Work streams on Redis Streams: XADD, consumer groups read with
/// XREADGROUP, stale entries taken over with XAUTOCLAIM, XACK after
/// processing.
pub struct RedisWorkStream {
    shared: Arc<RedisBackends>,
    /// Groups known to exist, so XGROUP CREATE runs once per process.
    groups: Mutex<std::collections::HashSet<(String, String)>>,
}

/// The field of a stream entry that holds the payload.
const PAYLOAD_FIELD: &str = "p";

fn bulk_string(value: &fred::types::Value) -> Option<String> {
    match value {
        fred::types::Value::String(text) => Some(text.to_string()),
        fred::types::Value::Bytes(bytes) => String::from_utf8(bytes.to_vec()).ok(),
        _ => None,
    }
}

fn bulk_bytes(value: &fred::types::Value) -> Option<Vec<u8>> {
    match value {
        fred::types::Value::String(text) => Some(text.as_bytes().to_vec()),
        fred::types::Value::Bytes(bytes) => Some(bytes.to_vec()),
        _ => None,
    }
}

/// Entries from an array of `[id, [field, value, …]]` (deleted entries,
/// whose fields are nil, are skipped).
fn parse_entries(value: &fred::types::Value) -> Vec<super::StreamEntry> {
    let fred::types::Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let fred::types::Value::Array(parts) = entry else {
                return None;
            };
            let id = bulk_string(parts.first()?)?;
            let fred::types::Value::Array(fields) = parts.get(1)? else {
                return None;
            };
            let payload = fields
                .chunks(2)
                .find(|pair| pair.first().and_then(bulk_string).as_deref() == Some(PAYLOAD_FIELD))
                .and_then(|pair| pair.get(1))
                .and_then(bulk_bytes)?;
            Some(super::StreamEntry { id, payload })
        })
        .collect()
}

impl RedisWorkStream {
    /// Creates `group` on `stream` (and the stream) unless done already.
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), CacheError> {
        let key = (stream.to_owned(), group.to_owned());
        if self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(());
        }
        let created: Result<fred::types::Value, fred::error::Error> = self
            .shared
            .pool
            .custom(
                fred::cmd!("XGROUP"),
                vec![
                    "CREATE".to_owned(),
                    self.shared.key(stream),
                    group.to_owned(),
                    "0".to_owned(),
                    "MKSTREAM".to_owned(),
                ],
            )
            .await;
        match created {
            Ok(_) => {}
            Err(error) if error.details().contains("BUSYGROUP") => {}
            Err(error) => return Err(error.into()),
        }
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key);
        Ok(())
    }
}

#[async_trait]
impl super::WorkStream for RedisWorkStream {
    async fn append(&self, stream: &str, payload: &[u8]) -> Result<String, CacheError> {
        let id: fred::types::Value = self
            .shared
            .pool
            .custom(
                fred::cmd!("XADD"),
                vec![
                    fred::types::Value::from(self.shared.key(stream)),
                    fred::types::Value::from("*"),
                    fred::types::Value::from(PAYLOAD_FIELD),
                    fred::types::Value::Bytes(Bytes::copy_from_slice(payload)),
                ],
            )
            .await?;
        Ok(bulk_string(&id).unwrap_or_default())
    }

    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<super::StreamEntry>, CacheError> {
        self.ensure_group(stream, group).await?;
        let answer: fred::types::Value = self
            .shared
            .stream_reader
            .custom(
                fred::cmd!("XREADGROUP", blocking: true),
                vec![
                    "GROUP".to_owned(),
                    group.to_owned(),
                    consumer.to_owned(),
                    "COUNT".to_owned(),
                    count.to_string(),
                    "BLOCK".to_owned(),
                    milliseconds(wait).to_string(),
                    "STREAMS".to_owned(),
                    self.shared.key(stream),
                    ">".to_owned(),
                ],
            )
            .await?;
        // [[stream, [entries…]]] or nil when the wait ran out.
        let fred::types::Value::Array(streams) = &answer else {
            return Ok(Vec::new());
        };
        Ok(streams
            .iter()
            .filter_map(|stream_answer| match stream_answer {
                fred::types::Value::Array(parts) => parts.get(1).map(parse_entries),
                _ => None,
            })
            .flatten()
            .collect())
    }

    async fn claim_stale(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<super::StreamEntry>, CacheError> {
        self.ensure_group(stream, group).await?;
        let answer: fred::types::Value = self
            .shared
            .pool
            .custom(
                fred::cmd!("XAUTOCLAIM"),
                vec![
                    self.shared.key(stream),
                    group.to_owned(),
                    consumer.to_owned(),
                    milliseconds(min_idle).to_string(),
                    "0-0".to_owned(),
                    "COUNT".to_owned(),
                    count.to_string(),
                ],
            )
            .await?;
        // [next start id, [entries…], [deleted ids…]]
        let fred::types::Value::Array(parts) = &answer else {
            return Ok(Vec::new());
        };
        Ok(parts.get(1).map(parse_entries).unwrap_or_default())
    }

    async fn acknowledge(&self, stream: &str, group: &str, ids: &[String]) -> Result<(), CacheError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut arguments = vec![self.shared.key(stream), group.to_owned()];
        arguments.extend(ids.iter().cloned());
        let _: fred::types::Value = self.shared.pool.custom(fred::cmd!("XACK"), arguments).await?;
        Ok(())
    }
}
