//! API keys verified by the auth service, with a short cache so that a burst
//! of ingestion calls costs one verification.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrix_proto::auth::v1::VerifyApiKeyRequest;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{Credential, Principal, Role, Scope, ServiceTokenSource};

/// How long a verified key is trusted without asking again; also how long a
/// revocation takes to reach every service.
pub const POSITIVE_CACHE_TTL: Duration = Duration::from_secs(30);
/// How long a refused key stays refused without asking again.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(5);
const MAX_CACHED_KEYS: usize = 10_000;

/// Turns an API key into a principal.
#[async_trait]
pub trait ApiKeyVerifier: Send + Sync + 'static {
    /// The principal of `key`, or UNAUTHENTICATED.
    async fn verify(&self, key: &str) -> Result<Principal, Status>;
}

/// A verification answer and when it stops being trusted, by key digest.
type CachedAnswer = (Result<Principal, Status>, Instant);

/// Asks the auth service's VerifyApiKey, as this service.
pub struct RemoteApiKeyVerifier {
    client: AuthServiceClient<Channel>,
    service_token: Arc<ServiceTokenSource>,
    cache: Mutex<HashMap<[u8; 32], CachedAnswer>>,
}

impl RemoteApiKeyVerifier {
    /// Verifies through the auth service at `channel`, authenticated by `service_token`.
    pub fn new(channel: Channel, service_token: Arc<ServiceTokenSource>) -> Self {
        Self {
            client: AuthServiceClient::new(channel),
            service_token,
            cache: Mutex::default(),
        }
    }

    async fn ask(&self, key: &str) -> Result<Principal, Status> {
        let request = self
            .service_token
            .authorize(tonic::Request::new(VerifyApiKeyRequest { key: key.to_owned() }))
            .await?;
        let mut client = self.client.clone();
        let api_key = client
            .verify_api_key(request)
            .await?
            .into_inner()
            .api_key
            .ok_or_else(|| {
                tracing::error!("verify api key answered without a key");
                Status::unavailable("api key verification unavailable")
            })?;
        let scopes = api_key
            .scopes
            .iter()
            .map(|scope| scope.parse())
            .collect::<Result<Vec<Scope>, _>>()
            .map_err(|_| {
                tracing::error!("verify api key answered an unknown scope");
                Status::unavailable("api key verification unavailable")
            })?;
        Ok(Principal {
            subject: api_key.api_key_id.clone(),
            organization_id: api_key.organization_id,
            role: Role::CompanyUser,
            scopes,
            credential: Credential::ApiKey {
                api_key_id: api_key.api_key_id,
            },
        })
    }
}

#[async_trait]
impl ApiKeyVerifier for RemoteApiKeyVerifier {
    async fn verify(&self, key: &str) -> Result<Principal, Status> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        {
            let cache = self.cache.lock().await;
            if let Some((answer, expires)) = cache.get(&digest)
                && Instant::now() < *expires
            {
                return answer.clone();
            }
        }
        let answer = self.ask(key).await;
        let ttl = match &answer {
            Ok(_) => POSITIVE_CACHE_TTL,
            Err(status) if status.code() == Code::Unauthenticated => NEGATIVE_CACHE_TTL,
            // Outages are not cached: the next call asks again.
            Err(_) => return answer,
        };
        let mut cache = self.cache.lock().await;
        if cache.len() >= MAX_CACHED_KEYS {
            let now = Instant::now();
            cache.retain(|_, (_, expires)| *expires > now);
        }
        cache.insert(digest, (answer.clone(), Instant::now() + ttl));
        answer
    }
}
