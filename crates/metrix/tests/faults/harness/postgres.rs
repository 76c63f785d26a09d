//! A private PostgreSQL cluster: `initdb` into a temporary folder, served by
//! `pg_ctl` on a free port of 127.0.0.1 with its socket in that folder.
//! PostgreSQL refuses to run as root, so when the tests run as root (CI) the
//! folder is handed to the `postgres` OS user and every command runs as it
//! through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{free_port, required_tool, running_as_root, show_log_if_wanted};

/// A PostgreSQL cluster of one test; stopped (immediately) and deleted when dropped.
pub struct Postgres {
    bin: PathBuf,
    runuser: Option<PathBuf>,
    folder: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    /// Creates a cluster and starts it.
    pub async fn start() -> Postgres {
        let bin = server_binaries();
        let folder = tempfile::Builder::new()
            .prefix("metrix-fault-pg")
            .tempdir()
            .expect("a temporary folder for PostgreSQL");
        let runuser = if running_as_root(folder.path()) {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(folder.path(), Some(uid), Some(gid))
                .expect("the PostgreSQL folder can be given to the postgres user");
            Some(required_tool(
                "runuser",
                &[PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")],
                "install util-linux (PostgreSQL refuses to run as root, so the suite runs it as `postgres` through runuser)",
            ))
        } else {
            None
        };
        let postgres = Postgres {
            bin,
            runuser,
            folder,
            port: free_port(),
        };
        let data = postgres.data_folder();
        postgres
            .run(
                "initdb",
                &[
                    "-D",
                    path_text(&data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )
            .await;
        postgres.start_again().await;
        postgres
    }

    /// The URL of the cluster's `postgres` database, as the superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) cluster again on the same port and data, and
    /// waits until it accepts connections.
    pub async fn start_again(&self) {
        let options = format!(
            // Without fsync a crash of the server loses nothing (the
            // operating system keeps what was written); synchronous commits
            // stay, so a commit is in the WAL before it is answered.
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            path_text(self.folder.path())
        );
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                path_text(&self.data_folder()),
                "-l",
                path_text(&self.log_path()),
                "-o",
                &options,
            ],
        )
        .await;
    }

    /// A clean, fast shutdown: sessions are ended, the cluster stops.
    pub async fn stop_fast(&self) {
        self.stop("fast").await;
    }

    /// The crash of the server: `immediate` mode, which kills every process
    /// of the cluster without a checkpoint, so the next start recovers.
    pub async fn kill(&self) {
        self.stop("immediate").await;
    }

    async fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-t",
                "60",
                "-m",
                mode,
                "-D",
                path_text(&self.data_folder()),
            ],
        )
        .await;
    }

    fn data_folder(&self) -> PathBuf {
        self.folder.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.folder.path().join("postgres.log")
    }

    /// The command running `program` of the server binaries, as the postgres
    /// user when the tests run as root.
    fn command(&self, program: &str) -> std::process::Command {
        let program = self.bin.join(program);
        let mut command = match &self.runuser {
            Some(runuser) => {
                let mut command = std::process::Command::new(runuser);
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            None => std::process::Command::new(program),
        };
        // The postgres user may not be allowed into the test's own folder.
        command.current_dir(self.folder.path());
        command
    }

    async fn run(&self, program: &str, arguments: &[&str]) {
        let mut command = tokio::process::Command::from(self.command(program));
        command
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = command
            .output()
            .await
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(
            output.status.success(),
            "`{program} {}` failed ({}):\n{}{}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(self.data_folder())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        show_log_if_wanted("postgres", &self.log_path());
    }
}

/// The folder of `initdb` and `pg_ctl`: the newest of
/// /usr/lib/postgresql/*/bin (Debian, Ubuntu), else wherever the PATH has them.
fn server_binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    let folders: Vec<PathBuf> = versions.into_iter().rev().map(|(_, bin)| bin).collect();
    let hint =
        "install the PostgreSQL server (apt-get install postgresql): the suite starts a private cluster per test";
    let initdb = required_tool("initdb", &folders, hint);
    let bin = initdb.parent().expect("initdb lives in a folder").to_path_buf();
    assert!(
        bin.join("pg_ctl").is_file(),
        "found {} but no pg_ctl beside it; {hint}",
        initdb.display()
    );
    bin
}

/// The uid and gid of the `postgres` OS user, from /etc/passwd.
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd is readable");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .unwrap_or_else(|| {
            panic!(
                "the tests run as root and PostgreSQL refuses root, but there is no `postgres` user in /etc/passwd; \
                 install the PostgreSQL server package (it creates the user) or run the tests as another user"
            )
        })
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
