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

mod dev;

use std::path::Path;
use std::process::Command;

use dev::{Demo, repository_root, start_dev};

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
    let dev = start_dev(&log, Demo::Seeded);
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
