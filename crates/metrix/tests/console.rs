//! The web console in a real browser: a fresh `metrix dev` (embedded
//! backends, its own ports and folder) and `gateway/console/tests/run.mjs` (every `tests/*.test.mjs`),
//! which drives Debian's Chromium with playwright-core and compares what the
//! console shows with the API's answers. Screenshots of every view land in
//! `target/console-screenshots/`.
//!
//! Needs Node.js 20+ with npm on `PATH` and Chromium at `/usr/bin/chromium`
//! (`apt-get install -y chromium`; `METRIX_CHROMIUM` names another); installs
//! the console's npm packages (`npm ci` in `gateway/console`) when missing.
//! Never skipped: a missing piece fails with what to install.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails loudly")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(120);
const SEED_TIMEOUT: Duration = Duration::from_secs(240);

fn repository_root() -> PathBuf {
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
struct Dev {
    child: Child,
    gateway: String,
    _data: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dev(log: &Path) -> Dev {
    let data = tempfile::Builder::new()
        .prefix("metrix-console")
        .tempdir()
        .expect("a data folder");
    let gateway_port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_metrix"));
    // With its demo data: the benchmark views need peers.
    command.args(["dev", "--data-dir"]).arg(data.path());
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

fn require_tools(console: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "the console's browser test needs Node.js 20 or later and npm on PATH"
    );
    let chromium = std::env::var("METRIX_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "the console's browser test needs Chromium at {chromium}: apt-get install -y chromium (or set METRIX_CHROMIUM)"
    );
    if !console.join("node_modules/playwright-core").exists() || !console.join("node_modules/axe-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(console)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in gateway/console failed");
    }
}

#[test]
fn the_console_works_in_a_real_browser() {
    let root = repository_root();
    let console = root.join("gateway/console");
    require_tools(&console);
    let target = root.join("target");
    std::fs::create_dir_all(&target).expect("target/");
    let log = target.join("console-test-metrix.log");
    let dev = start_dev(&log);
    let screenshots = target.join("console-screenshots");
    let output = Command::new("node")
        .arg(console.join("tests/run.mjs"))
        .arg(&dev.gateway)
        .arg(&screenshots)
        .current_dir(&console)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser suite failed:\n{stdout}\n{stderr}\nmetrix dev's log: {}",
        log.display()
    );
}
