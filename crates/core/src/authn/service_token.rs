//! A service's own access token, from its service account's client
//! credentials, cached until shortly before it expires.

use std::time::{Duration, SystemTime};

use metrix_proto::auth::v1::IssueServiceTokenRequest;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::config::ServiceCredentials;

/// A token is renewed this long before it expires.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// Issues and caches this service's token.
pub struct ServiceTokenSource {
    client: AuthServiceClient<Channel>,
    credentials: ServiceCredentials,
    cached: Mutex<Option<(String, SystemTime)>>,
}

impl ServiceTokenSource {
    /// Uses `credentials` against the auth service at `channel`.
    pub fn new(channel: Channel, credentials: ServiceCredentials) -> Self {
        Self {
            client: AuthServiceClient::new(channel),
            credentials,
            cached: Mutex::new(None),
        }
    }

    /// A valid token, issued anew when the cached one is about to expire.
    pub async fn token(&self) -> Result<String, Status> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && SystemTime::now() + RENEW_BEFORE_EXPIRY < *expires
        {
            return Ok(token.clone());
        }
        let mut client = self.client.clone();
        let response = client
            .issue_service_token(IssueServiceTokenRequest {
                client_id: self.credentials.client_id.clone(),
                client_secret: self.credentials.client_secret.expose_secret().to_owned(),
            })
            .await?
            .into_inner();
        let expires = response
            .expire_time
            .and_then(|time| SystemTime::try_from(time).ok())
            .unwrap_or_else(|| SystemTime::now() + RENEW_BEFORE_EXPIRY);
        *cached = Some((response.access_token.clone(), expires));
        Ok(response.access_token)
    }

    /// `request` with this service's bearer token attached.
    pub async fn authorize<T>(&self, mut request: tonic::Request<T>) -> Result<tonic::Request<T>, Status> {
        let token = self.token().await?;
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("service token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}
