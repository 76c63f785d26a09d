//! User profiles: GetUserProfile, ListUserProfiles and
//! ListUserProfileEvents, read from what the tracking API's messages wrote
//! (`crate::profiles`, `store::profiles`).

use metrix_core::authn::Scope;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token;
use metrix_core::time::timestamp;
use metrix_proto::metrics::v1::*;
use serde_json::Value as Json;
use tonic::Request;

use crate::error::MetricsError;
use crate::events::{event_to_proto, json_to_struct};
use crate::profiles::TraitFilter;
use crate::store::events::EventCursor;
use crate::store::profiles::{ProfileCursor, ProfileRow};

use super::{LIST_PAGE, MetricsApi, READERS, authorize, required};

/// The longest user id, as an event's.
const MAX_USER_ID: usize = 256;
/// The longest trait key of a filter.
const MAX_TRAIT_KEY: usize = 256;
/// The longest trait value of a filter.
const MAX_TRAIT_VALUE: usize = 1_024;

/// A required user id of at most [`MAX_USER_ID`] characters.
fn user_id(value: &str) -> Result<String, FieldViolation> {
    let user_id = required("user_id", value)?;
    if user_id.chars().count() > MAX_USER_ID {
        return Err(FieldViolation::new(
            "user_id",
            format!("must be at most {MAX_USER_ID} characters"),
        ));
    }
    Ok(user_id)
}

/// A text of at most `limit` characters.
fn bounded(field: &str, value: &str, limit: usize) -> Result<(), FieldViolation> {
    if value.chars().count() > limit {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {limit} characters"),
        ));
    }
    Ok(())
}

fn profile_to_proto(profile: ProfileRow) -> UserProfile {
    UserProfile {
        user_id: profile.user_id,
        traits: json_to_struct(&Json::Object(profile.traits)),
        first_seen_time: Some(timestamp(profile.first_seen)),
        last_seen_time: Some(timestamp(profile.last_seen)),
        aliases: profile.aliases,
        groups: profile
            .groups
            .into_iter()
            .map(|(group_id, traits)| UserGroup {
                group_id,
                traits: json_to_struct(&Json::Object(traits)),
            })
            .collect(),
    }
}

impl MetricsApi {
    pub(super) async fn get_user_profile(
        &self,
        request: Request<GetUserProfileRequest>,
    ) -> Result<GetUserProfileResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let user_id = user_id(&request.get_ref().user_id)?;
        let profile = self
            .state
            .store
            .user_profile(&caller.organization_id, &user_id)
            .await?
            .ok_or(MetricsError::NotFound("user profile"))?;
        Ok(GetUserProfileResponse {
            user_profile: Some(profile_to_proto(profile)),
        })
    }

    pub(super) async fn list_user_profiles(
        &self,
        request: Request<ListUserProfilesRequest>,
    ) -> Result<ListUserProfilesResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let mut violations = Violations::new();
        violations.check(bounded("trait_key", &request.trait_key, MAX_TRAIT_KEY));
        violations.check(bounded("trait_value", &request.trait_value, MAX_TRAIT_VALUE));
        let filter = violations.check(TraitFilter::parse(&request.trait_key, &request.trait_value));
        let filters = format!(
            "userProfiles|{}|{}",
            caller.organization_id,
            filter.as_ref().map(TraitFilter::fingerprint).unwrap_or_default()
        );
        let page = violations.check_all(page_token::page_request::<ProfileCursor>(
            request.page_size,
            &request.page_token,
            &filters,
            LIST_PAGE,
        ));
        let (Some(filter), Some((size, cursor))) = (filter, page) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let profiles = self
            .state
            .store
            .list_user_profiles(&caller.organization_id, &filter, cursor.as_ref(), size + 1)
            .await?;
        let (profiles, next_page_token) = page_token::paginate(profiles, size, &filters, |profile| ProfileCursor {
            user_id: profile.user_id.clone(),
        });
        Ok(ListUserProfilesResponse {
            user_profiles: profiles.into_iter().map(profile_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn list_user_profile_events(
        &self,
        request: Request<ListUserProfileEventsRequest>,
    ) -> Result<ListUserProfileEventsResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let mut violations = Violations::new();
        let user_id = violations.check(user_id(&request.user_id));
        let user = user_id.as_deref().unwrap_or_default();
        let filters = format!("userProfileEvents|{}|{user:?}", caller.organization_id);
        let page = violations.check_all(page_token::page_request::<EventCursor>(
            request.page_size,
            &request.page_token,
            &filters,
            LIST_PAGE,
        ));
        let (Some(user_id), Some((size, cursor))) = (user_id, page) else {
            return Err(violations.into_vec().into());
        };
        let profile = self
            .state
            .store
            .user_profile(&caller.organization_id, &user_id)
            .await?
            .ok_or(MetricsError::NotFound("user profile"))?;
        let mut user_ids = profile.aliases;
        user_ids.push(profile.user_id);
        let events = self
            .state
            .store
            .list_user_events(&caller.organization_id, &user_ids, cursor.as_ref(), size + 1)
            .await?;
        let (events, next_page_token) = page_token::paginate(events, size, &filters, |event| EventCursor {
            occurred_at: event.occurred_at,
            event_id: event.event_id.clone(),
        });
        Ok(ListUserProfileEventsResponse {
            events: events
                .iter()
                .map(|event| event_to_proto(event, &caller.organization_id))
                .collect(),
            next_page_token,
        })
    }
}
