//! One suite for the cache-like backends, run against the in-process
//! implementation and against Redis (each Redis test on its own key prefix).

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

async fn work_streams_deliver_once_per_group_until_acknowledged(backends: Backends) {
    let streams = backends.work_streams;
    for payload in [b"one".as_slice(), b"two", b"three"] {
        streams.append("ingest", payload).await.unwrap();
    }
    let first = streams
        .read_new("ingest", "writers", "worker-a", 2, Duration::from_millis(100))
        .await
        .unwrap();
    let payloads: Vec<&[u8]> = first.iter().map(|entry| entry.payload.as_slice()).collect();
    assert_eq!(payloads, [b"one".as_slice(), b"two"]);
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
    // Another group sees every entry.
    let auditors = streams
        .read_new("ingest", "auditors", "auditor", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(auditors.len(), 3);

    // worker-a "crashed" before acknowledging: its entries are taken over.
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
    streams.append("ingest", b"four").await.unwrap();
    let woken = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the reader wakes")
        .expect("no panic");
    assert_eq!(woken[0].payload, b"four");
}

every_backend!(
    work_streams_deliver_once_per_group_until_acknowledged,
    values_expire,
    set_if_absent_keeps_the_first_value,
    take_hands_a_value_out_once,
    counters_count_and_keep_their_first_expiry,
    the_rate_limiter_allows_the_burst_then_limits,
    published_messages_reach_every_subscriber,
);
