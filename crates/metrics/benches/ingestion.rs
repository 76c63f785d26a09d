//! Ingestion throughput: events per second through TrackEvents (batches of
//! 500, synchronous path, PostgreSQL) against a raw `COPY` of the same rows
//! into the same table, measured in the same run.
//!
//! The metrics service runs in process on 127.0.0.1 with a fresh PostgreSQL
//! database; the client sends batches one after another over gRPC with an
//! API key, so the figure includes validation, the clock-skew correction,
//! the insert with its de-duplication and the rollups of the dashboards. The
//! baseline streams the same rows (new ids, so nothing conflicts) with
//! `COPY events FROM STDIN` in batches of the same size, the fastest way
//! PostgreSQL takes rows and the floor no insert path can beat.
//!
//! The three ways run in alternating rounds (`ROUNDS`, 3 by default), each
//! with new ids, and each figure is the median of its rounds.
//!
//! ```text
//! cargo bench -p metrix-metrics --bench ingestion        # EVENTS=100000 ROUNDS=3 by default
//! ```

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark stops at its first failure"
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrix_core::authn::Scope;
use metrix_core::cache::Backends;
use metrix_core::config::Settings;
use metrix_core::server::Shutdown;
use metrix_core::testing::TestIssuer;
use metrix_metrics::{MetricsServer, MetricsSettings};
use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use metrix_proto::metrics::v1::{Event, TrackEventsRequest};

/// Events per batch, as the target is stated.
const BATCH: usize = 500;
/// The ratio the ingestion path should reach.
const TARGET_RATIO: f64 = 0.5;

fn events_total() -> usize {
    std::env::var("EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000)
}

/// A realistic event: one of 8 types from one of 5,000 users, a few properties.
fn event(index: usize, prefix: &str) -> Event {
    let types = [
        "page_view",
        "click",
        "signup",
        "search",
        "checkout",
        "invite",
        "export",
        "login",
    ];
    Event {
        event_id: format!("{prefix}-{index}"),
        app_id: if index.is_multiple_of(3) {
            "ios".into()
        } else {
            "web".into()
        },
        user_id: format!("user-{}", index % 5_000),
        event_type: types[index % types.len()].into(),
        event_name: "Benchmark event".into(),
        properties: metrix_metrics::events::json_to_struct(&serde_json::json!({
            "plan": if index.is_multiple_of(2) { "pro" } else { "free" },
            "seats": (index % 50) as f64,
        })),
        session_id: format!("session-{}", index % 20_000),
        ..Default::default()
    }
}

/// The same row as COPY text: tab-separated, `\N` for NULL.
fn copy_line(organization_id: &str, index: usize, now: i64) -> String {
    let event = event(index, "copy");
    let properties = metrix_metrics::events::struct_to_json(event.properties.as_ref().expect("properties")).to_string();
    format!(
        "{organization_id}\t{}\t{}\t{}\t{}\t{}\t{properties}\t{}\t\\N\t\\N\t{now}\t{now}\tbench/1\t127.0.0.1\n",
        event.event_id, event.app_id, event.user_id, event.event_type, event.event_name, event.session_id
    )
}

/// Streams `rows` (COPY text) into `events` with one COPY.
async fn copy_batch(connection: &mut sqlx::PgConnection, rows: String) {
    let mut copy = connection
        .copy_in_raw(
            "COPY events (organization_id, event_id, app_id, user_id, event_type, event_name, properties, \
             session_id, client_timestamp, sent_at, received_at, occurred_at, user_agent, ip) FROM STDIN",
        )
        .await
        .expect("COPY starts");
    copy.send(rows.into_bytes()).await.expect("rows sent");
    copy.finish().await.expect("COPY completes");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let total = events_total();
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3_usize)
        .max(1);
    let test_database = metrix_core::testing::TestDatabase::postgres().await;
    let database_url = test_database.url().to_owned();
    let environment: HashMap<String, String> = HashMap::from([
        ("METRIX_METRICS__LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("METRIX_METRICS__DATABASE_URL".into(), database_url.clone()),
        (
            "METRIX_METRICS__PEER_KEY_SECRET".into(),
            "bench-peer-key-secret-of-32-characters".into(),
        ),
        ("METRIX_LOG".into(), "warn".into()),
    ]);
    let settings = MetricsSettings::load(&Settings::new(&environment)).expect("valid settings");
    let issuer = TestIssuer::new();
    let shutdown = Shutdown::new();
    let server = MetricsServer::build_with_authenticator(
        settings,
        Backends::in_process(),
        issuer.authenticator(),
        shutdown.clone(),
    )
    .await
    .expect("the service starts");
    let address = server.local_addr();
    tokio::spawn(server.run_until_stopped());
    let mut client = MetricsServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connects");
    let organization_id = uuid::Uuid::now_v7().to_string();
    let key = issuer.api_key(&organization_id, &[Scope::EventsWrite]);

    // Warm-up: one batch each way, not measured.
    let send = |client: &mut MetricsServiceClient<tonic::transport::Channel>, events: Vec<Event>| {
        let mut request = tonic::Request::new(TrackEventsRequest {
            events,
            asynchronous: false,
        });
        request
            .metadata_mut()
            .insert("x-api-key", key.parse().expect("header-safe"));
        let mut client = client.clone();
        async move {
            let answer = client
                .track_events(request)
                .await
                .expect("the batch is stored")
                .into_inner();
            assert_eq!(answer.rejected_count, 0, "every benchmark event is valid");
        }
    };
    send(&mut client, (0..BATCH).map(|index| event(index, "warm")).collect()).await;

    // The storage step alone (what TrackEvents does after parsing), to show
    // where the time goes.
    let store_only = metrix_metrics::store::MetricsStore::new(
        metrix_metrics::connect_and_migrate(&secrecy::SecretString::from(database_url.clone()))
            .await
            .expect("connects"),
    );
    let store_organization = uuid::Uuid::now_v7().to_string();
    // A connection of the same pool as the service's (TCP_NODELAY included),
    // so the baseline pays no network delay the service does not.
    let copy_database = metrix_core::storage::Database::connect(&database_url)
        .await
        .expect("connects");
    let metrix_core::storage::Database::Postgres(copy_pool) = &copy_database else {
        unreachable!("the benchmark database is PostgreSQL");
    };
    let mut connection = copy_pool.acquire().await.expect("a connection");
    let copy_organization = uuid::Uuid::now_v7().to_string();
    let now = metrix_core::time::now_micros();
    copy_batch(
        &mut connection,
        (0..BATCH)
            .map(|index| copy_line(&copy_organization, index, now))
            .collect(),
    )
    .await;

    // The three ways alternate, each round with new ids, so a drift of the
    // machine's speed reaches all three alike; each is the median of ROUNDS.
    let mut through_rpc = Vec::new();
    let mut through_store = Vec::new();
    let mut through_copy = Vec::new();
    for round in 0..rounds {
        let offset = BATCH + round * total;
        let started = Instant::now();
        for first in (offset..offset + total).step_by(BATCH) {
            let events = (first..(first + BATCH).min(offset + total))
                .map(|index| event(index, "rpc"))
                .collect();
            send(&mut client, events).await;
        }
        through_rpc.push(started.elapsed());

        let arrival = metrix_metrics::events::Arrival {
            received_at: metrix_core::time::now_micros(),
            user_agent: "bench/1".into(),
            ip: "127.0.0.1".into(),
            oldest_retained: 0,
        };
        let started = Instant::now();
        for first in (offset..offset + total).step_by(BATCH) {
            let events: Vec<_> = (first..(first + BATCH).min(offset + total))
                .map(|index| metrix_metrics::events::parse_event(&event(index, "store"), &arrival).expect("valid"))
                .collect();
            store_only
                .insert_events(&store_organization, &events)
                .await
                .expect("stored");
        }
        through_store.push(started.elapsed());

        let started = Instant::now();
        for first in (offset..offset + total).step_by(BATCH) {
            let rows: String = (first..(first + BATCH).min(offset + total))
                .map(|index| copy_line(&copy_organization, index, now))
                .collect();
            copy_batch(&mut connection, rows).await;
        }
        through_copy.push(started.elapsed());
    }
    let median = |timings: &mut Vec<Duration>| {
        timings.sort();
        timings[timings.len() / 2]
    };
    let (through_rpc, through_store, through_copy) = (
        median(&mut through_rpc),
        median(&mut through_store),
        median(&mut through_copy),
    );
    shutdown.trigger();
    drop(connection);
    copy_pool.close().await;

    let rate = |elapsed: Duration| total as f64 / elapsed.as_secs_f64();
    let ratio = rate(through_rpc) / rate(through_copy);
    println!(
        "ingestion of {total} events in batches of {BATCH} into PostgreSQL, one client, one batch at a time; \
         median of {rounds} alternating rounds"
    );
    println!(
        "  TrackEvents (sync, rollups)  {:>10.0} events/s  ({:.2} s)",
        rate(through_rpc),
        through_rpc.as_secs_f64()
    );
    println!(
        "  (storage step alone          {:>10.0} events/s  ({:.2} s))",
        rate(through_store),
        through_store.as_secs_f64()
    );
    println!(
        "  baseline: raw COPY           {:>10.0} events/s  ({:.2} s)",
        rate(through_copy),
        through_copy.as_secs_f64()
    );
    println!(
        "  ratio TrackEvents / COPY: {ratio:.2} (target >= {TARGET_RATIO:.2}: {})",
        if ratio >= TARGET_RATIO { "met" } else { "NOT met" }
    );
}
