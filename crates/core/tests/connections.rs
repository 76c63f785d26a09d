//! Connections to PostgreSQL (every pooled one) and to Redis send without
//! waiting for the server's delayed acknowledgements.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use metrix_core::storage::Database;

/// Whether each of this process's TCP sockets to `port` has TCP_NODELAY.
#[cfg(target_os = "linux")]
fn nodelay_of_sockets_to(port: u16) -> Vec<bool> {
    let mut found = Vec::new();
    metrix_core::storage::for_each_socket_to(port, |socket| {
        found.push(socket.tcp_nodelay().expect("a TCP socket reports TCP_NODELAY"));
    });
    found
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn pooled_postgres_connections_disable_nagle() {
    let test_database = metrix_core::testing::TestDatabase::postgres().await;
    let url = test_database.url();
    let database = Database::connect(url).await.expect("connects to PostgreSQL");
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
