//! Input the store cannot hold: PostgreSQL text cannot contain NUL, so an
//! event with a NUL in any string field must be REJECTED on its own, naming
//! the field, while the rest of its batch is stored — on both paths. On the
//! queued path an unstorable event that slipped through would poison its
//! whole entry, and with it the valid events queued beside it.

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};

use crate::client::{EventStatus, Mode, Outcome};
use crate::harness::{Database, Metrix, MetrixOptions, Persistence, Postgres, Redis};
use crate::load::Ledger;
use crate::verify::{Findings, none_stored};

/// Events per batch, one of them bad.
const BATCH_SIZE: usize = 6;
/// Where the bad event sits in its batch.
const BAD_INDEX: usize = 2;

/// A valid event using every string field.
fn full_event(event_id: &str) -> Json {
    json!({
        "eventId": event_id,
        "appId": "fault",
        "eventType": "click",
        "eventName": "Clicked the button",
        "userId": "u-1",
        "sessionId": "s-1",
        "properties": {"plan": "pro", "meta": {"plan": "pro"}, "tags": ["a", "b"]}
    })
}

/// One place a NUL can hide.
struct Case {
    /// What is poisoned, for messages.
    place: &'static str,
    /// The `field` answers accepted as naming it: exact names, or a prefix
    /// ending in `*` (the path inside `properties` may be spelled in more
    /// than one way).
    fields: &'static [&'static str],
    poison: fn(&mut Json),
}

const CASES: &[Case] = &[
    Case {
        place: "eventId",
        fields: &["eventId", "event_id"],
        poison: |event| event["eventId"] = json!("bad\u{0}id"),
    },
    Case {
        place: "appId",
        fields: &["appId", "app_id"],
        poison: |event| event["appId"] = json!("fa\u{0}ult"),
    },
    Case {
        place: "eventType",
        fields: &["eventType", "event_type"],
        poison: |event| event["eventType"] = json!("cl\u{0}ick"),
    },
    Case {
        place: "eventName",
        fields: &["eventName", "event_name"],
        poison: |event| event["eventName"] = json!("Clicked\u{0}"),
    },
    Case {
        place: "userId",
        fields: &["userId", "user_id"],
        poison: |event| event["userId"] = json!("u-\u{0}1"),
    },
    Case {
        place: "sessionId",
        fields: &["sessionId", "session_id"],
        poison: |event| event["sessionId"] = json!("s-\u{0}1"),
    },
    Case {
        place: "a properties key",
        fields: &["properties*"],
        poison: |event| event["properties"] = json!({"pl\u{0}an": "pro"}),
    },
    Case {
        place: "a properties value",
        fields: &["properties.plan"],
        poison: |event| event["properties"]["plan"] = json!("p\u{0}ro"),
    },
    Case {
        place: "a nested properties key",
        fields: &["properties.meta*"],
        poison: |event| event["properties"]["meta"] = json!({"pl\u{0}an": "pro"}),
    },
    Case {
        place: "a nested properties value",
        fields: &["properties.meta.plan"],
        poison: |event| event["properties"]["meta"]["plan"] = json!("p\u{0}ro"),
    },
    Case {
        place: "a string in a properties list",
        fields: &["properties.tags*"],
        poison: |event| event["properties"]["tags"] = json!(["a", "b\u{0}"]),
    },
];

fn names_field(field: &str, accepted: &[&str]) -> bool {
    accepted.iter().any(|name| match name.strip_suffix('*') {
        Some(prefix) => field.starts_with(prefix),
        None => field == *name,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_every_string_field() {
    let postgres = Postgres::start().await;
    let redis = Redis::start(Persistence::AppendOnly).await;
    let metrix = Metrix::spawn(MetrixOptions::new(Database::Postgres(postgres.url())).redis(redis.url())).await;
    let ledger = Ledger::new();
    let mut findings = Findings::default();
    let mut valid: BTreeSet<String> = BTreeSet::new();
    let mut poisoned: BTreeSet<String> = BTreeSet::new();

    for mode in [Mode::Synchronous, Mode::Queued] {
        let good_status = match mode {
            Mode::Synchronous => EventStatus::Accepted,
            Mode::Queued => EventStatus::Queued,
        };
        for case in CASES {
            let mut events = ledger.fresh_events(BATCH_SIZE);
            for event in &mut events {
                let id = event["eventId"].as_str().expect("an id").to_owned();
                *event = full_event(&id);
            }
            (case.poison)(&mut events[BAD_INDEX]);
            for (index, event) in events.iter().enumerate() {
                let id = event["eventId"].as_str().expect("an id").to_owned();
                if index == BAD_INDEX {
                    poisoned.insert(id);
                } else {
                    valid.insert(id);
                }
            }
            let outcome = ledger.send(&metrix.api, mode, events).await;
            let Outcome::Answered(results) = &outcome else {
                findings.add(format!(
                    "{mode:?} batch with a NUL in {}: the whole call failed: {}",
                    case.place,
                    outcome.describe()
                ));
                continue;
            };
            let bad = &results[BAD_INDEX];
            findings.expect(
                bad.status == EventStatus::Rejected && names_field(&bad.field, case.fields),
                || {
                    format!(
                        "{mode:?} batch with a NUL in {}: the bad event was answered {:?} naming field {:?} ({:?}), \
                         not REJECTED naming {:?}",
                        case.place, bad.status, bad.field, bad.reason, case.fields
                    )
                },
            );
            let others: Vec<&EventStatus> = results
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != BAD_INDEX)
                .map(|(_, result)| &result.status)
                .filter(|status| **status != good_status)
                .collect();
            findings.expect(others.is_empty(), || {
                format!(
                    "{mode:?} batch with a NUL in {}: the valid events were answered {others:?}, not {good_status:?}",
                    case.place
                )
            });
        }
    }

    // Every valid event is stored, whichever batch it came in and whatever
    // the answer was; none of the bad ones is.
    let store = metrix.event_store();
    let organization_id = metrix.account.organization_id.clone();
    let stored = match store
        .wait_until_stored(&organization_id, &valid, "in a batch beside an event with a NUL")
        .await
    {
        Ok(stored) => Some(stored),
        Err(problem) => {
            findings.add(problem);
            findings.keep(store.stored(&organization_id).await)
        }
    };
    if let Some(stored) = stored {
        findings.keep(none_stored(&stored, &poisoned, "with a NUL"));
    }

    // A NUL in a path parameter is bad input too.
    let (status, body) = metrix.api.get("/v1/events/abc%00def").await;
    findings.expect(status == 400, || {
        format!("GET /v1/events/abc%00def answered {status}, not 400: {body}")
    });
    findings.assert_none();
}
