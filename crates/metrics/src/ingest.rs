//! Storing events: the synchronous path (store, then answer) and the
//! asynchronous one (append to a work stream, answer, and let writers
//! store). Both end in [`store_and_announce`], which stores each event
//! exactly once per organisation and event id and announces the new ones.
//!
//! The asynchronous guarantee: an event answered QUEUED is in a durable
//! work stream — Redis Streams (durable as far as Redis persists: AOF), or
//! the `work_stream_entries` table of the service's own database when no
//! Redis is configured. A writer acknowledges an entry only after its
//! events are committed; an entry left unacknowledged by a writer that died
//! is claimed by another after the configured claim delay; storage
//! de-duplicates by event id, so a redelivered entry stores nothing twice.
//! The stream is bounded (a full one refuses with RESOURCE_EXHAUSTED),
//! trimmed of what has been acknowledged, and an entry that cannot be
//! stored for a reason retrying cannot fix goes to its dead letters after a
//! bounded number of deliveries, never blocking the others.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use metrix_core::cache::{Appended, StreamEntry, WorkStream};
use metrix_core::error::ErrorKind;
use metrix_core::server::Shutdown;
use metrix_core::time::micros_of;
use metrix_proto::metrics::v1::{Event, ListEventsResponse};
use prost::Message as _;

use crate::app::{MetricsState, events_channel};
use crate::error::MetricsError;
use crate::events::{NewEvent, event_to_proto, struct_to_json};
use crate::profiles::ProfileChange;
use crate::settings::QueueSettings;

/// The stream queued events wait in.
pub const INGEST_STREAM: &str = "metrics:ingest";
/// The consumer group of the writers.
pub const WRITERS_GROUP: &str = "metrics-writers";
/// Entries a writer takes at once.
const READ_COUNT: usize = 20;
/// How long a writer waits for new entries before looking for stale ones.
const READ_WAIT: Duration = Duration::from_secs(1);
/// How long a writer pauses after a failure.
const BACKOFF: Duration = Duration::from_secs(1);
/// How often the stream is trimmed and its gauges refreshed.
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// Stores `events` (parsed, no id twice) and announces the new ones on
/// pub/sub; returns the ids that were new.
pub async fn store_and_announce(
    state: &MetricsState,
    organization_id: &str,
    events: &[NewEvent],
) -> Result<BTreeSet<String>, MetricsError> {
    store_tracked_and_announce(state, organization_id, events, &[]).await
}

/// [`store_and_announce`] for the tracking API's messages: the profile
/// changes of the messages whose events were new are written in the
/// transaction that stores them (`crate::profiles`).
pub async fn store_tracked_and_announce(
    state: &MetricsState,
    organization_id: &str,
    events: &[NewEvent],
    changes: &[ProfileChange],
) -> Result<BTreeSet<String>, MetricsError> {
    let inserted = state
        .store
        .insert_tracked_events(organization_id, events, changes)
        .await?;
    if !inserted.is_empty() {
        let announced = stored_notice(events.iter().filter(|event| inserted.contains(&event.event_id)));
        // Live streams are best effort: the events are stored either way.
        if let Err(error) = state
            .pubsub
            .publish(&events_channel(organization_id), announced.as_bytes())
            .await
        {
            tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot announce stored events");
        }
    }
    Ok(inserted)
}

/// The notice of stored events: one line per event, its app and id
/// separated by a tab (neither holds control characters), in the order they
/// were sent. Watchers read the events themselves from storage, so storing
/// a batch never pays for encoding it again.
pub fn stored_notice<'a>(events: impl Iterator<Item = &'a NewEvent>) -> String {
    let mut notice = String::new();
    for event in events {
        notice.push_str(&event.app_id);
        notice.push('\t');
        notice.push_str(&event.event_id);
        notice.push('\n');
    }
    notice
}

/// The (app, event id) pairs of a notice of stored events.
pub fn noticed_events(payload: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(payload)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(app_id, event_id)| (app_id.to_owned(), event_id.to_owned()))
        .collect()
}

/// The payload of an entry: the events with their server fields set.
fn encode_entry(organization_id: &str, events: &[NewEvent]) -> Vec<u8> {
    ListEventsResponse {
        events: events
            .iter()
            .map(|event| event_to_proto(event, organization_id))
            .collect(),
        next_page_token: String::new(),
    }
    .encode_to_vec()
}

/// Appends parsed events to the ingestion stream as one entry, unless the
/// stream already holds `max_depth` entries (then [`MetricsError::QueueFull`]
/// and nothing of the batch is queued).
pub async fn enqueue(
    work_streams: &dyn WorkStream,
    max_depth: u64,
    organization_id: &str,
    events: &[NewEvent],
) -> Result<(), MetricsError> {
    // A batch whose every event was refused queues nothing (a worker would
    // refuse an empty entry).
    if events.is_empty() {
        return Ok(());
    }
    let appended = work_streams
        .append(
            INGEST_STREAM,
            WRITERS_GROUP,
            &encode_entry(organization_id, events),
            max_depth,
        )
        .await
        .map_err(MetricsError::Queue)?;
    match appended {
        Appended::Queued(_) => Ok(()),
        Appended::Full { depth } => {
            metrics::counter!("metrix_ingest_queue_refused_total").increment(1);
            Err(MetricsError::QueueFull { depth })
        }
    }
}

/// The stored form of an event as it travels through the stream (server
/// fields set); `None` when they are missing.
fn queued_event(event: &Event) -> Option<NewEvent> {
    Some(NewEvent {
        event_id: event.event_id.clone(),
        app_id: event.app_id.clone(),
        user_id: event.user_id.clone(),
        event_type: event.event_type.clone(),
        event_name: event.event_name.clone(),
        properties_json: event
            .properties
            .as_ref()
            .map_or_else(|| "{}".to_owned(), |properties| struct_to_json(properties).to_string()),
        session_id: event.session_id.clone(),
        client_timestamp: event.timestamp.as_ref().and_then(micros_of),
        sent_at: event.sent_at.as_ref().and_then(micros_of),
        received_at: micros_of(event.received_at.as_ref()?)?,
        occurred_at: micros_of(event.corrected_timestamp.as_ref()?)?,
        user_agent: event.user_agent.clone(),
        ip: event.ip.clone(),
    })
}

/// Decodes one entry into its organisation and events.
fn decode_entry(entry: &StreamEntry) -> Option<(String, Vec<NewEvent>)> {
    let batch = ListEventsResponse::decode(entry.payload.as_slice()).ok()?;
    let organization_id = batch.events.first()?.organization_id.clone();
    if batch
        .events
        .iter()
        .any(|event| event.organization_id != organization_id)
    {
        return None;
    }
    let events = batch.events.iter().map(queued_event).collect::<Option<Vec<_>>>()?;
    Some((organization_id, events))
}

/// What became of one entry.
enum Outcome {
    /// Every event is stored (or was already): acknowledge.
    Stored,
    /// The store is unreachable or busy: leave the entry pending.
    Outage(MetricsError),
    /// Some events cannot be stored, for a reason retrying may not fix; the
    /// others are stored. `payload` holds the failed ones only.
    Failed {
        /// Why, for the dead letters and the log.
        reason: String,
        /// The entry to dead-letter: the events that failed.
        payload: Vec<u8>,
        /// Whether a retry can make any difference (a decoding failure
        /// cannot).
        retryable: bool,
    },
}

fn is_outage(error: &MetricsError) -> bool {
    error.kind() == ErrorKind::Unavailable
}

/// Stores one entry's events. A batch refused for a reason other than an
/// outage is stored again event by event, so one bad event holds back only
/// itself.
async fn process(state: &MetricsState, entry: &StreamEntry) -> Outcome {
    let Some((organization_id, events)) = decode_entry(entry) else {
        return Outcome::Failed {
            reason: "the entry does not decode as a batch of events of one organisation".to_owned(),
            payload: entry.payload.clone(),
            retryable: false,
        };
    };
    let batch_error = match store_and_announce(state, &organization_id, &events).await {
        Ok(inserted) => {
            tracing::debug!(entry = %entry.id, events = events.len(), new = inserted.len(), "queued events stored");
            return Outcome::Stored;
        }
        Err(error) if is_outage(&error) => return Outcome::Outage(error),
        Err(error) => error,
    };
    tracing::warn!(entry = %entry.id, error = %metrix_core::error::error_chain(&batch_error), "a queued batch failed; storing its events one by one");
    let mut failed = Vec::new();
    let mut reasons = BTreeSet::new();
    for event in &events {
        match store_and_announce(state, &organization_id, std::slice::from_ref(event)).await {
            Ok(_) => {}
            Err(error) if is_outage(&error) => return Outcome::Outage(error),
            Err(error) => {
                reasons.insert(metrix_core::error::error_chain(&error));
                failed.push(event.clone());
            }
        }
    }
    if failed.is_empty() {
        return Outcome::Stored;
    }
    Outcome::Failed {
        reason: format!(
            "{} of {} events cannot be stored: {}",
            failed.len(),
            events.len(),
            reasons.into_iter().collect::<Vec<_>>().join("; ")
        ),
        payload: encode_entry(&organization_id, &failed),
        retryable: true,
    }
}

/// Stores one entry and settles it: acknowledged once committed, left
/// pending through an outage, dead-lettered when it keeps failing. An
/// outage is returned so the writer pauses.
async fn settle(
    state: &MetricsState,
    work_streams: &dyn WorkStream,
    settings: &QueueSettings,
    entry: &StreamEntry,
) -> Result<(), MetricsError> {
    // A panic while storing is a failure of this entry, not of the writer.
    let outcome = std::panic::AssertUnwindSafe(process(state, entry))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Outcome::Failed {
            reason: "storing the entry panicked".to_owned(),
            payload: entry.payload.clone(),
            retryable: true,
        });
    let settled = match outcome {
        Outcome::Stored => {
            work_streams
                .acknowledge(INGEST_STREAM, WRITERS_GROUP, std::slice::from_ref(&entry.id))
                .await
        }
        Outcome::Outage(error) => return Err(error),
        Outcome::Failed {
            reason,
            payload,
            retryable,
        } => {
            if retryable && entry.deliveries < settings.max_attempts {
                // Left pending: claimed again after the claim delay.
                tracing::warn!(entry = %entry.id, deliveries = entry.deliveries, reason, "queued events failed; will retry");
                return Ok(());
            }
            tracing::error!(entry = %entry.id, deliveries = entry.deliveries, reason, "queued events moved to the dead letters");
            metrics::counter!("metrix_ingest_dead_lettered_total").increment(1);
            let dead = StreamEntry {
                id: entry.id.clone(),
                payload,
                deliveries: entry.deliveries,
            };
            work_streams
                .dead_letter(INGEST_STREAM, WRITERS_GROUP, &dead, &reason)
                .await
        }
    };
    if let Err(error) = settled {
        // Unsettled, the entry is delivered again and de-duplicated.
        tracing::warn!(entry = %entry.id, error = %metrix_core::error::error_chain(&error), "cannot settle an ingestion entry");
    }
    Ok(())
}

/// Starts the configured writers and the stream's maintenance, until
/// `shutdown`.
pub fn spawn_workers(
    state: Arc<MetricsState>,
    work_streams: Arc<dyn WorkStream>,
    settings: QueueSettings,
    shutdown: &Shutdown,
) {
    for _ in 0..settings.writers {
        spawn_writer(state.clone(), work_streams.clone(), settings, shutdown.clone());
    }
    spawn_maintenance(work_streams, shutdown.clone());
}

/// Runs a writer until `shutdown`: takes over stale entries, then reads new
/// ones, storing each and acknowledging it after the commit.
fn spawn_writer(
    state: Arc<MetricsState>,
    work_streams: Arc<dyn WorkStream>,
    settings: QueueSettings,
    shutdown: Shutdown,
) {
    let consumer = format!("writer-{}", uuid::Uuid::now_v7());
    tokio::spawn(async move {
        let stopped = shutdown.triggered();
        tokio::pin!(stopped);
        loop {
            let round = async {
                let mut entries = work_streams
                    .claim_stale(
                        INGEST_STREAM,
                        WRITERS_GROUP,
                        &consumer,
                        settings.claim_after,
                        READ_COUNT,
                    )
                    .await?;
                entries.extend(
                    work_streams
                        .read_new(INGEST_STREAM, WRITERS_GROUP, &consumer, READ_COUNT, READ_WAIT)
                        .await?,
                );
                Ok::<_, metrix_core::cache::CacheError>(entries)
            };
            let entries = tokio::select! {
                () = &mut stopped => break,
                entries = round => entries,
            };
            let entries = match entries {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot read the ingestion stream");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            };
            for entry in &entries {
                if let Err(error) = settle(&state, work_streams.as_ref(), &settings, entry).await {
                    // The rest stay pending: claimed again after the claim delay.
                    tracing::warn!(entry = %entry.id, error = %metrix_core::error::error_chain(&error), "cannot store queued events");
                    tokio::time::sleep(BACKOFF).await;
                    break;
                }
            }
        }
        tracing::debug!(consumer, "ingestion writer stopped");
    });
}

/// Trims the stream of acknowledged entries and publishes its depth, lag
/// and dead letters as gauges, every second until `shutdown`.
fn spawn_maintenance(work_streams: Arc<dyn WorkStream>, shutdown: Shutdown) {
    shutdown.every(MAINTAIN_EVERY, move || {
        let work_streams = work_streams.clone();
        async move {
            match work_streams.maintain(INGEST_STREAM).await {
                Ok(stats) => {
                    metrics::gauge!("metrix_ingest_queue_depth").set(stats.depth as f64);
                    metrics::gauge!("metrix_ingest_queue_lag_seconds").set(stats.lag.as_secs_f64());
                    metrics::gauge!("metrix_ingest_dead_letters").set(stats.dead_letters as f64);
                }
                Err(error) => {
                    tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot maintain the ingestion stream");
                }
            }
        }
    });
}

/// One dead letter as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSummary {
    /// Its id among the dead letters.
    pub id: String,
    /// Its id in the ingestion stream.
    pub entry_id: String,
    /// Why it was moved.
    pub reason: String,
    /// The organisation of its events, when the entry decodes.
    pub organization_id: Option<String>,
    /// The ids of its events, when the entry decodes.
    pub event_ids: Vec<String>,
}

/// The newest `count` dead letters of the ingestion stream, newest first.
pub async fn dead_letters(work_streams: &dyn WorkStream, count: usize) -> Result<Vec<DeadLetterSummary>, MetricsError> {
    let letters = work_streams
        .dead_letters(INGEST_STREAM, count)
        .await
        .map_err(MetricsError::Queue)?;
    Ok(letters
        .into_iter()
        .map(|letter| {
            let batch = ListEventsResponse::decode(letter.payload.as_slice()).ok();
            DeadLetterSummary {
                organization_id: batch
                    .as_ref()
                    .and_then(|batch| batch.events.first())
                    .map(|event| event.organization_id.clone()),
                event_ids: batch
                    .map(|batch| batch.events.into_iter().map(|event| event.event_id).collect())
                    .unwrap_or_default(),
                id: letter.id,
                entry_id: letter.entry_id,
                reason: letter.reason,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Arrival, parse_event};

    #[test]
    fn notices_name_each_stored_event_with_its_app() {
        let arrival = Arrival {
            received_at: 1_795_305_600_000_000,
            user_agent: "sdk/1".into(),
            ip: "127.0.0.1".into(),
            oldest_retained: 0,
        };
        let stored: Vec<NewEvent> = [("web app", "e-1"), ("ios", "e.2_x")]
            .into_iter()
            .map(|(app_id, event_id)| {
                let event = Event {
                    event_id: event_id.into(),
                    app_id: app_id.into(),
                    event_type: "click".into(),
                    ..Default::default()
                };
                parse_event(&event, &arrival).expect("valid")
            })
            .collect();
        let notice = stored_notice(stored.iter());
        assert_eq!(
            noticed_events(notice.as_bytes()),
            [
                ("web app".to_owned(), "e-1".to_owned()),
                ("ios".to_owned(), "e.2_x".to_owned())
            ]
        );
        assert!(noticed_events(b"").is_empty());
    }

    /// A durable work stream on a fresh SQLite file.
    async fn sqlite_work_stream(folder: &tempfile::TempDir) -> metrix_core::storage::work_stream::SqlWorkStream {
        let database =
            metrix_core::storage::Database::connect(&format!("sqlite://{}", folder.path().join("queue.db").display()))
                .await
                .expect("sqlite opens");
        database
            .migrate(metrix_core::storage::work_stream::migrations())
            .await
            .expect("migrated");
        metrix_core::storage::work_stream::SqlWorkStream::new(database)
    }

    fn parsed(event_id: &str) -> NewEvent {
        let event = Event {
            event_id: event_id.into(),
            app_id: "ios".into(),
            event_type: "click".into(),
            ..Default::default()
        };
        let arrival = Arrival {
            received_at: 1_795_305_600_000_000,
            user_agent: "sdk/1".into(),
            ip: "127.0.0.1".into(),
            oldest_retained: 0,
        };
        parse_event(&event, &arrival).expect("valid")
    }

    #[tokio::test]
    async fn a_batch_with_no_events_to_store_queues_nothing() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let streams = sqlite_work_stream(&folder).await;
        enqueue(&streams, 10, "org-1", &[]).await.expect("nothing to queue");
        enqueue(&streams, 10, "org-1", &[parsed("q-0")]).await.expect("queued");
        let delivered = streams
            .read_new(INGEST_STREAM, WRITERS_GROUP, "worker-1", 10, Duration::from_millis(10))
            .await
            .expect("read");
        assert_eq!(delivered.len(), 1, "only the batch with an event was queued");
        assert_eq!(decode_entry(&delivered[0]).map(|(_, events)| events.len()), Some(1));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_queues_nothing_of_the_batch() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let streams = sqlite_work_stream(&folder).await;
        for index in 0..3 {
            enqueue(&streams, 3, "org-1", &[parsed(&format!("f-{index}"))])
                .await
                .expect("room left");
        }
        let refused = enqueue(&streams, 3, "org-1", &[parsed("f-3")]).await.expect_err("full");
        assert!(matches!(refused, MetricsError::QueueFull { depth: 3 }), "{refused:?}");
        assert_eq!(refused.kind(), ErrorKind::ResourceExhausted);
        let status = tonic::Status::from(refused);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("full"), "{}", status.message());
        assert_eq!(streams.maintain(INGEST_STREAM).await.expect("stats").depth, 3);
    }

    #[test]
    fn queued_events_keep_every_stored_field() {
        let arrival = Arrival {
            received_at: 1_795_305_600_000_000,
            user_agent: "sdk/1".into(),
            ip: "2001:db8::1".into(),
            oldest_retained: 0,
        };
        let event = Event {
            event_id: "q-1".into(),
            app_id: "ios".into(),
            user_id: "u-1".into(),
            event_type: "signup".into(),
            properties: crate::events::json_to_struct(&serde_json::json!({"plan": "pro"})),
            timestamp: Some(metrix_core::time::timestamp(1_795_305_500_000_000)),
            ..Default::default()
        };
        let parsed = parse_event(&event, &arrival).expect("valid");
        let entry = StreamEntry {
            id: "1-0".into(),
            payload: encode_entry("org-1", std::slice::from_ref(&parsed)),
            deliveries: 1,
        };
        let (organization_id, decoded) = decode_entry(&entry).expect("decodes");
        assert_eq!(organization_id, "org-1");
        assert_eq!(decoded, [parsed]);
        assert!(
            decode_entry(&StreamEntry {
                id: "2-0".into(),
                payload: b"garbage".to_vec(),
                deliveries: 1,
            })
            .is_none()
        );
    }
}
