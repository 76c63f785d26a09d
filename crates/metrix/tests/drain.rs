//! The graceful drain, end to end, as ECS and Docker stop a task: a real
//! `metrix auth` process under load receives SIGTERM. It must report
//! NOT_SERVING while still accepting connections, finish every request that
//! was in flight, close its listener after the drain delay, and exit 0
//! within the grace period.
//!
//! The long-running call is a GetJwks whose request stream the test holds
//! open: a unary handler answers only once the request body ends, so the
//! call stays in flight, deterministically, across the signal and the
//! closing of the listener, and is released only once new connections are
//! refused.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use metrix_proto::auth::v1::auth_service_client::AuthServiceClient;
use metrix_proto::auth::v1::{GetJwksRequest, GetJwksResponse};
use tokio::sync::{Mutex, oneshot};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long the service reports NOT_SERVING before closing its listener.
const DRAIN_DELAY_SECONDS: u64 = 5;
/// How long requests in flight may take once the listener is closed.
const SHUTDOWN_GRACE_SECONDS: u64 = 30;
/// Concurrent callers of GetJwks.
const LOAD_WORKERS: usize = 8;
/// Connections the load is spread over.
const LOAD_CONNECTIONS: usize = 4;
/// The most calls one load worker makes, so the loop stops by itself.
const MAX_CALLS_PER_WORKER: usize = 100_000;

/// A `metrix auth` process, killed if the test ends before it exits.
struct AuthProcess {
    child: Child,
    address: SocketAddr,
    _data: tempfile::TempDir,
}

impl AuthProcess {
    fn spawn() -> AuthProcess {
        let data = tempfile::tempdir().expect("a temporary directory");
        let address = free_address();
        let master_key = STANDARD.encode(rand::random::<[u8; 32]>());
        let (stdout, stderr) = if std::env::var_os("TEST_LOG").is_some() {
            (Stdio::inherit(), Stdio::inherit())
        } else {
            (Stdio::null(), Stdio::null())
        };
        let child = Command::new(env!("CARGO_BIN_EXE_metrix"))
            .arg("auth")
            .env(
                "METRIX_AUTH__DATABASE_URL",
                format!("sqlite://{}", data.path().join("auth.db").display()),
            )
            .env("METRIX_AUTH__MASTER_KEY", master_key)
            .env("METRIX_AUTH__LISTEN_ADDR", address.to_string())
            .env("METRIX_DRAIN_DELAY_SECONDS", DRAIN_DELAY_SECONDS.to_string())
            .env("METRIX_SHUTDOWN_GRACE_SECONDS", SHUTDOWN_GRACE_SECONDS.to_string())
            .env("METRIX_LOG_FORMAT", "human")
            .env_remove("METRIX_DATABASE_URL")
            .env_remove("METRIX_REDIS_URL")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the metrix binary starts");
        AuthProcess {
            child,
            address,
            _data: data,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("the process can be waited on").is_none()
    }
}

impl Drop for AuthProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address")
}

async fn connect(url: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(url.to_owned())
        .expect("a valid url")
        .connect_timeout(Duration::from_secs(2))
        // Bounds every call, so a regression fails the test instead of hanging it.
        .timeout(Duration::from_secs(20))
        .connect()
        .await
}

async fn health(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    let answer = HealthClient::new(channel).check(HealthCheckRequest::default()).await?;
    Ok(answer.into_inner().status())
}

/// Waits until a fresh connection hears SERVING; panics if the process
/// exits or never gets there.
async fn wait_until_serving(process: &mut AuthProcess) {
    for _ in 0..600 {
        assert!(process.is_running(), "metrix auth exited before serving");
        if let Ok(channel) = connect(&process.url()).await
            && let Ok(ServingStatus::Serving) = health(channel).await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metrix auth never reported SERVING");
}

/// A GetJwks whose request stream stays open until `release` fires: one
/// message, then nothing until released, then the end of the stream.
struct HeldCall {
    release: oneshot::Sender<()>,
    answer: tokio::task::JoinHandle<Result<tonic::Response<GetJwksResponse>, tonic::Status>>,
}

enum HeldBody {
    First {
        sent: oneshot::Sender<()>,
        release: oneshot::Receiver<()>,
    },
    Holding(oneshot::Receiver<()>),
}

async fn start_held_call(channel: Channel) -> HeldCall {
    let (sent_sender, sent_receiver) = oneshot::channel();
    let (release_sender, release_receiver) = oneshot::channel();
    let body = futures::stream::unfold(
        Some(HeldBody::First {
            sent: sent_sender,
            release: release_receiver,
        }),
        |stage| async move {
            match stage? {
                HeldBody::First { sent, release } => {
                    let _ = sent.send(());
                    Some((GetJwksRequest {}, Some(HeldBody::Holding(release))))
                }
                HeldBody::Holding(release) => {
                    let _ = release.await;
                    None
                }
            }
        },
    );
    let answer = tokio::spawn(async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        grpc.client_streaming(
            tonic::Request::new(body),
            PathAndQuery::from_static("/metrix.auth.v1.AuthService/GetJwks"),
            tonic_prost::ProstCodec::<GetJwksRequest, GetJwksResponse>::default(),
        )
        .await
    });
    sent_receiver.await.expect("the held call sends its first message");
    HeldCall {
        release: release_sender,
        answer,
    }
}

/// One GetJwks made by a load worker.
struct Call {
    started_before_signal: bool,
    outcome: Result<(), tonic::Code>,
}

#[derive(Default)]
struct Load {
    signalled: AtomicBool,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    calls: Mutex<Vec<Call>>,
}

async fn load_worker(channel: Channel, load: Arc<Load>) {
    let mut client = AuthServiceClient::new(channel);
    for _ in 0..MAX_CALLS_PER_WORKER {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let started_before_signal = !load.signalled.load(Ordering::SeqCst);
        load.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = client
            .get_jwks(GetJwksRequest {})
            .await
            .map(|_| ())
            .map_err(|status| status.code());
        load.in_flight.fetch_sub(1, Ordering::SeqCst);
        let failed = outcome.is_err();
        load.calls.lock().await.push(Call {
            started_before_signal,
            outcome,
        });
        if failed && !started_before_signal {
            // The connection is going away, as it should after the delay.
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut process = AuthProcess::spawn();
    wait_until_serving(&mut process).await;
    let url = process.url();

    // Steady load over several connections.
    let load = Arc::new(Load::default());
    let mut load_channels = Vec::new();
    for _ in 0..LOAD_CONNECTIONS {
        load_channels.push(connect(&url).await.expect("a load connection"));
    }
    let workers: Vec<_> = (0..LOAD_WORKERS)
        .map(|index| {
            tokio::spawn(load_worker(
                load_channels[index % LOAD_CONNECTIONS].clone(),
                load.clone(),
            ))
        })
        .collect();

    // The long call, known to the server before the signal: a later call on
    // the same connection is answered only after the server has read the
    // held call's headers.
    let held_channel = connect(&url).await.expect("a connection for the held call");
    let held = start_held_call(held_channel.clone()).await;
    assert_eq!(
        health(held_channel)
            .await
            .expect("health on the held call's connection"),
        ServingStatus::Serving
    );

    // An existing connection to watch health on through the drain.
    let health_channel = connect(&url).await.expect("a health connection");
    assert_eq!(
        health(health_channel.clone()).await.expect("health before the signal"),
        ServingStatus::Serving
    );

    // Let the load run, then signal while calls are in flight.
    while load.calls.lock().await.len() < 200 || load.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(process.is_running(), "metrix auth exited under load");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    load.signalled.store(true, Ordering::SeqCst);
    let signalled_at = Instant::now();
    process.send_sigterm();

    // Health turns NOT_SERVING on the existing connection while the
    // listener still accepts: a fresh connection hears NOT_SERVING too.
    let deadline = signalled_at + Duration::from_secs(DRAIN_DELAY_SECONDS + SHUTDOWN_GRACE_SECONDS);
    loop {
        match health(health_channel.clone()).await {
            Ok(ServingStatus::NotServing) => break,
            Ok(ServingStatus::Serving) => {
                assert!(
                    Instant::now() < deadline,
                    "health never turned NOT_SERVING after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("health on an existing connection during the drain delay answered {other:?}"),
        }
    }
    let fresh = connect(&url)
        .await
        .expect("the listener still accepts connections while NOT_SERVING");
    assert_eq!(
        health(fresh)
            .await
            .expect("health on a fresh connection while NOT_SERVING"),
        ServingStatus::NotServing
    );

    // After the delay the listener closes, while the held call keeps the
    // process alive: new connections are refused.
    let refused = loop {
        assert!(process.is_running(), "metrix auth exited with a call still in flight");
        match TcpStream::connect_timeout(&process.address, Duration::from_secs(1)) {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break true,
            _ if Instant::now() > deadline => break false,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(
        refused,
        "new connections were still accepted at the end of the grace period"
    );
    assert!(
        connect(&url).await.is_err(),
        "a new gRPC connection succeeded after the listener closed"
    );

    // The call that was in flight all along completes successfully.
    held.release.send(()).expect("the held call is still waiting");
    let answer = held
        .answer
        .await
        .expect("the held call's task")
        .expect("the call in flight across the drain succeeds");
    assert!(!answer.into_inner().keys.is_empty(), "GetJwks answered without keys");

    // Every load call made before the signal succeeded.
    load.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("a load worker");
    }
    let calls = load.calls.lock().await;
    let before: Vec<&Call> = calls.iter().filter(|call| call.started_before_signal).collect();
    assert!(!before.is_empty(), "no load before the signal");
    let failed: Vec<tonic::Code> = before.iter().filter_map(|call| call.outcome.err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls made before SIGTERM failed: {failed:?}",
        failed.len(),
        before.len()
    );

    // The process exits 0 within the drain delay plus the grace period.
    let status = loop {
        if let Some(status) = process.child.try_wait().expect("the process can be waited on") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "metrix auth did not exit within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "metrix auth exited with {status}");
}
