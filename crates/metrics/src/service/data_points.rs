//! Custom data points: recording and querying series.

use metrix_core::authn::Scope;
use metrix_core::error::{Violations, within};
use metrix_core::page_token;
use metrix_core::time::{now_micros, timestamp};
use metrix_proto::metrics::v1::*;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tonic::Request;

use crate::error::MetricsError;

use super::{LIST_PAGE, MetricsApi, READERS, authorize};

/// Where the next page of ListDataPointSeries starts: after this name.
#[derive(Serialize, Deserialize)]
struct SeriesCursor {
    name: String,
}

impl MetricsApi {
    pub(super) async fn record_data_points(
        &self,
        request: Request<RecordDataPointsRequest>,
    ) -> Result<RecordDataPointsResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::MetricsWrite])?.clone();
        let encoded_length = request.get_ref().encoded_len();
        let request = request.into_inner();
        if encoded_length > crate::events::MAX_BATCH_BYTES {
            return Err(MetricsError::BatchTooLarge {
                bytes: encoded_length,
                limit: crate::events::MAX_BATCH_BYTES,
            });
        }
        if request.data_points.is_empty() || request.data_points.len() > crate::data_points::MAX_BATCH_POINTS {
            return Err(MetricsError::invalid(
                "data_points",
                format!("must hold 1 to {} points", crate::data_points::MAX_BATCH_POINTS),
            ));
        }
        let now = now_micros();
        let mut violations = Violations::new();
        let mut points = Vec::with_capacity(request.data_points.len());
        for (index, point) in request.data_points.iter().enumerate() {
            let prefix = format!("data_points[{index}]");
            if let Some(parsed) = violations.check_all(within(&prefix, crate::data_points::parse_point(point, now))) {
                points.push(parsed);
            }
        }
        violations.finish()?;
        self.state
            .store
            .insert_data_points(&caller.organization_id, &points, now)
            .await?;
        Ok(RecordDataPointsResponse {
            accepted_count: points.len() as i64,
        })
    }

    pub(super) async fn list_data_point_series(
        &self,
        request: Request<ListDataPointSeriesRequest>,
    ) -> Result<ListDataPointSeriesResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let name_prefix = request.name_prefix.trim();
        if name_prefix.chars().count() > crate::data_points::MAX_NAME_LENGTH {
            return Err(MetricsError::invalid(
                "name_prefix",
                format!("must be at most {} characters", crate::data_points::MAX_NAME_LENGTH),
            ));
        }
        let filters = format!("series|{name_prefix}");
        let (size, cursor) =
            page_token::page_request::<SeriesCursor>(request.page_size, &request.page_token, &filters, LIST_PAGE)
                .map_err(MetricsError::from)?;
        let after = cursor.map(|cursor| cursor.name).unwrap_or_default();
        let rows = self
            .state
            .store
            .list_series(&caller.organization_id, name_prefix, &after, size + 1)
            .await?;
        let (rows, next_page_token) =
            page_token::paginate(rows, size, &filters, |row| SeriesCursor { name: row.name.clone() });
        Ok(ListDataPointSeriesResponse {
            series: rows
                .into_iter()
                .map(|row| DataPointSeries {
                    name: row.name,
                    r#type: row.point_type as i32,
                    unit: row.unit,
                    tag_keys: row.tag_keys,
                    point_count: row.point_count,
                    first_point_time: Some(timestamp(row.first_at)),
                    last_point_time: Some(timestamp(row.last_at)),
                })
                .collect(),
            next_page_token,
        })
    }

    pub(super) async fn query_data_points(
        &self,
        request: Request<QueryDataPointsRequest>,
    ) -> Result<QueryDataPointsResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let query = crate::data_points::parse_query(request.get_ref(), now_micros()).map_err(MetricsError::from)?;
        let series_type = match query.point_type {
            DataPointType::Unspecified => self
                .state
                .store
                .series_type(&caller.organization_id, &query.name)
                .await?
                .unwrap_or(DataPointType::Gauge),
            known => known,
        };
        let aggregation = crate::data_points::resolve_aggregation(query.aggregation, series_type);
        let buckets = self
            .state
            .store
            .aggregate_data_points(&caller.organization_id, &query, aggregation)
            .await?;
        Ok(QueryDataPointsResponse {
            buckets: buckets
                .into_iter()
                .map(|(start, value, count)| DataPointBucket {
                    start_time: Some(timestamp(start)),
                    end_time: Some(timestamp(query.bucket_end(start))),
                    value,
                    count,
                })
                .collect(),
            aggregation: aggregation as i32,
            time_range: Some(metrix_proto::common::v1::TimeRange {
                start_time: Some(timestamp(query.start)),
                end_time: Some(timestamp(query.end)),
            }),
        })
    }
}
