//! Product events: batches with per-item outcomes, idempotency, reads,
//! counts, exports, dashboards and live streams.

use std::time::Duration;

use futures::StreamExt as _;
use metrix_core::authn::{Role, Scope};
use metrix_core::time::{now_micros, timestamp};
use metrix_proto::metrics::v1::*;
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

fn event(event_id: &str, event_type: &str, user_id: &str) -> Event {
    Event {
        event_id: event_id.to_owned(),
        app_id: "web".to_owned(),
        user_id: user_id.to_owned(),
        event_type: event_type.to_owned(),
        ..Default::default()
    }
}

async fn track(app: &TestApp, key: &str, events: Vec<Event>) -> TrackEventsResponse {
    app.client()
        .track_events(with_api_key(
            TrackEventsRequest {
                events,
                asynchronous: false,
            },
            key,
        ))
        .await
        .expect("the batch is answered")
        .into_inner()
}

/// The number of events the caller's organisation has stored.
async fn stored_count(app: &TestApp, caller: &str) -> i64 {
    app.client()
        .count_events(authorized(CountEventsRequest::default(), caller))
        .await
        .expect("counted")
        .into_inner()
        .total_count
}

async fn batches_report_each_event_and_never_store_one_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let first = track(
        &app,
        &key,
        vec![
            event("e-1", "signup", "u-1"),
            event("e-2", "Page View", "u-1"),
            event("", "page_view", "u-2"),
            event("e-1", "signup", "u-1"),
            Event {
                app_id: String::new(),
                ..event("e-4", "click", "u-3")
            },
        ],
    )
    .await;
    let outcomes: Vec<_> = first
        .results
        .iter()
        .map(|result| (result.index, result.status, result.field.as_str()))
        .collect();
    let accepted = TrackEventStatus::Accepted as i32;
    let rejected = TrackEventStatus::Rejected as i32;
    let duplicate = TrackEventStatus::Duplicate as i32;
    assert_eq!(
        outcomes,
        [
            (0, accepted, ""),
            (1, rejected, "event_type"),
            (2, accepted, ""),
            (3, duplicate, ""),
            (4, rejected, "app_id")
        ]
    );
    assert!(!first.results[1].reason.is_empty());
    assert!(!first.results[2].event_id.is_empty(), "a missing id is generated");
    assert!(
        !first.results[0].session_id.is_empty(),
        "a missing session is generated"
    );
    assert_eq!(
        (first.accepted_count, first.rejected_count, first.duplicate_count),
        (3, 2, 1)
    );

    let generated = first.results[2].event_id.clone();
    let again = track(
        &app,
        &key,
        vec![event("e-1", "signup", "u-1"), event(&generated, "page_view", "u-2")],
    )
    .await;
    assert!(
        again.results.iter().all(|result| result.status == duplicate),
        "{again:?}"
    );

    let reader = app.user(&organization, Role::CompanyUser);
    assert_eq!(stored_count(&app, &reader).await, 2, "each event stored once");

    let read_only = app.issuer.api_key(&organization, &[Scope::Read]);
    let refused = app
        .client()
        .track_events(with_api_key(
            TrackEventsRequest {
                events: vec![event("e-9", "click", "u-1")],
                asynchronous: false,
            },
            &read_only,
        ))
        .await;
    assert_code(refused, Code::PermissionDenied);
    let too_many = app
        .client()
        .track_events(with_api_key(
            TrackEventsRequest {
                events: (0..1_001)
                    .map(|index| event(&format!("x-{index}"), "click", ""))
                    .collect(),
                asynchronous: false,
            },
            &key,
        ))
        .await;
    let status = assert_code(too_many, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["events"]);
}

async fn events_are_read_back_newest_first_with_skew_corrected(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let now = now_micros();
    let minute = 60_000_000;
    let mut events = Vec::new();
    for index in 0..5 {
        events.push(Event {
            timestamp: Some(timestamp(now - (10 - index) * minute)),
            ..event(
                &format!("e-{index}"),
                if index % 2 == 0 { "click" } else { "signup" },
                "u-1",
            )
        });
    }
    // A client whose clock runs an hour fast.
    events.push(Event {
        timestamp: Some(timestamp(now + 60 * minute - 2 * minute)),
        sent_at: Some(timestamp(now + 60 * minute)),
        ..event("skewed", "click", "u-2")
    });
    track(&app, &key, events).await;

    let reader = app.user(&organization, Role::Analyst);
    let skewed = app
        .client()
        .get_event(authorized(
            GetEventRequest {
                event_id: "skewed".into(),
            },
            &reader,
        ))
        .await
        .expect("found")
        .into_inner()
        .event
        .expect("event");
    let corrected = metrix_core::time::micros_of(&skewed.corrected_timestamp.expect("corrected")).expect("valid");
    assert!(
        (corrected - (now - 2 * minute)).abs() < 5 * 1_000_000,
        "corrected to two minutes ago"
    );
    assert_eq!(skewed.organization_id, organization);

    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client()
            .list_events(authorized(
                ListEventsRequest {
                    filter: Some(EventFilter {
                        event_types: vec!["click".into()],
                        ..Default::default()
                    }),
                    page_size: 2,
                    page_token: page_token.clone(),
                },
                &reader,
            ))
            .await
            .expect("page")
            .into_inner();
        ids.extend(page.events.into_iter().map(|event| event.event_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(ids, ["skewed", "e-4", "e-2", "e-0"]);

    let stranger = app.admin(&new_organization());
    assert_code(
        app.client()
            .get_event(authorized(
                GetEventRequest {
                    event_id: "skewed".into(),
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
    assert_eq!(stored_count(&app, &stranger).await, 0);
}

async fn dashboards_count_from_the_rollups(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let mut events = Vec::new();
    for index in 0..12 {
        let event_type = match index % 4 {
            0 | 1 => "page_view",
            2 => "click",
            _ => "signup",
        };
        events.push(event(&format!("d-{index}"), event_type, &format!("u-{}", index % 3)));
    }
    events.push(Event {
        app_id: "ios".into(),
        ..event("d-ios", "page_view", "u-9")
    });
    track(&app, &key, events).await;
    let reader = app.user(&organization, Role::CompanyUser);
    let dashboard = |app_id: &str, range_preset: RangePreset| {
        let mut client = app.client();
        let request = authorized(
            GetDashboardRequest {
                app_id: app_id.to_owned(),
                range_preset: range_preset as i32,
                custom_range: None,
            },
            &reader,
        );
        async move {
            client
                .get_dashboard(request)
                .await
                .expect("dashboard")
                .into_inner()
                .dashboard
                .expect("dashboard")
        }
    };
    let hour = dashboard("", RangePreset::Hour).await;
    assert_eq!(hour.total_events, 13);
    assert_eq!(hour.events_last_minute, 13);
    assert_eq!(hour.series.len(), 60);
    assert_eq!(hour.series.iter().map(|bucket| bucket.event_count).sum::<i64>(), 13);
    let top: Vec<_> = hour
        .top_event_types
        .iter()
        .map(|share| (share.event_type.as_str(), share.count))
        .collect();
    assert_eq!(top, [("page_view", 7), ("click", 3), ("signup", 3)]);
    assert!((hour.top_event_types[0].share - 7.0 / 13.0).abs() < 1e-12);
    let active = hour.active_users.expect("active users");
    assert_eq!(
        (active.daily, active.weekly, active.monthly, active.in_range),
        (4, 4, 4, 4)
    );

    let web_week = dashboard("web", RangePreset::Week).await;
    assert_eq!(web_week.total_events, 12);
    assert_eq!(web_week.series.len(), 7);
    assert_eq!(web_week.active_users.expect("active users").in_range, 3);

    let bad = app
        .client()
        .get_dashboard(authorized(
            GetDashboardRequest {
                app_id: String::new(),
                range_preset: RangePreset::Custom as i32,
                custom_range: None,
            },
            &reader,
        ))
        .await;
    let status = assert_code(bad, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["custom_range"]);
}

async fn a_watched_dashboard_updates_when_events_arrive(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.user(&organization, Role::CompanyUser);
    let mut stream = app
        .client()
        .watch_dashboard(authorized(WatchDashboardRequest::default(), &reader))
        .await
        .expect("the stream opens")
        .into_inner();
    let first = stream
        .next()
        .await
        .expect("a first dashboard")
        .expect("not an error")
        .dashboard
        .expect("dashboard");
    assert_eq!(first.total_events, 0);
    // Redis subscriptions settle asynchronously; keep sending until seen.
    let mut updated = None;
    for attempt in 0..5 {
        track(&app, &key, vec![event(&format!("w-{attempt}"), "signup", "u-1")]).await;
        if let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(3), stream.next()).await {
            let dashboard = message.dashboard.expect("dashboard");
            if dashboard.total_events > 0 {
                updated = Some(dashboard);
                break;
            }
        }
    }
    let updated = updated.expect("an updated dashboard within seconds of an event");
    assert!(updated.total_events >= 1);
    assert_eq!(updated.top_event_types[0].event_type, "signup");
}

async fn watched_events_arrive_live_and_filtered(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.issuer.api_key(&organization, &[Scope::Read]);
    let mut stream = app
        .client()
        .watch_events(with_api_key(
            WatchEventsRequest {
                filter: Some(EventFilter {
                    event_types: vec!["signup".into()],
                    ..Default::default()
                }),
            },
            &reader,
        ))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut received = None;
    for attempt in 0..5 {
        track(
            &app,
            &key,
            vec![
                event(&format!("c-{attempt}"), "click", "u-1"),
                event(&format!("s-{attempt}"), "signup", "u-1"),
            ],
        )
        .await;
        if let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
            received = message.event;
            break;
        }
    }
    let received = received.expect("a live event");
    assert_eq!(received.event_type, "signup", "the filter applies");
}

async fn events_export_as_csv_and_ndjson(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let now = now_micros();
    track(
        &app,
        &key,
        (0..3)
            .map(|index| Event {
                timestamp: Some(timestamp(now - (3 - index) * 1_000_000)),
                event_name: "Quoted, \"name\"".into(),
                ..event(&format!("x-{index}"), "click", "u-1")
            })
            .collect(),
    )
    .await;
    let reader = app.user(&organization, Role::CompanyUser);
    let export = |format: ExportFormat| {
        let mut client = app.client();
        let request = authorized(
            ExportEventsRequest {
                filter: None,
                format: format as i32,
            },
            &reader,
        );
        async move {
            let mut stream = client.export_events(request).await.expect("export").into_inner();
            let mut data = String::new();
            let mut count = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("chunk");
                data.push_str(&chunk.data);
                count += chunk.event_count;
            }
            (data, count)
        }
    };
    let (csv, count) = export(ExportFormat::Csv).await;
    assert_eq!(count, 3);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("event_id,app_id,user_id,event_type"));
    assert!(
        lines[1].starts_with("x-0,web,u-1,click,\"Quoted, \"\"name\"\"\""),
        "{}",
        lines[1]
    );
    assert!(lines[3].starts_with("x-2,"), "oldest first");
    let (ndjson, count) = export(ExportFormat::Ndjson).await;
    assert_eq!(count, 3);
    let first: serde_json::Value = serde_json::from_str(ndjson.lines().next().expect("a line")).expect("json");
    assert_eq!(first["eventId"], "x-0");
    assert_eq!(first["eventName"], "Quoted, \"name\"");
}

async fn queued_events_are_stored_once_by_the_writers(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let batch = || TrackEventsRequest {
        events: vec![
            event("q-1", "signup", "u-1"),
            event("q-2", "click", "u-1"),
            event("q-3", "Bad Type", "u-1"),
        ],
        asynchronous: true,
    };
    let queued = app
        .client()
        .track_events(with_api_key(batch(), &key))
        .await
        .expect("queued")
        .into_inner();
    let statuses: Vec<i32> = queued.results.iter().map(|result| result.status).collect();
    let queued_status = TrackEventStatus::Queued as i32;
    assert_eq!(
        statuses,
        [queued_status, queued_status, TrackEventStatus::Rejected as i32]
    );
    // At least once into the stream: the same batch again.
    app.client()
        .track_events(with_api_key(batch(), &key))
        .await
        .expect("queued again");
    let single = app
        .client()
        .track_event(with_api_key(
            TrackEventRequest {
                event: Some(event("q-4", "click", "u-2")),
                asynchronous: true,
            },
            &key,
        ))
        .await
        .expect("queued")
        .into_inner();
    assert_eq!(single.status, queued_status);

    let reader = app.user(&organization, Role::CompanyUser);
    let mut total = 0;
    for _ in 0..100 {
        total = stored_count(&app, &reader).await;
        if total >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(total, 3, "stored exactly once by event id");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored_count(&app, &reader).await, 3);
}

/// A store from before the sketches: its hourly and daily `user_activity`
/// rows and its raw events' users become sketches when the service starts,
/// and the retired table goes.
async fn retired_activity_rows_become_sketches(backend: Backend) {
    use metrix_metrics::events::{Arrival, parse_event};
    use metrix_metrics::store::MetricsStore;
    use metrix_metrics::store::events::bucket_start;

    let test_database = backend.database().await;
    let url = secrecy::SecretString::from(test_database.url());
    let database = metrix_metrics::connect_and_migrate(&url).await.expect("migrated");
    // A store whose data migration has not run yet.
    metrix_core::with_pool!(&database, pool => sqlx::query("DELETE FROM _metrics_data_migrations")
        .execute(pool)
        .await
        .map(|_| ()))
    .expect("the record removed");
    let store = MetricsStore::new(database.clone());
    let now = now_micros();
    let arrival = Arrival {
        received_at: now,
        user_agent: "test/1".into(),
        ip: "127.0.0.1".into(),
        oldest_retained: 0,
    };
    // A raw event of user-4, stored by this version (so its buckets already
    // have sketches).
    let stored = parse_event(&event("e-4", "click", "user-4"), &arrival).expect("valid");
    store.insert_events("org-1", &[stored]).await.expect("stored");
    // What the previous version kept: users 1 to 3 per hour and day.
    let hour = bucket_start(now, 3_600);
    let day = bucket_start(now, 86_400);
    metrix_core::with_pool!(&database, pool => async {
        sqlx::query(
            "CREATE TABLE user_activity (organization_id TEXT NOT NULL, app_id TEXT NOT NULL, \
             width_seconds INTEGER NOT NULL, bucket_start BIGINT NOT NULL, user_id TEXT NOT NULL, \
             PRIMARY KEY (organization_id, width_seconds, bucket_start, app_id, user_id))",
        )
        .execute(pool)
        .await?;
        for (width, bucket) in [(3_600, hour), (86_400, day)] {
            for user in ["user-1", "user-2", "user-3"] {
                sqlx::query("INSERT INTO user_activity VALUES ('org-1', 'web', $1, $2, $3)")
                    .bind(width)
                    .bind(bucket)
                    .bind(user)
                    .execute(pool)
                    .await?;
            }
        }
        Ok::<_, sqlx::Error>(())
    }.await)
    .expect("the retired table written");

    // Starting again folds it in; starting once more changes nothing.
    for _ in 0..2 {
        metrix_metrics::connect_and_migrate(&url).await.expect("upgraded");
        for (width, bucket, users) in [(60, bucket_start(now, 60), 1), (3_600, hour, 4), (86_400, day, 4)] {
            let sketches = store
                .activity_sketches("org-1", "web", width, bucket, bucket + 1)
                .await
                .expect("sketches read");
            assert_eq!(sketches.len(), 1, "one sketch of width {width}");
            assert_eq!(sketches[0].1.count(), users, "users of the bucket of width {width}");
        }
    }
    let retired = metrix_core::with_pool!(&database, pool => sqlx::query("SELECT * FROM user_activity")
        .execute(pool)
        .await
        .map(|_| ()));
    assert!(retired.is_err(), "user_activity is dropped");
}

/// The fold of `user_activity` is a data migration: it runs once per
/// database and is recorded, and a later start neither runs it again nor
/// looks at the data.
async fn data_migrations_run_once_per_database(backend: Backend) {
    use metrix_metrics::store::MetricsStore;
    use metrix_metrics::store::data_migrations::FOLD_USER_ACTIVITY;
    use metrix_metrics::store::events::bucket_start;

    let test_database = backend.database().await;
    let url = secrecy::SecretString::from(test_database.url());
    let database = metrix_metrics::connect_and_migrate(&url).await.expect("migrated");
    let recorded: Vec<String> = metrix_core::with_pool!(&database, pool => sqlx::query_scalar(
        "SELECT name FROM _metrics_data_migrations ORDER BY name"
    )
    .fetch_all(pool)
    .await)
    .expect("records read");
    assert_eq!(
        recorded,
        [FOLD_USER_ACTIVITY],
        "the first start records the data migration"
    );

    // A table of the retired shape appearing after the migration ran is not
    // folded by later starts: they skip the recorded migration.
    let hour = bucket_start(now_micros(), 3_600);
    metrix_core::with_pool!(&database, pool => async {
        sqlx::query(
            "CREATE TABLE user_activity (organization_id TEXT NOT NULL, app_id TEXT NOT NULL, \
             width_seconds INTEGER NOT NULL, bucket_start BIGINT NOT NULL, user_id TEXT NOT NULL)",
        )
        .execute(pool)
        .await?;
        sqlx::query("INSERT INTO user_activity VALUES ('org-1', 'web', 3600, $1, 'user-1')")
            .bind(hour)
            .execute(pool)
            .await?;
        Ok::<_, sqlx::Error>(())
    }.await)
    .expect("the retired table written");
    metrix_metrics::connect_and_migrate(&url).await.expect("started again");
    let store = MetricsStore::new(database.clone());
    assert!(
        store.run_data_migrations().await.expect("checked").is_empty(),
        "nothing left to run"
    );
    let left: i64 = metrix_core::with_pool!(&database, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_activity"
    )
    .fetch_one(pool)
    .await)
    .expect("the table is still there");
    assert_eq!(left, 1, "the second start did not fold the table");
    let sketches = store
        .activity_sketches("org-1", "web", 3_600, hour, hour + 1)
        .await
        .expect("sketches read");
    assert!(sketches.is_empty(), "no sketch was written");
    let recorded: i64 = metrix_core::with_pool!(&database, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM _metrics_data_migrations"
    )
    .fetch_one(pool)
    .await)
    .expect("records counted");
    assert_eq!(recorded, 1, "recorded once");
}

/// Text with every character the storage paths treat specially comes back
/// exactly as sent.
async fn awkward_text_is_stored_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.user(&organization, Role::CompanyUser);
    let name = "tab\there, newline\nhere, return\r, backslash \\N and \\t, quote \" ünïcödé ✓";
    let sent = Event {
        event_name: name.to_owned(),
        session_id: "s\\1".to_owned(),
        properties: metrix_metrics::events::json_to_struct(&serde_json::json!({
            "path": "C:\\temp\tfile\n",
            "nested": {"list": [1.5, "two\\", null, true]},
        })),
        ..event("awkward-1", "page_view", "user\\with\\backslashes")
    };
    let answer = track(&app, &key, vec![sent.clone()]).await;
    assert_eq!(answer.results[0].status, TrackEventStatus::Accepted as i32);
    let stored = app
        .client()
        .get_event(authorized(
            GetEventRequest {
                event_id: "awkward-1".to_owned(),
            },
            &reader,
        ))
        .await
        .expect("read back")
        .into_inner()
        .event
        .expect("the event");
    assert_eq!(stored.event_name, name);
    assert_eq!(stored.session_id, sent.session_id);
    assert_eq!(stored.user_id, sent.user_id);
    assert_eq!(stored.properties, sent.properties);
}

/// Batches sharing event ids, sent at the same moment, store each event
/// once and count it once.
async fn concurrent_batches_with_the_same_ids_store_each_event_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.user(&organization, Role::CompanyUser);
    let batch = |first: usize| {
        (first..first + 40)
            .map(|index| event(&format!("race-{index}"), "click", &format!("u-{}", index % 7)))
            .collect::<Vec<_>>()
    };
    // Overlapping batches: 0..40, 20..60, 40..80, 0..40 again.
    let answers = futures::future::join_all([0, 20, 40, 0].map(|first| track(&app, &key, batch(first)))).await;
    let accepted: usize = answers
        .iter()
        .flat_map(|answer| &answer.results)
        .filter(|result| result.status == TrackEventStatus::Accepted as i32)
        .count();
    assert_eq!(accepted, 80, "each of the 80 distinct events is accepted exactly once");
    assert_eq!(stored_count(&app, &reader).await, 80);
    let dashboard = app
        .client()
        .get_dashboard(authorized(GetDashboardRequest::default(), &reader))
        .await
        .expect("dashboard")
        .into_inner()
        .dashboard
        .expect("dashboard");
    assert_eq!(dashboard.total_events, 80, "the rollups count each event once");
    assert_eq!(dashboard.active_users.expect("active users").in_range, 7);
}

both_backends!(
    awkward_text_is_stored_exactly,
    concurrent_batches_with_the_same_ids_store_each_event_once,
    retired_activity_rows_become_sketches,
    data_migrations_run_once_per_database,
    queued_events_are_stored_once_by_the_writers,
    batches_report_each_event_and_never_store_one_twice,
    events_are_read_back_newest_first_with_skew_corrected,
    dashboards_count_from_the_rollups,
    a_watched_dashboard_updates_when_events_arrive,
    watched_events_arrive_live_and_filtered,
    events_export_as_csv_and_ndjson,
);
