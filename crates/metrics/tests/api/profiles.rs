//! User profiles kept from the tracking API's messages: merged traits,
//! groups, aliases (a later message of the previous id is stored under the
//! user), exactly once on a re-sent message, tenancy, pagination and trait
//! filters.

use metrix_core::authn::{Role, Scope};
use metrix_proto::metrics::v1::*;
use serde_json::{Value as Json, json};
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

/// A Struct of a JSON object.
fn object(value: Json) -> Option<prost_types::Struct> {
    let Json::Object(object) = value else {
        panic!("an object");
    };
    Some(prost_types::Struct {
        fields: object
            .into_iter()
            .map(|(key, value)| (key, proto_value(value)))
            .collect(),
    })
}

fn proto_value(value: Json) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(flag) => Kind::BoolValue(flag),
        Json::Number(number) => Kind::NumberValue(number.as_f64().unwrap()),
        Json::String(text) => Kind::StringValue(text),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(proto_value).collect(),
        }),
        Json::Object(_) => Kind::StructValue(object(value).unwrap()),
    };
    prost_types::Value { kind: Some(kind) }
}

fn text(value: &str) -> Option<prost_types::Value> {
    Some(proto_value(Json::String(value.to_owned())))
}

/// A message of `call` from `user_id` (or, when it starts with `anon:`, from
/// that anonymous id).
fn message(call: &str, message_id: &str, user: &str) -> TrackingMessage {
    let (user_id, anonymous_id) = match user.strip_prefix("anon:") {
        Some(anonymous) => (None, text(anonymous)),
        None => (text(user), None),
    };
    TrackingMessage {
        r#type: call.to_owned(),
        message_id: text(message_id),
        user_id,
        anonymous_id,
        event: if call == "track" {
            "Clicked".to_owned()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn identify(message_id: &str, user: &str, traits: Json) -> TrackingMessage {
    TrackingMessage {
        traits: object(traits),
        ..message("identify", message_id, user)
    }
}

async fn send(app: &TestApp, key: &str, batch: Vec<TrackingMessage>) {
    app.tracking
        .clone()
        .batch(with_api_key(
            TrackingBatch {
                batch,
                ..Default::default()
            },
            key,
        ))
        .await
        .expect("the batch is stored");
}

async fn profile(app: &TestApp, caller: &str, user_id: &str) -> Result<UserProfile, tonic::Status> {
    app.client()
        .get_user_profile(authorized(
            GetUserProfileRequest {
                user_id: user_id.to_owned(),
            },
            caller,
        ))
        .await
        .map(|response| response.into_inner().user_profile.expect("a profile"))
}

fn traits(profile: &UserProfile) -> Json {
    let fields = profile.traits.clone().unwrap_or_default().fields;
    Json::Object(fields.into_iter().map(|(key, value)| (key, json_of(value))).collect())
}

fn json_of(value: prost_types::Value) -> Json {
    use prost_types::value::Kind;
    match value.kind {
        Some(Kind::StringValue(text)) => Json::String(text),
        Some(Kind::NumberValue(number)) => json!(number),
        Some(Kind::BoolValue(flag)) => Json::Bool(flag),
        Some(Kind::StructValue(fields)) => Json::Object(
            fields
                .fields
                .into_iter()
                .map(|(key, value)| (key, json_of(value)))
                .collect(),
        ),
        Some(Kind::ListValue(list)) => Json::Array(list.values.into_iter().map(json_of).collect()),
        _ => Json::Null,
    }
}

async fn profiles_merge_traits_groups_and_aliases_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.user(&organization, Role::CompanyUser);
    let plan = vec![
        identify("m-1", "u1", json!({"plan": "free", "email": "ada@example.com"})),
        message("page", "m-2", "anon:a1"),
        identify("m-3", "anon:a1", json!({"referrer": "ad", "plan": "trial"})),
        identify("m-4", "u1", json!({"plan": "pro"})),
        TrackingMessage {
            group_id: text("acme"),
            traits: object(json!({"name": "Acme", "seats": 12})),
            ..message("group", "m-5", "u1")
        },
        TrackingMessage {
            previous_id: text("a1"),
            ..message("alias", "m-6", "u1")
        },
        message("track", "m-7", "anon:a1"),
    ];
    send(&app, &key, plan.clone()).await;

    let u1 = profile(&app, &reader, "u1").await.expect("u1's profile");
    assert_eq!(u1.user_id, "u1");
    assert_eq!(
        traits(&u1),
        json!({"plan": "pro", "email": "ada@example.com", "referrer": "ad"}),
        "later identify wins; the alias's traits fill in, the user's own win"
    );
    assert_eq!(u1.aliases, ["a1"]);
    assert_eq!(u1.groups.len(), 1);
    assert_eq!(u1.groups[0].group_id, "acme");
    let group_traits = traits(&UserProfile {
        traits: u1.groups[0].traits.clone(),
        ..Default::default()
    });
    assert_eq!(group_traits, json!({"name": "Acme", "seats": 12.0}));
    assert!(u1.first_seen_time.is_some() && u1.last_seen_time.is_some());

    // The alias answers with the user it is linked to; its own profile is folded in.
    assert_eq!(profile(&app, &reader, "a1").await.expect("a1 resolves").user_id, "u1");

    // The later anonymous track was stored under the user.
    let tracked = app
        .client()
        .get_event(authorized(
            GetEventRequest {
                event_id: "m-7".to_owned(),
            },
            &reader,
        ))
        .await
        .expect("m-7 is stored")
        .into_inner()
        .event
        .expect("an event");
    assert_eq!(tracked.user_id, "u1");

    // The profile's events: the user's and the alias's, newest first.
    let events = app
        .client()
        .list_user_profile_events(authorized(
            ListUserProfileEventsRequest {
                user_id: "u1".to_owned(),
                ..Default::default()
            },
            &reader,
        ))
        .await
        .expect("listed")
        .into_inner();
    let mut ids: Vec<&str> = events.events.iter().map(|event| event.event_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["m-1", "m-2", "m-3", "m-4", "m-5", "m-6", "m-7"]);
    let times: Vec<_> = events
        .events
        .iter()
        .map(|event| {
            let time = event.corrected_timestamp.expect("a time");
            (time.seconds, time.nanos)
        })
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first");

    // Re-sent, the messages change nothing; a new identify would.
    let before = profile(&app, &reader, "u1").await.expect("u1");
    let mut resent = plan;
    resent[3] = identify("m-4", "u1", json!({"plan": "enterprise"}));
    send(&app, &key, resent).await;
    let after = profile(&app, &reader, "u1").await.expect("u1");
    assert_eq!(after, before, "a re-sent message changes no profile");

    // Another organisation's reader finds nothing.
    let stranger = app.user(&new_organization(), Role::Admin);
    assert_code(profile(&app, &stranger, "u1").await, Code::NotFound);
    assert_code(
        app.client()
            .list_user_profile_events(authorized(
                ListUserProfileEventsRequest {
                    user_id: "u1".to_owned(),
                    ..Default::default()
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
    // Readers by scope: `read` reads, `events:write` does not.
    let read_key = app.issuer.api_key(&organization, &[Scope::Read]);
    app.client()
        .get_user_profile(with_api_key(
            GetUserProfileRequest {
                user_id: "u1".to_owned(),
            },
            &read_key,
        ))
        .await
        .expect("a read key reads profiles");
    assert_code(
        app.client()
            .get_user_profile(with_api_key(
                GetUserProfileRequest {
                    user_id: "u1".to_owned(),
                },
                &key,
            ))
            .await,
        Code::PermissionDenied,
    );
}

async fn list_user_profiles(app: &TestApp, caller: &str, request: ListUserProfilesRequest) -> ListUserProfilesResponse {
    app.client()
        .list_user_profiles(authorized(request, caller))
        .await
        .expect("listed")
        .into_inner()
}

async fn profiles_page_and_filter_by_trait(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let key = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    let reader = app.user(&organization, Role::Analyst);
    let mut batch = Vec::new();
    for index in 0..7 {
        let plan = if index % 2 == 0 { "pro" } else { "free" };
        batch.push(identify(
            &format!("i-{index}"),
            &format!("user-{index}"),
            json!({"plan": plan, "seats": index}),
        ));
    }
    batch.push(message("track", "t-1", "no-traits"));
    send(&app, &key, batch).await;

    // Every profile, by user id, three a page.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list_user_profiles(
            &app,
            &reader,
            ListUserProfilesRequest {
                page_size: 3,
                page_token: page_token.clone(),
                ..Default::default()
            },
        )
        .await;
        assert!(page.user_profiles.len() <= 3);
        seen.extend(page.user_profiles.into_iter().map(|profile| profile.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            "no-traits",
            "user-0",
            "user-1",
            "user-2",
            "user-3",
            "user-4",
            "user-5",
            "user-6"
        ]
    );

    // By presence, by value (a string, a number's JSON text), paged.
    let ids = |response: &ListUserProfilesResponse| -> Vec<String> {
        response
            .user_profiles
            .iter()
            .map(|profile| profile.user_id.clone())
            .collect()
    };
    let with_plan = list_user_profiles(
        &app,
        &reader,
        ListUserProfilesRequest {
            trait_key: "plan".to_owned(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(with_plan.user_profiles.len(), 7);
    let pro_first = list_user_profiles(
        &app,
        &reader,
        ListUserProfilesRequest {
            trait_key: "plan".to_owned(),
            trait_value: "pro".to_owned(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&pro_first), ["user-0", "user-2"]);
    let pro_rest = list_user_profiles(
        &app,
        &reader,
        ListUserProfilesRequest {
            trait_key: "plan".to_owned(),
            trait_value: "pro".to_owned(),
            page_size: 2,
            page_token: pro_first.next_page_token.clone(),
        },
    )
    .await;
    assert_eq!(ids(&pro_rest), ["user-4", "user-6"]);
    let seats = list_user_profiles(
        &app,
        &reader,
        ListUserProfilesRequest {
            trait_key: "seats".to_owned(),
            trait_value: "3".to_owned(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&seats), ["user-3"]);

    // A token is bound to its filter; a value needs a key.
    let status = assert_code(
        app.client()
            .list_user_profiles(authorized(
                ListUserProfilesRequest {
                    trait_key: "plan".to_owned(),
                    trait_value: "free".to_owned(),
                    page_token: pro_first.next_page_token,
                    ..Default::default()
                },
                &reader,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["page_token"]);
    let status = assert_code(
        app.client()
            .list_user_profiles(authorized(
                ListUserProfilesRequest {
                    trait_value: "pro".to_owned(),
                    ..Default::default()
                },
                &reader,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["trait_value"]);
    let status = assert_code(
        app.client()
            .get_user_profile(authorized(GetUserProfileRequest::default(), &reader))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["user_id"]);

    // A profile's events, one a page.
    let first = app
        .client()
        .list_user_profile_events(authorized(
            ListUserProfileEventsRequest {
                user_id: "no-traits".to_owned(),
                page_size: 1,
                ..Default::default()
            },
            &reader,
        ))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].event_id, "t-1");
    assert!(first.next_page_token.is_empty());
}

both_backends!(
    profiles_merge_traits_groups_and_aliases_exactly_once,
    profiles_page_and_filter_by_trait,
);
