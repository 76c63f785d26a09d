//! Per-credential rate limits are shared by every gateway that shares Redis
//! and the rate-limit key: a caller spreading calls over instances, or
//! waiting for a restart, gets one budget, not one per process.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::HashMap;
use std::net::SocketAddr;

use hmac::{Hmac, Mac as _};
use metrix_core::cache::{Backends, Quota, RateDecision};
use metrix_core::config::Settings;
use metrix_core::server::Shutdown;
use metrix_gateway::{GatewayServer, GatewaySettings};
use secrecy::SecretString;
use sha2::Sha256;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Calls one credential may make per minute in these tests.
const PER_CREDENTIAL: u32 = 4;
/// The key every gateway of a test's fleet shares.
const FLEET_KEY: &str = "a-shared-rate-limit-key-of-32-characters-at-least";

/// Redis backends under `prefix`, as every instance of one deployment has them.
async fn redis(prefix: &str) -> Backends {
    let url = metrix_core::testing::redis_url();
    Backends::connect(Some(&SecretString::from(url.clone())), prefix)
        .await
        .unwrap_or_else(|error| panic!("this test needs Redis at {url}: {error}"))
}

/// A fresh key prefix: one deployment's Redis.
fn deployment() -> String {
    format!("metrix_test:{}:", uuid::Uuid::new_v4().simple())
}

/// A gateway of the fleet whose Redis lives under `prefix`. Its upstreams are
/// never called: the gateway answers its own health checks.
async fn gateway(prefix: &str) -> SocketAddr {
    gateway_with(prefix, &[]).await
}

/// As [`gateway`], with some settings overridden.
async fn gateway_with(prefix: &str, overrides: &[(&str, &str)]) -> SocketAddr {
    let per_credential = PER_CREDENTIAL.to_string();
    let mut environment: HashMap<String, String> = [
        ("METRIX_GATEWAY__LISTEN_ADDR", "127.0.0.1:0"),
        ("METRIX_GATEWAY__AUTH_URL", "http://127.0.0.1:9"),
        ("METRIX_GATEWAY__METRICS_URL", "http://127.0.0.1:9"),
        ("METRIX_GATEWAY__BENCHMARK_URL", "http://127.0.0.1:9"),
        ("METRIX_GATEWAY__RATE_LIMIT_PER_CREDENTIAL", per_credential.as_str()),
        ("METRIX_GATEWAY__RATE_LIMIT_KEY", FLEET_KEY),
        ("METRIX_REDIS_URL", "redis://127.0.0.1:6379"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    for (name, value) in overrides {
        environment.insert((*name).to_owned(), (*value).to_owned());
    }
    let settings = GatewaySettings::load(&Settings::new(&environment)).expect("valid settings");
    let server = GatewayServer::build(settings, redis(prefix).await, Shutdown::new())
        .await
        .expect("the gateway starts");
    let address = server.local_addr();
    tokio::spawn(server.run_until_stopped());
    address
}

/// A health check through `gateway` with `api_key`: OK or its status code.
async fn call(gateway: SocketAddr, api_key: &str) -> Code {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gateway}"))
        .expect("a valid address")
        .connect()
        .await
        .expect("connects");
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("x-api-key", api_key.parse().expect("header-safe"));
    match client.check(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn api_key() -> String {
    format!("mx_live_{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn two_gateways_sharing_redis_count_one_credential_together() {
    let prefix = deployment();
    let first = gateway(&prefix).await;
    let second = gateway(&prefix).await;
    let key = api_key();
    // Alternating instances: each sees only half the calls.
    for call_number in 0..PER_CREDENTIAL {
        let instance = if call_number % 2 == 0 { first } else { second };
        assert_eq!(call(instance, &key).await, Code::Ok, "call {call_number}");
    }
    assert_eq!(call(first, &key).await, Code::ResourceExhausted);
    assert_eq!(call(second, &key).await, Code::ResourceExhausted);
    assert_eq!(
        call(second, &api_key()).await,
        Code::Ok,
        "another credential has its own budget"
    );
}

#[tokio::test]
async fn a_credential_counted_by_another_process_is_limited_here() {
    let prefix = deployment();
    let key = api_key();
    // Another gateway process (or this one before a restart) spent the
    // credential's budget: it names the bucket by HMAC-SHA256 under the
    // fleet's key, which is all the processes share.
    let mut mac = Hmac::<Sha256>::new_from_slice(FLEET_KEY.as_bytes()).expect("any key length");
    mac.update(key.as_bytes());
    let bucket: String = mac.finalize().into_bytes()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let elsewhere = redis(&prefix).await;
    for _ in 0..PER_CREDENTIAL {
        let decision = elsewhere
            .rate_limiter
            .check(
                &format!("gateway:credential:{bucket}"),
                Quota::per_minute(PER_CREDENTIAL),
            )
            .await
            .expect("redis answers");
        assert_eq!(decision, RateDecision::Allowed);
    }
    let here = gateway(&prefix).await;
    assert_eq!(call(here, &key).await, Code::ResourceExhausted);
    assert_eq!(call(here, &api_key()).await, Code::Ok);
}

/// A health check through `gateway` from `client` as a trusted proxy reports it.
async fn call_from(gateway: SocketAddr, client: &str) -> Code {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gateway}"))
        .expect("a valid address")
        .connect()
        .await
        .expect("connects");
    let mut health = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("x-forwarded-for", client.parse().expect("header-safe"));
    match health.check(request).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// An IPv6 subscriber holds a whole /64: its addresses share one per-address
/// budget, while the next /64 has its own.
#[tokio::test]
async fn ipv6_clients_are_limited_per_64() {
    let gateway = gateway_with(
        &deployment(),
        &[
            ("METRIX_GATEWAY__TRUSTED_PROXIES", "127.0.0.1/32"),
            ("METRIX_GATEWAY__RATE_LIMIT_PER_IP", "2"),
        ],
    )
    .await;
    assert_eq!(call_from(gateway, "2001:db8:1:2::1").await, Code::Ok);
    assert_eq!(call_from(gateway, "2001:db8:1:2::2").await, Code::Ok);
    assert_eq!(
        call_from(gateway, "2001:db8:1:2:ffff::3").await,
        Code::ResourceExhausted,
        "a third address of the same /64 shares its budget"
    );
    assert_eq!(call_from(gateway, "2001:db8:1:3::1").await, Code::Ok, "another /64");
}
