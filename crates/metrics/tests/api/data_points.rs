//! Time-series data points: atomic batches, bucketed aggregations with the
//! same answers on both backends, tag filters and tenancy.

use metrix_core::authn::{Role, Scope};
use metrix_core::time::{now_micros, timestamp};
use metrix_proto::common::v1::TimeRange;
use metrix_proto::metrics::v1::*;
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

const MINUTE: i64 = 60_000_000;

fn point(name: &str, kind: DataPointType, value: f64, at: i64, route: &str) -> DataPoint {
    DataPoint {
        name: name.to_owned(),
        r#type: kind as i32,
        value,
        unit: "ms".to_owned(),
        tags: [("route".to_owned(), route.to_owned())].into_iter().collect(),
        timestamp: Some(timestamp(at)),
        app_id: "api".to_owned(),
        ..Default::default()
    }
}

async fn points_aggregate_exactly_per_bucket(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let writer = app.issuer.api_key(&organization, &[Scope::MetricsWrite]);
    // Two whole minutes, aligned to the epoch, ten minutes ago.
    let base = (now_micros() - 10 * MINUTE).div_euclid(MINUTE) * MINUTE;
    let mut points = Vec::new();
    for (index, value) in [1.0, 2.0, 3.0, 4.0, 10.0].into_iter().enumerate() {
        points.push(point(
            "api.latency",
            DataPointType::Timing,
            value,
            base + index as i64 * 1_000_000,
            "/a",
        ));
    }
    for value in [100.0, 200.0] {
        points.push(point(
            "api.latency",
            DataPointType::Timing,
            value,
            base + MINUTE + 5_000_000,
            "/b",
        ));
    }
    let recorded = app
        .client()
        .record_data_points(with_api_key(RecordDataPointsRequest { data_points: points }, &writer))
        .await
        .expect("recorded")
        .into_inner();
    assert_eq!(recorded.accepted_count, 7);

    let reader = app.user(&organization, Role::CompanyUser);
    let query = |aggregation: Aggregation, route: Option<&str>| QueryDataPointsRequest {
        name: "api.latency".into(),
        tags: route
            .map(|route| [("route".to_owned(), route.to_owned())].into_iter().collect())
            .unwrap_or_default(),
        time_range: Some(TimeRange {
            start_time: Some(timestamp(base)),
            end_time: Some(timestamp(base + 2 * MINUTE)),
        }),
        bucket_width: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
        aggregation: aggregation as i32,
        ..Default::default()
    };
    let run = |request: QueryDataPointsRequest| {
        let mut client = app.client();
        let request = authorized(request, &reader);
        async move { client.query_data_points(request).await.expect("queried").into_inner() }
    };
    let values = |response: &QueryDataPointsResponse| -> Vec<(i64, f64, i64)> {
        response
            .buckets
            .iter()
            .map(|bucket| {
                let start = metrix_core::time::micros_of(bucket.start_time.as_ref().expect("start")).expect("valid");
                (
                    (start - base) / MINUTE,
                    (bucket.value * 1e9).round() / 1e9,
                    bucket.count,
                )
            })
            .collect()
    };
    let mean = run(query(Aggregation::Unspecified, None)).await;
    assert_eq!(
        mean.aggregation,
        Aggregation::Mean as i32,
        "timings default to the mean"
    );
    assert_eq!(values(&mean), [(0, 4.0, 5), (1, 150.0, 2)]);
    assert_eq!(
        values(&run(query(Aggregation::Median, None)).await),
        [(0, 3.0, 5), (1, 150.0, 2)]
    );
    assert_eq!(
        values(&run(query(Aggregation::P90, None)).await),
        [(0, 7.6, 5), (1, 190.0, 2)]
    );
    assert_eq!(values(&run(query(Aggregation::Max, Some("/a"))).await), [(0, 10.0, 5)]);
    assert_eq!(values(&run(query(Aggregation::Count, Some("/b"))).await), [(1, 2.0, 2)]);
    let whole = run(QueryDataPointsRequest {
        bucket_width: None,
        ..query(Aggregation::Sum, None)
    })
    .await;
    assert_eq!(values(&whole), [(0, 320.0, 7)]);

    let dashboard = app
        .client()
        .get_dashboard(authorized(GetDashboardRequest::default(), &reader))
        .await
        .expect("dashboard")
        .into_inner()
        .dashboard
        .expect("dashboard");
    assert_eq!(dashboard.recent_data_points.len(), 7);
    assert_eq!(dashboard.recent_data_points[0].tags["route"], "/b");

    let stranger = app.user(&new_organization(), Role::Admin);
    let elsewhere = app
        .client()
        .query_data_points(authorized(query(Aggregation::Count, None), &stranger))
        .await
        .expect("queried")
        .into_inner();
    assert!(elsewhere.buckets.is_empty(), "another organisation sees nothing");
}

async fn a_bad_point_rejects_the_whole_batch(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let writer = app.issuer.api_key(&organization, &[Scope::MetricsWrite]);
    let now = now_micros();
    let result = app
        .client()
        .record_data_points(with_api_key(
            RecordDataPointsRequest {
                data_points: vec![
                    point("queue.depth", DataPointType::Gauge, 3.0, now, "/a"),
                    point("requests", DataPointType::Counter, -1.0, now, "/a"),
                    DataPoint {
                        r#type: 0,
                        ..point("Bad Name", DataPointType::Gauge, 1.0, now, "/a")
                    },
                ],
            },
            &writer,
        ))
        .await;
    let status = assert_code(result, Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["data_points[1].value", "data_points[2].name", "data_points[2].type"]
    );
    let reader = app.user(&organization, Role::CompanyUser);
    let stored = app
        .client()
        .query_data_points(authorized(
            QueryDataPointsRequest {
                name: "queue.depth".into(),
                ..Default::default()
            },
            &reader,
        ))
        .await
        .expect("queried")
        .into_inner();
    assert!(stored.buckets.is_empty(), "nothing of a refused batch is stored");
    let fine = app
        .client()
        .query_data_points(authorized(
            QueryDataPointsRequest {
                name: "queue.depth".into(),
                bucket_width: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                time_range: Some(TimeRange {
                    start_time: Some(timestamp(now - 86_400_000_000)),
                    end_time: Some(timestamp(now)),
                }),
                ..Default::default()
            },
            &reader,
        ))
        .await;
    let status = assert_code(fine, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["bucket_width"]);
}

/// ListDataPointSeries: every series by name with the tag keys its points
/// carry, its latest point's type and unit, its count and time span; pages
/// and prefixes; nothing of another organisation.
async fn series_are_listed_with_their_tag_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let writer = app.issuer.api_key(&organization, &[Scope::MetricsWrite]);
    let base = (now_micros() - 10 * MINUTE).div_euclid(MINUTE) * MINUTE;
    let mut queue_depth = point("queue.depth", DataPointType::Gauge, 3.0, base + MINUTE, "/q");
    queue_depth.tags.insert("region".to_owned(), "eu".to_owned());
    queue_depth.unit = "jobs".to_owned();
    let batches = [
        vec![
            point("api.latency", DataPointType::Timing, 5.0, base, "/a"),
            point("api.latency", DataPointType::Timing, 7.0, base + 2 * MINUTE, "/b"),
            queue_depth,
        ],
        // A later batch with an older point: the span widens, the latest point stays.
        vec![{
            let mut early = point("api.latency", DataPointType::Timing, 1.0, base - MINUTE, "/c");
            early.tags.insert("status".to_owned(), "500".to_owned());
            early.unit = "s".to_owned();
            early
        }],
        vec![point("billing.runs", DataPointType::Counter, 1.0, base, "/r")],
    ];
    for batch in batches {
        app.client()
            .record_data_points(with_api_key(RecordDataPointsRequest { data_points: batch }, &writer))
            .await
            .expect("recorded");
    }
    let reader = app.user(&organization, Role::CompanyUser);
    let list = |request: ListDataPointSeriesRequest, token: &str| {
        let mut client = app.client();
        let request = authorized(request, token);
        async move { client.list_data_point_series(request).await }
    };
    let all = list(ListDataPointSeriesRequest::default(), &reader)
        .await
        .expect("listed")
        .into_inner();
    let names: Vec<&str> = all.series.iter().map(|series| series.name.as_str()).collect();
    assert_eq!(names, ["api.latency", "billing.runs", "queue.depth"]);
    let latency = &all.series[0];
    assert_eq!(latency.tag_keys, ["route", "status"]);
    assert_eq!(latency.point_count, 3);
    assert_eq!(latency.r#type, DataPointType::Timing as i32);
    assert_eq!(
        latency.unit, "ms",
        "the unit of the latest point, not of the last batch"
    );
    assert_eq!(latency.first_point_time, Some(timestamp(base - MINUTE)));
    assert_eq!(latency.last_point_time, Some(timestamp(base + 2 * MINUTE)));
    assert_eq!(all.series[2].tag_keys, ["region", "route"]);
    assert_eq!(all.series[2].unit, "jobs");

    // Pages of one, and a prefix.
    let first = list(
        ListDataPointSeriesRequest {
            page_size: 1,
            ..Default::default()
        },
        &reader,
    )
    .await
    .expect("listed")
    .into_inner();
    assert_eq!(first.series[0].name, "api.latency");
    let second = list(
        ListDataPointSeriesRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        },
        &reader,
    )
    .await
    .expect("listed")
    .into_inner();
    assert_eq!(second.series[0].name, "billing.runs");
    let prefixed = list(
        ListDataPointSeriesRequest {
            name_prefix: "queue.".into(),
            ..Default::default()
        },
        &reader,
    )
    .await
    .expect("listed")
    .into_inner();
    let names: Vec<&str> = prefixed.series.iter().map(|series| series.name.as_str()).collect();
    assert_eq!(names, ["queue.depth"]);

    // Another organisation sees none of them.
    let stranger = app.user(&new_organization(), Role::Admin);
    let seen = list(ListDataPointSeriesRequest::default(), &stranger)
        .await
        .expect("listed")
        .into_inner();
    assert!(seen.series.is_empty(), "{:?}", seen.series);
}

both_backends!(
    points_aggregate_exactly_per_bucket,
    a_bad_point_rejects_the_whole_batch,
    series_are_listed_with_their_tag_keys,
);
