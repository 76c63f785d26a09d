//! The metrix process itself stops under queued load: killed while its
//! writer stores batches (PostgreSQL and Redis), and stopped with SIGTERM or
//! SIGKILL in the embedded mode, where the queue lives in the metrics
//! database. Started again on the same data, it must store every event it
//! answered QUEUED.

use std::time::{Duration, Instant};

use crate::client::{EventStatus, Mode};
use crate::harness::{Database, Metrix, MetrixOptions, Persistence, Postgres, Redis};
use crate::load::{Ledger, Load, LoadPlan};
use crate::verify::{EventStore, Findings, check_answers_kept};

/// The load on SQLite: somewhat more events a second than a writer stores
/// there, so a backlog builds up, slowly.
const EMBEDDED_LOAD: LoadPlan = LoadPlan {
    senders: 3,
    batch_size: 50,
    mode: Mode::Queued,
    pause: Duration::from_millis(5),
};
/// The load on PostgreSQL, whose writer is several times faster.
const POSTGRES_LOAD: LoadPlan = LoadPlan {
    senders: 3,
    batch_size: 100,
    mode: Mode::Queued,
    pause: Duration::ZERO,
};
/// The process is stopped once the load has run this long…
const LOAD_BEFORE_STOP: Duration = Duration::from_millis(500);
/// …and at least this many queued events wait to be stored, so the stop
/// finds work in flight whatever the machine's speed…
const BACKLOG_AT_STOP: usize = 2_000;
/// …or once the load has run this long, when the writers keep up.
const LONGEST_LOAD: Duration = Duration::from_secs(3);
/// Batches queued after the restart, to show the new process takes them.
const BATCHES_AFTER_RESTART: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_mid_batch() {
    let postgres = Postgres::start().await;
    let redis = Redis::start(Persistence::AppendOnly).await;
    let mut metrix = Metrix::spawn(MetrixOptions::new(Database::Postgres(postgres.url())).redis(redis.url())).await;
    let findings = queued_load_across_a_stop(&mut metrix, Stop::Kill, POSTGRES_LOAD).await;
    findings.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_queued_load_embedded() {
    let mut metrix = Metrix::spawn(MetrixOptions::new(Database::Embedded)).await;
    let findings = queued_load_across_a_stop(&mut metrix, Stop::Terminate, EMBEDDED_LOAD).await;
    findings.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_under_queued_load_embedded() {
    let mut metrix = Metrix::spawn(MetrixOptions::new(Database::Embedded)).await;
    let findings = queued_load_across_a_stop(&mut metrix, Stop::Kill, EMBEDDED_LOAD).await;
    findings.assert_none();
}

/// How many events answered QUEUED are not stored yet (the organisation
/// has no other events).
async fn backlog(ledger: &Ledger, store: &EventStore, organization_id: &str) -> usize {
    let queued = ledger.ids_answered(&EventStatus::Queued, |_| true).len();
    let stored = store.count(organization_id).await.unwrap_or(queued);
    queued.saturating_sub(stored)
}

/// How the process is stopped.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGTERM: a drain, and an exit 0 within the grace period.
    Terminate,
    /// SIGKILL.
    Kill,
}

/// Queued load, the process stopped in the middle of it and started again
/// on the same data, more batches; then every QUEUED event must be stored.
async fn queued_load_across_a_stop(metrix: &mut Metrix, stop: Stop, plan: LoadPlan) -> Findings {
    let ledger = Ledger::new();
    let store = metrix.event_store();
    let organization_id = metrix.account.organization_id.clone();
    let load = Load::start(&metrix.api, &ledger, plan);
    let started = Instant::now();
    tokio::time::sleep(LOAD_BEFORE_STOP).await;
    while started.elapsed() < LONGEST_LOAD && backlog(&ledger, &store, &organization_id).await < BACKLOG_AT_STOP {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut findings = Findings::default();
    match stop {
        Stop::Terminate => {
            findings.keep(metrix.terminate().await);
        }
        Stop::Kill => metrix.kill(),
    }
    load.stop().await;

    // How much the stop left to do, so a pass is known to have tested something.
    eprintln!(
        "{stop:?}: {} queued events were not stored yet when metrix stopped (calls: {})",
        backlog(&ledger, &store, &organization_id).await,
        ledger.summary()
    );

    metrix.respawn().await;
    for _ in 0..BATCHES_AFTER_RESTART {
        ledger
            .send(&metrix.api, Mode::Queued, ledger.fresh_events(plan.batch_size))
            .await;
    }
    check_answers_kept(&mut findings, &store, &organization_id, &ledger, |_| true).await;
    findings
}
