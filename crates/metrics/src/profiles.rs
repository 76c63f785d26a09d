//! User profiles, kept from the tracking API's messages: what each stored
//! message changes (`ProfileChange`), folded per call into the writes the
//! store makes in the transaction that stores the events (`ProfileWrites`),
//! alias resolution of a call's messages, and the trait filter of
//! ListUserProfiles. No I/O.
//!
//! Every stored message touches its user's profile (first and last seen);
//! `identify` merges its traits, `group` merges the group's traits into the
//! membership, `alias` links `previousId` to `userId`. Merges are by
//! top-level key, the later message winning.

use std::collections::{BTreeMap, HashMap};

use metrix_core::error::FieldViolation;
use serde_json::{Map, Value as Json};

use crate::events::NewEvent;

/// A JSON object of traits.
pub type Traits = Map<String, Json>;

/// What one message does to the profiles beyond touching its user's.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileUpdate {
    /// Nothing more (track, page, screen).
    Seen,
    /// Merges these traits into the user's.
    Identify(Traits),
    /// Makes the user a member of `group_id`, merging the group's traits.
    Group {
        /// The group.
        group_id: String,
        /// The group's traits.
        traits: Traits,
    },
    /// Links `previous_id` to the user.
    Alias {
        /// The id linked to the user.
        previous_id: String,
    },
}

/// The profile change of one tracking message, applied only when its event
/// is stored for the first time.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileChange {
    /// The event the message was stored as.
    pub event_id: String,
    /// The user, aliases resolved.
    pub user_id: String,
    /// The event's corrected time, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// What more it does.
    pub update: ProfileUpdate,
}

/// One user's part of a call's writes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserWrite {
    /// The earliest corrected time of the user's new messages.
    pub first_seen: i64,
    /// The latest.
    pub last_seen: i64,
    /// Their `identify` traits, merged in message order.
    pub traits: Traits,
}

/// What a call's new messages write, folded: users (sorted, so concurrent
/// calls lock rows in the same order), memberships, then aliases in message
/// order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileWrites {
    /// Per user id.
    pub users: BTreeMap<String, UserWrite>,
    /// Per (user id, group id): the group's traits, merged.
    pub groups: BTreeMap<(String, String), Traits>,
    /// (previous id, user id), in message order.
    pub aliases: Vec<(String, String)>,
}

impl ProfileWrites {
    /// The writes of `changes`, in message order.
    pub fn of<'a>(changes: impl IntoIterator<Item = &'a ProfileChange>) -> Self {
        let mut writes = ProfileWrites::default();
        for change in changes {
            if change.user_id.is_empty() {
                continue;
            }
            let user = writes.users.entry(change.user_id.clone()).or_insert_with(|| UserWrite {
                first_seen: change.occurred_at,
                last_seen: change.occurred_at,
                traits: Traits::new(),
            });
            user.first_seen = user.first_seen.min(change.occurred_at);
            user.last_seen = user.last_seen.max(change.occurred_at);
            match &change.update {
                ProfileUpdate::Seen => {}
                ProfileUpdate::Identify(traits) => merge_traits(&mut user.traits, traits),
                ProfileUpdate::Group { group_id, traits } => merge_traits(
                    writes
                        .groups
                        .entry((change.user_id.clone(), group_id.clone()))
                        .or_default(),
                    traits,
                ),
                ProfileUpdate::Alias { previous_id } => {
                    if *previous_id != change.user_id {
                        writes.aliases.push((previous_id.clone(), change.user_id.clone()));
                    }
                }
            }
        }
        writes
    }

    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.aliases.is_empty()
    }
}

/// Merges `over` into `base` by top-level key, `over` winning.
pub fn merge_traits(base: &mut Traits, over: &Traits) {
    for (key, value) in over {
        base.insert(key.clone(), value.clone());
    }
}

/// Stored traits (a JSON object as text); an empty object for anything
/// else, which the service never stores.
pub fn traits_of(text: &str) -> Traits {
    match serde_json::from_str(text) {
        Ok(Json::Object(traits)) => traits,
        _ => Traits::new(),
    }
}

/// An object of `properties` under `key`, or none.
fn object_at(properties: &Json, key: &str) -> Traits {
    match properties.get(key) {
        Some(Json::Object(object)) => object.clone(),
        _ => Traits::new(),
    }
}

/// The profile change of a stored tracking message's event (built by
/// `crate::tracking::message_event`, which keeps `traits`, `groupId` and
/// `previousId` in the event's properties).
pub fn change_of(event: &NewEvent) -> ProfileChange {
    let properties: Json = serde_json::from_str(&event.properties_json).unwrap_or(Json::Null);
    let text_at = |key: &str| {
        properties
            .get(key)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let update = match event.event_type.as_str() {
        "identify" => ProfileUpdate::Identify(object_at(&properties, "traits")),
        "group" => ProfileUpdate::Group {
            group_id: text_at("groupId"),
            traits: object_at(&properties, "traits"),
        },
        "alias" => ProfileUpdate::Alias {
            previous_id: text_at("previousId"),
        },
        _ => ProfileUpdate::Seen,
    };
    ProfileChange {
        event_id: event.event_id.clone(),
        user_id: event.user_id.clone(),
        occurred_at: event.occurred_at,
        update,
    }
}

/// Rewrites the users of a call's events, in message order, to the users
/// their ids are aliased to: by `stored` (alias id → user id) and by the
/// call's own earlier `alias` messages. An alias message's `previousId` is
/// linked to its (resolved) user for the messages after it.
pub fn resolve_aliases(events: &mut [NewEvent], stored: &HashMap<String, String>) {
    let mut linked: HashMap<String, String> = HashMap::new();
    for event in events.iter_mut() {
        let resolved = linked
            .get(&event.user_id)
            .or_else(|| stored.get(&event.user_id))
            .cloned();
        if let Some(user_id) = resolved {
            event.user_id = user_id;
        }
        if event.event_type == "alias"
            && let ProfileUpdate::Alias { previous_id } = change_of(event).update
            && !previous_id.is_empty()
            && previous_id != event.user_id
        {
            // Ids already linked to the previous id follow it.
            for user_id in linked.values_mut() {
                if *user_id == previous_id {
                    user_id.clone_from(&event.user_id);
                }
            }
            linked.insert(previous_id, event.user_id.clone());
        }
    }
}

/// The trait filter of ListUserProfiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraitFilter {
    /// Only profiles holding this trait; empty for every profile.
    pub key: String,
    /// And only those whose trait's string form is this.
    pub value: Option<String>,
}

impl TraitFilter {
    /// The filter of a request's `trait_key` and `trait_value`.
    pub fn parse(key: &str, value: &str) -> Result<Self, FieldViolation> {
        let key = key.trim();
        if key.is_empty() && !value.is_empty() {
            return Err(FieldViolation::new("trait_value", "needs trait_key"));
        }
        Ok(TraitFilter {
            key: key.to_owned(),
            value: (!value.is_empty()).then(|| value.to_owned()),
        })
    }

    /// Whether `traits` pass.
    pub fn matches(&self, traits: &Traits) -> bool {
        if self.key.is_empty() {
            return true;
        }
        match (traits.get(&self.key), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(trait_value), Some(wanted)) => string_form(trait_value) == *wanted,
        }
    }

    /// What the filter is, for the page token.
    pub fn fingerprint(&self) -> String {
        format!("{:?}|{:?}", self.key, self.value)
    }
}

/// A trait's string form: a string as it is, a whole number without a
/// fraction (`12`, as JSON senders write it, though a Struct carries it as
/// 12.0), anything else as JSON text.
pub fn string_form(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Number(number) => match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => format!("{}", float as i64),
            _ => number.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: &str, user_id: &str, event_type: &str, properties: Json) -> NewEvent {
        NewEvent {
            event_id: id.to_owned(),
            app_id: "web".to_owned(),
            user_id: user_id.to_owned(),
            event_type: event_type.to_owned(),
            event_name: String::new(),
            properties_json: properties.to_string(),
            session_id: "s".to_owned(),
            client_timestamp: None,
            sent_at: None,
            received_at: 10,
            occurred_at: 10,
            user_agent: String::new(),
            ip: String::new(),
        }
    }

    fn object(value: Json) -> Traits {
        match value {
            Json::Object(object) => object,
            _ => Traits::new(),
        }
    }

    #[test]
    fn later_traits_win_by_top_level_key() {
        let changes = [
            change_of(&event(
                "1",
                "u",
                "identify",
                json!({"traits": {"plan": "free", "a": {"x": 1}}}),
            )),
            change_of(&event(
                "2",
                "u",
                "identify",
                json!({"traits": {"plan": "pro", "a": {"y": 2}}}),
            )),
        ];
        let writes = ProfileWrites::of(&changes);
        assert_eq!(writes.users["u"].traits, object(json!({"plan": "pro", "a": {"y": 2}})));
    }

    #[test]
    fn an_alias_applies_to_the_later_messages_of_a_call() {
        let stored = HashMap::from([("old".to_owned(), "u1".to_owned())]);
        let mut events = vec![
            event("1", "anon", "page", json!({})),
            event("2", "u2", "alias", json!({"previousId": "anon"})),
            event("3", "anon", "track", json!({})),
            event("4", "old", "track", json!({})),
        ];
        resolve_aliases(&mut events, &stored);
        let users: Vec<&str> = events.iter().map(|event| event.user_id.as_str()).collect();
        assert_eq!(users, ["anon", "u2", "u2", "u1"]);
        let writes = ProfileWrites::of(&events.iter().map(change_of).collect::<Vec<_>>());
        assert_eq!(writes.aliases, [("anon".to_owned(), "u2".to_owned())]);
    }

    #[test]
    fn trait_values_compare_as_text() {
        let traits = object(json!({"plan": "pro", "seats": 12, "paid": true}));
        let filter = |key: &str, value: &str| TraitFilter::parse(key, value).unwrap();
        assert!(filter("plan", "").matches(&traits));
        assert!(filter("plan", "pro").matches(&traits));
        assert!(filter("seats", "12").matches(&traits));
        assert!(filter("seats", "12").matches(&object(json!({"seats": 12.0}))));
        assert!(filter("paid", "true").matches(&traits));
        assert!(!filter("plan", "free").matches(&traits));
        assert!(!filter("email", "").matches(&traits));
        assert!(TraitFilter::parse("", "pro").is_err());
    }
}
