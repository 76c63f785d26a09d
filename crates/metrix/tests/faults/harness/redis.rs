//! A private Redis: `redis-server` on a free port of 127.0.0.1 with its
//! files in a temporary folder, killed with SIGKILL and started again on the
//! same port and folder (an append-only file, when kept, is reloaded). The
//! tests talk to it over a minimal RESP client, binary-safe, so no
//! `redis-cli` output has to be parsed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{START_TIMEOUT, free_port, log_file, required_tool, show_log_if_wanted};

/// What Redis keeps across a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// An append-only file fsynced every second: a restart reloads it.
    AppendOnly,
    /// Nothing: a restart comes back empty.
    Nothing,
}

/// A Redis server of one test; killed and deleted when dropped.
pub struct Redis {
    server: PathBuf,
    folder: tempfile::TempDir,
    port: u16,
    persistence: Persistence,
    child: Option<Child>,
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    /// The reply as text, for bulk and simple strings.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(text) => Some(text.clone()),
            Reply::Bulk(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

impl Redis {
    /// Starts a server and waits until it answers PING.
    pub async fn start(persistence: Persistence) -> Redis {
        let server = required_tool(
            "redis-server",
            &[],
            "install Redis (apt-get install redis-server): the suite starts a private server per test",
        );
        let folder = tempfile::Builder::new()
            .prefix("metrix-fault-redis")
            .tempdir()
            .expect("a temporary folder for Redis");
        let mut redis = Redis {
            server,
            folder,
            port: free_port(),
            persistence,
            child: None,
        };
        redis.start_again().await;
        redis
    }

    /// The URL metrix connects to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no final write of anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the (killed) server again on the same port and folder, and
    /// waits until it answers PING (after reloading its append-only file).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "Redis is already running");
        let log = self.folder.path().join("redis.log");
        let append_only = match self.persistence {
            Persistence::AppendOnly => "yes",
            Persistence::Nothing => "no",
        };
        let child = Command::new(&self.server)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(self.folder.path())
            .args([
                "--save",
                "",
                "--appendonly",
                append_only,
                "--appendfsync",
                "everysec",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                "--logfile",
                "",
            ])
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start redis-server: {error}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Reply::Simple(pong)) = self.command(&[b"PING"]).await
                && pong == "PONG"
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("redis-server exited with {status} while starting");
            }
            assert!(Instant::now() < deadline, "redis-server did not answer PING in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs one command (arguments are bytes, so payloads may be anything).
    pub async fn command(&self, arguments: &[&[u8]]) -> std::io::Result<Reply> {
        let port = self.port;
        let arguments: Vec<Vec<u8>> = arguments.iter().map(|argument| argument.to_vec()).collect();
        tokio::task::spawn_blocking(move || command_blocking(port, &arguments))
            .await
            .expect("the redis command task")
    }

    /// Runs one command that must succeed.
    pub async fn must(&self, arguments: &[&[u8]]) -> Reply {
        let name = String::from_utf8_lossy(arguments.first().copied().unwrap_or_default()).into_owned();
        match self.command(arguments).await {
            Ok(Reply::Error(error)) => panic!("redis {name} failed: {error}"),
            Ok(reply) => reply,
            Err(error) => panic!("redis {name} failed: {error}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        show_log_if_wanted("redis", &self.folder.path().join("redis.log"));
    }
}

fn command_blocking(port: u16, arguments: &[Vec<u8>]) -> std::io::Result<Reply> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("*{}\r\n", arguments.len()).into_bytes();
    for argument in arguments {
        request.extend_from_slice(format!("${}\r\n", argument.len()).as_bytes());
        request.extend_from_slice(argument);
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| invalid("an empty reply line"))?;
    let number = || rest.parse::<i64>().map_err(|_| invalid("a malformed length"));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(length) => {
                let mut bytes = vec![0; length + 2];
                reader.read_exact(&mut bytes)?;
                bytes.truncate(length);
                Reply::Bulk(bytes)
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Nil,
            Ok(count) => Reply::Array((0..count).map(|_| read_reply(reader)).collect::<Result<_, _>>()?),
        },
        _ => return Err(invalid("an unknown reply type")),
    })
}
