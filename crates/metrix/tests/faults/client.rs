//! The mesh as a client sees it: REST through the gateway (sign-up, sign-in,
//! batches of events, reads), native gRPC straight to the metrics service,
//! and the Prometheus text of its `/metrics`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use metrix_proto::metrics::v1::{Event, TrackEventsRequest};
use serde_json::{Value as Json, json};

/// How long one call may take before it counts as failed; a hung call fails
/// the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which ingestion path a batch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answered after the events are committed (ACCEPTED).
    Synchronous,
    /// Answered once the events are in the queue (QUEUED).
    Queued,
}

/// What became of one event of an answered batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStatus {
    Accepted,
    Queued,
    Duplicate,
    Rejected,
    /// Anything else (UNSPECIFIED, or a name this suite does not know).
    Other(String),
}

/// One entry of `results` of an answered batch.
#[derive(Debug, Clone)]
pub struct EventResult {
    pub status: EventStatus,
    /// The offending field of a rejected event.
    pub field: String,
    pub reason: String,
}

/// The answer to one batch.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 200, with one result per event, in request order.
    Answered(Vec<EventResult>),
    /// The call failed as a whole.
    Refused {
        http_status: u16,
        retry_after: Option<String>,
        body: Json,
    },
    /// No HTTP answer at all (connection refused or reset, timeout).
    Transport(String),
}

impl Outcome {
    /// The HTTP status, when there was an answer.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Answered(_) => Some(200),
            Outcome::Refused { http_status, .. } => Some(*http_status),
            Outcome::Transport(_) => None,
        }
    }

    /// A short description for failure messages.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Answered(results) => format!("200 with {} results", results.len()),
            Outcome::Refused {
                http_status,
                retry_after,
                body,
            } => format!("{http_status} (Retry-After: {retry_after:?}) {body}"),
            Outcome::Transport(error) => format!("no answer: {error}"),
        }
    }
}

/// The signed-up user of a test and its organisation.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub password: String,
    pub organization_id: String,
}

/// A client of one mesh. Clones share the access token, so a sign-in after
/// a restart reaches every sender.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    gateway: String,
    metrics: String,
    token: Arc<RwLock<String>>,
}

impl Api {
    /// A client of the gateway and the metrics service at these URLs.
    pub fn new(gateway: String, metrics: String) -> Api {
        // reqwest's rustls asks for a process-wide provider even for plain http.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .http1_only()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("an http client");
        Api {
            http,
            gateway,
            metrics,
            token: Arc::default(),
        }
    }

    /// Whether the gateway reports every upstream SERVING.
    pub async fn ready(&self) -> bool {
        match self.http.get(format!("{}/readyz", self.gateway)).send().await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    /// Signs up a user with a new organisation and keeps its access token.
    pub async fn sign_up(&self, email: &str, password: &str) -> Account {
        let (status, body) = self
            .post_json(
                "/v1/auth:signUp",
                &json!({"email": email, "password": password, "organizationName": "Fault Labs"}),
            )
            .await;
        assert_eq!(status, 200, "sign-up failed: {body}");
        self.keep_token(&body);
        Account {
            email: email.to_owned(),
            password: password.to_owned(),
            organization_id: body["user"]["organizationId"]
                .as_str()
                .expect("sign-up answers the organisation id")
                .to_owned(),
        }
    }

    /// Signs the account in again and keeps the new access token.
    pub async fn sign_in(&self, account: &Account) {
        let (status, body) = self
            .post_json(
                "/v1/auth:signIn",
                &json!({"email": account.email, "password": account.password}),
            )
            .await;
        assert_eq!(status, 200, "sign-in failed: {body}");
        assert_eq!(
            body["user"]["organizationId"].as_str(),
            Some(account.organization_id.as_str()),
            "the user came back in another organisation"
        );
        self.keep_token(&body);
    }

    fn keep_token(&self, signed_in: &Json) {
        let token = signed_in["tokens"]["accessToken"]
            .as_str()
            .expect("an access token")
            .to_owned();
        *self.token.write().unwrap_or_else(std::sync::PoisonError::into_inner) = token;
    }

    fn token(&self) -> String {
        self.token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn post_json(&self, path: &str, body: &Json) -> (u16, Json) {
        let response = self
            .http
            .post(format!("{}{path}", self.gateway))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path} got no answer: {error}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    /// Sends a batch through `POST /v1/events:batch`.
    pub async fn track(&self, mode: Mode, events: &[Json]) -> Outcome {
        let body = json!({"events": events, "asynchronous": mode == Mode::Queued});
        let response = match self
            .http
            .post(format!("{}/v1/events:batch", self.gateway))
            .bearer_auth(self.token())
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return Outcome::Transport(error_chain(&error)),
        };
        let http_status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body: Json = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned())),
            Err(error) => return Outcome::Transport(error_chain(&error)),
        };
        if http_status != 200 {
            return Outcome::Refused {
                http_status,
                retry_after,
                body,
            };
        }
        let results = body["results"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            results.len(),
            events.len(),
            "a 200 answer must hold one result per event: {body}"
        );
        Outcome::Answered(
            results
                .iter()
                .map(|result| EventResult {
                    status: match result["status"].as_str().unwrap_or("TRACK_EVENT_STATUS_UNSPECIFIED") {
                        "TRACK_EVENT_STATUS_ACCEPTED" => EventStatus::Accepted,
                        "TRACK_EVENT_STATUS_QUEUED" => EventStatus::Queued,
                        "TRACK_EVENT_STATUS_DUPLICATE" => EventStatus::Duplicate,
                        "TRACK_EVENT_STATUS_REJECTED" => EventStatus::Rejected,
                        other => EventStatus::Other(other.to_owned()),
                    },
                    field: result["field"].as_str().unwrap_or_default().to_owned(),
                    reason: result["reason"].as_str().unwrap_or_default().to_owned(),
                })
                .collect(),
        )
    }

    /// A GET through the gateway, signed in: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.gateway))
            .bearer_auth(self.token())
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path} got no answer: {error}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// A synchronous TrackEvents of one event over native gRPC, straight to
    /// the metrics service: the gRPC code of the answer.
    pub async fn grpc_track_one(&self, event_id: &str) -> tonic::Code {
        let channel = match tonic::transport::Endpoint::from_shared(self.metrics.clone())
            .expect("a valid metrics url")
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
        {
            Ok(channel) => channel,
            Err(_) => return tonic::Code::Unavailable,
        };
        let mut request = tonic::Request::new(TrackEventsRequest {
            events: vec![Event {
                event_id: event_id.to_owned(),
                app_id: "fault".to_owned(),
                event_type: "click".to_owned(),
                user_id: "u-grpc".to_owned(),
                ..Default::default()
            }],
            asynchronous: false,
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token())
                .parse()
                .expect("a token is a valid header value"),
        );
        match MetricsServiceClient::new(channel).track_events(request).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        }
    }

    /// The Prometheus text of the metrics service's `/metrics`.
    pub async fn prometheus_text(&self) -> String {
        match self.http.get(format!("{}/metrics", self.metrics)).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// The value of a metric in Prometheus text: the sum of its samples (every
/// label set), or `None` when it is absent.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // The name must end here: `name{…} v` or `name v`.
            let value = if let Some(labelled) = rest.strip_prefix('{') {
                labelled.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// An error with its causes, on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn metric_values_sum_every_label_set_and_skip_longer_names() {
        let text = "# TYPE metrix_ingest_queue_depth gauge\n\
                    metrix_ingest_queue_depth 5\n\
                    metrix_ingest_queue_depth_max 9\n\
                    metrix_ingest_dead_lettered_total{reason=\"decode\"} 2\n\
                    metrix_ingest_dead_lettered_total{reason=\"store\"} 1\n";
        assert_eq!(metric_value(text, "metrix_ingest_queue_depth"), Some(5.0));
        assert_eq!(metric_value(text, "metrix_ingest_dead_lettered_total"), Some(3.0));
        assert_eq!(metric_value(text, "metrix_ingest_dead_letters"), None);
    }
}
