//! The contracts say what a valid request is (`google.api.field_behavior`),
//! and the services do what they say: every REQUIRED field of every unary
//! RPC is refused when missing, by name, and OUTPUT_ONLY fields sent by a
//! client change nothing.
//!
//! The RPCs are read from the descriptor set and called through a generic
//! client of dynamic messages, so a new RPC is checked as soon as it lands.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use metrix_e2e::Mesh;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use metrix_proto::auth::v1::{IssueServiceTokenRequest, SignUpRequest};
use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use metrix_proto::metrics::v1::{
    BusinessModel, Company, CreateCompanyRequest, KpiValue, RecordKpisRequest, UpdateCompanyRequest,
};
use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

/// `google.api.FieldBehavior.REQUIRED`.
const REQUIRED: i32 = 2;

/// RPCs that stop at the first problem they find, so an empty request names
/// one of its REQUIRED fields, not all of them; each field is still refused
/// when it is the one missing.
const FIRST_PROBLEM_ONLY: [(&str, &str); 1] = [(
    "metrix.metrics.v1.MetricsService.CalculateKpi",
    "the inputs are checked against the metric's formula, so no metric means no inputs to check",
)];

/// RPCs that answer FAILED_PRECONDITION before reading the request when
/// Google sign-in is not configured, as in this mesh.
const NEEDS_GOOGLE: [&str; 3] = [
    "metrix.auth.v1.AuthService.GetAuthUrl",
    "metrix.auth.v1.AuthService.HandleOAuthCallback",
    "metrix.auth.v1.AuthService.SignInWithIdToken",
];

/// RPCs that answer the problems of a nested message in their response
/// rather than refusing the call.
const NESTED_PROBLEMS_IN_ANSWER: [(&str, &str); 1] = [(
    "metrix.metrics.v1.MetricsService.ValidateKpi",
    "ValidateKpiResponse.violations reports the value's own problems",
)];

/// RPCs only platform services may call, with the scope they need.
const PLATFORM_ONLY: [&str; 1] = ["metrix.auth.v1.AuthService.VerifyApiKey"];

/// A codec of dynamic messages: requests as built, answers as `output`.
#[derive(Clone)]
struct DynamicCodec {
    output: MessageDescriptor,
}

struct DynamicEncoder;

struct DynamicDecoder {
    output: MessageDescriptor,
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder {
            output: self.output.clone(),
        }
    }
}

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn encode(&mut self, item: DynamicMessage, destination: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        prost::Message::encode(&item, destination).map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, tonic::Status> {
        DynamicMessage::decode(self.output.clone(), source)
            .map(Some)
            .map_err(|error| tonic::Status::internal(error.to_string()))
    }
}

/// Calls a unary RPC with `request`, bearing `token`.
async fn call(
    channel: &Channel,
    method: &prost_reflect::MethodDescriptor,
    request: DynamicMessage,
    token: &str,
) -> Result<DynamicMessage, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let path = PathAndQuery::from_str(&format!("/{}/{}", method.parent_service().full_name(), method.name()))
        .expect("a method path");
    let mut call = tonic::Request::new(request);
    call.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
    let codec = DynamicCodec {
        output: method.output(),
    };
    grpc.unary(call, path, codec).await.map(tonic::Response::into_inner)
}

/// The REQUIRED fields of a message.
fn required_fields(message: &MessageDescriptor, behavior: &ExtensionDescriptor) -> Vec<FieldDescriptor> {
    message
        .fields()
        .filter(|field| {
            let options = field.options();
            options.has_extension(behavior)
                && matches!(options.get_extension(behavior).as_ref(),
                    Value::List(values) if values.contains(&Value::EnumNumber(REQUIRED)))
        })
        .collect()
}

/// The fields an INVALID_ARGUMENT names in its `BadRequest`.
fn named_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a violation of `named` is about `field`: the field itself, or a
/// part of it (`company.name` is about `company`, `kpi_values[0]` about
/// `kpi_values`).
fn is_about(named: &str, field: &str) -> bool {
    named == field
        || named
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// A request updates partially when it carries an `update_mask` (AIP-134):
/// the resource's REQUIRED fields are then required on creation only.
fn is_partial_update(request: &MessageDescriptor) -> bool {
    request.get_field_by_name("update_mask").is_some()
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET).expect("the contracts' descriptor set decodes")
}

async fn channel(url: String) -> Channel {
    tonic::transport::Endpoint::from_shared(url)
        .expect("a url")
        .connect()
        .await
        .expect("connects")
}

/// Signs up a new organisation; its admin's access token and organisation.
async fn sign_up_admin(auth: &mut AuthServiceClient<Channel>) -> (String, String, String) {
    let answer = auth
        .sign_up(SignUpRequest {
            email: format!("contracts-{}@example.com", uuid::Uuid::new_v4().simple()),
            password: "correct horse battery".into(),
            organization_name: "Contracts Co".into(),
            ..Default::default()
        })
        .await
        .expect("sign up")
        .into_inner();
    let user = answer.user.expect("a user");
    (
        answer.tokens.expect("tokens").access_token,
        user.organization_id,
        user.user_id,
    )
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header-safe"));
    request
}

#[tokio::test]
async fn every_required_field_is_refused_by_name_when_missing() {
    let mesh = Mesh::start().await;
    let pool = pool();
    let behavior = pool
        .get_extension_by_name("google.api.field_behavior")
        .expect("google.api.field_behavior is in the descriptor set");
    let auth_channel = channel(mesh.auth_url()).await;
    let mut auth = AuthServiceClient::new(auth_channel.clone());
    let (admin_token, _, _) = sign_up_admin(&mut auth).await;
    // VerifyApiKey answers platform services only, as
    // `metrix auth create-service-account --scopes api-keys:verify` makes them.
    let (account, secret) = metrix_auth::app::create_service_account(
        &mesh.auth_state.store,
        metrix_auth::store::PLATFORM_ORGANIZATION_ID,
        "contract checks",
        &[metrix_core::authn::Scope::ApiKeysVerify],
    )
    .await
    .expect("a platform service account");
    let platform_token = auth
        .issue_service_token(IssueServiceTokenRequest {
            client_id: account.client_id,
            client_secret: secret,
        })
        .await
        .expect("a service token")
        .into_inner()
        .access_token;

    let services = [
        ("metrix.auth.v1.AuthService", auth_channel),
        ("metrix.metrics.v1.MetricsService", channel(mesh.metrics_url()).await),
        (
            "metrix.benchmark.v1.BenchmarkService",
            channel(mesh.benchmark_url()).await,
        ),
    ];
    let first_problem_only: BTreeMap<&str, &str> = FIRST_PROBLEM_ONLY.into_iter().collect();
    let nested_in_answer: BTreeMap<&str, &str> = NESTED_PROBLEMS_IN_ANSWER.into_iter().collect();
    let mut checked = Vec::new();
    for (service_name, channel) in &services {
        let service = pool
            .get_service_by_name(service_name)
            .expect("the service is in the contracts");
        for method in service.methods() {
            if method.is_client_streaming() || method.is_server_streaming() {
                continue;
            }
            let input = method.input();
            let required = required_fields(&input, &behavior);
            if required.is_empty() {
                continue;
            }
            let rpc = method.full_name().to_owned();
            checked.push(rpc.clone());
            let token = if PLATFORM_ONLY.contains(&rpc.as_str()) {
                &platform_token
            } else {
                &admin_token
            };
            let Err(refused) = call(channel, &method, DynamicMessage::new(input.clone()), token).await else {
                panic!("{rpc}: an empty request was accepted");
            };
            if NEEDS_GOOGLE.contains(&rpc.as_str()) {
                assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{rpc}: {refused:?}");
                continue;
            }
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{rpc}: {refused:?}");
            let named = named_fields(&refused);
            let names_required = |field: &FieldDescriptor| named.iter().any(|name| is_about(name, field.name()));
            if first_problem_only.contains_key(rpc.as_str()) {
                assert!(
                    required.iter().any(names_required),
                    "{rpc} names none of its required fields: {named:?}"
                );
            } else {
                for field in &required {
                    assert!(names_required(field), "{rpc} does not name {}: {named:?}", field.name());
                }
            }
            if is_partial_update(&input) || nested_in_answer.contains_key(rpc.as_str()) {
                continue;
            }
            // A REQUIRED message field sent empty: its own REQUIRED fields
            // are named under it.
            for field in &required {
                let Kind::Message(inner) = field.kind() else {
                    continue;
                };
                if field.is_list() || field.is_map() {
                    continue;
                }
                let inner_required = required_fields(&inner, &behavior);
                if inner_required.is_empty() {
                    continue;
                }
                let mut request = DynamicMessage::new(input.clone());
                request.set_field(field, Value::Message(DynamicMessage::new(inner.clone())));
                let Err(refused) = call(channel, &method, request, token).await else {
                    panic!("{rpc}: an empty {} was accepted", field.name());
                };
                assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{rpc}: {refused:?}");
                let named = named_fields(&refused);
                for child in &inner_required {
                    let path = format!("{}.{}", field.name(), child.name());
                    assert!(
                        named.iter().any(|name| is_about(name, &path)),
                        "{rpc} does not name {path}: {named:?}"
                    );
                }
            }
        }
    }
    for rpc in FIRST_PROBLEM_ONLY
        .iter()
        .map(|(rpc, _)| *rpc)
        .chain(NEEDS_GOOGLE)
        .chain(NESTED_PROBLEMS_IN_ANSWER.iter().map(|(rpc, _)| *rpc))
        .chain(PLATFORM_ONLY)
    {
        assert!(
            checked.iter().any(|seen| seen == rpc),
            "{rpc} is listed as an exception but has no REQUIRED field any more"
        );
    }
    assert!(
        checked.len() >= 30,
        "only {} RPCs have REQUIRED fields: {checked:?}",
        checked.len()
    );
}

#[tokio::test]
async fn output_only_fields_sent_by_a_client_change_nothing() {
    let mesh = Mesh::start().await;
    let mut auth = AuthServiceClient::connect(mesh.auth_url()).await.expect("connects");
    let (token, organization_id, user_id) = sign_up_admin(&mut auth).await;
    let mut metrics = MetricsServiceClient::connect(mesh.metrics_url())
        .await
        .expect("connects");
    let year_2000 = prost_types::Timestamp {
        seconds: 946_684_800,
        nanos: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let is_recent = |time: &Option<prost_types::Timestamp>| {
        time.as_ref()
            .is_some_and(|time| (now - 300..=now + 300).contains(&time.seconds))
    };

    let created = metrics
        .create_company(bearer(
            CreateCompanyRequest {
                company: Some(Company {
                    company_id: "chosen-by-the-client".into(),
                    organization_id: "someone-elses-organisation".into(),
                    name: "Output Only Ltd".into(),
                    sector_id: "fintech".into(),
                    business_model: BusinessModel::B2bSaas as i32,
                    country_code: "DE".into(),
                    founding_year: 2019,
                    revenue_band_id: "arr_100m_plus".into(),
                    create_time: Some(year_2000),
                    update_time: Some(year_2000),
                }),
            },
            &token,
        ))
        .await
        .expect("output-only fields do not refuse a creation")
        .into_inner()
        .company
        .expect("the company");
    assert_ne!(created.company_id, "chosen-by-the-client");
    assert_eq!(created.organization_id, organization_id);
    assert_eq!(created.revenue_band_id, "", "no ARR is recorded yet");
    assert!(
        is_recent(&created.create_time),
        "create_time: {:?}",
        created.create_time
    );
    assert!(
        is_recent(&created.update_time),
        "update_time: {:?}",
        created.update_time
    );

    let updated = metrics
        .update_company(bearer(
            UpdateCompanyRequest {
                company: Some(Company {
                    company_id: created.company_id.clone(),
                    organization_id: "someone-elses-organisation".into(),
                    name: "Output Only GmbH".into(),
                    revenue_band_id: "arr_100m_plus".into(),
                    create_time: Some(year_2000),
                    ..Default::default()
                }),
                update_mask: None,
            },
            &token,
        ))
        .await
        .expect("output-only fields do not refuse an update")
        .into_inner()
        .company
        .expect("the company");
    assert_eq!(updated.name, "Output Only GmbH");
    assert_eq!(updated.organization_id, organization_id);
    assert_eq!(updated.revenue_band_id, "");
    assert_eq!(updated.create_time, created.create_time);

    let recorded = metrics
        .record_kpis(bearer(
            RecordKpisRequest {
                kpi_values: vec![KpiValue {
                    company_id: created.company_id.clone(),
                    metric_id: "arr".into(),
                    period: "2025-Q4".into(),
                    value: 2_500_000.0,
                    recorded_at: Some(year_2000),
                    revision: 7,
                    latest: false,
                    recorded_by: "someone-else".into(),
                    ..Default::default()
                }],
            },
            &token,
        ))
        .await
        .expect("output-only fields do not refuse a value")
        .into_inner();
    let value = &recorded.kpi_values[0];
    assert_eq!(value.revision, 1);
    assert!(value.latest);
    assert_eq!(value.recorded_by, user_id);
    assert!(is_recent(&value.recorded_at), "recorded_at: {:?}", value.recorded_at);
}
