//! Connections to PostgreSQL (every pooled one) and to Redis send without
//! waiting for the server's delayed acknowledgements.

use metrix_core::storage::Database;

/// Whether each of this process's TCP sockets to `port` has TCP_NODELAY.
#[cfg(target_os = "linux")]
fn nodelay_of_sockets_to(port: u16) -> Vec<bool> {
    use std::os::fd::{BorrowedFd, RawFd};

    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd lists")
        .flatten()
    {
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<RawFd>().ok()) else {
            continue;
        };
        // SAFETY: the borrow lasts two system calls. A descriptor closed and
        // reused meanwhile (tests run in parallel) is at worst another
        // socket, whose peer port then decides whether it is counted.
        let descriptor = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&descriptor);
        let to_port = socket
            .peer_addr()
            .ok()
            .and_then(|address| address.as_socket())
            .is_some_and(|address| address.port() == port);
        if to_port {
            found.push(socket.tcp_nodelay().expect("a TCP socket reports TCP_NODELAY"));
        }
    }
    found
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn pooled_postgres_connections_disable_nagle() {
    let url = metrix_core::testing::fresh_postgres_database().await;
    let database = Database::connect(&url).await.expect("connects to PostgreSQL");
    let Database::Postgres(pool) = &database else {
        panic!("a postgres:// url gives a PostgreSQL pool");
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.expect("a pooled connection"));
    }
    let port = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .expect("the test url parses")
        .get_port();
    let sockets = nodelay_of_sockets_to(port);
    assert!(
        sockets.len() >= 3,
        "the three held connections are TCP sockets to port {port}"
    );
    assert!(
        sockets.iter().all(|nodelay| *nodelay),
        "every socket to PostgreSQL has TCP_NODELAY: {sockets:?}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn redis_connections_disable_nagle() {
    let url = metrix_core::testing::redis_url();
    let _backends = metrix_core::testing::fresh_redis_backends().await;
    let port = url::Url::parse(&url)
        .expect("the test url parses")
        .port()
        .unwrap_or(6379);
    let sockets = nodelay_of_sockets_to(port);
    assert!(!sockets.is_empty(), "the backends hold connections to port {port}");
    assert!(
        sockets.iter().all(|nodelay| *nodelay),
        "every socket to Redis has TCP_NODELAY: {sockets:?}"
    );
}
