//! Product events: tracking, reading, counting, exporting and watching them.
//! The dashboard built from them is in `dashboard`.

use std::collections::{BTreeSet, HashMap};

use metrix_core::authn::Scope;
use metrix_core::client::client_info;
use metrix_core::error::within;
use metrix_core::page_token;
use metrix_core::time::{duration_micros, now_micros, timestamp};
use metrix_proto::metrics::v1::*;
use prost::Message as _;
use tonic::{Request, Status};

use crate::app::events_channel;
use crate::error::MetricsError;
use crate::events::{Arrival, EventSelection, NewEvent, event_to_proto, parse_event};
use crate::store::events::{EventCursor, EventOrder};

use super::{LIST_PAGE, MetricsApi, READERS, ResponseStream, authorize, required};

/// Live events buffered per WatchEvents stream before some are skipped.
const WATCH_BUFFER: usize = 256;

impl MetricsApi {
    /// What the edge says about the caller, and the retention cut-off.
    pub(super) fn arrival<T>(&self, request: &Request<T>) -> Arrival {
        let client = client_info(request, &self.state.trusted_proxies);
        let received_at = now_micros();
        Arrival {
            received_at,
            user_agent: client.user_agent,
            ip: client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            oldest_retained: received_at - duration_micros(self.state.event_retention),
        }
    }

    pub(super) async fn track_event(
        &self,
        request: Request<TrackEventRequest>,
    ) -> Result<TrackEventResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::EventsWrite])?.clone();
        let arrival = self.arrival(&request);
        let request = request.into_inner();
        let Some(event) = request.event else {
            return Err(MetricsError::invalid("event", "is required"));
        };
        let parsed = within("event", parse_event(&event, &arrival))?;
        let status = if request.asynchronous {
            crate::ingest::enqueue(
                self.state.work_streams.as_ref(),
                self.state.queue.max_depth,
                &caller.organization_id,
                std::slice::from_ref(&parsed),
            )
            .await?;
            TrackEventStatus::Queued
        } else if crate::ingest::store_and_announce(&self.state, &caller.organization_id, std::slice::from_ref(&parsed))
            .await?
            .contains(&parsed.event_id)
        {
            TrackEventStatus::Accepted
        } else {
            TrackEventStatus::Duplicate
        };
        Ok(TrackEventResponse {
            event_id: parsed.event_id,
            status: status as i32,
            session_id: parsed.session_id,
            received_at: Some(timestamp(arrival.received_at)),
        })
    }

    pub(super) async fn track_events(
        &self,
        request: Request<TrackEventsRequest>,
    ) -> Result<TrackEventsResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::EventsWrite])?.clone();
        let arrival = self.arrival(&request);
        let encoded_length = request.get_ref().encoded_len();
        let request = request.into_inner();
        if encoded_length > crate::events::MAX_BATCH_BYTES {
            return Err(MetricsError::BatchTooLarge {
                bytes: encoded_length,
                limit: crate::events::MAX_BATCH_BYTES,
            });
        }
        if request.events.is_empty() {
            return Err(MetricsError::invalid("events", "must hold at least one event"));
        }
        if request.events.len() > crate::events::MAX_BATCH_EVENTS {
            return Err(MetricsError::invalid(
                "events",
                format!(
                    "holds {} events; at most {} per call",
                    request.events.len(),
                    crate::events::MAX_BATCH_EVENTS
                ),
            ));
        }
        let mut results: Vec<TrackEventResult> = Vec::with_capacity(request.events.len());
        let mut to_store: Vec<NewEvent> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, event) in request.events.iter().enumerate() {
            // A batch holds at most 1,000 events.
            let index_number = i32::try_from(index).unwrap_or(i32::MAX);
            match parse_event(event, &arrival) {
                Err(problems) => {
                    // The first problem is reported; the rest often follow from it.
                    let (field, reason) = problems
                        .into_iter()
                        .next()
                        .map(|violation| (violation.field, violation.description))
                        .unwrap_or_default();
                    results.push(TrackEventResult {
                        index: index_number,
                        event_id: event.event_id.trim().to_owned(),
                        status: TrackEventStatus::Rejected as i32,
                        reason,
                        field,
                        session_id: String::new(),
                    });
                }
                Ok(parsed) => {
                    let status = if seen.contains_key(&parsed.event_id) {
                        TrackEventStatus::Duplicate
                    } else {
                        seen.insert(parsed.event_id.clone(), index);
                        to_store.push(parsed.clone());
                        // Settled once the batch is stored.
                        TrackEventStatus::Unspecified
                    };
                    results.push(TrackEventResult {
                        index: index_number,
                        event_id: parsed.event_id,
                        status: status as i32,
                        reason: String::new(),
                        field: String::new(),
                        session_id: parsed.session_id,
                    });
                }
            }
        }
        if request.asynchronous {
            crate::ingest::enqueue(
                self.state.work_streams.as_ref(),
                self.state.queue.max_depth,
                &caller.organization_id,
                &to_store,
            )
            .await?;
        }
        let inserted = if request.asynchronous {
            BTreeSet::new()
        } else {
            crate::ingest::store_and_announce(&self.state, &caller.organization_id, &to_store).await?
        };
        for result in &mut results {
            if result.status == TrackEventStatus::Unspecified as i32 {
                result.status = if request.asynchronous {
                    TrackEventStatus::Queued as i32
                } else if inserted.contains(&result.event_id) {
                    TrackEventStatus::Accepted as i32
                } else {
                    TrackEventStatus::Duplicate as i32
                };
            }
        }
        let count =
            |wanted: TrackEventStatus| results.iter().filter(|result| result.status == wanted as i32).count() as i64;
        let rejected_count = count(TrackEventStatus::Rejected);
        let duplicate_count = count(TrackEventStatus::Duplicate);
        Ok(TrackEventsResponse {
            accepted_count: results.len() as i64 - rejected_count,
            rejected_count,
            duplicate_count,
            results,
            received_at: Some(timestamp(arrival.received_at)),
        })
    }

    pub(super) async fn get_event(&self, request: Request<GetEventRequest>) -> Result<GetEventResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let event_id = required("event_id", &request.get_ref().event_id).map_err(MetricsError::from)?;
        let event = self
            .state
            .store
            .event(&caller.organization_id, &event_id)
            .await?
            .ok_or(MetricsError::NotFound("event"))?;
        Ok(GetEventResponse {
            event: Some(event_to_proto(&event, &caller.organization_id)),
        })
    }

    pub(super) async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<ListEventsResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let selection = within("filter", EventSelection::parse(request.filter.as_ref()))?;
        let filters = format!("events|{}|{}", caller.organization_id, selection.fingerprint());
        let (size, cursor) =
            page_token::page_request::<EventCursor>(request.page_size, &request.page_token, &filters, LIST_PAGE)
                .map_err(MetricsError::from)?;
        let events = self
            .state
            .store
            .list_events(
                &caller.organization_id,
                &selection,
                cursor.as_ref(),
                size + 1,
                EventOrder::NewestFirst,
            )
            .await?;
        let (events, next_page_token) = page_token::paginate(events, size, &filters, |event| EventCursor {
            occurred_at: event.occurred_at,
            event_id: event.event_id.clone(),
        });
        Ok(ListEventsResponse {
            events: events
                .iter()
                .map(|event| event_to_proto(event, &caller.organization_id))
                .collect(),
            next_page_token,
        })
    }

    pub(super) async fn count_events(
        &self,
        request: Request<CountEventsRequest>,
    ) -> Result<CountEventsResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let selection = within("filter", EventSelection::parse(request.get_ref().filter.as_ref()))?;
        let counts = self
            .state
            .store
            .count_events(&caller.organization_id, &selection)
            .await?;
        Ok(CountEventsResponse {
            total_count: counts.iter().map(|(_, count)| count).sum(),
            counts_by_type: counts
                .into_iter()
                .map(|(event_type, count)| EventTypeCount { event_type, count })
                .collect(),
        })
    }

    pub(super) async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<ResponseStream<WatchEventsResponse>, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let selection = within("filter", EventSelection::parse(request.get_ref().filter.as_ref()))?;
        let lease = crate::streams::admit(&request, &caller).await?;
        let mut announcements = self
            .state
            .pubsub
            .subscribe(&events_channel(&caller.organization_id))
            .await
            .map_err(|error| metrix_core::error::unavailable("cannot subscribe to events", &error))?;
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<WatchEventsResponse, Status>>(WATCH_BUFFER);
        let store = self.state.store.clone();
        let organization_id = caller.organization_id.clone();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            let mut skipped: i64 = 0;
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    announcement = announcements.next() => {
                        let Some(payload) = announcement else { return };
                        let ids: Vec<String> = crate::ingest::noticed_events(&payload)
                            .into_iter()
                            .filter(|(app_id, _)| selection.app_id.is_empty() || selection.app_id == *app_id)
                            .map(|(_, event_id)| event_id)
                            .collect();
                        if ids.is_empty() {
                            continue;
                        }
                        let stored = match store.events_by_ids(&organization_id, &ids).await {
                            Ok(stored) => stored,
                            Err(error) => {
                                tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot read announced events");
                                continue;
                            }
                        };
                        let events = stored
                            .iter()
                            .map(|event| event_to_proto(event, &organization_id))
                            .filter(|event| selection.matches_live(event));
                        for event in events {
                            let message = WatchEventsResponse { event: Some(event), skipped_count: skipped };
                            match sender.try_send(Ok(message)) {
                                Ok(()) => skipped = 0,
                                // A slow reader loses events from the stream, not from storage.
                                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => skipped += 1,
                                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                            }
                        }
                    }
                }
            }
        });
        Ok(lease.bound(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    pub(super) async fn export_events(
        &self,
        request: Request<ExportEventsRequest>,
    ) -> Result<ResponseStream<ExportEventsResponse>, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let lease = crate::streams::admit(&request, &caller).await?;
        let request = request.into_inner();
        let selection = within("filter", EventSelection::parse(request.filter.as_ref()))?;
        let format = match ExportFormat::try_from(request.format) {
            Ok(ExportFormat::Unspecified | ExportFormat::Csv) => crate::export::Format::Csv,
            Ok(ExportFormat::Ndjson) => crate::export::Format::Ndjson,
            Err(_) => return Err(MetricsError::invalid("format", "is not an export format")),
        };
        let stream = crate::export::export_stream(
            self.state.store.clone(),
            caller.organization_id.clone(),
            selection,
            format,
        );
        Ok(lease.bound(stream))
    }
}
