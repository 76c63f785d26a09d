//! Storing events: the synchronous path (store, then answer) and the
//! asynchronous one (append to a work stream, answer, and let writers
//! store). Both end in [`store_and_announce`], which stores each event
//! exactly once per organisation and event id and announces the new ones.
//!
//! The asynchronous guarantee: an event answered QUEUED is in the stream
//! (Redis Streams, or the in-process queue in the embedded mode) at least
//! once; a writer acknowledges an entry only after its events are
//! committed, and an entry left unacknowledged by a writer that died is
//! claimed by another after [`STALE_AFTER`]. Storage de-duplicates by event
//! id, so a redelivered entry stores nothing twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use metrix_core::cache::{CacheError, StreamEntry, WorkStream};
use metrix_core::server::Shutdown;
use metrix_core::time::micros_of;
use metrix_proto::metrics::v1::{Event, ListEventsResponse};
use prost::Message as _;

use crate::error::MetricsError;
use crate::events::{NewEvent, event_to_proto, struct_to_json};
use crate::service::{MetricsState, events_channel};

/// The stream queued events wait in.
pub const INGEST_STREAM: &str = "metrics:ingest";
/// The consumer group of the writers.
pub const WRITERS_GROUP: &str = "metrics-writers";
/// How long an entry may stay unacknowledged before another writer takes it.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// Entries a writer takes at once.
const READ_COUNT: usize = 20;
/// How long a writer waits for new entries before looking for stale ones.
const READ_WAIT: Duration = Duration::from_secs(1);
/// How long a writer pauses after a failure.
const BACKOFF: Duration = Duration::from_secs(1);

/// Stores `events` (parsed, no id twice) and announces the new ones on
/// pub/sub; returns the ids that were new.
pub async fn store_and_announce(
    state: &MetricsState,
    organization_id: &str,
    events: &[NewEvent],
) -> Result<BTreeSet<String>, MetricsError> {
    let inserted = state.store.insert_events(organization_id, events).await?;
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

/// Appends parsed events to the ingestion stream as one entry.
pub async fn enqueue(
    work_streams: &dyn WorkStream,
    organization_id: &str,
    events: &[NewEvent],
) -> Result<(), CacheError> {
    // A batch whose every event was refused queues nothing (a worker would
    // refuse an empty entry).
    if events.is_empty() {
        return Ok(());
    }
    let entry = ListEventsResponse {
        events: events
            .iter()
            .map(|event| event_to_proto(event, organization_id))
            .collect(),
        next_page_token: String::new(),
    };
    work_streams
        .append(INGEST_STREAM, &entry.encode_to_vec())
        .await
        .map(|_| ())
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

/// Stores one entry and acknowledges it once committed.
async fn process(state: &MetricsState, work_streams: &dyn WorkStream, entry: &StreamEntry) -> Result<(), MetricsError> {
    match decode_entry(entry) {
        Some((organization_id, events)) => {
            let inserted = store_and_announce(state, &organization_id, &events).await?;
            tracing::debug!(entry = %entry.id, events = events.len(), new = inserted.len(), "queued events stored");
        }
        // A malformed entry would fail forever; it is logged and dropped.
        None => tracing::error!(entry = %entry.id, "dropping an ingestion entry that does not decode"),
    }
    if let Err(error) = work_streams
        .acknowledge(INGEST_STREAM, WRITERS_GROUP, std::slice::from_ref(&entry.id))
        .await
    {
        // Unacknowledged, the entry is redelivered and de-duplicated.
        tracing::warn!(entry = %entry.id, error = %metrix_core::error::error_chain(&error), "cannot acknowledge an ingestion entry");
    }
    Ok(())
}

/// Runs a writer until `shutdown`: takes over stale entries, then reads new
/// ones, storing each and acknowledging it after the commit.
pub fn spawn_writer(state: Arc<MetricsState>, work_streams: Arc<dyn WorkStream>, shutdown: Shutdown) {
    let consumer = format!("writer-{}", uuid::Uuid::now_v7());
    tokio::spawn(async move {
        let stopped = shutdown.triggered();
        tokio::pin!(stopped);
        loop {
            let round = async {
                let mut entries = work_streams
                    .claim_stale(INGEST_STREAM, WRITERS_GROUP, &consumer, STALE_AFTER, READ_COUNT)
                    .await?;
                entries.extend(
                    work_streams
                        .read_new(INGEST_STREAM, WRITERS_GROUP, &consumer, READ_COUNT, READ_WAIT)
                        .await?,
                );
                Ok::<_, CacheError>(entries)
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
                if let Err(error) = process(&state, work_streams.as_ref(), entry).await {
                    // Left pending: claimed again after STALE_AFTER.
                    tracing::warn!(entry = %entry.id, error = %metrix_core::error::error_chain(&error), "cannot store queued events");
                    tokio::time::sleep(BACKOFF).await;
                    break;
                }
            }
        }
        tracing::debug!(consumer, "ingestion writer stopped");
    });
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

    #[tokio::test]
    async fn a_batch_with_no_events_to_store_queues_nothing() {
        let backends = metrix_core::cache::Backends::in_process();
        let streams = backends.work_streams.as_ref();
        enqueue(streams, "org-1", &[]).await.expect("nothing to queue");
        let entry = Event {
            event_id: "q-0".into(),
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
        let event = parse_event(&entry, &arrival).expect("valid");
        enqueue(streams, "org-1", std::slice::from_ref(&event))
            .await
            .expect("queued");
        let delivered = streams
            .read_new(INGEST_STREAM, WRITERS_GROUP, "worker-1", 10, Duration::from_millis(10))
            .await
            .expect("read");
        assert_eq!(delivered.len(), 1, "only the batch with an event was queued");
        assert_eq!(decode_entry(&delivered[0]).map(|(_, events)| events.len()), Some(1));
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
            payload: ListEventsResponse {
                events: vec![event_to_proto(&parsed, "org-1")],
                next_page_token: String::new(),
            }
            .encode_to_vec(),
        };
        let (organization_id, decoded) = decode_entry(&entry).expect("decodes");
        assert_eq!(organization_id, "org-1");
        assert_eq!(decoded, [parsed]);
        assert!(
            decode_entry(&StreamEntry {
                id: "2-0".into(),
                payload: b"garbage".to_vec()
            })
            .is_none()
        );
    }
}
