//! Outages of a dependency under load: PostgreSQL stopped and started
//! again, Redis killed with and without its append-only file. Metrix is
//! never restarted: it must answer "retry later" while the dependency is
//! gone and recover by itself once it is back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::client::{EventStatus, Mode, Outcome};
use crate::harness::{Database, Metrix, MetrixOptions, Persistence, Postgres, Redis, Reply};
use crate::load::{Call, Ledger, Load, LoadPlan};
use crate::verify::{Findings, check_answers_kept, check_failures_are_503, sample};

/// How long PostgreSQL stays stopped: longer than the 5 s metrix waits for
/// a pooled connection, so calls give up during the outage and their
/// answer is seen.
const POSTGRES_STOPPED: Duration = Duration::from_secs(7);
/// How long PostgreSQL stays down after a crash: shorter than that wait, so
/// calls cut off mid-query are what is seen.
const POSTGRES_CRASHED: Duration = Duration::from_secs(2);
/// How long Redis stays down.
const REDIS_OUTAGE: Duration = Duration::from_secs(1);
/// How soon after a dependency is back calls must succeed again.
const RECOVERY: Duration = Duration::from_secs(5);
/// How long the load runs once that time is up, to see that they do.
const RECOVERED: Duration = Duration::from_secs(1);
/// How long acknowledged entries may stay in the stream once stored.
const TRIM_DEADLINE: Duration = Duration::from_secs(10);
/// The most entries the stream may keep once everything is stored.
const TRIMMED_LENGTH: i64 = 5;
/// Queued answers this close before a Redis crash may be lost with an
/// append-only file fsynced every second; older ones may not.
const FSYNC_WINDOW: Duration = Duration::from_millis(1_500);

/// How PostgreSQL goes away.
#[derive(Debug, Clone, Copy)]
enum PostgresFault {
    /// `pg_ctl stop -m fast`: sessions ended, a clean shutdown.
    Stopped,
    /// `pg_ctl stop -m immediate`: every server process killed mid-work,
    /// crash recovery on the next start.
    Crashed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_sync_load() {
    let postgres = Postgres::start().await;
    let redis = Redis::start(Persistence::AppendOnly).await;
    let metrix = Metrix::spawn(MetrixOptions::new(Database::Postgres(postgres.url())).redis(redis.url())).await;
    let ledger = Ledger::new();
    let load = Load::start(
        &metrix.api,
        &ledger,
        LoadPlan {
            senders: 3,
            batch_size: 20,
            mode: Mode::Synchronous,
            pause: Duration::from_millis(50),
        },
    );

    // Two outages, each followed by a recovery period.
    let mut outages: Vec<(PostgresFault, Instant, Instant, tonic::Code)> = Vec::new();
    for fault in [PostgresFault::Stopped, PostgresFault::Crashed] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let down_at = Instant::now();
        match fault {
            PostgresFault::Stopped => postgres.stop_fast().await,
            PostgresFault::Crashed => postgres.kill().await,
        }
        // One gRPC call straight to the metrics service in the middle of
        // the outage, beside the load, however long it takes.
        let api = metrix.api.clone();
        let probe = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            api.grpc_track_one(&format!("grpc-{fault:?}")).await
        });
        tokio::time::sleep(match fault {
            PostgresFault::Stopped => POSTGRES_STOPPED,
            PostgresFault::Crashed => POSTGRES_CRASHED,
        })
        .await;
        postgres.start_again().await;
        let back_at = Instant::now();
        outages.push((fault, down_at, back_at, probe.await.expect("the gRPC probe")));
        tokio::time::sleep(RECOVERY + RECOVERED).await;
    }
    load.stop().await;

    eprintln!("calls across the PostgreSQL outages: {}", ledger.summary());
    let mut findings = Findings::default();
    check_failures_are_503(&mut findings, &ledger, |_| true, "of the load");
    let calls = ledger.calls();
    for (fault, down_at, back_at, grpc_code) in outages {
        findings.expect(matches!(grpc_code, tonic::Code::Unavailable | tonic::Code::Ok), || {
            format!("a gRPC TrackEvents sent while PostgreSQL was {fault:?} answered {grpc_code:?}, not UNAVAILABLE")
        });
        findings.expect(
            calls
                .iter()
                .any(|call| call.sent_at >= down_at && call.sent_at < back_at),
            || format!("no call was sent while PostgreSQL was {fault:?}: the outage was not under load"),
        );
        check_recovery(&mut findings, &calls, back_at, &format!("PostgreSQL ({fault:?})"));
    }
    check_answers_kept(
        &mut findings,
        &metrix.event_store(),
        &metrix.account.organization_id,
        &ledger,
        |_| true,
    )
    .await;
    findings.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_with_aof_under_queued_load() {
    let postgres = Postgres::start().await;
    let mut redis = Redis::start(Persistence::AppendOnly).await;
    let metrix = Metrix::spawn(MetrixOptions::new(Database::Postgres(postgres.url())).redis(redis.url())).await;
    let ledger = Ledger::new();
    let load = Load::start(
        &metrix.api,
        &ledger,
        LoadPlan {
            senders: 3,
            batch_size: 20,
            mode: Mode::Queued,
            pause: Duration::from_millis(50),
        },
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    redis.kill();
    // From here until the new server is started no call can reach Redis.
    let dead_at = Instant::now();
    tokio::time::sleep(REDIS_OUTAGE).await;
    let restarting_at = Instant::now();
    redis.start_again().await;
    let restarted_at = Instant::now();
    tokio::time::sleep(RECOVERY + RECOVERED).await;
    load.stop().await;

    eprintln!("calls across the Redis crash: {}", ledger.summary());
    let mut findings = Findings::default();
    check_failures_are_503(&mut findings, &ledger, |_| true, "of the load");
    let calls = ledger.calls();
    let answered_during_outage: Vec<String> = calls
        .iter()
        .filter(|call| call.sent_at >= dead_at && call.answered_at < restarting_at)
        .filter(|call| matches!(call.outcome, Outcome::Answered(_)))
        .map(|call| call.event_ids.first().cloned().unwrap_or_default())
        .collect();
    findings.expect(answered_during_outage.is_empty(), || {
        format!(
            "{} batches were answered 200 while Redis was down (their events cannot be in the stream); e.g. {}",
            answered_during_outage.len(),
            sample(&answered_during_outage)
        )
    });
    check_recovery(&mut findings, &calls, restarted_at, "Redis");
    let lost_window = ledger.ids_answered(&EventStatus::Queued, |call| {
        call.answered_at >= killed_at - FSYNC_WINDOW && call.answered_at < killed_at
    });
    let store = metrix.event_store();
    let stored = check_answers_kept(
        &mut findings,
        &store,
        &metrix.account.organization_id,
        &ledger,
        |call| call.answered_at < killed_at - FSYNC_WINDOW || call.answered_at >= restarted_at,
    )
    .await;
    let lost: BTreeSet<&String> = lost_window.iter().filter(|id| !stored.contains_key(*id)).collect();
    if !lost.is_empty() {
        eprintln!(
            "{} of {} events queued in the last {FSYNC_WINDOW:?} before the crash were lost (allowed by appendfsync everysec)",
            lost.len(),
            lost_window.len()
        );
    }
    let stream = metrix.redis_key("metrics:ingest");
    findings.keep(stream_trimmed(&redis, &stream).await);
    findings.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_its_data_recovers_without_restart() {
    let postgres = Postgres::start().await;
    let mut redis = Redis::start(Persistence::Nothing).await;
    let metrix = Metrix::spawn(MetrixOptions::new(Database::Postgres(postgres.url())).redis(redis.url())).await;
    let store = metrix.event_store();
    let organization_id = metrix.account.organization_id.clone();
    let ledger = Ledger::new();
    let mut findings = Findings::default();

    // Queued and stored while Redis is healthy: the consumer group exists.
    for _ in 0..3 {
        ledger.send(&metrix.api, Mode::Queued, ledger.fresh_events(20)).await;
    }
    let before = ledger.ids_answered(&EventStatus::Queued, |_| true);
    findings.expect(before.len() == 60, || {
        format!(
            "before the crash, only {} of 60 events were queued ({})",
            before.len(),
            ledger.summary()
        )
    });
    findings.keep(
        store
            .wait_until_stored(&organization_id, &before, "QUEUED before the crash")
            .await,
    );

    // Redis comes back empty: no stream, no consumer group.
    redis.kill();
    redis.start_again().await;
    let restarted_at = Instant::now();
    while restarted_at.elapsed() < Duration::from_secs(3) {
        ledger.send(&metrix.api, Mode::Queued, ledger.fresh_events(20)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = ledger.ids_answered(&EventStatus::Queued, |call| call.sent_at >= restarted_at);
    findings.expect(!after.is_empty(), || {
        format!("no batch was queued after Redis came back ({})", ledger.summary())
    });
    findings.keep(
        store
            .wait_until_stored(&organization_id, &after, "QUEUED after Redis lost its data")
            .await,
    );
    eprintln!("calls around the loss of Redis's data: {}", ledger.summary());
    check_failures_are_503(&mut findings, &ledger, |_| true, "around the crash");
    findings.assert_none();
}

/// The calls sent between [`RECOVERY`] and [`RECOVERY`] + [`RECOVERED`]
/// after the dependency came back all succeeded, and there were some.
fn check_recovery(findings: &mut Findings, calls: &[Call], back_at: Instant, dependency: &str) {
    let window = back_at + RECOVERY..back_at + RECOVERY + RECOVERED;
    let recovered: Vec<&Call> = calls.iter().filter(|call| window.contains(&call.sent_at)).collect();
    let failed: Vec<String> = recovered
        .iter()
        .filter(|call| !matches!(call.outcome, Outcome::Answered(_)))
        .map(|call| call.outcome.describe())
        .collect();
    findings.expect(!recovered.is_empty(), || {
        format!("no call was sent {RECOVERY:?} after {dependency} was back")
    });
    findings.expect(failed.is_empty(), || {
        format!(
            "{} of {} calls sent {RECOVERY:?} after {dependency} was back failed (no recovery without a restart); e.g. {}",
            failed.len(),
            recovered.len(),
            sample(&failed)
        )
    });
}

/// The stream's acknowledged entries are trimmed: its length falls to at
/// most [`TRIMMED_LENGTH`] within [`TRIM_DEADLINE`].
async fn stream_trimmed(redis: &Redis, stream: &str) -> Result<(), String> {
    let deadline = Instant::now() + TRIM_DEADLINE;
    loop {
        let length = match redis.must(&[b"XLEN", stream.as_bytes()]).await {
            Reply::Integer(length) => length,
            other => return Err(format!("XLEN {stream} answered {other:?}")),
        };
        if length <= TRIMMED_LENGTH {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the stream {stream} still holds {length} entries {TRIM_DEADLINE:?} after everything was stored \
                 (acknowledged entries are not trimmed)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
