//! The queued ingestion path under bad input and faults: text PostgreSQL
//! cannot store, a full queue, entries that can never be stored.

use std::time::Duration;

use metrix_core::authn::{Role, Scope};
use metrix_core::cache::Appended;
use metrix_metrics::ingest::{INGEST_STREAM, WRITERS_GROUP};
use metrix_proto::metrics::v1::*;
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::*;
use metrix_core::both_backends;

fn event(event_id: &str) -> Event {
    Event {
        event_id: event_id.to_owned(),
        app_id: "web".to_owned(),
        user_id: "u-1".to_owned(),
        event_type: "click".to_owned(),
        ..Default::default()
    }
}

async fn track(
    app: &TestApp,
    key: &str,
    events: Vec<Event>,
    asynchronous: bool,
) -> Result<TrackEventsResponse, tonic::Status> {
    app.client()
        .track_events(with_api_key(TrackEventsRequest { events, asynchronous }, key))
        .await
        .map(tonic::Response::into_inner)
}

/// The ids of the organisation's stored events.
async fn stored_ids(app: &TestApp, reader: &str) -> Vec<String> {
    let mut ids: Vec<String> = app
        .client()
        .list_events(authorized(
            ListEventsRequest {
                page_size: 1_000,
                ..Default::default()
            },
            reader,
        ))
        .await
        .expect("listed")
        .into_inner()
        .events
        .into_iter()
        .map(|event| event.event_id)
        .collect();
    ids.sort();
    ids
}

/// Polls until the organisation holds `wanted` events (queued ones are
/// stored by a writer), or gives up after ten seconds.
async fn wait_for_ids(app: &TestApp, reader: &str, wanted: &[String]) -> Vec<String> {
    let mut wanted = wanted.to_vec();
    wanted.sort();
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids = stored_ids(app, reader).await;
        if ids == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids
}

/// One event per string field with a NUL in it, each in a batch of five
/// good ones: only the bad event is refused, by name, on both paths.
async fn nul_characters_are_refused_per_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.user(&organization, Role::CompanyUser);
    type Poison = Box<dyn Fn(&mut Event)>;
    let poisoned: Vec<(&str, Poison)> = vec![
        ("event_id", Box::new(|event: &mut Event| event.event_id.push('\0'))),
        ("app_id", Box::new(|event: &mut Event| event.app_id = "we\0b".into())),
        ("user_id", Box::new(|event: &mut Event| event.user_id = "u\0".into())),
        (
            "event_type",
            Box::new(|event: &mut Event| event.event_type = "cl\0ick".into()),
        ),
        (
            "event_name",
            Box::new(|event: &mut Event| event.event_name = "\0".into()),
        ),
        (
            "session_id",
            Box::new(|event: &mut Event| event.session_id = "s-\0".into()),
        ),
        (
            "properties.plan",
            Box::new(|event: &mut Event| {
                event.properties = metrix_metrics::events::json_to_struct(&serde_json::json!({"plan": "pro\u{0}"}));
            }),
        ),
        (
            "properties.nested.list[1]",
            Box::new(|event: &mut Event| {
                event.properties =
                    metrix_metrics::events::json_to_struct(&serde_json::json!({"nested": {"list": ["ok", "\u{0}"]}}));
            }),
        ),
        (
            "properties.ke\0y",
            Box::new(|event: &mut Event| {
                event.properties = metrix_metrics::events::json_to_struct(&serde_json::json!({"ke\u{0}y": 1}));
            }),
        ),
    ];
    let mut expected = Vec::new();
    for (round, (field, poison)) in poisoned.iter().enumerate() {
        for asynchronous in [false, true] {
            let prefix = format!("nul-{round}-{asynchronous}");
            let mut events: Vec<Event> = (0..5).map(|index| event(&format!("{prefix}-{index}"))).collect();
            let mut bad = event(&format!("{prefix}-bad"));
            poison(&mut bad);
            events.insert(2, bad);
            let answer = track(&app, &key, events, asynchronous)
                .await
                .unwrap_or_else(|status| panic!("{field}: the batch is answered, not {status:?}"));
            let refused: Vec<(i32, &str)> = answer
                .results
                .iter()
                .filter(|result| result.status == TrackEventStatus::Rejected as i32)
                .map(|result| (result.index, result.field.as_str()))
                .collect();
            assert_eq!(refused, [(2, *field)], "{field}, asynchronous: {asynchronous}");
            expected.extend((0..5).map(|index| format!("{prefix}-{index}")));
        }
    }
    assert_eq!(wait_for_ids(&app, &reader, &expected).await.len(), expected.len());
    // A NUL in a looked-up id is a bad argument, not a failure of the store.
    let lookup = app
        .client()
        .get_event(authorized(
            GetEventRequest {
                event_id: "abc\0def".to_owned(),
            },
            &reader,
        ))
        .await;
    let status = lookup.expect_err("no such event");
    assert!(
        matches!(status.code(), Code::InvalidArgument | Code::NotFound),
        "{status:?}"
    );
}

/// Beyond the bound, a queued call is refused whole with RESOURCE_EXHAUSTED
/// and a retry hint; synchronous calls still go through.
async fn a_full_queue_refuses_with_a_retry_hint(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("METRIX_METRICS__QUEUE_WRITERS", "0"),
            ("METRIX_METRICS__QUEUE_MAX_DEPTH", "2"),
        ],
    )
    .await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    for index in 0..2 {
        let answer = track(&app, &key, vec![event(&format!("full-{index}"))], true)
            .await
            .expect("room left");
        assert_eq!(answer.results[0].status, TrackEventStatus::Queued as i32);
    }
    let refused = track(&app, &key, vec![event("full-2")], true)
        .await
        .expect_err("the queue is full");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let retry = refused
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a retry hint");
    assert!(retry >= Duration::from_secs(1));
    let stats = app.state.work_streams.maintain(INGEST_STREAM).await.expect("stats");
    assert_eq!(stats.depth, 2, "the refused batch was not queued");
    let synchronous = track(&app, &key, vec![event("full-sync")], false)
        .await
        .expect("stored");
    assert_eq!(synchronous.results[0].status, TrackEventStatus::Accepted as i32);
}

/// The payload of an entry holding `events` of `organization`, stamped as
/// the handlers stamp them.
fn entry_of(organization: &str, events: &[Event]) -> Vec<u8> {
    let now = metrix_core::time::timestamp(metrix_core::time::now_micros());
    ListEventsResponse {
        events: events
            .iter()
            .map(|event| Event {
                organization_id: organization.to_owned(),
                received_at: Some(now),
                corrected_timestamp: Some(now),
                session_id: "s-1".to_owned(),
                ..event.clone()
            })
            .collect(),
        next_page_token: String::new(),
    }
    .encode_to_vec()
}

async fn append(app: &TestApp, payload: &[u8]) {
    let appended = app
        .state
        .work_streams
        .append(INGEST_STREAM, WRITERS_GROUP, payload, 100)
        .await
        .expect("appended");
    assert!(matches!(appended, Appended::Queued(_)));
}

/// An entry that does not decode goes to the dead letters at once; one
/// whose event the store refuses is stored but for that event, which goes
/// to the dead letters after the bounded attempts. Neither holds back the
/// entries behind it, and the stream is left empty.
async fn poison_entries_go_to_the_dead_letters(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("METRIX_METRICS__QUEUE_CLAIM_AFTER_SECONDS", "1"),
            ("METRIX_METRICS__QUEUE_MAX_ATTEMPTS", "2"),
        ],
    )
    .await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.user(&organization, Role::CompanyUser);
    append(&app, b"\xff\x00 not a batch").await;
    // Past the parser (as an older version or another writer could queue
    // it): PostgreSQL refuses the NUL, SQLite stores it.
    let unstorable = Event {
        user_id: "u\0".to_owned(),
        ..event("dead-nul")
    };
    append(
        &app,
        &entry_of(&organization, &[event("dead-ok-1"), unstorable, event("dead-ok-2")]),
    )
    .await;
    let answer = track(&app, &key, vec![event("after-1"), event("after-2")], true)
        .await
        .expect("queued behind the poison");
    assert_eq!(answer.results[0].status, TrackEventStatus::Queued as i32);

    let nul_is_storable = matches!(backend, Backend::Embedded);
    let mut expected: Vec<String> = ["dead-ok-1", "dead-ok-2", "after-1", "after-2"]
        .map(str::to_owned)
        .to_vec();
    if nul_is_storable {
        expected.push("dead-nul".to_owned());
    }
    assert_eq!(wait_for_ids(&app, &reader, &expected).await.len(), expected.len());

    let wanted_letters = if nul_is_storable { 1 } else { 2 };
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = metrix_metrics::ingest::dead_letters(app.state.work_streams.as_ref(), 10)
            .await
            .expect("listed");
        if letters.len() >= wanted_letters {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(letters.len(), wanted_letters, "{letters:?}");
    let undecodable = letters
        .iter()
        .find(|letter| letter.organization_id.is_none())
        .expect("the garbage");
    assert!(undecodable.reason.contains("does not decode"), "{}", undecodable.reason);
    if !nul_is_storable {
        let refused = letters
            .iter()
            .find(|letter| letter.organization_id.as_deref() == Some(organization.as_str()))
            .expect("the unstorable event");
        assert_eq!(refused.event_ids, ["dead-nul"], "only the refused event is dead");
    }
    let mut stats = app.state.work_streams.maintain(INGEST_STREAM).await.expect("stats");
    for _ in 0..50 {
        if stats.depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = app.state.work_streams.maintain(INGEST_STREAM).await.expect("stats");
    }
    assert_eq!(
        (stats.depth, stats.dead_letters),
        (0, wanted_letters as u64),
        "{stats:?}"
    );
}

both_backends!(
    nul_characters_are_refused_per_event,
    a_full_queue_refuses_with_a_retry_hint,
    poison_entries_go_to_the_dead_letters,
);
