//! The dashboard of an organisation or one of its apps (GetDashboard), and
//! its live stream (WatchDashboard), refreshed when events arrive.

use std::time::Duration;

use metrix_core::authn::Scope;
use metrix_core::time::now_micros;
use metrix_proto::metrics::v1::*;
use tonic::{Request, Status};

use crate::app::events_channel;
use crate::dashboard;
use crate::error::MetricsError;

use super::{MetricsApi, READERS, ResponseStream, authorize};

/// A watched dashboard is sent at least this often, so rolling windows move.
const DASHBOARD_REFRESH: Duration = Duration::from_secs(30);

/// A watched dashboard is sent at most this often.
const DASHBOARD_DEBOUNCE: Duration = Duration::from_secs(1);

impl MetricsApi {
    pub(super) async fn get_dashboard(
        &self,
        request: Request<GetDashboardRequest>,
    ) -> Result<GetDashboardResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let now = now_micros();
        let window = dashboard::resolve_window(request.range_preset, request.custom_range.as_ref(), now)
            .map_err(MetricsError::from)?;
        let dashboard = dashboard::compute(
            &self.state.store,
            &caller.organization_id,
            request.app_id.trim(),
            window,
            now,
        )
        .await?;
        Ok(GetDashboardResponse {
            dashboard: Some(dashboard),
        })
    }

    pub(super) async fn watch_dashboard(
        &self,
        request: Request<WatchDashboardRequest>,
    ) -> Result<ResponseStream<WatchDashboardResponse>, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let lease = crate::streams::admit(&request, &caller).await?;
        let request = request.into_inner();
        // Validate once up front so a bad request fails the call, not the stream.
        dashboard::resolve_window(request.range_preset, request.custom_range.as_ref(), now_micros())
            .map_err(MetricsError::from)?;
        let mut announcements = self
            .state
            .pubsub
            .subscribe(&events_channel(&caller.organization_id))
            .await
            .map_err(|error| metrix_core::error::unavailable("cannot subscribe to events", &error))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let store = self.state.store.clone();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            let app_id = request.app_id.trim().to_owned();
            let compute = || async {
                let now = now_micros();
                let window = dashboard::resolve_window(request.range_preset, request.custom_range.as_ref(), now)
                    .map_err(MetricsError::from)?;
                dashboard::compute(&store, &caller.organization_id, &app_id, window, now).await
            };
            let mut refresh = tokio::time::interval(DASHBOARD_REFRESH);
            refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut dirty = true;
            let mut last_sent: Option<tokio::time::Instant> = None;
            loop {
                if dirty {
                    // Debounce: at most one dashboard per DASHBOARD_DEBOUNCE.
                    if let Some(sent) = last_sent {
                        tokio::time::sleep_until(sent + DASHBOARD_DEBOUNCE).await;
                    }
                    let message = compute()
                        .await
                        .map(|dashboard| WatchDashboardResponse {
                            dashboard: Some(dashboard),
                        })
                        .map_err(Status::from);
                    if sender.send(message).await.is_err() {
                        return;
                    }
                    last_sent = Some(tokio::time::Instant::now());
                    refresh.reset();
                    dirty = false;
                }
                tokio::select! {
                    () = sender.closed() => return,
                    _ = refresh.tick() => dirty = true,
                    announcement = announcements.next() => match announcement {
                        Some(payload) => {
                            dirty |= crate::ingest::noticed_events(&payload)
                                .iter()
                                .any(|(noticed_app, _)| app_id.is_empty() || *noticed_app == app_id);
                        }
                        None => return,
                    },
                }
            }
        });
        Ok(lease.bound(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }
}
