//! Private servers for the fault tests: a PostgreSQL cluster, a Redis server
//! and a `metrix dev` process per test, each on its own free ports and in its
//! own temporary folder, so tests run in parallel without sharing anything.
//! Each can be stopped, killed and started again; everything is torn down
//! when dropped, and the logs' last lines are printed when a test fails.

mod metrix;
mod postgres;
mod redis;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub use metrix::{Database, Metrix, MetrixOptions};
pub use postgres::Postgres;
pub use redis::{Persistence, Redis, Reply};

/// How long a server may take to start before the test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The lines of each log shown when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// A port nothing listens on and that no other test of this process was
/// given, so a server killed and started again finds its port still free of
/// other tests' servers.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Mutex::default);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        if given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// An executable on the PATH or in one of `folders`; the test fails, naming
/// what to install, when it is nowhere.
pub fn required_tool(name: &str, folders: &[PathBuf], install_hint: &str) -> PathBuf {
    let path_folders = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    folders
        .iter()
        .chain(path_folders.iter())
        .map(|folder| folder.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the fault-injection suite needs `{name}` and found it neither in {folders:?} nor on the PATH; \
                 {install_hint}. These tests never skip: without it they fail."
            )
        })
}

/// Whether the tests run as root (as CI does), judged by who owns a folder
/// this process just created.
pub fn running_as_root(created_folder: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    created_folder
        .metadata()
        .map(|metadata| metadata.uid() == 0)
        .unwrap_or(false)
}

/// The last `lines` lines of a log file, or why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(no log at {}: {error})", path.display()),
    }
}

/// Prints a server's log when the test is failing (its last lines) or when
/// `TEST_LOG` is set (all of it); called from the servers' `Drop`.
pub fn show_log_if_wanted(what: &str, path: &Path) {
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!(
            "----- {what} log ({}) -----\n{}",
            path.display(),
            log_tail(path, usize::MAX)
        );
    } else if std::thread::panicking() {
        eprintln!(
            "----- last {LOG_TAIL_LINES} lines of the {what} log ({}) -----\n{}",
            path.display(),
            log_tail(path, LOG_TAIL_LINES)
        );
    }
}

/// An append-mode handle on a log file, for a child's stdout or stderr.
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("cannot open the log {}: {error}", path.display()))
}
