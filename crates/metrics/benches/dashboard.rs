//! Dashboard latency at ten million events: GetDashboard's computation from
//! the rollups, against answering the same questions by scanning the raw
//! events, measured in the same run on the same PostgreSQL database.
//!
//! One organisation gets `EVENTS` events (10,000,000 by default) spread over
//! the last seven days: two apps, eight types, 20,000 users. They are written
//! by PostgreSQL itself (`generate_series`), and the rollups are built from
//! them with the same bucketing ingestion uses, so the database holds exactly
//! what the service would hold after ingesting them. Then, for the DAY and
//! WEEK presets, `dashboard::compute` runs `RUNS` times (50) and the raw
//! scan (series, top types, distinct users in range, DAU, WAU, MAU with
//! `COUNT(DISTINCT)` over `events`) runs `RAW_RUNS` times (5).
//!
//! ```text
//! cargo bench -p metrix-metrics --bench dashboard       # EVENTS=10000000 by default
//! ```

use std::time::{Duration, Instant};

use metrix_metrics::dashboard::{DashboardWindow, compute, resolve_window};
use metrix_metrics::store::MetricsStore;
use metrix_metrics::store::events::bucket_start;
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
    let runs = setting("RUNS", 50);
    let raw_runs = setting("RAW_RUNS", 5);
    let url = metrix_core::testing::fresh_postgres_database().await;
    let database = metrix_metrics::connect_and_migrate(&secrecy::SecretString::from(url))
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
    for width in [3_600_i64, 86_400] {
        sqlx::query(
            "INSERT INTO user_activity (organization_id, width_seconds, bucket_start, app_id, user_id) \
             SELECT DISTINCT organization_id, $1, occurred_at - (((occurred_at % $2) + $2) % $2), app_id, user_id \
             FROM events WHERE user_id <> ''",
        )
        .bind(width as i32)
        .bind(width * 1_000_000)
        .execute(&pool)
        .await
        .expect("activity rollup");
    }
    sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
    println!(
        "loaded {events} events over 7 days with their rollups in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let store = MetricsStore::new(database);
    for preset in [RangePreset::Day, RangePreset::Week] {
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
        let mut raw_total = 0;
        for _ in 0..raw_runs {
            let call = Instant::now();
            raw_total = raw_dashboard(&pool, organization, window).await;
            raw.push(call.elapsed());
        }
        raw.sort();
        assert_eq!(raw_total, warm.total_events, "both ways count the same events");
        let p50 = percentile(&timings, 50.0);
        let p99 = percentile(&timings, 99.0);
        let raw_p50 = percentile(&raw, 50.0);
        println!(
            "{preset:?}: {} events in range; rollups p50 {:.2} ms p99 {:.2} ms (target p99 <= {} ms: {}); \
             raw scan p50 {:.0} ms; raw / rollups at p50: {:.0}x",
            warm.total_events,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            TARGET_P99.as_millis(),
            if p99 <= TARGET_P99 { "met" } else { "NOT met" },
            raw_p50.as_secs_f64() * 1e3,
            raw_p50.as_secs_f64() / p50.as_secs_f64()
        );
    }
}

/// The same dashboard questions answered from raw events; returns the total.
async fn raw_dashboard(pool: &sqlx::PgPool, organization: &str, window: DashboardWindow) -> i64 {
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
    for (start, end) in [
        (window.start, window.end),
        (hour_end - 24 * hour, hour_end),
        (day_end - 7 * day, day_end),
        (day_end - 30 * day, day_end),
    ] {
        let _: i64 = sqlx::query_scalar(
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
    series.iter().map(|(_, count)| count).sum()
}
