//! The queue's own limits: a full queue refuses work instead of growing
//! without bound, and an entry that can never be stored is set aside as a
//! dead letter, visible to operators, instead of being dropped or blocking
//! the entries behind it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::client::{EventStatus, Mode, Outcome, metric_value};
use crate::harness::{Database, Metrix, MetrixOptions, Persistence, Postgres, Redis, Reply};
use crate::load::Ledger;
use crate::verify::{Findings, check_answers_kept, none_stored, sample};

/// The queue depth of `queue_full_is_refused`.
const MAX_DEPTH: usize = 5;
/// How long a gauge or the dead-letter stream may take to show a change.
const OBSERVE_DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_is_refused() {
    let postgres = Postgres::start().await;
    let redis = Redis::start(Persistence::AppendOnly).await;
    let mut metrix = Metrix::spawn(
        MetrixOptions::new(Database::Postgres(postgres.url()))
            .redis(redis.url())
            .setting("METRIX_METRICS__QUEUE_WRITERS", "0")
            .setting("METRIX_METRICS__QUEUE_MAX_DEPTH", &MAX_DEPTH.to_string()),
    )
    .await;
    let ledger = Ledger::new();
    let mut findings = Findings::default();

    // No writer takes anything: the queue fills up to its depth…
    for index in 0..MAX_DEPTH {
        let outcome = ledger.send(&metrix.api, Mode::Queued, ledger.fresh_events(10)).await;
        let all_queued = matches!(&outcome, Outcome::Answered(results)
            if results.iter().all(|result| result.status == EventStatus::Queued));
        findings.expect(all_queued, || {
            format!(
                "batch {} of {MAX_DEPTH} should be QUEUED: {}",
                index + 1,
                outcome.describe()
            )
        });
    }
    // …and refuses the next batches whole, asking to retry later.
    for index in 0..3 {
        let outcome = ledger.send(&metrix.api, Mode::Queued, ledger.fresh_events(10)).await;
        let refused = matches!(&outcome, Outcome::Refused { http_status: 429, retry_after: Some(_), body }
            if body["status"] == "RESOURCE_EXHAUSTED");
        findings.expect(refused, || {
            format!(
                "batch {} beyond the depth of {MAX_DEPTH} should be 429 RESOURCE_EXHAUSTED with Retry-After: {}",
                MAX_DEPTH + index + 1,
                outcome.describe()
            )
        });
    }
    let depth = wait_for_metric(&metrix, "metrix_ingest_queue_depth", |value| value == MAX_DEPTH as f64).await;
    findings.expect(depth == Some(MAX_DEPTH as f64), || {
        format!("the gauge metrix_ingest_queue_depth should say {MAX_DEPTH}, it says {depth:?}")
    });
    let stream = metrix.redis_key("metrics:ingest");
    let length = redis.must(&[b"XLEN", stream.as_bytes()]).await;
    findings.expect(length == Reply::Integer(MAX_DEPTH as i64), || {
        format!("the stream {stream} should hold {MAX_DEPTH} entries, XLEN says {length:?}")
    });

    // A writer started now stores the queued batches and nothing of the refused ones.
    findings.keep(metrix.terminate().await);
    metrix.respawn_with(&[("METRIX_METRICS__QUEUE_WRITERS", "1")]).await;
    let store = metrix.event_store();
    let organization_id = metrix.account.organization_id.clone();
    check_answers_kept(&mut findings, &store, &organization_id, &ledger, |_| true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let refused: BTreeSet<String> = ledger
        .calls()
        .iter()
        .filter(|call| matches!(call.outcome, Outcome::Refused { .. }))
        .flat_map(|call| call.event_ids.clone())
        .collect();
    if let Some(stored) = findings.keep(store.stored(&organization_id).await) {
        findings.keep(none_stored(&stored, &refused, "429 (refused whole)"));
    }
    findings.assert_none();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entry_goes_to_dead_letters() {
    let postgres = Postgres::start().await;
    let redis = Redis::start(Persistence::AppendOnly).await;
    let metrix = Metrix::spawn(MetrixOptions::new(Database::Postgres(postgres.url())).redis(redis.url())).await;
    let store = metrix.event_store();
    let organization_id = metrix.account.organization_id.clone();
    let ledger = Ledger::new();
    let mut findings = Findings::default();

    // A first batch, stored: the writers' consumer group exists.
    ledger.send(&metrix.api, Mode::Queued, ledger.fresh_events(5)).await;
    let first = ledger.ids_answered(&EventStatus::Queued, |_| true);
    findings.keep(store.wait_until_stored(&organization_id, &first, "QUEUED").await);

    // An entry no writer can decode: random bytes behind a first byte that
    // names wire type 7, which protobuf does not have, so decoding fails
    // whatever follows. Then valid batches behind it.
    let stream = metrix.redis_key("metrics:ingest");
    let mut payload = vec![0x0f_u8];
    payload.extend_from_slice(&rand::random::<[u8; 64]>());
    let poison_id = redis
        .must(&[b"XADD", stream.as_bytes(), b"*", b"p", &payload])
        .await
        .text()
        .expect("XADD answers the entry's id");
    for _ in 0..3 {
        ledger.send(&metrix.api, Mode::Queued, ledger.fresh_events(20)).await;
    }
    check_answers_kept(&mut findings, &store, &organization_id, &ledger, |_| true).await;

    // The poison entry is in the dead-letter stream, payload intact.
    let dead_stream = metrix.redis_key("metrics:ingest:dead");
    let dead_letter = wait_for_dead_letter(&redis, &dead_stream, &poison_id).await;
    let dead_letter_id = match &dead_letter {
        Some((id, fields)) => {
            findings.expect(
                fields.iter().any(|(name, value)| name == "p" && *value == payload),
                || format!("the dead letter {id} does not keep the original payload in `p`: {fields:?}"),
            );
            findings.expect(
                fields.iter().any(|(name, value)| name == "reason" && !value.is_empty()),
                || format!("the dead letter {id} has no `reason`: {fields:?}"),
            );
            id.clone()
        }
        None => {
            findings.add(format!(
                "no entry of {dead_stream} names the poison entry {poison_id} in `entry` within {OBSERVE_DEADLINE:?}"
            ));
            String::new()
        }
    };

    // Operators see it.
    let output = metrix.run_command(&["dead-letters", "list", "--limit", "100"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    findings.expect(output.status.success(), || {
        format!(
            "`metrix dead-letters list` exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    });
    let lines: Vec<&str> = stdout.lines().filter(|line| !line.trim().is_empty()).collect();
    let malformed: Vec<&&str> = lines
        .iter()
        .filter(|line| {
            serde_json::from_str::<Json>(line).map_or(true, |object| {
                ["id", "reason", "organizationId", "eventIds"]
                    .iter()
                    .any(|key| object.get(key).is_none())
            })
        })
        .collect();
    findings.expect(malformed.is_empty(), || {
        format!(
            "`metrix dead-letters list` lines must be JSON objects with id, reason, organizationId and eventIds: {}",
            sample(malformed)
        )
    });
    findings.expect(
        lines
            .iter()
            .any(|line| line.contains(&poison_id) || (!dead_letter_id.is_empty() && line.contains(&dead_letter_id))),
        || format!("`metrix dead-letters list` does not list the poison entry {poison_id}: {stdout:?}"),
    );

    // And the metrics say so.
    let dead_lettered = wait_for_metric(&metrix, "metrix_ingest_dead_lettered_total", |value| value >= 1.0).await;
    findings.expect(dead_lettered.is_some_and(|value| value >= 1.0), || {
        format!("metrix_ingest_dead_lettered_total should be at least 1, it is {dead_lettered:?}")
    });
    let dead_letters = wait_for_metric(&metrix, "metrix_ingest_dead_letters", |value| value >= 1.0).await;
    findings.expect(dead_letters.is_some_and(|value| value >= 1.0), || {
        format!("metrix_ingest_dead_letters should be at least 1, it is {dead_letters:?}")
    });
    findings.assert_none();
}

/// The value of a metric once `wanted` holds, or its last value (or `None`,
/// absent) after [`OBSERVE_DEADLINE`].
async fn wait_for_metric(metrix: &Metrix, name: &str, wanted: impl Fn(f64) -> bool) -> Option<f64> {
    let deadline = Instant::now() + OBSERVE_DEADLINE;
    loop {
        let value = metric_value(&metrix.api.prometheus_text().await, name);
        if value.is_some_and(&wanted) || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The dead letter whose `entry` field is `original_id`: its id and fields.
async fn wait_for_dead_letter(
    redis: &Redis,
    dead_stream: &str,
    original_id: &str,
) -> Option<(String, Vec<(String, Vec<u8>)>)> {
    let deadline = Instant::now() + OBSERVE_DEADLINE;
    loop {
        if let Reply::Array(entries) = redis.must(&[b"XRANGE", dead_stream.as_bytes(), b"-", b"+"]).await {
            for entry in entries {
                let Reply::Array(parts) = entry else { continue };
                let (Some(id), Some(Reply::Array(flat))) = (parts.first().and_then(Reply::text), parts.get(1)) else {
                    continue;
                };
                let fields: Vec<(String, Vec<u8>)> = flat
                    .chunks(2)
                    .filter_map(|pair| match pair {
                        [name, Reply::Bulk(value)] => Some((name.text()?, value.clone())),
                        _ => None,
                    })
                    .collect();
                if fields
                    .iter()
                    .any(|(name, value)| name == "entry" && value.as_slice() == original_id.as_bytes())
                {
                    return Some((id, fields));
                }
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
