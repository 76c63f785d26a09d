//! Dashboard latency at ten million events: GetDashboard's computation from
//! the rollups, against answering the same questions by scanning the raw
//! events, measured in the same run on the same PostgreSQL database.
//!
//! One organisation gets `EVENTS` events (10,000,000 by default) spread over
//! the last seven days: two apps, eight types, 20,000 users. They are written
//! by PostgreSQL itself (`generate_series`), and the rollups are built from
//! them with the same bucketing ingestion uses, so the database holds exactly
//! what the service would hold after ingesting them. Then, for the HOUR, DAY
//! and WEEK presets, `dashboard::compute` runs `RUNS` times (200) and the raw
//! scan (series, top types, distinct users in range, DAU, WAU, MAU with
//! `COUNT(DISTINCT)` over `events`) runs `RAW_RUNS` times (5). The active
//! users the sketches give are printed beside the exact counts.
//!
//! ```text
//! cargo bench -p metrix-metrics --bench dashboard       # EVENTS=10000000 by default
//! ```

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark stops at its first failure"
)]

use std::time::{Duration, Instant};

use metrix_metrics::dashboard::{DashboardWindow, compute, resolve_window};
use metrix_metrics::sketch::{UserSketch, user_hash};
use metrix_metrics::store::MetricsStore;
use metrix_metrics::store::events::{ROLLUP_WIDTHS, bucket_start};
use metrix_proto::metrics::v1::RangePreset;

/// The p99 the dashboard should stay under.
const TARGET_P99: Duration = Duration::from_millis(50);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], percent: f64) -> Duration {
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let events = setting("EVENTS", 10_000_000);
    let runs = setting("RUNS", 200);
    let raw_runs = setting("RAW_RUNS", 5);
    // Ten million events take gigabytes: the guard drops the database at the end.
    let test_database = metrix_core::testing::TestDatabase::postgres().await;
    let database = metrix_metrics::connect_and_migrate(&secrecy::SecretString::from(test_database.url()))
        .await
        .expect("migrated");
    let metrix_core::storage::Database::Postgres(pool) = database.clone() else {
        unreachable!("the benchmark database is PostgreSQL");
    };
    let organization = "bench-org";
    let now = metrix_core::time::now_micros();
    let week = 7 * 86_400_000_000_i64;

    let started = Instant::now();
    // Secondary indexes are built after the load, as a bulk load would.
    for index in ["events_by_time", "events_by_user", "events_by_type"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX {index}")))
            .execute(&pool)
            .await
            .expect("drop index");
    }
    sqlx::query(
        "INSERT INTO events (organization_id, event_id, app_id, user_id, event_type, event_name, properties, \
         session_id, client_timestamp, sent_at, received_at, occurred_at, user_agent, ip) \
         SELECT $1, 'e-' || n, CASE WHEN n % 3 = 0 THEN 'ios' ELSE 'web' END, 'user-' || (n * 7919 % 20000), \
         (ARRAY['page_view','click','signup','search','checkout','invite','export','login'])[1 + (n * 31 % 8)], \
         '', '{}', 'session-' || (n % 100000), NULL, NULL, $2 - (n * 104729 % $3), $2 - (n * 104729 % $3), \
         'bench/1', '127.0.0.1' FROM generate_series(1, $4::bigint) AS n",
    )
    .bind(organization)
    .bind(now)
    .bind(week)
    .bind(events as i64)
    .execute(&pool)
    .await
    .expect("events written");
    for statement in [
        "CREATE INDEX events_by_time ON events (organization_id, occurred_at DESC, event_id DESC)",
        "CREATE INDEX events_by_user ON events (organization_id, user_id, occurred_at DESC)",
        "CREATE INDEX events_by_type ON events (organization_id, event_type, occurred_at DESC)",
    ] {
        sqlx::query(statement).execute(&pool).await.expect("index");
    }
    for width in [60_i64, 3_600, 86_400] {
        sqlx::query(
            "INSERT INTO event_counts (organization_id, width_seconds, bucket_start, app_id, event_type, event_count) \
             SELECT organization_id, $1, occurred_at - (((occurred_at % $2) + $2) % $2), app_id, event_type, COUNT(*) \
             FROM events GROUP BY 1, 2, 3, 4, 5",
        )
        .bind(width as i32)
        .bind(width * 1_000_000)
        .execute(&pool)
        .await
        .expect("count rollup");
    }
    // The user sketches, built from each bucket's distinct users exactly as
    // ingestion builds them.
    for width in ROLLUP_WIDTHS {
        let buckets: Vec<(String, i64, Vec<String>)> = sqlx::query_as(
            "SELECT app_id, occurred_at - (((occurred_at % $1) + $1) % $1) AS bucket, \
             array_agg(DISTINCT user_id) FROM events WHERE user_id <> '' GROUP BY 1, 2",
        )
        .bind(width * 1_000_000)
        .fetch_all(&pool)
        .await
        .expect("distinct users per bucket");
        for chunk in buckets.chunks(1_000) {
            sqlx::query(
                "INSERT INTO user_sketches (organization_id, width_seconds, bucket_start, app_id, sketch) \
                 SELECT $1, $2, * FROM UNNEST($3::int8[], $4::text[], $5::bytea[])",
            )
            .bind(organization)
            .bind(width as i32)
            .bind(chunk.iter().map(|(_, bucket, _)| *bucket).collect::<Vec<_>>())
            .bind(chunk.iter().map(|(app_id, ..)| app_id.clone()).collect::<Vec<_>>())
            .bind(
                chunk
                    .iter()
                    .map(|(.., users)| {
                        UserSketch::of_hashes(users.iter().map(|user| user_hash(user)).collect()).encode()
                    })
                    .collect::<Vec<_>>(),
            )
            .execute(&pool)
            .await
            .expect("user sketches");
        }
    }
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    println!(
        "loaded {events} events over 7 days with their rollups in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let store = MetricsStore::new(database);
    for preset in [RangePreset::Hour, RangePreset::Day, RangePreset::Week] {
        let window = resolve_window(preset as i32, None, now).expect("a preset window");
        // Warm the caches, then measure.
        let warm = compute(&store, organization, "", window, now).await.expect("dashboard");
        let mut timings = Vec::with_capacity(runs);
        for _ in 0..runs {
            let call = Instant::now();
            let dashboard = compute(&store, organization, "", window, now).await.expect("dashboard");
            timings.push(call.elapsed());
            assert_eq!(dashboard.total_events, warm.total_events);
        }
        timings.sort();
        let mut raw = Vec::with_capacity(raw_runs);
        let mut raw_answer = (0, [0; 4]);
        for _ in 0..raw_runs {
            let call = Instant::now();
            raw_answer = raw_dashboard(&pool, organization, window).await;
            raw.push(call.elapsed());
        }
        raw.sort();
        let (raw_total, exact_users) = raw_answer;
        assert_eq!(raw_total, warm.total_events, "both ways count the same events");
        let active = warm.active_users.expect("active users");
        let worst_error = [active.in_range, active.daily, active.weekly, active.monthly]
            .into_iter()
            .zip(exact_users)
            .map(|(estimate, exact)| (estimate - exact).abs() as f64 / exact.max(1) as f64)
            .fold(0.0, f64::max);
        let p50 = percentile(&timings, 50.0);
        let p99 = percentile(&timings, 99.0);
        let raw_p50 = percentile(&raw, 50.0);
        println!(
            "{preset:?}: {} events in range; rollups p50 {:.2} ms p99 {:.2} ms (target p99 <= {} ms: {}); \
             raw scan p50 {:.0} ms; raw / rollups at p50: {:.0}x; active users {:?} against exact {:?} \
             (largest relative error {:.3} %)",
            warm.total_events,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            TARGET_P99.as_millis(),
            if p99 <= TARGET_P99 { "met" } else { "NOT met" },
            raw_p50.as_secs_f64() * 1e3,
            raw_p50.as_secs_f64() / p50.as_secs_f64(),
            [active.in_range, active.daily, active.weekly, active.monthly],
            exact_users,
            worst_error * 100.0
        );
    }
    pool.close().await;
}

/// The same dashboard questions answered from raw events: the total, and the
/// exact distinct users in range, of the day, week and month.
async fn raw_dashboard(pool: &sqlx::PgPool, organization: &str, window: DashboardWindow) -> (i64, [i64; 4]) {
    let width = window.width_seconds * 1_000_000;
    let series: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT occurred_at - (((occurred_at % $4) + $4) % $4) AS bucket, COUNT(*) FROM events \
         WHERE organization_id = $1 AND occurred_at >= $2 AND occurred_at < $3 GROUP BY bucket ORDER BY bucket",
    )
    .bind(organization)
    .bind(window.start)
    .bind(window.end)
    .bind(width)
    .fetch_all(pool)
    .await
    .expect("series");
    let _types: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, COUNT(*) AS total FROM events WHERE organization_id = $1 AND occurred_at >= $2 \
         AND occurred_at < $3 GROUP BY event_type ORDER BY total DESC, event_type LIMIT 5",
    )
    .bind(organization)
    .bind(window.start)
    .bind(window.end)
    .fetch_all(pool)
    .await
    .expect("types");
    let hour = 3_600_000_000_i64;
    let day = 86_400_000_000_i64;
    let hour_end = bucket_start(window.end - 1, 3_600) + hour;
    let day_end = bucket_start(window.end - 1, 86_400) + day;
    let mut users = [0; 4];
    for (slot, (start, end)) in [
        (window.start, window.end),
        (hour_end - 24 * hour, hour_end),
        (day_end - 7 * day, day_end),
        (day_end - 30 * day, day_end),
    ]
    .into_iter()
    .enumerate()
    {
        users[slot] = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT user_id) FROM events WHERE organization_id = $1 AND occurred_at >= $2 \
             AND occurred_at < $3 AND user_id <> ''",
        )
        .bind(organization)
        .bind(start)
        .bind(end)
        .fetch_one(pool)
        .await
        .expect("distinct users");
    }
    (series.iter().map(|(_, count)| count).sum(), users)
}
