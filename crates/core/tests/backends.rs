//! One suite for the cache-like backends, run against the in-process
//! implementation and against Redis (each Redis test on its own key prefix).

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use futures::StreamExt as _;
use metrix_core::cache::{Backends, Quota, RateDecision};

async fn in_process() -> Backends {
    Backends::in_process()
}

async fn redis() -> Backends {
    metrix_core::testing::fresh_redis_backends().await
}

macro_rules! every_backend {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $( #[tokio::test] async fn $name() { super::$name(super::in_process().await).await } )*
        }
        mod redis {
            $( #[tokio::test] async fn $name() { super::$name(super::redis().await).await } )*
        }
    };
}

async fn values_expire(backends: Backends) {
    let cache = backends.cache;
    assert_eq!(cache.get("missing").await.unwrap(), None);
    cache
        .set("greeting", b"hello", Duration::from_millis(1000))
        .await
        .unwrap();
    assert_eq!(cache.get("greeting").await.unwrap().as_deref(), Some(&b"hello"[..]));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(cache.get("greeting").await.unwrap(), None, "expired");
}

async fn set_if_absent_keeps_the_first_value(backends: Backends) {
    let cache = backends.cache;
    assert!(
        cache
            .set_if_absent("lock", b"first", Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(
        !cache
            .set_if_absent("lock", b"second", Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert_eq!(cache.get("lock").await.unwrap().as_deref(), Some(&b"first"[..]));
}

async fn take_hands_a_value_out_once(backends: Backends) {
    let cache = backends.cache;
    cache.set("state", b"pkce", Duration::from_secs(10)).await.unwrap();
    let (first, second) = tokio::join!(cache.take("state"), cache.take("state"));
    let taken: Vec<_> = [first.unwrap(), second.unwrap()].into_iter().flatten().collect();
    assert_eq!(taken, vec![b"pkce".to_vec()], "exactly one racer gets it");
    cache.set("gone", b"x", Duration::from_secs(10)).await.unwrap();
    cache.delete("gone").await.unwrap();
    assert_eq!(cache.get("gone").await.unwrap(), None);
}

async fn counters_count_and_keep_their_first_expiry(backends: Backends) {
    let cache = backends.cache;
    for expected in 1..=3 {
        assert_eq!(
            cache.increment("failures", Duration::from_millis(1000)).await.unwrap(),
            expected
        );
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        cache.increment("failures", Duration::from_secs(10)).await.unwrap(),
        1,
        "the window restarted"
    );
}

async fn the_rate_limiter_allows_the_burst_then_limits(backends: Backends) {
    let limiter = backends.rate_limiter;
    let quota = Quota {
        burst: 3,
        period: Duration::from_secs(60),
    };
    for _ in 0..3 {
        assert_eq!(limiter.check("client:a", quota).await.unwrap(), RateDecision::Allowed);
    }
    match limiter.check("client:a", quota).await.unwrap() {
        RateDecision::Limited { retry_after } => {
            assert!(
                retry_after > Duration::from_secs(19) && retry_after <= Duration::from_secs(20),
                "{retry_after:?}"
            )
        }
        RateDecision::Allowed => panic!("the fourth request of a burst of three was allowed"),
    }
    assert_eq!(
        limiter.check("client:b", quota).await.unwrap(),
        RateDecision::Allowed,
        "keys are independent"
    );
}

async fn published_messages_reach_every_subscriber(backends: Backends) {
    let pubsub = backends.pubsub;
    let mut first = pubsub.subscribe("kpis").await.unwrap();
    let mut second = pubsub.subscribe("kpis").await.unwrap();
    let mut other = pubsub.subscribe("events").await.unwrap();
    // Redis confirms a subscription asynchronously; publish until seen.
    let received = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            pubsub.publish("kpis", b"slice:ndr").await.unwrap();
            if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(100), first.next()).await {
                return message;
            }
        }
    })
    .await
    .expect("a message arrives");
    assert_eq!(received, b"slice:ndr");
    let echoed = tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .expect("second subscriber")
        .expect("a message");
    assert_eq!(echoed, b"slice:ndr");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other.next())
            .await
            .is_err(),
        "other channels stay quiet"
    );
}

/// A work stream of every kind: Redis, and the relational one on SQLite and
/// PostgreSQL (each test on its own key prefix or database).
mod work_streams {
    use std::sync::Arc;
    use std::time::Duration;

    use metrix_core::cache::{Appended, WorkStream};
    use metrix_core::storage::work_stream::{SqlWorkStream, migrations};
    use metrix_core::testing::{Backend, TestDatabase};

    async fn redis() -> (Option<TestDatabase>, Arc<dyn WorkStream>) {
        let backends = metrix_core::testing::fresh_redis_backends().await;
        (None, backends.work_streams.expect("redis has work streams"))
    }

    async fn relational(backend: Backend) -> (Option<TestDatabase>, Arc<dyn WorkStream>) {
        let database = backend.database().await;
        let connected = metrix_core::storage::Database::connect(database.url())
            .await
            .expect("the test database opens");
        connected.migrate(migrations()).await.expect("migrated");
        (Some(database), Arc::new(SqlWorkStream::new(connected)))
    }

    macro_rules! every_work_stream {
        ($($name:ident),* $(,)?) => {
            mod redis {
                $( #[tokio::test] async fn $name() { let (_guard, streams) = super::redis().await; super::$name(streams).await } )*
            }
            mod sqlite {
                $( #[tokio::test] async fn $name() {
                    let (_guard, streams) = super::relational(metrix_core::testing::Backend::Embedded).await;
                    super::$name(streams).await
                } )*
            }
            mod postgres {
                $( #[tokio::test] async fn $name() {
                    let (_guard, streams) = super::relational(metrix_core::testing::Backend::Postgres).await;
                    super::$name(streams).await
                } )*
            }
        };
    }

    async fn append(streams: &Arc<dyn WorkStream>, payload: &[u8]) -> String {
        match streams.append("ingest", "writers", payload, 100).await.unwrap() {
            Appended::Queued(id) => id,
            Appended::Full { depth } => panic!("full at {depth}"),
        }
    }

    async fn entries_are_delivered_once_until_acknowledged(streams: Arc<dyn WorkStream>) {
        for payload in [b"one".as_slice(), b"two", b"three"] {
            append(&streams, payload).await;
        }
        let first = streams
            .read_new("ingest", "writers", "worker-a", 2, Duration::from_millis(100))
            .await
            .unwrap();
        let payloads: Vec<&[u8]> = first.iter().map(|entry| entry.payload.as_slice()).collect();
        assert_eq!(payloads, [b"one".as_slice(), b"two"]);
        assert!(first.iter().all(|entry| entry.deliveries == 1));
        let rest = streams
            .read_new("ingest", "writers", "worker-b", 10, Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(rest.len(), 1, "each entry goes to one consumer of the group");
        assert_eq!(rest[0].payload, b"three");
        assert!(
            streams
                .read_new("ingest", "writers", "worker-a", 10, Duration::from_millis(100))
                .await
                .unwrap()
                .is_empty(),
            "nothing new"
        );

        // worker-a "crashed" before acknowledging: its entries are taken over,
        // and their deliveries counted.
        streams
            .acknowledge("ingest", "writers", &[rest[0].id.clone()])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let claimed = streams
            .claim_stale("ingest", "writers", "worker-c", Duration::from_millis(20), 10)
            .await
            .unwrap();
        let claimed_ids: Vec<&str> = claimed.iter().map(|entry| entry.id.as_str()).collect();
        let first_ids: Vec<&str> = first.iter().map(|entry| entry.id.as_str()).collect();
        assert_eq!(claimed_ids, first_ids);
        assert!(claimed.iter().all(|entry| entry.deliveries == 2), "{claimed:?}");
        let ids: Vec<String> = claimed.iter().map(|entry| entry.id.clone()).collect();
        streams.acknowledge("ingest", "writers", &ids).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            streams
                .claim_stale("ingest", "writers", "worker-c", Duration::from_millis(20), 10)
                .await
                .unwrap()
                .is_empty(),
            "acknowledged entries are done"
        );

        // Acknowledged entries are trimmed: nothing is left waiting.
        let stats = streams.maintain("ingest").await.unwrap();
        assert_eq!(stats.depth, 0, "{stats:?}");

        // A waiting reader wakes for a new entry.
        let reader = {
            let streams = streams.clone();
            tokio::spawn(async move {
                streams
                    .read_new("ingest", "writers", "worker-a", 10, Duration::from_secs(5))
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        append(&streams, b"four").await;
        let woken = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the reader wakes")
            .expect("no panic");
        assert_eq!(woken[0].payload, b"four");
    }

    async fn a_full_stream_refuses_until_entries_are_done(streams: Arc<dyn WorkStream>) {
        for payload in [b"a".as_slice(), b"b"] {
            assert!(matches!(
                streams.append("bounded", "writers", payload, 2).await.unwrap(),
                Appended::Queued(_)
            ));
        }
        assert_eq!(
            streams.append("bounded", "writers", b"c", 2).await.unwrap(),
            Appended::Full { depth: 2 }
        );
        let taken = streams
            .read_new("bounded", "writers", "worker", 10, Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(taken.len(), 2, "the refused entry was not appended");
        let stats = streams.maintain("bounded").await.unwrap();
        assert_eq!(stats.depth, 2, "in flight still counts");
        let ids: Vec<String> = taken.iter().map(|entry| entry.id.clone()).collect();
        streams.acknowledge("bounded", "writers", &ids).await.unwrap();
        streams.maintain("bounded").await.unwrap();
        assert!(matches!(
            streams.append("bounded", "writers", b"c", 2).await.unwrap(),
            Appended::Queued(_)
        ));
    }

    async fn dead_letters_leave_the_stream(streams: Arc<dyn WorkStream>) {
        append(&streams, b"poison").await;
        append(&streams, b"fine").await;
        let taken = streams
            .read_new("ingest", "writers", "worker", 10, Duration::from_millis(100))
            .await
            .unwrap();
        streams
            .dead_letter("ingest", "writers", &taken[0], "cannot decode")
            .await
            .unwrap();
        streams
            .acknowledge("ingest", "writers", &[taken[1].id.clone()])
            .await
            .unwrap();
        let stats = streams.maintain("ingest").await.unwrap();
        assert_eq!((stats.depth, stats.dead_letters), (0, 1), "{stats:?}");
        let letters = streams.dead_letters("ingest", 10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].entry_id, taken[0].id);
        assert_eq!(letters[0].reason, "cannot decode");
        assert_eq!(letters[0].payload, b"poison");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            streams
                .claim_stale("ingest", "writers", "other", Duration::from_millis(10), 10)
                .await
                .unwrap()
                .is_empty(),
            "a dead letter is never delivered again"
        );
    }

    async fn the_lag_is_the_age_of_the_oldest_waiting_entry(streams: Arc<dyn WorkStream>) {
        assert_eq!(streams.maintain("ingest").await.unwrap().lag, Duration::ZERO);
        append(&streams, b"old").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = streams.maintain("ingest").await.unwrap();
        assert_eq!(stats.depth, 1);
        assert!(stats.lag >= Duration::from_millis(250), "{stats:?}");
    }

    every_work_stream!(
        entries_are_delivered_once_until_acknowledged,
        a_full_stream_refuses_until_entries_are_done,
        dead_letters_leave_the_stream,
        the_lag_is_the_age_of_the_oldest_waiting_entry,
    );
}

/// Redis restarted without its data: the stream and its group are
/// recreated on the next append and read, without a restart.
#[tokio::test]
async fn a_redis_that_lost_its_stream_gets_its_group_back() {
    use metrix_core::cache::Appended;
    let backends = metrix_core::testing::fresh_redis_backends().await;
    let streams = backends.work_streams.expect("redis has work streams");
    assert!(matches!(
        streams.append("lost", "writers", b"before", 10).await.unwrap(),
        Appended::Queued(_)
    ));
    let before = streams
        .read_new("lost", "writers", "worker", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    // What a restart without persistence does to this stream: it is gone,
    // group included, while this process believes the group exists.
    backends.cache.delete("lost").await.unwrap();
    assert!(
        streams
            .read_new("lost", "writers", "worker", 10, Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty(),
        "the group is recreated instead of failing with NOGROUP"
    );
    assert!(matches!(
        streams.append("lost", "writers", b"after", 10).await.unwrap(),
        Appended::Queued(_)
    ));
    let after = streams
        .read_new("lost", "writers", "worker", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].payload, b"after");
    // The other order: the stream vanishes and the first call is a read.
    streams
        .acknowledge("lost", "writers", &[after[0].id.clone()])
        .await
        .unwrap();
    backends.cache.delete("lost").await.unwrap();
    assert!(
        streams
            .claim_stale("lost", "writers", "worker", Duration::from_millis(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

every_backend!(
    values_expire,
    set_if_absent_keeps_the_first_value,
    take_hands_a_value_out_once,
    counters_count_and_keep_their_first_expiry,
    the_rate_limiter_allows_the_burst_then_limits,
    published_messages_reach_every_subscriber,
);
