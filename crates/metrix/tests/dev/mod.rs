//! A real `metrix dev` for the tests that drive it from outside (the
//! console's browser suite, the tracking SDKs): its own free ports, a
//! temporary data folder, none of the caller's `METRIX_…` settings; killed
//! when dropped.
#![allow(dead_code, reason = "each test target uses part of the harness")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(120);
const SEED_TIMEOUT: Duration = Duration::from_secs(240);

/// The repository's root folder.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// A `metrix dev` process, killed when dropped.
pub struct Dev {
    child: Child,
    /// The gateway's base URL.
    pub gateway: String,
    _data: tempfile::TempDir,
}

/// Whether `metrix dev` seeds its demo data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demo {
    /// With demo data; the start waits until the demo account is seeded (a
    /// sign-in before would be refused, and refusals lock the account).
    Seeded,
    /// `--no-demo`.
    None,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `metrix dev`, logging to `log`, and waits until it is ready.
pub fn start_dev(log: &Path, demo: Demo) -> Dev {
    let data = tempfile::Builder::new()
        .prefix("metrix-dev")
        .tempdir()
        .expect("a data folder");
    let gateway_port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_metrix"));
    command.arg("dev");
    if demo == Demo::None {
        command.arg("--no-demo");
    }
    command.arg("--data-dir").arg(data.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("METRIX_") {
            command.env_remove(name);
        }
    }
    let log_file = std::fs::File::create(log).expect("a log file");
    command
        .envs([
            ("METRIX_LOG_FORMAT", "human".to_owned()),
            // The line that says the demo account is ready, and warnings.
            ("METRIX_LOG", "warn,metrix::dev=info".to_owned()),
            ("NO_COLOR", "1".to_owned()),
            ("METRIX_AUTH__LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            ("METRIX_METRICS__LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            ("METRIX_BENCHMARK__LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            ("METRIX_GATEWAY__LISTEN_ADDR", format!("127.0.0.1:{gateway_port}")),
            ("METRIX_DRAIN_DELAY_SECONDS", "0".to_owned()),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("the log file"))
        .stderr(log_file);
    let mut child = command.spawn().expect("the metrix binary starts");
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("metrix can be waited on") {
            panic!(
                "metrix dev exited with {status} before it was ready; its log: {}",
                log.display()
            );
        }
        if ready(gateway_port) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrix dev was not ready within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let seeded = Instant::now() + SEED_TIMEOUT;
    while demo == Demo::Seeded && !std::fs::read_to_string(log).is_ok_and(|text| text.contains("demo account seeded")) {
        if let Some(status) = child.try_wait().expect("metrix can be waited on") {
            panic!(
                "metrix dev exited with {status} while seeding; its log: {}",
                log.display()
            );
        }
        assert!(
            Instant::now() < seeded,
            "the demo data was not seeded within {SEED_TIMEOUT:?}; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Dev {
        child,
        gateway,
        _data: data,
    }
}

/// Whether the gateway's `/readyz` answers 200 (every upstream SERVING).
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
