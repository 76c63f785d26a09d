//! The Segment-compatible tracking service: each call's messages read into
//! events (`crate::tracking`), their users resolved through aliases, stored
//! exactly once by `messageId`, all or nothing per call, with the user
//! profile changes of the new ones (`crate::profiles`) in the same
//! transaction.

use std::collections::BTreeSet;
use std::sync::Arc;

use metrix_core::authn::{Authentication, Authenticator, Principal, Scope};
use metrix_core::error::Violations;
use metrix_core::server::answer;
use metrix_proto::metrics::v1::tracking_service_server::TrackingService;
use metrix_proto::metrics::v1::{TrackingBatch, TrackingMessage, TrackingResponse};
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::app::MetricsState;
use crate::error::MetricsError;
use crate::events::NewEvent;
use crate::profiles::{change_of, resolve_aliases};
use crate::tracking::{BatchDefaults, Call, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES, message_event};

use super::{MetricsApi, READERS, authorize};

/// The `TrackingService` implementation.
#[derive(Clone)]
pub struct TrackingApi {
    events: MetricsApi,
    /// Checks a write key sent in the body.
    authenticator: Authenticator,
}

impl TrackingApi {
    /// The service over the metrics service's state.
    pub fn new(state: Arc<MetricsState>, authenticator: Authenticator) -> Self {
        Self {
            events: MetricsApi::new(state),
            authenticator,
        }
    }

    /// The caller: the request's credential (HTTP Basic with the write key,
    /// a bearer token or `x-api-key`), else the body's write key.
    async fn caller<T>(&self, request: &mut Request<T>, write_key: &str) -> Result<Principal, Status> {
        let anonymous = matches!(
            request.extensions().get::<Authentication>(),
            None | Some(Authentication::Anonymous)
        );
        if anonymous && !write_key.trim().is_empty() {
            let checked = self.authenticator.verify_api_key(write_key).await;
            request.extensions_mut().insert(checked);
        }
        authorize(request, &READERS, &[Scope::EventsWrite]).cloned()
    }

    async fn single(
        &self,
        mut request: Request<TrackingMessage>,
        call: Call,
    ) -> Result<TrackingResponse, MetricsError> {
        let write_key = request.get_ref().write_key.clone();
        let caller = self.caller(&mut request, &write_key).await?;
        let arrival = self.events.arrival(&request);
        let message = request.into_inner();
        if message.encoded_len() > MAX_MESSAGE_BYTES {
            return Err(MetricsError::invalid(
                "body",
                format!("a message may hold at most {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        let defaults = BatchDefaults {
            forwarded: forwards(&caller),
            ..BatchDefaults::default()
        };
        let event = message_event(&message, Some(call), &defaults, &arrival)?;
        self.store(&caller, vec![event]).await
    }

    async fn batch(&self, mut request: Request<TrackingBatch>) -> Result<TrackingResponse, MetricsError> {
        // The batch's key, else the first message's (SDKs put it on either).
        let write_key = std::iter::once(&request.get_ref().write_key)
            .chain(request.get_ref().batch.iter().map(|message| &message.write_key))
            .find(|key| !key.trim().is_empty())
            .cloned()
            .unwrap_or_default();
        let caller = self.caller(&mut request, &write_key).await?;
        let arrival = self.events.arrival(&request);
        let batch = request.into_inner();
        if batch.batch.is_empty() || batch.batch.len() > MAX_BATCH_MESSAGES {
            return Err(MetricsError::invalid(
                "batch",
                format!("must hold 1 to {MAX_BATCH_MESSAGES} messages"),
            ));
        }
        let defaults = BatchDefaults {
            sent_at: batch.sent_at.clone(),
            context: batch.context.clone(),
            forwarded: forwards(&caller),
        };
        let mut violations = Violations::new();
        let mut events = Vec::with_capacity(batch.batch.len());
        for (index, message) in batch.batch.iter().enumerate() {
            let place = format!("batch[{index}]");
            if message.encoded_len() > MAX_MESSAGE_BYTES {
                violations.add(place, format!("a message may hold at most {MAX_MESSAGE_BYTES} bytes"));
                continue;
            }
            if let Some(event) = violations.check_all(metrix_core::error::within(
                &place,
                message_event(message, None, &defaults, &arrival),
            )) {
                events.push(event);
            }
        }
        violations.finish()?;
        self.store(&caller, events).await
    }

    /// Stores the events once each (a `messageId` stored before is a
    /// success, as is one repeated within the call), their users resolved
    /// through the aliases stored and those of the call's earlier messages,
    /// with the profile changes of those that were new in the same
    /// transaction.
    async fn store(&self, caller: &Principal, mut unique: Vec<NewEvent>) -> Result<TrackingResponse, MetricsError> {
        let mut seen = BTreeSet::new();
        unique.retain(|event| seen.insert(event.event_id.clone()));
        let state = self.events.state();
        let ids: Vec<String> = unique
            .iter()
            .map(|event| event.user_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let aliased = state.store.aliased_users(&caller.organization_id, &ids).await?;
        resolve_aliases(&mut unique, &aliased);
        let changes: Vec<_> = unique.iter().map(change_of).collect();
        crate::ingest::store_tracked_and_announce(state, &caller.organization_id, &unique, &changes).await?;
        Ok(TrackingResponse { success: true })
    }
}

/// Whether `caller` forwards its users' events: a service token or API key
/// with the scope `events:forward` (a person's session never is).
fn forwards(caller: &Principal) -> bool {
    !caller.is_user() && caller.scopes.contains(&Scope::EventsForward)
}

#[tonic::async_trait]
impl TrackingService for TrackingApi {
    async fn track(&self, request: Request<TrackingMessage>) -> Result<Response<TrackingResponse>, Status> {
        answer(self.single(request, Call::Track).await)
    }
    async fn page(&self, request: Request<TrackingMessage>) -> Result<Response<TrackingResponse>, Status> {
        answer(self.single(request, Call::Page).await)
    }
    async fn screen(&self, request: Request<TrackingMessage>) -> Result<Response<TrackingResponse>, Status> {
        answer(self.single(request, Call::Screen).await)
    }
    async fn identify(&self, request: Request<TrackingMessage>) -> Result<Response<TrackingResponse>, Status> {
        answer(self.single(request, Call::Identify).await)
    }
    async fn group(&self, request: Request<TrackingMessage>) -> Result<Response<TrackingResponse>, Status> {
        answer(self.single(request, Call::Group).await)
    }
    async fn alias(&self, request: Request<TrackingMessage>) -> Result<Response<TrackingResponse>, Status> {
        answer(self.single(request, Call::Alias).await)
    }
    async fn batch(&self, request: Request<TrackingBatch>) -> Result<Response<TrackingResponse>, Status> {
        answer(TrackingApi::batch(self, request).await)
    }
}
