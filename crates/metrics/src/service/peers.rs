//! Peer values for the benchmark service.

use futures::Stream;
use metrix_core::authn::{Scope, principal};
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token::{self, PageLimits};
use metrix_core::reference;
use metrix_proto::metrics::v1::*;
use secrecy::SecretString;
use tonic::{Request, Status};

use crate::error::MetricsError;
use crate::store::{MetricsStore, PeerCursor, PeerFilter};

use super::{MetricsApi, ResponseStream, granularity_filter, metric_filter, period_bound};

/// Page sizes of ListPeerValues (default, maximum).
const PEER_PAGE: PageLimits = PageLimits {
    default: 10_000,
    maximum: 100_000,
};

/// Peer values per stream message.
const PEER_MESSAGE_SIZE: u32 = 1_000;

impl MetricsApi {
    pub(super) async fn list_peer_values(
        &self,
        request: Request<ListPeerValuesRequest>,
    ) -> Result<ResponseStream<ListPeerValuesResponse>, MetricsError> {
        principal(&request)?.require_platform_scope(Scope::PeersRead)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let metric_ids = metric_filter("metric_ids", &request.metric_ids)
            .map_err(|problems| violations.extend(problems))
            .unwrap_or_default();
        let sector_id = request.sector_id.trim().to_owned();
        if !sector_id.is_empty() && reference::sector(&sector_id).is_none() {
            violations.push(FieldViolation::new("sector_id", "is not a sector"));
        }
        let revenue_band_id = request.revenue_band_id.trim().to_owned();
        if !revenue_band_id.is_empty() && reference::revenue_band(&revenue_band_id).is_none() {
            violations.push(FieldViolation::new("revenue_band_id", "is not a revenue band"));
        }
        let granularity = granularity_filter("period_granularity", request.period_granularity)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let start_month = period_bound("start_period", &request.start_period, false)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let end_month = period_bound("end_period", &request.end_period, true)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        violations.finish()?;
        let mut exclude_company_ids: Vec<String> = request
            .exclude_company_ids
            .iter()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .collect();
        exclude_company_ids.sort();
        exclude_company_ids.dedup();
        let mut exclude_organization_ids: Vec<String> = request
            .exclude_organization_ids
            .iter()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .collect();
        exclude_organization_ids.sort();
        exclude_organization_ids.dedup();
        let filter = PeerFilter {
            metric_ids,
            sector_id,
            revenue_band_id,
            granularity,
            start_month,
            end_month,
            exclude_company_ids,
            exclude_organization_ids,
        };
        let filters = format!(
            "peers|{}|{}|{}|{:?}|{:?}|{:?}|{}|{}",
            filter.metric_ids.join(","),
            filter.sector_id,
            filter.revenue_band_id,
            filter.granularity,
            filter.start_month,
            filter.end_month,
            filter.exclude_company_ids.join(","),
            filter.exclude_organization_ids.join(",")
        );
        let (page_size, cursor) =
            page_token::page_request::<PeerCursor>(request.page_size, &request.page_token, &filters, PEER_PAGE)
                .map_err(MetricsError::from)?;
        let store = self.state.store.clone();
        let stream = peer_value_stream(
            store,
            self.state.peer_key_secret.clone(),
            filter,
            filters,
            cursor,
            page_size,
        );
        Ok(Box::pin(stream))
    }
}

/// Streams one page of peer values in messages of up to 1,000, reading the
/// store a message at a time so memory stays flat however large the page.
fn peer_value_stream(
    store: MetricsStore,
    secret: SecretString,
    filter: PeerFilter,
    filters: String,
    first_cursor: Option<PeerCursor>,
    page_size: u32,
) -> impl Stream<Item = Result<ListPeerValuesResponse, Status>> + Send {
    struct Progress {
        cursor: Option<PeerCursor>,
        delivered: u32,
        finished: bool,
    }
    let progress = Progress {
        cursor: first_cursor,
        delivered: 0,
        finished: false,
    };
    futures::stream::unfold(progress, move |mut progress| {
        let store = store.clone();
        let secret = secret.clone();
        let filter = filter.clone();
        let filters = filters.clone();
        async move {
            if progress.finished {
                return None;
            }
            let remaining = page_size - progress.delivered;
            let wanted = remaining.min(PEER_MESSAGE_SIZE);
            // One more than wanted tells whether anything follows.
            let mut rows = match store.peer_values(&filter, progress.cursor.as_ref(), wanted + 1).await {
                Ok(rows) => rows,
                Err(error) => {
                    progress.finished = true;
                    return Some((Err(Status::from(error)), progress));
                }
            };
            let more = rows.len() > wanted as usize;
            rows.truncate(wanted as usize);
            progress.delivered += rows.len() as u32;
            progress.cursor = rows.last().map(|last| PeerCursor {
                metric_id: last.metric_id.clone(),
                period: last.period.clone(),
                peer_key: last.peer_key.clone(),
            });
            let page_full = progress.delivered >= page_size;
            let next_page_token = match (&progress.cursor, more && page_full) {
                (Some(cursor), true) => page_token::encode(cursor, &filters),
                _ => String::new(),
            };
            progress.finished = !more || page_full;
            let message = ListPeerValuesResponse {
                peer_values: rows
                    .into_iter()
                    .map(|row| PeerValue {
                        value: crate::peer_noise::perturb(&secret, &row.company_id, &row.metric_id, row.value),
                        organization_key: crate::peer_noise::organization_key(&secret, &row.organization_id),
                        metric_id: row.metric_id,
                        sector_id: row.sector_id,
                        revenue_band_id: row.revenue_band_id,
                        period: row.period,
                        peer_key: row.peer_key,
                    })
                    .collect(),
                next_page_token,
            };
            Some((Ok(message), progress))
        }
    })
}
