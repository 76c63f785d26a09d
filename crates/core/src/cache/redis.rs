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
            work_streams: Some(Arc::new(RedisWorkStream {
                shared,
                groups: Mutex::default(),
            })),
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

/// Work streams on Redis Streams: XADD (through a script that recreates
/// the group and refuses beyond the bound), consumer groups read with
/// XREADGROUP, stale entries taken over with XPENDING + XCLAIM (which count
/// deliveries), XACK after processing, XTRIM MINID below what every group
/// still needs.
pub struct RedisWorkStream {
    shared: Arc<RedisBackends>,
    /// Groups believed to exist, so XGROUP CREATE runs once per process;
    /// forgotten whenever Redis answers NOGROUP (it restarted empty).
    groups: Mutex<std::collections::HashSet<(String, String)>>,
}

/// The field of a stream entry that holds the payload.
const PAYLOAD_FIELD: &str = "p";

/// Creates the group (and stream) when missing, then appends unless the
/// stream holds `ARGV[2]` entries; answers `{1, id}` or `{0, depth}`.
const APPEND_SCRIPT: &str = r#"
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
local depth = redis.call('XLEN', KEYS[1])
if depth >= tonumber(ARGV[2]) then
  return {0, depth}
end
return {1, redis.call('XADD', KEYS[1], '*', 'p', ARGV[3])}
"#;

/// Trims every entry below the oldest one some group still needs (its
/// oldest pending entry, else the one after its last delivered), then
/// answers `{depth, oldest remaining id or '', server time in ms}`.
const MAINTAIN_SCRIPT: &str = r#"
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a_ms, a_seq, b_ms, b_seq)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, '', now_ms}
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local min_ms, min_seq = nil, nil
for _, group in ipairs(groups) do
  local fields = {}
  for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
  local need_ms, need_seq
  if tonumber(fields['pending']) > 0 then
    local summary = redis.call('XPENDING', KEYS[1], fields['name'])
    need_ms, need_seq = parse(summary[2])
  else
    need_ms, need_seq = parse(fields['last-delivered-id'])
    need_seq = need_seq + 1
  end
  if min_ms == nil or less(need_ms, need_seq, min_ms, min_seq) then
    min_ms, min_seq = need_ms, need_seq
  end
end
if min_ms ~= nil then
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', min_ms, min_seq))
end
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local oldest_id = ''
if #oldest > 0 then oldest_id = oldest[1][1] end
return {redis.call('XLEN', KEYS[1]), oldest_id, now_ms}
"#;

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

fn integer(value: &fred::types::Value) -> Option<i64> {
    match value {
        fred::types::Value::Integer(number) => Some(*number),
        other => bulk_string(other)?.parse().ok(),
    }
}

/// The value of `name` among an entry's `[field, value, …]`.
fn field<'a>(fields: &'a [fred::types::Value], name: &str) -> Option<&'a fred::types::Value> {
    fields
        .chunks(2)
        .find(|pair| pair.first().and_then(bulk_string).as_deref() == Some(name))
        .and_then(|pair| pair.get(1))
}

/// `(id, fields)` of every entry of an array of `[id, [field, value, …]]`
/// (deleted entries, whose fields are nil, are skipped).
fn entry_fields(value: &fred::types::Value) -> Vec<(String, &[fred::types::Value])> {
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
            Some((id, fields.as_slice()))
        })
        .collect()
}

/// Entries delivered `deliveries` times each.
fn parse_entries(value: &fred::types::Value, deliveries: impl Fn(&str) -> u64) -> Vec<super::StreamEntry> {
    entry_fields(value)
        .into_iter()
        .filter_map(|(id, fields)| {
            let payload = field(fields, PAYLOAD_FIELD).and_then(bulk_bytes)?;
            let deliveries = deliveries(&id);
            Some(super::StreamEntry {
                id,
                payload,
                deliveries,
            })
        })
        .collect()
}

/// Whether Redis said the stream or its group does not exist (it restarted
/// without its data, or the stream was deleted).
fn is_missing_group(error: &fred::error::Error) -> bool {
    error.details().contains("NOGROUP")
}

/// The Unix time in milliseconds of a stream id (`<ms>-<seq>`).
fn id_millis(id: &str) -> Option<i64> {
    id.split_once('-')?.0.parse().ok()
}

impl RedisWorkStream {
    /// Creates `group` on `stream` (and the stream) unless known to exist.
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), CacheError> {
        let key = (stream.to_owned(), group.to_owned());
        if self.known_groups().contains(&key) {
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
        self.known_groups().insert(key);
        Ok(())
    }

    fn known_groups(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, String)>> {
        self.groups.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `command` on `stream`'s `group`; when Redis says the group is
    /// missing, recreates it and runs the command once more.
    async fn with_group<T, F, Fut>(&self, stream: &str, group: &str, command: F) -> Result<T, CacheError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, fred::error::Error>>,
    {
        self.ensure_group(stream, group).await?;
        match command().await {
            Err(error) if is_missing_group(&error) => {
                tracing::warn!(stream, group, "the work stream's group was missing; recreating it");
                self.known_groups().remove(&(stream.to_owned(), group.to_owned()));
                self.ensure_group(stream, group).await?;
                Ok(command().await?)
            }
            other => Ok(other?),
        }
    }
}

#[async_trait]
impl super::WorkStream for RedisWorkStream {
    async fn append(
        &self,
        stream: &str,
        group: &str,
        payload: &[u8],
        max_depth: u64,
    ) -> Result<super::Appended, CacheError> {
        let answer: fred::types::Value = self
            .shared
            .pool
            .next()
            .eval(
                APPEND_SCRIPT,
                vec![self.shared.key(stream)],
                vec![
                    fred::types::Value::from(group),
                    fred::types::Value::from(i64::try_from(max_depth).unwrap_or(i64::MAX)),
                    fred::types::Value::Bytes(Bytes::copy_from_slice(payload)),
                ],
            )
            .await?;
        let fred::types::Value::Array(parts) = &answer else {
            return Err(CacheError::Corrupt("append answered no array".to_owned()));
        };
        match (parts.first().and_then(integer), parts.get(1)) {
            (Some(1), Some(id)) => Ok(super::Appended::Queued(bulk_string(id).unwrap_or_default())),
            (Some(0), Some(depth)) => Ok(super::Appended::Full {
                depth: integer(depth)
                    .and_then(|depth| u64::try_from(depth).ok())
                    .unwrap_or(max_depth),
            }),
            _ => Err(CacheError::Corrupt("append answered an unexpected shape".to_owned())),
        }
    }

    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<super::StreamEntry>, CacheError> {
        let key = self.shared.key(stream);
        let answer: fred::types::Value = self
            .with_group(stream, group, || {
                self.shared.stream_reader.custom(
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
                        key.clone(),
                        ">".to_owned(),
                    ],
                )
            })
            .await?;
        // [[stream, [entries…]]] or nil when the wait ran out.
        let fred::types::Value::Array(streams) = &answer else {
            return Ok(Vec::new());
        };
        Ok(streams
            .iter()
            .filter_map(|stream_answer| match stream_answer {
                fred::types::Value::Array(parts) => parts.get(1).map(|entries| parse_entries(entries, |_| 1)),
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
        let key = self.shared.key(stream);
        let idle = milliseconds(min_idle).to_string();
        // [[id, consumer, idle ms, deliveries], …]
        let pending: fred::types::Value = self
            .with_group(stream, group, || {
                self.shared.pool.custom(
                    fred::cmd!("XPENDING"),
                    vec![
                        key.clone(),
                        group.to_owned(),
                        "IDLE".to_owned(),
                        idle.clone(),
                        "-".to_owned(),
                        "+".to_owned(),
                        count.to_string(),
                    ],
                )
            })
            .await?;
        let fred::types::Value::Array(pending) = &pending else {
            return Ok(Vec::new());
        };
        let mut deliveries = HashMap::new();
        for item in pending {
            let fred::types::Value::Array(parts) = item else {
                continue;
            };
            if let (Some(id), Some(count)) = (parts.first().and_then(bulk_string), parts.get(3).and_then(integer)) {
                deliveries.insert(id, u64::try_from(count).unwrap_or(0));
            }
        }
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let mut arguments = vec![key.clone(), group.to_owned(), consumer.to_owned(), idle.clone()];
        let mut ids: Vec<&String> = deliveries.keys().collect();
        ids.sort();
        arguments.extend(ids.into_iter().cloned());
        // XCLAIM re-checks the idle time, so of two claimers only one wins.
        let claimed: fred::types::Value = self.shared.pool.custom(fred::cmd!("XCLAIM"), arguments).await?;
        let mut entries = parse_entries(&claimed, |id| deliveries.get(id).copied().unwrap_or(0) + 1);
        entries.sort_by_key(|entry| {
            let (millis, sequence) = entry.id.split_once('-').unwrap_or((&entry.id, "0"));
            (millis.parse::<u64>().unwrap_or(0), sequence.parse::<u64>().unwrap_or(0))
        });
        Ok(entries)
    }

    async fn acknowledge(&self, stream: &str, group: &str, ids: &[String]) -> Result<(), CacheError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut arguments = vec![self.shared.key(stream), group.to_owned()];
        arguments.extend(ids.iter().cloned());
        match self
            .shared
            .pool
            .custom::<fred::types::Value, _>(fred::cmd!("XACK"), arguments)
            .await
        {
            // The group is gone with the entries: nothing is left to acknowledge.
            Err(error) if is_missing_group(&error) => Ok(()),
            Err(error) => Err(error.into()),
            Ok(_) => Ok(()),
        }
    }

    async fn dead_letter(
        &self,
        stream: &str,
        group: &str,
        entry: &super::StreamEntry,
        reason: &str,
    ) -> Result<(), CacheError> {
        let _: fred::types::Value = self
            .shared
            .pool
            .custom(
                fred::cmd!("XADD"),
                vec![
                    fred::types::Value::from(self.shared.key(&super::dead_letter_stream(stream))),
                    fred::types::Value::from("*"),
                    fred::types::Value::from(PAYLOAD_FIELD),
                    fred::types::Value::Bytes(Bytes::copy_from_slice(&entry.payload)),
                    fred::types::Value::from("reason"),
                    fred::types::Value::from(reason),
                    fred::types::Value::from("entry"),
                    fred::types::Value::from(entry.id.as_str()),
                ],
            )
            .await?;
        self.acknowledge(stream, group, std::slice::from_ref(&entry.id)).await
    }

    async fn maintain(&self, stream: &str) -> Result<super::StreamStats, CacheError> {
        let answer: fred::types::Value = self
            .shared
            .pool
            .next()
            .eval(
                MAINTAIN_SCRIPT,
                vec![self.shared.key(stream)],
                Vec::<fred::types::Value>::new(),
            )
            .await?;
        let fred::types::Value::Array(parts) = &answer else {
            return Err(CacheError::Corrupt("maintain answered no array".to_owned()));
        };
        let depth = parts.first().and_then(integer).unwrap_or(0);
        let now = parts.get(2).and_then(integer).unwrap_or(0);
        let lag = parts
            .get(1)
            .and_then(bulk_string)
            .as_deref()
            .and_then(id_millis)
            .map(|oldest| Duration::from_millis(u64::try_from(now - oldest).unwrap_or(0)))
            .unwrap_or_default();
        let dead_letters: i64 = self
            .shared
            .pool
            .custom(
                fred::cmd!("XLEN"),
                vec![self.shared.key(&super::dead_letter_stream(stream))],
            )
            .await?;
        Ok(super::StreamStats {
            depth: u64::try_from(depth).unwrap_or(0),
            lag,
            dead_letters: u64::try_from(dead_letters).unwrap_or(0),
        })
    }

    async fn dead_letters(&self, stream: &str, count: usize) -> Result<Vec<super::DeadLetter>, CacheError> {
        let answer: fred::types::Value = self
            .shared
            .pool
            .custom(
                fred::cmd!("XREVRANGE"),
                vec![
                    self.shared.key(&super::dead_letter_stream(stream)),
                    "+".to_owned(),
                    "-".to_owned(),
                    "COUNT".to_owned(),
                    count.to_string(),
                ],
            )
            .await?;
        Ok(entry_fields(&answer)
            .into_iter()
            .map(|(id, fields)| super::DeadLetter {
                id,
                entry_id: field(fields, "entry").and_then(bulk_string).unwrap_or_default(),
                reason: field(fields, "reason").and_then(bulk_string).unwrap_or_default(),
                payload: field(fields, PAYLOAD_FIELD).and_then(bulk_bytes).unwrap_or_default(),
            })
            .collect())
    }
}
